//! Excel answers (`format=xlsx`): one worksheet, the column names in a bold row frozen above
//! the rows, a filter on every column, and the values as Excel types — numbers as numbers,
//! `true`/`false` as booleans, dates and times as Excel dates in the column's own time zone
//! (`Asia/Ho_Chi_Minh` for chiso's tables: Excel has no zones), the rest as text. Integers
//! past ±2⁵³ and non-finite floats are written as text, so no value changes on the way.
//!
//! Rows go to a temporary file as they come (the workbook's "constant memory" mode), so an
//! answer of Excel's full million rows holds one row in memory, not the sheet. An answer
//! past Excel's rows is refused before anything is sent (`too_many_rows`), as is a text value
//! longer than a cell holds (`value_too_large`).

use crate::error::ApiError;
use chiso_query::datafusion::arrow::array::timezone::Tz;
use chiso_query::datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, RecordBatch,
};
use chiso_query::datafusion::arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Schema, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use chiso_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use chiso_store::ErrorKind;
use chrono::{Offset, TimeZone, Utc};
use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook};

/// Rows a worksheet holds below its header row (Excel's 1 048 576, less one).
pub const MAX_ROWS: usize = 1_048_575;

/// Columns a worksheet holds (A to XFD).
const MAX_COLUMNS: usize = 16_384;

/// The longest text an Excel cell holds, in characters.
const MAX_TEXT_CHARS: usize = 32_767;

/// Integers Excel (a double) holds exactly.
const EXACT_INTEGER: u64 = 1 << 53;

/// Days from Excel's epoch (1899-12-30) to the Unix epoch.
const UNIX_EPOCH_SERIAL: f64 = 25_569.0;

/// Excel's first date, 1900-01-01, as a Unix day (earlier ones are written as text).
const FIRST_EXCEL_DAY: i64 = -25_567;

/// Header rows a sheet may have above its column names: a title and column groups (each a
/// label over the columns from one name to another; a group whose columns the answer lacks is
/// left out), as on a printed form.
#[derive(Debug, Default, Clone)]
pub struct Heading {
    pub title: Option<String>,
    pub groups: Vec<(String, String, String)>,
}

/// A workbook being written, a batch at a time.
pub struct Sheet {
    workbook: Workbook,
    schema: Schema,
    zones: Vec<Option<Tz>>,
    next_row: u32,
    rows: usize,
    date: Format,
    datetime: Format,
}

impl Sheet {
    /// A sheet for `schema`'s columns under `heading`, column widths from the names and
    /// `sample` (the first rows of the answer).
    pub fn new(
        schema: &Schema,
        heading: &Heading,
        sample: Option<&RecordBatch>,
    ) -> Result<Self, ApiError> {
        if schema.fields().len() > MAX_COLUMNS {
            return Err(ApiError::new(
                ErrorKind::TooLarge,
                "too_many_columns",
                format!(
                    "an Excel sheet holds 16 384 columns; the answer has {}",
                    schema.fields().len()
                ),
            ));
        }
        let mut workbook = Workbook::new();
        let bold = Format::new().set_bold();
        let group = Format::new()
            .set_bold()
            .set_align(FormatAlign::Center)
            .set_border(FormatBorder::Thin);
        let zones = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Timestamp(_, Some(zone)) => zone.parse::<Tz>().ok().or_else(utc),
                DataType::Timestamp(_, None) => utc(),
                _ => None,
            })
            .collect();
        let widths = column_widths(schema, sample);
        let sheet = workbook
            .add_worksheet_with_constant_memory()
            .map_err(failed)?;
        for (column, width) in widths.into_iter().enumerate() {
            sheet
                .set_column_width(column as u16, width)
                .map_err(failed)?;
        }
        let mut row = 0;
        if let Some(title) = &heading.title {
            sheet
                .write_string_with_format(row, 0, title, &bold)
                .map_err(failed)?;
            row += 1;
        }
        let groups: Vec<(u16, u16, &String)> = heading
            .groups
            .iter()
            .filter_map(|(first, last, label)| {
                let first = schema.index_of(first).ok()? as u16;
                let last = schema.index_of(last).ok()? as u16;
                Some((first, last, label))
            })
            .collect();
        if !groups.is_empty() {
            for (first, last, label) in groups {
                if first == last {
                    sheet
                        .write_string_with_format(row, first, label, &group)
                        .map_err(failed)?;
                } else {
                    sheet
                        .merge_range(row, first, row, last, label, &group)
                        .map_err(failed)?;
                }
            }
            row += 1;
        }
        for (column, field) in schema.fields().iter().enumerate() {
            sheet
                .write_string_with_format(row, column as u16, field.name(), &bold)
                .map_err(failed)?;
        }
        sheet.set_freeze_panes(row + 1, 0).map_err(failed)?;
        Ok(Self {
            workbook,
            schema: schema.clone(),
            zones,
            next_row: row + 1,
            rows: 0,
            date: Format::new().set_num_format("yyyy-mm-dd"),
            datetime: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
        })
    }

    /// Writes the rows of `batch`.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<(), ApiError> {
        self.rows += batch.num_rows();
        if self.rows > MAX_ROWS {
            return Err(too_many_rows());
        }
        let sheet = self.workbook.worksheet_from_index(0).map_err(failed)?;
        let first_row = self.next_row;
        let options = FormatOptions::default().with_display_error(true);
        let formatters = batch
            .columns()
            .iter()
            .map(|array| ArrayFormatter::try_new(array.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        // Row by row: a sheet in constant memory takes each row whole, in order.
        for i in 0..batch.num_rows() {
            let row = first_row + i as u32;
            for (column, array) in batch.columns().iter().enumerate() {
                if array.is_null(i) {
                    continue;
                }
                let col = column as u16;
                match Cell::of(array.as_ref(), i, self.zones[column]) {
                    Cell::Number(value) => sheet.write_number(row, col, value),
                    Cell::Boolean(value) => sheet.write_boolean(row, col, value),
                    Cell::Date(serial) => {
                        sheet.write_number_with_format(row, col, serial, &self.date)
                    }
                    Cell::DateTime(serial) => {
                        sheet.write_number_with_format(row, col, serial, &self.datetime)
                    }
                    Cell::Text => {
                        let text = formatters[column].value(i).to_string();
                        if text.chars().count() > MAX_TEXT_CHARS {
                            return Err(text_too_long(self.schema.field(column).name()));
                        }
                        sheet.write_string(row, col, text)
                    }
                }
                .map_err(failed)?;
            }
        }
        self.next_row += batch.num_rows() as u32;
        Ok(())
    }

    /// The workbook's bytes, with a filter over the header row and every row.
    pub fn finish(mut self) -> Result<Vec<u8>, ApiError> {
        let last_row = self.next_row.saturating_sub(1);
        let last_col = self.schema.fields().len().saturating_sub(1) as u16;
        let header_row = self.next_row - 1 - self.rows as u32;
        let sheet = self.workbook.worksheet_from_index(0).map_err(failed)?;
        if !self.schema.fields().is_empty() {
            sheet
                .autofilter(header_row, 0, last_row, last_col)
                .map_err(failed)?;
        }
        self.workbook.save_to_buffer().map_err(failed)
    }
}

/// One value as an Excel cell (text is formatted by Arrow's display, as in CSV).
enum Cell {
    Number(f64),
    Boolean(bool),
    Date(f64),
    DateTime(f64),
    Text,
}

impl Cell {
    fn of(array: &dyn Array, i: usize, zone: Option<Tz>) -> Self {
        let integer = |value: i128| {
            if value.unsigned_abs() <= u128::from(EXACT_INTEGER) {
                Cell::Number(value as f64)
            } else {
                Cell::Text
            }
        };
        let float = |value: f64| {
            if value.is_finite() {
                Cell::Number(value)
            } else {
                Cell::Text
            }
        };
        match array.data_type() {
            DataType::Int8 => integer(array.as_primitive::<Int8Type>().value(i).into()),
            DataType::Int16 => integer(array.as_primitive::<Int16Type>().value(i).into()),
            DataType::Int32 => integer(array.as_primitive::<Int32Type>().value(i).into()),
            DataType::Int64 => integer(array.as_primitive::<Int64Type>().value(i).into()),
            DataType::UInt8 => integer(array.as_primitive::<UInt8Type>().value(i).into()),
            DataType::UInt16 => integer(array.as_primitive::<UInt16Type>().value(i).into()),
            DataType::UInt32 => integer(array.as_primitive::<UInt32Type>().value(i).into()),
            DataType::UInt64 => integer(array.as_primitive::<UInt64Type>().value(i).into()),
            DataType::Float16 => float(array.as_primitive::<Float16Type>().value(i).to_f64()),
            DataType::Float32 => float(array.as_primitive::<Float32Type>().value(i).into()),
            DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
            DataType::Boolean => {
                let values: &BooleanArray = array.as_boolean();
                Cell::Boolean(values.value(i))
            }
            DataType::Date32 => {
                let days = i64::from(
                    array
                        .as_any()
                        .downcast_ref::<Date32Array>()
                        .map_or(0, |a| a.value(i)),
                );
                if days < FIRST_EXCEL_DAY {
                    Cell::Text
                } else {
                    Cell::Date(days as f64 + UNIX_EPOCH_SERIAL)
                }
            }
            DataType::Timestamp(unit, _) => {
                let value = timestamp_value(array, i, *unit);
                let micros = match unit {
                    TimeUnit::Second => value.checked_mul(1_000_000),
                    TimeUnit::Millisecond => value.checked_mul(1_000),
                    TimeUnit::Microsecond => Some(value),
                    TimeUnit::Nanosecond => Some(value.div_euclid(1_000)),
                };
                match micros.and_then(|micros| zone.and_then(|zone| local_micros(micros, zone))) {
                    Some(local) if local.div_euclid(86_400_000_000) >= FIRST_EXCEL_DAY => {
                        Cell::DateTime(local as f64 / 86_400_000_000.0 + UNIX_EPOCH_SERIAL)
                    }
                    _ => Cell::Text,
                }
            }
            _ => Cell::Text,
        }
    }
}

fn timestamp_value(array: &dyn Array, i: usize, unit: TimeUnit) -> i64 {
    use chiso_query::datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(i),
    }
}

fn utc() -> Option<Tz> {
    "+00:00".parse().ok()
}

/// `micros` since the Unix epoch as the wall-clock microseconds of `zone` at that instant.
fn local_micros(micros: i64, zone: Tz) -> Option<i64> {
    let instant = Utc.timestamp_micros(micros).single()?;
    let offset = zone.offset_from_utc_datetime(&instant.naive_utc()).fix();
    micros.checked_add(i64::from(offset.local_minus_utc()) * 1_000_000)
}

/// Widths in characters: the longest of the name and the sampled values, within 8 and 60.
fn column_widths(schema: &Schema, sample: Option<&RecordBatch>) -> Vec<f64> {
    let options = FormatOptions::default();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(column, field)| {
            let longest = sample
                .and_then(|batch| {
                    let array = batch.column(column);
                    let formatter = ArrayFormatter::try_new(array.as_ref(), &options).ok()?;
                    (0..array.len().min(200))
                        .map(|i| formatter.value(i).to_string().chars().count())
                        .max()
                })
                .unwrap_or(0);
            let longest = match field.data_type() {
                DataType::Timestamp(..) => 19,
                DataType::Date32 => 10,
                _ => longest,
            };
            (longest.max(field.name().chars().count()) as f64 + 2.0).clamp(8.0, 60.0)
        })
        .collect()
}

pub fn too_many_rows() -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        "too_many_rows",
        format!("an Excel sheet holds {MAX_ROWS} rows below its header; ask for fewer (LIMIT) or another format"),
    )
}

fn text_too_long(column: &str) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        "value_too_large",
        format!("a value of {column:?} is longer than an Excel cell holds ({MAX_TEXT_CHARS} characters); use another format"),
    )
}

fn failed(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&error)
}

/// The heading of the Biểu 06 report (`dossier_report`'s columns): the form's title and
/// period, and its column groups — received, resolved, withdrawn, still open at the end.
pub fn report_heading(from: chrono::NaiveDate, to: chrono::NaiveDate) -> Heading {
    let span = |first: &str, last: &str, label: &str| {
        (first.to_owned(), last.to_owned(), label.to_owned())
    };
    Heading {
        title: Some(format!(
            "Biểu 06 — Tình hình, kết quả giải quyết thủ tục hành chính (dossiers received, \
             resolved and open), {from} – {to}"
        )),
        groups: vec![
            span("agency", "agency", "Đơn vị (agency)"),
            span(
                "carried_over",
                "received_total",
                "Số hồ sơ tiếp nhận (received)",
            ),
            span(
                "resolved_early",
                "resolved_total",
                "Số hồ sơ đã giải quyết (resolved)",
            ),
            span("withdrawn", "withdrawn", "Rút (withdrawn)"),
            span(
                "open_within_deadline",
                "open_total",
                "Số hồ sơ đang giải quyết (still open)",
            ),
        ],
    }
}

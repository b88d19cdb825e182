//! Timestamps in text results, formatted a column at a time.
//!
//! arrow-pg hands each timestamp to pgwire, which parses the session's `DateStyle` format
//! string (and arrow-pg the column's time zone) again for every value: profiled on a million
//! `dossiers` rows in text, that was 40 % of the server's time. Here the format and the zone
//! are parsed once per column of a batch and the column becomes the very text pgwire would
//! have written (same chrono calls: the zone's offset at each instant, the `DateStyle`'s
//! format), which arrow-pg then sends as it is. Binary columns are left alone.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::date_style::DateStyle;
use std::fmt::Write;
use std::str::FromStr;
use std::sync::Arc;

/// `batch` with every timestamp column that `fields` sends as text turned into that text.
pub(crate) fn timestamps_as_text(
    batch: RecordBatch,
    fields: &[FieldInfo],
) -> PgWireResult<RecordBatch> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    let mut schema_fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut changed = false;
    for (index, field) in fields.iter().enumerate() {
        let column = &columns[index];
        let DataType::Timestamp(unit, zone) = column.data_type() else {
            continue;
        };
        if field.format() != FieldFormat::Text {
            continue;
        }
        let style = DateStyle::new(&field.format_options().date_style);
        let format = match *field.datatype() {
            Type::TIMESTAMPTZ => style.full_tz_format_smolstr(),
            Type::TIMESTAMP => style.full_format_str().into(),
            _ => continue,
        };
        let items = StrftimeItems::new(&format).parse().map_err(api_error)?;
        let zone = zone
            .as_deref()
            .map(Tz::from_str)
            .transpose()
            .map_err(api_error)?;
        let text = match unit {
            TimeUnit::Second => format_column::<TimestampSecondType>(column, zone, &items),
            TimeUnit::Millisecond => {
                format_column::<TimestampMillisecondType>(column, zone, &items)
            }
            TimeUnit::Microsecond => {
                format_column::<TimestampMicrosecondType>(column, zone, &items)
            }
            TimeUnit::Nanosecond => format_column::<TimestampNanosecondType>(column, zone, &items),
        }
        .map_err(api_error)?;
        columns[index] = text;
        schema_fields[index] = schema_fields[index]
            .clone()
            .with_data_type(DataType::Utf8)
            .with_nullable(true);
        changed = true;
    }
    if !changed {
        return Ok(batch);
    }
    let schema = Arc::new(Schema::new_with_metadata(
        schema_fields,
        schema.metadata().clone(),
    ));
    RecordBatch::try_new(schema, columns).map_err(api_error)
}

/// The column as text; a null, or an instant chrono cannot hold, is null (as arrow-pg sends
/// it). A value the format cannot write is an error, as it is in pgwire.
fn format_column<T>(
    column: &ArrayRef,
    zone: Option<Tz>,
    items: &[Item<'_>],
) -> Result<ArrayRef, std::fmt::Error>
where
    T: ArrowPrimitiveType + datafusion::arrow::datatypes::ArrowTimestampType,
    i64: From<T::Native>,
{
    let values: &PrimitiveArray<T> = column.as_primitive();
    let mut text = StringBuilder::with_capacity(values.len(), values.len() * 32);
    for index in 0..values.len() {
        if values.is_null(index) {
            text.append_null();
            continue;
        }
        let written = match zone {
            Some(zone) => {
                values
                    .value_as_datetime_with_tz(index, zone)
                    .map(|instant: DateTime<Tz>| {
                        let instant = instant.fixed_offset();
                        write!(text, "{}", instant.format_with_items(items.iter()))
                    })
            }
            None => values.value_as_datetime(index).map(|local: NaiveDateTime| {
                write!(text, "{}", local.format_with_items(items.iter()))
            }),
        };
        match written {
            Some(written) => {
                written?;
                text.append_value("");
            }
            None => text.append_null(),
        }
    }
    Ok(Arc::new(text.finish()))
}

fn api_error(error: impl std::error::Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
    use datafusion::arrow::array::{TimestampMicrosecondArray, TimestampSecondArray};
    use pgwire::api::portal::Format;
    use pgwire::types::format::FormatOptions;

    /// The rows arrow-pg writes for `batch`, as bytes.
    fn rows(batch: RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Vec<Vec<u8>> {
        encode_recordbatch(fields.clone(), batch)
            .map(|row| row.expect("encoded").data.to_vec())
            .collect()
    }

    #[test]
    fn text_is_what_pgwire_writes_value_by_value() {
        let instants = [
            Some(1_572_568_320_000_000),
            None,
            Some(-62_135_596_800_000_000),
            Some(1_572_568_320_123_456),
            Some(i64::MAX),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "vn",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+07:00".into())),
                true,
            ),
            Field::new(
                "named",
                DataType::Timestamp(TimeUnit::Microsecond, Some("Asia/Kolkata".into())),
                true,
            ),
            Field::new(
                "local",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new(
                "seconds",
                DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, true),
        ]));
        let micros = |zone: Option<&str>| {
            let array = TimestampMicrosecondArray::from(instants.to_vec());
            Arc::new(match zone {
                Some(zone) => array.with_timezone(zone),
                None => array,
            }) as ArrayRef
        };
        let seconds =
            TimestampSecondArray::from(instants.map(|v| v.map(|v| v / 1_000_000)).to_vec())
                .with_timezone("UTC");
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                micros(Some("+07:00")),
                micros(Some("Asia/Kolkata")),
                micros(None),
                Arc::new(seconds),
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                    1, 2, 3, 4, 5,
                ])),
            ],
        )
        .unwrap();
        for style in ["ISO, YMD", "SQL, DMY", "Postgres, MDY", "German"] {
            let mut options = FormatOptions::default();
            options.date_style = style.into();
            let options = Arc::new(options);
            for format in [Format::UnifiedText, Format::UnifiedBinary] {
                let fields = Arc::new(
                    arrow_schema_to_pg_fields(&schema, &format, Some(options.clone())).unwrap(),
                );
                let converted = timestamps_as_text(batch.clone(), &fields).unwrap();
                if matches!(format, Format::UnifiedBinary) {
                    assert_eq!(converted.schema(), schema, "binary columns left alone");
                } else {
                    assert_eq!(converted.column(0).data_type(), &DataType::Utf8);
                }
                assert_eq!(
                    rows(converted, &fields),
                    rows(batch.clone(), &fields),
                    "{style}"
                );
            }
        }
    }
}

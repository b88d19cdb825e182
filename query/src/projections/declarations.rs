//! The calendar's announcements (`HolidayDeclared`, `WorkdaySwapped`), kept in log order: the
//! calendar in force is built from them ([`crate::calendar::Calendar`]).

use super::columns::{batch, ints, optional_strings, schema, string_at, strings, Columns};
use super::tables::Tables;
use super::Partition;
use crate::calendar::Declaration;
use chiso_ingest::DomainEvent;
use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::LazyLock;

/// The `calendar` segment: one row per announcement, in log order.
pub static DECLARATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("year", Int32, true),
        ("holiday", Utf8, true),
        ("name", Utf8, true),
        ("dates", Utf8, true),
        ("swap_from", Utf8, true),
        ("swap_to", Utf8, true),
        ("source", Utf8, false),
    ])
});

impl Tables {
    /// Folds an announcement of the stream `calendar-{id}`.
    pub(super) fn declare(&mut self, id: &str, event: DomainEvent) {
        let declaration = match event {
            DomainEvent::HolidayDeclared(e) => {
                let Ok(year) = id.parse() else { return };
                Declaration::Holiday {
                    year,
                    holiday: e.holiday,
                    name: e.name,
                    dates: e.dates,
                    source: e.source,
                }
            }
            DomainEvent::WorkdaySwapped(e) => Declaration::Swap {
                from: e.from,
                to: e.to,
                source: e.source,
            },
            _ => return,
        };
        self.declarations.push(declaration);
        self.dirty.insert(Partition::Calendar);
    }

    /// The announcements as the `calendar` segment.
    pub fn declarations_batch(&self) -> RecordBatch {
        let rows = &self.declarations;
        let holiday = |d: &Declaration| match d {
            Declaration::Holiday {
                year,
                holiday,
                name,
                dates,
                ..
            } => Some((*year, holiday.clone(), name.clone(), join(dates))),
            Declaration::Swap { .. } => None,
        };
        let swap = |d: &Declaration| match d {
            Declaration::Swap { from, to, .. } => Some((from.to_string(), to.to_string())),
            Declaration::Holiday { .. } => None,
        };
        let holidays: Vec<_> = rows.iter().map(holiday).collect();
        let swaps: Vec<_> = rows.iter().map(swap).collect();
        batch(
            &DECLARATIONS,
            vec![
                ints(holidays.iter().map(|h| h.as_ref().map(|h| h.0))),
                optional_strings(holidays.iter().map(|h| h.as_ref().map(|h| h.1.as_str()))),
                optional_strings(holidays.iter().map(|h| h.as_ref().map(|h| h.2.as_str()))),
                optional_strings(holidays.iter().map(|h| h.as_ref().map(|h| h.3.as_str()))),
                optional_strings(swaps.iter().map(|s| s.as_ref().map(|s| s.0.as_str()))),
                optional_strings(swaps.iter().map(|s| s.as_ref().map(|s| s.1.as_str()))),
                strings(rows.iter().map(|d| match d {
                    Declaration::Holiday { source, .. } | Declaration::Swap { source, .. } => {
                        source.as_str()
                    }
                })),
            ],
        )
    }

    pub(super) fn restore_declarations(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (year, holiday, name) = (c.int32("year")?, c.strings("holiday")?, c.strings("name")?);
        let (dates, from, to) = (
            c.strings("dates")?,
            c.strings("swap_from")?,
            c.strings("swap_to")?,
        );
        let source = c.strings("source")?;
        let date = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("not a date: {text}"))
        };
        for row in 0..batch.num_rows() {
            let source = source.value(row).to_owned();
            let declaration = match (string_at(holiday, row), string_at(from, row)) {
                (Some(holiday), _) => Declaration::Holiday {
                    year: year.value(row),
                    holiday: holiday.to_owned(),
                    name: string_at(name, row).unwrap_or(holiday).to_owned(),
                    dates: string_at(dates, row)
                        .unwrap_or_default()
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(date)
                        .collect::<Result<_, _>>()?,
                    source,
                },
                (None, Some(from)) => Declaration::Swap {
                    from: date(from)?,
                    to: date(string_at(to, row).ok_or("a swap without its day worked")?)?,
                    source,
                },
                (None, None) => return Err("an announcement that is neither kind".into()),
            };
            self.declarations.push(declaration);
        }
        Ok(())
    }
}

fn join(dates: &[NaiveDate]) -> String {
    let dates: Vec<String> = dates.iter().map(NaiveDate::to_string).collect();
    dates.join(",")
}

//! The calendar's announcements (`HolidayDeclared`, `WorkdaySwapped`), kept in log order: the
//! calendar in force is built from them ([`crate::calendar::Calendar`]). Their segment holds
//! each as the event it came in, read back by the catalog's own decoder.

use super::columns::{batch, ints, schema, strings, Columns};
use super::tables::Tables;
use super::Partition;
use chiso_ingest::DomainEvent;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::LazyLock;

/// The `calendar` segment: the stream's year and the event (`{"type", "data"}`), in log order.
pub static DECLARATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("year", DataType::Int32, false),
        ("event", DataType::Utf8, false),
    ])
});

impl Tables {
    /// Folds an announcement of the stream `calendar-{id}`.
    pub(super) fn declare(&mut self, id: &str, event: DomainEvent) {
        if let Ok(year) = id.parse() {
            self.declarations.push((year, event));
            self.dirty.insert(Partition::Calendar);
        }
    }

    /// The announcements as the `calendar` segment.
    pub fn declarations_batch(&self) -> RecordBatch {
        let events: Vec<String> = self
            .declarations
            .iter()
            .map(|(_, event)| serde_json::to_string(event).expect("an event is JSON"))
            .collect();
        batch(
            &DECLARATIONS,
            vec![
                ints(self.declarations.iter().map(|(year, _)| Some(*year))),
                strings(events.iter().map(String::as_str)),
            ],
        )
    }

    pub(super) fn restore_declarations(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (year, event) = (c.int32("year")?, c.strings("event")?);
        for row in 0..batch.num_rows() {
            let decoded = serde_json::from_str(event.value(row))
                .map_err(|e| format!("an announcement that does not decode: {e}"))?;
            self.declarations.push((year.value(row), decoded));
        }
        Ok(())
    }
}

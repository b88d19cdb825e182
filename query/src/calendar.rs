//! The working-day calendar in SQL: the calendar in force ([`CalendarSource`], rebuilt by the
//! fold when an announcement arrives), the `calendar` table and the functions
//! `working_days(from, to)` and `add_working_days(time, n)`. What a working day is lives in
//! [`chiso_ingest::calendar`].

mod functions;

pub use chiso_ingest::calendar::{days_since_epoch, Calendar, Declaration};
pub use functions::register;

use chrono::Datelike;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

/// `calendar`.
pub static CALENDAR: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("weekday", DataType::Int32, false),
        Field::new("is_working_day", DataType::Boolean, false),
        Field::new("holiday", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
    ]))
});

/// A calendar in force, with its table built at the first read.
#[derive(Debug)]
pub struct InForce {
    /// The calendar.
    pub calendar: Calendar,
    table: OnceLock<RecordBatch>,
}

impl InForce {
    fn new(calendar: Calendar) -> Self {
        Self {
            calendar,
            table: OnceLock::new(),
        }
    }

    /// The `calendar` table: one row per date.
    pub fn table(&self) -> RecordBatch {
        self.table
            .get_or_init(|| {
                let days: Vec<_> = self.calendar.days().collect();
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Date32Array::from_iter_values(
                        days.iter().map(|(date, _)| days_since_epoch(*date)),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        days.iter()
                            .map(|(date, _)| date.weekday().number_from_monday() as i32),
                    )),
                    Arc::new(
                        days.iter()
                            .map(|(_, day)| Some(day.working))
                            .collect::<BooleanArray>(),
                    ),
                    Arc::new(
                        days.iter()
                            .map(|(_, day)| day.holiday.as_deref())
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        days.iter()
                            .map(|(_, day)| day.source.as_deref())
                            .collect::<StringArray>(),
                    ),
                ];
                RecordBatch::try_new(CALENDAR.clone(), columns).expect("the calendar's columns")
            })
            .clone()
    }
}

/// The calendar in force, shared by the fold (which replaces it when an announcement is
/// folded) and the SQL functions (which read it per batch).
#[derive(Debug, Clone)]
pub struct CalendarSource(Arc<RwLock<Arc<InForce>>>);

impl Default for CalendarSource {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Arc::new(InForce::new(
            Calendar::new(&[]),
        )))))
    }
}

impl CalendarSource {
    /// The calendar now.
    pub fn current(&self) -> Arc<InForce> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `calendar` in force.
    pub fn replace(&self, calendar: Calendar) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(InForce::new(calendar));
    }
}

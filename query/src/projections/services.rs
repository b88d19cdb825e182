//! `services` (current state) and `service_levels` (one row per service and validity span).

use super::columns::{batch, ints, optional, schema, strings, times, timestamp, Columns};
use super::tables::{sorted, Tables};
use super::Partition;
use crate::local_time::micros;
use chiso_ingest::ServiceLaunched;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::{Arc, LazyLock};

/// A service's level from `from` until `to` (open when current).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSpan {
    pub level: u8,
    pub from: i64,
    pub to: Option<i64>,
}

/// A service, current state and level history.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Its code, interned: what a dossier row of it holds.
    pub code: Arc<str>,
    pub agency: Arc<str>,
    pub name: String,
    pub field: String,
    pub level: u8,
    pub launched_at: i64,
    pub withdrawn_at: Option<i64>,
    pub spans: Vec<LevelSpan>,
}

impl Service {
    /// The level in effect at `at`; the first level before launch.
    pub fn level_at(&self, at: i64) -> u8 {
        self.spans
            .iter()
            .rev()
            .find(|span| span.from <= at)
            .or(self.spans.first())
            .map_or(self.level, |span| span.level)
    }
}

/// `services`: current state.
pub static SERVICES: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("code", Utf8, false),
        ("agency", Utf8, false),
        ("name", Utf8, false),
        ("field", Utf8, false),
        ("level", Int32, false),
        ("launched_at", timestamp(), false),
        ("withdrawn_at", timestamp(), true),
    ])
});

/// `service_levels`: one row per service and validity span.
pub static SERVICE_LEVELS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("code", Utf8, false),
        ("agency", Utf8, false),
        ("level", Int32, false),
        ("valid_from", timestamp(), false),
        ("valid_to", timestamp(), true),
    ])
});

impl Tables {
    pub(super) fn launch_service(&mut self, e: ServiceLaunched) {
        let at = micros(&e.at.0);
        let service = Service {
            code: self.intern(&e.code),
            agency: self.intern(&e.agency),
            name: e.name,
            field: e.field,
            level: e.level,
            launched_at: at,
            withdrawn_at: None,
            spans: vec![LevelSpan {
                level: e.level,
                from: at,
                to: None,
            }],
        };
        self.services.insert(e.code, service);
        self.dirty.insert(Partition::Services);
    }

    /// A level change (`Some`) or a withdrawal (`None`) at `at`.
    pub(super) fn change_service(&mut self, code: &str, at: i64, level: Option<u8>) {
        let Some(service) = self.services.get_mut(code) else {
            return;
        };
        if let Some(span) = service.spans.last_mut().filter(|s| s.to.is_none()) {
            span.to = Some(at);
        }
        match level {
            Some(level) => {
                service.level = level;
                service.spans.push(LevelSpan {
                    level,
                    from: at,
                    to: None,
                });
            }
            None => service.withdrawn_at = Some(at),
        }
        self.dirty.insert(Partition::Services);
    }

    /// The `services` table.
    pub fn services_batch(&self) -> RecordBatch {
        let rows = sorted(&self.services);
        let values = || rows.iter().map(|(_, s)| s);
        batch(
            &SERVICES,
            vec![
                strings(rows.iter().map(|(code, _)| code.as_str())),
                strings(values().map(|s| &*s.agency)),
                strings(values().map(|s| s.name.as_str())),
                strings(values().map(|s| s.field.as_str())),
                ints(values().map(|s| Some(i32::from(s.level)))),
                times(values().map(|s| Some(s.launched_at))),
                times(values().map(|s| s.withdrawn_at)),
            ],
        )
    }

    /// The `service_levels` table.
    pub fn service_levels_batch(&self) -> RecordBatch {
        let spans: Vec<(&String, &Service, &LevelSpan)> = sorted(&self.services)
            .into_iter()
            .flat_map(|(code, s)| s.spans.iter().map(move |span| (code, s, span)))
            .collect();
        batch(
            &SERVICE_LEVELS,
            vec![
                strings(spans.iter().map(|(code, _, _)| code.as_str())),
                strings(spans.iter().map(|(_, s, _)| &*s.agency)),
                ints(spans.iter().map(|(_, _, span)| Some(i32::from(span.level)))),
                times(spans.iter().map(|(_, _, span)| Some(span.from))),
                times(spans.iter().map(|(_, _, span)| span.to)),
            ],
        )
    }

    pub(super) fn restore_services(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, agency, name) = (c.strings("code")?, c.strings("agency")?, c.strings("name")?);
        let (field, level) = (c.strings("field")?, c.int32("level")?);
        let (launched, withdrawn) = (c.times("launched_at")?, c.times("withdrawn_at")?);
        for row in 0..batch.num_rows() {
            let service = Service {
                code: self.intern(code.value(row)),
                agency: self.intern(agency.value(row)),
                name: name.value(row).to_owned(),
                field: field.value(row).to_owned(),
                level: level.value(row) as u8,
                launched_at: launched.value(row),
                withdrawn_at: optional(withdrawn, row, |i| withdrawn.value(i)),
                spans: Vec::new(),
            };
            self.services.insert(code.value(row).to_owned(), service);
        }
        Ok(())
    }

    /// Level spans go back into their services (restored first).
    pub(super) fn restore_service_levels(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, level) = (c.strings("code")?, c.int32("level")?);
        let (from, to) = (c.times("valid_from")?, c.times("valid_to")?);
        for row in 0..batch.num_rows() {
            let service = self
                .services
                .get_mut(code.value(row))
                .ok_or("a level span of an unknown service")?;
            service.spans.push(LevelSpan {
                level: level.value(row) as u8,
                from: from.value(row),
                to: optional(to, row, |i| to.value(i)),
            });
        }
        Ok(())
    }
}

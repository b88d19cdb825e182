//! The tables' Arrow schemas (DESIGN §5), and their state as record batches: for queries,
//! and as the content of segment files.

use super::model::{
    channel_name, outcome_name, Agency, DayCounts, Dossier, LevelSpan, Ranking, Service, Tables,
};
use crate::local_time::{MonthKey, ZONE};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, LazyLock};

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(ZONE.into()))
}

fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, data_type, nullable)| Field::new(*name, data_type.clone(), *nullable))
            .collect::<Vec<_>>(),
    ))
}

/// `events`: one row per event.
pub static EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("position", Int64, false),
        ("stream", Utf8, false),
        ("revision", Int64, false),
        ("event_id", Utf8, false),
        ("type", Utf8, false),
        ("recorded_at", timestamp(), false),
        ("data", Utf8, false),
        ("metadata", Utf8, false),
    ])
});

/// `agencies`.
pub static AGENCIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("code", Utf8, false),
        ("name", Utf8, false),
        ("kind", Utf8, false),
        ("parent", Utf8, true),
        ("province", Utf8, false),
    ])
});

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

/// `dossiers`.
pub static DOSSIERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("id", Utf8, false),
        ("agency", Utf8, false),
        ("province", Utf8, true),
        ("service", Utf8, false),
        ("service_level", Int32, true),
        ("channel", Utf8, false),
        ("received_at", timestamp(), false),
        ("due_at", timestamp(), false),
        ("effective_due_at", timestamp(), false),
        ("resolved_at", timestamp(), true),
        ("withdrawn_at", timestamp(), true),
        ("status", Utf8, false),
        ("outcome", Utf8, true),
        ("timeliness", Utf8, true),
        ("paused_seconds", Int64, false),
        ("paid_online", Boolean, true),
        ("rating", Int32, true),
    ])
});

/// How dossiers are stored in segments: what the fold needs, nothing derived.
static DOSSIER_SEGMENT: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("id", Utf8, false),
        ("agency", Utf8, false),
        ("service", Utf8, false),
        ("service_level", Int32, true),
        ("channel", Utf8, false),
        ("received_at", Int64, false),
        ("due_at", Int64, false),
        ("resolved_at", Int64, true),
        ("withdrawn_at", Int64, true),
        ("outcome", Utf8, true),
        ("pauses", Utf8, true),
        ("paid_online", Boolean, true),
        ("rating", Int32, true),
    ])
});

/// `agency_daily`.
pub static AGENCY_DAILY: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let mut fields = vec![
        ("day", Date32, false),
        ("agency", Utf8, false),
        ("province", Utf8, true),
    ];
    fields.extend(DAILY_COUNTERS.iter().map(|name| (*name, Int64, false)));
    schema(&fields)
});

const DAILY_COUNTERS: [&str; 7] = [
    "received",
    "received_online",
    "resolved",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "withdrawn",
];

/// `ict_index`.
pub static ICT_INDEX: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("year", Int32, false),
        ("province", Utf8, false),
        ("rank", Int32, false),
        ("score", Float64, true),
    ])
});

/// `rankings`.
pub static RANKINGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("month", Utf8, false),
        ("scope", Utf8, false),
        ("metric", Utf8, false),
        ("agency", Utf8, false),
        ("value", Float64, false),
        ("rank", Int32, false),
        ("position", Int64, false),
    ])
});

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), columns).expect("columns match their schema")
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn times(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .into_iter()
            .collect::<TimestampMicrosecondArray>()
            .with_timezone(ZONE),
    )
}

fn ints(values: impl IntoIterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

fn longs(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int64Array>())
}

impl Tables {
    /// The `agencies` table.
    pub fn agencies_batch(&self) -> RecordBatch {
        let rows = &self.agencies;
        batch(
            &AGENCIES,
            vec![
                strings(rows.keys().map(String::as_str)),
                strings(rows.values().map(|a| a.name.as_str())),
                strings(rows.values().map(|a| a.kind)),
                optional_strings(rows.values().map(|a| a.parent.as_deref())),
                strings(rows.values().map(|a| &*a.province)),
            ],
        )
    }

    /// The `services` table.
    pub fn services_batch(&self) -> RecordBatch {
        let rows = &self.services;
        batch(
            &SERVICES,
            vec![
                strings(rows.keys().map(String::as_str)),
                strings(rows.values().map(|s| &*s.agency)),
                strings(rows.values().map(|s| s.name.as_str())),
                strings(rows.values().map(|s| s.field.as_str())),
                ints(rows.values().map(|s| Some(i32::from(s.level)))),
                times(rows.values().map(|s| Some(s.launched_at))),
                times(rows.values().map(|s| s.withdrawn_at)),
            ],
        )
    }

    /// The `service_levels` table.
    pub fn service_levels_batch(&self) -> RecordBatch {
        let spans: Vec<(&String, &Service, &LevelSpan)> = self
            .services
            .iter()
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

    /// The `ict_index` table.
    pub fn ict_index_batch(&self) -> RecordBatch {
        let rows = &self.ict_index;
        batch(
            &ICT_INDEX,
            vec![
                ints(rows.keys().map(|(year, _)| Some(*year))),
                strings(rows.keys().map(|(_, province)| province.as_str())),
                ints(rows.values().map(|(rank, _)| Some(*rank))),
                Arc::new(
                    rows.values()
                        .map(|(_, score)| *score)
                        .collect::<Float64Array>(),
                ),
            ],
        )
    }

    /// The `rankings` table.
    pub fn rankings_batch(&self) -> RecordBatch {
        type Row<'a> = (
            &'a (String, String, String),
            &'a Ranking,
            &'a (String, f64, u32),
        );
        let rows: Vec<Row> = self
            .rankings
            .iter()
            .flat_map(|(key, r)| r.entries.iter().map(move |entry| (key, r, entry)))
            .collect();
        batch(
            &RANKINGS,
            vec![
                strings(rows.iter().map(|(k, _, _)| k.0.as_str())),
                strings(rows.iter().map(|(k, _, _)| k.1.as_str())),
                strings(rows.iter().map(|(k, _, _)| k.2.as_str())),
                strings(rows.iter().map(|(_, _, e)| e.0.as_str())),
                Arc::new(
                    rows.iter()
                        .map(|(_, _, e)| Some(e.1))
                        .collect::<Float64Array>(),
                ),
                ints(rows.iter().map(|(_, _, e)| Some(e.2 as i32))),
                longs(rows.iter().map(|(_, r, _)| Some(r.position as i64))),
            ],
        )
    }

    /// One month of `agency_daily`.
    pub fn daily_batch(&self, month: MonthKey) -> RecordBatch {
        let empty = Default::default();
        let rows = self.daily.get(&month).unwrap_or(&empty);
        let counter = |get: fn(&DayCounts) -> i64| longs(rows.values().map(|c| Some(get(c))));
        batch(
            &AGENCY_DAILY,
            vec![
                Arc::new(Date32Array::from_iter_values(
                    rows.keys().map(|(day, _)| *day),
                )),
                strings(rows.keys().map(|(_, agency)| &**agency)),
                optional_strings(rows.keys().map(|(_, agency)| self.province_of(agency))),
                counter(|c| c.received),
                counter(|c| c.received_online),
                counter(|c| c.resolved),
                counter(|c| c.resolved_early),
                counter(|c| c.resolved_on_time),
                counter(|c| c.resolved_late),
                counter(|c| c.withdrawn),
            ],
        )
    }

    fn province_of(&self, agency: &str) -> Option<&str> {
        self.agencies.get(agency).map(|a| &*a.province)
    }

    /// One month of `dossiers`, with open pauses counted up to `now`.
    pub fn dossiers_batch(&self, month: MonthKey, now: i64) -> RecordBatch {
        let rows: &[Dossier] = self.dossiers.get(&month).map_or(&[], |p| &p.rows);
        let as_of = |d: &Dossier| d.closed_at().unwrap_or(now);
        batch(
            &DOSSIERS,
            vec![
                strings(rows.iter().map(|d| &*d.id)),
                strings(rows.iter().map(|d| &*d.agency)),
                optional_strings(rows.iter().map(|d| self.province_of(&d.agency))),
                strings(rows.iter().map(|d| &*d.service)),
                ints(rows.iter().map(|d| d.service_level.map(i32::from))),
                strings(rows.iter().map(|d| channel_name(d.channel))),
                times(rows.iter().map(|d| Some(d.received_at))),
                times(rows.iter().map(|d| Some(d.due_at))),
                times(rows.iter().map(|d| Some(d.effective_due_at(as_of(d))))),
                times(rows.iter().map(|d| d.resolved_at)),
                times(rows.iter().map(|d| d.withdrawn_at)),
                strings(rows.iter().map(status)),
                optional_strings(rows.iter().map(|d| d.outcome.map(outcome_name))),
                optional_strings(rows.iter().map(|d| d.timeliness().map(|t| t.name()))),
                longs(
                    rows.iter()
                        .map(|d| Some(d.paused_micros(as_of(d)) / 1_000_000)),
                ),
                Arc::new(rows.iter().map(|d| d.paid_online).collect::<BooleanArray>()),
                ints(rows.iter().map(|d| d.rating.map(i32::from))),
            ],
        )
    }

    /// One month of dossiers as stored in a segment.
    pub fn dossier_segment(&self, month: MonthKey) -> RecordBatch {
        let rows: &[Dossier] = self.dossiers.get(&month).map_or(&[], |p| &p.rows);
        batch(
            &DOSSIER_SEGMENT,
            vec![
                strings(rows.iter().map(|d| &*d.id)),
                strings(rows.iter().map(|d| &*d.agency)),
                strings(rows.iter().map(|d| &*d.service)),
                ints(rows.iter().map(|d| d.service_level.map(i32::from))),
                strings(rows.iter().map(|d| channel_name(d.channel))),
                longs(rows.iter().map(|d| Some(d.received_at))),
                longs(rows.iter().map(|d| Some(d.due_at))),
                longs(rows.iter().map(|d| d.resolved_at)),
                longs(rows.iter().map(|d| d.withdrawn_at)),
                optional_strings(rows.iter().map(|d| d.outcome.map(outcome_name))),
                Arc::new(
                    rows.iter()
                        .map(|d| (!d.pauses.is_empty()).then(|| encode_pauses(&d.pauses)))
                        .collect::<StringArray>(),
                ),
                Arc::new(rows.iter().map(|d| d.paid_online).collect::<BooleanArray>()),
                ints(rows.iter().map(|d| d.rating.map(i32::from))),
            ],
        )
    }
}

fn status(dossier: &Dossier) -> &'static str {
    if dossier.resolved_at.is_some() {
        "resolved"
    } else if dossier.withdrawn_at.is_some() {
        "withdrawn"
    } else {
        "open"
    }
}

/// `start-end,start-` in µs (an open pause has no end).
fn encode_pauses(pauses: &[(i64, Option<i64>)]) -> String {
    let spans: Vec<String> = pauses
        .iter()
        .map(|(start, end)| format!("{start}~{}", end.map_or(String::new(), |e| e.to_string())))
        .collect();
    spans.join(",")
}

fn decode_pauses(text: &str) -> Option<Vec<(i64, Option<i64>)>> {
    text.split(',')
        .map(|span| {
            let (start, end) = span.split_once('~')?;
            let end = if end.is_empty() {
                None
            } else {
                Some(end.parse().ok()?)
            };
            Some((start.parse().ok()?, end))
        })
        .collect()
}

/// Reads columns of a segment batch by name, checking their types.
pub struct Columns<'a>(pub &'a RecordBatch);

impl Columns<'_> {
    fn get<T: 'static>(&self, name: &str) -> Result<&T, String> {
        self.0
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} is missing or has another type"))
    }

    pub fn strings(&self, name: &str) -> Result<&StringArray, String> {
        self.get(name)
    }

    pub fn int32(&self, name: &str) -> Result<&Int32Array, String> {
        self.get(name)
    }

    pub fn int64(&self, name: &str) -> Result<&Int64Array, String> {
        self.get(name)
    }

    pub fn times(&self, name: &str) -> Result<&TimestampMicrosecondArray, String> {
        self.get(name)
    }
}

fn optional<A: Array, T>(array: &A, row: usize, value: impl Fn(usize) -> T) -> Option<T> {
    array.is_valid(row).then(|| value(row))
}

fn string_at(array: &StringArray, row: usize) -> Option<&str> {
    optional(array, row, |i| array.value(i))
}

impl Tables {
    /// Restores the rows of a segment of `table` (`month` for time-series tables).
    pub fn restore(
        &mut self,
        table: &str,
        month: Option<MonthKey>,
        batch: &RecordBatch,
    ) -> Result<(), String> {
        match (table, month) {
            ("agencies", _) => self.restore_agencies(batch),
            ("services", _) => self.restore_services(batch),
            ("service_levels", _) => self.restore_service_levels(batch),
            ("ict_index", _) => self.restore_ict(batch),
            ("rankings", _) => self.restore_rankings(batch),
            ("dossiers", Some(month)) => self.restore_dossiers(month, batch),
            ("agency_daily", Some(month)) => self.restore_daily(month, batch),
            _ => Err(format!("no table {table} to restore")),
        }
    }

    fn restore_agencies(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, name, kind) = (c.strings("code")?, c.strings("name")?, c.strings("kind")?);
        let (parent, province) = (c.strings("parent")?, c.strings("province")?);
        for row in 0..batch.num_rows() {
            let kind = [
                "ministry",
                "province",
                "department",
                "center",
                "district",
                "commune",
            ]
            .into_iter()
            .find(|k| *k == kind.value(row))
            .ok_or("unknown agency kind")?;
            let agency = Agency {
                name: name.value(row).to_owned(),
                kind,
                parent: string_at(parent, row).map(str::to_owned),
                province: self.intern(province.value(row)),
            };
            self.agencies.insert(code.value(row).to_owned(), agency);
        }
        Ok(())
    }

    fn restore_services(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, agency, name) = (c.strings("code")?, c.strings("agency")?, c.strings("name")?);
        let (field, level) = (c.strings("field")?, c.int32("level")?);
        let (launched, withdrawn) = (c.times("launched_at")?, c.times("withdrawn_at")?);
        for row in 0..batch.num_rows() {
            let service = Service {
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

    /// Level spans go back into their services (restored first: "services" < "service_levels").
    fn restore_service_levels(&mut self, batch: &RecordBatch) -> Result<(), String> {
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

    fn restore_ict(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (year, province, rank) = (c.int32("year")?, c.strings("province")?, c.int32("rank")?);
        let score = c.get::<Float64Array>("score")?;
        for row in 0..batch.num_rows() {
            self.ict_index.insert(
                (year.value(row), province.value(row).to_owned()),
                (rank.value(row), optional(score, row, |i| score.value(i))),
            );
        }
        Ok(())
    }

    fn restore_rankings(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (month, scope, metric) = (
            c.strings("month")?,
            c.strings("scope")?,
            c.strings("metric")?,
        );
        let (agency, value) = (c.strings("agency")?, c.get::<Float64Array>("value")?);
        let (rank, position) = (c.int32("rank")?, c.int64("position")?);
        for row in 0..batch.num_rows() {
            let key = (
                month.value(row).to_owned(),
                scope.value(row).to_owned(),
                metric.value(row).to_owned(),
            );
            let ranking = self.rankings.entry(key).or_insert_with(|| Ranking {
                position: position.value(row) as u64,
                entries: Vec::new(),
            });
            ranking.entries.push((
                agency.value(row).to_owned(),
                value.value(row),
                rank.value(row) as u32,
            ));
        }
        Ok(())
    }

    fn restore_daily(&mut self, month: MonthKey, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (day, agency) = (c.get::<Date32Array>("day")?, c.strings("agency")?);
        let counters: Vec<&Int64Array> = DAILY_COUNTERS
            .iter()
            .map(|name| c.int64(name))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let at = |i: usize| counters[i].value(row);
            let counts = DayCounts {
                received: at(0),
                received_online: at(1),
                resolved: at(2),
                resolved_early: at(3),
                resolved_on_time: at(4),
                resolved_late: at(5),
                withdrawn: at(6),
            };
            let agency = self.intern(agency.value(row));
            self.daily
                .entry(month)
                .or_default()
                .insert((day.value(row), agency), counts);
        }
        Ok(())
    }

    fn restore_dossiers(&mut self, month: MonthKey, batch: &RecordBatch) -> Result<(), String> {
        use chiso_ingest::{Channel, Outcome};
        let c = Columns(batch);
        let (id, agency, service) = (
            c.strings("id")?,
            c.strings("agency")?,
            c.strings("service")?,
        );
        let (level, channel, outcome) = (
            c.int32("service_level")?,
            c.strings("channel")?,
            c.strings("outcome")?,
        );
        let (received, due) = (c.int64("received_at")?, c.int64("due_at")?);
        let (resolved, withdrawn) = (c.int64("resolved_at")?, c.int64("withdrawn_at")?);
        let (pauses, rating) = (c.strings("pauses")?, c.int32("rating")?);
        let paid = c.get::<BooleanArray>("paid_online")?;
        for row in 0..batch.num_rows() {
            let channel = match channel.value(row) {
                "online" => Channel::Online,
                "postal" => Channel::Postal,
                _ => Channel::Direct,
            };
            let outcome = string_at(outcome, row).map(|o| match o {
                "approved" => Outcome::Approved,
                _ => Outcome::Rejected,
            });
            let pauses = match string_at(pauses, row) {
                Some(text) => decode_pauses(text).ok_or("unreadable pauses")?,
                None => Vec::new(),
            };
            let dossier = Dossier {
                id: id.value(row).into(),
                agency: self.intern(agency.value(row)),
                service: self.intern(service.value(row)),
                service_level: optional(level, row, |i| level.value(i) as u8),
                channel,
                received_at: received.value(row),
                due_at: due.value(row),
                resolved_at: optional(resolved, row, |i| resolved.value(i)),
                withdrawn_at: optional(withdrawn, row, |i| withdrawn.value(i)),
                outcome,
                pauses,
                paid_online: optional(paid, row, |i| paid.value(i)),
                rating: optional(rating, row, |i| rating.value(i) as u8),
            };
            self.restore_dossier(month, dossier);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_round_trip() {
        let pauses = vec![(1, Some(5)), (-7, None)];
        assert_eq!(decode_pauses(&encode_pauses(&pauses)), Some(pauses));
    }
}

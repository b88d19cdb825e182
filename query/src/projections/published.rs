//! `rankings`: the latest publication of each month, scope and metric, one row per entry.

use super::columns::{batch, ints, longs, schema, strings, Columns};
use super::tables::Tables;
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::{Arc, LazyLock};

/// One published ranking (the latest for its month, scope and metric).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// The log position of the publishing event.
    pub position: u64,
    /// `(agency, value, rank)`.
    pub entries: Vec<(String, f64, u32)>,
}

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

impl Tables {
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

    pub(super) fn restore_rankings(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (month, scope, metric) = (
            c.strings("month")?,
            c.strings("scope")?,
            c.strings("metric")?,
        );
        let (agency, value) = (c.strings("agency")?, c.get::<Float64Array>("value")?);
        let (rank, position) = (c.int32("rank")?, c.int64("position")?);
        // A segment lists the entries of each ranking one after another (the map's order):
        // each ranking is looked up once, not once an entry.
        let key_at = |row: usize| (month.value(row), scope.value(row), metric.value(row));
        let mut row = 0;
        while row < batch.num_rows() {
            let key = key_at(row);
            let end = (row + 1..batch.num_rows())
                .find(|&next| key_at(next) != key)
                .unwrap_or(batch.num_rows());
            let owned = (key.0.to_owned(), key.1.to_owned(), key.2.to_owned());
            let ranking = self.rankings.entry(owned).or_insert_with(|| Ranking {
                position: position.value(row) as u64,
                entries: Vec::with_capacity(end - row),
            });
            ranking.entries.extend((row..end).map(|entry| {
                (
                    agency.value(entry).to_owned(),
                    value.value(entry),
                    rank.value(entry) as u32,
                )
            }));
            row = end;
        }
        Ok(())
    }
}

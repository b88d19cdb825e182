//! `ict_index`: one row per province and year of the ICT Index.

use super::columns::{batch, ints, optional, schema, strings, Columns};
use super::tables::Tables;
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::{Arc, LazyLock};

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

impl Tables {
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

    pub(super) fn restore_ict(&mut self, batch: &RecordBatch) -> Result<(), String> {
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
}

//! Sealed months: a month's closed dossiers written once as an immutable Parquet file with
//! every SQL column computed, sorted by `(province, agency, received_at)` so row-group and page
//! statistics prune, strings dictionary-encoded. Rows that later events changed are hidden by
//! a deletion vector (row numbers in the file) until the month is compacted into a new file.
//!
//! Files are named in the manifest as `dossiers/YYYY-MM@sealed`; their footer carries the
//! latest close time (`chiso.last_closed`), so a restart needs no scan.

use super::dossiers::{dossiers_batch, Dossier, STORED};
use crate::error::{Error, Result};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn,
};
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::{KeyValue, SortingColumn};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::path::Path;
use std::sync::Arc;

/// Rows per row group: small enough that one province's rows skip the others'.
const ROW_GROUP_ROWS: usize = 32_768;
/// Footer key of the latest close time in a sealed file.
const LAST_CLOSED: &str = "chiso.last_closed";
/// Footer key of a month segment's deletion vector.
pub const DELETED: &str = "chiso.deleted";

/// A month's sealed file.
#[derive(Debug, Clone)]
pub struct SealedBase {
    /// File name in the segment directory, shared with every scan reading it: a replaced
    /// file is removed only once no scan holds it.
    pub file: Arc<str>,
    /// Rows in the file.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows of the file that later rows replace, ascending.
    pub deleted: Arc<Vec<u32>>,
    /// The latest time a row of the file closed.
    pub last_closed: i64,
}

impl SealedBase {
    /// Rows of the file still visible.
    pub fn live_rows(&self) -> u64 {
        self.rows - self.deleted.len() as u64
    }

    /// Hides row `row` of the file.
    pub fn delete(&mut self, row: u32) {
        let deleted = Arc::make_mut(&mut self.deleted);
        if let Err(at) = deleted.binary_search(&row) {
            deleted.insert(at, row);
        }
    }

    /// The visible rows as a Parquet row selection, or `None` when every row is.
    pub fn selection(&self) -> Option<RowSelection> {
        selection(self.rows, &self.deleted)
    }
}

/// The rows of `total` not in `deleted` (ascending), as a selection.
pub fn selection(total: u64, deleted: &[u32]) -> Option<RowSelection> {
    if deleted.is_empty() {
        return None;
    }
    let mut selectors = Vec::new();
    let mut next = 0u64;
    for &row in deleted {
        let row = u64::from(row);
        if row > next {
            selectors.push(RowSelector::select((row - next) as usize));
        }
        selectors.push(RowSelector::skip(1));
        next = row + 1;
    }
    if total > next {
        selectors.push(RowSelector::select((total - next) as usize));
    }
    Some(RowSelection::from(selectors))
}

/// The bytes of a sealed file of `rows` (closed dossiers) and `more` (rows of an earlier file),
/// sorted for pruning; `None` when there is nothing to seal.
pub fn encode_sealed(
    rows: &[Dossier],
    more: Vec<RecordBatch>,
    file: &str,
) -> Result<Option<(Vec<u8>, u64, i64)>> {
    let mut batches = more;
    batches.push(dossiers_batch(rows, i64::MAX, true));
    let all = concat_batches(&STORED, &batches).map_err(|e| failed(file, e))?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let key = |name: &str| SortColumn {
        values: all.column_by_name(name).expect("a stored column").clone(),
        options: None,
    };
    let order = lexsort_to_indices(&[key("province"), key("agency"), key("received_at")], None)
        .map_err(|e| failed(file, e))?;
    let sorted = take_record_batch(&all, &order).map_err(|e| failed(file, e))?;
    let last_closed = last_closed(&sorted);
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(
            [2, 1, 6]
                .map(|column_idx| SortingColumn {
                    column_idx,
                    descending: false,
                    nulls_first: true,
                })
                .to_vec(),
        ))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            LAST_CLOSED.into(),
            last_closed.to_string(),
        )]))
        .build();
    let bytes = encode(&sorted, properties, file)?;
    Ok(Some((bytes, sorted.num_rows() as u64, last_closed)))
}

fn last_closed(batch: &RecordBatch) -> i64 {
    use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .expect("a stored time column")
            .clone()
    };
    let (resolved, withdrawn) = (column("resolved_at"), column("withdrawn_at"));
    (0..batch.num_rows())
        .filter_map(|i| {
            let at = |a: &TimestampMicrosecondArray| a.is_valid(i).then(|| a.value(i));
            at(&resolved).or(at(&withdrawn))
        })
        .max()
        .unwrap_or(i64::MIN)
}

/// A batch as Parquet bytes with `properties`.
pub fn encode(batch: &RecordBatch, properties: WriterProperties, file: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
        .map_err(|e| failed(file, e))?;
    writer.write(batch).map_err(|e| failed(file, e))?;
    writer.close().map_err(|e| failed(file, e))?;
    Ok(bytes)
}

fn failed(file: &str, error: impl std::fmt::Display) -> Error {
    Error::Segment {
        file: file.to_owned(),
        reason: error.to_string(),
    }
}

/// What a sealed file's footer says: its rows, size and latest close time.
pub fn open_base(path: &Path, file: &str) -> Result<SealedBase> {
    let opened = std::fs::File::open(path).map_err(|e| failed(file, e))?;
    let bytes = opened.metadata().map_err(|e| failed(file, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(opened).map_err(|e| failed(file, e))?;
    let metadata = builder.metadata().file_metadata();
    let last_closed = metadata
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == LAST_CLOSED))
        .and_then(|kv| kv.value.as_deref()?.parse().ok())
        .ok_or_else(|| failed(file, "no chiso.last_closed in its footer"))?;
    Ok(SealedBase {
        file: file.into(),
        rows: metadata.num_rows() as u64,
        bytes,
        deleted: Arc::new(Vec::new()),
        last_closed,
    })
}

/// Reads the visible rows of a sealed file: `columns` by name (all when `None`).
pub fn read_base(
    path: &Path,
    base: &SealedBase,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>> {
    let file = &*base.file;
    let opened = std::fs::File::open(path).map_err(|e| failed(file, e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(opened)
        .map_err(|e| failed(file, e))?
        .with_batch_size(8192);
    if let Some(columns) = columns {
        let schema = builder.parquet_schema();
        let indices: Vec<usize> = columns
            .iter()
            .filter_map(|name| {
                (0..schema.num_columns()).find(|&i| schema.column(i).name() == *name)
            })
            .collect();
        let mask = ProjectionMask::leaves(schema, indices);
        builder = builder.with_projection(mask);
    }
    if let Some(selection) = base.selection() {
        builder = builder.with_row_selection(selection);
    }
    let reader = builder.build().map_err(|e| failed(file, e))?;
    reader
        .map(|batch| batch.map_err(|e| failed(file, e)))
        .collect()
}

/// The row of each dossier id in a sealed file.
pub fn row_numbers(path: &Path, file: &str) -> Result<std::collections::HashMap<String, u32>> {
    let base = SealedBase {
        file: file.into(),
        rows: 0,
        bytes: 0,
        deleted: Arc::new(Vec::new()),
        last_closed: 0,
    };
    let mut rows = std::collections::HashMap::new();
    for batch in read_base(path, &base, Some(&["id"]))? {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| failed(file, "id is not text"))?;
        for id in ids.iter().flatten() {
            let row = rows.len() as u32;
            rows.insert(id.to_owned(), row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_skips_exactly_the_deleted_rows() {
        assert!(selection(5, &[]).is_none());
        let picked = selection(6, &[0, 2, 3]).unwrap();
        let rows: Vec<usize> = picked
            .iter()
            .scan(0, |at, s| {
                let start = *at;
                *at += s.row_count;
                Some((!s.skip).then_some(start..*at))
            })
            .flatten()
            .flatten()
            .collect();
        assert_eq!(rows, vec![1, 4, 5]);
    }
}

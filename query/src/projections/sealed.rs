//! Sealed months: a month's closed dossiers written once as an immutable Parquet file with
//! every SQL column computed, sorted by `(province, agency, received_at)` so row-group and page
//! statistics prune, strings dictionary-encoded. Rows that later events changed are hidden by
//! a deletion vector (row numbers in the file) until the month is compacted into a new file.
//!
//! The rows closed more than [`LATE_AFTER`] after their month's end come after the others, in
//! row groups of their own (sorted the same way), and the rows still open (sealed past the
//! memory budget) last, in row groups of their own too: a report whose period ends later than
//! that reads only those, since every other row group closed before its end (the close times'
//! statistics; the open rows are the last `chiso.open_rows` of the file).
//!
//! Files are named in the manifest as `dossiers/YYYY-MM@sealed`; their footer carries the
//! latest close time (`chiso.last_closed`, the greatest time when a row is open), so a restart
//! needs no scan. The footer is parsed once, when the file is opened or written, and kept with
//! the file's [`SealedBase`].

use super::dossiers::{dossiers_batch, Dossier, STORED};
use crate::error::{Error, Result};
use datafusion::arrow::array::{
    Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt8Array,
};
use datafusion::arrow::compute::{
    concat, interleave_record_batch, lexsort_to_indices, max, SortColumn,
};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::{KeyValue, SortingColumn};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group: small enough that one province's rows skip the others'.
const ROW_GROUP_ROWS: usize = 32_768;
/// Rows closed this long after the end of their month are *late*: they are written last.
/// 45 days, as a month is sealed: nearly every dossier closes before.
pub const LATE_AFTER: i64 = 45 * 86_400_000_000;
/// Rows per row group of the late rows: few rows, so that a province's are read alone.
const LATE_ROW_GROUP_ROWS: usize = 4_096;
/// Footer key of the latest close time in a sealed file.
const LAST_CLOSED: &str = "chiso.last_closed";
/// Footer key of the latest receipt in a sealed file (the log's clock, after a restart).
const NEWEST_RECEIVED: &str = "chiso.newest_received";
/// Footer key of the number of open rows, the last of the file (absent: none).
const OPEN_ROWS: &str = "chiso.open_rows";
/// The columns of few distinct values, dictionary-encoded.
pub(crate) const DICTIONARY_COLUMNS: [&str; 10] = [
    "agency",
    "province",
    "service",
    "service_level",
    "procedure_code",
    "applicant",
    "channel",
    "status",
    "outcome",
    "timeliness",
];
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
    /// The latest time a row of the file closed (`i64::MAX` when one is open).
    pub last_closed: i64,
    /// The latest time a row of the file was received.
    pub newest_received: i64,
    /// Its footer, parsed once.
    pub footer: Option<ArrowReaderMetadata>,
}

impl SealedBase {
    /// A file of `rows` rows with nothing deleted and no close times: a segment read as it is
    /// (a cold month of `agency_daily`).
    pub fn plain(file: Arc<str>, rows: u64, bytes: u64) -> Self {
        Self {
            file,
            rows,
            bytes,
            deleted: Arc::new(Vec::new()),
            last_closed: i64::MIN,
            newest_received: i64::MIN,
            footer: None,
        }
    }

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
    (!deleted.is_empty()).then(|| selection_of_groups(&[(0, 0, total)], deleted))
}

/// Where a row goes in a sealed file: closed in time, closed late, or open.
fn place(closed: Option<i64>, late_from: i64) -> u8 {
    match closed {
        Some(at) if at < late_from => 0,
        Some(_) => 1,
        None => 2,
    }
}

/// Rows encoded at a time: a sealing or compaction holds the rows it writes once, not again
/// as one batch of every column and again sorted (1.5 GB more at a national month).
const WRITE_ROWS: usize = 8_192;

/// A sealed file's bytes, and the row of the file each row given went to.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// By the rows given — the earlier file's, then `rows` in the order [`encode_sealed`]
    /// leaves them — their row in the file.
    pub placed: Vec<u32>,
}

/// A sealed file of `rows` (dossiers, sorted here when they are all the file holds) and
/// `more` (rows of an earlier file), sorted for pruning, the rows closed at or after
/// `late_from` after the others and the open rows last; `None` when there is nothing to
/// seal.
pub fn encode_sealed(
    rows: &mut [Dossier],
    more: Vec<RecordBatch>,
    late_from: i64,
    file: &str,
) -> Result<Option<Encoded>> {
    // What the footer says and where the parts start, from each row's place (in the order of
    // the earlier file's rows, then the new ones: the order a compaction sorts them from).
    let mut places = Vec::with_capacity(rows.len());
    let (mut last_closed, mut newest_received) = (None, None);
    let mut closes = more
        .iter()
        .flat_map(|batch| first_set(batch, &["resolved_at", "withdrawn_at"]))
        .chain(rows.iter().map(Dossier::closed_at));
    for closed in &mut closes {
        places.push(place(closed, late_from));
        last_closed = last_closed.max(closed);
    }
    for batch in &more {
        let received = batch
            .column_by_name("received_at")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .and_then(max);
        newest_received = newest_received.max(received);
    }
    newest_received = newest_received.max(rows.iter().map(|d| d.received_at).max());
    if places.is_empty() {
        return Ok(None);
    }
    let mut counts = [0usize; 3];
    for place in &places {
        counts[usize::from(*place)] += 1;
    }
    let (on_time, open_from) = (counts[0], counts[0] + counts[1]);
    let last_closed = match counts[2] {
        0 => last_closed.unwrap_or(i64::MIN),
        _ => i64::MAX,
    };
    // Rows `range` of the file, in its order. A first sealing sorts the rows themselves
    // (interned names compare by address first); a compaction sorts the earlier file's rows
    // and the new ones by their keys, and takes each chunk from them.
    let compacted: Vec<RecordBatch>;
    let in_file: Vec<u32>;
    let chunk: Box<dyn Fn(Range<usize>) -> Result<RecordBatch> + '_> = if more.is_empty() {
        let placed = |d: &Dossier| place(d.closed_at(), late_from);
        rows.sort_unstable_by(|a, b| {
            placed(a)
                .cmp(&placed(b))
                .then_with(|| compare_names(a.province.as_ref(), b.province.as_ref()))
                .then_with(|| compare_names(Some(&a.agency), Some(&b.agency)))
                .then(a.received_at.cmp(&b.received_at))
        });
        in_file = (0..rows.len() as u32).collect();
        let rows = &*rows;
        Box::new(move |range| Ok(dossiers_batch(&rows[range], i64::MAX, true)))
    } else {
        let mut batches = more;
        batches.push(dossiers_batch(rows, i64::MAX, true));
        compacted = batches;
        let order;
        (order, in_file) = sealing_order(&compacted, places).map_err(|e| failed(file, e))?;
        let sources: Vec<&RecordBatch> = compacted.iter().collect();
        Box::new(move |range: Range<usize>| {
            let taken =
                interleave_record_batch(&sources, &order[range]).map_err(|e| failed(file, e))?;
            RecordBatch::try_new(STORED.clone(), taken.columns().to_vec())
                .map_err(|e| failed(file, e))
        })
    };
    // Dictionaries for the names and codes only: ids and times are nearly all distinct, and
    // trying a dictionary first was a third of the encoding.
    let mut properties = WriterProperties::builder().set_dictionary_enabled(false);
    for column in DICTIONARY_COLUMNS {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), true);
    }
    let properties = properties
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
        .set_key_value_metadata(Some(vec![
            KeyValue::new(LAST_CLOSED.into(), last_closed.to_string()),
            KeyValue::new(
                NEWEST_RECEIVED.into(),
                newest_received.unwrap_or(i64::MIN).to_string(),
            ),
            KeyValue::new(OPEN_ROWS.into(), counts[2].to_string()),
        ]))
        .build();
    // The rows closed in time (row groups of ROW_GROUP_ROWS, as the writer cuts them), then
    // the late ones and the open ones in small row groups of their own.
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, STORED.clone(), Some(properties))
        .map_err(|e| failed(file, e))?;
    let total = open_from + counts[2];
    let parts = [
        (0, on_time, on_time.max(1)),
        (on_time, open_from, LATE_ROW_GROUP_ROWS),
        (open_from, total, LATE_ROW_GROUP_ROWS),
    ];
    for (from, to, group_rows) in parts {
        let mut at = from;
        while at < to {
            let group_end = (at + group_rows).min(to);
            while at < group_end {
                let end = (at + WRITE_ROWS).min(group_end);
                writer
                    .write(&chunk(at..end)?)
                    .map_err(|e| failed(file, e))?;
                at = end;
            }
            writer.flush().map_err(|e| failed(file, e))?;
        }
    }
    writer.close().map_err(|e| failed(file, e))?;
    Ok(Some(Encoded {
        bytes,
        placed: in_file,
    }))
}

/// The order [`encode_sealed`] writes the rows of `batches` in — by their `places` (closed in
/// time, closed late, open), then by `(province, agency, received_at)` — as `(batch, row)`
/// pairs; and by the rows of `batches` one after the other, their row in that order.
fn sealing_order(
    batches: &[RecordBatch],
    places: Vec<u8>,
) -> std::result::Result<(Vec<BatchRow>, Vec<u32>), ArrowError> {
    let places = UInt8Array::from(places);
    let key = |name: &str| -> std::result::Result<SortColumn, ArrowError> {
        let columns: Vec<&dyn Array> = batches
            .iter()
            .map(|batch| {
                batch
                    .column_by_name(name)
                    .expect("a stored column")
                    .as_ref()
            })
            .collect();
        Ok(SortColumn {
            values: concat(&columns)?,
            options: None,
        })
    };
    let places = SortColumn {
        values: Arc::new(places),
        options: None,
    };
    let order = lexsort_to_indices(
        &[
            places,
            key("province")?,
            key("agency")?,
            key("received_at")?,
        ],
        None,
    )?;
    let mut starts = Vec::with_capacity(batches.len());
    let mut start = 0;
    for batch in batches {
        starts.push(start);
        start += batch.num_rows();
    }
    let mut placed = vec![0u32; start];
    for (at, &row) in order.values().iter().enumerate() {
        placed[row as usize] = at as u32;
    }
    let order = order
        .values()
        .iter()
        .map(|&row| {
            let row = row as usize;
            let batch = starts.partition_point(|&start| start <= row) - 1;
            (batch, row - starts[batch])
        })
        .collect();
    Ok((order, placed))
}

/// A row of a list of batches: the batch, the row in it.
type BatchRow = (usize, usize);

/// `a` against `b`, names interned once: equal when they are the same allocation, and a
/// missing name first.
fn compare_names(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) if Arc::ptr_eq(a, b) => std::cmp::Ordering::Equal,
        _ => a.cmp(&b),
    }
}

/// Of each row, the first of the time `columns` that is set.
fn first_set(batch: &RecordBatch, columns: &[&str]) -> Vec<Option<i64>> {
    let arrays: Vec<&TimestampMicrosecondArray> = columns
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .expect("a stored time column")
        })
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            arrays
                .iter()
                .find_map(|a| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

/// A batch as Parquet bytes with `properties`.
pub fn encode(batch: &RecordBatch, properties: WriterProperties, file: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
        .map_err(|e| failed(file, e))?;
    if batch.num_rows() > 0 {
        writer.write(batch).map_err(|e| failed(file, e))?;
    }
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
    let footer_of_file =
        ArrowReaderMetadata::load(&opened, Default::default()).map_err(|e| failed(file, e))?;
    let metadata = footer_of_file.metadata().file_metadata();
    let footer = |key: &str| -> Result<i64> {
        footer_value(metadata, key).ok_or_else(|| failed(file, format!("no {key} in its footer")))
    };
    Ok(SealedBase {
        file: file.into(),
        rows: metadata.num_rows() as u64,
        bytes,
        deleted: Arc::new(Vec::new()),
        last_closed: footer(LAST_CLOSED)?,
        newest_received: footer(NEWEST_RECEIVED)?,
        footer: Some(footer_of_file.clone()),
    })
}

/// The number a key of a file's footer holds.
fn footer_value<T: std::str::FromStr>(
    metadata: &datafusion::parquet::file::metadata::FileMetaData,
    key: &str,
) -> Option<T> {
    metadata
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_deref()?
        .parse()
        .ok()
}

/// A reader of a sealed file, from the footer kept with it when there is one.
fn reader_of(
    path: &Path,
    base: &SealedBase,
) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let file = &*base.file;
    let opened = std::fs::File::open(path).map_err(|e| failed(file, e))?;
    let builder = match &base.footer {
        Some(footer) => ParquetRecordBatchReaderBuilder::new_with_metadata(opened, footer.clone()),
        None => ParquetRecordBatchReaderBuilder::try_new(opened).map_err(|e| failed(file, e))?,
    };
    Ok(builder.with_batch_size(8192))
}

/// Reads the visible rows of a sealed file: `columns` by name (all when `None`).
pub fn read_base(
    path: &Path,
    base: &SealedBase,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>> {
    let file = &*base.file;
    let mut builder = reader_of(path, base)?;
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

/// Reads `columns` of the visible rows of a sealed file in the row groups whose `agency`
/// statistics (min, max) pass `agencies` and where a row may have closed at or after
/// `closed_since` (by the statistics of the close times) or be open: a report for some
/// provinces reads their rows only, and of a month well before its end only the late and
/// open row groups.
pub fn read_base_where(
    path: &Path,
    base: &SealedBase,
    columns: &[&str],
    agencies: impl Fn(&str, &str) -> bool,
    closed_since: i64,
) -> Result<Vec<RecordBatch>> {
    use datafusion::parquet::file::statistics::Statistics;
    let file = &*base.file;
    let builder = reader_of(path, base)?;
    let schema = builder.parquet_schema();
    let index = |name: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == name);
    let agency = index("agency").ok_or_else(|| failed(file, "no agency column"))?;
    let closing = ["resolved_at", "withdrawn_at"].map(index);
    // Whether a row group may hold a row closed at or after `closed_since`: unknown without
    // statistics; a column that is null throughout has no maximum.
    let closes_since = |group: &datafusion::parquet::file::metadata::RowGroupMetaData| {
        closing.iter().any(|column| {
            let Some(column) = column else { return true };
            match group.column(*column).statistics() {
                Some(Statistics::Int64(s)) => s.max_opt().is_some_and(|max| *max >= closed_since),
                _ => true,
            }
        })
    };
    let mask = ProjectionMask::leaves(schema, columns.iter().filter_map(|name| index(name)));
    let metadata = builder.metadata().file_metadata();
    let open_rows: u64 = footer_value(metadata, OPEN_ROWS).unwrap_or(0);
    let open_from = (metadata.num_rows() as u64).saturating_sub(open_rows);
    let mut groups = Vec::new();
    let mut start = 0u64;
    for (i, group) in builder.metadata().row_groups().iter().enumerate() {
        let rows = group.num_rows() as u64;
        let holds_open = start + rows > open_from;
        let range = match group.column(agency).statistics() {
            Some(Statistics::ByteArray(s)) => s
                .min_opt()
                .zip(s.max_opt())
                .and_then(|(min, max)| Some((min.as_utf8().ok()?, max.as_utf8().ok()?))),
            _ => None,
        };
        if range.is_none_or(|(min, max)| agencies(min, max)) && (holds_open || closes_since(group))
        {
            groups.push((i, start, rows));
        }
        start += rows;
    }
    let selection = selection_of_groups(&groups, &base.deleted);
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups.iter().map(|(i, _, _)| *i).collect())
        .with_row_selection(selection)
        .build()
        .map_err(|e| failed(file, e))?;
    reader
        .map(|batch| batch.map_err(|e| failed(file, e)))
        .collect()
}

/// The rows of the row groups `groups` (index, first row, rows) that `deleted` (ascending
/// row numbers of the file) leaves visible, as a selection over those groups' rows.
fn selection_of_groups(groups: &[(usize, u64, u64)], deleted: &[u32]) -> RowSelection {
    let mut selectors = Vec::new();
    for &(_, start, rows) in groups {
        let end = start + rows;
        let mut next = start;
        let from = deleted.partition_point(|&row| u64::from(row) < start);
        for row in deleted[from..].iter().map(|&row| u64::from(row)) {
            if row >= end {
                break;
            }
            if row > next {
                selectors.push(RowSelector::select((row - next) as usize));
            }
            selectors.push(RowSelector::skip(1));
            next = row + 1;
        }
        if end > next {
            selectors.push(RowSelector::select((end - next) as usize));
        }
    }
    RowSelection::from(selectors)
}

/// A dossier's row in a sealed file, and what was fixed at its receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRow {
    pub row: u32,
    pub province: Option<Arc<str>>,
    pub service_level: Option<u8>,
}

/// The row of each dossier id in a sealed file.
pub fn sealed_rows(
    path: &Path,
    file: &str,
) -> Result<std::collections::HashMap<String, SealedRow>> {
    use datafusion::arrow::array::{Array, Int32Array};
    let base = SealedBase {
        file: file.into(),
        rows: 0,
        bytes: 0,
        deleted: Arc::new(Vec::new()),
        last_closed: 0,
        newest_received: 0,
        footer: None,
    };
    let mut rows = std::collections::HashMap::new();
    for batch in read_base(path, &base, Some(&["id", "province", "service_level"]))? {
        let text = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>();
        let (Some(ids), Some(provinces)) = (text(0), text(1)) else {
            return Err(failed(file, "id or province is not text"));
        };
        let levels = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(|| failed(file, "service_level is not an integer"))?;
        for i in 0..batch.num_rows() {
            let row = SealedRow {
                row: rows.len() as u32,
                province: provinces.is_valid(i).then(|| provinces.value(i).into()),
                service_level: levels.is_valid(i).then(|| levels.value(i) as u8),
            };
            rows.insert(ids.value(i).to_owned(), row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::super::dossiers::tests::dossier;
    use super::*;

    /// The close times of the rows a file holds, in its order.
    fn closes(batches: &[RecordBatch]) -> Vec<Option<i64>> {
        batches
            .iter()
            .flat_map(|batch| first_set(batch, &["resolved_at", "withdrawn_at"]))
            .collect()
    }

    #[test]
    fn open_rows_come_last_and_a_report_reads_them_whatever_its_end() {
        const LATE: i64 = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // 10 000 rows mixed: a fifth open, a fifth closed late, the rest closed in time.
        let rows = || -> Vec<Dossier> {
            (0..10_000)
                .map(|n| match n % 5 {
                    0 => dossier(n, None),
                    1 => dossier(n, Some(LATE + n as i64)),
                    _ => dossier(n, Some(100 + n as i64)),
                })
                .collect()
        };
        let mut first = rows();
        let encoded = encode_sealed(&mut first, Vec::new(), LATE, "f")
            .unwrap()
            .unwrap();
        std::fs::write(&path, encoded.bytes).unwrap();
        let base = open_base(&path, "f").unwrap();
        assert_eq!(
            base.last_closed,
            i64::MAX,
            "a file with open rows is never settled"
        );
        let all = read_base(&path, &base, None).unwrap();
        let order = closes(&all);
        assert!(
            order[8_000..].iter().all(Option::is_none),
            "the open rows last"
        );
        assert!(order[6_000..8_000].iter().all(|at| at.unwrap() >= LATE));
        // A period that ends after every close reads the open rows' row groups alone.
        let columns = ["id", "resolved_at", "withdrawn_at"];
        let read = read_base_where(&path, &base, &columns, |_, _| true, 2 * LATE).unwrap();
        assert_eq!(closes(&read), vec![None; 2_000]);
        // A compaction with rows of its own keeps them last, and the file's count follows.
        let mut more = vec![dossier(20_000, None), dossier(20_001, Some(5))];
        let ids_of = |batches: &[RecordBatch]| -> Vec<String> {
            let ids = batches.iter().flat_map(|batch| {
                let ids = batch.column_by_name("id").unwrap();
                let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
                (0..ids.len())
                    .map(|i| ids.value(i).to_owned())
                    .collect::<Vec<_>>()
            });
            ids.collect()
        };
        let given: Vec<String> = ids_of(&all)
            .into_iter()
            .chain(["20000", "20001"].map(String::from))
            .collect();
        let encoded = encode_sealed(&mut more, all, LATE, "g").unwrap().unwrap();
        let compacted = dir.path().join("g");
        std::fs::write(&compacted, encoded.bytes).unwrap();
        let base = open_base(&compacted, "g").unwrap();
        let read = read_base_where(&compacted, &base, &columns, |_, _| true, 2 * LATE).unwrap();
        assert_eq!(closes(&read), vec![None; 2_001]);
        // Each row given is where `placed` says, the earlier file's and the new ones.
        let in_file = ids_of(&read_base(&compacted, &base, None).unwrap());
        assert_eq!(encoded.placed.len(), given.len());
        for (id, row) in given.iter().zip(&encoded.placed) {
            assert_eq!(&in_file[*row as usize], id);
        }
        // Without open rows the latest close is the file's.
        let mut closed: Vec<Dossier> = rows()
            .into_iter()
            .filter(|d| d.closed_at().is_some())
            .collect();
        let encoded = encode_sealed(&mut closed, Vec::new(), LATE, "h")
            .unwrap()
            .unwrap();
        std::fs::write(dir.path().join("h"), encoded.bytes).unwrap();
        let base = open_base(&dir.path().join("h"), "h").unwrap();
        assert_eq!(base.last_closed, LATE + 9_996);
        let read = read_base_where(
            &dir.path().join("h"),
            &base,
            &columns,
            |_, _| true,
            2 * LATE,
        );
        assert!(read.unwrap().is_empty());
    }

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

//! Reading sealed Parquet files from the local disk: positioned reads on the SQL runtime's
//! own thread, footers from the runtime's metadata cache.
//!
//! DataFusion's object store reads a local file by opening it again and handing every read
//! to tokio's blocking pool: a query over a decade's months paid a file open and a thread
//! hand-off (a futex wake and a sleep) per column chunk it read — a third of "the 20
//! agencies with most late resolutions" at 6 M dossiers. Sealed files are local, immutable
//! and mostly in the page cache, so a read here is one `pread` of a file opened once per scan
//! of it; the SQL runtime has threads of its own, so a read that does go to the disk blocks a
//! query, never an append.

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::{ParquetError, Result as ParquetResult};
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricType,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The local path of a file a scan reads, attached to its [`PartitionedFile`].
#[derive(Debug, Clone)]
pub struct LocalPath(pub Arc<Path>);

/// Readers of local files: data by `pread`, footers through `footers` (the runtime's metadata
/// cache). A file without a [`LocalPath`] is read by `footers` alone, through the object store.
#[derive(Debug)]
pub struct LocalParquetReaderFactory {
    pub footers: CachedParquetFileReaderFactory,
}

impl ParquetFileReaderFactory for LocalParquetReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let path = file.extension::<LocalPath>().map(|p| p.0.clone());
        let bytes_scanned = MetricBuilder::new(metrics)
            .with_new_label("filename", file.object_meta.location.to_string())
            .with_type(MetricType::Summary)
            .counter("bytes_scanned", partition_index);
        let footer =
            self.footers
                .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        let Some(path) = path else {
            return Ok(footer);
        };
        Ok(Box::new(LocalParquetReader {
            path,
            file: None,
            footer,
            bytes_scanned,
        }))
    }
}

struct LocalParquetReader {
    path: Arc<Path>,
    /// Opened at the first read.
    file: Option<File>,
    /// Reads the footer (from the cache when it holds it).
    footer: Box<dyn AsyncFileReader + Send>,
    bytes_scanned: Count,
}

impl LocalParquetReader {
    fn read(&mut self, range: Range<u64>) -> ParquetResult<Bytes> {
        let failed = |error: std::io::Error| {
            ParquetError::External(Box::new(ReadFailed {
                path: self.path.to_path_buf(),
                error,
            }))
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(File::open(&self.path).map_err(failed)?),
        };
        let length = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| ParquetError::General("a read past the address space".into()))?;
        let mut buffer = vec![0; length];
        file.read_exact_at(&mut buffer, range.start)
            .map_err(failed)?;
        self.bytes_scanned.add(length);
        Ok(Bytes::from(buffer))
    }
}

impl AsyncFileReader for LocalParquetReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        let read = self.read(range);
        async move { read }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        let read = ranges.into_iter().map(|range| self.read(range)).collect();
        async move { read }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        self.footer.get_metadata(options)
    }
}

/// A sealed file that could not be read, with its path (for the server's log).
#[derive(Debug)]
struct ReadFailed {
    path: PathBuf,
    error: std::io::Error,
}

impl std::fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for ReadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

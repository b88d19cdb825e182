//! Projections: the tables of DESIGN §5 as a fold of the log, following it from a checkpoint.
//!
//! The state lives in memory; every changed partition (a local month of a time-series table,
//! or a whole small table) is written as a Parquet segment, and the manifest naming the
//! segments is committed with the checkpoint in one fsynced RocksDB write
//! ([`chiso_store::SegmentDir`]). A restart loads the segments and folds only what the log
//! holds past the checkpoint; a late event rewrites only its partition's segment.

mod batches;
pub(crate) mod model;

pub use batches::{
    AGENCIES, AGENCY_DAILY, DOSSIERS, EVENTS, ICT_INDEX, RANKINGS, SERVICES, SERVICE_LEVELS,
};
pub(crate) use model::{Partition, Tables};

use crate::error::{Error, Result};
use crate::local_time::{month_name, parse_month, MonthKey};
use chiso_store::{EventStore, Manifest, SegmentDir};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use std::collections::{BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Version of the segment layout; segments of another version are dropped and rebuilt.
const FORMAT: u32 = 1;
/// Events folded per lock.
const FOLD_BATCH: usize = 8192;
/// How often the follower writes changed partitions.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// The time-series and dimension tables, shared by the follower and the SQL engine.
#[derive(Clone)]
pub struct Projections {
    shared: Arc<Shared>,
}

struct Shared {
    store: EventStore,
    segments: SegmentDir,
    state: Mutex<State>,
    /// Serialises checkpoints.
    checkpointing: Mutex<()>,
    /// The next position to fold: every event before it is in the tables.
    position: watch::Sender<u64>,
}

struct State {
    tables: Tables,
    manifest: Manifest,
    /// Partitions changed since the last checkpoint.
    unsaved: BTreeSet<Partition>,
    /// Query batches per partition, with the time they were built and whether they hold an
    /// open pause (whose `paused_seconds` grows with the clock).
    cache: HashMap<Partition, (i64, bool, Vec<RecordBatch>)>,
}

/// Which table a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableName {
    /// `agencies`
    Agencies,
    /// `services`
    Services,
    /// `service_levels`
    ServiceLevels,
    /// `dossiers`
    Dossiers,
    /// `agency_daily`
    AgencyDaily,
    /// `ict_index`
    IctIndex,
    /// `rankings`
    Rankings,
}

impl Projections {
    /// Opens the tables of the log: loads the committed segments (dropping them if their
    /// format is another), then folds the log from the checkpoint to its head.
    pub fn open(store: &EventStore, dir: impl AsRef<Path>) -> Result<Self> {
        let segments = SegmentDir::open(store, dir, "tables")?;
        let manifest = segments.load(FORMAT)?.unwrap_or(Manifest {
            format: FORMAT,
            ..Manifest::default()
        });
        let mut tables = Tables::default();
        load_segments(&segments, &manifest, &mut tables)?;
        tables.next_position = manifest.checkpoint;
        tables.dirty.clear();
        let (position, _) = watch::channel(manifest.checkpoint);
        let state = State {
            tables,
            manifest,
            unsaved: BTreeSet::new(),
            cache: HashMap::new(),
        };
        let projections = Self {
            shared: Arc::new(Shared {
                store: store.clone(),
                segments,
                state: Mutex::new(state),
                checkpointing: Mutex::new(()),
                position,
            }),
        };
        Ok(projections)
    }

    /// Writes a consistent copy of the data directory to `dest`, a new or empty directory: the
    /// log in `dest/log` (see [`EventStore::checkpoint_to`]) and, in `dest/tables`, the
    /// segments of the manifest that copy holds. Checkpoints wait meanwhile, so none of those
    /// files is removed under the copy. Tables are checkpointed first, so the copy opens with
    /// little to fold.
    pub fn backup(&self, dest: &Path) -> Result<Backup> {
        let used = std::fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_some());
        if used || dest.is_file() {
            return Err(Error::InvalidParameter(format!(
                "{} already exists; a backup goes to a new or empty directory",
                dest.display()
            )));
        }
        self.checkpoint()?;
        let _serial = lock(&self.shared.checkpointing);
        std::fs::create_dir_all(dest).map_err(chiso_store::Error::from)?;
        let log_head = self.shared.store.head();
        self.shared.store.checkpoint_to(&dest.join("log"))?;
        let manifest = self.state().manifest.clone();
        let segment_bytes = self
            .shared
            .segments
            .copy_to(&manifest, &dest.join("tables"))?;
        Ok(Backup {
            log_head,
            tables_position: manifest.checkpoint,
            segments: manifest.segments.len(),
            segment_bytes,
        })
    }

    /// Drops every table and its segments (the next fold starts at position 0).
    pub fn clear(&self) -> Result<()> {
        let _checkpoint = lock(&self.shared.checkpointing);
        self.shared.segments.clear()?;
        let mut state = self.state();
        state.tables = Tables::default();
        state.manifest = Manifest {
            format: FORMAT,
            ..Manifest::default()
        };
        state.unsaved.clear();
        state.cache.clear();
        self.shared.position.send_replace(0);
        Ok(())
    }

    /// The next log position to fold: the tables include every event before it.
    pub fn position(&self) -> u64 {
        *self.shared.position.borrow()
    }

    /// Whether the tables include every event the log has acknowledged.
    pub fn caught_up(&self) -> bool {
        self.position() >= self.shared.store.head()
    }

    /// Waits until the tables include `position` (that is, fold past it), at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<()> {
        let mut receiver = self.shared.position.subscribe();
        let reached = tokio::time::timeout(timeout, receiver.wait_for(|folded| *folded > position))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if reached {
            return Ok(());
        }
        Err(Error::Behind {
            wanted: position,
            at: self.position(),
        })
    }

    /// Folds everything the log holds now, calling `progress(folded, head)` along the way.
    /// For rebuilds, tests and benchmarks; a server uses [`Projections::follow`].
    pub fn catch_up(&self, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let head = self.shared.store.head();
        loop {
            let from = self.position();
            if from >= head {
                return Ok(from);
            }
            let events = self.shared.store.read_all(from, FOLD_BATCH)?;
            self.fold(&events);
            progress(self.position(), head);
        }
    }

    /// Follows the log in the background: folds each commit, writes a checkpoint every few
    /// seconds when something changed, and a last one when `shutdown` fires (after folding
    /// what the log holds by then).
    pub fn follow(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let projections = self.clone();
        tokio::spawn(async move {
            let mut subscription = projections.shared.store.subscribe(projections.position());
            let mut timer = tokio::time::interval(CHECKPOINT_EVERY);
            loop {
                tokio::select! {
                    batch = subscription.next_batch(FOLD_BATCH) => match batch {
                        Ok(events) => projections.fold(&events),
                        Err(error) => {
                            tracing::error!(%error, "projections stopped following the log");
                            break;
                        }
                    },
                    _ = timer.tick() => projections.checkpoint_in_background().await,
                    () = shutdown.cancelled() => break,
                }
            }
            let last = projections.clone();
            let finished = tokio::task::spawn_blocking(move || {
                last.catch_up(|_, _| {})?;
                last.checkpoint()
            })
            .await;
            match finished {
                Ok(Ok(())) => tracing::info!(position = projections.position(), "tables saved"),
                Ok(Err(error)) => tracing::error!(%error, "saving the tables failed"),
                Err(error) => tracing::error!(%error, "saving the tables failed"),
            }
        })
    }

    async fn checkpoint_in_background(&self) {
        let idle = {
            let state = self.state();
            state.unsaved.is_empty() && state.tables.dirty.is_empty()
        };
        if idle {
            return;
        }
        let projections = self.clone();
        match tokio::task::spawn_blocking(move || projections.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "checkpoint failed; will retry"),
            Err(error) => tracing::error!(%error, "checkpoint task failed"),
        }
    }

    /// Folds events that follow the tables' position.
    fn fold(&self, events: &[chiso_store::RecordedEvent]) {
        let Some(last) = events.last() else { return };
        let mut state = self.state();
        for event in events {
            state.tables.fold(event);
        }
        let changed = std::mem::take(&mut state.tables.dirty);
        for partition in &changed {
            state.cache.remove(partition);
        }
        state.unsaved.extend(changed);
        if std::mem::take(&mut state.tables.agencies_changed) {
            // Rows show their agency's province: rebuild those batches, rewrite no segment.
            state
                .cache
                .retain(|p, _| !matches!(p, Partition::Dossiers(_) | Partition::AgencyDaily(_)));
        }
        drop(state);
        self.shared.position.send_replace(last.position + 1);
    }

    /// Writes every partition changed since the last checkpoint as a new segment, then commits
    /// the manifest with the position the segments include.
    pub fn checkpoint(&self) -> Result<()> {
        let _serial = lock(&self.shared.checkpointing);
        let (position, mut manifest, parts) = {
            let mut state = self.state();
            let changed = std::mem::take(&mut state.tables.dirty);
            state.unsaved.extend(changed);
            let unsaved = std::mem::take(&mut state.unsaved);
            let parts: Vec<(Partition, Vec<(String, RecordBatch)>)> = unsaved
                .iter()
                .map(|p| (*p, segment_batches(&state.tables, *p)))
                .collect();
            for partition in &unsaved {
                state.cache.remove(partition);
            }
            (state.tables.next_position, state.manifest.clone(), parts)
        };
        if parts.is_empty() && manifest.checkpoint == position {
            return Ok(());
        }
        let written = self.write_segments(position, &mut manifest, &parts);
        let committed = written.and_then(|()| {
            manifest.checkpoint = position;
            manifest.format = FORMAT;
            Ok(self.shared.segments.commit(&manifest)?)
        });
        let mut state = self.state();
        match committed {
            Ok(()) => state.manifest = manifest,
            Err(_) => state.unsaved.extend(parts.iter().map(|(p, _)| *p)),
        }
        committed
    }

    fn write_segments(
        &self,
        position: u64,
        manifest: &mut Manifest,
        parts: &[(Partition, Vec<(String, RecordBatch)>)],
    ) -> Result<()> {
        for (name, batch) in parts.iter().flat_map(|(_, segments)| segments) {
            if batch.num_rows() == 0 {
                manifest.segments.remove(name);
                continue;
            }
            let file = format!("{}.{position}.parquet", name.replace('/', "_"));
            self.shared
                .segments
                .write(&file, &encode_parquet(batch, &file)?)?;
            manifest.segments.insert(name.clone(), file);
        }
        Ok(())
    }

    /// Query batches of a table; for time-series tables only the months in `months`.
    pub fn batches(&self, table: TableName, months: RangeInclusive<MonthKey>) -> Vec<RecordBatch> {
        if months.start() > months.end() {
            // Contradictory time filters: nothing can match.
            return Vec::new();
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut state = self.state();
        let partitions: Vec<Partition> = match table {
            TableName::Dossiers => state
                .tables
                .dossiers
                .range(months)
                .map(|(m, _)| Partition::Dossiers(*m))
                .collect(),
            TableName::AgencyDaily => state
                .tables
                .daily
                .range(months)
                .map(|(m, _)| Partition::AgencyDaily(*m))
                .collect(),
            TableName::Agencies => vec![Partition::Agencies],
            TableName::Services | TableName::ServiceLevels => vec![Partition::Services],
            TableName::IctIndex => vec![Partition::IctIndex],
            TableName::Rankings => vec![Partition::Rankings],
        };
        let mut batches = Vec::with_capacity(partitions.len());
        for partition in partitions {
            batches.extend(state.query_batches(partition, table, now));
        }
        batches
    }

    /// Runs `read` on the tables' state (for reports computed in Rust).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Tables) -> T) -> T {
        read(&self.state().tables)
    }

    /// The rankings of `month` that differ from what is published.
    pub fn ranking_changes(&self, month: MonthKey) -> Vec<crate::rankings::Publication> {
        self.read(|tables| crate::rankings::changes(tables, month))
    }

    /// The months with dossier activity, and those with a published ranking.
    pub fn ranking_months(&self) -> (Vec<MonthKey>, BTreeSet<String>) {
        self.read(|tables| {
            let published = tables
                .rankings
                .keys()
                .map(|(month, _, _)| month.clone())
                .collect();
            (crate::rankings::active_months(tables), published)
        })
    }

    /// How many dossiers the tables hold.
    pub fn dossier_count(&self) -> usize {
        self.state().tables.dossier_count()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

impl State {
    /// The cached batches of a partition, rebuilt when stale; `Services` serves two tables.
    fn query_batches(
        &mut self,
        partition: Partition,
        table: TableName,
        now: i64,
    ) -> Vec<RecordBatch> {
        const PAUSE_REFRESH_MICROS: i64 = 1_000_000;
        if let Some((built, open_pauses, batches)) = self.cache.get(&partition) {
            if !open_pauses || now - built < PAUSE_REFRESH_MICROS {
                return pick(table, batches);
            }
        }
        let tables = &self.tables;
        let (open_pauses, batches) = match partition {
            Partition::Agencies => (false, vec![tables.agencies_batch()]),
            Partition::Services => (
                false,
                vec![tables.services_batch(), tables.service_levels_batch()],
            ),
            Partition::IctIndex => (false, vec![tables.ict_index_batch()]),
            Partition::Rankings => (false, vec![tables.rankings_batch()]),
            Partition::AgencyDaily(month) => (false, vec![tables.daily_batch(month)]),
            Partition::Dossiers(month) => {
                let paused = tables.dossiers.get(&month).is_some_and(|p| {
                    p.rows
                        .iter()
                        .any(|d| d.is_paused() && d.closed_at().is_none())
                });
                (paused, vec![tables.dossiers_batch(month, now)])
            }
        };
        let picked = pick(table, &batches);
        self.cache.insert(partition, (now, open_pauses, batches));
        picked
    }
}

fn pick(table: TableName, batches: &[RecordBatch]) -> Vec<RecordBatch> {
    match table {
        TableName::ServiceLevels => batches[1..].to_vec(),
        TableName::Services => batches[..1].to_vec(),
        _ => batches.to_vec(),
    }
}

/// What [`Projections::backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// The log held at least this many events when it was copied.
    pub log_head: u64,
    /// The copied tables include every event before this position (the copy folds the rest).
    pub tables_position: u64,
    /// Segment files copied.
    pub segments: usize,
    /// Their bytes.
    pub segment_bytes: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The segments (name, batch) a partition is stored as.
fn segment_batches(tables: &Tables, partition: Partition) -> Vec<(String, RecordBatch)> {
    match partition {
        Partition::Agencies => vec![("agencies".into(), tables.agencies_batch())],
        Partition::Services => vec![
            ("services".into(), tables.services_batch()),
            ("service_levels".into(), tables.service_levels_batch()),
        ],
        Partition::IctIndex => vec![("ict_index".into(), tables.ict_index_batch())],
        Partition::Rankings => vec![("rankings".into(), tables.rankings_batch())],
        Partition::Dossiers(month) => vec![(
            format!("dossiers/{}", month_name(month)),
            tables.dossier_segment(month),
        )],
        Partition::AgencyDaily(month) => vec![(
            format!("agency_daily/{}", month_name(month)),
            tables.daily_batch(month),
        )],
    }
}

fn encode_parquet(batch: &RecordBatch, file: &str) -> Result<Vec<u8>> {
    let failed = |reason: String| Error::Segment {
        file: file.to_owned(),
        reason,
    };
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
        .map_err(|e| failed(e.to_string()))?;
    writer.write(batch).map_err(|e| failed(e.to_string()))?;
    writer.close().map_err(|e| failed(e.to_string()))?;
    Ok(bytes)
}

/// Loads every segment of the manifest, services before their level spans.
fn load_segments(segments: &SegmentDir, manifest: &Manifest, tables: &mut Tables) -> Result<()> {
    let mut names: Vec<&String> = manifest.segments.keys().collect();
    names.sort_by_key(|name| (name.as_str() == "service_levels", name.as_str()));
    for name in names {
        let file = &manifest.segments[name];
        let failed = |reason: String| Error::Segment {
            file: file.clone(),
            reason,
        };
        let bytes = segments.read(file)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .and_then(|builder| builder.with_batch_size(65_536).build())
            .map_err(|e| failed(e.to_string()))?;
        let (table, month) = match name.split_once('/') {
            Some((table, month)) => (
                table,
                Some(parse_month(month).ok_or_else(|| failed("bad month".into()))?),
            ),
            None => (name.as_str(), None),
        };
        for batch in reader {
            let batch = batch.map_err(|e| failed(e.to_string()))?;
            tables.restore(table, month, &batch).map_err(failed)?;
        }
    }
    Ok(())
}

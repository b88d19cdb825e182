//! Projections: the tables of ARCHITECTURE.md §5 as a fold of the log, from a checkpoint.
//!
//! Small tables and the hot months of `dossiers` and `agency_daily` live in memory; every
//! changed partition is written as a Parquet segment, and the manifest naming the segments is
//! committed with the checkpoint in one fsynced RocksDB write ([`chiso_store::SegmentDir`]).
//! A month of `dossiers` is *sealed* once the log's own clock (the latest `received_at`
//! folded) is [`SealPolicy::after_days`] past its end, or earlier when the rows in memory pass
//! [`SealPolicy::hot_bytes`]: its closed rows then leave memory for an immutable Parquet file
//! that SQL reads with DataFusion's own Parquet scan ([`sealed`]) — and its open rows too
//! when the closed ones are not enough to get back under the budget. A restart loads the
//! segments, reads only the footers of sealed files, and folds what the log holds past the
//! checkpoint.

pub(crate) mod agencies;
pub(crate) mod agency_daily;
pub(crate) mod columns;
mod declarations;
pub(crate) mod dossiers;
mod ict_index;
mod published;
mod repair;
pub(crate) mod sealed;
mod services;
pub(crate) mod tables;

pub use agencies::AGENCIES;
pub use agency_daily::AGENCY_DAILY;
pub use dossiers::{DOSSIERS, DOSSIERS_SQL, WORKING_DAYS_LATE};
pub use ict_index::ICT_INDEX;

/// DataFusion's cache of Parquet footers and page indexes, per file.
pub(crate) type FooterCache = datafusion::execution::cache::cache_manager::FileMetadataCache;

/// A file's key in a [`FooterCache`]: its path as a scan names it.
pub(crate) fn footer_key(path: &Path) -> datafusion::object_store::path::Path {
    datafusion::object_store::path::Path::from(path.to_string_lossy().as_ref())
}
pub use published::RANKINGS;
pub use services::{SERVICES, SERVICE_LEVELS};
pub(crate) use tables::{Decoded, Tables};

use crate::calendar::{Calendar, CalendarSource};
use crate::error::{Error, Result};
use crate::local_time::{
    day_start, local_month, month_first_day, month_name, parse_month, MonthKey,
};
use chiso_ingest::{decode_stored, DomainEvent};
use chiso_store::{EventStore, Manifest, ReadDirection, SegmentDir, StreamName};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use dossiers::{
    dossiers_batch, stored_dossiers, Dossier, FoldError, SealedRows, Sealing, ToSeal, CHUNK_ROWS,
    COMPUTED_COLUMNS,
};
use sealed::SealedBase;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tables::{ColdMonth, Interner};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Version of the segment layout; segments of a version before [`OLDEST_FORMAT`] or after this
/// one are dropped and rebuilt.
/// 2: sealed months; dossier rows carry their province at receipt and every SQL column.
/// 3: a month of `agency_daily` is saved with its totals by agency (`…/totals`). A version
/// that knows only 2 would read those as days, so it rebuilds a directory of 3 instead.
const FORMAT: u32 = 3;
/// The oldest segment layout opened as it is: a format-2 month of `agency_daily` has no
/// totals segment, so it is loaded whole and saved again with them.
const OLDEST_FORMAT: u32 = 2;
/// Events folded per lock.
const FOLD_BATCH: usize = 8192;

/// How far behind the log the tables must be for the fold to replay it on two threads before
/// following it batch by batch.
const CATCH_UP_FROM: u64 = 100_000;
/// How often the follower writes changed partitions.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
/// What a dossier row costs in memory: the row, its id, its index entry and its share of the
/// cached Arrow batch (measured on the demo: see BENCHMARKS.md).
const ROW_BYTES: usize = 400;
/// About what one `agency_daily` row takes in memory: its key, counters and tree node.
const DAILY_ROW_BYTES: usize = 120;
/// A sealed month is compacted once this share of its file has been replaced (or more rows
/// than [`COMPACT_MIN_ROWS`] closed beside it).
const COMPACT_SHARE: f64 = 0.05;
const COMPACT_MIN_ROWS: usize = 10_000;

/// When months of `dossiers` are sealed.
#[derive(Debug, Clone, Copy)]
pub struct SealPolicy {
    /// A month is sealed once the log has dossiers received this many days after its end.
    /// 45 days: the national report closes a month by the 15th of the next but one, and
    /// almost every dossier is resolved within its deadline of at most 30 days.
    pub after_days: u32,
    /// The most memory the dossier rows kept in memory may take; past it the oldest months
    /// but the newest are sealed early, open rows too if need be.
    pub hot_bytes: usize,
    /// Seal every month after every fold, open rows too but the paused (tests: everything
    /// read from sealed files).
    pub immediately: bool,
    /// With `immediately`, install each file only after the next fold: every sealing meets
    /// rows that changed while its file was written, as one on the sealer thread may (tests;
    /// the files written at the last fold are installed by the next, not by a catch-up's end
    /// nor a checkpoint).
    pub overlapped: bool,
}

impl SealPolicy {
    /// Every month stays in memory.
    pub const NEVER: Self = Self {
        after_days: u32::MAX,
        hot_bytes: usize::MAX,
        immediately: false,
        overlapped: false,
    };

    /// Every month is sealed after every fold.
    pub const AT_ONCE: Self = Self {
        immediately: true,
        ..Self::DEFAULT
    };

    /// As [`SealPolicy::AT_ONCE`], each file installed after the next fold.
    pub const OVERLAPPED: Self = Self {
        overlapped: true,
        ..Self::AT_ONCE
    };

    const DEFAULT: Self = Self {
        after_days: 45,
        hot_bytes: 1 << 30,
        immediately: false,
        overlapped: false,
    };
}

impl SealPolicy {
    /// Whether `month` is settled once the log's clock reads `horizon`: `after_days` past
    /// its end (when months of `dossiers` seal, and months of `agency_daily` leave memory).
    fn settled(&self, month: MonthKey, horizon: i64) -> bool {
        let after = i64::from(self.after_days).saturating_mul(86_400_000_000);
        day_start(month_first_day(month + 1)).saturating_add(after) <= horizon
    }
}

impl Default for SealPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The time-series and dimension tables, shared by the follower and the SQL engine.
#[derive(Clone)]
pub struct Projections {
    shared: Arc<Shared>,
}

struct Shared {
    store: EventStore,
    segments: SegmentDir,
    policy: SealPolicy,
    state: Mutex<State>,
    /// Serialises checkpoints (and sealing, which ends in one).
    checkpointing: Mutex<()>,
    /// The next position to fold: every event before it is in the tables.
    position: watch::Sender<u64>,
    /// Sealed files replaced by compaction, kept while a scan still holds them.
    retired: Mutex<Vec<Arc<str>>>,
    /// The thread writing months' sealed files (first sealings and compactions), while it
    /// runs.
    sealer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The files it is writing (a checkpoint keeps them, and their temporary files).
    sealing: Mutex<BTreeSet<String>>,
    /// Under [`SealPolicy::overlapped`], the files written at the last sealing, installed at
    /// the next.
    overlapped: Mutex<Vec<Written>>,
    /// Partitions whose damaged or missing segments were rebuilt from the log at open.
    repaired: usize,
    /// The SQL engines' caches of sealed files' footers (DataFusion's file metadata cache):
    /// a file a checkpoint removes is forgotten there at once, rather than held until the
    /// cache's limit (50 MiB) pushes it out — in a long run of late events, that was 50 MiB
    /// of footers of deleted files.
    footers: Mutex<Vec<std::sync::Weak<FooterCache>>>,
    /// The calendar in force, rebuilt when an announcement is folded.
    calendar: CalendarSource,
}

struct State {
    tables: Tables,
    /// Counts [`Projections::clear`]s: a sealing begun before one is not installed after it.
    generation: u64,
    manifest: Manifest,
    /// Partitions changed since the last checkpoint.
    unsaved: BTreeSet<Partition>,
    /// Query batches of the partitions other than `dossiers` months.
    cache: HashMap<Partition, Vec<RecordBatch>>,
    /// Query batches of the chunks of `dossiers` months in memory.
    chunks: BTreeMap<(MonthKey, usize), CachedChunk>,
    /// The stamp each chunk of a `dossiers` month had when its segment was last committed.
    saved: BTreeMap<(MonthKey, usize), u64>,
}

/// A chunk's query batch, with the stamp of the rows it was built from, when it was built,
/// and whether it holds an open pause (whose `paused_seconds` grows with the clock).
struct CachedChunk {
    stamp: u64,
    built: i64,
    open_pauses: bool,
    batch: RecordBatch,
}

impl CachedChunk {
    fn build(rows: &[Dossier], stamp: u64, now: i64) -> Self {
        Self {
            stamp,
            built: now,
            open_pauses: rows.iter().any(Dossier::moves_with_clock),
            batch: dossiers_batch(rows, now, false),
        }
    }
}

/// A unit of storage and caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    Agencies,
    Services,
    IctIndex,
    Rankings,
    /// The calendar's announcements (the `calendar` table is built from them).
    Calendar,
    Dossiers(MonthKey),
    AgencyDaily(MonthKey),
}

impl Partition {
    /// Its manifest name (and the prefix of its segments' names): the table, and the month
    /// of a time-series table.
    pub fn name(&self) -> String {
        match self {
            Self::Agencies => "agencies".into(),
            Self::Services => "services".into(),
            Self::IctIndex => "ict_index".into(),
            Self::Rankings => "rankings".into(),
            Self::Calendar => "calendar".into(),
            Self::Dossiers(month) => format!("dossiers/{}", month_name(*month)),
            Self::AgencyDaily(month) => format!("agency_daily/{}", month_name(*month)),
        }
    }
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

/// A sealed file a query reads.
#[derive(Debug, Clone)]
pub struct SealedFile {
    /// Where it is.
    pub path: PathBuf,
    /// What the manifest knows of it (rows, size, deletion vector).
    pub base: SealedBase,
}

impl Projections {
    /// Opens the tables of the log with the default [`SealPolicy`].
    pub fn open(store: &EventStore, dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(store, dir, SealPolicy::default())
    }

    /// Opens the tables of the log: loads the committed segments (dropping them if their
    /// format is another: the tables are then rebuilt from the log), ready to fold from the
    /// checkpoint.
    pub fn open_with(
        store: &EventStore,
        dir: impl AsRef<Path>,
        policy: SealPolicy,
    ) -> Result<Self> {
        let segments = SegmentDir::open(store, dir, "tables")?;
        let stored = segments.stored_format()?;
        let manifest = segments.load(OLDEST_FORMAT..=FORMAT)?.unwrap_or(Manifest {
            format: FORMAT,
            ..Manifest::default()
        });
        if let Some(old) = stored.filter(|format| !(OLDEST_FORMAT..=FORMAT).contains(format)) {
            tracing::warn!(
                old,
                new = FORMAT,
                "the tables were saved in another format: rebuilding them from the log"
            );
        }
        let mut tables = Tables::default();
        let loaded = load_segments(&segments, &manifest, &policy, &mut tables).and_then(|loaded| {
            if !loaded.damaged.is_empty() {
                for (partition, reason) in &loaded.damaged {
                    tracing::warn!(
                        partition = %partition.name(),
                        reason,
                        "a table segment is damaged or missing: its partition is rebuilt from the log"
                    );
                }
                let damaged: BTreeSet<Partition> = loaded.damaged.keys().copied().collect();
                repair_partitions(store, &segments, &mut tables, &damaged, manifest.checkpoint)?;
            }
            Ok(loaded)
        });
        let (manifest, unsaved, repaired) = match loaded {
            Ok(Loaded { relayout, damaged }) => {
                let repaired: BTreeSet<Partition> = damaged.into_keys().collect();
                (manifest, &relayout | &repaired, repaired.len())
            }
            // The log has every row: a segment that cannot be put back costs a rebuild, not
            // the server.
            Err(error) => {
                tracing::error!(
                    %error,
                    "the table segments cannot be loaded: the tables are rebuilt from the log"
                );
                segments.clear()?;
                tables = Tables::default();
                let empty = Manifest {
                    format: FORMAT,
                    ..Manifest::default()
                };
                (empty, BTreeSet::new(), 0)
            }
        };
        tables.next_position = manifest.checkpoint;
        tables.dirty.clear();
        // Every chunk loaded as it was saved is saved; the months whose segments had another
        // layout are written again at the next checkpoint.
        let saved = tables
            .dossiers
            .months
            .iter()
            .filter(|(month, _)| !unsaved.contains(&Partition::Dossiers(**month)))
            .flat_map(|(month, m)| m.chunks().map(|(i, stamp, _)| ((*month, i), stamp)))
            .collect();
        let (position, _) = watch::channel(manifest.checkpoint);
        let mut state = State {
            tables,
            generation: 0,
            manifest,
            unsaved,
            cache: HashMap::new(),
            chunks: BTreeMap::new(),
            saved,
        };
        cool_daily(&mut state, &policy, segments.path(), &BTreeSet::new());
        let projections = Self {
            shared: Arc::new(Shared {
                store: store.clone(),
                segments,
                policy,
                state: Mutex::new(state),
                checkpointing: Mutex::new(()),
                position,
                retired: Mutex::new(Vec::new()),
                sealer: Mutex::new(None),
                sealing: Mutex::new(BTreeSet::new()),
                overlapped: Mutex::new(Vec::new()),
                repaired,
                footers: Mutex::new(Vec::new()),
                calendar: CalendarSource::default(),
            }),
        };
        projections.publish_calendar(&projections.state().tables);
        let recall = Arc::new(LogRecall::new(&projections));
        projections.state().tables.dossiers.sealed_rows = Some(recall);
        if repaired > 0 {
            // The damaged files leave the manifest now, not at the next checkpoint.
            if let Err(error) = projections.checkpoint() {
                tracing::warn!(%error, "the repaired partitions are saved at a later checkpoint");
            }
        }
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
        self.wait_for_sealing();
        let _checkpoint = lock(&self.shared.checkpointing);
        self.shared.segments.clear()?;
        let mut state = self.state();
        state.generation += 1;
        let sealed_rows = state.tables.dossiers.sealed_rows.take();
        state.tables = Tables::default();
        state.tables.dossiers.sealed_rows = sealed_rows;
        state.manifest = Manifest {
            format: FORMAT,
            ..Manifest::default()
        };
        state.unsaved.clear();
        state.cache.clear();
        state.chunks.clear();
        state.saved.clear();
        self.publish_calendar(&state.tables);
        self.shared.position.send_replace(0);
        Ok(())
    }

    /// The calendar in force: what `working_days`, `add_working_days`, `calendar` and
    /// `dossiers.working_days_late` read.
    pub fn calendar(&self) -> &CalendarSource {
        &self.shared.calendar
    }

    /// Puts in force the calendar of the announcements `tables` hold.
    fn publish_calendar(&self, tables: &Tables) {
        self.shared
            .calendar
            .replace(Calendar::from_events(&tables.declarations));
    }

    /// How many partitions had damaged or missing segments at open, and were rebuilt alone
    /// from the log.
    pub fn repaired_at_open(&self) -> usize {
        self.shared.repaired
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
    pub fn catch_up(&self, progress: impl FnMut(u64, u64)) -> Result<u64> {
        self.catch_up_while(progress, || true)
    }

    /// Folds the log up to its head as it is now, while `go_on()` says so. The log is read and
    /// decoded on a thread of its own while this one folds: a replay's two halves take about
    /// the same time, and two cores do them at once.
    fn catch_up_while(
        &self,
        mut progress: impl FnMut(u64, u64),
        go_on: impl Fn() -> bool,
    ) -> Result<u64> {
        let (from, head) = (self.position(), self.shared.store.head());
        if from >= head {
            return Ok(from);
        }
        let store = &self.shared.store;
        let folded = std::thread::scope(|scope| {
            // Two batches in flight: the decoder stays one ahead without piling up memory.
            let (send, decoded) = std::sync::mpsc::sync_channel::<Result<Decoded>>(2);
            let decoder = move || {
                let mut next = from;
                while next < head {
                    let want = FOLD_BATCH.min((head - next) as usize);
                    let mut batch = Decoded::with_capacity(want);
                    let read = store.scan(next, want, |event| batch.push(event));
                    let stop = read.is_err();
                    next += read.as_ref().map_or(0, |read| *read);
                    if send.send(read.map(|_| batch).map_err(Error::from)).is_err() || stop {
                        return;
                    }
                }
            };
            std::thread::Builder::new()
                .name("chiso-decode".into())
                .spawn_scoped(scope, decoder)
                .map_err(|error| Error::Fold(format!("cannot start the decoder: {error}")))?;
            for batch in decoded {
                self.fold(batch?)?;
                progress(self.position(), head);
                if !go_on() {
                    break;
                }
            }
            Ok(self.position())
        });
        // What is being sealed is installed before the tables count as caught up.
        self.wait_for_sealing();
        folded
    }

    /// Follows the log on a thread of its own (so a long fold or a sealing never holds up an
    /// HTTP worker): folds each commit, seals months when due, writes a checkpoint every few
    /// seconds when something changed, and a last one when `shutdown` fires (after folding
    /// what the log holds by then). The handle resolves when it has stopped.
    pub fn follow(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let projections = self.clone();
        let thread = std::thread::Builder::new()
            .name("chiso-fold".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a runtime for the fold");
                runtime.block_on(projections.follow_here(shutdown));
                let _ = done.send(());
            });
        if let Err(error) = thread {
            tracing::error!(%error, "cannot start the fold thread");
        }
        tokio::spawn(async move {
            let _ = finished.await;
        })
    }

    async fn follow_here(self, shutdown: CancellationToken) {
        let mut reported = std::time::Instant::now();
        // Far behind (a first start, an upgrade): replay on two threads first.
        if self.shared.store.head().saturating_sub(self.position()) > CATCH_UP_FROM {
            let replayed = self.catch_up_while(
                |_, _| self.report_progress(&mut reported),
                || !shutdown.is_cancelled(),
            );
            if let Err(error) = replayed {
                tracing::error!(%error, "replaying the log failed; following it from here");
            }
        }
        let mut subscription = self.shared.store.subscribe(self.position());
        let mut timer = tokio::time::interval(CHECKPOINT_EVERY);
        loop {
            tokio::select! {
                batch = subscription.next_batch(FOLD_BATCH) => match batch {
                    Ok(events) => {
                        self.report_progress(&mut reported);
                        let mut decoded = Decoded::with_capacity(events.len());
                        for event in &events {
                            decoded.push(event.as_event_ref());
                        }
                        if let Err(error) = self.fold(decoded) {
                            tracing::error!(%error, "folding failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            subscription = self.shared.store.subscribe(self.position());
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "projections stopped following the log");
                        break;
                    }
                },
                _ = timer.tick() => {
                    // A sealing the busy sealer thread put off is not left for the next
                    // append: the rows in memory get back under their budget meanwhile.
                    if let Err(error) = self.seal_when_due() {
                        tracing::error!(%error, "sealing failed; will retry");
                    }
                    self.checkpoint_when_changed();
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.wait_for_sealing();
        match self.catch_up(|_, _| {}).and_then(|_| self.checkpoint()) {
            Ok(()) => tracing::info!(position = self.position(), "tables saved"),
            Err(error) => tracing::error!(%error, "saving the tables failed"),
        }
    }

    /// Every few seconds while far behind the log (a first start, an upgrade): how far the
    /// tables are.
    fn report_progress(&self, reported: &mut std::time::Instant) {
        let (position, head) = (self.position(), self.shared.store.head());
        if head.saturating_sub(position) > 100_000 && reported.elapsed() > Duration::from_secs(5) {
            *reported = std::time::Instant::now();
            let percent = position as f64 * 100.0 / head as f64;
            tracing::info!(
                position,
                head,
                "tables catching up with the log: {percent:.1} %"
            );
        }
    }

    fn checkpoint_when_changed(&self) {
        let idle = {
            let state = self.state();
            state.unsaved.is_empty() && state.tables.dirty.is_empty()
        };
        if !idle {
            if let Err(error) = self.checkpoint() {
                tracing::error!(%error, "checkpoint failed; will retry");
            }
        }
    }

    /// Folds decoded events that follow the tables' position, then seals the months that are
    /// due.
    fn fold(&self, events: Decoded) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        let mut counted = agency_daily::counted_months(&events, &state.tables.cold_daily);
        if !state.tables.cold_daily.is_empty() {
            let corrected = state.tables.corrected_months(&events);
            counted.extend(corrected.map_err(|FoldError(reason)| Error::Fold(reason))?);
        }
        for month in counted {
            self.warm_daily(&mut state, month)?;
        }
        let failed = state.tables.fold(events).err();
        let changed = std::mem::take(&mut state.tables.dirty);
        if changed.contains(&Partition::Calendar) {
            self.publish_calendar(&state.tables);
        }
        for partition in &changed {
            state.cache.remove(partition);
        }
        state.unsaved.extend(changed);
        let position = state.tables.next_position;
        drop(state);
        self.shared.position.send_replace(position);
        if let Some(FoldError(reason)) = failed {
            return Err(Error::Fold(reason));
        }
        self.seal_when_due()
    }

    /// Seals the months that are due, if any.
    fn seal_when_due(&self) -> Result<()> {
        let due = !self
            .state()
            .tables
            .months_to_seal(&self.shared.policy)
            .is_empty();
        if due {
            self.seal()?;
        }
        Ok(())
    }

    /// Brings a cold month of `agency_daily` back into memory from its segment, before an
    /// event counts on one of its days.
    fn warm_daily(&self, state: &mut State, month: MonthKey) -> Result<()> {
        let Some(cold) = state.tables.cold_daily.get(&month).cloned() else {
            return Ok(());
        };
        let restored = sealed::read_base(&self.segment_path(&cold.file), &cold.base(), None)
            .and_then(|batches| {
                for batch in &batches {
                    state
                        .tables
                        .restore_daily(month, batch, false)
                        .map_err(|reason| Error::Segment {
                            file: cold.file.to_string(),
                            reason,
                        })?;
                }
                Ok(())
            });
        if let Err(error) = restored {
            // A cold month has no rows in memory: none stay half restored.
            state.tables.daily.remove(&month);
            return Err(error);
        }
        state.tables.cold_daily.remove(&month);
        state.cache.remove(&Partition::AgencyDaily(month));
        lock(&self.shared.retired).push(cold.file);
        Ok(())
    }

    /// Seals (or compacts) the months that are due. The next checkpoint names their files;
    /// until then a restart folds their rows again from the log.
    ///
    /// The rows to seal are copied, and the file written on a thread of its own (one at a
    /// time) while the fold goes on: a compaction reads, merges and rewrites a whole month,
    /// ≈ 775 000 rows nationally. Under [`SealPolicy::immediately`] it is done here.
    fn seal(&self) -> Result<()> {
        let policy = self.shared.policy;
        if !policy.immediately {
            // Busy: not waiting on a checkpoint for a sealing that would not start.
            if self.sealer_busy() {
                return Ok(());
            }
            let _serial = lock(&self.shared.checkpointing);
            let mut state = self.state();
            let months = state.tables.months_to_seal(&policy);
            if !months.is_empty() {
                self.seal_elsewhere(&mut state, months);
            }
            return Ok(());
        }
        // A failed install gives its month up; the others are installed all the same.
        let mut failed = Ok(());
        let mut installed = |outcome: Result<()>| {
            if failed.is_ok() {
                failed = outcome;
            }
        };
        let overlapped = std::mem::take(&mut *lock(&self.shared.overlapped));
        for written in overlapped {
            installed(self.install(written));
        }
        let jobs = {
            // Not while a checkpoint commits: it removes the files its manifest does not name.
            let _serial = lock(&self.shared.checkpointing);
            let mut state = self.state();
            let months = state.tables.months_to_seal(&policy);
            self.begin_sealing(&mut state, months)
        };
        for job in jobs {
            let written = self.write_sealed(job);
            if policy.overlapped {
                lock(&self.shared.overlapped).push(written);
            } else {
                installed(self.install(written));
            }
        }
        failed
    }

    fn sealer_busy(&self) -> bool {
        let sealer = lock(&self.shared.sealer);
        sealer.as_ref().is_some_and(|thread| !thread.is_finished())
    }

    /// Starts the sealer thread on `months` unless it is still busy (the months stay due).
    fn seal_elsewhere(&self, state: &mut State, months: BTreeMap<MonthKey, Sealing>) {
        let mut sealer = lock(&self.shared.sealer);
        if sealer.as_ref().is_some_and(|thread| !thread.is_finished()) {
            return;
        }
        let jobs = self.begin_sealing(state, months);
        let projections = self.clone();
        let started = std::thread::Builder::new()
            .name("chiso-seal".into())
            .spawn(move || {
                for job in jobs {
                    let (month, file) = (job.month, job.file.clone());
                    let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        projections.install(projections.write_sealed(job))
                    }));
                    let error = match sealed {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => error.to_string(),
                        // A bug, not the data: the month is sealed again later.
                        Err(_) => {
                            projections.give_up(month, &file);
                            "the sealing panicked".to_owned()
                        }
                    };
                    let month = month_name(month);
                    tracing::error!(%error, %month, "sealing failed; will retry");
                }
            });
        match started {
            Ok(thread) => *sealer = Some(thread),
            Err(error) => {
                tracing::error!(%error, "cannot start the sealer thread; sealing later");
                for month in state.tables.dossiers.months.values_mut() {
                    month.abandon_sealing();
                }
                lock(&self.shared.sealing).clear();
            }
        }
    }

    /// Copies the rows of `months` that their sealing takes (each month remembers the rows
    /// that change until its file is installed) and names their files, which checkpoints
    /// keep meanwhile.
    fn begin_sealing(
        &self,
        state: &mut State,
        months: BTreeMap<MonthKey, Sealing>,
    ) -> Vec<SealJob> {
        let (position, generation) = (state.tables.next_position, state.generation);
        let mut jobs = Vec::new();
        for (month, sealing) in months {
            let Some(partition) = state.tables.dossiers.months.get_mut(&month) else {
                continue;
            };
            let file = format!(
                "dossiers_{}.sealed.{position}.{}.parquet",
                month_name(month),
                unique_suffix()
            );
            lock(&self.shared.sealing).insert(file.clone());
            let started = std::time::Instant::now();
            let to_seal = partition.begin_sealing(sealing);
            jobs.push(SealJob {
                generation,
                month,
                earlier: partition.sealed.clone(),
                to_seal,
                file,
                copied: started.elapsed(),
            });
        }
        jobs
    }

    /// Gives up the sealing of `month` into `file` (the next checkpoint removes the file).
    fn give_up(&self, month: MonthKey, file: &str) {
        let mut state = self.state();
        if let Some(partition) = state.tables.dossiers.months.get_mut(&month) {
            partition.abandon_sealing();
        }
        lock(&self.shared.sealing).remove(file);
    }

    /// Writes a month's new sealed file (no lock held): the rows copied and, when the month
    /// has a file already, the rows of that file visible when they were copied.
    fn write_sealed(&self, mut job: SealJob) -> Written {
        let started = std::time::Instant::now();
        let late_from =
            day_start(month_first_day(job.month + 1)).saturating_add(sealed::LATE_AFTER);
        let outcome = (|| {
            let earlier = match &job.earlier {
                Some(base) => sealed::read_base(&self.segment_path(&base.file), base, None)?,
                None => Vec::new(),
            };
            let rows = &mut job.to_seal.rows;
            let Some(encoded) = sealed::encode_sealed(rows, earlier, late_from, &job.file)? else {
                return Ok(None);
            };
            self.shared.segments.write(&job.file, &encoded.bytes)?;
            let base = sealed::open_base(&self.segment_path(&job.file), &job.file)?;
            Ok(Some((base, encoded.placed)))
        })();
        Written {
            job,
            outcome,
            took: started.elapsed(),
        }
    }

    /// Installs a month's new sealed file: the rows copied that did not change since leave
    /// memory, and the file's copies of rows that changed since — in memory, or recalled from
    /// the month's earlier file — are deleted in it.
    fn install(&self, written: Written) -> Result<()> {
        let Written { job, outcome, took } = written;
        let SealJob {
            generation,
            month,
            earlier,
            to_seal: ToSeal { taken, rows },
            file,
            copied,
        } = job;
        let _serial = lock(&self.shared.checkpointing);
        let mut state = self.state();
        let installing = std::time::Instant::now();
        lock(&self.shared.sealing).remove(&file);
        let current = state.generation == generation;
        // A month that lost rows meanwhile (a correction moved one, a void) gave up this
        // sealing: its file is not installed, and the next checkpoint removes it.
        let Some(partition) = state
            .tables
            .dossiers
            .months
            .get_mut(&month)
            .filter(|partition| current && partition.is_sealing())
        else {
            return Ok(());
        };
        let written = outcome.inspect_err(|_| partition.abandon_sealing())?;
        // Nothing else replaces the month's file while it seals: were it replaced, this one
        // would be left.
        let file_of = |base: &Option<SealedBase>| base.as_ref().map(|b| b.file.clone());
        let unchanged = file_of(&earlier) == file_of(&partition.sealed);
        let Some((mut base, placed)) = written.filter(|_| unchanged) else {
            partition.abandon_sealing();
            return Ok(());
        };
        let mut deleted: Vec<u32> = match (&earlier, &partition.sealed) {
            (Some(then), Some(now)) => hidden_since(then, now).map(|given| placed[given]).collect(),
            _ => Vec::new(),
        };
        let sealed = partition.finish_sealing(&taken);
        if !sealed.changed.is_empty() {
            let changed: HashSet<&str> = sealed.changed.iter().map(|id| &**id).collect();
            let from = earlier.as_ref().map_or(0, SealedBase::live_rows) as usize;
            let given = rows.iter().enumerate();
            deleted.extend(
                given
                    .filter(|(_, d)| changed.contains(&*d.id))
                    .map(|(row, _)| placed[from + row]),
            );
        }
        deleted.sort_unstable();
        base.deleted = Arc::new(deleted);
        let count = base.live_rows();
        if let Some(old) = partition.sealed.replace(base) {
            lock(&self.shared.retired).push(old.file);
        }
        state.tables.dossiers.reindex(month, &sealed.moved);
        state.chunks.retain(|(m, _), _| *m != month);
        state.unsaved.insert(Partition::Dossiers(month));
        let installed = installing.elapsed();
        // The rows that left memory (a national month's million) are freed after the lock.
        drop(state);
        drop(_serial);
        drop(sealed);
        // The copy and the install hold the tables' lock (the fold and queries wait); the
        // writing does not.
        tracing::info!(
            month = %month_name(month),
            rows = count,
            compacted = earlier.is_some(),
            written_s = took.as_secs_f64(),
            copied_s = copied.as_secs_f64(),
            installed_s = installed.as_secs_f64(),
            "month sealed"
        );
        Ok(())
    }

    /// Waits until the sealer thread, if one runs, has installed what it was writing.
    fn wait_for_sealing(&self) {
        let thread = lock(&self.shared.sealer).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the sealer thread panicked");
            }
        }
    }

    /// Writes every partition changed since the last checkpoint as a new segment, then commits
    /// the manifest with the position the segments include.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_holding(lock(&self.shared.checkpointing))
    }

    fn checkpoint_holding(&self, _serial: MutexGuard<'_, ()>) -> Result<()> {
        let (position, mut manifest, parts, bases) = {
            let mut state = self.state();
            let changed = std::mem::take(&mut state.tables.dirty);
            state.unsaved.extend(changed);
            let unsaved = std::mem::take(&mut state.unsaved);
            let parts: Vec<(Partition, Vec<Segment>)> =
                unsaved.iter().map(|p| (*p, state.segments(*p))).collect();
            for partition in &unsaved {
                state.cache.remove(partition);
            }
            let bases: Vec<(String, String)> = state
                .tables
                .dossiers
                .months
                .iter()
                .filter_map(|(m, d)| Some((sealed_name(*m), d.sealed.as_ref()?.file.to_string())))
                .collect();
            (
                state.tables.next_position,
                state.manifest.clone(),
                parts,
                bases,
            )
        };
        let bases_changed = {
            let mut now: Vec<(&String, &String)> = manifest
                .segments
                .iter()
                .filter(|(name, _)| name.ends_with(SEALED))
                .collect();
            now.sort();
            now != bases.iter().map(|(n, f)| (n, f)).collect::<Vec<_>>()
        };
        if parts.is_empty() && !bases_changed && manifest.checkpoint == position {
            return Ok(());
        }
        let written = self.write_segments(position, &mut manifest, &parts);
        let committed = written.and_then(|()| {
            manifest.segments.retain(|name, _| !name.ends_with(SEALED));
            manifest.segments.extend(bases);
            manifest.checkpoint = position;
            manifest.format = FORMAT;
            let keep = self.files_in_use();
            let removed = self.shared.segments.commit_keeping(&manifest, &keep)?;
            self.forget_footers(&removed);
            Ok(())
        });
        let mut state = self.state();
        match committed {
            Ok(()) => {
                state.manifest = manifest;
                // A month this checkpoint saved is still changing (a late count brought it
                // back, or it just settled): it cools at a later one, if it stays unchanged.
                let saved: BTreeSet<Partition> = parts.iter().map(|(p, _)| *p).collect();
                let policy = &self.shared.policy;
                cool_daily(&mut state, policy, self.shared.segments.path(), &saved);
                for segment in parts.iter().flat_map(|(_, segments)| segments) {
                    match segment.chunk {
                        Some((chunk, Some(stamp))) => state.saved.insert(chunk, stamp),
                        Some((chunk, None)) => state.saved.remove(&chunk),
                        None => None,
                    };
                }
            }
            Err(_) => state.unsaved.extend(parts.iter().map(|(p, _)| *p)),
        }
        committed
    }

    /// Retired sealed files a scan still reads (the rest may go).
    fn files_in_use(&self) -> BTreeSet<String> {
        let mut retired = lock(&self.shared.retired);
        retired.retain(|file| Arc::strong_count(file) > 1);
        let sealing = lock(&self.shared.sealing);
        let being_written = sealing
            .iter()
            .flat_map(|file| [file.clone(), format!("{file}.tmp")]);
        retired
            .iter()
            .map(|file| file.to_string())
            .chain(being_written)
            .collect()
    }

    /// Encodes the segments (on as many threads as [`CHECKPOINT_THREADS`] when there are
    /// many: a rebuild's last checkpoint writes every hot month), writes their files with one
    /// fsync of the directory, and names them in `manifest`.
    fn write_segments(
        &self,
        position: u64,
        manifest: &mut Manifest,
        parts: &[(Partition, Vec<Segment>)],
    ) -> Result<()> {
        let mut jobs = Vec::new();
        for segment in parts.iter().flat_map(|(_, segments)| segments) {
            let rows = match &segment.content {
                Content::Batch(batch) => Some(batch.num_rows()),
                Content::Dossiers(rows) => Some(rows.len()),
                Content::Removed => None,
            };
            // A segment without rows is written only for its metadata.
            if rows.is_none_or(|rows| rows == 0 && segment.metadata.is_empty()) {
                manifest.segments.remove(&segment.name);
                continue;
            }
            let file = format!(
                "{}.{position}.{}.parquet",
                segment.name.replace('/', "_"),
                unique_suffix()
            );
            jobs.push((segment, file));
        }
        let encode = |(segment, file): &(&Segment, String)| -> Result<Vec<u8>> {
            let batch = match &segment.content {
                Content::Batch(batch) => batch.clone(),
                Content::Dossiers(rows) => dossiers_batch(rows, 0, true),
                Content::Removed => unreachable!("removed segments are not written"),
            };
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_key_value_metadata(Some(segment.metadata.clone()))
                .build();
            sealed::encode(&batch, properties, file)
        };
        let threads = if jobs.len() >= 16 {
            CHECKPOINT_THREADS
        } else {
            1
        };
        let encoded: Vec<Result<Vec<u8>>> = if threads > 1 {
            let per_thread = jobs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let workers: Vec<_> = jobs
                    .chunks(per_thread)
                    .map(|jobs| scope.spawn(move || jobs.iter().map(encode).collect::<Vec<_>>()))
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().expect("encoding a segment does not panic"))
                    .collect()
            })
        } else {
            jobs.iter().map(encode).collect()
        };
        let encoded = encoded.into_iter().collect::<Result<Vec<_>>>()?;
        let files = jobs.iter().zip(&encoded);
        self.shared
            .segments
            .write_all(files.map(|((_, file), bytes)| (file.as_str(), bytes.as_slice())))?;
        for (segment, file) in jobs {
            manifest.segments.insert(segment.name.clone(), file);
        }
        Ok(())
    }

    /// Where a segment file of the tables is.
    pub(crate) fn segment_path(&self, file: &str) -> PathBuf {
        self.shared.segments.path().join(file)
    }

    /// Shares an SQL engine's cache of file footers, so removed files leave it.
    pub(crate) fn share_footer_cache(&self, cache: &Arc<FooterCache>) {
        let mut caches = lock(&self.shared.footers);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
    }

    /// Forgets the footers of removed segment files, keyed as a scan keys them (the path of
    /// [`Projections::segment_path`] as an object-store path).
    fn forget_footers(&self, removed: &[String]) {
        if removed.is_empty() {
            return;
        }
        let caches: Vec<Arc<FooterCache>> = lock(&self.shared.footers)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for file in removed {
            let key = footer_key(&self.segment_path(file));
            for cache in &caches {
                cache.remove(&key);
            }
        }
    }

    /// Query batches of a table from memory; for time-series tables only the months in
    /// `months`. Sealed months are read from their files: see [`Projections::dossier_sources`].
    pub fn batches(&self, table: TableName, months: RangeInclusive<MonthKey>) -> Vec<RecordBatch> {
        let Some((mut state, now)) = self.state_for(&months) else {
            return Vec::new();
        };
        batches_of(&mut state, table, months, now)
    }

    /// The state and the time now, to read the months in `months` — `None` when contradictory
    /// time filters leave none.
    fn state_for(&self, months: &RangeInclusive<MonthKey>) -> Option<(MutexGuard<'_, State>, i64)> {
        (months.start() <= months.end())
            .then(|| (self.state(), chrono::Utc::now().timestamp_micros()))
    }

    /// `agency_daily`'s months in `months`: the rows in memory as batches, and the segments
    /// of the cold months — taken together, so no month is in both or in neither.
    pub fn daily_sources(
        &self,
        months: RangeInclusive<MonthKey>,
    ) -> (Vec<RecordBatch>, Vec<SealedFile>) {
        let Some((mut state, now)) = self.state_for(&months) else {
            return (Vec::new(), Vec::new());
        };
        let batches = batches_of(&mut state, TableName::AgencyDaily, months.clone(), now);
        let files = state
            .tables
            .cold_daily
            .range(months)
            .map(|(_, cold)| SealedFile {
                path: self.segment_path(&cold.file),
                base: cold.base(),
            })
            .collect();
        (batches, files)
    }

    /// The `dossiers` months in `months`: the rows in memory as batches, and the sealed files
    /// with their deletion vectors — taken together, so no row is in both or in neither.
    pub fn dossier_sources(
        &self,
        months: RangeInclusive<MonthKey>,
    ) -> (Vec<RecordBatch>, Vec<SealedFile>) {
        let Some((mut state, now)) = self.state_for(&months) else {
            return (Vec::new(), Vec::new());
        };
        let mut batches = Vec::new();
        let mut files = Vec::new();
        let months: Vec<(MonthKey, Option<SealedBase>, bool)> = state
            .tables
            .dossiers
            .months
            .range(months)
            .map(|(m, d)| (*m, d.sealed.clone(), !d.rows().is_empty()))
            .collect();
        for (month, sealed, in_memory) in months {
            if in_memory {
                let partition = Partition::Dossiers(month);
                batches.extend(state.query_batches(partition, TableName::Dossiers, now));
            }
            if let Some(base) = sealed {
                let path = self.segment_path(&base.file);
                files.push(SealedFile { path, base });
            }
        }
        (batches, files)
    }

    /// Runs `read` on the tables' state; it also gets the sealed files of the months up to
    /// `until` for which `wanted` holds, to read once the state is released.
    pub(crate) fn read_with_sealed<T>(
        &self,
        until: MonthKey,
        wanted: impl Fn(&dossiers::DossierMonth) -> bool,
        read: impl FnOnce(&Tables) -> T,
    ) -> (T, Vec<SealedFile>) {
        let state = self.state();
        let files = state
            .tables
            .dossiers
            .months
            .range(..=until)
            .filter(|(_, m)| wanted(m))
            .filter_map(|(_, m)| m.sealed.clone())
            .map(|base| SealedFile {
                path: self.segment_path(&base.file),
                base,
            })
            .collect();
        (read(&state.tables), files)
    }

    /// Runs `read` on the tables' state (for figures computed in Rust).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Tables) -> T) -> T {
        read(&self.state().tables)
    }

    /// The rankings of `month` that differ from what is published.
    pub fn ranking_changes(&self, month: MonthKey) -> Result<Vec<crate::rankings::Publication>> {
        crate::rankings::changes(self, month)
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
    pub fn dossier_count(&self) -> u64 {
        self.state().tables.dossier_count()
    }

    /// Where the dossiers are: in memory or sealed.
    pub fn dossier_storage(&self) -> DossierStorage {
        let state = self.state();
        let dossiers = &state.tables.dossiers;
        DossierStorage {
            in_memory: dossiers.in_memory(),
            sealed_rows: dossiers
                .months
                .values()
                .filter_map(|m| m.sealed.as_ref())
                .map(SealedBase::live_rows)
                .sum(),
            daily_rows: state.tables.daily.values().map(|days| days.len()).sum(),
            daily_cold_rows: state.tables.cold_daily.values().map(|cold| cold.rows).sum(),
            sealed_months: dossiers
                .months
                .values()
                .filter(|m| m.sealed.is_some())
                .count(),
            sealed_bytes: dossiers
                .months
                .values()
                .filter_map(|m| m.sealed.as_ref())
                .map(|b| b.bytes)
                .sum(),
            recalled: dossiers.recalled,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

/// Query batches of `table` from memory (the months in `months` of time-series tables).
fn batches_of(
    state: &mut State,
    table: TableName,
    months: RangeInclusive<MonthKey>,
    now: i64,
) -> Vec<RecordBatch> {
    let partitions: Vec<Partition> = match table {
        TableName::Dossiers => state
            .tables
            .dossiers
            .months
            .range(months)
            .filter(|(_, m)| !m.rows().is_empty())
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

/// Drops from memory the rows of the settled months of `agency_daily` that their committed
/// segment holds as they are (their totals stay in `monthly`). A month settles as a month of
/// `dossiers` is sealed: once the log's clock is `after_days` past its end (at once under
/// [`SealPolicy::immediately`]), and not among `just_saved` (unless immediately): a month an
/// event keeps counting on stays in memory instead of being read back at every count.
fn cool_daily(
    state: &mut State,
    policy: &SealPolicy,
    dir: &Path,
    just_saved: &BTreeSet<Partition>,
) {
    let horizon = state.tables.dossiers.horizon;
    let settled: Vec<MonthKey> = state
        .tables
        .daily
        .keys()
        .copied()
        .filter(|month| policy.immediately || policy.settled(*month, horizon))
        .filter(|month| {
            let partition = Partition::AgencyDaily(*month);
            let changing = !policy.immediately && just_saved.contains(&partition);
            !changing
                && !state.unsaved.contains(&partition)
                && !state.tables.dirty.contains(&partition)
        })
        .collect();
    for month in settled {
        let name = Partition::AgencyDaily(month).name();
        let Some(file) = state.manifest.segments.get(&name) else {
            continue;
        };
        let Ok(metadata) = std::fs::metadata(dir.join(file)) else {
            continue;
        };
        let rows = state
            .tables
            .daily
            .remove(&month)
            .map_or(0, |days| days.len());
        let cold = ColdMonth {
            file: file.as_str().into(),
            rows: rows as u64,
            bytes: metadata.len(),
        };
        state.tables.cold_daily.insert(month, cold);
        state.cache.remove(&Partition::AgencyDaily(month));
    }
}

impl Tables {
    /// The months of `dossiers` to seal now (or, sealed already, to compact), and which of
    /// their rows.
    ///
    /// Past the memory budget the oldest months but the newest are sealed until the rows in
    /// memory are back under three quarters of it: first their closed rows, then their open
    /// ones (all but the paused). The quarter left keeps a sealed month that keeps receiving
    /// from being compacted again at every fold.
    fn months_to_seal(&self, policy: &SealPolicy) -> BTreeMap<MonthKey, Sealing> {
        let dossiers = &self.dossiers;
        let closed = dossiers::DossierMonth::closed_rows;
        if policy.immediately {
            return dossiers
                .months
                .iter()
                .filter(|(_, m)| m.sealable_rows(Sealing::AllButPaused) > 0)
                .map(|(month, _)| (*month, Sealing::AllButPaused))
                .collect();
        }
        let mut due = BTreeMap::new();
        let mut freed = 0usize;
        let months = || dossiers.months.iter().filter(|(_, m)| !m.is_sealing());
        for (month, m) in months() {
            let compact = m.sealed.as_ref().is_some_and(|base| {
                let replaced = base.deleted.len() + closed(m);
                replaced > COMPACT_MIN_ROWS || replaced as f64 > base.rows as f64 * COMPACT_SHARE
            });
            let ripe =
                m.sealed.is_none() && closed(m) > 0 && policy.settled(*month, dossiers.horizon);
            if compact || ripe {
                due.insert(*month, Sealing::Closed);
                freed += closed(m);
            }
        }
        let newest = local_month(dossiers.horizon);
        let mut in_memory = dossiers.in_memory().saturating_sub(freed) * ROW_BYTES;
        if in_memory <= policy.hot_bytes {
            return due;
        }
        let target = policy.hot_bytes / 4 * 3;
        for (month, m) in months() {
            if in_memory <= target || *month >= newest {
                break;
            }
            if m.sealed.is_none() && closed(m) > 0 && !due.contains_key(month) {
                due.insert(*month, Sealing::Closed);
                in_memory = in_memory.saturating_sub(closed(m) * ROW_BYTES);
            }
        }
        for (month, m) in months() {
            let open = m.sealable_rows(Sealing::AllButPaused) - closed(m);
            if in_memory <= target || *month >= newest {
                break;
            }
            if open > 0 {
                due.insert(*month, Sealing::AllButPaused);
                in_memory = in_memory.saturating_sub(open * ROW_BYTES);
            }
        }
        due
    }
}

/// Threads a large checkpoint encodes its segments on (a replay's last checkpoint: every hot
/// month and every changed day), so it takes both cores instead of one.
const CHECKPOINT_THREADS: usize = 2;

/// A month's sealing under way: the rows copied, the month's file when they were (a
/// compaction merges its visible rows), and the new file's name.
struct SealJob {
    generation: u64,
    month: MonthKey,
    earlier: Option<SealedBase>,
    to_seal: ToSeal,
    file: String,
    /// How long copying the rows held the tables' lock.
    copied: Duration,
}

/// A sealing's file written, or why not, with where each row given went in it.
struct Written {
    job: SealJob,
    outcome: Result<Option<(SealedBase, Vec<u32>)>>,
    took: Duration,
}

/// The rows of a sealed file hidden since `then` (it is `now`, later), each as its place among
/// the rows `then` showed.
fn hidden_since<'a>(then: &'a SealedBase, now: &'a SealedBase) -> impl Iterator<Item = usize> + 'a {
    let before = &then.deleted;
    now.deleted
        .iter()
        .filter(|row| before.binary_search(row).is_err())
        .map(|&row| row as usize - before.partition_point(|&hidden| hidden < row))
}

/// The manifest name of a month's sealed file.
fn sealed_name(month: MonthKey) -> String {
    format!("{}{SEALED}", Partition::Dossiers(month).name())
}

const SEALED: &str = "@sealed";

/// A suffix no earlier file of this directory has: files are never overwritten in place.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:x}{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl State {
    /// The cached batches of a partition, rebuilt when stale; `Services` serves two tables.
    fn query_batches(
        &mut self,
        partition: Partition,
        table: TableName,
        now: i64,
    ) -> Vec<RecordBatch> {
        if let Partition::Dossiers(month) = partition {
            return self.dossier_batches(month, now);
        }
        if let Some(batches) = self.cache.get(&partition) {
            return pick(table, batches);
        }
        let tables = &self.tables;
        let batches = match partition {
            Partition::Agencies => vec![tables.agencies_batch()],
            Partition::Services => vec![tables.services_batch(), tables.service_levels_batch()],
            Partition::IctIndex => vec![tables.ict_index_batch()],
            Partition::Rankings => vec![tables.rankings_batch()],
            Partition::Calendar => vec![tables.declarations_batch()],
            Partition::AgencyDaily(month) => vec![tables.daily_batch(month)],
            Partition::Dossiers(_) => unreachable!("read by chunk"),
        };
        let picked = pick(table, &batches);
        self.cache.insert(partition, batches);
        picked
    }

    /// One batch per chunk of a month's rows in memory: a chunk changed since its batch was
    /// built is built again, one holding an open pause has its two clock columns refreshed
    /// once a second, and the rest are reused.
    fn dossier_batches(&mut self, month: MonthKey, now: i64) -> Vec<RecordBatch> {
        const PAUSE_REFRESH_MICROS: i64 = 1_000_000;
        let Some(m) = self.tables.dossiers.months.get(&month) else {
            return Vec::new();
        };
        let mut batches = Vec::new();
        for (i, stamp, rows) in m.chunks() {
            let cached = self
                .chunks
                .entry((month, i))
                .or_insert_with(|| CachedChunk::build(rows, stamp, now));
            if cached.stamp != stamp {
                *cached = CachedChunk::build(rows, stamp, now);
            }
            if cached.open_pauses && now - cached.built >= PAUSE_REFRESH_MICROS {
                cached.batch = dossiers::with_pauses_at(&cached.batch, rows, now);
                cached.built = now;
            }
            batches.push(cached.batch.clone());
        }
        // Chunks past the end: the month lost rows to its sealed file.
        let stale: Vec<_> = self
            .chunks
            .range((month, batches.len())..=(month, usize::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.chunks.remove(&key);
        }
        batches
    }

    /// The segments to write for a changed partition. A `dossiers` month is written by chunk:
    /// the chunks changed since they were saved, the removal of chunks past its end, and its
    /// deletion vector.
    fn segments(&self, partition: Partition) -> Vec<Segment> {
        let tables = &self.tables;
        let batch = |name: &str, batch| vec![Segment::new(name, Content::Batch(batch))];
        match partition {
            Partition::Agencies => batch("agencies", tables.agencies_segment()),
            Partition::Services => vec![
                Segment::new("services", Content::Batch(tables.services_batch())),
                Segment::new(
                    "service_levels",
                    Content::Batch(tables.service_levels_batch()),
                ),
            ],
            Partition::IctIndex => batch("ict_index", tables.ict_index_batch()),
            Partition::Rankings => batch("rankings", tables.rankings_batch()),
            Partition::Calendar => batch("calendar", tables.declarations_batch()),
            // A cold month's segment is its rows: it stays as it is.
            Partition::AgencyDaily(month) if tables.cold_daily.contains_key(&month) => Vec::new(),
            Partition::AgencyDaily(month) => {
                let (days, totals) = (tables.daily_batch(month), tables.monthly_batch(month));
                vec![
                    Segment::new(partition.name(), Content::Batch(days)),
                    Segment::new(totals_name(month), Content::Batch(totals)),
                ]
            }
            Partition::Dossiers(month) => self.dossier_segments(month),
        }
    }

    fn dossier_segments(&self, month: MonthKey) -> Vec<Segment> {
        let prefix = Partition::Dossiers(month).name();
        let m = self.tables.dossiers.months.get(&month);
        let mut segments = Vec::new();
        let mut chunks = 0;
        for (i, stamp, rows) in m.into_iter().flat_map(|m| m.chunks()) {
            chunks = i + 1;
            if self.saved.get(&(month, i)) != Some(&stamp) {
                let mut segment =
                    Segment::new(chunk_name(&prefix, i), Content::Dossiers(rows.to_vec()));
                segment.chunk = Some(((month, i), Some(stamp)));
                segments.push(segment);
            }
        }
        // Saved chunks past the end, and a segment of the whole month (format 2's layout).
        let removed = self
            .manifest
            .segments
            .range(format!("{prefix}/")..format!("{prefix}/~"))
            .filter_map(|(name, _)| Some((name, chunk_number(name)?)))
            .filter(|(_, i)| *i >= chunks);
        for (name, i) in removed {
            let mut segment = Segment::new(name.clone(), Content::Removed);
            segment.chunk = Some(((month, i), None));
            segments.push(segment);
        }
        if self.manifest.segments.contains_key(&prefix) {
            segments.push(Segment::new(prefix.clone(), Content::Removed));
        }
        let deletions = format!("{prefix}/{DELETIONS}");
        let deleted = m
            .and_then(|m| m.sealed.as_ref())
            .filter(|b| !b.deleted.is_empty());
        if let Some(base) = deleted {
            let rows: Vec<String> = base.deleted.iter().map(u32::to_string).collect();
            let mut segment = Segment::new(deletions, Content::Batch(dossiers_batch(&[], 0, true)));
            segment.metadata = vec![KeyValue::new(sealed::DELETED.into(), rows.join(","))];
            segments.push(segment);
        } else if self.manifest.segments.contains_key(&deletions) {
            segments.push(Segment::new(deletions, Content::Removed));
        }
        segments
    }
}

/// The manifest name of chunk `i` of a month's rows in memory (`dossiers/YYYY-MM/00003`).
fn chunk_name(prefix: &str, i: usize) -> String {
    format!("{prefix}/{i:05}")
}

/// The chunk number of a chunk's manifest name.
fn chunk_number(name: &str) -> Option<usize> {
    name.rsplit_once('/')?.1.parse().ok()
}

/// The manifest name's last part for a month's deletion vector (`dossiers/YYYY-MM/deleted`).
const DELETIONS: &str = "deleted";

fn pick(table: TableName, batches: &[RecordBatch]) -> Vec<RecordBatch> {
    match table {
        TableName::ServiceLevels => batches[1..].to_vec(),
        TableName::Services => batches[..1].to_vec(),
        _ => batches.to_vec(),
    }
}

/// Where the dossiers are ([`Projections::dossier_storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DossierStorage {
    /// Rows in memory: the hot months, and the open or changed rows of sealed months.
    pub in_memory: usize,
    /// Rows in sealed files (those a deletion vector hides left out).
    pub sealed_rows: u64,
    /// Rows of `agency_daily` in memory.
    pub daily_rows: usize,
    /// Rows of `agency_daily` only in the segments of settled months.
    pub daily_cold_rows: u64,
    /// Months with a sealed file.
    pub sealed_months: usize,
    /// The sealed files' bytes.
    pub sealed_bytes: u64,
    /// Sealed dossiers a later event brought back into memory since the tables were opened.
    pub recalled: u64,
}

impl DossierStorage {
    /// About how much memory the rows kept in memory take: what the hot budget bounds.
    pub fn memory_estimate(&self) -> usize {
        self.in_memory * ROW_BYTES + self.daily_rows * DAILY_ROW_BYTES
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

/// One segment to write: a partition's rows and the footer metadata beside them.
struct Segment {
    name: String,
    content: Content,
    metadata: Vec<KeyValue>,
    /// For a chunk of `dossiers`: which, and the stamp its rows have (`None`: removed).
    chunk: Option<((MonthKey, usize), Option<u64>)>,
}

/// A segment's rows: a batch, dossier rows copied under the lock and encoded after it, or
/// none (the manifest forgets the segment).
enum Content {
    Batch(RecordBatch),
    Dossiers(Vec<Dossier>),
    Removed,
}

impl Segment {
    fn new(name: impl Into<String>, content: Content) -> Self {
        Self {
            name: name.into(),
            content,
            metadata: Vec::new(),
            chunk: None,
        }
    }
}

/// What [`load_segments`] put back.
#[derive(Debug, Default)]
struct Loaded {
    /// The `dossiers` months whose rows were not saved by chunk as [`CHUNK_ROWS`] lays them
    /// out now (to write again).
    relayout: BTreeSet<Partition>,
    /// The partitions a segment of which could not be read, and why: what they hold is
    /// forgotten, to rebuild from the log.
    damaged: BTreeMap<Partition, String>,
}

/// The segment of a month's `agency_daily` totals by agency, beside its days.
fn totals_name(month: MonthKey) -> String {
    format!("{}/{TOTALS}", Partition::AgencyDaily(month).name())
}

/// The part of a month of `agency_daily` holding its totals by agency.
const TOTALS: &str = "totals";

/// Loads every segment of the manifest: sealed files by their footers first, then rows,
/// services before their level spans, decoded and put back by loader threads, one per core
/// (a chunk's rows put in place and the other tables moved in on this one). A segment that
/// cannot be read damages its partition (the partition's other segments are passed over); a
/// name no partition has fails the load.
fn load_segments(
    segments: &SegmentDir,
    manifest: &Manifest,
    policy: &SealPolicy,
    tables: &mut Tables,
) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut names: Vec<(&String, &String)> = manifest.segments.iter().collect();
    names.sort_by_key(|(name, _)| {
        let order = if name.ends_with(SEALED) {
            0
        } else if name.as_str() == "service_levels" {
            2
        } else {
            1
        };
        (order, name.as_str())
    });
    let mut entries = Vec::with_capacity(names.len());
    for (name, file) in names {
        let parsed = SegmentName::parse(name);
        let partition = parsed.as_ref().and_then(SegmentName::partition);
        let (Some(parsed), Some(partition)) = (parsed, partition) else {
            return Err(Error::Segment {
                file: file.clone(),
                reason: format!("no table has a segment named {name}"),
            });
        };
        entries.push((parsed, partition, file.as_str()));
    }
    // Sealed files first, by their footers: the horizon they set decides which months of
    // `agency_daily` start cold.
    let (sealed, rest): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(n, p, _)| n.sealed && matches!(p, Partition::Dossiers(_)));
    for (_, partition, file) in sealed {
        let Partition::Dossiers(month) = partition else {
            continue;
        };
        if loaded.damaged.contains_key(&partition) {
            continue;
        }
        match sealed::open_base(&segments.path().join(file), file) {
            Ok(base) => {
                let dossiers = &mut tables.dossiers;
                dossiers.horizon = dossiers.horizon.max(base.newest_received);
                dossiers.months.entry(month).or_default().sealed = Some(base);
            }
            Err(error) => {
                loaded.damaged.insert(partition, error.to_string());
            }
        }
    }
    // A settled month of `agency_daily` saved with its totals starts cold: its totals are
    // read, its days stay in their file (a month settled by the sealed files stays settled).
    let cold = |month: MonthKey| {
        manifest.segments.contains_key(&totals_name(month))
            && (policy.immediately || policy.settled(month, tables.dossiers.horizon))
    };
    let actions: Vec<(SegmentName<'_>, Partition, &str, Load)> = rest
        .into_iter()
        .map(|(parsed, partition, file)| {
            let load = match (partition, parsed.part) {
                (Partition::AgencyDaily(month), Some(TOTALS)) if cold(month) => Load::Totals(month),
                // A month loaded whole counts its totals from its days.
                (Partition::AgencyDaily(_), Some(TOTALS)) => Load::Nothing,
                (Partition::AgencyDaily(month), None) if cold(month) => Load::Nothing,
                (Partition::AgencyDaily(month), None) => {
                    if !manifest.segments.contains_key(&totals_name(month)) {
                        // Saved before months kept their totals: saved again with them.
                        loaded.relayout.insert(partition);
                    }
                    Load::Rows
                }
                _ => Load::Rows,
            };
            (parsed, partition, file, load)
        })
        .collect();
    // Every segment whose rows are put back is read and decoded by loader threads, one per
    // core, each taking every n-th segment a few ahead: a chunk of `dossiers` is made rows
    // there, a segment of another table put back into tables of its own. This thread puts
    // the chunks' rows in place, in order, and moves the other tables in: what is left of a
    // restart for one thread alone.
    let to_prepare: Vec<(SegmentName<'_>, Partition, &str, &Load)> = actions
        .iter()
        .filter(|(_, _, _, load)| !matches!(load, Load::Nothing))
        .map(|(parsed, partition, file, load)| (*parsed, *partition, *file, load))
        .collect();
    reserve_dossiers(&to_prepare, &mut tables.dossiers);
    let loaders = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LOADERS));
    let names = std::thread::scope(|scope| -> Result<Vec<Interner>> {
        let mut prepared = Vec::with_capacity(loaders);
        let mut threads = Vec::with_capacity(loaders);
        for first in 0..loaders {
            let (send, receive) = std::sync::mpsc::sync_channel(DECODED_AHEAD);
            let mine: Vec<_> = to_prepare.iter().skip(first).step_by(loaders).collect();
            let thread = std::thread::Builder::new()
                .name("chiso-load".into())
                .spawn_scoped(scope, move || {
                    // The thread putting the rows back in order runs before the loaders:
                    // when it waits for them, they have every core.
                    crate::priority::lower(LOADER_NICENESS);
                    let mut names = Interner::default();
                    for (parsed, partition, file, load) in mine {
                        let segment = match load {
                            // A cold month's totals name the file of its days (the month
                            // without it is damaged and rebuilt from the log, not a panic).
                            Load::Totals(month) => match manifest.segments.get(&partition.name()) {
                                Some(days) => read_totals(segments, file, days, *month, &mut names),
                                None => Err(Error::Segment {
                                    file: (*file).to_owned(),
                                    reason: "the manifest has the month's totals, not its days"
                                        .into(),
                                }),
                            },
                            _ => decode_segment(segments, parsed, file, &mut names),
                        };
                        if send.send(segment).is_err() {
                            break;
                        }
                    }
                    names
                })
                .map_err(|error| Error::Fold(format!("cannot start a loader: {error}")))?;
            prepared.push(receive);
            threads.push(thread);
        }
        for (i, (parsed, partition, file, _)) in to_prepare.iter().enumerate() {
            // Every prepared segment is taken, in order, even one of a damaged partition.
            let segment = prepared[i % loaders].recv().map_err(|_| Error::Segment {
                file: (*file).to_owned(),
                reason: "a loader thread stopped".into(),
            })?;
            // A partition a segment of which could not be read is passed over.
            if loaded.damaged.contains_key(partition) {
                continue;
            }
            let result = segment.and_then(|segment| {
                restore_segment(segment, parsed, file, tables, &mut loaded.relayout)
            });
            if let Err(error) = result {
                loaded
                    .damaged
                    .entry(*partition)
                    .or_insert(error.to_string());
            }
        }
        drop(prepared);
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .map_err(|_| Error::Fold("a loader thread panicked".into()))
            })
            .collect()
    })?;
    for names in names {
        tables.adopt_names(names);
    }
    for partition in loaded.damaged.keys() {
        tables.forget(*partition);
        loaded.relayout.remove(partition);
    }
    Ok(loaded)
}

/// Makes room in `dossiers` for the chunks of `segments` before they are put back: a month of
/// several chunks, for that many full chunks (its last has fewer rows, up to a chunk fewer); a
/// month of one chunk makes room when its rows arrive.
fn reserve_dossiers(
    segments: &[(SegmentName<'_>, Partition, &str, &Load)],
    dossiers: &mut dossiers::Dossiers,
) {
    let mut chunks: BTreeMap<MonthKey, usize> = BTreeMap::new();
    for (name, partition, _, _) in segments {
        if let (Partition::Dossiers(month), Some(Ok(_))) =
            (partition, name.part.map(str::parse::<usize>))
        {
            *chunks.entry(*month).or_default() += 1;
        }
    }
    let months: Vec<(MonthKey, usize)> = chunks
        .into_iter()
        .filter(|(_, chunks)| *chunks > 1)
        .map(|(month, chunks)| (month, chunks * CHUNK_ROWS))
        .collect();
    dossiers.reserve(&months);
}

/// What a restart does with a segment (sealed files aside).
enum Load {
    /// Its rows are put back.
    Rows,
    /// A cold month's totals are put back, its days left in their file.
    Totals(MonthKey),
    /// Nothing: the month is cold, or counts its totals from its days.
    Nothing,
}

/// Segments each loader thread prepares ahead of the rows being put back (a chunk of
/// `dossiers`, a month of `agency_daily` or its totals, another table).
const DECODED_AHEAD: usize = 4;

/// The most loader threads a restart starts (one per core up to it).
const MAX_LOADERS: usize = 4;

/// How much less CPU priority (`nice`) the loader threads have than the one they feed.
const LOADER_NICENESS: i32 = 10;

/// A segment's manifest name, parsed: `dossiers/2019-03/00001`, `dossiers/2019-03@sealed`,
/// `agency_daily/2019-03`, `services`, …
#[derive(Clone, Copy)]
struct SegmentName<'a> {
    table: &'a str,
    month: Option<MonthKey>,
    /// What follows the month (a chunk's number, `deleted`).
    part: Option<&'a str>,
    sealed: bool,
}

impl<'a> SegmentName<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let (table, rest) = match name.split_once('/') {
            Some((table, rest)) => (table, Some(rest)),
            None => (name, None),
        };
        let (month, part) = match rest {
            Some(rest) => {
                let (month, part) = rest
                    .split_once('/')
                    .map_or((rest, None), |(m, p)| (m, Some(p)));
                let month = month.strip_suffix(SEALED).unwrap_or(month);
                (Some(parse_month(month)?), part)
            }
            None => (None, None),
        };
        Some(Self {
            table,
            month,
            part,
            sealed: name.ends_with(SEALED),
        })
    }

    /// The partition it belongs to.
    fn partition(&self) -> Option<Partition> {
        Some(match (self.table, self.month) {
            ("agencies", None) => Partition::Agencies,
            ("services" | "service_levels", None) => Partition::Services,
            ("ict_index", None) => Partition::IctIndex,
            ("rankings", None) => Partition::Rankings,
            ("calendar", None) => Partition::Calendar,
            ("dossiers", Some(month)) => Partition::Dossiers(month),
            ("agency_daily", Some(month)) => Partition::AgencyDaily(month),
            _ => return None,
        })
    }
}

/// Puts back a settled month's totals of `agency_daily` from their segment `file` into tables
/// of their own, the month cold: its days stay in their segment `days`, of which only the
/// footer is read (its rows, and that it is whole).
fn read_totals(
    segments: &SegmentDir,
    file: &str,
    days: &str,
    month: MonthKey,
    names: &mut Interner,
) -> Result<DecodedSegment> {
    let failed = |file: &str, reason: String| Error::Segment {
        file: file.to_owned(),
        reason,
    };
    let cold = std::fs::File::open(segments.path().join(days))
        .map_err(|e| e.to_string())
        .and_then(|f| {
            let bytes = f.metadata().map_err(|e| e.to_string())?.len();
            let footer = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())?;
            let rows = footer.metadata().file_metadata().num_rows();
            Ok(ColdMonth {
                file: days.into(),
                rows: u64::try_from(rows).map_err(|e| e.to_string())?,
                bytes,
            })
        })
        .map_err(|reason| failed(days, reason))?;
    let bytes = bytes::Bytes::from(segments.read(file)?);
    let batches = ArrowReaderMetadata::load(&bytes, Default::default())
        .and_then(names_as_dictionaries)
        .and_then(|footer| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, footer).build()
        })
        .map_err(|e| failed(file, e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| failed(file, e.to_string()))?;
    let part = put_apart(names, |part| {
        for batch in &batches {
            part.restore_monthly(month, batch)?;
        }
        part.cold_daily.insert(month, cold);
        Ok(())
    })
    .map_err(|reason| failed(file, reason))?;
    Ok(DecodedSegment {
        rows: SegmentRows::Tables(part),
        deleted: None,
    })
}

/// Tables of their own, filled by `restore` with the names of `names`.
fn put_apart(
    names: &mut Interner,
    restore: impl FnOnce(&mut Tables) -> std::result::Result<(), String>,
) -> std::result::Result<Box<Tables>, String> {
    let mut part = Box::new(Tables {
        names: std::mem::take(names),
        ..Tables::default()
    });
    let restored = restore(&mut part);
    *names = std::mem::take(&mut part.names);
    restored.map(|()| part)
}

/// The columns of a `dossiers` or `agency_daily` segment read as dictionaries: their names are
/// interned, their channels and outcomes parsed, once per distinct value rather than once per
/// row (the names were a fifth of a national restart).
const CODED_COLUMNS: [&str; 7] = [
    "agency",
    "province",
    "service",
    "procedure_code",
    "channel",
    "outcome",
    "applicant",
];

/// `footer` with the [`CODED_COLUMNS`] it holds as strings read as dictionaries.
fn names_as_dictionaries(
    footer: ArrowReaderMetadata,
) -> std::result::Result<ArrowReaderMetadata, datafusion::parquet::errors::ParquetError> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
    let schema = footer.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8 if CODED_COLUMNS.contains(&field.name().as_str()) => {
                field.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                ))
            }
            _ => field.as_ref().clone(),
        })
        .collect();
    let hint = Schema::new_with_metadata(fields, schema.metadata().clone());
    ArrowReaderMetadata::try_new(
        footer.metadata().clone(),
        ArrowReaderOptions::new().with_schema(Arc::new(hint)),
    )
}

/// A segment's rows, decoded, and its deletion vector when it has one.
struct DecodedSegment {
    rows: SegmentRows,
    deleted: Option<String>,
}

/// What a loader thread made of a segment's rows.
enum SegmentRows {
    /// A chunk of `dossiers`, made rows.
    Dossiers(Vec<Dossier>),
    /// A segment of another table, put back into tables of its own to move in.
    Tables(Box<Tables>),
    /// The level spans of `services`: put back into the services loaded before them.
    Batches(Vec<RecordBatch>),
}

/// Reads and decodes the segment `name` (in `file`); a chunk of `dossiers` is made rows, a
/// segment of another table (but the level spans) put back into tables of its own, the names
/// of either interned by `names`.
fn decode_segment(
    segments: &SegmentDir,
    name: &SegmentName<'_>,
    file: &str,
    names: &mut Interner,
) -> Result<DecodedSegment> {
    let failed = |reason: String| Error::Segment {
        file: file.to_owned(),
        reason,
    };
    let bytes = bytes::Bytes::from(segments.read(file)?);
    let footer = ArrowReaderMetadata::load(&bytes, Default::default())
        .and_then(|footer| match name.table {
            "dossiers" | "agency_daily" => names_as_dictionaries(footer),
            _ => Ok(footer),
        })
        .map_err(|e| failed(e.to_string()))?;
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, footer);
    if name.table == "dossiers" {
        // A query's columns computed from the others are not decoded (a fifth of a chunk).
        let parquet = builder.parquet_schema();
        let stored = (0..parquet.num_columns())
            .filter(|&i| !COMPUTED_COLUMNS.contains(&parquet.column(i).name()));
        let mask = ProjectionMask::leaves(parquet, stored);
        builder = builder.with_projection(mask);
    }
    let deleted = footer_value(&builder, sealed::DELETED);
    let reader = builder
        .with_batch_size(65_536)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    let rows = match name.table {
        "dossiers" => {
            let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
            for batch in &batches {
                rows.extend(
                    stored_dossiers(batch, &mut |text| names.intern(text)).map_err(failed)?,
                );
            }
            SegmentRows::Dossiers(rows)
        }
        "service_levels" => SegmentRows::Batches(batches),
        table => SegmentRows::Tables(
            put_apart(names, |part| {
                for batch in &batches {
                    part.restore(table, name.month, batch)?;
                }
                Ok(())
            })
            .map_err(failed)?,
        ),
    };
    Ok(DecodedSegment { rows, deleted })
}

/// Puts back the rows of the segment `name` (in `file`); a chunk of `dossiers` that does not
/// land where it was saved puts its month in `relayout`.
fn restore_segment(
    segment: DecodedSegment,
    name: &SegmentName<'_>,
    file: &str,
    tables: &mut Tables,
    relayout: &mut BTreeSet<Partition>,
) -> Result<()> {
    let failed = |reason: String| Error::Segment {
        file: file.to_owned(),
        reason,
    };
    let SegmentName {
        table, month, part, ..
    } = *name;
    let in_memory = |tables: &Tables| {
        month
            .and_then(|m| tables.dossiers.months.get(&m))
            .map_or(0, |m| m.rows().len())
    };
    let before = in_memory(tables);
    match (segment.rows, month) {
        (SegmentRows::Dossiers(rows), Some(month)) => tables.restore_dossier_rows(month, rows),
        (SegmentRows::Dossiers(_), None) => return Err(failed("dossiers without a month".into())),
        (SegmentRows::Tables(part), _) => tables.absorb(*part),
        (SegmentRows::Batches(batches), _) => {
            for batch in &batches {
                tables.restore(table, month, batch).map_err(failed)?;
            }
        }
    }
    if let (Some(month), "dossiers") = (month, table) {
        // A chunk lands where it was saved only if every chunk before it is whole.
        let in_place = match part.map(str::parse::<usize>) {
            Some(Ok(i)) => before == i * CHUNK_ROWS && in_memory(tables) - before <= CHUNK_ROWS,
            Some(Err(_)) => part == Some(DELETIONS),
            None => false,
        };
        if !in_place {
            relayout.insert(Partition::Dossiers(month));
        }
    }
    if let (Some(deleted), Some(month)) = (segment.deleted, month) {
        let base = tables
            .dossiers
            .months
            .get_mut(&month)
            .and_then(|m| m.sealed.as_mut())
            .ok_or_else(|| failed("a deletion vector without a sealed file".into()))?;
        let rows: std::result::Result<Vec<u32>, _> = deleted.split(',').map(str::parse).collect();
        base.deleted = Arc::new(rows.map_err(|e| failed(e.to_string()))?);
    }
    Ok(())
}

fn footer_value<T>(
    builder: &datafusion::parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
    key: &str,
) -> Option<String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .clone()
}

/// Rebuilds the `damaged` partitions, which `tables` hold none of, from the log up to
/// `checkpoint` ([`repair::Repair`]), logging its progress.
fn repair_partitions(
    store: &EventStore,
    segments: &SegmentDir,
    tables: &mut Tables,
    damaged: &BTreeSet<Partition>,
    checkpoint: u64,
) -> Result<()> {
    let history = LogRecall::at(store, segments.path());
    let mut repair = repair::Repair::new(damaged, &history);
    let (mut next, mut reported) = (0, std::time::Instant::now());
    while next < checkpoint {
        let want = FOLD_BATCH.min((checkpoint - next) as usize);
        let mut batch = Decoded::with_capacity(want);
        let read = store.scan(next, want, |event| batch.push(event))?;
        if read == 0 {
            return Err(Error::Fold(format!(
                "the log ends at {next}, before the tables' checkpoint {checkpoint}"
            )));
        }
        next += read;
        repair
            .fold(batch)
            .map_err(|FoldError(reason)| Error::Fold(reason))?;
        if reported.elapsed() >= Duration::from_secs(5) {
            reported = std::time::Instant::now();
            tracing::info!(folded = next, of = checkpoint, "repairing tables");
        }
    }
    repair.install(tables);
    tracing::info!(
        partitions = damaged.len(),
        "damaged partitions rebuilt from the log"
    );
    Ok(())
}

/// Reads sealed dossiers back for the fold: their streams from the log, their rows from the
/// sealed file (the row numbers of the last file asked about are kept).
struct LogRecall {
    store: EventStore,
    dir: PathBuf,
    rows: Mutex<Option<(String, HashMap<String, sealed::SealedRow>)>>,
}

impl LogRecall {
    fn new(projections: &Projections) -> Self {
        Self::at(
            &projections.shared.store,
            projections.shared.segments.path(),
        )
    }

    fn at(store: &EventStore, dir: &Path) -> Self {
        Self {
            store: store.clone(),
            dir: dir.to_path_buf(),
            rows: Mutex::new(None),
        }
    }
}

impl SealedRows for LogRecall {
    fn history(&self, id: &str, before: u64) -> std::result::Result<Vec<DomainEvent>, String> {
        let stream = StreamName::new(format!("dossier-{id}")).map_err(|e| e.to_string())?;
        let mut decoded = Vec::new();
        let mut from = None;
        loop {
            let page = self
                .store
                .read_stream(&stream, from, ReadDirection::Forwards, 1_000)
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            from = Some(last.revision + 1);
            let done = page.len() < 1_000 || last.position >= before;
            // As the fold does: events the catalog cannot read count as nothing.
            decoded.extend(
                page.iter()
                    .filter(|e| e.position < before)
                    .filter_map(|e| decode_stored(&e.event_type, &e.data, &e.metadata).ok()),
            );
            if done {
                break;
            }
        }
        Ok(decoded)
    }

    fn row_of(
        &self,
        file: &str,
        id: &str,
    ) -> std::result::Result<Option<sealed::SealedRow>, String> {
        let mut cached = lock(&self.rows);
        if cached.as_ref().is_none_or(|(name, _)| name != file) {
            let rows =
                sealed::sealed_rows(&self.dir.join(file), file).map_err(|e| e.to_string())?;
            *cached = Some((file.to_owned(), rows));
        }
        Ok(cached.as_ref().and_then(|(_, rows)| rows.get(id).cloned()))
    }
}

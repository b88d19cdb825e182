//! The event log: opening, appending through the group-commit writer, and reading.

mod chain;
mod index;
mod keys;
mod states;
mod subscription;
mod writer;

pub use chain::{AnchorMismatch, ChainHash, ChainHead, Mismatch, Verification};
pub use subscription::Subscription;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use crate::write_model::{NoRules, RequestOf, WriteModel};
use crate::{AppendResult, EventRef, RecordedEvent, StreamName};
use keys::*;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBRawIterator, Options, SliceTransform, DB,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadDirection {
    /// Oldest first, from the given revision up.
    #[default]
    Forwards,
    /// Newest first, from the given revision down.
    Backwards,
}

/// Pending append units the writer may hold before callers wait for room (back-pressure).
const QUEUE_CAPACITY: usize = 8192;

/// Tuning of the log; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Stream runs gathered in memory before they are written to RocksDB in the background.
    pub index_batch_runs: usize,
    /// Whether shutdown writes the runs still in memory. Off only to test that an open
    /// rebuilds them from the chunks, as it must after a crash.
    pub index_at_shutdown: bool,
    /// Free bytes appends may not eat into on the log's filesystem: RocksDB's flushes and
    /// compactions (and the tables' checkpoints, on the same disk) need room to finish, and an
    /// append that met a full disk would leave the log unwritable until a restart. Below it,
    /// appends are refused whole with [`Error::DiskFull`] (507) and resume once space is freed.
    pub disk_reserve_bytes: u64,
    /// The most the memtables of every column family may hold together before RocksDB
    /// flushes one: writes not yet in SST files.
    pub memtable_bytes: usize,
    /// Whether RocksDB's compactions wait for [`EventStore::resume_compactions`]. A server
    /// restarting after a long import puts its tables back on both cores first: a
    /// compaction owed from before the stop took about one of them while it did.
    pub defer_compactions: bool,
}

/// The default reserve: room for every memtable to flush (≈ 330 MiB: see `open_db`) and for
/// a compaction of the first levels, with a margin for the tables' checkpoints.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 1 << 30;

/// The default memtable budget: above the ≈ 330 MiB the column families' write buffers reach
/// together in a steady import (see `open_db`), so that it bounds a burst without forcing
/// small flushes.
pub const DEFAULT_MEMTABLE_BYTES: usize = 384 << 20;

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            index_batch_runs: index::DEFAULT_BATCH_RUNS,
            index_at_shutdown: true,
            disk_reserve_bytes: DEFAULT_DISK_RESERVE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
            defer_compactions: false,
        }
    }
}

/// What the log's RocksDB holds in memory ([`EventStore::memory`]), in bytes, summed over its
/// column families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogMemory {
    /// The block caches: data blocks read (each column family has RocksDB's own default
    /// cache of 8 MiB).
    pub block_cache: u64,
    /// The memtables: writes not yet flushed to SST files.
    pub memtables: u64,
    /// What the open SST files hold beside them, outside the caches: their index and filter
    /// blocks, which grow with the log (about 2.5 bytes an event).
    pub table_readers: u64,
}

/// What RocksDB is doing behind the writes: compactions owed and running, flushes running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogBackground {
    /// Bytes RocksDB estimates its compactions still have to rewrite, every column family.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Memtable flushes running now.
    pub running_flushes: u64,
}

/// A handle to the event log for reading it: cheap to clone, shared by every reader. Its
/// writes go through the [`Appender`] it was opened with, typed by the log's [`WriteModel`].
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

/// The log's write handle: appends checked by the rules `M` it was opened with, each request
/// carrying `M`'s principal and decoded events. Cheap to clone; every clone shares one writer.
pub struct Appender<M: WriteModel> {
    commands: mpsc::Sender<writer::Command<M>>,
    store: EventStore,
}

/// An appender reads like the store it writes to (`appender.head()`, `appender.read_stream(…)`,
/// `appender.shutdown()`): it is that store's handle with the right to append.
impl<M: WriteModel> std::ops::Deref for Appender<M> {
    type Target = EventStore;

    fn deref(&self) -> &EventStore {
        &self.store
    }
}

impl<M: WriteModel> Clone for Appender<M> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            store: self.store.clone(),
        }
    }
}

struct Inner {
    db: Arc<DB>,
    /// Stream runs not yet in the streams column family.
    recent: Arc<index::RecentRuns>,
    /// Stops the writer, whatever its model (`None` once the store is dropped).
    writer_control: Option<Box<dyn writer::Control>>,
    head: watch::Receiver<u64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: StoreMetrics,
    /// Events fed to the write model at open (those its stored states did not include).
    replayed: u64,
    disk: writer::DiskReserve,
    /// How far the hash chain is computed.
    chained: watch::Receiver<chain::ChainHead>,
    /// The chain's thread; it ends after the writer (it follows the writer's head).
    chain_thread: Mutex<Option<JoinHandle<()>>>,
}

impl EventStore {
    /// Opens (or creates) the log in `path`, without rules, and starts its writer thread. The
    /// log continues exactly after the last record that was acknowledged before any crash.
    pub fn open(path: impl AsRef<Path>) -> Result<Appender<NoRules>> {
        Self::open_with_metrics(path, StoreMetrics::default())
    }

    /// Like [`EventStore::open`], updating the given instruments.
    pub fn open_with_metrics(
        path: impl AsRef<Path>,
        metrics: StoreMetrics,
    ) -> Result<Appender<NoRules>> {
        Self::open_with(path, metrics, NoRules)
    }

    /// Opens the log with a [`WriteModel`] that checks every append in the writer. The model
    /// is brought up to date from its stored stream states and the events after them.
    pub fn open_with<M: WriteModel>(
        path: impl AsRef<Path>,
        metrics: StoreMetrics,
        model: M,
    ) -> Result<Appender<M>> {
        Self::open_with_options(path, metrics, model, LogOptions::default())
    }

    /// Like [`EventStore::open_with`], tuned by `options`.
    pub fn open_with_options<M: WriteModel>(
        path: impl AsRef<Path>,
        metrics: StoreMetrics,
        mut model: M,
        options: LogOptions,
    ) -> Result<Appender<M>> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        let db = Arc::new(open_db(path, &options)?);
        let next_position = recover_head(&db)?;
        let (recent, unindexed) =
            index::RecentRuns::recover(&db, next_position, options.index_batch_runs.max(1))?;
        let recent = Arc::new(recent);
        let started = Instant::now();
        let indexed = next_position - unindexed;
        let replayed = states::recover(&db, &recent, &mut model, indexed, next_position)?;
        tracing::info!(
            path = %path.display(),
            next_position,
            unindexed,
            replay_ms = started.elapsed().as_millis() as u64,
            replayed,
            "event log opened"
        );
        metrics.head_position.set(next_position);
        metrics.replayed_at_open.set(replayed);
        let (head_tx, head_rx) = watch::channel(next_position);
        let (commands_tx, commands_rx) = mpsc::channel(QUEUE_CAPACITY);
        let disk = writer::DiskReserve {
            path: path.to_owned(),
            reserve_bytes: options.disk_reserve_bytes,
        };
        metrics.indexed_position.set(next_position - unindexed);
        let indexed_position = metrics.indexed_position.clone();
        let indexer = index::Indexer::start(db.clone(), recent.clone(), indexed_position)?;
        let writer = writer::Writer {
            db: db.clone(),
            recent: recent.clone(),
            indexer,
            index_at_shutdown: options.index_at_shutdown,
            next_position,
            model,
            head: head_tx,
            metrics: metrics.clone(),
            disk: disk.clone(),
        };
        let (chained_tx, chained) = watch::channel(chain::ChainHead {
            next_position: 0,
            hash: [0; 32],
        });
        let gauge = metrics.chained_position.clone();
        let chain_thread = chain::start(db.clone(), writer.head.subscribe(), chained_tx, gauge)?;
        let handle = std::thread::Builder::new()
            .name("chiso-log-writer".into())
            .spawn(move || writer.run(commands_rx))?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                recent,
                writer_control: Some(Box::new(commands_tx.clone())),
                head: head_rx,
                writer: Mutex::new(Some(handle)),
                metrics,
                replayed,
                disk,
                chained,
                chain_thread: Mutex::new(Some(chain_thread)),
            }),
        };
        Ok(Appender {
            commands: commands_tx,
            store,
        })
    }

    /// Lets RocksDB's compactions run, those owed first, when the log was opened with
    /// [`LogOptions::defer_compactions`] (nothing otherwise).
    pub fn resume_compactions(&self) -> Result<()> {
        let db = &self.inner.db;
        for name in ALL_CFS {
            db.set_options_cf(
                cf_handle(db, name),
                &[("disable_auto_compactions", "false")],
            )?;
        }
        Ok(())
    }

    /// What RocksDB holds in memory now, by kind.
    pub fn memory(&self) -> LogMemory {
        let db = &self.inner.db;
        let sum = |property: &str| {
            ALL_CFS
                .iter()
                .filter_map(|name| db.property_int_value_cf(cf_handle(db, name), property).ok())
                .flatten()
                .sum()
        };
        LogMemory {
            block_cache: sum("rocksdb.block-cache-usage"),
            memtables: sum("rocksdb.cur-size-all-mem-tables"),
            table_readers: sum("rocksdb.estimate-table-readers-mem"),
        }
    }

    /// What RocksDB's background threads owe and are doing now.
    pub fn background(&self) -> LogBackground {
        let db = &self.inner.db;
        let pending = ALL_CFS
            .iter()
            .filter_map(|name| {
                db.property_int_value_cf(
                    cf_handle(db, name),
                    "rocksdb.estimate-pending-compaction-bytes",
                )
                .ok()
            })
            .flatten()
            .sum();
        let running = |property: &str| db.property_int_value(property).ok().flatten().unwrap_or(0);
        LogBackground {
            pending_compaction_bytes: pending,
            running_compactions: running("rocksdb.num-running-compactions"),
            running_flushes: running("rocksdb.num-running-flushes"),
        }
    }

    /// Finishes every append already queued, then stops the writer. Appends after this fail
    /// with [`Error::Unavailable`].
    pub async fn shutdown(&self) {
        if let Some(control) = &self.inner.writer_control {
            control.stop().await;
        }
        let handle = self.inner.writer.lock().expect("writer lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The next global position, i.e. the number of events in the log.
    pub fn head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// Whether the writer still takes appends (it stops after shutdown or a failed fsync).
    pub fn is_writable(&self) -> bool {
        self.inner
            .writer_control
            .as_ref()
            .is_some_and(|control| !control.is_closed())
    }

    /// The free bytes of the log's disk when they are under the reserve appends keep (see
    /// [`LogOptions::disk_reserve_bytes`]): appends are refused until space is freed.
    pub fn disk_full(&self) -> Option<u64> {
        self.inner.disk.short_of_room(0)
    }

    /// How many events the write model replayed at open: those after the stream states the
    /// indexer had stored (a bounded tail), or the whole log when it had none in its format.
    pub fn replayed_at_open(&self) -> u64 {
        self.inner.replayed
    }

    /// How far the hash chain is computed (see [`EventStore::verify`]).
    pub fn chain_head(&self) -> ChainHead {
        *self.inner.chained.borrow()
    }

    /// The chain hash of the chunk holding `position` and that chunk's last position: what a
    /// copy of it pins (every event up to there). Waits up to `wait` for the chain to reach
    /// `position`; `None` if it does not by then (a log from before the chain still being
    /// hashed) or `position` is not in the log.
    pub async fn chain_hash_at(
        &self,
        position: u64,
        wait: std::time::Duration,
    ) -> Result<Option<(u64, ChainHash)>> {
        let mut chained = self.inner.chained.clone();
        let reached = chained.wait_for(|head| head.next_position > position);
        if tokio::time::timeout(wait, reached).await.is_err() {
            return Ok(None);
        }
        chain::hash_at(&self.inner.db, position)
    }

    /// Recomputes the hash chain over the chunks holding positions `from..to` (`to` at most
    /// where the chain is computed) and compares it with the stored hashes: the first chunk
    /// that does not match is named. Reads every chunk: `progress` hears the position reached.
    /// `anchor_of` finds the chain hashes events of the range copied (a position and its
    /// hash): each is compared with the chain there, which finds a log rewritten with its
    /// chain recomputed.
    pub fn verify(
        &self,
        from: u64,
        to: u64,
        progress: impl FnMut(u64),
        anchor_of: impl FnMut(EventRef<'_>) -> Option<(u64, ChainHash)>,
    ) -> Result<Verification> {
        let to = to.min(self.chain_head().next_position);
        chain::verify(&self.inner.db, from, to, progress, anchor_of)
    }

    /// The instruments this store updates.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// The last revision of `stream`, `None` if it has no events.
    pub fn stream_revision(&self, stream: &StreamName) -> Result<Option<u64>> {
        if let Some(last) = self.inner.recent.last_revision(stream.as_str()) {
            return Ok(Some(last));
        }
        let mut runs = self.inner.db.raw_iterator_cf(self.cf(CF_STREAMS));
        Ok(last_run(&mut runs, stream.as_str())?.map(|run| run.last_revision()))
    }

    /// Reads up to `limit` events of the whole log from `from` (inclusive), in position order.
    pub fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let end = self.head().min(from.saturating_add(limit as u64));
        let mut events = Vec::with_capacity(end.saturating_sub(from).min(100_000) as usize);
        let mut chunks = ChunkCursor::new(&self.inner.db);
        for position in from..end {
            events.push(chunks.event(position)?);
        }
        Ok(events)
    }

    /// Reads up to `limit` events of the given categories from position `from` (inclusive)
    /// on, in position order, through the category index: the log's other events are not
    /// read. Returns them with the position the next read starts from (past every event of
    /// those categories it has seen, up to the head when it found fewer than `limit`).
    pub fn read_categories(
        &self,
        from: u64,
        categories: &[String],
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, u64)> {
        // The head first: every event before it is then in the recent spans or stored.
        let head = self.head();
        let mut positions = Vec::new();
        for category in categories {
            self.category_positions(category, from..head, limit, &mut positions)?;
        }
        positions.sort_unstable();
        positions.dedup();
        positions.truncate(limit);
        let next = match positions.last() {
            Some(&last) if positions.len() == limit => last + 1,
            _ => head.max(from),
        };
        let mut chunks = ChunkCursor::new(&self.inner.db);
        let events = positions.into_iter().map(|p| chunks.event(p));
        Ok((events.collect::<Result<_>>()?, next))
    }

    /// Adds to `out` the first `limit` positions in `range` of `category`'s events.
    fn category_positions(
        &self,
        category: &str,
        range: std::ops::Range<u64>,
        limit: usize,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        // Recent spans before stored ones: a span the indexer moves in between is then seen
        // twice (the positions are deduplicated), never missed.
        let recent = self.inner.recent.spans_of(category, range.start);
        let stored_end = recent.first().map_or(u64::MAX, |span| span.first_position);
        let floor = out.len();
        let room = |out: &Vec<u64>| limit - (out.len() - floor);
        let take = |span: &Span, out: &mut Vec<u64>| {
            let start = range.start.max(span.first_position);
            let end = span.end().min(range.end);
            let end = end.min(start.saturating_add(room(out) as u64));
            out.extend(start..end.max(start));
        };
        if range.start < stored_end {
            let mut spans = self.inner.db.raw_iterator_cf(self.cf(CF_CATEGORIES));
            let key = span_key(category, range.start);
            spans.seek_for_prev(&key);
            if current_span(&spans, category)?.is_none_or(|s| s.end() <= range.start) {
                spans.seek(&key);
            }
            while room(out) > 0 {
                match current_span(&spans, category)? {
                    Some(span) if span.first_position < stored_end.min(range.end) => {
                        take(&span, out)
                    }
                    _ => break,
                }
                spans.next();
            }
        }
        for span in &recent {
            if room(out) == 0 || span.first_position >= range.end {
                break;
            }
            take(span, out);
        }
        Ok(())
    }

    /// Calls `each` with the events from `from` on (at most `limit`, none past the head), read
    /// in place in one pass over the chunks: a replay's path, which copies nothing. Returns how
    /// many it read.
    pub fn scan(&self, from: u64, limit: usize, mut each: impl FnMut(EventRef<'_>)) -> Result<u64> {
        let end = self.head().min(from.saturating_add(limit as u64));
        let mut chunks = self.inner.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        chunks.seek_for_prev(position_key(from));
        let mut position = from;
        while position < end {
            chunks.status()?;
            let (Some(key), Some(value)) = (chunks.key(), chunks.value()) else {
                return Err(missing(position));
            };
            let first = decode_u64(key).ok_or_else(|| missing(position))?;
            let chunk = Chunk::parse(first, value)?;
            if !chunk.contains(position) {
                return Err(missing(position));
            }
            let last = chunk.last_position().min(end - 1);
            for at in position..=last {
                each(chunk.event_ref(at)?);
            }
            position = last + 1;
            chunks.next();
        }
        Ok(end.saturating_sub(from))
    }

    /// Reads up to `limit` events of `stream` from revision `from` (inclusive; `None` is the
    /// start going forwards, the end going backwards).
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from: Option<u64>,
        direction: ReadDirection,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let positions = self.stream_positions(stream.as_str(), from, direction, limit)?;
        let mut chunks = ChunkCursor::new(&self.inner.db);
        positions.into_iter().map(|p| chunks.event(p)).collect()
    }

    fn stream_positions(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: ReadDirection,
        limit: usize,
    ) -> Result<Vec<u64>> {
        // Read the recent runs before the stored ones: a run the indexer moves in between
        // is then seen twice (and skipped once), never missed.
        let view = self.inner.recent.runs_of(stream, from, direction, limit);
        let recent = view.runs;
        let mut runs = self.inner.db.raw_iterator_cf(self.cf(CF_STREAMS));
        let last = match view.last_revision {
            Some(last) => last,
            None => last_run(&mut runs, stream)?
                .ok_or_else(|| Error::StreamNotFound(stream.to_owned()))?
                .last_revision(),
        };
        // Stored runs serve the revisions below the first recent one.
        let stored_end = view.first_revision.unwrap_or(u64::MAX);
        let start = match direction {
            ReadDirection::Forwards => from.unwrap_or(0),
            ReadDirection::Backwards => from.unwrap_or(last).min(last),
        };
        let mut positions = Vec::new();
        if start > last || limit == 0 {
            return Ok(positions);
        }
        let forwards = |run: &Run, positions: &mut Vec<u64>| {
            let revisions = start.max(run.first_revision)..=run.last_revision();
            let room = limit - positions.len();
            positions.extend(revisions.take(room).map(|r| run.position_of(r)));
        };
        let backwards = |run: &Run, until: u64, positions: &mut Vec<u64>| {
            let revisions = run.first_revision..=until.min(run.last_revision());
            let room = limit - positions.len();
            positions.extend(revisions.rev().take(room).map(|r| run.position_of(r)));
        };
        match direction {
            ReadDirection::Forwards => {
                if start < stored_end {
                    runs.seek_for_prev(run_key(stream, start));
                    while positions.len() < limit {
                        match current_run(&runs, stream)? {
                            Some(run) if run.first_revision < stored_end => {
                                forwards(&run, &mut positions)
                            }
                            _ => break,
                        }
                        runs.next();
                    }
                }
                for run in recent.iter().filter(|run| run.last_revision() >= start) {
                    if positions.len() == limit {
                        break;
                    }
                    forwards(run, &mut positions);
                }
            }
            ReadDirection::Backwards => {
                for run in recent
                    .iter()
                    .rev()
                    .filter(|run| run.first_revision <= start)
                {
                    if positions.len() == limit {
                        break;
                    }
                    backwards(run, start, &mut positions);
                }
                if positions.len() < limit && stored_end > 0 {
                    let until = start.min(stored_end - 1);
                    runs.seek_for_prev(run_key(stream, until));
                    while positions.len() < limit {
                        let Some(run) = current_run(&runs, stream)? else {
                            break;
                        };
                        backwards(&run, until, &mut positions);
                        runs.prev();
                    }
                }
            }
        }
        runs.status()?;
        Ok(positions)
    }

    /// Writes a consistent copy of the log to `dest`, which must not exist: a RocksDB
    /// checkpoint (hard links where `dest` is on the same filesystem, copies elsewhere), taken
    /// while appends go on. Opening the copy is like opening after a crash at that moment:
    /// every acknowledged append before it is there.
    pub fn checkpoint_to(&self, dest: &Path) -> Result<()> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.inner.db)?;
        checkpoint.create_checkpoint(dest)?;
        Ok(())
    }

    /// Stores a setting under `key`, fsynced before it returns. Settings live beside the log,
    /// not in it: they are not events and are not replayed.
    pub fn put_setting(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        Ok(self
            .inner
            .db
            .put_cf_opt(self.cf(CF_META), key, value, &options)?)
    }

    /// Removes a setting (fsynced); whether it existed.
    pub fn delete_setting(&self, key: &[u8]) -> Result<bool> {
        let existed = self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_META), key)?
            .is_some();
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        self.inner
            .db
            .delete_cf_opt(self.cf(CF_META), key, &options)?;
        Ok(existed)
    }

    /// Every setting whose key starts with `prefix`.
    pub fn settings(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut iter = self.inner.db.raw_iterator_cf(self.cf(CF_META));
        iter.seek(prefix);
        let mut found = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) {
                break;
            }
            found.push((key.to_vec(), value.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(found)
    }

    /// Follows the log from `from` (inclusive): first what is stored, then each new commit.
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::new(self.clone(), from, self.inner.head.clone(), None)
    }

    /// Follows the events of `categories` from position `from` (inclusive), read through the
    /// category index.
    pub fn subscribe_categories(&self, from: u64, categories: Vec<String>) -> Subscription {
        let head = self.inner.head.clone();
        Subscription::new(self.clone(), from, head, Some(categories.into()))
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        cf_handle(&self.inner.db, name)
    }
}

impl<M: WriteModel> Appender<M> {
    /// Appends to one stream atomically as `recorded_by`; resolves once the events are
    /// fsynced.
    pub async fn append(&self, recorded_by: &str, request: RequestOf<M>) -> Result<AppendResult> {
        let mut results = self.append_all(recorded_by, vec![request]).await?;
        Ok(results.pop().expect("one result per request"))
    }

    /// Appends several requests (to any streams) as one all-or-nothing unit, in order: a later
    /// request sees the revisions the earlier ones produce. Each event records `recorded_by`
    /// (1 to 255 bytes: who appends, as the caller names them; the store only keeps it).
    /// Resolves once fsynced.
    pub async fn append_all(
        &self,
        recorded_by: &str,
        requests: Vec<RequestOf<M>>,
    ) -> Result<Vec<AppendResult>> {
        let (reply, answer) = oneshot::channel();
        let recorded_by = recorded_by.into();
        let job = writer::Job {
            requests,
            recorded_by,
            reply,
        };
        self.commands
            .send(writer::Command::Append(job))
            .await
            .map_err(|_| Error::Unavailable("the log is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the log writer stopped"))?
    }

    /// The log this appends to, for reading it.
    pub fn store(&self) -> &EventStore {
        &self.store
    }
}

impl Drop for Inner {
    /// Closes the queue (no [`Appender`] is left: each holds the store) and waits for the
    /// writer, so the database is closed when the last handle goes, not later on another
    /// thread (RocksDB must not outlive the process exit).
    fn drop(&mut self) {
        drop(self.writer_control.take());
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
        if let Some(handle) = self.chain_thread.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
    }
}

fn cf_handle<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created at open")
}

/// An iterator for a one-off pass over a whole column family in key order (a verification, a
/// rebuild of an index): it reads each block once, so its blocks are not put in the block
/// caches, where they would push out the blocks the appends' lookups need. The fold and the
/// chain, which follow the head in small steps, read through the caches.
fn scan_iterator<'a>(db: &'a DB, name: &str) -> DBRawIterator<'a> {
    let mut options = rocksdb::ReadOptions::default();
    options.fill_cache(false);
    db.raw_iterator_cf_opt(cf_handle(db, name), options)
}

/// Reads events by position through one iterator over the chunks, keeping the chunk it is on
/// (checked once when loaded, so reading its 64 events costs one checksum, not 64).
pub(crate) struct ChunkCursor<'a> {
    iter: DBRawIterator<'a>,
    current: Option<(u64, u64, Vec<u8>)>,
}

impl<'a> ChunkCursor<'a> {
    pub fn new(db: &'a DB) -> Self {
        Self {
            iter: db.raw_iterator_cf(cf_handle(db, CF_CHUNKS)),
            current: None,
        }
    }

    /// The event at `position`; an acknowledged position that is missing is corruption.
    pub fn event(&mut self, position: u64) -> Result<RecordedEvent> {
        let cached =
            matches!(&self.current, Some((first, last, _)) if (*first..=*last).contains(&position));
        if !cached {
            self.load(position)?;
        }
        let (first, _, bytes) = self.current.as_ref().expect("loaded");
        Chunk::parse_verified(*first, bytes)?.event(position)
    }

    fn load(&mut self, position: u64) -> Result<()> {
        let missing = || missing(position);
        // Reading on from the chunk it is on, the next chunk is the iterator's next entry.
        match &self.current {
            Some((_, last, _)) if *last + 1 == position && self.iter.valid() => self.iter.next(),
            _ => self.iter.seek_for_prev(position_key(position)),
        }
        self.iter.status()?;
        let (Some(key), Some(value)) = (self.iter.key(), self.iter.value()) else {
            return Err(missing());
        };
        let first = decode_u64(key).ok_or_else(missing)?;
        let chunk = Chunk::parse(first, value)?;
        if !chunk.contains(position) {
            return Err(missing());
        }
        self.current = Some((first, chunk.last_position(), value.to_vec()));
        Ok(())
    }
}

/// An acknowledged position the chunks do not hold: corruption.
fn missing(position: u64) -> Error {
    Error::Corrupt {
        key: format!("position {position}"),
        reason: "acknowledged event missing",
    }
}

/// The last run of `stream`, which holds its last revision.
pub(crate) fn last_run(runs: &mut DBRawIterator<'_>, stream: &str) -> Result<Option<Run>> {
    runs.seek_for_prev(run_key(stream, u64::MAX));
    current_run(runs, stream)
}

/// The span under the iterator, if it belongs to `category`.
fn current_span(spans: &DBRawIterator<'_>, category: &str) -> Result<Option<Span>> {
    current_entry(spans, category, Span::decode, "bad span entry")
}

/// The run under the iterator, if it belongs to `stream`.
fn current_run(runs: &DBRawIterator<'_>, stream: &str) -> Result<Option<Run>> {
    current_entry(runs, stream, Run::decode, "bad run entry")
}

/// The entry under the iterator, decoded, if it is one of `name`'s.
fn current_entry<T>(
    iter: &DBRawIterator<'_>,
    name: &str,
    decode: impl Fn(&str, &[u8], &[u8]) -> Option<T>,
    reason: &'static str,
) -> Result<Option<T>> {
    iter.status()?;
    let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
        return Ok(None);
    };
    if !is_entry_of(key, name) {
        return Ok(None);
    }
    decode(name, key, value)
        .map(Some)
        .ok_or_else(|| Error::Corrupt {
            key: name.to_owned(),
            reason,
        })
}

/// Verifies the hash chain of the log in `path` as [`EventStore::verify`] does, the log opened
/// read-only: also while a server has it open (it checks what was stored when it began).
pub fn verify_dir(
    path: &Path,
    from: u64,
    to: u64,
    progress: impl FnMut(u64),
    anchor_of: impl FnMut(EventRef<'_>) -> Option<(u64, ChainHash)>,
) -> Result<Verification> {
    let names = DB::list_cf(&Options::default(), path)?;
    if !names.iter().any(|name| name == CF_CHAIN) {
        return Err(Error::Unavailable(
            "this log has no hash chain yet: start chiso on it once and the chain is computed, \
             in the background",
        ));
    }
    let db = DB::open_cf_for_read_only(&Options::default(), path, &names, false)?;
    let head = chain::stored_head(&db)?;
    chain::verify(&db, from, to.min(head.next_position), progress, anchor_of)
}

/// The most write-ahead log an open after a crash replays (about a second's worth).
const MAX_WAL_BYTES: u64 = 128 << 20;

fn open_db(path: &Path, log: &LogOptions) -> Result<DB> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_background_jobs(2);
    options.set_bytes_per_sync(1 << 20);
    options.set_db_write_buffer_size(log.memtable_bytes);
    // A column family written rarely (`meta`) would hold every write-ahead log file since its
    // last flush, and an open after a crash replays them all (≈ 900 MB, 4 s, after importing
    // the demo decade): past this size the families holding the oldest file are flushed.
    options.set_max_total_wal_size(MAX_WAL_BYTES);
    let descriptors = ALL_CFS.iter().map(|name| {
        let mut cf_options = Options::default();
        cf_options.set_write_buffer_size(match *name {
            // Category spans are few (one per run of a category's consecutive events).
            CF_CATEGORIES => 8 << 20,
            CF_ID_INDEX | CF_STATES => 32 << 20,
            _ => 64 << 20,
        });
        cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        cf_options.set_disable_auto_compactions(log.defer_compactions);
        // Index and filter blocks stay beside each open file, and data blocks in RocksDB's
        // default cache of 8 MiB per family. Tried and not kept (BENCHMARKS.md, 2026-12-07):
        // one shared cache holding the index and filters too, partitioned — memory bounded
        // whatever the log's length, but every probe of a group's ids and states became a
        // cache lookup and the import ran at 0.85× at 15 M events, about 0.6× past 30 M; and
        // one shared data cache with ribbon filters in the last level (0.90× in one run).
        let mut table = BlockBasedOptions::default();
        if *name == CF_CHUNKS {
            table.set_block_size(64 << 10);
        } else {
            table.set_bloom_filter(10.0, false);
        }
        if *name == CF_ID_INDEX || *name == CF_STATES {
            // Random keys (event ids; dossier streams), looked up mostly for ones that are
            // new: the whole-key bloom filters (kept in memory with each file's index, ~1.3
            // bytes a key) answer those without a read, the memtable's own filter spares its
            // skiplist, and dynamic level sizes keep the write amplification of random keys
            // near 10.
            cf_options.set_memtable_whole_key_filtering(true);
            cf_options.set_memtable_prefix_bloom_ratio(0.1);
            cf_options.set_level_compaction_dynamic_level_bytes(true);
            cf_options.set_compression_type(rocksdb::DBCompressionType::None);
        }
        if *name == CF_STREAMS {
            let transform = SliceTransform::create(
                "chiso.stream_prefix",
                stream_prefix,
                Some(has_stream_prefix),
            );
            cf_options.set_prefix_extractor(transform);
            cf_options.set_memtable_prefix_bloom_ratio(0.1);
            // Runs are only ever found by seeking a stream's prefix: filters of the prefixes
            // alone (whole keys would double what each flush and compaction builds).
            table.set_whole_key_filtering(false);
            // One run an append, keyed by stream name: a flush spans every province's
            // current dossiers, so it overlaps the whole first level. Large flushes and
            // levels sized from the last one keep each run's rewrites near the fan-out
            // (measured on 38 M events of the national demo: 767 M records compacted with
            // 8 MiB memtables and static levels, 20 a run; 242 M with these).
            cf_options.set_level_compaction_dynamic_level_bytes(true);
        }
        cf_options.set_block_based_table_factory(&table);
        ColumnFamilyDescriptor::new(*name, cf_options)
    });
    Ok(DB::open_cf_descriptors(&options, path, descriptors)?)
}

/// The next position is one past the last event of the last chunk; writes are atomic
/// batches, so that is the end of the last acknowledged (or at least fully written) batch.
fn recover_head(db: &DB) -> Result<u64> {
    let mut iter = db.raw_iterator_cf(cf_handle(db, CF_CHUNKS));
    iter.seek_to_last();
    iter.status()?;
    match (iter.key(), iter.value()) {
        (Some(key), Some(value)) => {
            let first = decode_u64(key).ok_or(Error::Corrupt {
                key: "last chunk".into(),
                reason: "bad position key",
            })?;
            Ok(Chunk::parse(first, value)?.last_position() + 1)
        }
        _ => Ok(0),
    }
}

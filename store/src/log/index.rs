//! The indexes of recent appends — stream runs, category spans and event ids — kept in memory
//! and written to RocksDB in the background. Inserting one run key a new stream into RocksDB's
//! memtable was a fifth of the writer's time when every NDJSON line opens a new dossier; the
//! writer now only adds runs and ids here, and `chiso-log-indexer` writes many at once,
//! sorted, off the commit path. Memory holds only what was committed since the last batch the
//! indexer wrote: the id index of a national history stays on disk.
//!
//! Durability does not depend on it: every event's stream and revision are in its chunk and
//! its id in the chunk's id list, so what follows the indexed position is rebuilt from them
//! at open (after a crash, or a shutdown that did not index).

use super::keys::*;
use super::{cf_handle, ChunkCursor, ReadDirection};
use crate::error::Result;
use crate::stream::category_of;
use crate::write_model::StoredStates;
use prometheus_client::metrics::gauge::Gauge;
use rocksdb::{WriteBatch, DB};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use uuid::Uuid;

type Runs = HashMap<Box<str>, Vec<Run>, foldhash::fast::RandomState>;
type Spans = HashMap<Box<str>, Vec<Span>, foldhash::fast::RandomState>;
/// foldhash: fast, and seeded per process, so clients cannot choose ids that collide.
pub(crate) type Ids = HashMap<Uuid, u64, foldhash::fast::RandomState>;
/// Stream → `position (u64 BE) · state`, as [`CF_STATES`] holds them.
pub(crate) type States = HashMap<Box<str>, Vec<u8>, foldhash::fast::RandomState>;

/// What the indexer writes: stream runs, category spans of consecutive positions, the
/// position of every event id, and the write model's stream states.
#[derive(Default, Clone)]
pub(crate) struct Batch {
    streams: Runs,
    categories: Spans,
    ids: Ids,
    states: States,
}

impl Batch {
    /// Adds a run (committed after every run already here) to its stream and category; a run
    /// that continues the stream's last one, in revisions and positions, lengthens it instead
    /// (a stream's consecutive appends, as an NDJSON body of one dossier's events gives, cost
    /// one key). Returns whether it is a new run.
    fn add(&mut self, stream: &str, run: Run) -> bool {
        let new = match self.streams.get_mut(stream) {
            Some(existing) => match existing.last_mut() {
                Some(last) if last.continues_into(&run) => {
                    last.count += run.count;
                    false
                }
                _ => {
                    existing.push(run);
                    true
                }
            },
            None => {
                self.streams.insert(stream.into(), vec![run]);
                true
            }
        };
        let category = category_of(stream);
        let span = Span {
            first_position: run.first_position,
            count: run.count,
        };
        match self.categories.get_mut(category) {
            Some(spans) => match spans.last_mut() {
                Some(last) if last.end() == span.first_position => last.count += span.count,
                _ => spans.push(span),
            },
            None => {
                self.categories.insert(category.into(), vec![span]);
            }
        }
        new
    }

    /// Extends the last run of `stream` by the event at `revision` and `position`, if that is
    /// the next of both.
    fn extend_last(&mut self, stream: &str, revision: u64, position: u64) -> bool {
        let last = self
            .streams
            .get_mut(stream)
            .and_then(|runs| runs.last_mut());
        let next = Run {
            first_revision: revision,
            first_position: position,
            count: 1,
        };
        let Some(run) = last.filter(|run| run.continues_into(&next)) else {
            return false;
        };
        run.count += 1;
        // The run ended just before `position`, so its category's last span did too.
        let spans = self.categories.get_mut(category_of(stream));
        if let Some(span) = spans.and_then(|spans| spans.last_mut()) {
            span.count += 1;
        }
        true
    }

    /// Adds the runs of `other`, committed after every run here.
    fn extend(&mut self, other: Batch) {
        for (stream, runs) in other.streams {
            self.streams.entry(stream).or_default().extend(runs);
        }
        for (category, spans) in other.categories {
            self.categories.entry(category).or_default().extend(spans);
        }
        self.ids.extend(other.ids);
        // Newer states replace older ones.
        self.states.extend(other.states);
    }
}

/// Where the index position lives among the settings: every run of an event before it is in
/// the streams column family.
const INDEXED_KEY: &[u8] = b"chiso/log/indexed-up-to";

/// Runs, ids and states held in memory before they are written (about 20 MB).
pub(crate) const DEFAULT_BATCH_RUNS: usize = 300_000;

#[derive(Default)]
struct Recent {
    /// Runs, ids and states committed since the last hand-over to the indexer.
    active: Batch,
    /// How many runs, ids and states `active` holds.
    active_runs: usize,
    /// Runs the indexer is writing (with the position they index up to); still read from
    /// here until the writer, between two groups, learns they are in RocksDB.
    frozen: Option<(Arc<Batch>, u64)>,
}

impl Recent {
    fn last_revision(&self, stream: &str) -> Option<u64> {
        let last = |batch: &Batch| batch.streams.get(stream).and_then(|r| r.last()).copied();
        last(&self.active)
            .or_else(|| self.frozen.as_ref().and_then(|(runs, _)| last(runs)))
            .map(|run| run.last_revision())
    }

    fn position_of(&self, id: &Uuid) -> Option<u64> {
        let frozen = self
            .frozen
            .as_ref()
            .and_then(|(batch, _)| batch.ids.get(id));
        self.active.ids.get(id).or(frozen).copied()
    }

    /// The latest state of `stream` in memory: `active` is newer than `frozen`.
    fn state_of(&self, stream: &str) -> Option<&Vec<u8>> {
        let frozen = || {
            self.frozen
                .as_ref()
                .and_then(|(batch, _)| batch.states.get(stream))
        };
        self.active.states.get(stream).or_else(frozen)
    }
}

/// The runs not yet in RocksDB, shared by the writer (which adds them), readers, and the
/// indexer (which writes them and then drops them from here).
pub(crate) struct RecentRuns {
    state: RwLock<Recent>,
    batch_runs: usize,
    /// What became of the frozen batch: [`IN_HAND`], [`INDEXED`] or [`FAILED`].
    outcome: AtomicU8,
}

const IN_HAND: u8 = 0;
const INDEXED: u8 = 1;
const FAILED: u8 = 2;

/// What [`RecentRuns::runs_of`] sees of a stream.
pub(crate) struct RecentView {
    /// First revision in memory: stored runs serve the revisions below it.
    pub first_revision: Option<u64>,
    /// Last revision of the stream, if it has runs in memory.
    pub last_revision: Option<u64>,
    /// The runs a read from its start needs, oldest first.
    pub runs: Vec<Run>,
}

impl RecentRuns {
    /// Rebuilds the runs of the events in `indexed..head` from their chunks.
    pub fn recover(db: &DB, head: u64, batch_runs: usize) -> Result<(Self, u64)> {
        let indexed = match db.get_pinned_cf(cf_handle(db, CF_META), INDEXED_KEY)? {
            Some(value) => decode_u64(&value).unwrap_or(0).min(head),
            // A log written before this index existed has every run in RocksDB.
            None => {
                db.put_cf(cf_handle(db, CF_META), INDEXED_KEY, head.to_be_bytes())?;
                head
            }
        };
        if db
            .get_pinned_cf(cf_handle(db, CF_META), CATEGORIES_KEY)?
            .is_none()
        {
            index_categories(db, indexed)?;
        }
        let mut recent = Recent::default();
        let mut chunks = ChunkCursor::new(db);
        for position in indexed..head {
            let event = chunks.event(position)?;
            // The chunks do not say where one append ended and the next began: consecutive
            // events of a stream become one run, which maps revisions to the same positions.
            if !recent
                .active
                .extend_last(&event.stream, event.revision, position)
            {
                let run = Run {
                    first_revision: event.revision,
                    first_position: position,
                    count: 1,
                };
                recent.active.add(&event.stream, run);
                recent.active_runs += 1;
            }
        }
        remove_unindexed_keys(db, &recent.active, indexed)?;
        if db.get_pinned_cf(cf_handle(db, CF_META), IDS_KEY)?.is_none() {
            index_ids(db, indexed)?;
        }
        recent.active_runs += recover_ids(db, indexed, head, &mut recent.active.ids)?;
        let state = RwLock::new(recent);
        let outcome = AtomicU8::new(IN_HAND);
        Ok((
            Self {
                state,
                batch_runs,
                outcome,
            },
            head - indexed,
        ))
    }

    /// The last revision of `stream` among the recent runs.
    pub fn last_revision(&self, stream: &str) -> Option<u64> {
        self.state.read().expect("index lock").last_revision(stream)
    }

    /// The recent runs of `stream` that a read from `from` in `direction` needs to serve
    /// `limit` events (all of them can be many for a busy stream). Every stored run of the
    /// stream is older than the first recent one, or the same run while it is being indexed.
    pub fn runs_of(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: ReadDirection,
        limit: usize,
    ) -> RecentView {
        let state = self.state.read().expect("index lock");
        let frozen = state.frozen.as_ref();
        let frozen = frozen.and_then(|(batch, _)| batch.streams.get(stream));
        let active = state.active.streams.get(stream);
        let parts = [frozen, active].map(|runs| runs.map_or(&[][..], Vec::as_slice));
        let first_revision = parts
            .iter()
            .find_map(|p| p.first())
            .map(|r| r.first_revision);
        let last_revision = parts
            .iter()
            .rev()
            .find_map(|p| p.last())
            .map(Run::last_revision);
        let mut runs = Vec::new();
        let mut events = 0u64;
        match (direction, last_revision) {
            (_, None) => {}
            (ReadDirection::Forwards, Some(_)) => {
                let start = from.unwrap_or(0);
                for part in parts {
                    let skip = part.partition_point(|run| run.last_revision() < start);
                    for run in &part[skip..] {
                        if events >= limit as u64 {
                            break;
                        }
                        events += run.last_revision() + 1 - start.max(run.first_revision);
                        runs.push(*run);
                    }
                }
            }
            (ReadDirection::Backwards, Some(last)) => {
                let start = from.unwrap_or(last).min(last);
                for part in parts.iter().rev() {
                    let end = part.partition_point(|run| run.first_revision <= start);
                    for run in part[..end].iter().rev() {
                        if events >= limit as u64 {
                            break;
                        }
                        events += start.min(run.last_revision()) + 1 - run.first_revision;
                        runs.push(*run);
                    }
                }
                runs.reverse();
            }
        }
        RecentView {
            first_revision,
            last_revision,
            runs,
        }
    }

    /// The recent spans of `category` that end after `from`, oldest first. Every stored span
    /// of the category starts before the first recent one, or is the same span while it is
    /// being indexed.
    pub fn spans_of(&self, category: &str, from: u64) -> Vec<Span> {
        let state = self.state.read().expect("index lock");
        let frozen = state.frozen.as_ref();
        let frozen = frozen.and_then(|(batch, _)| batch.categories.get(category));
        let active = state.active.categories.get(category);
        [frozen, active]
            .into_iter()
            .flatten()
            .flat_map(|spans| {
                let skip = spans.partition_point(|span| span.end() <= from);
                spans[skip..].iter().copied()
            })
            .collect()
    }

    /// Moves to `found` the position of each of `ids` committed since the last batch the
    /// indexer wrote; returns the others, which only the id index can tell.
    pub fn find_ids(&self, ids: impl Iterator<Item = Uuid>, found: &mut Ids) -> Vec<Uuid> {
        let state = self.state.read().expect("index lock");
        let mut others = Vec::new();
        for id in ids {
            match state.position_of(&id) {
                Some(position) => {
                    found.insert(id, position);
                }
                None => others.push(id),
            }
        }
        others
    }

    /// Moves to `found` the state of each of `streams` changed since the last batch the
    /// indexer wrote; returns the others, which only the states column family can tell.
    pub fn find_states<'s>(
        &self,
        streams: impl Iterator<Item = &'s str>,
        found: &mut StoredStates,
    ) -> Vec<&'s str> {
        let state = self.state.read().expect("index lock");
        let mut others = Vec::new();
        for stream in streams {
            if found.contains(stream) {
                continue;
            }
            match state.state_of(stream) {
                Some(value) => found.insert(stream.into(), value.clone()),
                None => others.push(stream),
            }
        }
        others
    }

    /// Keeps states replayed at open in memory, with the runs and ids of the same events,
    /// for the indexer's next batch.
    pub fn add_states(&self, states: impl Iterator<Item = (Box<str>, Vec<u8>)>) {
        let mut state = self.state.write().expect("index lock");
        for (stream, value) in states {
            if state.active.states.insert(stream, value).is_none() {
                state.active_runs += 1;
            }
        }
    }

    /// Called by the writer before each group, while it holds no RocksDB iterator: forgets a
    /// batch the indexer wrote (so a group never sees it in neither place), or hands back one
    /// whose write failed.
    pub fn settle(&self, indexer: &Indexer) {
        match self.outcome.swap(IN_HAND, Ordering::AcqRel) {
            INDEXED => self.state.write().expect("index lock").frozen = None,
            FAILED => {
                if let Some((runs, indexed)) = &self.state.read().expect("index lock").frozen {
                    indexer.send(runs.clone(), *indexed);
                }
            }
            _ => {}
        }
    }

    /// Adds a committed group's runs, ids and stream states (each stamped with the group's
    /// last position); hands a batch to the indexer once enough have gathered and it is idle
    /// (the batch then covers every event before `next_position`).
    pub fn add<'a>(
        &self,
        runs: impl Iterator<Item = (&'a str, Run)>,
        ids: impl ExactSizeIterator<Item = (Uuid, u64)>,
        states: Vec<(Box<str>, Vec<u8>)>,
        next_position: u64,
        indexer: &Indexer,
    ) {
        let mut state = self.state.write().expect("index lock");
        for (stream, run) in runs {
            if state.active.add(stream, run) {
                state.active_runs += 1;
            }
        }
        state.active_runs += ids.len();
        state.active.ids.extend(ids);
        for (stream, changed) in states {
            let value = super::states::stamped(next_position - 1, &changed);
            if state.active.states.insert(stream, value).is_none() {
                state.active_runs += 1;
            }
        }
        if state.active_runs >= self.batch_runs && state.frozen.is_none() {
            let batch = Arc::new(std::mem::take(&mut state.active));
            state.active_runs = 0;
            state.frozen = Some((batch.clone(), next_position));
            indexer.send(batch, next_position);
        }
    }

    /// Writes every recent run now, on this thread (at shutdown, after the indexer stopped).
    pub fn write_all(&self, db: &DB, next_position: u64) {
        let batch = {
            let mut state = self.state.write().expect("index lock");
            let mut all = state
                .frozen
                .take()
                .map(|(batch, _)| Arc::unwrap_or_clone(batch))
                .unwrap_or_default();
            all.extend(std::mem::take(&mut state.active));
            state.active_runs = 0;
            let all = Arc::new(all);
            state.frozen = Some((all.clone(), next_position));
            all
        };
        match write_runs(db, &batch, next_position) {
            Ok(()) => self.state.write().expect("index lock").frozen = None,
            Err(error) => {
                tracing::warn!(%error, "log indexes not written; the next open rebuilds them")
            }
        }
    }
}

/// Writes the batch's runs and spans (sorted, as RocksDB's skiplist inserts neighbouring keys
/// fastest), a slice at a time so the writer's synced commits never queue behind one long
/// batch (a 100 000-run batch held them ~50 ms), then the indexed position. Not synced: the
/// chunks the runs come from are, and a lost batch only makes the next open rebuild more.
fn write_runs(db: &DB, batch: &Batch, indexed: u64) -> Result<()> {
    let mut runs: Vec<(&str, &Run)> = batch
        .streams
        .iter()
        .flat_map(|(stream, runs)| runs.iter().map(move |run| (&**stream, run)))
        .collect();
    // The order of (name, revision) is the order of their keys: names never contain 0x00.
    runs.sort_unstable_by(|a, b| (a.0, a.1.first_revision).cmp(&(b.0, b.1.first_revision)));
    let streams = cf_handle(db, CF_STREAMS);
    let mut key = Vec::new();
    for slice in runs.chunks(SLICE_RUNS) {
        let mut write = WriteBatch::default();
        for (stream, run) in slice {
            put_run_key(&mut key, stream, run.first_revision);
            write.put_cf(streams, &key, run.encode_value());
        }
        db.write(write)?;
    }
    write_spans(db, &batch.categories)?;
    let mut ids: Vec<(&Uuid, &u64)> = batch.ids.iter().collect();
    write_ids(db, &mut ids)?;
    write_states(db, &batch.states)?;
    db.put_cf(cf_handle(db, CF_META), INDEXED_KEY, indexed.to_be_bytes())?;
    Ok(())
}

/// Writes id → position entries, sorted first.
fn write_ids(db: &DB, ids: &mut [(&Uuid, &u64)]) -> Result<()> {
    ids.sort_unstable_by_key(|(id, _)| **id);
    let cf = cf_handle(db, CF_ID_INDEX);
    for slice in ids.chunks(SLICE_RUNS) {
        let mut write = WriteBatch::default();
        for (id, position) in slice {
            write.put_cf(cf, id.as_bytes(), position.to_be_bytes());
        }
        db.write(write)?;
    }
    Ok(())
}

/// Writes stream states (stamped), sorted first. Before the indexed position moves: the
/// states on disk include at least every event before it.
pub(crate) fn write_states(db: &DB, states: &States) -> Result<()> {
    let mut sorted: Vec<(&Box<str>, &Vec<u8>)> = states.iter().collect();
    sorted.sort_unstable_by_key(|(stream, _)| *stream);
    let cf = cf_handle(db, CF_STATES);
    for slice in sorted.chunks(SLICE_RUNS) {
        let mut write = WriteBatch::default();
        for (stream, value) in slice {
            write.put_cf(cf, stream.as_bytes(), value);
        }
        db.write(write)?;
    }
    Ok(())
}

/// Marks the id index as kept (by [`write_runs`]) for every event before the indexed
/// position. A log written before it existed gets it at open, once, from the id lists.
const IDS_KEY: &[u8] = b"chiso/log/ids-indexed";

/// Calls `each` with the id and position of every event in `range`, from the chunks' id lists.
fn each_id(
    db: &DB,
    range: std::ops::Range<u64>,
    mut each: impl FnMut(Uuid, u64) -> Result<()>,
) -> Result<()> {
    let mut lists = super::scan_iterator(db, CF_IDS);
    lists.seek_for_prev(position_key(range.start));
    if !lists.valid() {
        lists.seek_to_first();
    }
    while let (Some(key), Some(value)) = (lists.key(), lists.value()) {
        let first =
            decode_u64(key)
                .filter(|_| value.len() % 16 == 0)
                .ok_or(crate::Error::Corrupt {
                    key: "id list".into(),
                    reason: "bad id list",
                })?;
        if first >= range.end {
            break;
        }
        for (position, id) in (first..).zip(value.chunks_exact(16)) {
            if range.contains(&position) {
                each(Uuid::from_slice(id).expect("16 bytes"), position)?;
            }
        }
        lists.next();
    }
    lists.status()?;
    Ok(())
}

/// Brings the ids of the events in `indexed..head` into memory; returns how many.
fn recover_ids(db: &DB, indexed: u64, head: u64, ids: &mut Ids) -> Result<usize> {
    ids.reserve((head - indexed) as usize);
    each_id(db, indexed..head, |id, position| {
        ids.insert(id, position);
        Ok(())
    })?;
    Ok(ids.len())
}

/// Builds the id index of the events before `indexed` from the chunks' id lists (a log
/// written before the id index existed), a million at a time, then marks it as kept.
fn index_ids(db: &DB, indexed: u64) -> Result<()> {
    const AT_ONCE: usize = 1_000_000;
    let started = std::time::Instant::now();
    let mut pending: Vec<(Uuid, u64)> = Vec::with_capacity(AT_ONCE.min(indexed as usize));
    let mut written = 0u64;
    let mut flush = |pending: &mut Vec<(Uuid, u64)>| -> Result<()> {
        let mut entries: Vec<(&Uuid, &u64)> = pending.iter().map(|(i, p)| (i, p)).collect();
        write_ids(db, &mut entries)?;
        written += pending.len() as u64;
        pending.clear();
        if written > 0 {
            tracing::info!(
                indexed = written,
                of = indexed,
                "indexing the log's event ids"
            );
        }
        Ok(())
    };
    each_id(db, 0..indexed, |id, position| {
        pending.push((id, position));
        if pending.len() == AT_ONCE {
            flush(&mut pending)?;
        }
        Ok(())
    })?;
    flush(&mut pending)?;
    db.put_cf(cf_handle(db, CF_META), IDS_KEY, [1])?;
    if indexed > 0 {
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(events = indexed, ms, "id index built");
    }
    Ok(())
}

/// Writes category spans, in key order.
fn write_spans(db: &DB, spans: &Spans) -> Result<()> {
    let mut categories: Vec<(&str, &[Span])> = spans
        .iter()
        .map(|(category, spans)| (&**category, spans.as_slice()))
        .collect();
    categories.sort_unstable_by_key(|(category, _)| *category);
    let cf = cf_handle(db, CF_CATEGORIES);
    let mut write = WriteBatch::default();
    for (category, spans) in categories {
        for span in spans {
            let count = span.count.to_be_bytes();
            write.put_cf(cf, span_key(category, span.first_position), count);
            if write.len() >= SLICE_RUNS {
                db.write(std::mem::take(&mut write))?;
            }
        }
    }
    db.write(write)?;
    Ok(())
}

/// Marks the category index as kept (by [`write_runs`]) for every event before the indexed
/// position. A log written before it existed gets it at open, once, from its chunks.
const CATEGORIES_KEY: &[u8] = b"chiso/log/categories-indexed";

/// Builds the category spans of the events before `indexed` from their chunks (a log written
/// before the category index existed), then marks the index as kept.
fn index_categories(db: &DB, indexed: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let mut spans = Spans::default();
    let mut chunks = ChunkCursor::new(db);
    let mut last: Option<(Box<str>, Span)> = None;
    for position in 0..indexed {
        let event = chunks.event(position)?;
        let category = category_of(&event.stream);
        match &mut last {
            Some((c, span)) if **c == *category => span.count += 1,
            _ => {
                if let Some((c, span)) = last.take() {
                    spans.entry(c).or_default().push(span);
                }
                let span = Span {
                    first_position: position,
                    count: 1,
                };
                last = Some((category.into(), span));
            }
        }
        if position % 1_000_000 == 999_999 {
            write_spans(db, &spans)?;
            spans.clear();
            tracing::info!(
                indexed = position + 1,
                of = indexed,
                "indexing the log's categories"
            );
        }
    }
    if let Some((c, span)) = last {
        spans.entry(c).or_default().push(span);
    }
    write_spans(db, &spans)?;
    db.put_cf(cf_handle(db, CF_META), CATEGORIES_KEY, [1])?;
    if indexed > 0 {
        tracing::info!(
            events = indexed,
            ms = started.elapsed().as_millis() as u64,
            "category index built"
        );
    }
    Ok(())
}

/// Deletes the stored run and span keys of the events after the indexed position: keys of a
/// batch whose slices were written but not its position (a crash, a failed write). The
/// rebuilt runs may be cut differently and must not overlap them.
fn remove_unindexed_keys(db: &DB, recent: &Batch, indexed: u64) -> Result<()> {
    let mut stray = WriteBatch::default();
    // Every entry of `name` from `from` on.
    let mut remove = |cf_name: &str, name: &str, from: Vec<u8>| -> Result<()> {
        let cf = cf_handle(db, cf_name);
        let mut iter = db.raw_iterator_cf(cf);
        iter.seek(from);
        while let Some(key) = iter.key().filter(|key| is_entry_of(key, name)) {
            stray.delete_cf(cf, key);
            iter.next();
        }
        Ok(iter.status()?)
    };
    for (stream, runs) in &recent.streams {
        remove(CF_STREAMS, stream, run_key(stream, runs[0].first_revision))?;
    }
    for category in recent.categories.keys() {
        remove(CF_CATEGORIES, category, span_key(category, indexed))?;
    }
    if !stray.is_empty() {
        tracing::warn!(
            keys = stray.len(),
            "removed stream index entries written past the indexed position"
        );
        db.write(stray)?;
    }
    Ok(())
}

/// Runs in one RocksDB write of the indexer (about half a millisecond of memtable inserts).
const SLICE_RUNS: usize = 1_000;

/// The background thread that writes batches of runs.
pub(crate) struct Indexer {
    jobs: Option<mpsc::Sender<(Arc<Batch>, u64)>>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start(
        db: Arc<DB>,
        recent: Arc<RecentRuns>,
        indexed_position: Gauge<u64, AtomicU64>,
    ) -> std::io::Result<Self> {
        let (jobs, received) = mpsc::channel::<(Arc<Batch>, u64)>();
        let thread = std::thread::Builder::new()
            .name("chiso-log-indexer".into())
            .spawn(move || {
                for (runs, indexed) in received {
                    let outcome = match write_runs(&db, &runs, indexed) {
                        Ok(()) => {
                            indexed_position.set(indexed);
                            INDEXED
                        }
                        // The batch stays readable in memory; the writer hands it back after
                        // a pause, shutdown tries again, and an open rebuilds it from chunks.
                        Err(error) => {
                            tracing::error!(%error, "stream index not written; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                            FAILED
                        }
                    };
                    recent.outcome.store(outcome, Ordering::Release);
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, runs: Arc<Batch>, indexed: u64) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send((runs, indexed));
        }
    }

    /// Waits for the batch in hand, then stops the thread.
    pub fn stop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendRequest, Appender, EventStore, ExpectedRevision, NoRules, ProposedEvent};
    use crate::{LogOptions, StoreMetrics, StreamName};

    fn open(path: &std::path::Path, index_at_shutdown: bool) -> Appender<NoRules> {
        let options = LogOptions {
            index_batch_runs: 1_000_000,
            index_at_shutdown,
            ..LogOptions::default()
        };
        EventStore::open_with_options(path, StoreMetrics::default(), NoRules, options).unwrap()
    }

    fn positions(store: &EventStore, direction: ReadDirection) -> Vec<u64> {
        let stream = StreamName::new("s-1").unwrap();
        let events = store.read_stream(&stream, None, direction, 100).unwrap();
        events.iter().map(|event| event.position).collect()
    }

    fn request(stream: &str, count: usize) -> AppendRequest<()> {
        let events = (0..count)
            .map(|n| ProposedEvent {
                id: uuid::Uuid::new_v4(),
                event_type: "Noted".into(),
                data: format!(r#"{{"n":{n}}}"#),
                metadata: "{}".into(),
                decoded: (),
            })
            .collect();
        AppendRequest {
            stream: StreamName::new(stream).unwrap(),
            expected: ExpectedRevision::Any,
            events,
            principal: (),
        }
    }

    /// Consecutive appends of one stream, with nothing of another stream between them in the
    /// log, are one run key; an append of another stream between them starts a new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn appends_that_continue_a_run_lengthen_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), true);
        for stream in ["s-1", "s-1", "s-1", "t-1", "s-1"] {
            store.append("test", request(stream, 3)).await.unwrap();
        }
        store.shutdown().await;
        drop(store);
        {
            let db = super::super::open_db(dir.path(), &crate::LogOptions::default()).unwrap();
            let streams = cf_handle(&db, CF_STREAMS);
            let keys: Vec<Vec<u8>> = db
                .iterator_cf(streams, rocksdb::IteratorMode::Start)
                .map(|entry| entry.unwrap().0.into_vec())
                .collect();
            assert_eq!(
                keys,
                vec![run_key("s-1", 0), run_key("s-1", 9), run_key("t-1", 0)],
            );
        }
        let store = open(dir.path(), true);
        let mut expected: Vec<u64> = (0..9).chain(12..15).collect();
        assert_eq!(positions(&store, ReadDirection::Forwards), expected);
        expected.reverse();
        assert_eq!(positions(&store, ReadDirection::Backwards), expected);
        let stream = StreamName::new("s-1").unwrap();
        assert_eq!(store.stream_revision(&stream).unwrap(), Some(11));
        store.shutdown().await;
    }

    /// A crash after the indexer wrote some of a batch's keys but not its position: the runs
    /// rebuilt from the chunks are cut differently (two appends become one run), and the
    /// stray key must not make a stream read return events twice, now or after indexing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn keys_written_past_the_indexed_position_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        for _ in 0..2 {
            store.append("test", request("s-1", 5)).await.unwrap();
        }
        store.shutdown().await;
        drop(store);
        {
            // The second append's run, as a partly written batch would have left it.
            let db = super::super::open_db(dir.path(), &crate::LogOptions::default()).unwrap();
            let run = Run {
                first_revision: 5,
                first_position: 5,
                count: 5,
            };
            let streams = cf_handle(&db, CF_STREAMS);
            db.put_cf(streams, run_key("s-1", 5), run.encode_value())
                .unwrap();
        }
        let all: Vec<u64> = (0..10).collect();
        let backwards: Vec<u64> = all.iter().rev().copied().collect();
        for index_at_shutdown in [true, false] {
            let store = open(dir.path(), index_at_shutdown);
            assert_eq!(positions(&store, ReadDirection::Forwards), all);
            assert_eq!(positions(&store, ReadDirection::Backwards), backwards);
            let stream = StreamName::new("s-1").unwrap();
            assert_eq!(store.stream_revision(&stream).unwrap(), Some(9));
            store.shutdown().await;
        }
    }
}

//! Group commit: one thread drains every pending append into one `WriteBatch` written with
//! `sync = true`, so concurrent requests share a single fsync and nobody waits on a timer.

use super::index::{Ids, Indexer, RecentRuns};
use super::keys::*;
use super::{cf_handle, last_run, states, ChunkCursor};
use crate::chunk::{self, RecordRef, MAX_CHUNK_EVENTS};
use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use crate::write_model::{RequestOf, StoredStates, WriteModel};
use crate::{AppendRequest, AppendResult, ProposedEvent, RecordedEvent};
use rocksdb::{DBRawIterator, WriteBatch, WriteOptions, DB};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Most events one group commit takes before it writes (bounds memory and latency).
const MAX_GROUP_EVENTS: usize = 200_000;

/// Longest event type a record can hold.
const MAX_EVENT_TYPE_LEN: usize = 255;
/// Longest author a record can hold.
const MAX_AUTHOR_LEN: usize = 255;
/// Longest `data` or `metadata` a record can hold.
const MAX_JSON_LEN: usize = 1 << 30;

pub(crate) struct Job<M: WriteModel> {
    pub requests: Vec<RequestOf<M>>,
    /// Who appends, recorded with each event.
    pub recorded_by: Box<str>,
    pub reply: oneshot::Sender<Result<Vec<AppendResult>>>,
}

pub(crate) enum Command<M: WriteModel> {
    Append(Job<M>),
    Shutdown,
}

/// What the log's readers may ask of its writer, whatever its model: whether it still takes
/// appends, and to stop. The store's own end of the queue: the writer runs until the store's
/// last handle goes (or it is stopped), like the database it writes.
pub(crate) trait Control: Send + Sync {
    fn is_closed(&self) -> bool;
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<M: WriteModel> Control for mpsc::Sender<Command<M>> {
    fn is_closed(&self) -> bool {
        mpsc::Sender::is_closed(self)
    }

    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.send(Command::Shutdown).await;
        })
    }
}

pub(crate) struct Writer<M: WriteModel> {
    pub db: Arc<DB>,
    /// Stream runs not yet in RocksDB: the writer adds each group's, the indexer writes them.
    pub recent: Arc<RecentRuns>,
    pub indexer: Indexer,
    pub index_at_shutdown: bool,
    pub next_position: u64,
    /// Domain rules, checked in log order.
    pub model: M,
    pub head: watch::Sender<u64>,
    pub metrics: StoreMetrics,
    pub disk: DiskReserve,
}

/// The free space a commit must leave on the log's filesystem.
#[derive(Clone)]
pub(crate) struct DiskReserve {
    pub path: std::path::PathBuf,
    pub reserve_bytes: u64,
}

impl DiskReserve {
    /// The free bytes, when the filesystem has less than the reserve free or `bytes` more
    /// would take it there. A filesystem that cannot tell counts as having room.
    pub fn short_of_room(&self, bytes: u64) -> Option<u64> {
        let free_bytes = self.free_bytes()?;
        let short = free_bytes < self.reserve_bytes.saturating_add(bytes);
        (self.reserve_bytes > 0 && short).then_some(free_bytes)
    }

    /// Free bytes for an unprivileged writer, if the filesystem tells.
    pub fn free_bytes(&self) -> Option<u64> {
        let stats = rustix::fs::statvfs(&self.path).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
}

impl<M: WriteModel> Writer<M> {
    pub fn run(mut self, mut commands: mpsc::Receiver<Command<M>>) {
        while let Some(first) = commands.blocking_recv() {
            let mut jobs = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(job) => {
                        events += job.requests.iter().map(|r| r.events.len()).sum::<usize>();
                        jobs.push(job);
                    }
                    // Stop taking new work; what is already queued is still committed.
                    Command::Shutdown => commands.close(),
                }
                if events < MAX_GROUP_EVENTS {
                    next = commands.try_recv().ok();
                }
            }
            if !jobs.is_empty() && !self.commit_group(jobs) {
                tracing::error!("the event log stops taking writes after a failed write");
                commands.close();
                while let Ok(command) = commands.try_recv() {
                    if let Command::Append(job) = command {
                        let _ = job.reply.send(Err(Error::WriteFailed));
                    }
                }
                break;
            }
        }
        self.indexer.stop();
        if self.index_at_shutdown {
            self.recent.write_all(&self.db, self.next_position);
        }
        // Memtables to SST files, so the next open does not replay the write-ahead log.
        for name in ALL_CFS {
            if let Err(error) = self.db.flush_cf(cf_handle(&self.db, name)) {
                tracing::warn!(%error, cf = name, "flush at shutdown failed; the next open replays the WAL");
            }
        }
        tracing::info!(next_position = self.next_position, "log writer stopped");
    }

    /// Stages every job, writes the successful ones in one synced batch, answers each job.
    /// Returns false if the write failed: after a failed fsync the file state is unknown.
    /// Without room above the disk reserve every job is refused, and nothing is written.
    fn commit_group(&mut self, jobs: Vec<Job<M>>) -> bool {
        let bytes: u64 = jobs
            .iter()
            .flat_map(|job| &job.requests)
            .flat_map(|request| &request.events)
            .map(|event| (event.data.len() + event.metadata.len() + 64) as u64)
            .sum();
        if let Some(free_bytes) = self.disk.free_bytes() {
            self.metrics.disk_free_bytes.set(free_bytes);
        }
        if let Some(free_bytes) = self.disk.short_of_room(bytes) {
            let reserve_bytes = self.disk.reserve_bytes;
            tracing::warn!(
                free_bytes,
                reserve_bytes,
                "appends refused: the disk is full"
            );
            for job in jobs {
                self.metrics.append_requests.inc();
                self.metrics.append_failures.inc();
                let refused = Error::DiskFull {
                    free_bytes,
                    reserve_bytes,
                };
                let _ = job.reply.send(Err(refused));
            }
            return true;
        }
        let recorded_at_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let (requests, events) = jobs
            .iter()
            .flat_map(|job| &job.requests)
            .fold((0, 0), |(requests, events), request| {
                (requests + 1, events + request.events.len())
            });
        // Before the group's iterator exists: a batch the indexer finished leaves memory only
        // now, so a lookup sees every run either in memory or in the iterator's view.
        self.recent.settle(&self.indexer);
        let mut stored_states = StoredStates::default();
        let streams = jobs
            .iter()
            .flat_map(|job| &job.requests)
            .map(|request| request.stream.as_str())
            .filter(|stream| self.model.fetches(stream));
        let looked_up = stored_positions(&self.db, &self.recent, &jobs).and_then(|ids| {
            states::stored_states(&self.db, &self.recent, streams, &mut stored_states)?;
            Ok(ids)
        });
        let stored_ids = match looked_up {
            Ok(ids) => ids,
            Err(error) => {
                tracing::error!(%error, "the log's indexes could not be read; appends refused");
                for job in jobs {
                    self.metrics.append_requests.inc();
                    self.metrics.append_failures.inc();
                    let _ = job.reply.send(Err(Error::Unavailable(
                        "its indexes could not be read; nothing was written, retry",
                    )));
                }
                return true;
            }
        };
        let mut group = Group::new(
            &self.db,
            &stored_ids,
            &stored_states,
            &self.recent,
            &mut self.model,
            self.next_position,
        );
        group.reserve(requests, events);
        let outcomes: Vec<_> = jobs
            .iter()
            .map(|job| group.stage(&job.requests, &job.recorded_by))
            .collect();
        let written = group.writes.len();
        let next_position = group.next_position;
        let write = if written == 0 {
            Ok(())
        } else {
            let batch = group.to_batch(recorded_at_micros);
            let started = Instant::now();
            let mut options = WriteOptions::default();
            options.set_sync(true);
            let result = self.db.write_opt(batch, &options);
            self.metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            result
        };
        let ok = write.is_ok();
        let (runs, writes) = (
            std::mem::take(&mut group.runs),
            std::mem::take(&mut group.writes),
        );
        drop(group);
        let mut changed = Vec::new();
        match ok {
            true => self.model.commit_group(&mut changed),
            false => self.model.abort_group(),
        }
        if ok && written > 0 {
            let ids = writes.iter().map(|w| (w.event.id, w.position));
            let runs = runs.into_iter();
            self.recent
                .add(runs, ids, changed, next_position, &self.indexer);
        }
        if let Err(error) = write {
            tracing::error!(%error, "synced write failed");
        } else if written > 0 {
            self.next_position = next_position;
            let _ = self.head.send(next_position);
            self.metrics.fsync_batches.inc();
            self.metrics.fsync_batch_events.observe(written as f64);
            self.metrics.events_appended.inc_by(written as u64);
            self.metrics.head_position.set(next_position);
        }
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            self.metrics.append_requests.inc();
            let outcome = match outcome {
                Ok(_) if !ok => Err(Error::WriteFailed),
                other => other,
            };
            if outcome.is_err() {
                self.metrics.append_failures.inc();
            }
            let _ = job.reply.send(outcome);
        }
        ok
    }
}

/// One event placed in the group: where it goes and which request it comes from.
struct Staged<'j, D> {
    stream: &'j str,
    revision: u64,
    position: u64,
    event: &'j ProposedEvent<D>,
    recorded_by: &'j str,
}

/// The writes of one group commit, and an overlay of what they change (stream heads, ids) so
/// later requests in the same group see earlier ones.
struct Group<'j, 'm, M: WriteModel> {
    db: &'j DB,
    /// The ids of this group's events that were stored before it, with their positions.
    stored_ids: &'j Ids,
    /// The write model's stored states of the group's streams it fetches.
    stored_states: &'j StoredStates,
    recent: &'j RecentRuns,
    model: &'m mut M,
    next_position: u64,
    writes: Vec<Staged<'j, M::Decoded>>,
    /// One run per request: (stream, run).
    runs: Vec<(&'j str, Run)>,
    stream_runs: DBRawIterator<'j>,
    heads: FastMap<&'j str, u64>,
    /// Heads as they were before the current job changed them, to roll a failed job back.
    heads_undo: Vec<(&'j str, Option<u64>)>,
    ids: FastMap<Uuid, usize>,
}

impl<'j, 'm, M: WriteModel> Group<'j, 'm, M> {
    fn new(
        db: &'j DB,
        stored_ids: &'j Ids,
        stored_states: &'j StoredStates,
        recent: &'j RecentRuns,
        model: &'m mut M,
        next_position: u64,
    ) -> Self {
        Self {
            db,
            stored_ids,
            stored_states,
            recent,
            model,
            next_position,
            writes: Vec::new(),
            runs: Vec::new(),
            stream_runs: db.raw_iterator_cf(cf_handle(db, CF_STREAMS)),
            heads: FastMap::default(),
            heads_undo: Vec::new(),
            ids: FastMap::default(),
        }
    }

    /// Room for `requests` requests of `events` events in all, so staging does not regrow.
    fn reserve(&mut self, requests: usize, events: usize) {
        self.writes.reserve(events);
        self.ids.reserve(events);
        self.runs.reserve(requests);
        self.heads.reserve(requests);
    }

    /// Stages one all-or-nothing job: on error nothing of it stays in the group.
    fn stage(
        &mut self,
        requests: &'j [RequestOf<M>],
        recorded_by: &'j str,
    ) -> Result<Vec<AppendResult>> {
        check_shape(requests, recorded_by)?;
        let rollback = (self.next_position, self.writes.len(), self.runs.len());
        self.heads_undo.clear();
        self.model.begin_job();
        let results = requests
            .iter()
            .enumerate()
            .map(|(index, request)| self.stage_request(index, request, recorded_by))
            .collect::<Result<Vec<_>>>();
        if results.is_err() {
            self.model.abort_job();
            let (next_position, writes, runs) = rollback;
            for staged in self.writes.drain(writes..) {
                self.ids.remove(&staged.event.id);
            }
            self.runs.truncate(runs);
            self.next_position = next_position;
            while let Some((stream, previous)) = self.heads_undo.pop() {
                match previous {
                    Some(last) => self.heads.insert(stream, last),
                    None => self.heads.remove(stream),
                };
            }
        }
        results
    }

    fn stage_request(
        &mut self,
        index: usize,
        request: &'j RequestOf<M>,
        recorded_by: &'j str,
    ) -> Result<AppendResult> {
        if let Some(result) = self.idempotent_result(index, request)? {
            return Ok(result);
        }
        let stream = request.stream.as_str();
        let current = self.head_of(stream)?;
        if !request.expected.accepts(current) {
            return Err(Error::WrongExpectedRevision {
                index,
                stream: stream.to_owned(),
                expected: request.expected,
                actual: current,
            });
        }
        self.model
            .stage(request, self.stored_states)
            .map_err(|rejection| Error::Rejected { index, rejection })?;
        let first_revision = current.map_or(0, |last| last + 1);
        let first_position = self.next_position;
        for (offset, event) in (0..).zip(&request.events) {
            self.ids.insert(event.id, self.writes.len());
            self.writes.push(Staged {
                stream,
                revision: first_revision + offset,
                position: self.next_position,
                event,
                recorded_by,
            });
            self.next_position += 1;
        }
        let count = request.events.len() as u64;
        let last_revision = first_revision + count - 1;
        let run = Run {
            first_revision,
            first_position,
            count,
        };
        self.runs.push((stream, run));
        let previous = self.heads.insert(stream, last_revision);
        self.heads_undo.push((stream, previous));
        Ok(AppendResult {
            first_revision,
            last_revision,
            first_position,
            last_position: self.next_position - 1,
        })
    }

    /// `Some` when every event of the request is already stored, in this stream, in this order,
    /// with the same content: the original result, and nothing to write. A partial or
    /// different match is a conflict.
    fn idempotent_result(
        &mut self,
        index: usize,
        request: &RequestOf<M>,
    ) -> Result<Option<AppendResult>> {
        // The common case, all ids new, costs two hash lookups an event and no allocation.
        let known = |id| self.ids.contains_key(id) || self.stored_ids.contains_key(id);
        if !request.events.iter().any(|event| known(&event.id)) {
            return Ok(None);
        }
        let mut existing = Vec::with_capacity(request.events.len());
        for event in &request.events {
            existing.push(self.lookup_id(&event.id)?);
        }
        if existing.iter().all(Option::is_none) {
            return Ok(None);
        }
        let stream = request.stream.as_str();
        let first = existing[0].as_ref();
        let some_stored = existing.iter().flatten().next().expect("some id exists");
        for (offset, (event, stored)) in (0..).zip(request.events.iter().zip(&existing)) {
            // The original append is one contiguous run: same stream, consecutive revisions
            // and positions, same content.
            let matches = match (stored, first) {
                (Some(stored), Some(first)) => {
                    stored.stream == stream
                        && stored.revision == first.revision + offset
                        && stored.position == first.position + offset
                        && same_content(event, stored)
                }
                _ => false,
            };
            if !matches {
                let conflicting = stored.as_ref().unwrap_or(some_stored);
                return Err(Error::DuplicateEventId {
                    index,
                    id: conflicting.id,
                    existing_stream: conflicting.stream.clone(),
                    position: conflicting.position,
                });
            }
        }
        let last = existing.last().and_then(Option::as_ref).expect("all exist");
        let first = first.expect("all exist");
        Ok(Some(AppendResult {
            first_revision: first.revision,
            last_revision: last.revision,
            first_position: first.position,
            last_position: last.position,
        }))
    }

    fn lookup_id(&mut self, id: &Uuid) -> Result<Option<RecordedEvent>> {
        if let Some(&at) = self.ids.get(id) {
            let staged = &self.writes[at];
            return Ok(Some(RecordedEvent {
                position: staged.position,
                stream: staged.stream.to_owned(),
                revision: staged.revision,
                id: *id,
                event_type: staged.event.event_type.clone(),
                data: staged.event.data.clone(),
                metadata: staged.event.metadata.clone(),
                recorded_at_micros: 0,
                recorded_by: staged.recorded_by.to_owned(),
            }));
        }
        match self.stored_ids.get(id) {
            Some(&position) => ChunkCursor::new(self.db).event(position).map(Some),
            None => Ok(None),
        }
    }

    fn head_of(&mut self, stream: &str) -> Result<Option<u64>> {
        if let Some(&last) = self.heads.get(stream) {
            return Ok(Some(last));
        }
        if let Some(last) = self.recent.last_revision(stream) {
            return Ok(Some(last));
        }
        Ok(last_run(&mut self.stream_runs, stream)?.map(|run| run.last_revision()))
    }

    /// The group's writes: chunks of consecutive events with their id lists. Its runs go to
    /// the stream index after the write (see `index.rs`).
    fn to_batch(&self, recorded_at_micros: i64) -> WriteBatch {
        let cf = |name| cf_handle(self.db, name);
        let (chunks, ids) = (cf(CF_CHUNKS), cf(CF_IDS));
        let mut batch = WriteBatch::default();
        for slice in self.writes.chunks(MAX_CHUNK_EVENTS) {
            let records: Vec<RecordRef<'_, M::Decoded>> = slice
                .iter()
                .map(|staged| RecordRef {
                    stream: staged.stream,
                    revision: staged.revision,
                    event: staged.event,
                    recorded_by: staged.recorded_by,
                })
                .collect();
            let key = position_key(slice[0].position);
            batch.put_cf(chunks, key, chunk::encode(&records, recorded_at_micros));
            let id_list: Vec<u8> = slice.iter().flat_map(|s| *s.event.id.as_bytes()).collect();
            batch.put_cf(ids, key, id_list);
        }
        batch
    }
}

/// The position of every event id of `jobs` the log already holds: the recent ones from
/// memory, the others in one sorted multi-get of the id index, where bloom filters answer
/// most new ids without reading a block.
fn stored_positions<M: WriteModel>(db: &DB, recent: &RecentRuns, jobs: &[Job<M>]) -> Result<Ids> {
    let ids = jobs
        .iter()
        .flat_map(|job| &job.requests)
        .flat_map(|request| &request.events)
        .map(|event| event.id);
    let mut found = Ids::default();
    let mut others = recent.find_ids(ids, &mut found);
    others.sort_unstable();
    others.dedup();
    let index = cf_handle(db, CF_ID_INDEX);
    let keys = others.iter().map(|id| id.as_bytes());
    for (id, value) in others
        .iter()
        .zip(db.batched_multi_get_cf(index, keys, true))
    {
        if let Some(value) = value? {
            let position = decode_u64(&value).ok_or(Error::Corrupt {
                key: format!("id {id}"),
                reason: "bad id index entry",
            })?;
            found.insert(*id, position);
        }
    }
    Ok(found)
}

/// Refuses empty appends, ids used twice in one job and an author that does not fit, before
/// anything is looked up.
fn check_shape<P, D>(requests: &[AppendRequest<P, D>], recorded_by: &str) -> Result<()> {
    if !(1..=MAX_AUTHOR_LEN).contains(&recorded_by.len()) {
        return Err(Error::InvalidEvent {
            index: 0,
            reason: "the author recorded with events must be 1 to 255 bytes",
        });
    }
    let mut seen: HashSet<Uuid, foldhash::fast::RandomState> = HashSet::default();
    for (index, request) in requests.iter().enumerate() {
        if request.events.is_empty() {
            return Err(Error::EmptyAppend {
                index,
                stream: request.stream.to_string(),
            });
        }
        for event in &request.events {
            if event.event_type.is_empty() || event.event_type.len() > MAX_EVENT_TYPE_LEN {
                return Err(Error::InvalidEvent {
                    index,
                    reason: "the event type must be 1 to 255 bytes",
                });
            }
            if event.data.len() > MAX_JSON_LEN || event.metadata.len() > MAX_JSON_LEN {
                return Err(Error::InvalidEvent {
                    index,
                    reason: "data and metadata must each be under 1 GiB",
                });
            }
            if !seen.insert(event.id) {
                return Err(Error::DuplicateIdInRequest {
                    index,
                    id: event.id,
                });
            }
        }
    }
    Ok(())
}

fn same_content<D>(proposed: &ProposedEvent<D>, stored: &RecordedEvent) -> bool {
    proposed.event_type == stored.event_type
        && same_json(&proposed.data, &stored.data)
        && same_json(&proposed.metadata, &stored.metadata)
}

/// Equal bytes, or equal JSON values (a retry may format or order keys differently).
fn same_json(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

//! The stream index of recent appends, kept in memory and written to RocksDB in the
//! background. Inserting one run key a new stream into RocksDB's memtable was a fifth of the
//! writer's time when every NDJSON line opens a new dossier; the writer now only adds the run
//! here, and `chiso-log-indexer` writes many runs at once, sorted, off the commit path.
//!
//! Durability does not depend on it: every event's stream and revision are in its chunk, so
//! the runs after the indexed position are rebuilt from the chunks at open (after a crash,
//! or a shutdown that did not index).

use super::keys::*;
use super::{cf_handle, ChunkCursor};
use crate::error::Result;
use rocksdb::{WriteBatch, DB};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

type Runs = HashMap<Box<str>, Vec<Run>, foldhash::fast::RandomState>;

/// Where the index position lives among the settings: every run of an event before it is in
/// the streams column family.
const INDEXED_KEY: &[u8] = b"chiso/log/indexed-up-to";

/// Runs held in memory before they are written (about 12 MB).
pub(crate) const DEFAULT_BATCH_RUNS: usize = 100_000;

#[derive(Default)]
struct Recent {
    /// Runs committed since the last hand-over to the indexer.
    active: Runs,
    active_runs: usize,
    /// Runs the indexer is writing; still read from here until they are in RocksDB.
    frozen: Option<Arc<Runs>>,
}

impl Recent {
    fn last_revision(&self, stream: &str) -> Option<u64> {
        let last = |runs: &Runs| runs.get(stream).and_then(|r| r.last()).copied();
        last(&self.active)
            .or_else(|| self.frozen.as_deref().and_then(last))
            .map(|run| run.last_revision())
    }
}

/// The runs not yet in RocksDB, shared by the writer (which adds them), readers, and the
/// indexer (which writes them and then drops them from here).
pub(crate) struct RecentRuns {
    state: RwLock<Recent>,
    batch_runs: usize,
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
        let mut recent = Recent::default();
        let mut chunks = ChunkCursor::new(db);
        for position in indexed..head {
            let event = chunks.event(position)?;
            let runs = recent.active.entry(event.stream.into()).or_default();
            match runs.last_mut() {
                Some(run)
                    if run.last_revision() + 1 == event.revision
                        && run.first_position + run.count == position =>
                {
                    run.count += 1
                }
                _ => {
                    runs.push(Run {
                        first_revision: event.revision,
                        first_position: position,
                        count: 1,
                    });
                    recent.active_runs += 1;
                }
            }
        }
        let state = RwLock::new(recent);
        Ok((Self { state, batch_runs }, head - indexed))
    }

    /// The last revision of `stream` among the recent runs.
    pub fn last_revision(&self, stream: &str) -> Option<u64> {
        self.state.read().expect("index lock").last_revision(stream)
    }

    /// The recent runs of `stream`, oldest first; every stored run of the stream is older
    /// than the first of them, or the same run (while the indexer writes it).
    pub fn runs_of(&self, stream: &str) -> Vec<Run> {
        let state = self.state.read().expect("index lock");
        let frozen = state.frozen.as_deref().and_then(|runs| runs.get(stream));
        let active = state.active.get(stream);
        frozen
            .into_iter()
            .chain(active)
            .flatten()
            .copied()
            .collect()
    }

    /// Adds a committed group's runs; hands a batch to the indexer once enough have gathered
    /// and it is idle (the batch then covers every event before `next_position`).
    pub fn add<'a>(
        &self,
        runs: impl Iterator<Item = (&'a str, Run)>,
        next_position: u64,
        indexer: &Indexer,
    ) {
        let mut state = self.state.write().expect("index lock");
        for (stream, run) in runs {
            match state.active.get_mut(stream) {
                Some(existing) => existing.push(run),
                None => {
                    state.active.insert(stream.into(), vec![run]);
                }
            }
            state.active_runs += 1;
        }
        if state.active_runs >= self.batch_runs && state.frozen.is_none() {
            let batch = Arc::new(std::mem::take(&mut state.active));
            state.active_runs = 0;
            state.frozen = Some(batch.clone());
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
                .map(Arc::unwrap_or_clone)
                .unwrap_or_default();
            for (stream, runs) in std::mem::take(&mut state.active) {
                all.entry(stream).or_default().extend(runs);
            }
            state.active_runs = 0;
            state.frozen = Some(Arc::new(all));
            state.frozen.clone().expect("just set")
        };
        match write_runs(db, &batch, next_position) {
            Ok(()) => self.state.write().expect("index lock").frozen = None,
            Err(error) => {
                tracing::warn!(%error, "stream index not written; the next open rebuilds it")
            }
        }
    }
}

/// Writes `runs` (sorted, as RocksDB's skiplist inserts neighbouring keys fastest), a slice
/// at a time so the writer's synced commits never queue behind one long batch (a 100 000-run
/// batch held them ~50 ms), then the indexed position. Not synced: the chunks the runs come
/// from are, and a lost batch only makes the next open rebuild more.
fn write_runs(db: &DB, runs: &Runs, indexed: u64) -> Result<()> {
    let mut sorted: Vec<(&str, &Run)> = runs
        .iter()
        .flat_map(|(stream, runs)| runs.iter().map(move |run| (&**stream, run)))
        .collect();
    // The order of (name, revision) is the order of their keys: names never contain 0x00.
    sorted.sort_unstable_by(|a, b| (a.0, a.1.first_revision).cmp(&(b.0, b.1.first_revision)));
    let streams = cf_handle(db, CF_STREAMS);
    let mut key = Vec::new();
    for slice in sorted.chunks(SLICE_RUNS) {
        let mut batch = WriteBatch::default();
        for (stream, run) in slice {
            put_run_key(&mut key, stream, run.first_revision);
            batch.put_cf(streams, &key, run.encode_value());
        }
        db.write(batch)?;
    }
    db.put_cf(cf_handle(db, CF_META), INDEXED_KEY, indexed.to_be_bytes())?;
    Ok(())
}

/// Runs in one RocksDB write of the indexer (about half a millisecond of memtable inserts).
const SLICE_RUNS: usize = 1_000;

/// The background thread that writes batches of runs.
pub(crate) struct Indexer {
    jobs: Option<mpsc::Sender<(Arc<Runs>, u64)>>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start(db: Arc<DB>, recent: Arc<RecentRuns>) -> std::io::Result<Self> {
        let (jobs, received) = mpsc::channel::<(Arc<Runs>, u64)>();
        let thread = std::thread::Builder::new()
            .name("chiso-log-indexer".into())
            .spawn(move || {
                for (runs, indexed) in received {
                    match write_runs(&db, &runs, indexed) {
                        Ok(()) => recent.state.write().expect("index lock").frozen = None,
                        // The batch stays readable in memory (and no other is handed over);
                        // shutdown tries again, and the next open rebuilds it from the chunks.
                        Err(error) => tracing::error!(%error, "stream index not written"),
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, runs: Arc<Runs>, indexed: u64) {
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

//! The event log: opening, appending through the group-commit writer, and reading.

mod keys;
mod subscription;
mod writer;

pub use subscription::Subscription;

use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use crate::{AppendRequest, AppendResult, RecordedEvent, StreamName};
use keys::*;
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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

/// A handle to the event log. Cheap to clone; every clone shares one writer.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<DB>,
    commands: mpsc::Sender<writer::Command>,
    head: watch::Receiver<u64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: StoreMetrics,
}

impl EventStore {
    /// Opens (or creates) the log in `path` and starts its writer thread. The log continues
    /// exactly after the last record that was acknowledged before any crash.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_metrics(path, StoreMetrics::default())
    }

    /// Like [`EventStore::open`], updating the given instruments.
    pub fn open_with_metrics(path: impl AsRef<Path>, metrics: StoreMetrics) -> Result<Self> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        let db = Arc::new(open_db(path)?);
        let next_position = recover_head(&db)?;
        tracing::info!(path = %path.display(), next_position, "event log opened");
        metrics.head_position.set(next_position);
        let (head_tx, head_rx) = watch::channel(next_position);
        let (commands_tx, commands_rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = writer::Writer::new(db.clone(), next_position, head_tx, metrics.clone());
        let handle = std::thread::Builder::new()
            .name("chiso-log-writer".into())
            .spawn(move || writer.run(commands_rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                commands: commands_tx,
                head: head_rx,
                writer: Mutex::new(Some(handle)),
                metrics,
            }),
        })
    }

    /// Appends to one stream atomically; resolves once the events are fsynced.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendResult> {
        let mut results = self.append_all(vec![request]).await?;
        Ok(results.pop().expect("one result per request"))
    }

    /// Appends several requests (to any streams) as one all-or-nothing unit, in order: a later
    /// request sees the revisions the earlier ones produce. Resolves once fsynced.
    pub async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendResult>> {
        let (reply, answer) = oneshot::channel();
        let job = writer::Job { requests, reply };
        self.inner
            .commands
            .send(writer::Command::Append(job))
            .await
            .map_err(|_| Error::Unavailable("the log is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the log writer stopped"))?
    }

    /// Finishes every append already queued, then stops the writer. Appends after this fail
    /// with [`Error::Unavailable`].
    pub async fn shutdown(&self) {
        let _ = self.inner.commands.send(writer::Command::Shutdown).await;
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
        !self.inner.commands.is_closed()
    }

    /// The instruments this store updates.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// The last revision of `stream`, `None` if it has no events.
    pub fn stream_revision(&self, stream: &StreamName) -> Result<Option<u64>> {
        let cf = self.cf(CF_STREAMS);
        let value = self.inner.db.get_pinned_cf(cf, stream.as_str())?;
        value
            .map(|v| decode_last_revision(stream.as_str(), &v))
            .transpose()
    }

    /// Reads up to `limit` events of the whole log from `from` (inclusive), in position order.
    pub fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let head = self.head();
        let count = head.saturating_sub(from).min(limit as u64) as usize;
        let mut events = Vec::with_capacity(count);
        if count == 0 {
            return Ok(events);
        }
        let cf = self.cf(CF_EVENTS);
        let start = position_key(from);
        let iter = self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
        for (expected, item) in (from..).zip(iter.take(count)) {
            let (key, value) = item?;
            if decode_u64(&key) != Some(expected) {
                return Err(Error::Corrupt {
                    key: format!("position {expected}"),
                    reason: "gap in the global order",
                });
            }
            events.push(crate::record::decode(expected, &value)?);
        }
        if events.len() < count {
            return Err(Error::Corrupt {
                key: format!("position {}", from + events.len() as u64),
                reason: "acknowledged event missing",
            });
        }
        Ok(events)
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
        let last = self
            .stream_revision(stream)?
            .ok_or_else(|| Error::StreamNotFound(stream.to_string()))?;
        let revisions: Vec<u64> = match direction {
            ReadDirection::Forwards => (from.unwrap_or(0)..=last).take(limit).collect(),
            ReadDirection::Backwards => {
                let start = from.unwrap_or(last).min(last);
                (0..=start).rev().take(limit).collect()
            }
        };
        let index_cf = self.cf(CF_STREAM_INDEX);
        let keys: Vec<_> = revisions
            .iter()
            .map(|&revision| (index_cf, stream_index_key(stream.as_str(), revision)))
            .collect();
        let positions = self
            .inner
            .db
            .multi_get_cf(keys)
            .into_iter()
            .zip(&revisions)
            .map(|(value, revision)| {
                let missing = || Error::Corrupt {
                    key: format!("{stream}@{revision}"),
                    reason: "stream index entry missing",
                };
                value?.as_deref().and_then(decode_u64).ok_or_else(missing)
            })
            .collect::<Result<Vec<u64>>>()?;
        self.read_positions(&positions)
    }

    /// Reads the events at the given positions, in the given order.
    fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let cf = self.cf(CF_EVENTS);
        let keys = positions.iter().map(|&p| (cf, position_key(p)));
        let values = self.inner.db.multi_get_cf(keys);
        positions
            .iter()
            .zip(values)
            .map(|(&position, value)| match value? {
                Some(bytes) => crate::record::decode(position, &bytes),
                None => Err(Error::Corrupt {
                    key: format!("position {position}"),
                    reason: "indexed event missing",
                }),
            })
            .collect()
    }

    /// Follows the log from `from` (inclusive): first what is stored, then each new commit.
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::new(self.clone(), from, self.inner.head.clone())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        cf_handle(&self.inner.db, name)
    }
}

impl Drop for Inner {
    /// Closes the queue and waits for the writer, so the database is closed when the last
    /// handle goes, not later on another thread (RocksDB must not outlive the process exit).
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
    }
}

fn cf_handle<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created at open")
}

fn decode_last_revision(stream: &str, bytes: &[u8]) -> Result<u64> {
    decode_u64(bytes).ok_or_else(|| Error::Corrupt {
        key: format!("stream {stream}"),
        reason: "bad stream head",
    })
}

fn open_db(path: &Path) -> Result<DB> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_background_jobs(2);
    options.set_bytes_per_sync(1 << 20);
    let descriptors = ALL_CFS.iter().map(|name| {
        let mut cf_options = Options::default();
        cf_options.set_write_buffer_size(64 << 20);
        cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        if *name != CF_EVENTS {
            // Point lookups (idempotency, stream heads) mostly miss: bloom filters keep them cheap.
            let mut table = BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            cf_options.set_block_based_table_factory(&table);
            cf_options.set_memtable_whole_key_filtering(true);
            cf_options.set_memtable_prefix_bloom_ratio(0.1);
        }
        ColumnFamilyDescriptor::new(*name, cf_options)
    });
    Ok(DB::open_cf_descriptors(&options, path, descriptors)?)
}

/// The next position is one past the last record; writes are atomic batches, so the last
/// record is the end of the last acknowledged (or at least fully written) batch.
fn recover_head(db: &DB) -> Result<u64> {
    let cf = cf_handle(db, CF_EVENTS);
    let mut iter = db.raw_iterator_cf(cf);
    iter.seek_to_last();
    iter.status()?;
    match iter.key() {
        None => Ok(0),
        Some(key) => decode_u64(key)
            .map(|last| last + 1)
            .ok_or_else(|| Error::Corrupt {
                key: "last event".into(),
                reason: "bad position key",
            }),
    }
}

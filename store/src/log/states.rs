//! The write model's stream states on disk: read for each group before it is staged (memory
//! first, then one sorted multi-get of the [`CF_STATES`] column family), and brought up to the
//! log's head at open by replaying only the events after those the stored states include.
//!
//! Every stored state carries the position it includes every event up to (the last position
//! of the group that changed it). The indexer writes the states of a batch before it moves
//! the indexed position, so the states on disk are never behind it; they may be ahead (a crash
//! between the two), and the stamp makes that harmless: an event at or before its stream's
//! stamp is already in the state and is not replayed again.

use super::index::{write_states, RecentRuns, States};
use super::keys::*;
use super::{cf_handle, ChunkCursor};
use crate::error::{Error, Result};
use crate::write_model::{StoredStates, WriteModel};
use crate::RecordedEvent;
use rocksdb::DB;

/// Which state format the stored states are in (the model's [`WriteModel::state_format`]).
/// Absent: a log written before states were stored, or a rebuild that did not finish.
const STATES_KEY: &[u8] = b"chiso/log/states-format";

/// Where earlier versions saved the whole write model at shutdown; removed by the rebuild.
const OLD_SNAPSHOT_KEY: &[u8] = b"chiso/write-model-snapshot";

/// Events replayed per lookup of their streams' states.
const REPLAY_EVENTS: u64 = 20_000;

/// States a full rebuild gathers before it writes them.
const REBUILD_STATES: usize = 1_000_000;

/// Reads into `found` the stored state of each of `streams` that `found` lacks: those changed
/// since the indexer's last batch from memory, the others from disk, sorted, in one
/// multi-get (bloom filters answer most new streams without reading a block).
pub(crate) fn stored_states<'s>(
    db: &DB,
    recent: &RecentRuns,
    streams: impl Iterator<Item = &'s str>,
    found: &mut StoredStates,
) -> Result<()> {
    let mut others = recent.find_states(streams, found);
    others.sort_unstable();
    others.dedup();
    let cf = cf_handle(db, CF_STATES);
    let keys = others.iter().map(|stream| stream.as_bytes());
    for (stream, value) in others.iter().zip(db.batched_multi_get_cf(cf, keys, true)) {
        if let Some(value) = value? {
            if value.len() < 8 {
                return Err(bad_state(stream));
            }
            found.insert((*stream).into(), value.to_vec());
        }
    }
    Ok(())
}

/// A state as stored: the position it includes every event up to, then the model's bytes.
pub(crate) fn stamped(position: u64, state: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + state.len());
    value.extend_from_slice(&position.to_be_bytes());
    value.extend_from_slice(state);
    value
}

fn bad_state(stream: &str) -> Error {
    Error::Corrupt {
        key: format!("state of {stream}"),
        reason: "a stream state shorter than its stamp",
    }
}

/// Brings the model to the log's `head`: loads its resident states, then replays the events
/// the stored states do not include yet — those after `indexed` (the tail the indexer had
/// not written), or every event when the states are missing or in another format (they are
/// then rebuilt and written here). The tail's new states stay in memory for the indexer.
/// Returns how many events were replayed.
pub(crate) fn recover(
    db: &DB,
    recent: &RecentRuns,
    model: &mut impl WriteModel,
    indexed: u64,
    head: u64,
) -> Result<u64> {
    if !model.needs_replay() {
        return Ok(0);
    }
    let meta = cf_handle(db, CF_META);
    let format = model.state_format().to_be_bytes();
    let kept = db.get_pinned_cf(meta, STATES_KEY)?.as_deref() == Some(&format[..]);
    if !kept {
        let cf = cf_handle(db, CF_STATES);
        // Stream names are ASCII: every key sorts before 0xff.
        db.delete_range_cf(cf, &[][..], &[0xff][..])?;
        db.delete_cf(meta, OLD_SNAPSHOT_KEY)?;
        if head > 0 {
            tracing::info!(
                events = head,
                "rebuilding the write model's states from the log"
            );
        }
    }
    let resident = load_resident(db, model)?;
    let from = if kept { indexed } else { 0 };
    let mut pending = States::default();
    let mut chunks = ChunkCursor::new(db);
    let mut replayed = 0;
    let mut changed = Vec::new();
    let mut start = from;
    while start < head {
        let end = (start + REPLAY_EVENTS).min(head);
        let events = (start..end)
            .map(|position| chunks.event(position))
            .collect::<Result<Vec<RecordedEvent>>>()?;
        let mut stored = StoredStates::default();
        let fetched = events
            .iter()
            .map(|event| event.stream.as_str())
            .filter(|stream| model.fetches(stream));
        for stream in fetched.clone() {
            if let Some(value) = pending.get(stream) {
                stored.insert(stream.into(), value.clone());
            }
        }
        stored_states(db, recent, fetched, &mut stored)?;
        for event in &events {
            let stamp = stored
                .stamp(&event.stream)
                .or_else(|| resident.stamp(&event.stream));
            if stamp.is_some_and(|stamp| stamp >= event.position) {
                continue;
            }
            model
                .replay(event, &stored)
                .map_err(|reason| Error::Replay {
                    position: event.position,
                    reason,
                })?;
            replayed += 1;
        }
        model.commit_group(&mut changed);
        for (stream, state) in changed.drain(..) {
            pending.insert(stream, stamped(end - 1, &state));
        }
        if !kept && pending.len() >= REBUILD_STATES {
            write_states(db, &pending)?;
            pending.clear();
        }
        if start / 1_000_000 != end / 1_000_000 {
            tracing::info!(replayed = end, of = head, "rebuilding the write model");
        }
        start = end;
    }
    if kept {
        recent.add_states(pending.into_iter());
    } else {
        write_states(db, &pending)?;
        db.put_cf(meta, STATES_KEY, format)?;
    }
    Ok(replayed)
}

/// Gives the model every stored state of its resident categories; returns them, for their
/// stamps.
fn load_resident(db: &DB, model: &mut impl WriteModel) -> Result<StoredStates> {
    let mut resident = StoredStates::default();
    let mut iter = db.raw_iterator_cf(cf_handle(db, CF_STATES));
    for category in model.resident_categories() {
        let prefix = format!("{category}-");
        iter.seek(prefix.as_bytes());
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let stream = std::str::from_utf8(key).map_err(|_| bad_state("a stream"))?;
            if value.len() < 8 {
                return Err(bad_state(stream));
            }
            model
                .load(stream, &value[8..])
                .map_err(|reason| Error::Replay {
                    position: decode_u64(&value[..8]).unwrap_or(0),
                    reason,
                })?;
            resident.insert(stream.into(), value.to_vec());
            iter.next();
        }
        iter.status()?;
    }
    Ok(resident)
}

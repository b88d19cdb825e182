//! The log's hash chain: the `chain` column family holds, under each chunk's key, the SHA-256
//! of the previous chunk's chain hash and the chunk's own stored bytes (32 zero bytes before the
//! first chunk). Whoever changes a stored chunk — even fixing its CRC — changes every chain hash
//! from it on: [`verify`] recomputes the chain and names the first chunk whose hash differs
//! from the one stored, and a chain hash copied out of the log (a published ranking carries one)
//! pins every event before it.
//!
//! The `chiso-log-chain` thread follows the log's head and writes the hashes behind the
//! commits, so the writer's synced batch never waits for them: a crash loses at most the
//! hashes not yet written, which are recomputed from the chunks at the next open. A log written
//! before the chain existed is chained the same way, from its first chunk, in the background.

use super::cf_handle;
use super::keys::{position_key, CF_CHAIN, CF_CHUNKS};
use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::EventRef;
use prometheus_client::metrics::gauge::Gauge;
use rocksdb::{WriteBatch, WriteOptions, DB};
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;

/// A chain hash: 32 bytes.
pub type ChainHash = [u8; 32];

/// The chain hash before the first chunk.
const GENESIS: ChainHash = [0; 32];

/// Chunks hashed between two writes of their chain hashes (and progress reports).
const BATCH_CHUNKS: usize = 1024;

/// The chain as far as it is computed: every chunk before `next_position` has its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// One past the last position the chain covers.
    pub next_position: u64,
    /// The chain hash of the chunk that ends at `next_position - 1` ([`GENESIS`] for none).
    pub hash: ChainHash,
}

/// The chain hash of a chunk whose stored bytes are `bytes`, after `previous`.
fn link(previous: &ChainHash, bytes: &[u8]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(bytes);
    hasher.finalize().into()
}

fn decode_hash(position: u64, bytes: &[u8]) -> Result<ChainHash> {
    bytes.try_into().map_err(|_| Error::Corrupt {
        key: format!("chain hash at position {position}"),
        reason: "not 32 bytes",
    })
}

fn chunk_len(first_position: u64, bytes: &[u8]) -> Result<u64> {
    Ok(Chunk::parse_verified(first_position, bytes)?.len() as u64)
}

/// Where the stored chain ends: the last chunk with a hash, and the position after it.
pub(crate) fn stored_head(db: &DB) -> Result<ChainHead> {
    let mut hashes = db.raw_iterator_cf(cf_handle(db, CF_CHAIN));
    hashes.seek_to_last();
    let (Some(key), Some(value)) = (hashes.key(), hashes.value()) else {
        hashes.status()?;
        return Ok(ChainHead {
            next_position: 0,
            hash: GENESIS,
        });
    };
    let first_position = u64::from_be_bytes(key.try_into().map_err(|_| Error::Corrupt {
        key: "chain".into(),
        reason: "bad key",
    })?);
    let hash = decode_hash(first_position, value)?;
    let chunk = db
        .get_pinned_cf(cf_handle(db, CF_CHUNKS), position_key(first_position))?
        .ok_or(Error::Corrupt {
            key: format!("chain hash at position {first_position}"),
            reason: "its chunk is missing",
        })?;
    Ok(ChainHead {
        next_position: first_position + chunk_len(first_position, &chunk)?,
        hash,
    })
}

/// Follows the log's head and writes the chain hashes of new chunks (and, after an upgrade, of
/// every chunk written before the chain existed). Stops when the head's sender is dropped.
pub(crate) fn start(
    db: Arc<DB>,
    mut head: watch::Receiver<u64>,
    chained: watch::Sender<ChainHead>,
    gauge: Gauge<u64, AtomicU64>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut current = stored_head(&db)?;
    chained.send_replace(current);
    gauge.set(current.next_position);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let thread = std::thread::Builder::new()
        .name("chiso-log-chain".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let target = *head.borrow_and_update();
                    if current.next_position < target {
                        if current.next_position + 100_000 < target {
                            tracing::info!(
                                from = current.next_position,
                                to = target,
                                "hash chain: hashing the chunks stored before it"
                            );
                        }
                        let extended = extend(&db, current, target, |head| {
                            gauge.set(head.next_position);
                            chained.send_replace(head);
                        });
                        match extended {
                            Ok(head) => current = head,
                            Err(error) => {
                                tracing::error!(%error, "hash chain: stopped; a restart resumes it");
                                return;
                            }
                        }
                    }
                    // Ends with the log: its head's sender is the writer's.
                    if head.changed().await.is_err() {
                        return;
                    }
                }
            })
        })?;
    Ok(thread)
}

/// Hashes the chunks from `from` up to `target` (exclusive) and stores their hashes, in
/// batches; `progress` hears of each batch stored.
fn extend(
    db: &DB,
    from: ChainHead,
    target: u64,
    mut progress: impl FnMut(ChainHead),
) -> Result<ChainHead> {
    let (chunks, hashes) = (cf_handle(db, CF_CHUNKS), cf_handle(db, CF_CHAIN));
    let mut iter = db.raw_iterator_cf(chunks);
    iter.seek(position_key(from.next_position));
    let mut head = from;
    let mut batch = WriteBatch::default();
    let mut options = WriteOptions::default();
    // Lost hashes are recomputed at the next open: the write-ahead log is enough.
    options.set_sync(false);
    while head.next_position < target {
        let (Some(key), Some(bytes)) = (iter.key(), iter.value()) else {
            iter.status()?;
            break;
        };
        let first_position = u64::from_be_bytes(key.try_into().map_err(|_| Error::Corrupt {
            key: "chunks".into(),
            reason: "bad key",
        })?);
        if first_position != head.next_position {
            return Err(Error::Corrupt {
                key: format!("chunk at position {}", head.next_position),
                reason: "missing: the chain cannot go past it",
            });
        }
        let hash = link(&head.hash, bytes);
        batch.put_cf(hashes, key, hash);
        head = ChainHead {
            next_position: first_position + chunk_len(first_position, bytes)?,
            hash,
        };
        if batch.len() >= BATCH_CHUNKS {
            db.write_opt(std::mem::take(&mut batch), &options)?;
            progress(head);
        }
        iter.next();
    }
    if !batch.is_empty() {
        db.write_opt(batch, &options)?;
    }
    progress(head);
    Ok(head)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The first position checked: the first of the chunk holding the `from` asked for.
    pub from: u64,
    /// One past the last position checked.
    pub to: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Bytes of chunks hashed.
    pub bytes: u64,
    /// The chain hash of the last chunk checked, as recomputed.
    pub head: ChainHash,
    /// The first chunk that does not match, if any.
    pub mismatch: Option<Mismatch>,
    /// Chain hashes copied into events of the range (anchors) that were checked: those
    /// pointing before the first mismatch.
    pub anchors_checked: u64,
    /// The anchors whose hash is not the chain's there: the log before them was rewritten,
    /// chain and all.
    pub anchor_mismatches: Vec<AnchorMismatch>,
}

/// An event that copied a chain hash the log no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorMismatch {
    /// The event that carries the hash.
    pub event_position: u64,
    /// The position it anchors.
    pub anchored: u64,
}

/// A chunk whose stored bytes do not give its stored chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The chunk's first position.
    pub position: u64,
    /// What is wrong: `hash_mismatch`, `checksum_mismatch` (its CRC fails too),
    /// `chunk_missing`, `hash_missing`.
    pub reason: &'static str,
}

/// Recomputes the chain over the chunks holding positions `from..to` (`to` at most where the
/// chain is computed) and compares each hash with the stored one, stopping at the first that
/// differs. The chain is taken up at the stored hash of the chunk before `from` (from the
/// start when `from` is 0, which checks every hash from the genesis). `progress` hears the
/// position reached now and then. `anchor_of` finds the chain hashes events copied (a
/// position and its hash); each is compared with the chain where it points, if that was
/// verified.
pub(crate) fn verify(
    db: &DB,
    from: u64,
    to: u64,
    mut progress: impl FnMut(u64),
    mut anchor_of: impl FnMut(EventRef<'_>) -> Option<(u64, ChainHash)>,
) -> Result<Verification> {
    let hashes = cf_handle(db, CF_CHAIN);
    let mut iter = super::scan_iterator(db, CF_CHUNKS);
    // The chunk holding `from`: the last one starting at or before it.
    iter.seek_for_prev(position_key(from));
    if !iter.valid() {
        iter.seek(position_key(from));
    }
    let start = match iter.key() {
        Some(key) => u64::from_be_bytes(key.try_into().unwrap_or_default()),
        None => from,
    };
    let mut previous = GENESIS;
    if start > 0 {
        let mut before = db.raw_iterator_cf(hashes);
        before.seek_for_prev(position_key(start - 1));
        match (before.key(), before.value()) {
            (Some(_), Some(value)) => previous = decode_hash(start, value)?,
            _ => before.status()?,
        }
    }
    let mut verification = Verification {
        from: start,
        to: start,
        chunks: 0,
        bytes: 0,
        head: previous,
        mismatch: None,
        anchors_checked: 0,
        anchor_mismatches: Vec::new(),
    };
    let mut anchors = Vec::new();
    let mut stored = db.raw_iterator_cf(hashes);
    stored.seek(position_key(start));
    while verification.to < to {
        let (Some(key), Some(bytes)) = (iter.key(), iter.value()) else {
            iter.status()?;
            break;
        };
        let first_position = u64::from_be_bytes(key.try_into().unwrap_or_default());
        let mismatch = |reason| {
            Some(Mismatch {
                position: first_position.min(verification.to),
                reason,
            })
        };
        if first_position != verification.to {
            verification.mismatch = mismatch("chunk_missing");
            break;
        }
        let stored_hash = match (stored.key(), stored.value()) {
            (Some(k), Some(v)) if k == key => decode_hash(first_position, v)?,
            _ => {
                stored.status()?;
                verification.mismatch = mismatch("hash_missing");
                break;
            }
        };
        let hash = link(&verification.head, bytes);
        if hash != stored_hash {
            let crc_fails = Chunk::parse(first_position, bytes).is_err();
            let reason = match crc_fails {
                true => "checksum_mismatch",
                false => "hash_mismatch",
            };
            verification.mismatch = mismatch(reason);
            break;
        }
        verification.head = hash;
        verification.chunks += 1;
        verification.bytes += bytes.len() as u64;
        let chunk = Chunk::parse_verified(first_position, bytes)?;
        for position in first_position..=chunk.last_position() {
            if let Some((anchored, hash)) = anchor_of(chunk.event_ref(position)?) {
                anchors.push((position, anchored, hash));
            }
        }
        verification.to = chunk.last_position() + 1;
        if verification.chunks % BATCH_CHUNKS as u64 == 0 {
            progress(verification.to);
        }
        iter.next();
        stored.next();
    }
    progress(verification.to);
    // Up to `to`, every stored hash is the recomputed one.
    for (event_position, anchored, hash) in anchors {
        if anchored >= verification.to || anchored < verification.from {
            continue;
        }
        verification.anchors_checked += 1;
        if hash_at(db, anchored)? != Some((anchored, hash)) {
            verification.anchor_mismatches.push(AnchorMismatch {
                event_position,
                anchored,
            });
        }
    }
    Ok(verification)
}

/// The chain hash of the chunk holding `position`, if the chain reaches it: what a copy made
/// of it pins (every event up to that chunk's last).
pub(crate) fn hash_at(db: &DB, position: u64) -> Result<Option<(u64, ChainHash)>> {
    let mut chunks = db.raw_iterator_cf(cf_handle(db, CF_CHUNKS));
    chunks.seek_for_prev(position_key(position));
    let (Some(key), Some(bytes)) = (chunks.key(), chunks.value()) else {
        chunks.status()?;
        return Ok(None);
    };
    let first_position = u64::from_be_bytes(key.try_into().unwrap_or_default());
    let last_position = first_position + chunk_len(first_position, bytes)? - 1;
    if last_position < position {
        return Ok(None);
    }
    match db.get_pinned_cf(cf_handle(db, CF_CHAIN), key)? {
        Some(hash) => Ok(Some((last_position, decode_hash(first_position, &hash)?))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendRequest, EventStore, ExpectedRevision, ProposedEvent, StreamName};
    use std::time::Duration;

    /// A log of 300 events in 30 appends (chunks of 10), chained.
    fn written(dir: &std::path::Path) -> u64 {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let appender = EventStore::open(dir).unwrap();
        runtime.block_on(async {
            for n in 0..30u128 {
                let events = (0..10)
                    .map(|i| ProposedEvent {
                        id: uuid::Uuid::from_u128(n * 100 + i),
                        event_type: "Noted".into(),
                        data: format!(r#"{{"n":{n},"i":{i}}}"#),
                        metadata: "{}".into(),
                        decoded: (),
                    })
                    .collect();
                let request = AppendRequest {
                    stream: StreamName::new(format!("note-{n}")).unwrap(),
                    expected: ExpectedRevision::NoStream,
                    events,
                    principal: (),
                };
                appender.append("test", request).await.unwrap();
            }
            let hash = appender.chain_hash_at(299, Duration::from_secs(10)).await;
            assert_eq!(hash.unwrap().map(|(last, _)| last), Some(299));
        });
        appender.chain_head().next_position
    }

    /// Rewrites the stored chunk that starts at `position` with `change` applied, its CRC
    /// fixed up when `fix_crc` (as a tamperer would).
    fn tamper(dir: &std::path::Path, position: u64, fix_crc: bool, change: impl Fn(&mut Vec<u8>)) {
        let db = super::super::open_db(dir, &crate::LogOptions::default()).unwrap();
        let chunks = cf_handle(&db, CF_CHUNKS);
        let mut bytes = db.get_cf(chunks, position_key(position)).unwrap().unwrap();
        change(&mut bytes);
        if fix_crc {
            let crc = crc32fast::hash(&bytes[7..]);
            bytes[3..7].copy_from_slice(&crc.to_le_bytes());
        }
        db.put_cf(chunks, position_key(position), bytes).unwrap();
    }

    fn verify_all(dir: &std::path::Path) -> Verification {
        crate::verify_dir(dir, 0, u64::MAX, |_| {}, |_| None).unwrap()
    }

    #[test]
    fn a_clean_log_verifies_and_a_changed_byte_is_found_at_its_chunk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(written(dir.path()), 300);
        let clean = verify_all(dir.path());
        assert_eq!(
            (clean.from, clean.to, clean.chunks, clean.mismatch),
            (0, 300, 30, None)
        );
        // A range is taken up at the stored hash before it.
        let range = crate::verify_dir(dir.path(), 155, 201, |_| {}, |_| None).unwrap();
        assert_eq!((range.from, range.to, range.mismatch), (150, 210, None));
        // One byte of an event's data in the chunk at 120, the CRC fixed up.
        tamper(dir.path(), 120, true, |bytes| {
            let at = bytes.len() - 10;
            bytes[at] ^= 1;
        });
        let found = verify_all(dir.path());
        assert_eq!(
            (found.to, found.mismatch),
            (
                120,
                Some(Mismatch {
                    position: 120,
                    reason: "hash_mismatch"
                })
            )
        );
        // A range after it still verifies against the hashes stored from there on.
        let after = crate::verify_dir(dir.path(), 200, 300, |_| {}, |_| None).unwrap();
        assert_eq!(after.mismatch, None);
        // Without the CRC fixed, the checksum is named too.
        tamper(dir.path(), 40, false, |bytes| bytes[20] ^= 0x40);
        assert_eq!(
            verify_all(dir.path()).mismatch,
            Some(Mismatch {
                position: 40,
                reason: "checksum_mismatch"
            })
        );
    }

    #[test]
    fn a_log_from_before_the_chain_is_chained_at_its_next_open() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path());
        let before = verify_all(dir.path());
        {
            let mut db = super::super::open_db(dir.path(), &crate::LogOptions::default()).unwrap();
            db.drop_cf(CF_CHAIN).unwrap();
        }
        // No chain at all: nothing to verify yet.
        assert!(crate::verify_dir(dir.path(), 0, u64::MAX, |_| {}, |_| None).is_err());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let hash = runtime.block_on(store.chain_hash_at(299, Duration::from_secs(10)));
        assert_eq!(hash.unwrap(), Some((299, before.head)));
        let again = store.verify(0, u64::MAX, |_| {}, |_| None).unwrap();
        assert_eq!(
            (again.to, again.head, again.mismatch),
            (300, before.head, None)
        );
    }
}

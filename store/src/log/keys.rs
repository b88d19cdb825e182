//! Column families and key layouts of the log.

/// `first position (u64 BE)` → a chunk of consecutive events (see `chunk.rs`).
pub(crate) const CF_CHUNKS: &str = "chunks";
/// `stream · 0x00 · first revision (u64 BE)` → `first position (u64 BE) · count (u32 BE)`:
/// one entry per run of consecutive events an append put in a stream. Written behind the
/// commits by the indexer (`index.rs`); the latest runs are in memory until then.
pub(crate) const CF_STREAMS: &str = "streams";
/// `first position (u64 BE)` → the ids of that chunk's events, 16 bytes each: a compact copy
/// from which the ids not yet in the id index are brought back into memory at open.
pub(crate) const CF_IDS: &str = "ids";

/// `category · 0x00 · first position (u64 BE)` → `count (u64 BE)`: one entry per span of
/// consecutive positions whose events are all of one category (the stream name's part before
/// its first `-`), so a subscriber to a category reads its events without the rest of the log.
/// Written by the indexer with the stream runs.
pub(crate) const CF_CATEGORIES: &str = "categories";

/// `event id (16 bytes)` → `position (u64 BE)`: the idempotency index, written by the indexer
/// behind the commits (the ids since are in memory). Bloom filters answer most lookups of new
/// ids without reading a block.
pub(crate) const CF_ID_INDEX: &str = "id_index";

/// `stream name` → `position (u64 BE) · state`: the write model's state of each stream (see
/// `write_model.rs`), which includes every event of the log up to that position. Written by
/// the indexer behind the commits, with the runs (the states changed since are in memory).
pub(crate) const CF_STATES: &str = "states";

/// `first position (u64 BE)` of a chunk → its chain hash (32 bytes): SHA-256 of the previous
/// chunk's chain hash and the chunk's stored bytes (see `chain.rs`). Written behind the
/// commits by the chain thread.
pub(crate) const CF_CHAIN: &str = "chain";

/// Small settings of the crates above (tokens, …): written directly, synced, outside the log.
pub(crate) const CF_META: &str = "meta";

pub(crate) const ALL_CFS: [&str; 8] = [
    CF_CHUNKS,
    CF_STREAMS,
    CF_IDS,
    CF_CATEGORIES,
    CF_ID_INDEX,
    CF_STATES,
    CF_CHAIN,
    CF_META,
];

pub(crate) fn position_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

/// Stream names never contain 0x00, so it ends the name and keeps one stream's runs together,
/// ordered by revision.
pub(crate) fn run_key(stream: &str, first_revision: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 9);
    put_run_key(&mut key, stream, first_revision);
    key
}

/// Writes the run key into `key`, replacing what it held (reused across a group's runs).
pub(crate) fn put_run_key(key: &mut Vec<u8>, stream: &str, first_revision: u64) {
    key.clear();
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&first_revision.to_be_bytes());
}

/// The prefix of a run key that names its stream (`stream · 0x00`): RocksDB's prefix bloom
/// filters make looking up a stream that does not exist yet (every new dossier) cheap.
pub(crate) fn stream_prefix(key: &[u8]) -> &[u8] {
    match key.iter().position(|&b| b == 0) {
        Some(end) => &key[..=end],
        None => key,
    }
}

/// Whether `key` is one of `name`'s entries (`name · 0x00 · …`): a stream's runs or a
/// category's spans.
pub(crate) fn is_entry_of(key: &[u8], name: &str) -> bool {
    key.starts_with(name.as_bytes()) && key.get(name.len()) == Some(&0)
}

pub(crate) fn has_stream_prefix(key: &[u8]) -> bool {
    key.contains(&0)
}

/// Categories, like stream names, never contain 0x00; the key orders one category's spans by
/// position.
pub(crate) fn span_key(category: &str, first_position: u64) -> Vec<u8> {
    run_key(category, first_position)
}

/// Consecutive positions whose events are all of one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub first_position: u64,
    pub count: u64,
}

impl Span {
    pub fn end(&self) -> u64 {
        self.first_position + self.count
    }

    /// Decodes the entry `key → value` if the key belongs to `category`.
    pub fn decode(category: &str, key: &[u8], value: &[u8]) -> Option<Self> {
        let rest = key.strip_prefix(category.as_bytes())?.strip_prefix(&[0])?;
        let first_position = decode_u64(rest)?;
        let count = decode_u64(value)?;
        (count > 0).then_some(Self {
            first_position,
            count,
        })
    }
}

/// The most events one run entry can count (its value holds the count in 32 bits).
pub(crate) const MAX_RUN_EVENTS: u64 = u32::MAX as u64;

/// A run of consecutive events of one stream at consecutive positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub first_revision: u64,
    pub first_position: u64,
    pub count: u64,
}

impl Run {
    pub fn last_revision(&self) -> u64 {
        self.first_revision + self.count - 1
    }

    /// Whether `next` follows this run in revisions and positions, so the two can be one
    /// entry (within what an entry can count).
    pub fn continues_into(&self, next: &Run) -> bool {
        self.last_revision() + 1 == next.first_revision
            && self.first_position + self.count == next.first_position
            && self.count + next.count <= MAX_RUN_EVENTS
    }

    pub fn position_of(&self, revision: u64) -> u64 {
        self.first_position + (revision - self.first_revision)
    }

    pub fn encode_value(&self) -> [u8; 12] {
        let mut value = [0; 12];
        value[..8].copy_from_slice(&self.first_position.to_be_bytes());
        value[8..].copy_from_slice(&(self.count as u32).to_be_bytes());
        value
    }

    /// Decodes the entry `key → value` if the key belongs to `stream`.
    pub fn decode(stream: &str, key: &[u8], value: &[u8]) -> Option<Self> {
        let rest = key.strip_prefix(stream.as_bytes())?.strip_prefix(&[0])?;
        let first_revision = decode_u64(rest)?;
        let first_position = decode_u64(value.get(..8)?)?;
        let count = u32::from_be_bytes(value.get(8..12)?.try_into().ok()?) as u64;
        (count > 0 && value.len() == 12).then_some(Self {
            first_revision,
            first_position,
            count,
        })
    }
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

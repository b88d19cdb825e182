//! Column families and key layouts of the log.

use uuid::Uuid;

/// `position (u64 BE)` → encoded record.
pub(crate) const CF_EVENTS: &str = "events";
/// `stream name` → last revision (u64 BE).
pub(crate) const CF_STREAMS: &str = "streams";
/// `stream name · 0x00 · revision (u64 BE)` → position (u64 BE).
pub(crate) const CF_STREAM_INDEX: &str = "stream_index";
/// `event id (16 bytes)` → position (u64 BE).
pub(crate) const CF_EVENT_IDS: &str = "event_ids";

pub(crate) const ALL_CFS: [&str; 4] = [CF_EVENTS, CF_STREAMS, CF_STREAM_INDEX, CF_EVENT_IDS];

pub(crate) fn position_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

pub(crate) fn event_id_key(id: &Uuid) -> [u8; 16] {
    *id.as_bytes()
}

/// Stream names never contain 0x00, so it separates the name from the revision and keeps one
/// stream's entries contiguous and ordered by revision.
pub(crate) fn stream_index_key(stream: &str, revision: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 9);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

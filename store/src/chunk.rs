//! On-disk encoding of a chunk: up to [`MAX_CHUNK_EVENTS`] consecutive events of the log in one
//! RocksDB value, `magic · version · crc32 · count · offsets · records`. One value per chunk
//! instead of one per event is what lets a group commit write hundreds of thousands of events
//! a second; the CRC makes a torn or flipped chunk an error instead of garbage.
//!
//! A record is `revision · recorded_at · id · stream · type · data · metadata · recorded_by`;
//! version 1 (before who appended was recorded) has no `recorded_by`, and reads as `""`.

use crate::error::{Error, Result};
use crate::{EventRef, ProposedEvent, RecordedEvent};
use uuid::Uuid;

const MAGIC: [u8; 2] = *b"CK";
/// The version written; version 1 is still read.
const VERSION: u8 = 2;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// Most events in one chunk; small enough that reading one event reads little else.
pub(crate) const MAX_CHUNK_EVENTS: usize = 64;

/// The fields of an event as they are written, borrowed from the request.
pub(crate) struct RecordRef<'a, D = ()> {
    pub stream: &'a str,
    pub revision: u64,
    pub event: &'a ProposedEvent<D>,
    /// Who appended it (at most 255 bytes).
    pub recorded_by: &'a str,
}

/// Encodes consecutive events (all recorded at `recorded_at_micros`) into one chunk.
pub(crate) fn encode<D>(records: &[RecordRef<'_, D>], recorded_at_micros: i64) -> Vec<u8> {
    let count = records.len();
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + count * 400);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    let offsets_at = out.len();
    out.resize(offsets_at + 4 * count, 0);
    let records_at = out.len();
    for (i, record) in records.iter().enumerate() {
        let offset = (out.len() - records_at) as u32;
        out[offsets_at + 4 * i..offsets_at + 4 * i + 4].copy_from_slice(&offset.to_le_bytes());
        put_record(&mut out, record, recorded_at_micros);
    }
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[3..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

fn put_record<D>(out: &mut Vec<u8>, record: &RecordRef<'_, D>, recorded_at_micros: i64) {
    let event = record.event;
    out.extend_from_slice(&record.revision.to_le_bytes());
    out.extend_from_slice(&recorded_at_micros.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    put_bytes_u16(out, record.stream.as_bytes());
    put_bytes_u16(out, event.event_type.as_bytes());
    put_bytes_u32(out, event.data.as_bytes());
    put_bytes_u32(out, event.metadata.as_bytes());
    let recorded_by = record.recorded_by.as_bytes();
    let len = u8::try_from(recorded_by.len()).expect("authors are checked to fit in u8");
    out.push(len);
    out.extend_from_slice(recorded_by);
}

fn put_bytes_u16(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("names are validated to fit in u16");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("bodies are limited far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A checked chunk whose records decode on demand.
pub(crate) struct Chunk<'a> {
    first_position: u64,
    version: u8,
    offsets: &'a [u8],
    records: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Checks magic, version and CRC of the chunk stored under `first_position`.
    pub fn parse(first_position: u64, bytes: &'a [u8]) -> Result<Self> {
        let corrupt = |reason| corrupt(first_position, reason);
        if bytes.len() < HEADER_LEN + 4 || bytes[..2] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        if !(1..=VERSION).contains(&bytes[2]) {
            return Err(corrupt("unknown chunk version"));
        }
        let stored_crc = u32::from_le_bytes(bytes[3..HEADER_LEN].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[HEADER_LEN..]) != stored_crc {
            return Err(corrupt("checksum mismatch"));
        }
        Self::parse_verified(first_position, bytes)
    }

    /// Like [`Chunk::parse`] for bytes that already passed it: skips the checksum.
    pub fn parse_verified(first_position: u64, bytes: &'a [u8]) -> Result<Self> {
        let corrupt = |reason| corrupt(first_position, reason);
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt("truncated chunk"));
        }
        let version = bytes[2];
        let count_at = HEADER_LEN + 4;
        let count = u32::from_le_bytes(bytes[HEADER_LEN..count_at].try_into().expect("4")) as usize;
        let records_at = count_at + 4 * count;
        if count == 0 || bytes.len() < records_at {
            return Err(corrupt("bad record count"));
        }
        Ok(Self {
            first_position,
            version,
            offsets: &bytes[count_at..records_at],
            records: &bytes[records_at..],
        })
    }

    /// Number of events in the chunk.
    pub fn len(&self) -> usize {
        self.offsets.len() / 4
    }

    /// Position of the last event in the chunk.
    pub fn last_position(&self) -> u64 {
        self.first_position + self.len() as u64 - 1
    }

    /// Whether `position` is in this chunk.
    pub fn contains(&self, position: u64) -> bool {
        (self.first_position..=self.last_position()).contains(&position)
    }

    /// Decodes the event at `position`, which must be in this chunk.
    pub fn event(&self, position: u64) -> Result<RecordedEvent> {
        self.event_ref(position).map(|event| event.to_recorded())
    }

    /// The event at `position` (which must be in this chunk), borrowing the chunk's bytes.
    pub fn event_ref(&self, position: u64) -> Result<EventRef<'a>> {
        let index = (position - self.first_position) as usize;
        let at = &self.offsets[4 * index..4 * index + 4];
        let start = u32::from_le_bytes(at.try_into().expect("4")) as usize;
        let mut reader = Reader {
            bytes: self.records.get(start..).unwrap_or_default(),
        };
        reader
            .record(position, self.version)
            .ok_or_else(|| corrupt(self.first_position, "truncated record"))
    }
}

fn corrupt(first_position: u64, reason: &'static str) -> Error {
    Error::Corrupt {
        key: format!("chunk at position {first_position}"),
        reason,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn record(&mut self, position: u64, version: u8) -> Option<EventRef<'a>> {
        Some(EventRef {
            position,
            revision: u64::from_le_bytes(self.array()?),
            recorded_at_micros: i64::from_le_bytes(self.array()?),
            id: Uuid::from_bytes(self.array()?),
            stream: self.text_u16()?,
            event_type: self.text_u16()?,
            data: self.text_u32()?,
            metadata: self.text_u32()?,
            recorded_by: match version {
                1 => "",
                _ => self.text_u8()?,
            },
        })
    }

    fn text_u8(&mut self) -> Option<&'a str> {
        let len = self.array::<1>()?[0] as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().expect("length checked"))
    }

    fn text_u16(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn text_u32(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u128) -> ProposedEvent {
        ProposedEvent {
            id: Uuid::from_u128(n),
            event_type: "DossierReceived".into(),
            data: format!(r#"{{"n":{n}}}"#),
            metadata: "{}".into(),
            decoded: (),
        }
    }

    fn encoded() -> Vec<u8> {
        let events = [sample(1), sample(2), sample(3)];
        let records: Vec<_> = (0..)
            .zip(&events)
            .map(|(revision, event)| RecordRef {
                stream: "dossier-1",
                revision,
                event,
                recorded_by: "0123456789abcdef",
            })
            .collect();
        encode(&records, 42)
    }

    #[test]
    fn round_trip() {
        let bytes = encoded();
        let chunk = Chunk::parse(10, &bytes).unwrap();
        assert_eq!((chunk.len(), chunk.last_position()), (3, 12));
        let event = chunk.event(11).unwrap();
        assert_eq!(event.position, 11);
        assert_eq!(event.revision, 1);
        assert_eq!(event.stream, "dossier-1");
        assert_eq!(event.data, sample(2).data);
        assert_eq!(event.id, Uuid::from_u128(2));
        assert_eq!(event.recorded_at_micros, 42);
        assert_eq!(event.recorded_by, "0123456789abcdef");
        assert!(chunk.contains(12) && !chunk.contains(13) && !chunk.contains(9));
    }

    /// A chunk written before authors were recorded (version 1) reads with none.
    #[test]
    fn version_1_chunks_read_without_author() {
        let event = sample(7);
        let record = RecordRef {
            stream: "dossier-7",
            revision: 3,
            event: &event,
            recorded_by: "",
        };
        let mut bytes = encode(&[record], 42);
        bytes.pop(); // the empty author's length
        bytes[2] = 1;
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[3..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        let read = Chunk::parse(5, &bytes).unwrap().event(5).unwrap();
        assert_eq!(
            (read.revision, read.data, read.recorded_by),
            (3, event.data, String::new())
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = encoded();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(
                Chunk::parse(0, &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    /// Every record of a chunk that passed the header checks, read without panicking.
    fn read_all(chunk: &Chunk<'_>) {
        for position in 0..chunk.len() as u64 {
            let _ = chunk.event_ref(position);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Random bytes are an error, never a panic, even past the checksum.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Chunk::parse(0, &bytes);
            if let Ok(chunk) = Chunk::parse_verified(0, &bytes) {
                read_all(&chunk);
            }
        }

        /// A real chunk with bytes overwritten, read as if its checksum had passed.
        #[test]
        fn damaged_records_never_panic(
            writes in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..12)
        ) {
            let mut bytes = encoded();
            for (at, byte) in writes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Ok(chunk) = Chunk::parse_verified(0, &bytes) {
                read_all(&chunk);
            }
        }

        /// Whatever a record holds, it reads back as written.
        #[test]
        fn records_round_trip(
            stream in "[a-z]{1,8}-[A-Za-z0-9._:-]{0,40}",
            event_type in "[A-Za-z][A-Za-z0-9_.]{0,60}",
            data in "\\PC{0,200}",
            metadata in "\\PC{0,50}",
            recorded_by in "\\PC{0,60}",
            revision in proptest::prelude::any::<u64>(),
            id in proptest::prelude::any::<u128>(),
        ) {
            let event = ProposedEvent {
                id: Uuid::from_u128(id),
                event_type,
                data,
                metadata,
                decoded: (),
            };
            let record = RecordRef { stream: &stream, revision, event: &event, recorded_by: &recorded_by };
            let bytes = encode(&[record], -5);
            let chunk = Chunk::parse(7, &bytes).unwrap();
            let read = chunk.event(7).unwrap();
            proptest::prop_assert_eq!(
                (read.stream, read.revision, read.id, read.event_type, read.data, read.metadata, read.recorded_by),
                (stream.clone(), revision, event.id, event.event_type.clone(), event.data.clone(), event.metadata.clone(), recorded_by.clone())
            );
        }
    }

    #[test]
    fn truncation_is_detected() {
        let good = encoded();
        for len in 0..good.len() {
            assert!(Chunk::parse(0, &good[..len]).is_err());
        }
    }
}

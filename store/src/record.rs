//! On-disk encoding of one event: `magic · version · crc32 · body`, so a torn or flipped record
//! is reported as corrupt instead of being decoded into garbage.

use crate::error::{Error, Result};
use crate::{ProposedEvent, RecordedEvent};
use uuid::Uuid;

const MAGIC: [u8; 2] = *b"CE";
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// The fields of an event as they are written, borrowed from the request.
pub(crate) struct RecordRef<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub recorded_at_micros: i64,
    pub event: &'a ProposedEvent,
}

/// Encodes one event record.
pub(crate) fn encode(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    let event = record.event;
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.revision.to_le_bytes());
    out.extend_from_slice(&record.recorded_at_micros.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    put_bytes_u16(out, record.stream.as_bytes());
    put_bytes_u16(out, event.event_type.as_bytes());
    put_bytes_u32(out, event.data.as_bytes());
    put_bytes_u32(out, event.metadata.as_bytes());
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[3..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
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

/// Decodes the record stored at `position`.
pub(crate) fn decode(position: u64, bytes: &[u8]) -> Result<RecordedEvent> {
    let corrupt = |reason| Error::Corrupt {
        key: format!("position {position}"),
        reason,
    };
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    if bytes[2] != VERSION {
        return Err(corrupt("unknown record version"));
    }
    let stored_crc = u32::from_le_bytes(bytes[3..HEADER_LEN].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_LEN..];
    if crc32fast::hash(body) != stored_crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut reader = Reader { bytes: body };
    let truncated = || corrupt("truncated record");
    let revision = u64::from_le_bytes(reader.array().ok_or_else(truncated)?);
    let recorded_at_micros = i64::from_le_bytes(reader.array().ok_or_else(truncated)?);
    let id = Uuid::from_bytes(reader.array().ok_or_else(truncated)?);
    let stream = reader.text_u16().ok_or_else(truncated)?;
    let event_type = reader.text_u16().ok_or_else(truncated)?;
    let data = reader.text_u32().ok_or_else(truncated)?;
    let metadata = reader.text_u32().ok_or_else(truncated)?;
    if !reader.bytes.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(RecordedEvent {
        position,
        stream,
        revision,
        id,
        event_type,
        data,
        metadata,
        recorded_at_micros,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Option<&[u8]> {
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

    fn text_u16(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn text_u32(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProposedEvent {
        ProposedEvent {
            id: Uuid::from_u128(7),
            event_type: "DossierReceived".into(),
            data: r#"{"agency":"26"}"#.into(),
            metadata: "{}".into(),
        }
    }

    fn encoded() -> Vec<u8> {
        let event = sample();
        let mut out = Vec::new();
        let record = RecordRef {
            stream: "dossier-1",
            revision: 3,
            recorded_at_micros: 42,
            event: &event,
        };
        encode(&record, &mut out);
        out
    }

    #[test]
    fn round_trip() {
        let decoded = decode(9, &encoded()).unwrap();
        assert_eq!(decoded.position, 9);
        assert_eq!(decoded.revision, 3);
        assert_eq!(decoded.stream, "dossier-1");
        assert_eq!(decoded.data, sample().data);
        assert_eq!(decoded.recorded_at_micros, 42);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = encoded();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(decode(0, &bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn truncation_is_detected() {
        let good = encoded();
        for len in 0..good.len() {
            assert!(decode(0, &good[..len]).is_err());
        }
    }
}

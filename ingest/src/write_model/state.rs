//! The write model's state of one stream, as the log stores it: compact, versioned by
//! [`FORMAT`], and decoded strictly (anything unexpected is an error, never a guess).

use super::{Agency, Dossier, DossierStatus, IngestModel, Service};
use std::sync::Arc;

/// The version of these encodings: stored states of another are rebuilt from the log.
pub(super) const FORMAT: u32 = 3;

pub(super) fn agency(agency: &Agency) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(40));
    out.optional_text(agency.parent.as_deref());
    out.i64(agency.since);
    out.i64(agency.last_at);
    out.i64(agency.closed_at.unwrap_or(i64::MAX));
    out.0
}

pub(super) fn decode_agency(bytes: &[u8]) -> Result<Agency, String> {
    let mut input = Reader(bytes);
    let agency = Agency {
        parent: input.optional_text()?,
        since: input.i64()?,
        last_at: input.i64()?,
        closed_at: Some(input.i64()?).filter(|at| *at != i64::MAX),
    };
    input.end()?;
    Ok(agency)
}

pub(super) fn service(service: &Service) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(32));
    out.text(&service.agency);
    out.i64(service.launched_at);
    out.tag(u8::from(service.withdrawn));
    out.0
}

pub(super) fn decode_service(bytes: &[u8], model: &IngestModel) -> Result<Service, String> {
    let mut input = Reader(bytes);
    let service = Service {
        agency: model.agency_code(&input.text()?),
        launched_at: input.i64()?,
        withdrawn: input.tag()? != 0,
    };
    input.end()?;
    Ok(service)
}

pub(super) fn dossier(dossier: &Dossier) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(64));
    let (tag, since) = match dossier.status {
        DossierStatus::Open => (0, 0),
        DossierStatus::Paused { since } => (1, since),
        DossierStatus::Resolved { rated: false } => (2, 0),
        DossierStatus::Resolved { rated: true } => (3, 0),
        DossierStatus::Withdrawn => (4, 0),
        DossierStatus::Voided => (5, 0),
    };
    out.tag(tag);
    out.i64(dossier.received_at);
    out.i64(dossier.due_at);
    out.i64(dossier.last_at);
    out.i64(dossier.first_after.unwrap_or(i64::MAX));
    if tag == 1 {
        out.i64(since);
    }
    out.text(&dossier.agency);
    out.0
}

pub(super) fn decode_dossier(bytes: &[u8], model: &IngestModel) -> Result<Dossier, String> {
    let mut input = Reader(bytes);
    let tag = input.tag()?;
    let received_at = input.i64()?;
    let due_at = input.i64()?;
    let last_at = input.i64()?;
    let first_after = Some(input.i64()?).filter(|at| *at != i64::MAX);
    let status = match tag {
        0 => DossierStatus::Open,
        1 => DossierStatus::Paused {
            since: input.i64()?,
        },
        2 => DossierStatus::Resolved { rated: false },
        3 => DossierStatus::Resolved { rated: true },
        4 => DossierStatus::Withdrawn,
        5 => DossierStatus::Voided,
        _ => return Err(format!("unknown dossier status {tag}")),
    };
    let agency: Arc<str> = model.agency_code(&input.text()?);
    input.end()?;
    Ok(Dossier {
        agency,
        received_at,
        due_at,
        last_at,
        first_after,
        status,
    })
}

/// The provinces ranked in one year's ICT Index.
pub(super) fn provinces<'a>(provinces: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let provinces: Vec<&str> = provinces.collect();
    let mut out = Writer(Vec::with_capacity(8 + 8 * provinces.len()));
    out.count(provinces.len());
    for province in provinces {
        out.text(province);
    }
    out.0
}

pub(super) fn decode_provinces(bytes: &[u8]) -> Result<Vec<Box<str>>, String> {
    let mut input = Reader(bytes);
    let count = input.count()?;
    let mut provinces = Vec::new();
    for _ in 0..count {
        provinces.push(input.text()?);
    }
    input.end()?;
    Ok(provinces)
}

struct Writer(Vec<u8>);

impl Writer {
    fn count(&mut self, count: usize) {
        self.0.extend_from_slice(&(count as u64).to_le_bytes());
    }

    fn tag(&mut self, tag: u8) {
        self.0.push(tag);
    }

    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn text(&mut self, text: &str) {
        self.0.extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn optional_text(&mut self, text: Option<&str>) {
        self.0.push(u8::from(text.is_some()));
        if let Some(text) = text {
            self.text(text);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        if self.0.len() < len {
            return Err("the stored state is truncated".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn tag(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn count(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn text(&mut self) -> Result<Box<str>, String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Into::into)
            .map_err(|e| e.to_string())
    }

    fn end(&self) -> Result<(), String> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err("trailing bytes in the stored state".into()),
        }
    }

    fn optional_text(&mut self) -> Result<Option<Box<str>>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => self.text().map(Some),
        }
    }
}

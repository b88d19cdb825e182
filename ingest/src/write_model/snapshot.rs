//! A compact binary image of the write model's committed state, saved at shutdown so a
//! restart replays only the events after it. Versioned; anything unexpected is an error and
//! the store falls back to a full replay.

use super::{Agency, Dossier, DossierStatus, IngestModel, Service};

const VERSION: u8 = 2;

pub(super) fn encode(model: &IngestModel) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(64 * (model.dossiers.len() + 16)));
    out.0.push(VERSION);
    out.count(model.agencies.len());
    for (code, agency) in &model.agencies {
        out.text(code);
        out.optional_text(agency.parent.as_deref());
    }
    out.count(model.services.len());
    for (code, service) in &model.services {
        out.text(code);
        out.text(&service.agency);
        out.i64(service.launched_at);
        out.0.push(u8::from(service.withdrawn));
    }
    out.count(model.dossiers.len());
    for (id, dossier) in &model.dossiers {
        out.text(id);
        out.text(&dossier.agency);
        out.i64(dossier.received_at);
        out.i64(dossier.last_at);
        let (tag, since) = match dossier.status {
            DossierStatus::Open => (0, 0),
            DossierStatus::Paused { since } => (1, since),
            DossierStatus::Resolved { rated: false } => (2, 0),
            DossierStatus::Resolved { rated: true } => (3, 0),
            DossierStatus::Withdrawn => (4, 0),
        };
        out.0.push(tag);
        out.i64(since);
    }
    out.count(model.ict.len());
    for (year, province) in &model.ict {
        out.0.extend_from_slice(&year.to_le_bytes());
        out.text(province);
    }
    out.0
}

pub(super) fn decode(bytes: &[u8], model: &mut IngestModel) -> Result<(), String> {
    let mut input = Reader(bytes);
    if input.take(1)? != [VERSION] {
        return Err("unknown snapshot version".into());
    }
    for _ in 0..input.count()? {
        let code = input.text()?;
        let parent = input.optional_text()?;
        model.agencies.insert(code.into(), Agency { parent });
    }
    for _ in 0..input.count()? {
        let code = input.text()?;
        let service = Service {
            agency: model.agency_code(&input.text()?),
            launched_at: input.i64()?,
            withdrawn: input.take(1)?[0] != 0,
        };
        model.services.insert(code, service);
    }
    for _ in 0..input.count()? {
        let id = input.text()?;
        let agency = model.agency_code(&input.text()?);
        let received_at = input.i64()?;
        let last_at = input.i64()?;
        let tag = input.take(1)?[0];
        let since = input.i64()?;
        let status = match tag {
            0 => DossierStatus::Open,
            1 => DossierStatus::Paused { since },
            2 => DossierStatus::Resolved { rated: false },
            3 => DossierStatus::Resolved { rated: true },
            4 => DossierStatus::Withdrawn,
            _ => return Err(format!("unknown dossier status {tag}")),
        };
        model.dossiers.insert(
            id,
            Dossier {
                agency,
                received_at,
                last_at,
                status,
            },
        );
    }
    for _ in 0..input.count()? {
        let year = u16::from_le_bytes(input.take(2)?.try_into().expect("2 bytes"));
        model.ict.insert((year, input.text()?));
    }
    if !input.0.is_empty() {
        return Err("trailing bytes in the snapshot".into());
    }
    Ok(())
}

struct Writer(Vec<u8>);

impl Writer {
    fn count(&mut self, count: usize) {
        self.0.extend_from_slice(&(count as u64).to_le_bytes());
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
            return Err("the snapshot is truncated".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
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

    fn optional_text(&mut self) -> Result<Option<Box<str>>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => self.text().map(Some),
        }
    }
}

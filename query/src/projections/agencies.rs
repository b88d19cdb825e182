//! `agencies`: one row per agency, as registered.

use super::columns::{batch, optional_strings, schema, string_at, strings, Columns};
use super::tables::{sorted, Tables};
use chiso_ingest::{AgencyKind, AgencyRegistered};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::sync::{Arc, LazyLock};

/// An agency as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Agency {
    /// Its code, interned: what a dossier row of it holds.
    pub code: Arc<str>,
    pub name: String,
    pub kind: AgencyKind,
    pub parent: Option<String>,
    pub province: Arc<str>,
}

/// `agencies`.
pub static AGENCIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("code", Utf8, false),
        ("name", Utf8, false),
        ("kind", Utf8, false),
        ("parent", Utf8, true),
        ("province", Utf8, false),
    ])
});

impl Tables {
    pub(super) fn register_agency(&mut self, e: AgencyRegistered) {
        let agency = Agency {
            code: self.intern(&e.code),
            name: e.name,
            kind: e.kind,
            parent: e.parent,
            province: self.intern(&e.province),
        };
        self.agencies.insert(e.code, agency);
        self.dirty.insert(super::Partition::Agencies);
    }

    /// The `agencies` table.
    pub fn agencies_batch(&self) -> RecordBatch {
        let rows = sorted(&self.agencies);
        let values = || rows.iter().map(|(_, a)| a);
        batch(
            &AGENCIES,
            vec![
                strings(rows.iter().map(|(code, _)| code.as_str())),
                strings(values().map(|a| a.name.as_str())),
                strings(values().map(|a| a.kind.as_str())),
                optional_strings(values().map(|a| a.parent.as_deref())),
                strings(values().map(|a| &*a.province)),
            ],
        )
    }

    pub(super) fn restore_agencies(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, name, kind) = (c.strings("code")?, c.strings("name")?, c.strings("kind")?);
        let (parent, province) = (c.strings("parent")?, c.strings("province")?);
        for row in 0..batch.num_rows() {
            let agency = Agency {
                code: self.intern(code.value(row)),
                name: name.value(row).to_owned(),
                kind: kind.value(row).parse()?,
                parent: string_at(parent, row).map(str::to_owned),
                province: self.intern(province.value(row)),
            };
            self.agencies.insert(code.value(row).to_owned(), agency);
        }
        Ok(())
    }

    /// The province of a registered agency.
    pub fn province_of(&self, agency: &str) -> Option<&Arc<str>> {
        self.agencies.get(agency).map(|a| &a.province)
    }
}

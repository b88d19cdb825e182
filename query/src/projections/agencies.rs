//! `agencies`: one row per agency, its current state and when it existed; its earlier states
//! (names, parents, provinces before a renaming or a move) kept beside it.

use super::columns::{
    batch, optional, optional_strings, schema, string_at, strings, times, timestamp, Columns,
};
use super::tables::{sorted, Tables};
use crate::local_time::micros;
use chiso_ingest::{AgencyKind, AgencyRegistered, DomainEvent};
use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};

/// An agency: its current state, and what it was before each change.
#[derive(Debug, Clone, PartialEq)]
pub struct Agency {
    /// Its code, interned: what a dossier row of it holds.
    pub code: Arc<str>,
    pub name: String,
    pub kind: AgencyKind,
    pub parent: Option<String>,
    pub province: Arc<str>,
    /// When it came into being (µs; `None`: before the records).
    pub valid_from: Option<i64>,
    /// When it ceased to exist: merged or dissolved (µs).
    pub valid_to: Option<i64>,
    /// The agency it was merged into.
    pub successor: Option<String>,
    /// Its earlier states, oldest first.
    pub earlier: Vec<Earlier>,
}

/// What an agency was until a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Earlier {
    /// The first moment it was no longer so (µs).
    pub until: i64,
    pub name: String,
    pub parent: Option<String>,
    pub province: Arc<str>,
}

impl Agency {
    /// Whether it existed at `at` (µs).
    pub fn exists_at(&self, at: i64) -> bool {
        self.valid_from.is_none_or(|from| from <= at) && self.valid_to.is_none_or(|to| at < to)
    }

    /// Its name, parent and province at `at` (µs).
    pub fn at(&self, at: i64) -> (&str, Option<&str>, &Arc<str>) {
        match self.earlier.iter().find(|e| at < e.until) {
            Some(e) => (&e.name, e.parent.as_deref(), &e.province),
            None => (&self.name, self.parent.as_deref(), &self.province),
        }
    }

    /// Keeps the current state as an earlier one, until `at`.
    fn keep_until(&mut self, at: i64) {
        self.earlier.push(Earlier {
            until: at,
            name: self.name.clone(),
            parent: self.parent.clone(),
            province: self.province.clone(),
        });
    }
}

/// `agencies`: the current state, and when each agency existed.
pub static AGENCIES: LazyLock<SchemaRef> = LazyLock::new(|| schema(&agency_fields(false)));

/// `agencies` as stored: with each agency's successor and earlier states.
pub static STORED: LazyLock<SchemaRef> = LazyLock::new(|| schema(&agency_fields(true)));

fn agency_fields(stored: bool) -> Vec<(&'static str, DataType, bool)> {
    use DataType::*;
    let mut fields = vec![
        ("code", Utf8, false),
        ("name", Utf8, false),
        ("kind", Utf8, false),
        ("parent", Utf8, true),
        ("province", Utf8, false),
        ("valid_from", timestamp(), true),
        ("valid_to", timestamp(), true),
    ];
    if stored {
        fields.extend([("successor", Utf8, true), ("earlier", Utf8, true)]);
    }
    fields
}

impl Tables {
    pub(super) fn register_agency(&mut self, e: AgencyRegistered) {
        let agency = Agency {
            code: self.intern(&e.code),
            name: e.name,
            kind: e.kind,
            parent: e.parent,
            province: self.intern(&e.province),
            valid_from: e.at.map(|at| micros(&at.0)),
            valid_to: None,
            successor: None,
            earlier: Vec::new(),
        };
        self.agencies.insert(e.code, agency);
        self.dirty.insert(super::Partition::Agencies);
    }

    /// A renaming, move, merger or dissolution of agency `code`. A move gives the agency and
    /// every agency below it the new parent's province.
    pub(super) fn reorganise(&mut self, code: &str, event: DomainEvent) {
        use DomainEvent as E;
        let Some(agency) = self.agencies.get_mut(code) else {
            return;
        };
        match event {
            E::AgencyRenamed(e) => {
                agency.keep_until(micros(&e.at.0));
                agency.name = e.name;
            }
            E::AgencyMerged(e) => {
                agency.valid_to = Some(micros(&e.at.0));
                agency.successor = Some(e.into);
            }
            E::AgencyDissolved(e) => agency.valid_to = Some(micros(&e.at.0)),
            E::AgencyMoved(e) => {
                let at = micros(&e.at.0);
                agency.keep_until(at);
                agency.parent = Some(e.parent.clone());
                let province = self.agencies.get(&e.parent).map(|p| p.province.clone());
                if let Some(province) = province {
                    for code in self.subtree(code) {
                        let agency = self.agencies.get_mut(&code).expect("in the subtree");
                        if agency.province != province {
                            if agency.earlier.last().is_none_or(|e| e.until != at) {
                                agency.keep_until(at);
                            }
                            agency.province = province.clone();
                        }
                    }
                }
            }
            _ => return,
        }
        self.dirty.insert(super::Partition::Agencies);
    }

    /// `code` and every agency still existing below it.
    fn subtree(&self, code: &str) -> Vec<String> {
        let mut found = vec![code.to_owned()];
        let mut next = 0;
        while next < found.len() {
            let parent = found[next].clone();
            found.extend(
                self.agencies
                    .iter()
                    .filter(|(_, a)| a.valid_to.is_none() && a.parent.as_deref() == Some(&parent))
                    .map(|(code, _)| code.clone()),
            );
            next += 1;
        }
        found
    }

    /// The `agencies` table.
    pub fn agencies_batch(&self) -> RecordBatch {
        self.agencies_rows(false)
    }

    /// The `agencies` segment.
    pub fn agencies_segment(&self) -> RecordBatch {
        self.agencies_rows(true)
    }

    fn agencies_rows(&self, stored: bool) -> RecordBatch {
        let rows = sorted(&self.agencies);
        let values = || rows.iter().map(|(_, a)| a);
        let mut columns = vec![
            strings(rows.iter().map(|(code, _)| code.as_str())),
            strings(values().map(|a| a.name.as_str())),
            strings(values().map(|a| a.kind.as_str())),
            optional_strings(values().map(|a| a.parent.as_deref())),
            strings(values().map(|a| &*a.province)),
            times(values().map(|a| a.valid_from)),
            times(values().map(|a| a.valid_to)),
        ];
        if !stored {
            return batch(&AGENCIES, columns);
        }
        let earlier: Vec<Option<String>> = values()
            .map(|a| {
                let json = serde_json::to_string(&a.earlier).expect("earlier states serialise");
                (!a.earlier.is_empty()).then_some(json)
            })
            .collect();
        columns.push(optional_strings(values().map(|a| a.successor.as_deref())));
        columns.push(optional_strings(earlier.iter().map(Option::as_deref)));
        batch(&STORED, columns)
    }

    pub(super) fn restore_agencies(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = Columns(batch);
        let (code, name, kind) = (c.strings("code")?, c.strings("name")?, c.strings("kind")?);
        let (parent, province) = (c.strings("parent")?, c.strings("province")?);
        // Segments written before agencies had a history have none of these.
        let (successor, earlier) = (
            c.optional_strings("successor")?,
            c.optional_strings("earlier")?,
        );
        let valid = |name: &str| match batch.column_by_name(name) {
            Some(_) => c.times(name).map(Some),
            None => Ok(None),
        };
        let (valid_from, valid_to) = (valid("valid_from")?, valid("valid_to")?);
        let time_at = |times: Option<&TimestampMicrosecondArray>, row: usize| {
            times.and_then(|t| optional(t, row, |i| t.value(i)))
        };
        for row in 0..batch.num_rows() {
            let earlier: Vec<Earlier> = match earlier.and_then(|e| string_at(e, row)) {
                Some(json) => serde_json::from_str(json).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            let agency = Agency {
                code: self.intern(code.value(row)),
                name: name.value(row).to_owned(),
                kind: kind.value(row).parse()?,
                parent: string_at(parent, row).map(str::to_owned),
                province: self.intern(province.value(row)),
                valid_from: time_at(valid_from, row),
                valid_to: time_at(valid_to, row),
                successor: successor.and_then(|s| string_at(s, row)).map(str::to_owned),
                earlier: earlier
                    .into_iter()
                    .map(|e| Earlier {
                        province: self.intern(&e.province),
                        ..e
                    })
                    .collect(),
            };
            self.agencies.insert(code.value(row).to_owned(), agency);
        }
        Ok(())
    }

    /// The province of a registered agency.
    pub fn province_of(&self, agency: &str) -> Option<&Arc<str>> {
        self.agencies.get(agency).map(|a| &a.province)
    }

    /// The province a registered agency was in at `at` (µs).
    pub fn province_at(&self, agency: &str, at: i64) -> Option<&Arc<str>> {
        self.agencies.get(agency).map(|a| a.at(at).2)
    }
}

//! Rebuilding, from the log, only the partitions whose segments are damaged or missing.
//!
//! Scratch tables fold the log up to the checkpoint, keeping what lands in a damaged
//! partition: every event of the small tables (what a dossier's receipt reads of its agency
//! and service is their state at that moment), every dossier received in a damaged month of
//! `dossiers` or `agency_daily`, and — for a resolution or withdrawal counted on a damaged
//! month of `agency_daily` — the dossier it closes, read back from its own stream as it was
//! just before. Every other event passes by unfolded: a damaged month costs one read of the
//! log and that month's memory, not a rebuild of every table.

use super::dossiers::{DossierChange, FoldError, SealedRows};
use super::tables::{Decoded, Tables};
use super::Partition;
use crate::local_time::{local_day, local_month, micros, month_of_day, MonthKey};
use chiso_ingest::DomainEvent;
use std::collections::BTreeSet;

/// The scratch fold of the damaged partitions.
pub struct Repair<'a> {
    damaged: &'a BTreeSet<Partition>,
    scratch: Tables,
    history: &'a dyn SealedRows,
}

impl<'a> Repair<'a> {
    /// A repair of `damaged`, reading dossiers' earlier events through `history`.
    pub fn new(damaged: &'a BTreeSet<Partition>, history: &'a dyn SealedRows) -> Self {
        Self {
            damaged,
            scratch: Tables::default(),
            history,
        }
    }

    /// Folds the next events of the log (from position 0 on, in order).
    pub fn fold(&mut self, batch: Decoded) -> Result<(), FoldError> {
        batch.try_for_each(|position, id, event| {
            let Some(event) = event else {
                return Ok(());
            };
            if self.wanted(id, &event, position)? {
                self.scratch
                    .apply(id, event, position)
                    .map_err(|FoldError(reason)| {
                        FoldError(format!("position {position}: {reason}"))
                    })?;
            }
            Ok(())
        })
    }

    fn receipt_wanted(&self, month: MonthKey) -> bool {
        self.damaged.contains(&Partition::Dossiers(month))
            || self.damaged.contains(&Partition::AgencyDaily(month))
    }

    /// Whether the event at `position` of the stream whose id is `id` lands in a damaged
    /// partition; a dossier it closes on a damaged day is brought in first.
    fn wanted(&mut self, id: &str, event: &DomainEvent, position: u64) -> Result<bool, FoldError> {
        if let DomainEvent::DossierReceived(e) = event {
            return Ok(self.receipt_wanted(local_month(micros(&e.received_at.0))));
        }
        let Some(change) = DossierChange::of(event) else {
            return Ok(true);
        };
        if self.scratch.dossiers.holds(id) {
            return Ok(true);
        }
        let counted_on = match change {
            DossierChange::Resolved(at, _) | DossierChange::Withdrawn(at) => {
                month_of_day(local_day(at))
            }
            _ => return Ok(false),
        };
        if !self.damaged.contains(&Partition::AgencyDaily(counted_on)) {
            return Ok(false);
        }
        let events = self.history.history(id, position).map_err(FoldError)?;
        let Some(dossier) = self.scratch.replayed(id, events) else {
            return Ok(false);
        };
        // In memory without counting its receipt again: that day is not damaged.
        self.scratch
            .restore_dossier(local_month(dossier.received_at), dossier);
        Ok(true)
    }

    /// Moves the rebuilt partitions into `tables`, which hold none of them
    /// ([`Tables::forget`]).
    pub fn install(self, tables: &mut Tables) {
        let mut scratch = self.scratch;
        for partition in self.damaged {
            match *partition {
                Partition::Agencies => tables.agencies = std::mem::take(&mut scratch.agencies),
                Partition::Services => tables.services = std::mem::take(&mut scratch.services),
                Partition::IctIndex => tables.ict_index = std::mem::take(&mut scratch.ict_index),
                Partition::Rankings => tables.rankings = std::mem::take(&mut scratch.rankings),
                Partition::Calendar => {
                    tables.declarations = std::mem::take(&mut scratch.declarations);
                }
                Partition::Dossiers(month) => {
                    let rows = scratch.dossiers.forget(month).map(|mut m| m.take_rows());
                    for mut row in rows.into_iter().flatten() {
                        row.agency = tables.intern(&row.agency);
                        row.service = tables.intern(&row.service);
                        row.province = row.province.map(|p| tables.intern(&p));
                        tables.restore_dossier(month, row);
                    }
                }
                Partition::AgencyDaily(month) => {
                    let days = scratch.daily.remove(&month).unwrap_or_default();
                    for ((day, agency), counts) in days {
                        let agency = tables.intern(&agency);
                        let month_total = tables.monthly.entry(month).or_default();
                        month_total.entry(agency.clone()).or_default().add(&counts);
                        tables
                            .daily
                            .entry(month)
                            .or_default()
                            .insert((day, agency), counts);
                    }
                }
            }
        }
    }
}

impl Tables {
    /// Drops what a partition's segments put back, before it is rebuilt.
    pub fn forget(&mut self, partition: Partition) {
        match partition {
            Partition::Agencies => self.agencies.clear(),
            Partition::Services => self.services.clear(),
            Partition::IctIndex => self.ict_index.clear(),
            Partition::Rankings => self.rankings.clear(),
            Partition::Calendar => self.declarations.clear(),
            Partition::Dossiers(month) => {
                self.dossiers.forget(month);
            }
            Partition::AgencyDaily(month) => {
                self.daily.remove(&month);
                self.monthly.remove(&month);
                self.cold_daily.remove(&month);
            }
        }
    }
}

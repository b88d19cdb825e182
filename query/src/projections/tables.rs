//! The fold: every table's state, changed event by event in log order. Each table's own part
//! of it lives in that table's module.

use super::agencies::Agency;
use super::agency_daily::DayCounts;
use super::dossiers::{DossierChange, Dossiers, FoldError};
use super::published::Ranking;
use super::services::Service;
use super::Partition;
use crate::local_time::{micros, MonthKey};
use chiso_ingest::{decode_stored, DomainEvent};
use chiso_store::EventRef;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Every table's state and the next position to fold.
#[derive(Debug, Default)]
pub struct Tables {
    pub next_position: u64,
    /// Looked up for every dossier received: hashed (tables list them sorted, [`sorted`]).
    pub agencies: Map<String, Agency>,
    pub services: Map<String, Service>,
    pub dossiers: Dossiers,
    /// Counters by month, then by local day and agency (hashed: every event counts on one).
    pub daily: BTreeMap<MonthKey, Map<(i32, Arc<str>), DayCounts>>,
    /// `daily` summed by month and agency (for reports over long periods).
    pub monthly: BTreeMap<MonthKey, Map<Arc<str>, DayCounts>>,
    /// Months of `agency_daily` kept only in their saved segment (settled months: their
    /// totals stay in `monthly`); a late count brings one back into `daily` first.
    pub cold_daily: BTreeMap<MonthKey, ColdMonth>,
    pub ict_index: BTreeMap<(i32, String), (i32, Option<f64>)>,
    pub rankings: BTreeMap<(String, String, String), Ranking>,
    /// The calendar's announcements with their stream's year, in log order.
    pub declarations: Vec<(i32, DomainEvent)>,
    pub(super) names: Interner,
    /// Partitions changed since the last checkpoint (and whose cached batches are stale).
    pub dirty: BTreeSet<Partition>,
    /// Events that could not be decoded (folded as nothing, counted).
    pub skipped: u64,
}

impl Tables {
    /// Shares one allocation per distinct agency, service or province code.
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        self.names.intern(text)
    }

    /// Moves in what `part` holds: tables put back apart, on a loader thread, from segments
    /// of partitions this one does not hold yet (a month's totals it holds are added to; an
    /// entry of another table under a key it holds replaces it; announcements follow).
    pub fn absorb(&mut self, part: Tables) {
        let Tables {
            next_position: _,
            agencies,
            services,
            dossiers,
            daily,
            monthly,
            cold_daily,
            ict_index,
            rankings,
            declarations,
            names,
            dirty: _,
            skipped: _,
        } = part;
        debug_assert_eq!(dossiers.in_memory(), 0, "dossiers are put back by chunk");
        absorb_map(&mut self.agencies, agencies);
        absorb_map(&mut self.services, services);
        for (month, days) in daily {
            absorb_map(self.daily.entry(month).or_default(), days);
        }
        for (month, totals) in monthly {
            let into = self.monthly.entry(month).or_default();
            if into.is_empty() {
                *into = totals;
            } else {
                for (agency, counts) in totals {
                    into.entry(agency).or_default().add(&counts);
                }
            }
        }
        self.cold_daily.extend(cold_daily);
        self.ict_index.extend(ict_index);
        self.rankings.extend(rankings);
        self.declarations.extend(declarations);
        self.names.adopt(names);
    }

    /// Shares from now on the names `other` interned (rows made apart from the tables, on
    /// another thread, keep theirs).
    pub fn adopt_names(&mut self, other: Interner) {
        self.names.adopt(other);
    }

    /// Folds a decoded batch, whose first event must be at the next position. Events the
    /// catalog cannot read (a log written without it) are counted and folded as nothing. On an
    /// error the events before the failing one are folded, and the position is at it.
    pub fn fold(&mut self, batch: Decoded) -> Result<(), FoldError> {
        batch.try_for_each(|position, id, event| {
            debug_assert_eq!(position, self.next_position);
            match event {
                Some(event) => self
                    .apply(id, event, position)
                    .map_err(|FoldError(reason)| {
                        FoldError(format!("position {position}: {reason}"))
                    })?,
                None => self.skipped += 1,
            }
            self.next_position = position + 1;
            Ok(())
        })
    }

    /// Applies a decoded event of the stream whose id (after the category) is `id`.
    pub fn apply(&mut self, id: &str, event: DomainEvent, position: u64) -> Result<(), FoldError> {
        use DomainEvent as E;
        if let Some(change) = DossierChange::of(&event) {
            return self.change_dossier(id, change, position);
        }
        match event {
            E::AgencyRegistered(e) => self.register_agency(e),
            event @ (E::AgencyRenamed(_)
            | E::AgencyMoved(_)
            | E::AgencyMerged(_)
            | E::AgencyDissolved(_)) => self.reorganise(id, event),
            E::ServiceLaunched(e) => self.launch_service(e),
            E::ServiceLevelChanged(e) => self.change_service(id, micros(&e.at.0), Some(e.level)),
            E::ServiceWithdrawn(e) => self.change_service(id, micros(&e.at.0), None),
            E::DossierReceived(e) => self.receive_dossier(id, &e),
            E::DossierCorrected(e) => self.correct_dossier(id, &e, position)?,
            E::DossierVoided(_) => self.void_dossier(id, position)?,
            E::IctIndexPublished(e) => {
                self.ict_index.insert(
                    (i32::from(e.year), e.province),
                    (i32::from(e.rank), e.score),
                );
                self.dirty.insert(Partition::IctIndex);
            }
            E::RankingPublished(e) => {
                let entries = e
                    .entries
                    .into_iter()
                    .map(|entry| (entry.agency, entry.value, entry.rank))
                    .collect();
                let key = (e.month, e.scope, e.metric.as_str().to_owned());
                self.rankings.insert(key, Ranking { position, entries });
                self.dirty.insert(Partition::Rankings);
            }
            event @ (E::HolidayDeclared(_) | E::WorkdaySwapped(_)) => self.declare(id, event),
            _ => {}
        }
        Ok(())
    }

    /// How many dossiers the tables hold, in memory and sealed.
    pub fn dossier_count(&self) -> u64 {
        self.dossiers.count()
    }

    /// Restores the rows of a segment of `table` (`month` for `agency_daily`; a chunk of
    /// `dossiers` is made rows apart, [`Tables::restore_dossier_rows`]).
    pub fn restore(
        &mut self,
        table: &str,
        month: Option<MonthKey>,
        batch: &datafusion::arrow::array::RecordBatch,
    ) -> Result<(), String> {
        match (table, month) {
            ("agencies", _) => self.restore_agencies(batch),
            ("services", _) => self.restore_services(batch),
            ("service_levels", _) => self.restore_service_levels(batch),
            ("ict_index", _) => self.restore_ict(batch),
            ("rankings", _) => self.restore_rankings(batch),
            ("calendar", _) => self.restore_declarations(batch),
            ("agency_daily", Some(month)) => self.restore_daily(month, batch, true),
            _ => Err(format!("no table {table} to restore")),
        }
    }
}

/// `from`'s entries into `into`: moved whole when `into` is empty.
fn absorb_map<K: std::hash::Hash + Eq, V>(into: &mut Map<K, V>, from: Map<K, V>) {
    if into.is_empty() {
        *into = from;
    } else {
        into.extend(from);
    }
}

/// One allocation per distinct name (agency, service, province code) shared by every row.
#[derive(Debug, Default)]
pub struct Interner(HashSet<Arc<str>, foldhash::fast::RandomState>);

impl Interner {
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.0.get(text) {
            return found.clone();
        }
        let name: Arc<str> = text.into();
        self.0.insert(name.clone());
        name
    }

    /// Takes in the names of `other` this one lacks (a name it has keeps its allocation).
    fn adopt(&mut self, other: Interner) {
        self.0.extend(other.0);
    }
}

/// A month of `agency_daily` whose rows are only in its segment file.
#[derive(Debug, Clone)]
pub struct ColdMonth {
    /// The segment's file, shared with every scan reading it.
    pub file: Arc<str>,
    pub rows: u64,
    pub bytes: u64,
}

impl ColdMonth {
    /// The segment as a file to scan.
    pub fn base(&self) -> super::sealed::SealedBase {
        super::sealed::SealedBase::plain(self.file.clone(), self.rows, self.bytes)
    }
}

/// The entries of a hashed table in the order of their keys.
pub fn sorted<V>(map: &Map<String, V>) -> Vec<(&String, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Events decoded for the fold: the JSON read outside the tables' lock, or on a thread of its
/// own during a replay, so the fold itself only applies them.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The ids of the events' streams (after the category), one after another.
    ids: String,
    /// Position, end of its id in `ids`, and the event (`None`: not one the catalog reads).
    events: Vec<(u64, usize, Option<DomainEvent>)>,
}

impl Decoded {
    pub fn with_capacity(events: usize) -> Self {
        Self {
            ids: String::with_capacity(events * 40),
            events: Vec::with_capacity(events),
        }
    }

    /// Decodes one more event.
    pub fn push(&mut self, event: EventRef<'_>) {
        let id = event.stream.split_once('-').map_or("", |(_, id)| id);
        self.ids.push_str(id);
        let decoded = decode_stored(event.event_type, event.data, event.metadata).ok();
        self.events.push((event.position, self.ids.len(), decoded));
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Calls `f` with each event in order — its position, its stream's id and the event —
    /// until it fails.
    pub fn try_for_each<E>(
        self,
        mut f: impl FnMut(u64, &str, Option<DomainEvent>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        for (position, end, event) in self.events {
            f(position, &self.ids[start..end], event)?;
            start = end;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Each event the catalog reads, with its position and its stream's id.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &str, &DomainEvent)> {
        let starts = std::iter::once(0).chain(self.events.iter().map(|(_, end, _)| *end));
        self.events
            .iter()
            .zip(starts)
            .filter_map(|((position, end, event), start)| {
                Some((*position, &self.ids[start..*end], event.as_ref()?))
            })
    }

    /// The position of the first event.
    pub fn start(&self) -> Option<u64> {
        self.events.first().map(|(position, _, _)| *position)
    }

    /// The events the catalog reads.
    pub fn events(&self) -> impl Iterator<Item = &DomainEvent> {
        self.events
            .iter()
            .filter_map(|(_, _, event)| event.as_ref())
    }

    /// The position after the last event.
    pub fn end(&self) -> Option<u64> {
        self.events.last().map(|(position, _, _)| position + 1)
    }
}

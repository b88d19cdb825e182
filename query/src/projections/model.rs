//! The fold: every table's state, changed event by event in log order.

use crate::local_time::{local_day, local_month, micros, month_of_day, MonthKey};
use chiso_ingest::{decode_stored, Channel, DomainEvent, Outcome};
use chiso_store::RecordedEvent;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An agency as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Agency {
    pub name: String,
    pub kind: &'static str,
    pub parent: Option<String>,
    pub province: Arc<str>,
}

/// A service's level from `from` until `to` (open when current).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSpan {
    pub level: u8,
    pub from: i64,
    pub to: Option<i64>,
}

/// A service, current state and level history.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub agency: Arc<str>,
    pub name: String,
    pub field: String,
    pub level: u8,
    pub launched_at: i64,
    pub withdrawn_at: Option<i64>,
    pub spans: Vec<LevelSpan>,
}

impl Service {
    /// The level in effect at `at`; the first level before launch.
    pub fn level_at(&self, at: i64) -> u8 {
        self.spans
            .iter()
            .rev()
            .find(|span| span.from <= at)
            .or(self.spans.first())
            .map_or(self.level, |span| span.level)
    }
}

/// A pause for supplements: from `0` until `1` (still paused when `None`).
pub type Pause = (i64, Option<i64>);

/// One dossier. Times are µs since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Dossier {
    pub id: Arc<str>,
    pub agency: Arc<str>,
    pub service: Arc<str>,
    pub service_level: Option<u8>,
    pub channel: Channel,
    pub received_at: i64,
    pub due_at: i64,
    pub resolved_at: Option<i64>,
    pub withdrawn_at: Option<i64>,
    pub outcome: Option<Outcome>,
    pub pauses: Vec<Pause>,
    pub paid_online: Option<bool>,
    pub rating: Option<u8>,
}

/// Early, on time or late (Biểu 06).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeliness {
    Early,
    OnTime,
    Late,
}

impl Timeliness {
    pub fn name(self) -> &'static str {
        match self {
            Self::Early => "early",
            Self::OnTime => "on_time",
            Self::Late => "late",
        }
    }
}

impl Dossier {
    /// When it stopped being open, if it did.
    pub fn closed_at(&self) -> Option<i64> {
        self.resolved_at.or(self.withdrawn_at)
    }

    /// Seconds spent paused up to `as_of` (an open pause counts up to that moment).
    pub fn paused_micros(&self, as_of: i64) -> i64 {
        self.pauses
            .iter()
            .filter(|(start, _)| *start < as_of)
            .map(|&(start, end)| end.unwrap_or(as_of).min(as_of) - start)
            .sum()
    }

    /// `due_at` moved by the paused spans up to `as_of`.
    pub fn effective_due_at(&self, as_of: i64) -> i64 {
        self.due_at + self.paused_micros(as_of)
    }

    /// Compares the local date of resolution with the local date of the effective due time.
    pub fn timeliness(&self) -> Option<Timeliness> {
        let resolved = self.resolved_at?;
        let due_day = local_day(self.effective_due_at(resolved));
        Some(match local_day(resolved).cmp(&due_day) {
            std::cmp::Ordering::Less => Timeliness::Early,
            std::cmp::Ordering::Equal => Timeliness::OnTime,
            std::cmp::Ordering::Greater => Timeliness::Late,
        })
    }

    pub fn is_paused(&self) -> bool {
        self.pauses.last().is_some_and(|(_, end)| end.is_none())
    }

    fn close_pause(&mut self, at: i64) {
        if let Some((_, end @ None)) = self.pauses.last_mut() {
            *end = Some(at);
        }
    }
}

/// Counters of one agency on one local day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    pub received: i64,
    pub received_online: i64,
    pub resolved: i64,
    pub resolved_early: i64,
    pub resolved_on_time: i64,
    pub resolved_late: i64,
    pub withdrawn: i64,
}

/// One published ranking (the latest for its month, scope and metric).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub position: u64,
    pub entries: Vec<(String, f64, u32)>,
}

/// A month of dossiers, by received time.
#[derive(Debug)]
pub struct DossierPartition {
    pub rows: Vec<Dossier>,
    /// Rows still open.
    open: u32,
    /// The latest time a row closed.
    last_closed: i64,
}

impl DossierPartition {
    /// When its last dossier closed, or `i64::MAX` while one is open: a period that starts
    /// after it owes this partition nothing (no carry-over, no activity).
    pub fn settled_at(&self) -> i64 {
        if self.open > 0 {
            i64::MAX
        } else {
            self.last_closed
        }
    }

    fn push(&mut self, dossier: Dossier) -> u32 {
        match dossier.closed_at() {
            Some(at) => self.last_closed = self.last_closed.max(at),
            None => self.open += 1,
        }
        self.rows.push(dossier);
        self.rows.len() as u32 - 1
    }
}

/// Every table's state and the next position to fold.
#[derive(Debug, Default)]
pub struct Tables {
    pub next_position: u64,
    pub agencies: BTreeMap<String, Agency>,
    pub services: BTreeMap<String, Service>,
    pub dossiers: BTreeMap<MonthKey, DossierPartition>,
    dossier_index: Map<Arc<str>, (MonthKey, u32)>,
    pub daily: BTreeMap<MonthKey, BTreeMap<(i32, Arc<str>), DayCounts>>,
    pub ict_index: BTreeMap<(i32, String), (i32, Option<f64>)>,
    pub rankings: BTreeMap<(String, String, String), Ranking>,
    names: HashSet<Arc<str>>,
    /// Partitions changed since the last checkpoint (and whose cached batches are stale).
    pub dirty: BTreeSet<Partition>,
    /// Events that could not be decoded (folded as nothing, counted).
    pub skipped: u64,
    /// An agency was registered: cached rows that show agencies' provinces are stale.
    pub agencies_changed: bool,
}

/// A unit of storage and caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    Agencies,
    Services,
    IctIndex,
    Rankings,
    Dossiers(MonthKey),
    AgencyDaily(MonthKey),
}

impl Tables {
    /// Shares one allocation per distinct agency or service code.
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.names.get(text) {
            return found.clone();
        }
        let name: Arc<str> = text.into();
        self.names.insert(name.clone());
        name
    }

    /// Folds one event; events the catalog cannot read (a log written without it) are skipped.
    pub fn fold(&mut self, event: &RecordedEvent) {
        debug_assert_eq!(event.position, self.next_position);
        self.next_position = event.position + 1;
        let Ok(decoded) = decode_stored(&event.event_type, &event.data) else {
            self.skipped += 1;
            return;
        };
        let id = event.stream.split_once('-').map_or("", |(_, id)| id);
        self.apply(id, decoded, event.position);
    }

    /// Applies a decoded event of the stream whose id (after the category) is `id`.
    pub fn apply(&mut self, id: &str, event: DomainEvent, position: u64) {
        use DomainEvent as E;
        match event {
            E::AgencyRegistered(e) => {
                let province = self.intern(&e.province);
                let agency = Agency {
                    name: e.name,
                    kind: agency_kind(e.kind),
                    parent: e.parent,
                    province,
                };
                self.agencies.insert(e.code, agency);
                self.dirty.insert(Partition::Agencies);
                // Dossier rows show the agency's province.
                let months: Vec<_> = self.dossiers.keys().copied().collect();
                self.dirty
                    .extend(months.into_iter().map(Partition::Dossiers));
            }
            E::ServiceLaunched(e) => {
                let at = micros(&e.at.0);
                let service = Service {
                    agency: self.intern(&e.agency),
                    name: e.name,
                    field: e.field,
                    level: e.level,
                    launched_at: at,
                    withdrawn_at: None,
                    spans: vec![LevelSpan {
                        level: e.level,
                        from: at,
                        to: None,
                    }],
                };
                self.services.insert(e.code, service);
                self.dirty.insert(Partition::Services);
            }
            E::ServiceLevelChanged(e) => self.change_service(id, micros(&e.at.0), Some(e.level)),
            E::ServiceWithdrawn(e) => self.change_service(id, micros(&e.at.0), None),
            E::DossierReceived(e) => {
                let received_at = micros(&e.received_at.0);
                let service_level = self
                    .services
                    .get(&e.service)
                    .map(|service| service.level_at(received_at));
                let dossier = Dossier {
                    id: id.into(),
                    agency: self.intern(&e.agency),
                    service: self.intern(&e.service),
                    service_level,
                    channel: e.channel,
                    received_at,
                    due_at: micros(&e.due_at.0),
                    resolved_at: None,
                    withdrawn_at: None,
                    outcome: None,
                    pauses: Vec::new(),
                    paid_online: None,
                    rating: None,
                };
                self.insert_dossier(dossier);
            }
            E::DossierPaused(e) => {
                let at = micros(&e.at.0);
                self.change_dossier(id, |d| d.pauses.push((at, None)));
            }
            E::DossierResumed(e) => {
                let at = micros(&e.at.0);
                self.change_dossier(id, |d| d.close_pause(at));
            }
            E::DossierResolved(e) => {
                let at = micros(&e.at.0);
                let resolved = self.change_dossier(id, |d| {
                    d.close_pause(at);
                    d.resolved_at = Some(at);
                    d.outcome = Some(e.outcome);
                    (d.agency.clone(), d.timeliness())
                });
                if let Some((agency, Some(timeliness))) = resolved {
                    let day = self.day_counts(local_day(at), agency);
                    day.resolved += 1;
                    match timeliness {
                        Timeliness::Early => day.resolved_early += 1,
                        Timeliness::OnTime => day.resolved_on_time += 1,
                        Timeliness::Late => day.resolved_late += 1,
                    }
                }
            }
            E::DossierWithdrawn(e) => {
                let at = micros(&e.at.0);
                let agency = self.change_dossier(id, |d| {
                    d.close_pause(at);
                    d.withdrawn_at = Some(at);
                    d.agency.clone()
                });
                if let Some(agency) = agency {
                    self.day_counts(local_day(at), agency).withdrawn += 1;
                }
            }
            E::DossierPaid(e) => {
                self.change_dossier(id, |d| {
                    d.paid_online = Some(d.paid_online.unwrap_or(false) || e.online);
                });
            }
            E::DossierRated(e) => {
                self.change_dossier(id, |d| d.rating = Some(e.score));
            }
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
                let key = (e.month, e.scope, metric_name(e.metric).to_owned());
                self.rankings.insert(key, Ranking { position, entries });
                self.dirty.insert(Partition::Rankings);
            }
        }
    }

    /// A level change (`Some`) or a withdrawal (`None`) at `at`.
    fn change_service(&mut self, code: &str, at: i64, level: Option<u8>) {
        let Some(service) = self.services.get_mut(code) else {
            return;
        };
        if let Some(span) = service.spans.last_mut().filter(|s| s.to.is_none()) {
            span.to = Some(at);
        }
        match level {
            Some(level) => {
                service.level = level;
                service.spans.push(LevelSpan {
                    level,
                    from: at,
                    to: None,
                });
            }
            None => service.withdrawn_at = Some(at),
        }
        self.dirty.insert(Partition::Services);
    }

    /// Adds a dossier row to the partition of its local month of receipt.
    pub fn insert_dossier(&mut self, dossier: Dossier) {
        let month = local_month(dossier.received_at);
        let day = local_day(dossier.received_at);
        let (agency, online) = (dossier.agency.clone(), dossier.channel == Channel::Online);
        let id = dossier.id.clone();
        let row = self.partition(month).push(dossier);
        self.dossier_index.insert(id, (month, row));
        self.dirty.insert(Partition::Dossiers(month));
        let counts = self.day_counts(day, agency);
        counts.received += 1;
        counts.received_online += i64::from(online);
    }

    /// Puts back a row loaded from a segment (its counters are in the daily segments).
    pub fn restore_dossier(&mut self, month: MonthKey, dossier: Dossier) {
        let id = dossier.id.clone();
        let row = self.partition(month).push(dossier);
        self.dossier_index.insert(id, (month, row));
    }

    fn partition(&mut self, month: MonthKey) -> &mut DossierPartition {
        self.dossiers
            .entry(month)
            .or_insert_with(|| DossierPartition {
                rows: Vec::new(),
                open: 0,
                last_closed: i64::MIN,
            })
    }

    fn change_dossier<T>(&mut self, id: &str, change: impl FnOnce(&mut Dossier) -> T) -> Option<T> {
        let &(month, row) = self.dossier_index.get(id)?;
        let partition = self.dossiers.get_mut(&month)?;
        let dossier = &mut partition.rows[row as usize];
        let was_open = dossier.closed_at().is_none();
        let changed = change(dossier);
        if let (true, Some(at)) = (was_open, dossier.closed_at()) {
            partition.open -= 1;
            partition.last_closed = partition.last_closed.max(at);
        }
        self.dirty.insert(Partition::Dossiers(month));
        Some(changed)
    }

    fn day_counts(&mut self, day: i32, agency: Arc<str>) -> &mut DayCounts {
        let month = month_of_day(day);
        self.dirty.insert(Partition::AgencyDaily(month));
        self.daily
            .entry(month)
            .or_default()
            .entry((day, agency))
            .or_default()
    }

    /// How many dossiers the tables hold.
    pub fn dossier_count(&self) -> usize {
        self.dossier_index.len()
    }
}

/// The wire name of an agency kind.
pub fn agency_kind(kind: chiso_ingest::AgencyKind) -> &'static str {
    use chiso_ingest::AgencyKind as K;
    match kind {
        K::Ministry => "ministry",
        K::Province => "province",
        K::Department => "department",
        K::Center => "center",
        K::District => "district",
        K::Commune => "commune",
    }
}

/// The wire name of a ranking metric.
pub fn metric_name(metric: chiso_ingest::Metric) -> &'static str {
    use chiso_ingest::Metric as M;
    match metric {
        M::OnTimeRate => "on_time_rate",
        M::OnlineShare => "online_share",
        M::Scorecard => "scorecard",
    }
}

/// The wire name of a channel.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Direct => "direct",
        Channel::Online => "online",
        Channel::Postal => "postal",
    }
}

/// The wire name of an outcome.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
    }
}

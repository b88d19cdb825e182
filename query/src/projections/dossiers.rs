//! `dossiers`: one row per dossier, partitioned by the local month it was received in.
//!
//! A month is *hot* while its rows live in memory. Once sealed ([`super::sealed`]) its closed
//! rows are an immutable Parquet file with every SQL column computed, and only its open rows
//! stay in memory — until the rows in memory pass their budget, when the open rows go to the
//! file too, all but the paused ones ([`Sealing`]) — beside the rows that late events changed
//! (whose sealed copies a deletion vector hides) until the month is compacted. The fold
//! reaches a sealed row again through the log: it replays the dossier's own stream
//! ([`SealedRows`]).

use super::agency_daily::DayCounts;
use super::columns::{
    batch, ints, longs, optional, optional_strings, schema, string_at, strings, times, timestamp,
    Coded, Columns, Names,
};
use super::sealed::{SealedBase, SealedRow};
use super::tables::{Decoded, Map, Tables};
use super::Partition;
use crate::local_time::{local_day, local_month, micros, month_of_day, MonthKey};
use chiso_ingest::{Applicant, Channel, DomainEvent, DossierCorrected, DossierReceived, Outcome};
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

/// A pause for supplements: from `0` until `1` (still paused when `None`).
pub type Pause = (i64, Option<i64>);

/// One dossier. Times are µs since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Dossier {
    pub id: Arc<str>,
    pub agency: Arc<str>,
    /// The agency's province when the dossier was received.
    pub province: Option<Arc<str>>,
    pub service: Arc<str>,
    pub service_level: Option<u8>,
    /// The national procedure code and who applied (`DossierReceived` version 2).
    pub procedure_code: Option<Arc<str>>,
    pub applicant: Option<Applicant>,
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

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Early, Self::OnTime, Self::Late]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// What an event after receipt does to a dossier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DossierChange {
    Paused(i64),
    Resumed(i64),
    Resolved(i64, Outcome),
    Withdrawn(i64),
    Paid { online: bool },
    Rated(u8),
}

impl DossierChange {
    /// The change an event makes, if it is a dossier event after receipt.
    pub fn of(event: &DomainEvent) -> Option<Self> {
        use DomainEvent as E;
        Some(match event {
            E::DossierPaused(e) => Self::Paused(micros(&e.at.0)),
            E::DossierResumed(e) => Self::Resumed(micros(&e.at.0)),
            E::DossierResolved(e) => Self::Resolved(micros(&e.at.0), e.outcome),
            E::DossierWithdrawn(e) => Self::Withdrawn(micros(&e.at.0)),
            E::DossierPaid(e) => Self::Paid { online: e.online },
            E::DossierRated(e) => Self::Rated(e.score),
            _ => return None,
        })
    }
}

impl Dossier {
    /// When it stopped being open, if it did.
    pub fn closed_at(&self) -> Option<i64> {
        self.resolved_at.or(self.withdrawn_at)
    }

    /// µs spent paused up to `as_of` (an open pause counts up to that moment).
    pub fn paused_micros(&self, as_of: i64) -> i64 {
        paused_micros(&self.pauses, as_of)
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

    /// Whether its row changes with the clock alone: an open dossier paused, whose
    /// `paused_seconds` and `effective_due_at` grow until the pause ends.
    pub fn moves_with_clock(&self) -> bool {
        self.closed_at().is_none() && self.is_paused()
    }

    pub fn status(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "resolved"
        } else if self.withdrawn_at.is_some() {
            "withdrawn"
        } else {
            "open"
        }
    }

    /// Applies a change; resolving or withdrawing a paused dossier ends its pause.
    pub fn change(&mut self, change: DossierChange) {
        match change {
            DossierChange::Paused(at) => self.pauses.push((at, None)),
            DossierChange::Resumed(at) => self.close_pause(at),
            DossierChange::Resolved(at, outcome) => {
                self.close_pause(at);
                self.resolved_at = Some(at);
                self.outcome = Some(outcome);
            }
            DossierChange::Withdrawn(at) => {
                self.close_pause(at);
                self.withdrawn_at = Some(at);
            }
            DossierChange::Paid { online } => {
                self.paid_online = Some(self.paid_online.unwrap_or(false) || online);
            }
            DossierChange::Rated(score) => self.rating = Some(score),
        }
    }

    fn close_pause(&mut self, at: i64) {
        if let Some((_, end @ None)) = self.pauses.last_mut() {
            *end = Some(at);
        }
    }

    /// What the dossier counts in `agency_daily`, by local day: its receipt, and its
    /// resolution (by timeliness) or withdrawal — as the fold counts them event by event.
    pub fn counts(&self) -> impl Iterator<Item = (i32, DayCounts)> {
        let receipt = DayCounts::receipt(self.channel == Channel::Online);
        let resolution =
            (self.resolved_at).map(|at| (local_day(at), DayCounts::resolution(self.timeliness())));
        let withdrawal = (self.withdrawn_at).map(|at| (local_day(at), DayCounts::withdrawal()));
        std::iter::once((local_day(self.received_at), receipt))
            .chain(resolution)
            .chain(withdrawal)
    }
}

/// µs paused up to `as_of`.
pub fn paused_micros(pauses: &[Pause], as_of: i64) -> i64 {
    pauses
        .iter()
        .filter(|(start, _)| *start < as_of)
        .map(|&(start, end)| end.unwrap_or(as_of).min(as_of) - start)
        .sum()
}

/// Rows per chunk of a month in memory: the unit of its cached query batches and of its
/// checkpoint segments, so a change rebuilds and rewrites one chunk, not the month.
pub const CHUNK_ROWS: usize = 16_384;

/// A stamp no earlier edit of any chunk has.
fn next_stamp() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STAMPS: AtomicU64 = AtomicU64::new(1);
    STAMPS.fetch_add(1, Ordering::Relaxed)
}

/// One local month of dossiers: every row while hot; once sealed, the rows not in its file.
#[derive(Debug, Default)]
pub struct DossierMonth {
    rows: Vec<Dossier>,
    /// Rows still open.
    open: u32,
    /// Rows open and paused: their clock columns move with time, so they stay in memory.
    paused: u32,
    /// The latest time a row in `rows` closed.
    last_closed: Option<i64>,
    /// When each row closed (`i64::MAX` while open), beside the rows: what a report scans
    /// for the rows open at its end, eight bytes a row instead of a whole row.
    closes: Vec<i64>,
    /// Each row's [`agency_key`], beside `closes`: a report for some provinces passes over the
    /// open rows of the others without reading them.
    agency_keys: Vec<u64>,
    /// Per chunk of [`CHUNK_ROWS`] rows, the stamp of its latest change: a cached batch or
    /// a saved segment built at that stamp is current.
    stamps: Vec<u64>,
    /// The sealed file, once the month is sealed.
    pub sealed: Option<SealedBase>,
    /// While a sealed file of the month is written off the fold's thread (a first sealing or
    /// a compaction): the rows changed since the rows to seal were copied (they stay in
    /// memory, and the file's copy is deleted).
    sealing: Option<Vec<u32>>,
}

/// Which rows of a month a sealing writes to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// The closed rows: only a late event changes them.
    Closed,
    /// Every row but the open and paused ones (whose `paused_seconds` and `effective_due_at`
    /// grow with the clock): past the memory budget open rows leave memory too, and an event
    /// on one brings it back from the log as it does a late event.
    AllButPaused,
}

impl Sealing {
    /// Whether the sealing writes `dossier`.
    pub fn takes(self, dossier: &Dossier) -> bool {
        match self {
            Self::Closed => dossier.closed_at().is_some(),
            Self::AllButPaused => !dossier.moves_with_clock(),
        }
    }
}

/// The rows of a month copied to be sealed: where they are in the month, and the copies.
#[derive(Debug)]
pub struct ToSeal {
    pub taken: Vec<u32>,
    pub rows: Vec<Dossier>,
}

/// What installing a sealed file leaves: the rows it moved out of memory, and the ids of the
/// rows it holds that changed meanwhile (deleted in the file: memory has them).
#[derive(Debug)]
pub struct Sealed {
    pub moved: Vec<Dossier>,
    pub changed: Vec<Arc<str>>,
}

impl DossierMonth {
    /// The rows in memory.
    pub fn rows(&self) -> &[Dossier] {
        &self.rows
    }

    /// The rows in memory that are open at `end`: those open now, and those that closed at
    /// or after it.
    pub fn open_at(&self, end: i64) -> impl Iterator<Item = &Dossier> + '_ {
        self.open_at_of(end, |_| true)
    }

    /// [`DossierMonth::open_at`], of the rows whose [`agency_key`] `key` accepts (a key is a
    /// hash: the caller still checks the row's agency).
    pub fn open_at_of<'a>(
        &'a self,
        end: i64,
        key: impl Fn(u64) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Dossier> + 'a {
        let keyed = self.closes.iter().zip(&self.agency_keys);
        keyed
            .zip(&self.rows)
            .filter(move |((closed, agency), _)| **closed >= end && key(**agency))
            .map(|(_, row)| row)
    }

    /// Row `row`, open until now, closed at `at`.
    fn closed(&mut self, row: usize, at: i64) {
        self.open -= 1;
        self.last_closed = self.last_closed.max(Some(at));
        self.closes[row] = at;
    }

    /// Rows in memory that are closed (what sealing would move to the file).
    pub fn closed_rows(&self) -> usize {
        self.rows.len() - self.open as usize
    }

    /// Rows in memory that `sealing` would move to the file.
    pub fn sealable_rows(&self, sealing: Sealing) -> usize {
        match sealing {
            Sealing::Closed => self.closed_rows(),
            Sealing::AllButPaused => self.rows.len() - self.paused as usize,
        }
    }

    /// The chunks of rows in memory: index, stamp of the latest change, rows.
    pub fn chunks(&self) -> impl Iterator<Item = (usize, u64, &[Dossier])> {
        self.rows
            .chunks(CHUNK_ROWS)
            .zip(&self.stamps)
            .enumerate()
            .map(|(i, (rows, stamp))| (i, *stamp, rows))
    }

    /// When its last dossier closed, or `i64::MAX` while one is open: a period that starts
    /// after it owes this month nothing (no carry-over, no activity).
    pub fn settled_at(&self) -> i64 {
        if self.open > 0 {
            return i64::MAX;
        }
        let base = self.sealed.as_ref().map(|b| b.last_closed);
        self.last_closed.max(base).unwrap_or(i64::MIN)
    }

    /// Rows in the month: in memory and in its sealed file.
    pub fn row_count(&self) -> u64 {
        let sealed = self.sealed.as_ref().map_or(0, SealedBase::live_rows);
        self.rows.len() as u64 + sealed
    }

    /// Copies the rows `sealing` takes to seal them while the fold goes on; until
    /// [`DossierMonth::finish_sealing`] (or [`DossierMonth::abandon_sealing`]) the rows
    /// changed are remembered.
    pub fn begin_sealing(&mut self, sealing: Sealing) -> ToSeal {
        self.sealing = Some(Vec::new());
        let taken: Vec<u32> = (0..self.rows.len() as u32)
            .filter(|&row| sealing.takes(&self.rows[row as usize]))
            .collect();
        let rows = taken
            .iter()
            .map(|&row| self.rows[row as usize].clone())
            .collect();
        ToSeal { taken, rows }
    }

    /// Whether a sealed file of this month is being written.
    pub fn is_sealing(&self) -> bool {
        self.sealing.is_some()
    }

    /// Forgets a sealing that failed: every row stays in memory.
    pub fn abandon_sealing(&mut self) {
        self.sealing = None;
    }

    /// Takes out of memory the rows `taken` (by [`DossierMonth::begin_sealing`]) that did
    /// not change since; the rest stay.
    pub fn finish_sealing(&mut self, taken: &[u32]) -> Sealed {
        const TAKEN: u8 = 1;
        const CHANGED: u8 = 2;
        let mut marks = vec![0u8; self.rows.len()];
        for &row in taken {
            marks[row as usize] |= TAKEN;
        }
        for row in self.sealing.take().unwrap_or_default() {
            marks[row as usize] |= CHANGED;
        }
        let (mut kept, mut sealed) = (
            Vec::new(),
            Sealed {
                moved: Vec::with_capacity(taken.len()),
                changed: Vec::new(),
            },
        );
        for (row, mark) in self.take_rows().into_iter().zip(marks) {
            match mark {
                TAKEN => sealed.moved.push(row),
                _ if mark == TAKEN | CHANGED => {
                    sealed.changed.push(row.id.clone());
                    kept.push(row);
                }
                _ => kept.push(row),
            }
        }
        self.set_rows(kept);
        sealed
    }

    /// Takes row `row` out of memory (the last row takes its place) and returns it. A
    /// sealing under way is abandoned: the rows it copied no longer match the month's (the
    /// month is sealed again later, and the file written meanwhile is not installed).
    fn remove(&mut self, row: usize) -> Dossier {
        self.sealing = None;
        let last = self.rows.len() - 1;
        self.touch(row);
        self.touch(last);
        let dossier = self.rows.swap_remove(row);
        self.closes.swap_remove(row);
        self.agency_keys.swap_remove(row);
        if dossier.closed_at().is_none() {
            self.open -= 1;
        }
        if dossier.moves_with_clock() {
            self.paused -= 1;
        }
        self.stamps.truncate(self.rows.len().div_ceil(CHUNK_ROWS));
        dossier
    }

    fn touch(&mut self, row: usize) {
        self.touch_rows(row..row + 1);
    }

    /// Marks `rows` changed: each chunk they are in stamped once.
    fn touch_rows(&mut self, rows: std::ops::Range<usize>) {
        if rows.is_empty() {
            return;
        }
        if let Some(changed) = &mut self.sealing {
            changed.extend(rows.clone().map(|row| row as u32));
        }
        let chunks = rows.start / CHUNK_ROWS..=(rows.end - 1) / CHUNK_ROWS;
        if *chunks.end() >= self.stamps.len() {
            self.stamps.resize(chunks.end() + 1, 0);
        }
        for chunk in chunks {
            self.stamps[chunk] = next_stamp();
        }
    }

    /// Makes room for `more` rows.
    fn reserve(&mut self, more: usize) {
        self.rows.reserve(more);
        self.closes.reserve(more);
        self.agency_keys.reserve(more);
    }

    fn push(&mut self, dossier: Dossier) -> u32 {
        let row = self.push_untouched(dossier);
        self.touch(row as usize);
        row
    }

    /// [`DossierMonth::push`] without stamping the row's chunk: the caller stamps the chunks
    /// of all the rows it pushed at once ([`DossierMonth::touch_rows`]).
    fn push_untouched(&mut self, dossier: Dossier) -> u32 {
        match dossier.closed_at() {
            Some(at) => self.last_closed = self.last_closed.max(Some(at)),
            None => self.open += 1,
        }
        if dossier.moves_with_clock() {
            self.paused += 1;
        }
        self.closes.push(dossier.closed_at().unwrap_or(i64::MAX));
        self.agency_keys.push(agency_key(&dossier.agency));
        self.rows.push(dossier);
        self.rows.len() as u32 - 1
    }

    /// Takes every row out ([`DossierMonth::set_rows`] puts back what stays).
    pub fn take_rows(&mut self) -> Vec<Dossier> {
        // Freed, not cleared: a national month's columns beside the rows hold 16 bytes for
        // each of its ≈ 750 000 rows at its peak, and a sealed month keeps a few thousand.
        self.closes = Vec::new();
        self.agency_keys = Vec::new();
        std::mem::take(&mut self.rows)
    }

    /// Replaces the rows (after a sealing), recounting what is open.
    pub fn set_rows(&mut self, rows: Vec<Dossier>) {
        self.rows = Vec::with_capacity(rows.len());
        self.stamps = Vec::with_capacity(rows.len().div_ceil(CHUNK_ROWS));
        self.closes = Vec::with_capacity(rows.len());
        self.agency_keys = Vec::with_capacity(rows.len());
        (self.open, self.paused, self.last_closed) = (0, 0, None);
        for row in rows {
            self.push(row);
        }
    }
}

/// A hash of an agency's code, the same in every month and run.
pub fn agency_key(code: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x0063_6869_736f).hash_one(code)
}

/// The fold's view of sealed rows: the dossier's events from the log, and where a sealed file
/// holds its row.
pub trait SealedRows: Send + Sync {
    /// The decoded events of `dossier-{id}` at log positions before `before`.
    fn history(&self, id: &str, before: u64) -> Result<Vec<DomainEvent>, String>;
    /// The row of the sealed file `file` that holds dossier `id`, with what its receipt fixed.
    fn row_of(&self, file: &str, id: &str) -> Result<Option<SealedRow>, String>;
}

/// Every dossier month, and where each dossier in memory is.
#[derive(Default)]
pub struct Dossiers {
    pub months: BTreeMap<MonthKey, DossierMonth>,
    /// Dossiers in memory: their month and row.
    index: Map<Arc<str>, (MonthKey, u32)>,
    /// The latest `received_at` folded: the log's own clock, which seals months.
    pub horizon: i64,
    /// Reads sealed rows back (none until the projections set it).
    pub sealed_rows: Option<Arc<dyn SealedRows>>,
    /// Sealed dossiers brought back into memory by a later event.
    pub recalled: u64,
}

impl std::fmt::Debug for Dossiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dossiers")
            .field("months", &self.months.len())
            .field("in_memory", &self.index.len())
            .finish()
    }
}

impl Dossiers {
    /// Rows in memory (hot months, and what sealed months keep beside their files).
    pub fn in_memory(&self) -> usize {
        self.index.len()
    }

    /// Every dossier, in memory or sealed.
    pub fn count(&self) -> u64 {
        self.months.values().map(DossierMonth::row_count).sum()
    }

    /// Points the index at the rows of `month` (after they moved).
    pub fn reindex(&mut self, month: MonthKey, removed: &[Dossier]) {
        for row in removed {
            self.index.remove(&row.id);
        }
        // The index grows to the most rows memory held (millions before a sealing) and a
        // hash map keeps its capacity: past four times what it holds, it gives the rest back.
        let held = self.index.len().max(1 << 16);
        if self.index.capacity() > 4 * held {
            self.index.shrink_to(2 * held);
        }
        if let Some(m) = self.months.get(&month) {
            for (i, row) in m.rows.iter().enumerate() {
                self.index.insert(row.id.clone(), (month, i as u32));
            }
        }
    }

    /// Whether the dossier `id` is in memory.
    pub fn holds(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Drops a month: its rows in memory and its sealed file.
    pub fn forget(&mut self, month: MonthKey) -> Option<DossierMonth> {
        let mut forgotten = self.months.remove(&month)?;
        for row in &forgotten.rows {
            self.index.remove(&row.id);
        }
        forgotten.sealed = None;
        Some(forgotten)
    }

    /// Puts back rows loaded from a segment of `month`, in order: the month looked up and the
    /// room made once for all of them (a restart puts back millions).
    fn extend(&mut self, month: MonthKey, rows: Vec<Dossier>) {
        let Self {
            months,
            index,
            horizon,
            ..
        } = self;
        let partition = months.entry(month).or_default();
        partition.reserve(rows.len());
        index.reserve(rows.len());
        let first = partition.rows.len();
        for dossier in rows {
            *horizon = (*horizon).max(dossier.received_at);
            let id = dossier.id.clone();
            let row = partition.push_untouched(dossier);
            index.insert(id, (month, row));
        }
        partition.touch_rows(first..partition.rows.len());
    }

    /// Makes room at once for what a restart puts back: `rows` in each of those months, and
    /// in the index for all of them (the rows of a month arrive a chunk at a time, and growing
    /// to millions by doubling copies them all again, and rehashes the index).
    pub(super) fn reserve(&mut self, months: &[(MonthKey, usize)]) {
        self.index
            .reserve(months.iter().map(|(_, rows)| rows).sum());
        for &(month, rows) in months {
            self.months.entry(month).or_default().reserve(rows);
        }
    }

    fn insert(&mut self, month: MonthKey, dossier: Dossier) {
        let id = dossier.id.clone();
        let row = self.months.entry(month).or_default().push(dossier);
        self.index.insert(id, (month, row));
    }

    /// Takes the row at `slot` out of memory.
    fn take(&mut self, (month, row): (MonthKey, u32)) -> Option<Dossier> {
        let partition = self.months.get_mut(&month)?;
        let dossier = partition.remove(row as usize);
        self.index.remove(&dossier.id);
        if let Some(moved) = partition.rows.get(row as usize) {
            self.index.insert(moved.id.clone(), (month, row));
        }
        Some(dossier)
    }
}

/// An error the fold cannot pass over: the events after it stay unfolded.
#[derive(Debug)]
pub struct FoldError(pub String);

impl Tables {
    pub(super) fn receive_dossier(&mut self, id: &str, e: &DossierReceived) {
        let dossier = self.received(id, e);
        self.insert_dossier(dossier);
    }

    fn received(&mut self, id: &str, e: &DossierReceived) -> Dossier {
        let received_at = micros(&e.received_at.0);
        // The registered agency and service hold their interned codes.
        let service = self.services.get(&e.service);
        let service_level = service.map(|service| service.level_at(received_at));
        let service = service.map(|service| service.code.clone());
        let agency = self.agencies.get(&e.agency);
        let province = agency.map(|agency| agency.province.clone());
        let agency = agency.map(|agency| agency.code.clone());
        Dossier {
            id: id.into(),
            agency: agency.unwrap_or_else(|| self.intern(&e.agency)),
            province,
            service: service.unwrap_or_else(|| self.intern(&e.service)),
            service_level,
            procedure_code: e.procedure_code.as_deref().map(|code| self.intern(code)),
            applicant: e.applicant,
            channel: e.channel,
            received_at,
            due_at: micros(&e.due_at.0),
            resolved_at: None,
            withdrawn_at: None,
            outcome: None,
            pauses: Vec::new(),
            paid_online: None,
            rating: None,
        }
    }

    /// Adds a dossier row to the month of its local time of receipt.
    pub fn insert_dossier(&mut self, dossier: Dossier) {
        let month = local_month(dossier.received_at);
        let day = local_day(dossier.received_at);
        let agency = dossier.agency.clone();
        let receipt = DayCounts::receipt(dossier.channel == Channel::Online);
        self.dossiers.horizon = self.dossiers.horizon.max(dossier.received_at);
        self.dossiers.insert(month, dossier);
        self.dirty.insert(Partition::Dossiers(month));
        self.count_day(day, agency, |counts| counts.add(&receipt));
    }

    /// Applies a change to the dossier `id` (read back from the log if its row is sealed), and
    /// counts a resolution or withdrawal on its day.
    pub(super) fn change_dossier(
        &mut self,
        id: &str,
        change: DossierChange,
        position: u64,
    ) -> Result<(), FoldError> {
        let Some((month, row)) = self.find_dossier(id, position)? else {
            return Ok(());
        };
        let Some(partition) = self.dossiers.months.get_mut(&month) else {
            return Ok(());
        };
        partition.touch(row as usize);
        let dossier = &mut partition.rows[row as usize];
        let (was_open, was_paused) = (dossier.closed_at().is_none(), dossier.moves_with_clock());
        dossier.change(change);
        let (closed, paused) = (dossier.closed_at(), dossier.moves_with_clock());
        let counted = (dossier.agency.clone(), dossier.timeliness());
        if let (true, Some(at)) = (was_open, closed) {
            partition.closed(row as usize, at);
        }
        partition.paused = partition.paused + u32::from(paused) - u32::from(was_paused);
        self.dirty.insert(Partition::Dossiers(month));
        let (day, counts) = match change {
            DossierChange::Resolved(at, _) => (local_day(at), DayCounts::resolution(counted.1)),
            DossierChange::Withdrawn(at) => (local_day(at), DayCounts::withdrawal()),
            _ => return Ok(()),
        };
        self.count_day(day, counted.0, |day| day.add(&counts));
        Ok(())
    }

    /// Corrects dossier `id` (read back from the log if its row is sealed): its counts come
    /// off the days they were on and go onto the days they are on now, and its row moves to
    /// the month it was really received in.
    pub(super) fn correct_dossier(
        &mut self,
        id: &str,
        correction: &DossierCorrected,
        position: u64,
    ) -> Result<(), FoldError> {
        let Some(mut dossier) = self.take_dossier(id, position)? else {
            return Ok(());
        };
        self.count_dossier(&dossier, -1);
        self.corrected(&mut dossier, correction);
        self.count_dossier(&dossier, 1);
        let month = local_month(dossier.received_at);
        self.dossiers.insert(month, dossier);
        self.dirty.insert(Partition::Dossiers(month));
        Ok(())
    }

    /// Voids dossier `id`: its row and its counts leave the tables.
    pub(super) fn void_dossier(&mut self, id: &str, position: u64) -> Result<(), FoldError> {
        if let Some(dossier) = self.take_dossier(id, position)? {
            self.count_dossier(&dossier, -1);
        }
        Ok(())
    }

    /// Where dossier `id`'s row is in memory: recalled from the log (its events before
    /// `position`) if its row is sealed.
    fn find_dossier(
        &mut self,
        id: &str,
        position: u64,
    ) -> Result<Option<(MonthKey, u32)>, FoldError> {
        match self.dossiers.index.get(id) {
            Some(slot) => Ok(Some(*slot)),
            None => self.recall(id, position),
        }
    }

    /// Takes dossier `id`'s row out of its month (recalled first if sealed).
    fn take_dossier(&mut self, id: &str, position: u64) -> Result<Option<Dossier>, FoldError> {
        let Some(slot) = self.find_dossier(id, position)? else {
            return Ok(None);
        };
        self.dirty.insert(Partition::Dossiers(slot.0));
        Ok(self.dossiers.take(slot))
    }

    /// Adds (`sign` 1) or takes off (-1) what `dossier` counts in `agency_daily`.
    fn count_dossier(&mut self, dossier: &Dossier, sign: i64) {
        for (day, counts) in dossier.counts() {
            self.count_change(day, dossier.agency.clone(), &counts, sign);
        }
    }

    /// Puts a correction's values in the row: the service's level is the one it had when
    /// the dossier was (really) received.
    fn corrected(&mut self, dossier: &mut Dossier, correction: &DossierCorrected) {
        if let Some(channel) = correction.channel {
            dossier.channel = channel;
        }
        if let Some(at) = &correction.received_at {
            dossier.received_at = micros(&at.0);
        }
        if let Some(at) = &correction.due_at {
            dossier.due_at = micros(&at.0);
        }
        if correction.service.is_some() || correction.received_at.is_some() {
            let code = correction.service.as_deref().unwrap_or(&dossier.service);
            match self.services.get(code) {
                Some(service) => {
                    dossier.service_level = Some(service.level_at(dossier.received_at));
                    dossier.service = service.code.clone();
                }
                None => {
                    dossier.service_level = None;
                    dossier.service = self.intern(code);
                }
            }
        }
    }

    /// The local months whose `agency_daily` days the corrections and voids of `batch` take
    /// counts off: the days their dossiers counted on before the batch (a sealed dossier is
    /// recalled from the log for it). The days they count on afterwards are the corrected
    /// receipts' and those of the batch's own events ([`super::agency_daily::counted_months`]).
    pub fn corrected_months(&mut self, batch: &Decoded) -> Result<BTreeSet<MonthKey>, FoldError> {
        let mut months = BTreeSet::new();
        let Some(start) = batch.start() else {
            return Ok(months);
        };
        for (_, id, event) in batch.entries() {
            if !matches!(
                event,
                DomainEvent::DossierCorrected(_) | DomainEvent::DossierVoided(_)
            ) {
                continue;
            }
            let Some((month, row)) = self.find_dossier(id, start)? else {
                continue;
            };
            let dossier = &self.dossiers.months[&month].rows[row as usize];
            months.extend(dossier.counts().map(|(day, _)| month_of_day(day)));
        }
        Ok(months)
    }

    /// Brings a sealed dossier back into memory: replays its stream up to `position`, hides
    /// its sealed row, and keeps it with its month's rows.
    fn recall(&mut self, id: &str, position: u64) -> Result<Option<(MonthKey, u32)>, FoldError> {
        let Some(sealed_rows) = self.dossiers.sealed_rows.clone() else {
            return Ok(None);
        };
        let events = sealed_rows.history(id, position).map_err(FoldError)?;
        let Some(mut dossier) = self.replayed(id, events) else {
            return Ok(None);
        };
        let month = local_month(dossier.received_at);
        let Some(base) = self
            .dossiers
            .months
            .get_mut(&month)
            .and_then(|m| m.sealed.as_mut())
        else {
            return Ok(None);
        };
        if let Some(sealed) = sealed_rows.row_of(&base.file, id).map_err(FoldError)? {
            base.delete(sealed.row);
            // As sealed: the province and level at receipt, whatever changed since.
            dossier.service_level = sealed.service_level;
            dossier.province = sealed.province.map(|p| self.intern(&p));
        }
        self.dossiers.insert(month, dossier);
        self.dossiers.recalled += 1;
        Ok(self.dossiers.index.get(id).copied())
    }

    /// The row a dossier's own events fold into (`None` unless the first is its receipt).
    pub(super) fn replayed(&mut self, id: &str, events: Vec<DomainEvent>) -> Option<Dossier> {
        let mut events = events.into_iter();
        let Some(DomainEvent::DossierReceived(received)) = events.next() else {
            return None;
        };
        let mut dossier = self.received(id, &received);
        for event in events {
            match event {
                DomainEvent::DossierCorrected(correction) => {
                    self.corrected(&mut dossier, &correction)
                }
                DomainEvent::DossierVoided(_) => return None,
                event => {
                    if let Some(change) = DossierChange::of(&event) {
                        dossier.change(change);
                    }
                }
            }
        }
        Some(dossier)
    }

    /// Puts back a row loaded from a segment (its counters are in the daily segments).
    pub fn restore_dossier(&mut self, month: MonthKey, dossier: Dossier) {
        self.dossiers.horizon = self.dossiers.horizon.max(dossier.received_at);
        self.dossiers.insert(month, dossier);
    }
}

/// `dossiers` as kept in memory and in sealed files: every SQL column but those computed as
/// they are read.
pub static DOSSIERS: LazyLock<SchemaRef> = LazyLock::new(|| schema(&dossier_fields(false)));

/// The column of `dossiers` computed as it is read, from the calendar in force (so an
/// announcement changes it at once, sealed months included).
pub const WORKING_DAYS_LATE: &str = "working_days_late";

/// `dossiers` as SQL sees it: [`DOSSIERS`] and [`WORKING_DAYS_LATE`].
pub static DOSSIERS_SQL: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = dossier_fields(false);
    fields.push((WORKING_DAYS_LATE, DataType::Int32, true));
    schema(&fields)
});

/// `dossiers` as stored: the SQL columns and the pauses, from which a row is folded on.
pub static STORED: LazyLock<SchemaRef> = LazyLock::new(|| schema(&dossier_fields(true)));

fn dossier_fields(stored: bool) -> Vec<(&'static str, DataType, bool)> {
    use DataType::*;
    let mut fields = vec![
        ("id", Utf8, false),
        ("agency", Utf8, false),
        ("province", Utf8, true),
        ("service", Utf8, false),
        ("service_level", Int32, true),
        ("procedure_code", Utf8, true),
        ("applicant", Utf8, true),
        ("channel", Utf8, false),
        ("received_at", timestamp(), false),
        ("due_at", timestamp(), false),
        ("effective_due_at", timestamp(), false),
        ("resolved_at", timestamp(), true),
        ("withdrawn_at", timestamp(), true),
        ("status", Utf8, false),
        ("outcome", Utf8, true),
        ("timeliness", Utf8, true),
        ("paused_seconds", Int64, false),
        ("paid_online", Boolean, true),
        ("rating", Int32, true),
    ];
    if stored {
        fields.push(("pauses", Utf8, true));
    } else {
        // SQL reads strings as views: a scan decodes a Parquet dictionary into views of one
        // buffer, and grouping compares the short codes inline (about half the time of a
        // `GROUP BY province, channel, timeliness` over plain strings).
        for field in &mut fields {
            if field.1 == Utf8 {
                field.1 = Utf8View;
            }
        }
    }
    fields
}

/// Rows as a batch of [`DOSSIERS`] (or [`STORED`]), open pauses counted up to `now`.
pub fn dossiers_batch(rows: &[Dossier], now: i64, stored: bool) -> RecordBatch {
    let as_of = |d: &Dossier| d.closed_at().unwrap_or(now);
    let mut columns = vec![
        strings(rows.iter().map(|d| &*d.id)),
        strings(rows.iter().map(|d| &*d.agency)),
        optional_strings(rows.iter().map(|d| d.province.as_deref())),
        strings(rows.iter().map(|d| &*d.service)),
        ints(rows.iter().map(|d| d.service_level.map(i32::from))),
        optional_strings(rows.iter().map(|d| d.procedure_code.as_deref())),
        optional_strings(rows.iter().map(|d| d.applicant.map(Applicant::as_str))),
        strings(rows.iter().map(|d| d.channel.as_str())),
        times(rows.iter().map(|d| Some(d.received_at))),
        times(rows.iter().map(|d| Some(d.due_at))),
        times(rows.iter().map(|d| Some(d.effective_due_at(as_of(d))))),
        times(rows.iter().map(|d| d.resolved_at)),
        times(rows.iter().map(|d| d.withdrawn_at)),
        strings(rows.iter().map(Dossier::status)),
        optional_strings(rows.iter().map(|d| d.outcome.map(Outcome::as_str))),
        optional_strings(rows.iter().map(|d| d.timeliness().map(|t| t.name()))),
        longs(
            rows.iter()
                .map(|d| Some(d.paused_micros(as_of(d)) / 1_000_000)),
        ),
        Arc::new(rows.iter().map(|d| d.paid_online).collect::<BooleanArray>()),
        ints(rows.iter().map(|d| d.rating.map(i32::from))),
    ];
    if stored {
        columns.push(Arc::new(
            rows.iter()
                .map(|d| (!d.pauses.is_empty()).then(|| encode_pauses(&d.pauses)))
                .collect::<StringArray>(),
        ));
    }
    if stored {
        return batch(&STORED, columns);
    }
    let columns = columns
        .into_iter()
        .map(|column| match column.data_type() {
            DataType::Utf8 => cast(&column, &DataType::Utf8View).expect("strings cast to views"),
            _ => column,
        })
        .collect();
    batch(&DOSSIERS, columns)
}

/// `batch` (of [`DOSSIERS`], built from `rows`) with the columns an open pause moves —
/// `effective_due_at` and `paused_seconds` — counted up to `now`: the rest of a cached batch
/// does not change with the clock.
pub fn with_pauses_at(batch: &RecordBatch, rows: &[Dossier], now: i64) -> RecordBatch {
    let as_of = |d: &Dossier| d.closed_at().unwrap_or(now);
    let mut columns = batch.columns().to_vec();
    let schema = batch.schema();
    let (due, paused) = (
        schema
            .index_of("effective_due_at")
            .expect("a dossiers batch"),
        schema.index_of("paused_seconds").expect("a dossiers batch"),
    );
    columns[due] = times(rows.iter().map(|d| Some(d.effective_due_at(as_of(d)))));
    columns[paused] = longs(
        rows.iter()
            .map(|d| Some(d.paused_micros(as_of(d)) / 1_000_000)),
    );
    super::columns::batch(&DOSSIERS, columns)
}

/// `start~end,start~` in µs (an open pause has no end).
pub fn encode_pauses(pauses: &[Pause]) -> String {
    let spans: Vec<String> = pauses
        .iter()
        .map(|(start, end)| format!("{start}~{}", end.map_or(String::new(), |e| e.to_string())))
        .collect();
    spans.join(",")
}

pub fn decode_pauses(text: &str) -> Option<Vec<Pause>> {
    text.split(',')
        .map(|span| {
            let (start, end) = span.split_once('~')?;
            let end = if end.is_empty() {
                None
            } else {
                Some(end.parse().ok()?)
            };
            Some((start.parse().ok()?, end))
        })
        .collect()
}

/// Reads the dossiers of a batch of [`STORED`].
pub fn stored_dossiers(
    batch: &RecordBatch,
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> Result<Vec<Dossier>, String> {
    let c = Columns(batch);
    let mut name = |text: &str| Ok(intern(text));
    let mut names = |column: &str| {
        Names::of(&c, column, &mut name)?.ok_or_else(|| format!("column {column} is missing"))
    };
    let id = c.strings("id")?;
    let (agency, province, service) = (names("agency")?, names("province")?, names("service")?);
    // Segments and sealed files written before `DossierReceived` version 2 have no such
    // columns: their rows were all received in version 1.
    let procedure_code = Names::of(&c, "procedure_code", &mut name)?;
    let (mut channel_of, mut outcome_of, mut applicant_of) = (
        |text: &str| text.parse::<Channel>(),
        |text: &str| text.parse::<Outcome>(),
        |text: &str| text.parse::<Applicant>(),
    );
    let channel = Coded::of(&c, "channel", &mut channel_of)?.ok_or("column channel is missing")?;
    let outcome = Coded::of(&c, "outcome", &mut outcome_of)?.ok_or("column outcome is missing")?;
    let applicant = Coded::of(&c, "applicant", &mut applicant_of)?;
    let level = c.int32("service_level")?;
    let (received, due) = (c.times("received_at")?, c.times("due_at")?);
    let (resolved, withdrawn) = (c.times("resolved_at")?, c.times("withdrawn_at")?);
    let (pauses, rating) = (c.strings("pauses")?, c.int32("rating")?);
    let paid = c.get::<BooleanArray>("paid_online")?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let pauses = match string_at(pauses, row) {
            Some(text) => decode_pauses(text).ok_or("unreadable pauses")?,
            None => Vec::new(),
        };
        rows.push(Dossier {
            id: id.value(row).into(),
            agency: agency
                .at(row, &mut name)?
                .ok_or("a dossier without an agency")?,
            province: province.at(row, &mut name)?,
            service: service
                .at(row, &mut name)?
                .ok_or("a dossier without a service")?,
            service_level: optional(level, row, |i| level.value(i) as u8),
            procedure_code: match &procedure_code {
                Some(codes) => codes.at(row, &mut name)?,
                None => None,
            },
            applicant: match &applicant {
                Some(kinds) => kinds.at(row, &mut applicant_of)?,
                None => None,
            },
            channel: channel
                .at(row, &mut channel_of)?
                .ok_or("a dossier without a channel")?,
            received_at: received.value(row),
            due_at: due.value(row),
            resolved_at: optional(resolved, row, |i| resolved.value(i)),
            withdrawn_at: optional(withdrawn, row, |i| withdrawn.value(i)),
            outcome: outcome.at(row, &mut outcome_of)?,
            pauses,
            paid_online: optional(paid, row, |i| paid.value(i)),
            rating: optional(rating, row, |i| rating.value(i) as u8),
        });
    }
    Ok(rows)
}

/// The columns of a stored chunk that [`stored_dossiers`] does not read: a query's, computed
/// from the others (a restart does not decode them).
pub const COMPUTED_COLUMNS: [&str; 4] =
    ["effective_due_at", "status", "timeliness", "paused_seconds"];

impl Tables {
    /// Restores rows of a month's segment made from its batches apart from the tables (their
    /// names interned by an [`Interner`](super::tables::Interner) the tables then adopt).
    pub(super) fn restore_dossier_rows(&mut self, month: MonthKey, rows: Vec<Dossier>) {
        self.dossiers.extend(month, rows);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn pauses_round_trip() {
        let pauses = vec![(1, Some(5)), (-7, None)];
        assert_eq!(decode_pauses(&encode_pauses(&pauses)), Some(pauses));
    }

    /// Dossier `n`, received at 0 and due at 10, of one of two agencies.
    pub(in crate::projections) fn dossier(n: usize, resolved_at: Option<i64>) -> Dossier {
        let name: Arc<str> = "26.S01".into();
        Dossier {
            id: n.to_string().into(),
            // Two agencies, to pick the rows of one by its key.
            agency: if n % 2 == 0 {
                name.clone()
            } else {
                "26.S02".into()
            },
            province: None,
            service: name,
            service_level: None,
            procedure_code: None,
            applicant: None,
            channel: Channel::Online,
            received_at: 0,
            due_at: 10,
            resolved_at,
            withdrawn_at: None,
            outcome: None,
            pauses: Vec::new(),
            paid_online: None,
            rating: None,
        }
    }

    #[test]
    fn a_sealed_month_gives_back_the_memory_of_the_rows_that_left() {
        let mut month = DossierMonth::default();
        for n in 0..100_000 {
            month.push(dossier(n, (n % 1_000 != 0).then_some(100)));
        }
        let to_seal = month.begin_sealing(Sealing::Closed);
        month.finish_sealing(&to_seal.taken);
        assert_eq!(month.rows().len(), 100);
        // The columns beside the rows hold what stays, not the month's peak (16 bytes a row
        // of a national month's 750 000 kept its sealed months at 1.5 GB).
        for capacity in [
            month.rows.capacity(),
            month.closes.capacity(),
            month.agency_keys.capacity(),
        ] {
            assert!(capacity < 1_000, "capacity {capacity} after sealing");
        }
        let mut dossiers = Dossiers::default();
        let month_key: MonthKey = 0;
        dossiers.extend(month_key, (0..400_000).map(|n| dossier(n, None)).collect());
        let removed = dossiers.forget(month_key).unwrap().take_rows();
        // The rows gone (as a sealing takes them), the index gives back its room.
        dossiers.reindex(month_key, &removed);
        assert_eq!(dossiers.in_memory(), 0);
        assert!(
            dossiers.index.capacity() <= 4 << 16,
            "{}",
            dossiers.index.capacity()
        );
    }

    #[test]
    fn a_sealing_keeps_in_memory_the_rows_changed_while_the_file_was_written() {
        let mut month = DossierMonth::default();
        for n in 0..40 {
            month.push(dossier(n, (n % 2 == 0).then_some(100)));
        }
        let to_seal = month.begin_sealing(Sealing::Closed);
        assert!(month.is_sealing());
        assert_eq!(to_seal.taken, (0..40).step_by(2).collect::<Vec<u32>>());
        assert!(to_seal.rows.iter().all(|d| d.closed_at() == Some(100)));
        // Meanwhile: a copied row is rated, an open one resolved, a new one received.
        month.rows[4].change(DossierChange::Rated(5));
        month.touch(4);
        month.rows[5].change(DossierChange::Resolved(200, Outcome::Approved));
        month.touch(5);
        month.closed(5, 200);
        month.push(dossier(40, Some(300)));
        let sealed = month.finish_sealing(&to_seal.taken);
        assert!(!month.is_sealing());
        assert_eq!(sealed.changed, vec![Arc::<str>::from("4")]);
        let moved: Vec<String> = sealed.moved.iter().map(|d| d.id.to_string()).collect();
        let expected: Vec<String> = (0..40)
            .step_by(2)
            .filter(|n| *n != 4)
            .map(|n: usize| n.to_string())
            .collect();
        assert_eq!(moved, expected);
        let kept: Vec<String> = month.rows().iter().map(|d| d.id.to_string()).collect();
        let mut expected: Vec<String> = (1..40).step_by(2).map(|n: usize| n.to_string()).collect();
        expected.insert(2, "4".into());
        expected.push("40".into());
        assert_eq!(kept, expected);
        assert_eq!(month.rows()[2].rating, Some(5));
        // What is open is recounted from the rows kept: 19 of the odd ones.
        assert_eq!(month.closed_rows(), 3);
    }

    #[test]
    fn past_the_budget_a_sealing_takes_open_rows_too_but_not_the_paused() {
        let mut month = DossierMonth::default();
        // 12 rows: every third closed; two open ones paused.
        for n in 0..12 {
            let mut row = dossier(n, (n % 3 == 0).then_some(100));
            if n == 1 || n == 5 {
                row.change(DossierChange::Paused(50));
            }
            month.push(row);
        }
        assert_eq!(month.sealable_rows(Sealing::Closed), 4);
        assert_eq!(month.sealable_rows(Sealing::AllButPaused), 10);
        // A pause ends: that row may leave memory now.
        month.rows[1].change(DossierChange::Resumed(60));
        month.paused -= 1;
        let to_seal = month.begin_sealing(Sealing::AllButPaused);
        assert_eq!(to_seal.taken, vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
        let sealed = month.finish_sealing(&to_seal.taken);
        assert_eq!(sealed.moved.len(), 11);
        let kept: Vec<String> = month.rows().iter().map(|d| d.id.to_string()).collect();
        assert_eq!(kept, ["5"]);
        assert_eq!(month.sealable_rows(Sealing::AllButPaused), 0);
    }

    #[test]
    fn rows_open_at_an_end_follow_every_change() {
        let mut month = DossierMonth::default();
        // 150 rows: every third one resolved at the time of its number.
        for n in 0..150 {
            month.push(dossier(n, (n % 3 == 0).then_some(n as i64)));
        }
        let ids = |month: &DossierMonth, end: i64| -> Vec<String> {
            month.open_at(end).map(|d| d.id.to_string()).collect()
        };
        let expected = |end: i64, rows: &[Dossier]| -> Vec<String> {
            rows.iter()
                .filter(|d| d.closed_at().is_none_or(|at| at >= end))
                .map(|d| d.id.to_string())
                .collect()
        };
        for end in [0, 75, 149, 150, 1_000] {
            assert_eq!(ids(&month, end), expected(end, month.rows()), "end {end}");
        }
        // Closing rows later (as a fold does) takes them out of the open ones.
        for row in [1, 64, 65, 149] {
            month.rows[row].change(DossierChange::Withdrawn(2_000));
            month.closed(row, 2_000);
        }
        for end in [150, 2_000, 2_001] {
            assert_eq!(ids(&month, end), expected(end, month.rows()), "end {end}");
        }
        assert!(!ids(&month, 2_001).contains(&"64".to_string()));
        let rows = month.take_rows();
        month.set_rows(rows);
        assert_eq!(ids(&month, 2_001), expected(2_001, month.rows()));
        // One agency's open rows by its key: the same rows as filtering every open row.
        let second = agency_key("26.S02");
        assert_ne!(second, agency_key("26.S01"));
        for end in [0, 150, 2_001] {
            let of_second: Vec<String> = month
                .open_at_of(end, |key| key == second)
                .map(|d| d.id.to_string())
                .collect();
            let expected: Vec<String> = expected(end, month.rows())
                .into_iter()
                .filter(|id| id.parse::<usize>().unwrap() % 2 == 1)
                .collect();
            assert!(!expected.is_empty());
            assert_eq!(of_second, expected, "end {end}");
        }
    }
}

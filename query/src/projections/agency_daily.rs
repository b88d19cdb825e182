//! `agency_daily`: counters of one agency on one local day, partitioned by local month.

use super::columns::{batch, longs, optional_strings, schema, strings, Columns, Names};
use super::tables::{ColdMonth, Decoded, Tables};
use super::Partition;
use crate::local_time::{day_start, local_month, micros, month_first_day, month_of_day, MonthKey};
use datafusion::arrow::array::{Date32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

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

impl DayCounts {
    /// What a receipt counts on its day.
    pub fn receipt(online: bool) -> Self {
        Self {
            received: 1,
            received_online: i64::from(online),
            ..Self::default()
        }
    }

    /// What a resolution counts on its day: by its timeliness (late when unknown).
    pub fn resolution(timeliness: Option<super::dossiers::Timeliness>) -> Self {
        use super::dossiers::Timeliness;
        let (early, on_time) = match timeliness {
            Some(Timeliness::Early) => (1, 0),
            Some(Timeliness::OnTime) => (0, 1),
            _ => (0, 0),
        };
        Self {
            resolved: 1,
            resolved_early: early,
            resolved_on_time: on_time,
            resolved_late: 1 - early - on_time,
            ..Self::default()
        }
    }

    /// What a withdrawal counts on its day.
    pub fn withdrawal() -> Self {
        Self {
            withdrawn: 1,
            ..Self::default()
        }
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Self) {
        self.add_times(other, 1);
    }

    /// Adds `other`'s counts `times` times (-1: takes them off).
    pub fn add_times(&mut self, other: &Self, times: i64) {
        self.received += times * other.received;
        self.received_online += times * other.received_online;
        self.resolved += times * other.resolved;
        self.resolved_early += times * other.resolved_early;
        self.resolved_on_time += times * other.resolved_on_time;
        self.resolved_late += times * other.resolved_late;
        self.withdrawn += times * other.withdrawn;
    }

    /// Row `row` of the counter columns (in [`COUNTER_COLUMNS`]' order).
    pub fn of_row(counters: &[&Int64Array], row: usize) -> Self {
        let at = |i: usize| counters[i].value(row);
        Self {
            received: at(0),
            received_online: at(1),
            resolved: at(2),
            resolved_early: at(3),
            resolved_on_time: at(4),
            resolved_late: at(5),
            withdrawn: at(6),
        }
    }

    /// Dossiers closed: resolved or withdrawn.
    pub fn closed(&self) -> i64 {
        self.resolved + self.withdrawn
    }
}

/// The counters' columns, in [`DayCounts`]' order.
pub const COUNTER_COLUMNS: [&str; 7] = [
    "received",
    "received_online",
    "resolved",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "withdrawn",
];

/// `agency_daily`.
pub static AGENCY_DAILY: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let mut fields = vec![
        ("day", Date32, false),
        ("agency", Utf8, false),
        ("province", Utf8, true),
    ];
    fields.extend(COUNTER_COLUMNS.iter().map(|name| (*name, Int64, false)));
    schema(&fields)
});

/// The local months whose days the events of `batch` count on (receipts, resolutions and
/// withdrawals, as [`Tables::count_day`] does, and corrected receipts), among `among`.
pub fn counted_months(
    batch: &Decoded,
    among: &BTreeMap<MonthKey, ColdMonth>,
) -> BTreeSet<MonthKey> {
    use chiso_ingest::DomainEvent as E;
    let Some(newest) = among.keys().next_back() else {
        return BTreeSet::new();
    };
    // Nearly every event is after the newest cold month: one comparison passes over it.
    let cold_until = day_start(month_first_day(newest + 1));
    let at = |event: &E| match event {
        E::DossierReceived(e) => Some(micros(&e.received_at.0)),
        E::DossierResolved(e) => Some(micros(&e.at.0)),
        E::DossierWithdrawn(e) => Some(micros(&e.at.0)),
        E::DossierCorrected(e) => e.received_at.as_ref().map(|at| micros(&at.0)),
        _ => None,
    };
    batch
        .events()
        .filter_map(at)
        .filter(|at| *at < cold_until)
        .map(local_month)
        .filter(|month| among.contains_key(month))
        .collect()
}

impl Tables {
    /// Counts on `agency`'s local day `day` (and its month's totals), marked changed.
    pub(super) fn count_day(&mut self, day: i32, agency: Arc<str>, count: impl Fn(&mut DayCounts)) {
        let month = month_of_day(day);
        self.dirty.insert(Partition::AgencyDaily(month));
        count(
            self.monthly
                .entry(month)
                .or_default()
                .entry(agency.clone())
                .or_default(),
        );
        count(
            self.daily
                .entry(month)
                .or_default()
                .entry((day, agency))
                .or_default(),
        );
    }

    /// Adds `counts` times `sign` on `agency`'s local day `day` (and its month's totals); a
    /// row whose counters all come to nothing goes.
    pub(super) fn count_change(
        &mut self,
        day: i32,
        agency: Arc<str>,
        counts: &DayCounts,
        sign: i64,
    ) {
        fn change<K: std::hash::Hash + Eq>(
            rows: &mut super::tables::Map<K, DayCounts>,
            key: K,
            counts: &DayCounts,
            sign: i64,
        ) {
            use std::collections::hash_map::Entry;
            match rows.entry(key) {
                Entry::Occupied(mut row) => {
                    row.get_mut().add_times(counts, sign);
                    if *row.get() == DayCounts::default() {
                        row.remove();
                    }
                }
                Entry::Vacant(row) => {
                    row.insert(DayCounts::default()).add_times(counts, sign);
                }
            }
        }
        let month = month_of_day(day);
        self.dirty.insert(Partition::AgencyDaily(month));
        change(
            self.monthly.entry(month).or_default(),
            agency.clone(),
            counts,
            sign,
        );
        change(
            self.daily.entry(month).or_default(),
            (day, agency),
            counts,
            sign,
        );
    }

    /// One month of `agency_daily`.
    pub fn daily_batch(&self, month: MonthKey) -> RecordBatch {
        let mut rows: Vec<_> = self.daily.get(&month).into_iter().flatten().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.day_rows(
            rows.iter()
                .map(|((day, agency), counts)| (*day, agency, *counts)),
        )
    }

    /// A month's totals by agency, as rows of `agency_daily` dated the month's first day:
    /// saved beside the month's days, so that a start reads a settled month's totals, not
    /// every day of it ([`Tables::restore_monthly`]).
    pub fn monthly_batch(&self, month: MonthKey) -> RecordBatch {
        let mut rows: Vec<_> = self.monthly.get(&month).into_iter().flatten().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let first = month_first_day(month);
        self.day_rows(
            rows.iter()
                .map(|(agency, counts)| (first, *agency, *counts)),
        )
    }

    /// Rows of `agency_daily`, in the order given.
    fn day_rows<'a>(
        &self,
        rows: impl Iterator<Item = (i32, &'a Arc<str>, &'a DayCounts)>,
    ) -> RecordBatch {
        let rows: Vec<(i32, &Arc<str>, &DayCounts)> = rows.collect();
        let keys = || rows.iter().map(|(day, agency, _)| (day, *agency));
        let counter = |get: fn(&DayCounts) -> i64| longs(rows.iter().map(|(_, _, c)| Some(get(c))));
        batch(
            &AGENCY_DAILY,
            vec![
                Arc::new(Date32Array::from_iter_values(keys().map(|(day, _)| *day))),
                strings(keys().map(|(_, agency)| &**agency)),
                // The agency's province on that day (a move later does not change it).
                optional_strings(
                    keys().map(|(day, agency)| {
                        self.province_at(agency, day_start(*day)).map(|p| &**p)
                    }),
                ),
                counter(|c| c.received),
                counter(|c| c.received_online),
                counter(|c| c.resolved),
                counter(|c| c.resolved_early),
                counter(|c| c.resolved_on_time),
                counter(|c| c.resolved_late),
                counter(|c| c.withdrawn),
            ],
        )
    }

    /// Adds to a month's totals the rows of its [`Tables::monthly_batch`] segment.
    pub(super) fn restore_monthly(
        &mut self,
        month: MonthKey,
        batch: &RecordBatch,
    ) -> Result<(), String> {
        let c = Columns(batch);
        let agencies = self.agencies_of(&c)?;
        let counters = c.counters()?;
        let total = self.monthly.entry(month).or_default();
        for row in 0..batch.num_rows() {
            let counts = DayCounts::of_row(&counters, row);
            let agency = agencies.at(row, &mut |text| Ok(self.names.intern(text)))?;
            let agency = agency.ok_or("a row without an agency")?;
            total.entry(agency).or_default().add(&counts);
        }
        Ok(())
    }

    /// Puts back a month's rows from its segment, adding them to its totals when `totals`
    /// (a month loaded at start; a cold month brought back has its totals already).
    pub(super) fn restore_daily(
        &mut self,
        month: MonthKey,
        batch: &RecordBatch,
        totals: bool,
    ) -> Result<(), String> {
        let c = Columns(batch);
        let day = c.get::<Date32Array>("day")?;
        let agencies = self.agencies_of(&c)?;
        let counters = c.counters()?;
        let daily = self.daily.entry(month).or_default();
        daily.reserve(batch.num_rows());
        let mut total = totals.then(|| self.monthly.entry(month).or_default());
        for row in 0..batch.num_rows() {
            let counts = DayCounts::of_row(&counters, row);
            let agency = agencies.at(row, &mut |text| Ok(self.names.intern(text)))?;
            let agency = agency.ok_or("a row without an agency")?;
            if let Some(total) = total.as_mut() {
                total.entry(agency.clone()).or_default().add(&counts);
            }
            daily.insert((day.value(row), agency), counts);
        }
        Ok(())
    }

    /// The `agency` column of a segment of `agency_daily`: read as a dictionary at a restart,
    /// each agency is interned once, not once a row.
    fn agencies_of<'a>(&mut self, c: &Columns<'a>) -> Result<Names<'a>, String> {
        Names::of(c, "agency", &mut |text| Ok(self.intern(text)))?
            .ok_or_else(|| "column agency is missing".to_owned())
    }
}

impl Columns<'_> {
    /// The counter columns of `agency_daily`, in [`COUNTER_COLUMNS`]' order.
    fn counters(&self) -> Result<Vec<&Int64Array>, String> {
        COUNTER_COLUMNS
            .iter()
            .map(|name| self.int64(name))
            .collect()
    }
}

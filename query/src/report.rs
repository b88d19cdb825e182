//! The period report (Biểu 06): `dossier_report(DATE 'from', DATE 'to')`, one row per agency.
//!
//! Computed when the query runs (inside its plan: under its time limit and cancellation) from
//! `agency_daily`'s sums and the dossiers open at the period's end (see [`dossier_report`]),
//! from event times, so a report of a past period stays what it was even after later events.
//! A filter on `province` narrows the agencies counted.

use crate::local_time::{
    date_of, day_number, day_start, local_day, month_first_day, month_of_day, DAY_LIMIT,
};
use crate::projections::agency_daily::{DayCounts, COUNTER_COLUMNS};
use crate::projections::dossiers::{agency_key, decode_pauses, paused_micros, DossierMonth};
use crate::projections::tables::ColdMonth;
use crate::projections::{sealed, Projections, Tables};
use async_trait::async_trait;
use chiso_ingest::AgencyKind;
use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

/// The counted columns, in Biểu 06 order.
const COUNTS: [&str; 12] = [
    "carried_over",
    "received_online",
    "received_direct_postal",
    "received_total",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_total",
    "withdrawn",
    "open_within_deadline",
    "open_overdue",
    "open_total",
];

/// The report's columns: the agency, the counts, then the agency's province and kind.
pub static REPORT: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![Field::new("agency", DataType::Utf8, false)];
    fields.extend(
        COUNTS
            .iter()
            .map(|name| Field::new(*name, DataType::Int64, false)),
    );
    fields.push(Field::new("province", DataType::Utf8, true));
    fields.push(Field::new("kind", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// The columns of a sealed file the report reads (of the rows open at the period's end).
const SEALED_COLUMNS: [&str; 6] = [
    "agency",
    "received_at",
    "due_at",
    "resolved_at",
    "withdrawn_at",
    "pauses",
];

#[derive(Default, Clone, Copy)]
struct Row([i64; 12]);

impl Row {
    /// Adds counts of days before the period (what is carried over: received less closed)
    /// or within it (received, resolved by timeliness, withdrawn).
    fn add(&mut self, counts: &DayCounts, before: bool) {
        let row = &mut self.0;
        if before {
            let carried = counts.received - counts.closed();
            row[0] += carried;
            row[3] += carried;
            return;
        }
        row[1] += counts.received_online;
        row[2] += counts.received - counts.received_online;
        row[3] += counts.received;
        row[4] += counts.resolved_early;
        row[5] += counts.resolved_on_time;
        row[6] += counts.resolved_late;
        row[7] += counts.resolved;
        row[8] += counts.withdrawn;
    }
}

/// The codes of the agencies a report counts (of the provinces it is filtered to).
type Agencies = HashSet<Arc<str>, foldhash::fast::RandomState>;

/// The period `from..=to` (local days) as instants, and the counts so far.
struct Period {
    from_day: i32,
    to_day: i32,
    end: i64,
    rows: HashMap<Arc<str>, Row, foldhash::fast::RandomState>,
}

impl Period {
    fn new(from: NaiveDate, to: NaiveDate) -> Self {
        let (from_day, to_day) = (day_number(from), day_number(to));
        Self {
            from_day,
            to_day,
            end: day_start(to_day + 1),
            rows: HashMap::default(),
        }
    }

    fn row(&mut self, agency: &str) -> &mut Row {
        if !self.rows.contains_key(agency) {
            self.rows.insert(agency.into(), Row::default());
        }
        self.rows.get_mut(agency).expect("just inserted")
    }

    /// Adds an agency's counts of days before the period (what is carried over: received
    /// less closed) or within it (received, resolved by timeliness, withdrawn).
    fn add(&mut self, agency: &str, counts: &DayCounts, before: bool) {
        self.row(agency).add(counts, before);
    }

    /// Every column but the open ones, from `agency_daily`: whole months from their totals,
    /// the months the period starts or ends in day by day.
    /// Returns the months to count day by day whose rows are only in their segment (cold):
    /// [`Period::add_days`] counts them once read.
    fn add_counts(&mut self, tables: &Tables, wanted: Option<&Agencies>) -> Vec<ColdMonth> {
        let mut cold = Vec::new();
        let (from_day, to_day) = (self.from_day, self.to_day);
        // The wanted agencies' rows, summed here and added once: one lookup a month each.
        let mut sums: Vec<(&Arc<str>, Row)> = wanted
            .into_iter()
            .flatten()
            .map(|agency| (agency, Row::default()))
            .collect();
        for (month, totals) in tables.monthly.range(..=month_of_day(to_day)) {
            let (first, last) = (month_first_day(*month), month_first_day(month + 1) - 1);
            let whole = if last < from_day {
                Some(true)
            } else if first >= from_day && last <= to_day {
                Some(false)
            } else {
                None
            };
            match (whole, wanted) {
                (Some(before), Some(_)) => {
                    for (agency, sum) in &mut sums {
                        if let Some(counts) = totals.get(*agency) {
                            sum.add(counts, before);
                        }
                    }
                }
                (Some(before), None) => {
                    for (agency, counts) in totals {
                        self.add(agency, counts, before);
                    }
                }
                (None, _) => {
                    if let Some(month) = tables.cold_daily.get(month) {
                        cold.push(month.clone());
                    }
                    let days = tables.daily.get(month).into_iter().flatten();
                    for ((day, agency), counts) in days {
                        self.add_day(*day, agency, counts, wanted);
                    }
                }
            }
        }
        for (agency, sum) in sums {
            let row = &mut self.row(agency).0;
            for (total, n) in row.iter_mut().zip(sum.0) {
                *total += n;
            }
        }
        cold
    }

    /// Adds one agency's day, if it is before the period's end and the agency is wanted.
    fn add_day(&mut self, day: i32, agency: &str, counts: &DayCounts, wanted: Option<&Agencies>) {
        if day <= self.to_day && wanted.is_none_or(|w| w.contains(agency)) {
            self.add(agency, counts, day < self.from_day);
        }
    }

    /// Adds the days of cold months of `agency_daily`, read from their segments.
    fn add_days(&mut self, batch: &RecordBatch, wanted: Option<&Agencies>) -> Result<()> {
        let day = column::<Date32Array>(batch, "day")?;
        let agency = column::<StringArray>(batch, "agency")?;
        let counters: Vec<&Int64Array> = COUNTER_COLUMNS
            .iter()
            .map(|name| column::<Int64Array>(batch, name))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let counts = DayCounts::of_row(&counters, row);
            self.add_day(day.value(row), agency.value(row), &counts, wanted);
        }
        Ok(())
    }

    /// Counts a dossier received before the period's end and still open at it, by whether it
    /// is overdue then (`due_at_end`: its effective due time at the end).
    fn count_open(&mut self, agency: &str, due_at_end: i64) {
        let overdue = local_day(due_at_end) <= self.to_day;
        let row = &mut self.row(agency).0;
        row[if overdue { 10 } else { 9 }] += 1;
        row[11] += 1;
    }

    /// Whether a dossier received at `received_at` and closed at `closed` is open at the end.
    fn open_at_end(&self, received_at: i64, closed: Option<i64>) -> bool {
        received_at < self.end && closed.is_none_or(|at| at >= self.end)
    }

    /// Counts the rows open at the end of a batch read from a sealed file.
    fn count_sealed(&mut self, batch: &RecordBatch, wanted: Option<&Agencies>) -> Result<()> {
        let text = |name: &str| column::<StringArray>(batch, name);
        let time = |name: &str| column::<TimestampMicrosecondArray>(batch, name);
        let (agency, pauses) = (text("agency")?, text("pauses")?);
        let (received, due) = (time("received_at")?, time("due_at")?);
        let (resolved, withdrawn) = (time("resolved_at")?, time("withdrawn_at")?);
        let at = |a: &TimestampMicrosecondArray, i: usize| a.is_valid(i).then(|| a.value(i));
        let end = self.end;
        for i in 0..batch.num_rows() {
            let closed = at(resolved, i).or(at(withdrawn, i));
            if !self.open_at_end(received.value(i), closed)
                || wanted.is_some_and(|w| !w.contains(agency.value(i)))
            {
                continue;
            }
            let spans = pauses.is_valid(i).then(|| decode_pauses(pauses.value(i)));
            let paused = spans.flatten().map_or(0, |p| paused_micros(&p, end));
            self.count_open(agency.value(i), due.value(i) + paused);
        }
        Ok(())
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| DataFusionError::Internal(format!("sealed column {name} is unreadable")))
}

/// The report of the local days `from..=to`, for the agencies of `provinces` (every agency
/// when `None`).
///
/// Receipts, resolutions, withdrawals and what is carried over are sums of `agency_daily`
/// (each dossier closes once, after its receipt: the write model's rules); only the dossiers
/// open at the period's end are counted one by one, for whether they are overdue then: the
/// rows in memory, and the sealed months with a dossier that closed after the end.
pub fn dossier_report(
    projections: &Projections,
    from: NaiveDate,
    to: NaiveDate,
    provinces: Option<&BTreeSet<String>>,
) -> Result<RecordBatch> {
    let mut period = Period::new(from, to);
    let until = month_of_day(period.to_day);
    let end = period.end;
    let late_closers = |m: &DossierMonth| m.sealed.as_ref().is_some_and(|b| b.last_closed >= end);
    let ((agencies, wanted, cold), files) =
        projections.read_with_sealed(until, late_closers, |tables| {
            let wanted: Option<Agencies> = provinces.map(|provinces| {
                tables
                    .agencies
                    .iter()
                    .filter(|(_, a)| provinces.contains(&**a.at(end - 1).2))
                    .map(|(code, _)| Arc::from(code.as_str()))
                    .collect()
            });
            let cold = period.add_counts(tables, wanted.as_ref());
            let keys: Option<HashSet<u64, foldhash::fast::RandomState>> = wanted
                .as_ref()
                .map(|w| w.iter().map(|a| agency_key(a)).collect());
            let wanted_key = |key: u64| keys.as_ref().is_none_or(|k| k.contains(&key));
            let months = tables.dossiers.months.range(..=until).map(|(_, m)| m);
            for month in months.filter(|m| m.settled_at() >= end) {
                for d in month.open_at_of(end, wanted_key) {
                    if d.received_at < end && wanted.as_ref().is_none_or(|w| w.contains(&*d.agency))
                    {
                        period.count_open(&d.agency, d.effective_due_at(end));
                    }
                }
            }
            let agencies = tables
                .agencies
                .iter()
                .filter(|(code, _)| wanted.as_ref().is_none_or(|w| w.contains(code.as_str())))
                // Its province as the period ends (an agency moved later reports where it was).
                .map(|(code, a)| (code.clone(), (a.at(end - 1).2.clone(), a.kind)))
                .collect::<HashMap<_, _>>();
            (agencies, wanted, cold)
        });
    for month in cold {
        let path = projections.segment_path(&month.file);
        let batches = sealed::read_base(&path, &month.base(), None)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for batch in batches {
            period.add_days(&batch, wanted.as_ref())?;
        }
    }
    for file in files {
        let agency_in = |min: &str, max: &str| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|a| (min..=max).contains(&&**a)))
        };
        let batches =
            sealed::read_base_where(&file.path, &file.base, &SEALED_COLUMNS, agency_in, end)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for batch in batches {
            period.count_sealed(&batch, wanted.as_ref())?;
        }
    }
    let by_code: BTreeMap<Arc<str>, Row> = period
        .rows
        .into_iter()
        .filter(|(_, row)| row.0.iter().any(|n| *n != 0))
        .collect();
    Ok(batch(&agencies, by_code))
}

fn batch(
    agencies: &HashMap<String, (Arc<str>, AgencyKind)>,
    rows: BTreeMap<Arc<str>, Row>,
) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        rows.keys().map(|code| &**code),
    ))];
    for column in 0..COUNTS.len() {
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.values().map(|row| row.0[column]),
        )));
    }
    let agency = |code: &Arc<str>| agencies.get(&**code);
    columns.push(Arc::new(
        rows.keys()
            .map(|code| agency(code).map(|a| &*a.0))
            .collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        rows.keys()
            .map(|code| agency(code).map(|a| a.1.as_str()))
            .collect::<StringArray>(),
    ));
    RecordBatch::try_new(REPORT.clone(), columns).expect("columns match the report")
}

/// `dossier_report(DATE, DATE)` as a DataFusion table function.
#[derive(Clone)]
pub struct DossierReportFunction {
    projections: Projections,
}

impl std::fmt::Debug for DossierReportFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dossier_report")
    }
}

impl DossierReportFunction {
    /// Reports over `projections`.
    pub fn new(projections: Projections) -> Self {
        Self { projections }
    }
}

impl TableFunctionImpl for DossierReportFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [from, to] = args.exprs() else {
            return plan_err!(
                "dossier_report takes two dates: dossier_report(DATE 'from', DATE 'to')"
            );
        };
        let (from, to) = (
            date_argument(from, "from", "dossier_report")?,
            date_argument(to, "to", "dossier_report")?,
        );
        if to < from {
            return plan_err!("dossier_report: 'to' ({to}) is before 'from' ({from})");
        }
        Ok(Arc::new(ReportTable {
            projections: self.projections.clone(),
            from,
            to,
            provinces: None,
        }))
    }
}

/// One period's report, computed when its plan runs.
#[derive(Clone)]
struct ReportTable {
    projections: Projections,
    from: NaiveDate,
    to: NaiveDate,
    /// The provinces a filter allows (every one when `None`).
    provinces: Option<Arc<BTreeSet<String>>>,
}

impl std::fmt::Debug for ReportTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dossier_report({}, {})", self.from, self.to)
    }
}

#[async_trait]
impl TableProvider for ReportTable {
    fn schema(&self) -> SchemaRef {
        REPORT.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter on the province narrows the agencies counted; DataFusion still applies it.
        Ok(filters
            .iter()
            .map(|filter| match provinces_of(filter) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let provinces = filters
            .iter()
            .filter_map(provinces_of)
            .reduce(|a, b| a.intersection(&b).cloned().collect());
        let table = Self {
            provinces: provinces.map(Arc::new),
            ..self.clone()
        };
        // Rows of agencies outside the caller's scope are left out inside the plan; a limit
        // then applies after that filter, above this scan.
        let scope = crate::scope::of(state)?;
        let limit = limit.filter(|_| scope.0.is_none());
        crate::scope::narrowed(&scope, &REPORT, "agency", projection, |projection| {
            let exec = StreamingTableExec::try_new(
                REPORT.clone(),
                vec![Arc::new(table)],
                projection,
                Vec::new(),
                false,
                limit,
            )?;
            Ok(Arc::new(exec) as Arc<dyn ExecutionPlan>)
        })
    }
}

impl PartitionStream for ReportTable {
    fn schema(&self) -> &SchemaRef {
        &REPORT
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let report = self.clone();
        let computed = async move {
            let counted = tokio::task::spawn_blocking(move || {
                let provinces = report.provinces.as_deref();
                dossier_report(&report.projections, report.from, report.to, provinces)
            })
            .await;
            counted.map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        Box::pin(RecordBatchStreamAdapter::new(
            REPORT.clone(),
            futures_util::stream::once(computed),
        ))
    }
}

/// A date literal: `DATE '2019-01-01'`, `'2019-01-01'` or a cast of one.
/// The date literal a table function `function` takes as its argument `name`.
pub(crate) fn date_argument(expr: &Expr, name: &str, function: &str) -> Result<NaiveDate> {
    let date = match expr {
        Expr::Literal(ScalarValue::Date32(Some(day)), _) if day.abs() < DAY_LIMIT => {
            Some(date_of(*day))
        }
        Expr::Literal(ScalarValue::Utf8(Some(text)), _) => text.parse().ok(),
        Expr::Cast(cast) => return date_argument(&cast.expr, name, function),
        Expr::TryCast(cast) => return date_argument(&cast.expr, name, function),
        _ => None,
    };
    match date {
        Some(date) => Ok(date),
        None => plan_err!(
            "{function}: '{name}' must be a date literal such as DATE '2019-01-01', not {expr}"
        ),
    }
}

/// The provinces a filter allows, when it is `province = '…'`, `province IN (…)` or an `OR`
/// of those.
fn provinces_of(filter: &Expr) -> Option<BTreeSet<String>> {
    // SQL literals are string views: the planner may compare `CAST(province AS Utf8View)`.
    fn is_province(expr: &Expr) -> bool {
        match expr {
            Expr::Column(c) => c.name == "province",
            Expr::Cast(cast) => is_province(&cast.expr),
            _ => false,
        }
    }
    let province = |expr: &Expr| is_province(expr).then_some(());
    crate::sealed_filter::equalities(filter, &province)
        .map(|((), provinces)| provinces.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{cast, col, lit};

    #[test]
    fn a_province_filter_is_read_through_a_cast_to_views() {
        let viewed = cast(col("province"), DataType::Utf8View);
        let one = viewed
            .clone()
            .eq(lit(ScalarValue::Utf8View(Some("26".into()))));
        assert_eq!(provinces_of(&one), Some(BTreeSet::from(["26".to_owned()])));
        let either = col("province")
            .eq(lit("26"))
            .or(lit("01").eq(viewed.clone()));
        assert_eq!(
            provinces_of(&either),
            Some(BTreeSet::from(["01".to_owned(), "26".to_owned()]))
        );
        let listed = col("province").in_list(vec![lit("79"), lit("48")], false);
        assert_eq!(
            provinces_of(&listed),
            Some(BTreeSet::from(["48".to_owned(), "79".to_owned()]))
        );
        assert_eq!(
            provinces_of(&col("province").in_list(vec![lit("79")], true)),
            None
        );
        assert_eq!(provinces_of(&col("agency").eq(lit("26"))), None);
        assert_eq!(provinces_of(&viewed.not_eq(lit("26"))), None);
    }
}

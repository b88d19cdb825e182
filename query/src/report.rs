//! The period report (Biểu 06): `dossier_report(DATE 'from', DATE 'to')`, one row per agency.
//!
//! Computed when the query runs (inside its plan: under its time limit and cancellation), in
//! one pass over the dossiers received up to `to` — the rows in memory, then the sealed months
//! not settled before `from` — from their times, so a report of a past period stays what it
//! was even after later events.

use crate::local_time::{date_of, day_number, day_start, local_day, month_of_day, DAY_LIMIT};
use crate::projections::dossiers::{decode_pauses, paused_micros, Dossier, Timeliness};
use crate::projections::{sealed, Projections};
use async_trait::async_trait;
use chiso_ingest::AgencyKind;
use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use std::collections::{BTreeMap, HashMap};
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

/// The columns of a sealed file the report reads.
const SEALED_COLUMNS: [&str; 8] = [
    "agency",
    "channel",
    "received_at",
    "due_at",
    "resolved_at",
    "withdrawn_at",
    "timeliness",
    "pauses",
];

#[derive(Default, Clone, Copy)]
struct Row([i64; 12]);

impl Row {
    fn add(&mut self, column: usize) {
        self.0[column] += 1;
    }
}

/// The period `from..=to` (local days) as instants, and the counts so far.
struct Period {
    start: i64,
    end: i64,
    to_day: i32,
    rows: HashMap<Arc<str>, Row, foldhash::fast::RandomState>,
}

/// What the report needs of one dossier.
struct Facts {
    received_at: i64,
    online: bool,
    resolved_at: Option<i64>,
    withdrawn_at: Option<i64>,
    timeliness: Option<Timeliness>,
}

impl Period {
    fn new(from: NaiveDate, to: NaiveDate) -> Self {
        let (from_day, to_day) = (day_number(from), day_number(to));
        Self {
            start: day_start(from_day),
            end: day_start(to_day + 1),
            to_day,
            rows: HashMap::default(),
        }
    }

    fn row(&mut self, agency: &str) -> &mut Row {
        if !self.rows.contains_key(agency) {
            self.rows.insert(agency.into(), Row::default());
        }
        self.rows.get_mut(agency).expect("just inserted")
    }

    /// Counts a dossier; `due_at_end` is its effective due time at the end of the period.
    fn count(&mut self, agency: &str, d: &Facts, due_at_end: impl FnOnce() -> i64) {
        if d.received_at >= self.end {
            return;
        }
        let (start, end, to_day) = (self.start, self.end, self.to_day);
        let closed = d.resolved_at.or(d.withdrawn_at);
        let carried = d.received_at < start;
        if carried && closed.is_some_and(|at| at < start) {
            return;
        }
        let row = self.row(agency);
        if carried {
            row.add(0);
        } else if d.online {
            row.add(1);
        } else {
            row.add(2);
        }
        row.add(3);
        let within = |at: Option<i64>| at.is_some_and(|at| (start..end).contains(&at));
        if within(d.resolved_at) {
            row.add(match d.timeliness {
                Some(Timeliness::Early) => 4,
                Some(Timeliness::OnTime) => 5,
                _ => 6,
            });
            row.add(7);
        }
        if within(d.withdrawn_at) {
            row.add(8);
        }
        if closed.is_none_or(|at| at >= end) {
            let overdue = local_day(due_at_end()) <= to_day;
            row.add(if overdue { 10 } else { 9 });
            row.add(11);
        }
    }

    fn count_dossier(&mut self, d: &Dossier) {
        let facts = Facts {
            received_at: d.received_at,
            online: d.channel == chiso_ingest::Channel::Online,
            resolved_at: d.resolved_at,
            withdrawn_at: d.withdrawn_at,
            timeliness: d.timeliness(),
        };
        let end = self.end;
        self.count(&d.agency, &facts, || d.effective_due_at(end));
    }

    /// Counts the rows of a batch read from a sealed file.
    fn count_sealed(&mut self, batch: &RecordBatch) -> Result<()> {
        let text = |name: &str| column::<StringArray>(batch, name);
        let time = |name: &str| column::<TimestampMicrosecondArray>(batch, name);
        let (agency, channel, timeliness, pauses) = (
            text("agency")?,
            text("channel")?,
            text("timeliness")?,
            text("pauses")?,
        );
        let (received, due) = (time("received_at")?, time("due_at")?);
        let (resolved, withdrawn) = (time("resolved_at")?, time("withdrawn_at")?);
        let at = |a: &TimestampMicrosecondArray, i: usize| a.is_valid(i).then(|| a.value(i));
        let end = self.end;
        for i in 0..batch.num_rows() {
            let facts = Facts {
                received_at: received.value(i),
                online: channel.value(i) == "online",
                resolved_at: at(resolved, i),
                withdrawn_at: at(withdrawn, i),
                timeliness: timeliness
                    .is_valid(i)
                    .then(|| Timeliness::parse(timeliness.value(i)))
                    .flatten(),
            };
            let due_at_end = || {
                let spans = pauses.is_valid(i).then(|| decode_pauses(pauses.value(i)));
                due.value(i) + spans.flatten().map_or(0, |p| paused_micros(&p, end))
            };
            self.count(agency.value(i), &facts, due_at_end);
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

/// The report of the local days `from..=to`.
pub fn dossier_report(
    projections: &Projections,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RecordBatch> {
    let mut period = Period::new(from, to);
    let until = month_of_day(period.to_day);
    let (agencies, files) = projections.read_with_sealed(until, period.start, |tables| {
        let months = tables.dossiers.months.range(..=until).map(|(_, m)| m);
        // A month whose dossiers all closed before the period owes it nothing.
        let start = period.start;
        for month in months.filter(|m| m.settled_at() >= start) {
            for dossier in &month.rows {
                period.count_dossier(dossier);
            }
        }
        tables
            .agencies
            .iter()
            .map(|(code, a)| (code.clone(), (a.province.clone(), a.kind)))
            .collect::<HashMap<_, _>>()
    });
    for file in files {
        let batches = sealed::read_base(&file.path, &file.base, Some(&SEALED_COLUMNS))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for batch in batches {
            period.count_sealed(&batch)?;
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
        let (from, to) = (date_argument(from, "from")?, date_argument(to, "to")?);
        if to < from {
            return plan_err!("dossier_report: 'to' ({to}) is before 'from' ({from})");
        }
        Ok(Arc::new(ReportTable {
            projections: self.projections.clone(),
            from,
            to,
        }))
    }
}

/// One period's report, computed when its plan runs.
#[derive(Clone)]
struct ReportTable {
    projections: Projections,
    from: NaiveDate,
    to: NaiveDate,
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exec = StreamingTableExec::try_new(
            REPORT.clone(),
            vec![Arc::new(self.clone())],
            projection,
            Vec::new(),
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
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
                dossier_report(&report.projections, report.from, report.to)
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
fn date_argument(expr: &Expr, name: &str) -> Result<NaiveDate> {
    let date = match expr {
        Expr::Literal(ScalarValue::Date32(Some(day)), _) if day.abs() < DAY_LIMIT => {
            Some(date_of(*day))
        }
        Expr::Literal(ScalarValue::Utf8(Some(text)), _) => text.parse().ok(),
        Expr::Cast(cast) => return date_argument(&cast.expr, name),
        Expr::TryCast(cast) => return date_argument(&cast.expr, name),
        _ => None,
    };
    match date {
        Some(date) => Ok(date),
        None => plan_err!(
            "dossier_report: '{name}' must be a date literal such as DATE '2019-01-01', not {expr}"
        ),
    }
}

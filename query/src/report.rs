//! The period report (Biểu 06): `dossier_report(DATE 'from', DATE 'to')`, one row per agency.
//!
//! Computed in one pass over the dossiers received up to `to`, from their times, so a report
//! of a past period stays what it was even after later events.

use crate::local_time::{date_of, day_number, day_start, local_day, month_of_day, DAY_LIMIT};
use crate::projections::model::{Dossier, Tables, Timeliness};
use crate::projections::Projections;
use chrono::NaiveDate;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
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

#[derive(Default, Clone, Copy)]
struct Row([i64; 12]);

impl Row {
    fn add(&mut self, column: usize) {
        self.0[column] += 1;
    }
}

/// The report of the local days `from..=to`.
pub fn dossier_report(tables: &Tables, from: NaiveDate, to: NaiveDate) -> RecordBatch {
    let (from_day, to_day) = (day_number(from), day_number(to));
    let (start, end) = (day_start(from_day), day_start(to_day + 1));
    // Agency codes are interned: one allocation per code, so its address is its key.
    let mut rows: AgencyRows = HashMap::default();
    let partitions = tables
        .dossiers
        .range(..=month_of_day(to_day))
        .map(|(_, p)| p);
    // A partition whose dossiers all closed before the period owes it nothing.
    for partition in partitions.filter(|p| p.settled_at() >= start) {
        for dossier in &partition.rows {
            if dossier.received_at >= end {
                continue;
            }
            count(dossier, start, end, to_day, &mut rows);
        }
    }
    let mut by_code: BTreeMap<&str, Row> = BTreeMap::new();
    for (code, row) in rows.into_values() {
        let total = by_code.entry(code).or_default();
        for (sum, n) in total.0.iter_mut().zip(row.0) {
            *sum += n;
        }
    }
    by_code.retain(|_, row| row.0.iter().any(|n| *n != 0));
    batch(tables, by_code)
}

type AgencyRows<'a> = HashMap<usize, (&'a str, Row), foldhash::fast::FixedState>;

fn count<'a>(d: &'a Dossier, start: i64, end: i64, to_day: i32, rows: &mut AgencyRows<'a>) {
    let closed = d.closed_at();
    let carried = d.received_at < start;
    if carried && closed.is_some_and(|at| at < start) {
        return;
    }
    let key = d.agency.as_ptr() as usize;
    let (_, row) = rows
        .entry(key)
        .or_insert_with(|| (&*d.agency, Row::default()));
    if carried {
        row.add(0);
    } else if d.channel == chiso_ingest::Channel::Online {
        row.add(1);
    } else {
        row.add(2);
    }
    row.add(3);
    let within = |at: Option<i64>| at.is_some_and(|at| (start..end).contains(&at));
    if within(d.resolved_at) {
        row.add(match d.timeliness() {
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
        let overdue = local_day(d.effective_due_at(end)) <= to_day;
        row.add(if overdue { 10 } else { 9 });
        row.add(11);
    }
}

fn batch(tables: &Tables, rows: BTreeMap<&str, Row>) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(rows.keys()))];
    for column in 0..COUNTS.len() {
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.values().map(|row| row.0[column]),
        )));
    }
    let agency = |code: &&str| tables.agencies.get(*code);
    columns.push(Arc::new(
        rows.keys()
            .map(|code| agency(code).map(|a| &*a.province))
            .collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        rows.keys()
            .map(|code| agency(code).map(|a| a.kind))
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
        let batch = self
            .projections
            .read(|tables| dossier_report(tables, from, to));
        Ok(Arc::new(MemTable::try_new(
            REPORT.clone(),
            vec![vec![batch]],
        )?))
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

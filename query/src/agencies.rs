//! Agencies over time in SQL: `agencies_at(DATE)` (the hierarchy as it was on a day),
//! `agency_lineage` (who carried on an agency's work, and when it moved) and
//! `current_agency(code)` (the unit of today that history rolls up to). Each reads the
//! tables as they are when its query runs.

use crate::calendar::days_since_epoch;
use crate::local_time::day_start;
use crate::projections::agencies::Agency;
use crate::projections::columns::{optional_strings, schema, strings, times, timestamp};
use crate::projections::Tables;
use crate::providers::SnapshotTable;
use crate::report::date_argument;
use crate::Projections;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::sync::{Arc, LazyLock};

/// `agencies_at(DATE)`: the columns of `agencies` that change over time, as they were.
pub static AGENCIES_AT: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("code", Utf8, false),
        ("name", Utf8, false),
        ("kind", Utf8, false),
        ("parent", Utf8, true),
        ("province", Utf8, false),
    ])
});

/// `agency_lineage`.
pub static AGENCY_LINEAGE: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema(&[
        ("agency", Utf8, false),
        ("successor", Utf8, true),
        ("since", timestamp(), false),
        ("change", Utf8, false),
    ])
});

/// Registers `agency_lineage`, `agencies_at` and `current_agency` on `context`.
pub fn register(context: &SessionContext, projections: &Projections) -> Result<()> {
    let lineage = {
        let projections = projections.clone();
        SnapshotTable::new(AGENCY_LINEAGE.clone(), TableType::Base, move || {
            Ok(projections.read(lineage_batch))
        })
    };
    context.register_table("agency_lineage", Arc::new(lineage))?;
    context.register_udtf(
        "agencies_at",
        Arc::new(AgenciesAt {
            projections: projections.clone(),
        }),
    );
    context.register_udf(ScalarUDF::new_from_impl(CurrentAgency {
        signature: Signature::user_defined(Volatility::Stable),
        projections: projections.clone(),
    }));
    Ok(())
}

/// Every agency that existed at `at` (µs), as it was then, by code.
fn agencies_at_batch(tables: &Tables, at: i64) -> RecordBatch {
    let mut rows: Vec<(&String, &Agency)> = tables
        .agencies
        .iter()
        .filter(|(_, agency)| agency.exists_at(at))
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let states: Vec<_> = rows.iter().map(|(_, agency)| agency.at(at)).collect();
    let columns = vec![
        strings(rows.iter().map(|(code, _)| code.as_str())),
        strings(states.iter().map(|(name, _, _)| *name)),
        strings(rows.iter().map(|(_, agency)| agency.kind.as_str())),
        optional_strings(states.iter().map(|(_, parent, _)| *parent)),
        strings(states.iter().map(|(_, _, province)| &***province)),
    ];
    RecordBatch::try_new(AGENCIES_AT.clone(), columns).expect("the columns of agencies_at")
}

/// One row per move (`successor`: the new parent), merger (`successor`: the agency merged
/// into) and dissolution (no successor), by agency and time.
fn lineage_batch(tables: &Tables) -> RecordBatch {
    let mut rows: Vec<(&str, Option<&str>, i64, &str)> = Vec::new();
    for (code, agency) in &tables.agencies {
        let parents = agency
            .earlier
            .iter()
            .map(|e| (e.parent.as_deref(), Some(e.until)))
            .chain(std::iter::once((agency.parent.as_deref(), None)));
        let mut previous: Option<(Option<&str>, Option<i64>)> = None;
        for (parent, until) in parents {
            if let Some((before, Some(since))) = previous {
                if before != parent {
                    rows.push((code, parent, since, "moved"));
                }
            }
            previous = Some((parent, until));
        }
        if let Some(to) = agency.valid_to {
            match &agency.successor {
                Some(into) => rows.push((code, Some(into), to, "merged")),
                None => rows.push((code, None, to, "dissolved")),
            }
        }
    }
    rows.sort_unstable_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
    let columns = vec![
        strings(rows.iter().map(|r| r.0)),
        optional_strings(rows.iter().map(|r| r.1)),
        times(rows.iter().map(|r| Some(r.2))),
        strings(rows.iter().map(|r| r.3)),
    ];
    RecordBatch::try_new(AGENCY_LINEAGE.clone(), columns).expect("the columns of agency_lineage")
}

/// The agency of today that `code`'s work went to: itself while it exists; for a merged one,
/// where it was merged; for a dissolved one, the agency it was under when dissolved — each
/// followed on until one that exists. `None` for an unknown code, or a dissolved agency that
/// was under none.
pub fn current_agency<'a>(tables: &'a Tables, code: &'a str) -> Option<&'a str> {
    let mut code = code;
    // Each step goes to an agency that outlived the last: the chain ends; the bound is a guard.
    for _ in 0..64 {
        let agency = tables.agencies.get(code)?;
        if agency.valid_to.is_none() {
            return Some(code);
        }
        code = agency.successor.as_deref().or(agency.parent.as_deref())?;
    }
    None
}

/// `agencies_at(DATE)`.
struct AgenciesAt {
    projections: Projections,
}

impl std::fmt::Debug for AgenciesAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("agencies_at")
    }
}

impl TableFunctionImpl for AgenciesAt {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [date] = args.exprs() else {
            return plan_err!("agencies_at takes one date: agencies_at(DATE '2025-07-01')");
        };
        let date = date_argument(date, "date", "agencies_at")?;
        // As the day ends: everything dated before the next day's start.
        let at = day_start(days_since_epoch(date) + 1) - 1;
        let projections = self.projections.clone();
        Ok(Arc::new(SnapshotTable::new(
            AGENCIES_AT.clone(),
            TableType::Temporary,
            move || Ok(projections.read(|tables| agencies_at_batch(tables, at))),
        )))
    }
}

impl std::fmt::Debug for CurrentAgency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("current_agency")
    }
}

/// `current_agency(code)`.
struct CurrentAgency {
    signature: Signature,
    projections: Projections,
}

// One per engine: equal by name.
impl PartialEq for CurrentAgency {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for CurrentAgency {}
impl std::hash::Hash for CurrentAgency {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "current_agency".hash(state);
    }
}

static CURRENT_AGENCY_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DocSection {
            include: true,
            label: "Agencies over time (chiso)",
            description: Some("Tables `agencies`, `agency_lineage`, function `agencies_at`"),
        },
        "The agency of today that an agency's work went to: itself while it exists; for a \
         merged one, the agency it was merged into; for a dissolved one, the agency it was \
         under — followed on until one that exists. Rolls history up to today's units: \
         `GROUP BY current_agency(province)`. NULL for an unknown code.",
        "current_agency(code)",
    )
    .with_argument("code", "An agency's code (or a province's).")
    .with_sql_example("SELECT current_agency('26'); -- '25' after 1 July 2025")
    .build()
});

impl ScalarUDFImpl for CurrentAgency {
    fn name(&self) -> &str {
        "current_agency"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null] => {
                Ok(vec![DataType::Utf8])
            }
            [other] => plan_err!("current_agency takes an agency's code, not {other}"),
            _ => plan_err!("current_agency takes one argument: an agency's code"),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let codes = cast(&arrays[0], &DataType::Utf8)?;
        let codes = codes
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("a string array");
        let result: StringArray = self.projections.read(|tables| {
            codes
                .iter()
                .map(|code| current_agency(tables, code?))
                .collect()
        });
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(result) as ArrayRef))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&CURRENT_AGENCY_DOC)
    }
}

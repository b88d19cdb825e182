//! The calendar in SQL: the `calendar` table and the functions `working_days(from, to)` and
//! `add_working_days(time, n)`, which read the calendar in force for each batch.

use super::{CalendarSource, CALENDAR};
use crate::local_time::local_day;
use crate::providers::SnapshotTable;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::sync::{Arc, LazyLock};

/// Registers the table and the functions on `context`.
pub fn register(context: &SessionContext, source: &CalendarSource) -> Result<()> {
    let table = {
        let source = source.clone();
        SnapshotTable::new(CALENDAR.clone(), TableType::Base, move || {
            Ok(source.current().table())
        })
    };
    context.register_table("calendar", Arc::new(table))?;
    context.register_udf(CalendarFunction::udf(WORKING_DAYS, source));
    context.register_udf(CalendarFunction::udf(ADD_WORKING_DAYS, source));
    Ok(())
}

const SECTION: DocSection = DocSection {
    include: true,
    label: "Working days (chiso)",
    description: Some("Vietnam's public-sector calendar: table `calendar`"),
};

/// The type a time argument is read as: a date, or a time in µs (with its zone, if any).
fn time_type(name: &str, data_type: &DataType) -> Result<DataType> {
    Ok(match data_type {
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Date32
        | DataType::Date64
        | DataType::Null
        | DataType::Utf8
        | DataType::Utf8View
        | DataType::LargeUtf8 => DataType::Date32,
        other => {
            return plan_err!("{name} takes dates or timestamps, not {other}");
        }
    })
}

/// Each row's local date (days since 1970-01-01): a date as it is, a time with a zone at its
/// local date in Vietnam (+07:00), a time without one at its own date.
fn local_days(values: &ArrayRef) -> Result<Int32Array> {
    Ok(match values.data_type() {
        DataType::Date32 => values.as_primitive::<Date32Type>().reinterpret_cast(),
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let times = values
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("a µs time array");
            match zone {
                Some(_) => times.unary(local_day),
                None => times.unary(|t| t.div_euclid(86_400_000_000) as i32),
            }
        }
        other => return exec_err!("not a date or time: {other}"),
    })
}

/// The result as a scalar when every argument was one (its one row), as an array otherwise.
fn answer(args: &[ColumnarValue], result: ArrayRef) -> Result<ColumnarValue> {
    if args
        .iter()
        .all(|arg| matches!(arg, ColumnarValue::Scalar(_)))
    {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?));
    }
    Ok(ColumnarValue::Array(result))
}

/// `working_days(from, to)` or `add_working_days(time, n)`: the calendar in force, read per
/// batch.
#[derive(Debug)]
struct CalendarFunction {
    name: &'static str,
    signature: Signature,
    calendar: CalendarSource,
}

impl CalendarFunction {
    fn udf(name: &'static str, calendar: &CalendarSource) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name,
            signature: Signature::user_defined(Volatility::Stable),
            calendar: calendar.clone(),
        })
    }
}

// One of each per engine: equal by name (the calendar it reads is the engine's).
impl PartialEq for CalendarFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for CalendarFunction {}
impl std::hash::Hash for CalendarFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

static WORKING_DAYS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        SECTION,
        "The working days d with from < d ≤ to, by local date (0 when the dates are equal; \
         negative when `to` is before `from`). Saturdays, Sundays, public holidays and swapped \
         days off are not working days; announced make-up Saturdays are. NULL outside 2010–2030.",
        "working_days(from, to)",
    )
    .with_argument(
        "from",
        "A date or a timestamp (its local date in Vietnam, +07:00).",
    )
    .with_argument("to", "A date or a timestamp.")
    .with_sql_example("SELECT working_days(DATE '2019-02-01', DATE '2019-02-11'); -- 1 (Tết)")
    .build()
});

static ADD_WORKING_DAYS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        SECTION,
        "The same local time on the n-th working day after the local date of `time` (before \
         it when n is negative; `time` itself when n is 0). A date gives a date. NULL outside \
         2010–2030.",
        "add_working_days(time, n)",
    )
    .with_argument("time", "A date or a timestamp.")
    .with_argument("n", "An integer.")
    .with_sql_example(
        "SELECT add_working_days(TIMESTAMP '2019-02-01 08:00:00', 1); -- 2019-02-11T08:00:00",
    )
    .build()
});

impl ScalarUDFImpl for CalendarFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match (self.name, arg_types) {
            (WORKING_DAYS, [from, to]) => Ok(vec![
                time_type(WORKING_DAYS, from)?,
                time_type(WORKING_DAYS, to)?,
            ]),
            (WORKING_DAYS, _) => plan_err!("working_days takes two arguments: from, to"),
            (_, [time, n]) if n.is_integer() || n.is_null() => {
                Ok(vec![time_type(self.name, time)?, DataType::Int64])
            }
            (_, [_, n]) => plan_err!("add_working_days: n must be an integer, not {n}"),
            _ => plan_err!("add_working_days takes two arguments: time, n"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.name {
            WORKING_DAYS => DataType::Int32,
            _ => arg_types[0].clone(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match self.name {
            WORKING_DAYS => count_working_days(&self.calendar, args),
            _ => add_working_days(&self.calendar, args),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.name {
            WORKING_DAYS => &WORKING_DAYS_DOC,
            _ => &ADD_WORKING_DAYS_DOC,
        })
    }
}

const WORKING_DAYS: &str = "working_days";
const ADD_WORKING_DAYS: &str = "add_working_days";

fn count_working_days(
    calendar: &CalendarSource,
    args: ScalarFunctionArgs,
) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let (from, to) = (local_days(&arrays[0])?, local_days(&arrays[1])?);
    let in_force = calendar.current();
    let calendar = &in_force.calendar;
    let counts: Int32Array = from
        .iter()
        .zip(to.iter())
        .map(|(from, to)| calendar.working_days(from?, to?))
        .collect();
    answer(&args.args, Arc::new(counts))
}

fn add_working_days(calendar: &CalendarSource, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let days = local_days(&arrays[0])?;
    let n = cast(&arrays[1], &DataType::Int64)?;
    let n = n
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an Int64 array");
    let in_force = calendar.current();
    let calendar = &in_force.calendar;
    // The day each row moves to, as a number of days to add.
    let moves: Vec<Option<i32>> = days
        .iter()
        .zip(n.iter())
        .map(|(day, n)| {
            let day = day?;
            Some(calendar.add_working_days(day, n?)? - day)
        })
        .collect();
    let result: ArrayRef = match arrays[0].data_type() {
        DataType::Date32 => Arc::new(
            days.iter()
                .zip(&moves)
                .map(|(day, moved)| Some(day? + (*moved)?))
                .collect::<Date32Array>(),
        ),
        DataType::Timestamp(_, zone) => {
            let times = arrays[0]
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("a µs time array");
            Arc::new(
                times
                    .iter()
                    .zip(&moves)
                    .map(|(time, moved)| Some(time? + i64::from((*moved)?) * 86_400_000_000))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(zone.clone()),
            )
        }
        other => return exec_err!("not a date or time: {other}"),
    };
    answer(&args.args, result)
}

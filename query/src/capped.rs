//! Functions whose answer can be far larger than their arguments (`repeat('x', 2000000000)`),
//! bounded before they allocate.
//!
//! DataFusion's memory pool counts what operators hold (hash tables, sorts, aggregates), not
//! what a scalar function builds: one `repeat` can take gigabytes the pool never sees, and
//! past 2 GiB in one string column arrow panics on offset overflow. Each function here is
//! DataFusion's own, wrapped: before a call runs, the most bytes it could build for the batch
//! is worked out from its arguments (their lengths and counts, not their text), and a call
//! that would build more than [`SqlLimits::max_function_bytes`](crate::SqlLimits) fails with
//! `value_too_large` (413) instead. Functions whose answer is bounded by their inputs
//! (`upper`, `substr`, …) need no wrapper; those that concatenate (`concat`, `concat_ws`) are
//! wrapped too, since a query can feed them one large value many times.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// A call refused because its answer would pass the cap: what it would build, and the cap.
#[derive(Debug, thiserror::Error)]
#[error("{function} would build up to {bytes} bytes for one batch, more than the {cap} bytes a function may build (--sql-max-function-mb); make the values smaller")]
pub struct TooLarge {
    /// The function.
    pub function: String,
    /// The most bytes the call could build.
    pub bytes: u64,
    /// The cap.
    pub cap: u64,
}

/// How a function's answer grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: length × n.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: n characters of up to 4 bytes.
    Pad,
    /// `replace(text, from, to)` and `regexp_replace(text, pattern, to …)`: every match (empty
    /// ones too, between characters) replaced by `to`, whose references expand to at most the
    /// match: length + (length + 1) × length of `to`.
    Replace,
    /// `concat`, `concat_ws`: the sum of the arguments' lengths.
    Concat,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: n elements.
    ArrayResize,
    /// `range`/`generate_series(start, stop [, step])` on integers: (stop − start) / step
    /// elements.
    Range,
}

/// Every wrapped function, by the name DataFusion registers it under.
const WRAPPED: [(&str, Growth); 11] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("concat", Growth::Concat),
    ("concat_ws", Growth::Concat),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
];

/// Replaces each of [`WRAPPED`] in `context` by itself under a cap of `cap` bytes a call.
pub fn register(context: &SessionContext, cap: usize) -> Result<()> {
    for (name, growth) in WRAPPED {
        let inner = context.udf(name)?;
        context.register_udf(ScalarUDF::new_from_impl(Capped {
            inner,
            growth,
            cap: cap as u64,
        }));
    }
    Ok(())
}

/// DataFusion's function `inner`, refusing calls that would build more than `cap` bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    cap: u64,
}

impl Capped {
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let bytes = self.most_bytes(&args.args, args.number_rows)?;
        if bytes <= self.cap {
            return Ok(());
        }
        Err(DataFusionError::External(Box::new(TooLarge {
            function: self.inner.name().to_owned(),
            bytes,
            cap: self.cap,
        })))
    }

    /// The most bytes the call could build over `rows` rows.
    fn most_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let arg = |i: usize| args.get(i);
        Ok(match self.growth {
            Growth::Repeat => {
                PerRow::bytes(arg(0))?.sum_with(&PerRow::count(arg(1))?, rows, u64::saturating_mul)
            }
            Growth::Pad => PerRow::count(arg(1))?.sum(rows, |n| n.saturating_mul(4)),
            Growth::Replace => {
                let to = PerRow::bytes(arg(2))?;
                PerRow::bytes(arg(0))?.sum_with(&to, rows, |len, to| {
                    len.saturating_add((len + 1).saturating_mul(to))
                })
            }
            Growth::Concat => {
                let mut total = 0u64;
                for value in args {
                    total = total.saturating_add(PerRow::bytes(Some(value))?.sum(rows, |len| len));
                }
                total
            }
            Growth::ArrayRepeat => {
                let width = element_width(arg(0));
                PerRow::count(arg(1))?.sum(rows, |n| n.saturating_mul(width))
            }
            Growth::ArrayResize => {
                let width = element_width(arg(2)).max(8);
                PerRow::count(arg(1))?.sum(rows, |n| n.saturating_mul(width))
            }
            Growth::Range => range_bytes(args, rows)?,
        })
    }
}

/// Bytes one element of an array built from `value` takes, at least: its width, or its
/// length for text and lists.
fn element_width(value: Option<&ColumnarValue>) -> u64 {
    let Some(value) = value else { return 8 };
    let data_type = value.data_type();
    match data_type.primitive_width() {
        Some(width) => width as u64,
        None => match value {
            ColumnarValue::Scalar(scalar) => scalar.size() as u64,
            ColumnarValue::Array(array) => {
                (array.get_array_memory_size() / array.len().max(1)) as u64 + 8
            }
        },
    }
}

/// Elements × 8 bytes for integer ranges; other ranges (dates, times) step by intervals that
/// are not a fixed length, and are bounded by the memory pool's accounting of their lists.
fn range_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    if !args.iter().all(|a| a.data_type().is_integer()) || args.is_empty() {
        return Ok(0);
    }
    let (start, stop, step) = match args.len() {
        1 => (
            PerRow::Same(0),
            PerRow::count(args.first())?,
            PerRow::Same(1),
        ),
        _ => (
            PerRow::count(args.first())?,
            PerRow::count(args.get(1))?,
            match args.get(2) {
                Some(step) => PerRow::count(Some(step))?,
                None => PerRow::Same(1),
            },
        ),
    };
    let mut total = 0u64;
    for row in 0..rows {
        let (a, b, s) = (start.at(row), stop.at(row), step.at(row));
        let elements = (b.abs_diff(a) / s.unsigned_abs().max(1)).saturating_add(1);
        total = total.saturating_add(elements.saturating_mul(8));
    }
    Ok(total)
}

/// One argument as a figure per row: a value's length in bytes, or an integer's value.
enum PerRow {
    Same(i64),
    Each(Int64Array),
}

impl PerRow {
    /// Lengths in bytes of text and binary values (0 for nulls and other types).
    fn bytes(value: Option<&ColumnarValue>) -> Result<Self> {
        Self::of(value, |array| {
            let lengths = match array.data_type() {
                DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView => length(array)?,
                _ => return Ok(Int64Array::from(vec![0; array.len()])),
            };
            Ok(cast(&lengths, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        })
    }

    /// Integer values (0 for nulls).
    fn count(value: Option<&ColumnarValue>) -> Result<Self> {
        Self::of(value, |array| {
            Ok(cast(array, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        })
    }

    /// `figures` of an argument: of its one value for a scalar (never spread over the rows),
    /// of each row for an array.
    fn of(
        value: Option<&ColumnarValue>,
        figures: impl Fn(&ArrayRef) -> Result<Int64Array>,
    ) -> Result<Self> {
        Ok(match value {
            None => Self::Same(0),
            Some(ColumnarValue::Scalar(scalar)) => {
                let one = figures(&scalar.to_array_of_size(1)?)?;
                Self::Same(one.iter().next().flatten().unwrap_or(0))
            }
            Some(ColumnarValue::Array(array)) => Self::Each(figures(array)?),
        })
    }

    fn at(&self, row: usize) -> i64 {
        match self {
            Self::Same(value) => *value,
            Self::Each(values) if values.is_valid(row) => values.value(row),
            Self::Each(_) => 0,
        }
    }

    /// Σ `f(value)` over `rows` rows (negative values count as 0), saturating.
    fn sum(&self, rows: usize, f: impl Fn(u64) -> u64) -> u64 {
        match self {
            Self::Same(value) => f(clamp(*value)).saturating_mul(rows as u64),
            Self::Each(values) => values
                .iter()
                .flatten()
                .map(|v| f(clamp(v)))
                .fold(0, u64::saturating_add),
        }
    }

    /// Σ `f(self, other)` over `rows` rows, saturating.
    fn sum_with(&self, other: &Self, rows: usize, f: impl Fn(u64, u64) -> u64) -> u64 {
        match (self, other) {
            (Self::Same(a), Self::Same(b)) => f(clamp(*a), clamp(*b)).saturating_mul(rows as u64),
            _ => (0..rows)
                .map(|row| f(clamp(self.at(row)), clamp(other.at(row))))
                .fold(0, u64::saturating_add),
        }
    }
}

fn clamp(value: i64) -> u64 {
    value.max(0) as u64
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

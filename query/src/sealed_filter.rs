//! Sealed months filtered on their dictionaries: a sealed file's low-cardinality string columns
//! (`timeliness`, `status`, `province`, …) are dictionary-encoded, and when a query compares one
//! with constants (`timeliness = 'late'`, `status IN ('open', 'withdrawn')`, `province IS NULL`)
//! the scan reads that column as an Arrow dictionary, filters the rows on it — each distinct
//! value decided once, then each row by its key ([`KeysIn`]) — and only the rows kept are
//! turned into the string views SQL sees.
//!
//! Read as views (as every other string column is), a column costs a 16-byte view per row, and
//! a nullable one moves every view again to make room for its nulls: decoding and comparing
//! `timeliness` was most of "the 20 agencies with most late resolutions" over a decade of
//! sealed months. Such filters are pushed down as exact ([`exact`]): the table's scan applies
//! them to the rows in memory as they are and to sealed files here, so DataFusion does not
//! filter again above the scan, and the column leaves the scan only when the query selects it.

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::exec_err;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::{conjunction, disjunction, split_conjunction};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_expr::expressions::BinaryExpr as PhysicalBinary;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The type a dictionary-encoded string column is read as.
fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// What a scan of sealed files reads as dictionaries, and the filter it applies on them.
#[derive(Debug)]
pub(crate) struct DictionaryFilter {
    /// The columns read as dictionaries.
    columns: BTreeSet<String>,
    /// The filters' conjuncts on those columns, their constants as dictionary scalars.
    conjuncts: Vec<Expr>,
    /// For each conjunct that is an `=`, `<>`, `IN` or `NOT IN`, the same as [`KeysIn`].
    among: Vec<Option<Among>>,
}

/// A column's values among constants (or not among them).
#[derive(Debug, Clone)]
struct Among {
    column: String,
    values: Vec<String>,
    negated: bool,
}

impl DictionaryFilter {
    /// The conjuncts of `filters` that compare one of `candidates` (string views in `schema`,
    /// dictionary-encoded in the files) with constants; `None` when there are none.
    pub(crate) fn of(filters: &[Expr], schema: &Schema, candidates: &[&str]) -> Option<Self> {
        let mut columns = BTreeSet::new();
        let mut conjuncts = Vec::new();
        let mut among = Vec::new();
        for filter in filters.iter().flat_map(split_conjunction) {
            if let Some((column, conjunct, matcher)) = on_dictionary(filter, schema, candidates) {
                columns.insert(column);
                conjuncts.push(conjunct);
                among.push(matcher);
            }
        }
        (!conjuncts.is_empty()).then_some(Self {
            columns,
            conjuncts,
            among,
        })
    }

    /// `schema` with the filtered columns as dictionaries: what the scan produces.
    pub(crate) fn scan_schema(&self, schema: &Schema) -> SchemaRef {
        Arc::new(self.as_dictionaries(schema, |_| true))
    }

    /// A file's own Arrow `schema` with the filtered columns it stores as strings read as
    /// dictionaries (the reader decodes a Parquet dictionary into one directly).
    pub(crate) fn file_hint(&self, schema: &Schema) -> SchemaRef {
        Arc::new(self.as_dictionaries(schema, |t| *t == DataType::Utf8))
    }

    fn as_dictionaries(&self, schema: &Schema, from: impl Fn(&DataType) -> bool) -> Schema {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| {
                let mut field = field.as_ref().clone();
                if self.columns.contains(field.name()) && from(field.data_type()) {
                    field = field.with_data_type(dictionary());
                }
                field
            })
            .collect();
        Schema::new_with_metadata(fields, schema.metadata().clone())
    }

    /// `filters` as a pruning predicate over the scan's schema: the conjuncts on dictionaries
    /// rewritten, the others on those columns left out (pruning may prove less than the
    /// filters, never more).
    pub(crate) fn pruning(&self, filters: &[Expr]) -> Option<Expr> {
        let others = filters
            .iter()
            .flat_map(split_conjunction)
            .filter(|f| {
                !f.column_refs()
                    .iter()
                    .any(|c| self.columns.contains(&c.name))
            })
            .cloned();
        conjunction(self.conjuncts.iter().cloned().chain(others))
    }

    /// `scan` (producing the scan's schema projected by `read`, which holds every filtered
    /// column) filtered on the dictionaries, then with those columns as string views again:
    /// the columns and types of `schema` projected by the first `asked` of `read`.
    pub(crate) fn apply(
        &self,
        state: &dyn Session,
        scan: Arc<dyn ExecutionPlan>,
        read: Option<&Vec<usize>>,
        asked: Option<usize>,
        schema: &Schema,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let output = scan.schema();
        let columns = DFSchema::try_from(output.as_ref().clone())?;
        let mut predicate: Option<Arc<dyn PhysicalExpr>> = None;
        for (conjunct, among) in self.conjuncts.iter().zip(&self.among) {
            let next: Arc<dyn PhysicalExpr> = match among {
                Some(among) => Arc::new(KeysIn {
                    column: Arc::new(Column::new_with_schema(&among.column, &output)?),
                    values: among.values.clone(),
                    negated: among.negated,
                }),
                None => state.create_physical_expr(conjunct.clone(), &columns)?,
            };
            predicate = Some(match predicate {
                Some(left) => Arc::new(PhysicalBinary::new(left, Operator::And, next)),
                None => next,
            });
        }
        let Some(predicate) = predicate else {
            return Ok(scan);
        };
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, scan)?);
        let mut wanted: Vec<usize> = match read {
            Some(columns) => columns.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        wanted.truncate(asked.unwrap_or(wanted.len()));
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
        for (at, &i) in wanted.iter().enumerate() {
            let field = schema.field(i);
            let column = Arc::new(Column::new(field.name(), at));
            let expr: Arc<dyn PhysicalExpr> = if self.columns.contains(field.name()) {
                Arc::new(CastExpr::new(column, field.data_type().clone(), None))
            } else {
                column
            };
            exprs.push((expr, field.name().clone()));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
    }
}

/// Whether the scan applies `filter` exactly: on the dictionaries of the sealed files, and as it
/// is on the rows in memory.
pub(crate) fn exact(filter: &Expr, schema: &Schema, candidates: &[&str]) -> bool {
    on_dictionary(filter, schema, candidates).is_some()
}

/// The columns of `schema` a scan reads for `projection` and the `filters` it applies itself:
/// `projection`, then the filters' columns it lacks (`None`: every column).
pub(crate) fn widened(
    projection: Option<&Vec<usize>>,
    schema: &Schema,
    filters: &[Expr],
) -> Result<Option<Vec<usize>>> {
    let Some(projection) = projection else {
        return Ok(None);
    };
    let mut read = projection.clone();
    for column in filters.iter().flat_map(Expr::column_refs) {
        let i = schema.index_of(&column.name)?;
        if !read.contains(&i) {
            read.push(i);
        }
    }
    Ok(Some(read))
}

/// `filter` rewritten over a dictionary column, with that column's name, when it compares a
/// candidate column with string constants: `=`, `<>`, `<`, `<=`, `>`, `>=` (either side), `IN`
/// and `NOT IN` (as `=` … `OR` and `<>` … `AND`), `IS NULL`, `IS NOT NULL`; and for `=`, `<>`,
/// `IN` and `NOT IN`, the constants it looks for.
fn on_dictionary(
    filter: &Expr,
    schema: &Schema,
    candidates: &[&str],
) -> Option<(String, Expr, Option<Among>)> {
    let column = |expr: &Expr| match expr {
        Expr::Column(c)
            if candidates.contains(&c.name.as_str())
                && schema
                    .field_with_name(&c.name)
                    .is_ok_and(|f| *f.data_type() == DataType::Utf8View) =>
        {
            Some(c.clone())
        }
        _ => None,
    };
    let text = string_literal;
    let constant = |expr: &Expr| text(expr).map(|s| dictionary_literal(&s));
    let compare = |c: &datafusion::common::Column, op: Operator, value: Expr| {
        Expr::BinaryExpr(BinaryExpr::new(
            Box::new(Expr::Column(c.clone())),
            op,
            Box::new(value),
        ))
    };
    use Operator::*;
    let among = |c: &datafusion::common::Column, values: Vec<String>, negated: bool| {
        Some(Among {
            column: c.name.clone(),
            values,
            negated,
        })
    };
    let (c, rewritten, matcher) = match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq) =>
        {
            let (c, op, value) = match (column(left), column(right), op.swap()) {
                (Some(c), _, _) => (c, *op, right),
                (None, Some(c), Some(swapped)) => (c, swapped, left),
                _ => return None,
            };
            let matcher = match op {
                Eq | NotEq => among(&c, vec![text(value)?], op == NotEq),
                _ => None,
            };
            let e = compare(&c, op, constant(value)?);
            (c, e, matcher)
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) if !list.is_empty() => {
            let c = column(expr)?;
            let texts: Option<Vec<String>> = list.iter().map(text).collect();
            let texts = texts?;
            let op = if *negated { NotEq } else { Eq };
            let each = texts.iter().map(|v| compare(&c, op, dictionary_literal(v)));
            let e = match negated {
                true => conjunction(each),
                false => disjunction(each),
            }?;
            let matcher = among(&c, texts, *negated);
            (c, e, matcher)
        }
        // DataFusion writes a short IN list as `=` … OR `=` ….
        Expr::BinaryExpr(BinaryExpr { op: Or, .. }) => {
            let (c, values) = equalities(filter, &column)?;
            let e = disjunction(
                values
                    .iter()
                    .map(|v| compare(&c, Eq, dictionary_literal(v)))
                    .collect::<Vec<_>>(),
            )?;
            let matcher = among(&c, values, false);
            (c, e, matcher)
        }
        Expr::IsNull(inner) => {
            let c = column(inner)?;
            (c.clone(), Expr::Column(c).is_null(), None)
        }
        Expr::IsNotNull(inner) => {
            let c = column(inner)?;
            (c.clone(), Expr::Column(c).is_not_null(), None)
        }
        _ => return None,
    };
    Some((c.name, rewritten, matcher))
}

/// `text` as a constant of the dictionaries' type.
fn dictionary_literal(text: &str) -> Expr {
    let value = ScalarValue::Utf8(Some(text.to_owned()));
    Expr::Literal(
        ScalarValue::Dictionary(Box::new(DataType::Int32), Box::new(value)),
        None,
    )
}

/// The text of a string constant (SQL's are string views; a plan may hold any string type).
pub(crate) fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// The column (as `column` recognises it) and the constants of `filter` when it is
/// `column = constant` (either side), `column IN (constants)`, or an OR of those over one
/// column — the shapes DataFusion gives a set of values.
pub(crate) fn equalities<C: PartialEq>(
    filter: &Expr,
    column: &impl Fn(&Expr) -> Option<C>,
) -> Option<(C, Vec<String>)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Or => {
                let (c, mut values) = equalities(left, column)?;
                let (other, more) = equalities(right, column)?;
                (c == other).then(|| {
                    values.extend(more);
                    (c, values)
                })
            }
            Operator::Eq => match (column(left), column(right)) {
                (Some(c), _) => Some((c, vec![string_literal(right)?])),
                (None, Some(c)) => Some((c, vec![string_literal(left)?])),
                _ => None,
            },
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => Some((
            column(expr)?,
            list.iter().map(string_literal).collect::<Option<_>>()?,
        )),
        _ => None,
    }
}

/// Whether a dictionary column's value is among `values` (or, `negated`, is not): decided
/// once per distinct value of a batch's dictionary, then looked up by each row's key. A null
/// stays null, as with `=` and `IN`. (Comparing a dictionary with a constant in Arrow gathers
/// the values' answers bit by bit, which cost a fifth of a scan of `timeliness`.)
#[derive(Debug)]
struct KeysIn {
    column: Arc<dyn PhysicalExpr>,
    values: Vec<String>,
    negated: bool,
}

impl PartialEq for KeysIn {
    fn eq(&self, other: &Self) -> bool {
        self.column.as_ref() == other.column.as_ref()
            && self.values == other.values
            && self.negated == other.negated
    }
}

impl Eq for KeysIn {}

impl std::hash::Hash for KeysIn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.column.as_ref().hash(state);
        self.values.hash(state);
        self.negated.hash(state);
    }
}

impl std::fmt::Display for KeysIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let not = if self.negated { "NOT " } else { "" };
        write!(f, "{} {not}IN ({})", self.column, self.values.join(", "))
    }
}

impl PhysicalExpr for KeysIn {
    fn data_type(&self, _: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.column.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let array = self.column.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(dictionary) = array.as_dictionary_opt::<Int32Type>() else {
            return exec_err!("{self}: the column is not a dictionary");
        };
        let values = dictionary.values();
        let Some(texts) = values.as_string_opt::<i32>() else {
            return exec_err!("{self}: the dictionary's values are not strings");
        };
        let wanted: Vec<bool> = (0..texts.len())
            .map(|i| {
                texts.is_valid(i) && self.values.iter().any(|v| v == texts.value(i)) != self.negated
            })
            .collect();
        let keys = dictionary.keys();
        let bits = BooleanBuffer::collect_bool(keys.len(), |i| {
            wanted
                .get(keys.values()[i] as usize)
                .copied()
                .unwrap_or(false)
        });
        let nulls = NullBuffer::union(keys.nulls(), None);
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            bits, nulls,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.column]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let Some(column) = children.pop() else {
            return exec_err!("{self}: no column");
        };
        Ok(Arc::new(Self {
            column,
            values: self.values.clone(),
            negated: self.negated,
        }))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("agency", DataType::Utf8View, false),
            Field::new("timeliness", DataType::Utf8View, true),
            Field::new("applicant", DataType::Utf8View, true),
            Field::new("paused_seconds", DataType::Int64, false),
        ])
    }

    const CANDIDATES: [&str; 2] = ["agency", "timeliness"];

    #[test]
    fn only_comparisons_of_candidates_with_constants_are_taken() {
        let schema = schema();
        let of = |filters: Vec<Expr>| {
            DictionaryFilter::of(&filters, &schema, &CANDIDATES).map(|f| {
                let columns: Vec<String> = f.columns.into_iter().collect();
                (columns, f.conjuncts.len())
            })
        };
        let late = col("timeliness").eq(lit("late"));
        assert_eq!(of(vec![late.clone()]), Some((vec!["timeliness".into()], 1)));
        // Both sides, IN and IS NULL, inside one AND.
        let both = lit("26.S01")
            .lt_eq(col("agency"))
            .and(col("timeliness").in_list(vec![lit("early"), lit("on_time")], true))
            .and(col("timeliness").is_null());
        assert_eq!(
            of(vec![both]),
            Some((vec!["agency".into(), "timeliness".into()], 3))
        );
        // Not a candidate, not a constant, not a comparison, an OR of two columns: none.
        assert_eq!(of(vec![col("applicant").eq(lit("x"))]), None);
        assert_eq!(of(vec![col("agency").eq(col("timeliness"))]), None);
        assert_eq!(of(vec![col("timeliness").like(lit("l%"))]), None);
        assert_eq!(
            of(vec![late.clone().or(col("agency").eq(lit("26.S01")))]),
            None
        );
        assert_eq!(of(vec![col("paused_seconds").gt(lit(5))]), None);
        // A filter left out prunes on the other columns only.
        let filters = vec![
            late,
            col("timeliness").like(lit("l%")),
            col("paused_seconds").gt(lit(5)),
        ];
        let filter = DictionaryFilter::of(&filters, &schema, &CANDIDATES).unwrap();
        let pruning = filter.pruning(&filters).unwrap();
        let columns: BTreeSet<String> = pruning
            .column_refs()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            ["paused_seconds", "timeliness"].map(String::from).into()
        );
        assert!(!format!("{pruning}").contains("LIKE"), "{pruning}");
    }

    #[test]
    fn an_or_of_equalities_on_one_column_is_a_set_of_values() {
        let schema = schema();
        let either = col("timeliness")
            .eq(lit("early"))
            .or(lit("on_time").eq(col("timeliness")));
        let filter = DictionaryFilter::of(&[either], &schema, &CANDIDATES).unwrap();
        let among = filter.among[0].as_ref().unwrap();
        assert_eq!(among.values, ["early", "on_time"]);
        assert!(!among.negated);
        let ordering = col("timeliness").gt(lit("early"));
        let filter = DictionaryFilter::of(&[ordering], &schema, &CANDIDATES).unwrap();
        assert!(filter.among[0].is_none(), "an ordering compares the values");
    }

    #[test]
    fn keys_among_values_keep_nulls_null() {
        use datafusion::arrow::array::DictionaryArray;
        let codes: DictionaryArray<Int32Type> =
            vec![Some("late"), None, Some("early"), Some("late")]
                .into_iter()
                .collect();
        let schema = Arc::new(Schema::new(vec![Field::new("t", dictionary(), true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(codes)]).unwrap();
        let answer = |negated: bool| {
            let keys = KeysIn {
                column: Arc::new(Column::new("t", 0)),
                values: vec!["late".into()],
                negated,
            };
            let result = keys.evaluate(&batch).unwrap().into_array(4).unwrap();
            let result = result.as_boolean();
            (0..4)
                .map(|i| result.is_valid(i).then(|| result.value(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(answer(false), [Some(true), None, Some(false), Some(true)]);
        assert_eq!(answer(true), [Some(false), None, Some(true), Some(false)]);
    }

    #[test]
    fn the_scan_and_the_files_read_dictionaries_of_the_filtered_columns() {
        let schema = schema();
        let filters = vec![col("timeliness").eq(lit("late"))];
        let filter = DictionaryFilter::of(&filters, &schema, &CANDIDATES).unwrap();
        let scan = filter.scan_schema(&schema);
        assert_eq!(scan.field(1).data_type(), &dictionary());
        assert_eq!(scan.field(0).data_type(), &DataType::Utf8View);
        let file = Schema::new(vec![
            Field::new("agency", DataType::Utf8, false),
            Field::new("timeliness", DataType::Utf8, true),
        ]);
        let hint = filter.file_hint(&file);
        assert_eq!(hint.field(1).data_type(), &dictionary());
        assert!(hint.field(1).is_nullable());
        assert_eq!(hint.field(0).data_type(), &DataType::Utf8);
    }
}

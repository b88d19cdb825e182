//! `information_schema` as PostgreSQL clients read it. DataFusion's tables (`tables`,
//! `columns`, `schemata`, `df_settings`, …), with two additions BI tools need to list a
//! table's fields (Metabase's field sync, Grafana's schema browser): `columns` also names each
//! column's PostgreSQL type (`udt_schema`, `udt_name`) and says it is neither an identity nor a
//! generated column; `table_constraints` and `key_column_usage` exist and are empty, as
//! chiso's tables have no keys.

use crate::error::{Error, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::{InformationSchemaProvider, INFORMATION_SCHEMA};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Replaces DataFusion's built-in `information_schema` of `catalog` with this one; the
/// session must have DataFusion's own turned off.
pub(crate) fn install(context: &SessionContext, catalog: &str) -> Result<()> {
    let state = context.state();
    let inner = InformationSchemaProvider::new(state.catalog_list().clone())
        .with_table_functions(state.table_functions().clone());
    let Some(catalog) = context.catalog(catalog) else {
        return Err(Error::Engine(format!("no catalog {catalog}")));
    };
    catalog.register_schema(
        INFORMATION_SCHEMA,
        Arc::new(PostgresInformationSchema { inner }),
    )?;
    Ok(())
}

const TABLE_CONSTRAINTS: &str = "table_constraints";
const KEY_COLUMN_USAGE: &str = "key_column_usage";
/// The columns both constraint tables begin with.
const CONSTRAINT_COLUMNS: [&str; 6] = [
    "constraint_catalog",
    "constraint_schema",
    "constraint_name",
    "table_catalog",
    "table_schema",
    "table_name",
];

#[derive(Debug)]
struct PostgresInformationSchema {
    inner: InformationSchemaProvider,
}

#[async_trait]
impl SchemaProvider for PostgresInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend([TABLE_CONSTRAINTS.to_owned(), KEY_COLUMN_USAGE.to_owned()]);
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            "columns" => match self.inner.table(&name).await? {
                Some(columns) => Some(Arc::new(Columns::new(columns))),
                None => None,
            },
            TABLE_CONSTRAINTS => Some(empty(
                &[
                    &CONSTRAINT_COLUMNS[..],
                    &[
                        "constraint_type",
                        "is_deferrable",
                        "initially_deferred",
                        "enforced",
                    ],
                ]
                .concat(),
            )?),
            KEY_COLUMN_USAGE => Some(empty(
                &[
                    &CONSTRAINT_COLUMNS[..],
                    &[
                        "column_name",
                        "ordinal_position",
                        "position_in_unique_constraint",
                    ],
                ]
                .concat(),
            )?),
            _ => self.inner.table(&name).await?,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names()
            .iter()
            .any(|table| table.eq_ignore_ascii_case(name))
    }
}

/// A view of text columns and no rows (like the rest of `information_schema`, a view).
fn empty(columns: &[&str]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
    let fields: Vec<Field> = columns
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, true))
        .collect();
    let schema = DFSchema::try_from(Schema::new(fields))?;
    let plan = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(schema),
    });
    Ok(Arc::new(datafusion::catalog::view::ViewTable::new(
        plan, None,
    )))
}

/// DataFusion's `information_schema.columns` and the PostgreSQL names of its types.
#[derive(Debug)]
struct Columns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

/// The columns added to DataFusion's.
const ADDED: [&str; 5] = [
    "udt_catalog",
    "udt_schema",
    "udt_name",
    "is_identity",
    "is_generated",
];

impl Columns {
    fn new(inner: Arc<dyn TableProvider>) -> Self {
        let mut fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            ADDED
                .iter()
                .map(|name| Field::new(*name, DataType::Utf8, true)),
        );
        Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// One batch of DataFusion's rows with the added columns.
    fn extend(&self, batch: &RecordBatch) -> datafusion::error::Result<RecordBatch> {
        let column = |name: &str| -> datafusion::error::Result<&StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!(
                        "information_schema.columns has no text column {name}"
                    ))
                })
        };
        let types = column("data_type")?;
        let catalogs = column("table_catalog")?;
        let rows = batch.num_rows();
        let udt_names: StringArray = types.iter().map(|t| t.map(udt_name)).collect();
        let constant = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; rows])) };
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(catalogs.clone()));
        columns.push(constant("pg_catalog"));
        columns.push(Arc::new(udt_names));
        columns.push(constant("NO"));
        columns.push(constant("NEVER"));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// The PostgreSQL type name (`udt_name`) of an Arrow type, from its written form in
/// `data_type`.
fn udt_name(arrow_type: &str) -> &'static str {
    let starts = |prefix: &str| arrow_type.starts_with(prefix);
    if starts("Utf8") || starts("LargeUtf8") || starts("Dictionary") {
        "text"
    } else if starts("Int8") || starts("Int16") || starts("UInt8") {
        "int2"
    } else if starts("Int32") || starts("UInt16") {
        "int4"
    } else if starts("Int64") || starts("UInt32") || starts("UInt64") {
        "int8"
    } else if starts("Float16") || starts("Float32") {
        "float4"
    } else if starts("Float64") {
        "float8"
    } else if starts("Boolean") {
        "bool"
    } else if starts("Date") {
        "date"
    } else if starts("Timestamp") {
        // A zone is written quoted: `Timestamp(µs, "+07:00")`.
        match arrow_type.contains('"') {
            true => "timestamptz",
            false => "timestamp",
        }
    } else if starts("Time") {
        "time"
    } else if starts("Decimal") {
        "numeric"
    } else if starts("Interval") || starts("Duration") {
        "interval"
    } else if starts("Binary") || starts("LargeBinary") || starts("FixedSizeBinary") {
        "bytea"
    } else if starts("List") || starts("LargeList") || starts("FixedSizeList") {
        "_text"
    } else {
        "text"
    }
}

#[async_trait]
impl TableProvider for Columns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let batches = batches
            .iter()
            .map(|batch| self.extend(batch))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::udt_name;

    #[test]
    fn arrow_types_have_their_postgresql_names() {
        assert_eq!(udt_name("Utf8View"), "text");
        assert_eq!(udt_name("Int32"), "int4");
        assert_eq!(udt_name("Int64"), "int8");
        assert_eq!(udt_name("Timestamp(µs, \"+07:00\")"), "timestamptz");
        assert_eq!(udt_name("Timestamp(Microsecond, None)"), "timestamp");
        assert_eq!(udt_name("Date32"), "date");
        assert_eq!(udt_name("Float64"), "float8");
    }
}

//! What PostgreSQL clients look for in any database they connect to: the `pg_catalog` schema
//! (`pg_class`, `pg_attribute`, `pg_type`, … over chiso's own tables, from
//! `datafusion-pg-catalog`), its functions (`current_database()`, `format_type`,
//! `has_table_privilege`, …) and a `version()` that names a PostgreSQL release, which drivers
//! parse to choose their features. Every protocol sees them, so a query written in a BI tool
//! runs the same over HTTP.

use crate::error::{Error, Result};
use datafusion::arrow::array::{Array, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// The PostgreSQL release chiso answers as (its wire protocol and catalog are 16's).
pub const SERVER_VERSION: &str = "16.6";

/// What `version()` answers: `PostgreSQL <release>` first, as drivers parse it.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (chiso {}, Apache DataFusion 55) on x86_64-linux",
        env!("CARGO_PKG_VERSION")
    )
}

/// Installs `pg_catalog`, its functions and `version()` in `context`, whose default catalog
/// is `catalog`.
pub(crate) fn install(context: &SessionContext, catalog: &str) -> Result<()> {
    datafusion_pg_catalog::pg_catalog::setup_pg_catalog(context, catalog, EmptyContextProvider)
        .map_err(|error| Error::Engine(format!("cannot set up pg_catalog: {error}")))?;
    let version = ScalarValue::Utf8(Some(version_text()));
    context.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
    context.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(version.clone()))),
    ));
    Ok(())
}

/// The built-in types by name (`int4`, `_int4`, `timestamptz`, …) and by the SQL names that
/// mean them (`integer`, `timestamp with time zone`, …).
static TYPE_OIDS: LazyLock<HashMap<String, i32>> = LazyLock::new(|| {
    use postgres_types::Type;
    let mut oids: HashMap<String, i32> = (0..20_000u32)
        .filter_map(|oid| Some((Type::from_oid(oid)?.name().to_owned(), oid as i32)))
        .collect();
    for (alias, name) in [
        ("smallint", "int2"),
        ("integer", "int4"),
        ("int", "int4"),
        ("bigint", "int8"),
        ("real", "float4"),
        ("double precision", "float8"),
        ("boolean", "bool"),
        ("character varying", "varchar"),
        ("character", "bpchar"),
        ("char", "bpchar"),
        ("decimal", "numeric"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
        ("time without time zone", "time"),
        ("time with time zone", "timetz"),
    ] {
        if let Some(oid) = oids.get(name).copied() {
            oids.insert(alias.to_owned(), oid);
        }
    }
    oids
});

/// `to_regtype(name)`: the oid of a type by name (`int4`, `integer`, `text[]`,
/// `pg_catalog.timestamptz`), NULL for a type chiso does not have (psycopg and SQLAlchemy
/// look up `hstore` so).
fn to_regtype(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let oid = |name: &str| {
        let name = name.trim().to_ascii_lowercase();
        let name = name
            .strip_prefix("pg_catalog.")
            .unwrap_or(&name)
            .trim_matches('"');
        match name.strip_suffix("[]") {
            Some(element) => TYPE_OIDS
                .get(element)
                .and_then(|oid| postgres_types::Type::from_oid(*oid as u32))
                .and_then(|element| TYPE_OIDS.get(&format!("_{}", element.name())).copied()),
            None => TYPE_OIDS.get(name).copied(),
        }
    };
    match &args[0] {
        ColumnarValue::Scalar(value) => {
            let name = match value {
                ScalarValue::Utf8(name)
                | ScalarValue::LargeUtf8(name)
                | ScalarValue::Utf8View(name) => name.clone(),
                _ => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                name.as_deref().and_then(oid),
            )))
        }
        ColumnarValue::Array(names) => {
            let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
            let names = names
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8 gives a StringArray");
            let oids: Int32Array = names.iter().map(|name| name.and_then(oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }
    }
}

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
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// The PostgreSQL release chiso answers as (its wire protocol and catalog are 16's).
pub const SERVER_VERSION: &str = "16.6";

/// The numeric form of [`SERVER_VERSION`] (`160006`).
fn server_version_num() -> String {
    let mut parts = SERVER_VERSION
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major * 10_000 + minor).to_string()
}

/// A server setting as PostgreSQL names it (any case), the same for every session: what
/// `current_setting()` answers, and what a PostgreSQL session shows until it sets its own.
pub fn server_setting(name: &str) -> Option<String> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION.into(),
        "server_version_num" => server_version_num(),
        "server_encoding" | "client_encoding" => "UTF8".into(),
        "integer_datetimes" | "standard_conforming_strings" => "on".into(),
        "default_transaction_read_only" | "transaction_read_only" => "on".into(),
        "is_superuser" => "off".into(),
        "max_identifier_length" => "63".into(),
        "lc_collate" | "lc_ctype" | "lc_messages" => "C".into(),
        "timezone" => TIME_ZONE.into(),
        "datestyle" => "ISO, MDY".into(),
        "intervalstyle" => "postgres".into(),
        "search_path" => "\"$user\", public".into(),
        "transaction_isolation" | "default_transaction_isolation" => "read committed".into(),
        "application_name" => String::new(),
        _ => return None,
    })
}

/// Local time as PostgreSQL clients name it: chiso's `+07:00`, which has had no daylight
/// saving since 1975.
pub const TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

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
    context.register_udf(ScalarUDF::from(CurrentSetting::new()));
    context.register_udf(ScalarUDF::from(Format::new()));
    without_constraints(context, catalog)?;
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

/// `current_setting(name [, missing_ok])`: a server setting ([`server_setting`]); an unknown
/// name is an error, or NULL with `missing_ok`. Grafana reads `server_version_num` and
/// `search_path` so.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let missing_ok = matches!(
            args.args.get(1),
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
        );
        let setting = |name: Option<&str>| -> datafusion::error::Result<Option<String>> {
            let Some(name) = name else { return Ok(None) };
            match server_setting(name) {
                Some(value) => Ok(Some(value)),
                None if missing_ok => Ok(None),
                None => {
                    datafusion::common::plan_err!("unrecognized configuration parameter \"{name}\"")
                }
            }
        };
        match &args.args[0] {
            ColumnarValue::Scalar(value) => {
                let name = match value {
                    ScalarValue::Utf8(name) => name.as_deref(),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(setting(name)?)))
            }
            ColumnarValue::Array(names) => {
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("the signature takes Utf8");
                let values: StringArray = names
                    .iter()
                    .map(setting)
                    .collect::<datafusion::error::Result<_>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
        }
    }
}

/// chiso's tables have no constraints: `pg_catalog.pg_constraint` is empty, its key columns
/// typed as PostgreSQL's (`conkey int2[]`, which `= ANY(conkey)` in Metabase's foreign-key sync
/// compares with `attnum`), not the text the static export keeps.
fn without_constraints(context: &SessionContext, catalog: &str) -> Result<()> {
    use datafusion::catalog::SchemaProvider;
    let catalog = context
        .catalog(catalog)
        .ok_or_else(|| Error::Engine("no catalog for pg_catalog".into()))?;
    let inner = catalog
        .schema("pg_catalog")
        .ok_or_else(|| Error::Engine("pg_catalog is not installed".into()))?;
    catalog.register_schema(
        "pg_catalog",
        Arc::new(PgCatalog { inner }) as Arc<dyn SchemaProvider>,
    )?;
    Ok(())
}

/// `pg_catalog` with `pg_constraint` empty and typed.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn datafusion::catalog::SchemaProvider>,
}

#[async_trait::async_trait]
impl datafusion::catalog::SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        use datafusion::arrow::datatypes::{Field, Schema};
        let table = self.inner.table(name).await?;
        let Some(table) = table else {
            return Ok(None);
        };
        if name != "pg_constraint" {
            return Ok(Some(table));
        }
        let fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "conkey" | "confkey" | "confdelsetcols" => {
                    let item = Field::new_list_field(DataType::Int16, true);
                    Field::new(field.name(), DataType::List(Arc::new(item)), true)
                }
                _ => field.as_ref().clone(),
            })
            .collect();
        let empty =
            datafusion::catalog::MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        Ok(Some(Arc::new(empty)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// PostgreSQL's `format(text, …)`: `%s` a value as text (NULL as nothing), `%I` an
/// identifier (quoted when it must be), `%L` a literal (quoted, NULL as `NULL`), `%%` a `%`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl Format {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|arg| {
                let array = arg.to_array(rows)?;
                let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                Ok(text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8 gives a StringArray")
                    .clone())
            })
            .collect::<datafusion::error::Result<Vec<StringArray>>>()?;
        let Some((formats, values)) = texts.split_first() else {
            return datafusion::common::plan_err!("format() needs a format string");
        };
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in 0..rows {
            if formats.is_null(row) {
                out.append_null();
                continue;
            }
            let row_values: Vec<Option<&str>> = values
                .iter()
                .map(|v| (!v.is_null(row)).then(|| v.value(row)))
                .collect();
            out.append_value(format_row(formats.value(row), &row_values)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn format_row(format: &str, values: &[Option<&str>]) -> datafusion::error::Result<String> {
    let mut out = String::with_capacity(format.len());
    let mut next = values.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next();
        if spec == Some('%') {
            out.push('%');
            continue;
        }
        let Some(value) = next.next() else {
            return datafusion::common::plan_err!("too few arguments for format()");
        };
        match (spec, value) {
            (Some('s'), Some(value)) => out.push_str(value),
            (Some('s'), None) => {}
            (Some('I'), Some(value)) => out.push_str(&quote_ident(value)),
            (Some('I'), None) => {
                return datafusion::common::plan_err!(
                    "null values cannot be formatted as an SQL identifier"
                )
            }
            (Some('L'), Some(value)) => {
                out.push('\'');
                out.push_str(&value.replace('\'', "''"));
                out.push('\'');
            }
            (Some('L'), None) => out.push_str("NULL"),
            _ => return datafusion::common::plan_err!("unrecognized format() type specifier"),
        }
    }
    Ok(out)
}

/// An identifier as PostgreSQL writes it: bare when it is lower case letters, digits and
/// underscores, double-quoted otherwise.
fn quote_ident(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match bare {
        true => name.to_owned(),
        false => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_writes_text_identifiers_and_literals() {
        let values = [Some("public"), Some("Dossiers x"), Some("it's"), None];
        assert_eq!(
            format_row("%s.%I = %L, %L 100%%", &values).unwrap(),
            "public.\"Dossiers x\" = 'it''s', NULL 100%"
        );
        assert!(format_row("%s %s", &[Some("a")]).is_err());
    }
}

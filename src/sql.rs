//! `chiso sql`: one query against a running chiso, printed as a table (or passed through in
//! any wire format).

use chiso_query::datafusion::arrow::ipc::reader::StreamReader;
use chiso_query::datafusion::arrow::util::pretty::pretty_format_batches;
use clap::{Args, ValueEnum};
use std::io::Write;

/// Options of `chiso sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// One read-only SQL statement.
    #[arg(value_name = "SQL")]
    sql: String,
    /// The chiso to ask.
    #[arg(long, env = "CHISO_URL", default_value = "http://127.0.0.1:7878")]
    url: String,
    /// Output: a table for people, or a wire format passed through as the server sends it.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Bearer token (a `query` scope).
    #[arg(long, env = "CHISO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// How `chiso sql` prints the answer.
#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Jsonl,
    Csv,
    Arrow,
    Parquet,
    /// An Excel workbook (redirect it to a `.xlsx` file).
    Xlsx,
}

impl OutputFormat {
    fn wire(self) -> &'static str {
        match self {
            Self::Table | Self::Arrow => "arrow",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Xlsx => "xlsx",
        }
    }
}

pub async fn sql(args: SqlArgs) -> Result<(), Box<dyn std::error::Error>> {
    let url = format!("{}/v1/sql", args.url.trim_end_matches('/'));
    let body = serde_json::json!({"sql": args.sql, "format": args.format.wire()});
    let request = reqwest::Client::new().post(url).json(&body);
    let bytes = crate::client::send(request, args.token.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => {
            let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{}", pretty_format_batches(&batches)?)?;
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        _ => out.write_all(&bytes)?,
    }
    Ok(())
}

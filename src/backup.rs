//! `chiso backup --data-dir DIR DEST`: a consistent copy of a data directory, also while it is
//! served. Nobody serving it: the log and tables are opened here and copied. A `chiso serve`
//! holding it: that server writes the copy (`POST /v1/admin/backup`), found through the
//! `serve.url` file it keeps in the data directory.

use crate::cli::DataDir;
use chiso_query::{Backup, Projections};
use chiso_store::EventStore;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The file in which `chiso serve` leaves its address while it serves a data directory.
pub const SERVE_URL_FILE: &str = "serve.url";

/// Options of `chiso backup`.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// Where the copy goes: a new or empty directory; `chiso serve --data-dir DEST` serves it.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// Bearer token (`admin`), when the data directory is served with tokens on.
    #[arg(long, env = "CHISO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub async fn backup(args: BackupArgs) -> Result<(), Box<dyn std::error::Error>> {
    let dest = std::path::absolute(&args.dest)?;
    let data_dir = args.data_dir.clone();
    let target = dest.clone();
    let offline = tokio::task::spawn_blocking(move || copy_unserved(&data_dir, &target)).await?;
    let copied = match offline.map_err(|error| -> Box<dyn std::error::Error> { error })? {
        Some(copied) => copied,
        None => ask_server(&args, &dest).await?,
    };
    eprintln!(
        "backed up {} to {}: the log ({} events or more), tables up to position {} ({} segments, {:.1} MB)",
        args.data_dir.path.display(),
        dest.display(),
        copied.log_head,
        copied.tables_position,
        copied.segments,
        copied.segment_bytes as f64 / 1e6
    );
    Ok(())
}

/// Copies a data directory nobody serves; `None` if a server holds it.
fn copy_unserved(data_dir: &DataDir, dest: &Path) -> Result<Option<Backup>, BoxError> {
    if !data_dir.log().is_dir() {
        return Err(format!("{} holds no chiso log", data_dir.path.display()).into());
    }
    let log = match EventStore::open(data_dir.log()) {
        Ok(log) => log,
        // RocksDB's lock file: a server has it open.
        Err(error) if error.to_string().contains("lock") => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let projections = Projections::open(log.store(), data_dir.tables())?;
    let copied = projections.backup(dest)?;
    drop(projections);
    drop(log);
    Ok(Some(copied))
}

/// Has the server that holds the data directory write the copy.
async fn ask_server(args: &BackupArgs, dest: &Path) -> Result<Backup, Box<dyn std::error::Error>> {
    let file = args.data_dir.path.join(SERVE_URL_FILE);
    let url = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "{} is in use, but {} does not say by which server",
            args.data_dir.path.display(),
            file.display()
        )
    })?;
    let url = url.trim().trim_end_matches('/');
    let request = reqwest::Client::new()
        .post(format!("{url}/v1/admin/backup"))
        .json(&json!({"destination": dest}));
    let body = crate::client::send(request, args.token.as_deref())
        .await
        .map_err(|error| format!("the server at {url}: {error}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let number = |key: &str| answer[key].as_u64().unwrap_or_default();
    Ok(Backup {
        log_head: number("log_head"),
        tables_position: number("tables_position"),
        segments: number("segments") as usize,
        segment_bytes: number("segment_bytes"),
    })
}

//! Command-line interface (ARCHITECTURE.md §9).

use crate::backup::{backup, BackupArgs};
use crate::demo::{demo, DemoArgs};
use crate::import::{import, ImportArgs};
use crate::rank::{rank, RankArgs};
use crate::rebuild::{rebuild, RebuildArgs};
use crate::serve::{serve, ServeArgs};
use crate::sql::{sql, SqlArgs};
use crate::verify::{verify, VerifyArgs};
use chiso_query::SealPolicy;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `--data-dir DIR` (env `CHISO_DATA_DIR`): the log lives in `DIR/log`, the tables in
/// `DIR/tables`.
#[derive(Args, Clone)]
pub struct DataDir {
    /// Data directory: the log in DIR/log, the tables in DIR/tables.
    #[arg(
        long = "data-dir",
        env = "CHISO_DATA_DIR",
        default_value = "./chiso-data",
        value_name = "DIR"
    )]
    pub path: PathBuf,
}

impl DataDir {
    /// Where the log lives.
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }

    /// Where the tables' segments live.
    pub fn tables(&self) -> PathBuf {
        self.path.join("tables")
    }
}

/// How the tables keep months in memory and seal them to disk.
#[derive(Args, Clone)]
pub struct TableArgs {
    /// Seal a month of `dossiers` once the log holds dossiers received this many days after
    /// its end (the log's own time, not the clock).
    #[arg(long, env = "CHISO_SEAL_AFTER_DAYS", default_value_t = SealPolicy::default().after_days)]
    pub seal_after_days: u32,
    /// Memory the dossier rows kept in memory may take, in MiB; past it the oldest months are
    /// sealed early.
    #[arg(long, env = "CHISO_HOT_MEMORY_MB", default_value_t = SealPolicy::default().hot_bytes >> 20)]
    pub hot_memory_mb: usize,
    /// Seal every month at once after each fold, so every query reads sealed files (for
    /// testing the sealed path; slow on big histories).
    #[arg(long, env = "CHISO_SEAL_IMMEDIATELY")]
    pub seal_immediately: bool,
}

impl TableArgs {
    /// The seal policy these options say.
    pub fn policy(&self) -> SealPolicy {
        SealPolicy {
            after_days: self.seal_after_days,
            hot_bytes: self.hot_memory_mb << 20,
            immediately: self.seal_immediately,
            ..SealPolicy::default()
        }
    }
}

/// chiso: an event-sourced analytics backend for public-service performance data.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// chiso's commands.
#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API over the log in the data directory.
    Serve(Box<ServeArgs>),
    /// Import NDJSON event files, through a running chiso or into a data directory.
    Import(ImportArgs),
    /// Write the demo history (Vĩnh Phúc 2010–2019) as NDJSON.
    Demo(DemoArgs),
    /// Run one read-only SQL statement on a running chiso and print the answer.
    Sql(SqlArgs),
    /// Compute and publish a month's rankings on a running chiso.
    Rank(RankArgs),
    /// Drop every table and rebuild it by replaying the log (chiso must not be serving).
    Rebuild(RebuildArgs),
    /// Copy a data directory consistently (the log and the tables), also while it is served.
    Backup(BackupArgs),
    /// Recompute the log's hash chain and name the first chunk that does not match.
    Verify(VerifyArgs),
}

impl Command {
    pub async fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Self::Serve(args) => serve(*args).await,
            Self::Import(args) => import(args).await,
            Self::Sql(args) => sql(args).await,
            Self::Demo(args) => demo(args).await,
            Self::Rebuild(args) => rebuild(args).await,
            Self::Rank(args) => rank(args).await,
            Self::Backup(args) => backup(args).await,
            Self::Verify(args) => verify(args).await,
        }
    }
}

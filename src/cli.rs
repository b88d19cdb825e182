//! Command-line interface (DESIGN §9).

use crate::import::{import, ImportArgs};
use crate::serve::{serve, ServeArgs};
use clap::{Parser, Subcommand};

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
    Serve(ServeArgs),
    /// Import NDJSON event files, through a running chiso or into a data directory.
    Import(ImportArgs),
}

impl Command {
    pub async fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Self::Serve(args) => serve(args).await,
            Self::Import(args) => import(args).await,
        }
    }
}

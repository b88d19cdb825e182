//! Command-line interface (DESIGN §9).

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
}

impl Command {
    pub async fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Self::Serve(args) => serve(args).await,
        }
    }
}

//! `chiso rebuild`: drop every table and fold the whole log again, with a progress bar.

use crate::cli::{DataDir, TableArgs};
use chiso_query::Projections;
use chiso_store::EventStore;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// Options of `chiso rebuild`.
#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    data_dir: DataDir,
    #[command(flatten)]
    tables: TableArgs,
}

pub async fn rebuild(args: RebuildArgs) -> Result<(), Box<dyn std::error::Error>> {
    tokio::task::spawn_blocking(move || rebuild_tables(&args))
        .await?
        .map_err(|error| -> Box<dyn std::error::Error> { error })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn rebuild_tables(args: &RebuildArgs) -> Result<(), BoxError> {
    let log = EventStore::open(args.data_dir.log())?;
    let store = log.store();
    let projections = Projections::open_with(store, args.data_dir.tables(), args.tables.policy())?;
    projections.clear()?;
    let progress = ProgressBar::new(store.head()).with_style(ProgressStyle::with_template(
        "rebuilding {bar:40} {human_pos}/{human_len} events, {per_sec}, {eta} left",
    )?);
    let started = Instant::now();
    let folded = projections.catch_up(|done, _| progress.set_position(done))?;
    projections.checkpoint()?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "rebuilt every table from {folded} events in {seconds:.2} s ({:.0} events/s); {} dossiers, {} in memory, {} months sealed",
        folded as f64 / seconds.max(1e-9),
        projections.dossier_count(),
        projections.dossier_storage().in_memory,
        projections.dossier_storage().sealed_months
    );
    drop(projections);
    drop(log);
    Ok(())
}

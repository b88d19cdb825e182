//! `chiso verify`: recomputes the log's hash chain, in a data directory (read-only: also while
//! a server has it open, or in a backup) or through a running chiso, and names the first chunk
//! that does not match. Exits non-zero when the log does not verify.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Options of `chiso verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The data directory (or a backup of one) to read; without it, ask the chiso at `--url`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The chiso to ask when no `--data-dir` is given.
    #[arg(long, env = "CHISO_URL", default_value = "http://127.0.0.1:7878")]
    url: String,
    /// Bearer token (`query`) for `--url`.
    #[arg(long, env = "CHISO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// First position to check.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// One past the last position to check (the chain's end when absent).
    #[arg(long)]
    to: Option<u64>,
}

pub async fn verify(args: VerifyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let to = args.to.unwrap_or(u64::MAX);
    let report = match &args.data_dir {
        Some(dir) => {
            let log = dir.join("log");
            let (from, started) = (args.from, std::time::Instant::now());
            let verified = tokio::task::spawn_blocking(move || {
                let progress = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
                    "{spinner} verifying the hash chain: position {human_pos} ({per_sec}, {elapsed})",
                )?);
                progress.enable_steady_tick(std::time::Duration::from_millis(200));
                let verified = chiso_store::verify_dir(
                    &log,
                    from,
                    to,
                    |position| progress.set_position(position),
                    |event| chiso_ingest::anchor_of(event.event_type, event.data),
                );
                progress.finish_and_clear();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(verified?)
            })
            .await?
            .map_err(|e| e.to_string())?;
            chiso_api::verify_report(&verified, started.elapsed().as_secs_f64())
        }
        None => {
            let mut url = format!(
                "{}/v1/verify?from={}",
                args.url.trim_end_matches('/'),
                args.from
            );
            if let Some(to) = args.to {
                url.push_str(&format!("&to={to}"));
            }
            let body =
                crate::client::send(reqwest::Client::new().get(url), args.token.as_deref()).await?;
            serde_json::from_slice(&body)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report["ok"] == true {
        eprintln!(
            "the log verifies: positions {}–{} ({} events, {} published hashes checked)",
            report["from"],
            report["head"]["position"],
            report["events"],
            report["anchors"]["checked"]
        );
        return Ok(());
    }
    match report["mismatch"].as_object() {
        Some(mismatch) => Err(format!(
            "the log does not verify: the chunk at position {} does not match ({})",
            mismatch["position"],
            mismatch["reason"].as_str().unwrap_or_default()
        )
        .into()),
        None => Err(format!(
            "the log does not verify: published rankings copied chain hashes it no longer gives: {}",
            report["anchors"]["mismatched"]
        )
        .into()),
    }
}

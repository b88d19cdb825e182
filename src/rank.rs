//! `chiso rank --month YYYY-MM`: compute and publish a month's rankings on a running chiso.

use clap::Args;

/// Options of `chiso rank`.
#[derive(Args)]
pub struct RankArgs {
    /// The month, YYYY-MM (local time).
    #[arg(long)]
    month: String,
    /// The chiso to ask.
    #[arg(long, env = "CHISO_URL", default_value = "http://127.0.0.1:7878")]
    url: String,
    /// Bearer token (`admin`).
    #[arg(long, env = "CHISO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn rank(args: RankArgs) -> Result<(), Box<dyn std::error::Error>> {
    let url = format!(
        "{}/v1/rankings/{}/publish",
        args.url.trim_end_matches('/'),
        args.month
    );
    let request = reqwest::Client::new().post(url);
    let body = crate::client::send(request, args.token.as_deref()).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    match answer["published"].as_u64() {
        Some(0) => println!(
            "{}: the published rankings are up to date (computed in {:.1} ms)",
            args.month,
            answer["computed_ms"].as_f64().unwrap_or_default()
        ),
        Some(n) => println!(
            "{}: published {n} rankings at positions {}–{}",
            args.month, answer["first_position"], answer["last_position"]
        ),
        None => println!("{answer}"),
    }
    Ok(())
}

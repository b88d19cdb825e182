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
    let mut request = reqwest::Client::new().post(url);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let code = answer["error"]["code"].as_str().unwrap_or("error");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        return Err(format!("{status}: {code}: {message}").into());
    }
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

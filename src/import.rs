//! `chiso import`: NDJSON event files through the same decoding and validation as the API,
//! either to a running chiso (`--url`) or straight into a data directory (`--data-dir`,
//! through the same decoding and ingestor in-process, as the data directory's admin). Batches are atomic and ids idempotent, so running an
//! interrupted import again is safe; the first bad line stops it, named by file and line.

use axum::http::StatusCode;
use chiso_ingest::{Author, IngestModel, Ingestor};
use chiso_store::{EventStore, StoreMetrics};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Options of `chiso import`.
#[derive(Args)]
pub struct ImportArgs {
    /// NDJSON files: one `{stream, id, type, data, metadata?}` per line (`-`: standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A running chiso to import through.
    #[arg(
        long,
        env = "CHISO_URL",
        default_value = "http://127.0.0.1:7878",
        conflicts_with = "data_dir"
    )]
    url: String,
    /// Import straight into this data directory (no chiso may be serving it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Bearer token for `--url` (an `append:` scope covering the events' agencies).
    #[arg(long, env = "CHISO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Events per request.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
}

/// Where batches go.
enum Sink {
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
    },
    /// Whoever may write the data directory is its admin.
    Local { ingestor: Ingestor },
}

impl Sink {
    /// Posts one NDJSON batch; the status and the JSON answer.
    async fn post(&self, body: String) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
        match self {
            Self::Http { client, url, token } => {
                let mut request = client.post(format!("{url}/v1/events")).body(body);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await?;
                let status = StatusCode::from_u16(response.status().as_u16())?;
                Ok((status, response.json().await.unwrap_or(Value::Null)))
            }
            Self::Local { ingestor } => {
                // Whoever may write the data directory is its admin, recorded as `import`.
                let author = Author::admin("import");
                match chiso_api::append_ndjson(ingestor, &author, body.into()).await {
                    Ok(_) => Ok((StatusCode::OK, Value::Null)),
                    Err(error) => Ok((error.status(), error.body())),
                }
            }
        }
    }
}

pub async fn import(args: ImportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sink = match &args.data_dir {
        Some(dir) => {
            let appender = EventStore::open_with(
                dir.join("log"),
                StoreMetrics::default(),
                IngestModel::new(),
            )?;
            Sink::Local {
                ingestor: Ingestor::new(appender),
            }
        }
        None => Sink::Http {
            client: reqwest::Client::new(),
            url: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        },
    };
    let mut total = 0;
    for file in &args.files {
        total += import_file(&sink, file, args.batch.max(1)).await?;
    }
    if let Sink::Local { ingestor } = &sink {
        ingestor.store().shutdown().await;
    }
    eprintln!("imported {total} events from {} file(s)", args.files.len());
    Ok(())
}

/// Sends one file in batches; returns how many events it holds.
async fn import_file(
    sink: &Sink,
    path: &Path,
    batch: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    // `-` is standard input (`chiso demo | chiso import --url … -`): its length is unknown.
    let (reader, length): (Box<dyn std::io::Read + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let length = file.metadata()?.len();
        (Box::new(file), Some(length))
    };
    let progress = ProgressBar::new(length.unwrap_or(0)).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    progress.set_message(path.display().to_string());
    if length.is_none() {
        progress.set_style(ProgressStyle::with_template(
            "{msg} {bytes} {bytes_per_sec} {elapsed}",
        )?);
    }
    // The next batch is read (and, from a pipe, generated) while the server writes this one:
    // a thread reads the lines ahead, a batch or two at most, in order.
    let (batches, mut received) = tokio::sync::mpsc::channel(READ_AHEAD);
    let reading = {
        let (progress, name) = (progress.clone(), path.display().to_string());
        std::thread::Builder::new()
            .name("chiso-import-read".into())
            .spawn(move || read_batches(reader, batch, &progress, &name, batches))?
    };
    let sent = async {
        let mut events = 0u64;
        while let Some(read) = received.recv().await {
            let (body, lines) = read?;
            events += send(sink, path, body, lines).await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(events)
    }
    .await;
    // Dropping the receiver stops the reader at its next batch.
    drop(received);
    let _ = reading.join();
    let events = sent?;
    progress.finish();
    Ok(events)
}

/// Batches read ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// One batch: NDJSON lines and their line numbers in the file.
type LinesBatch = (String, Vec<usize>);

/// Reads `reader` into batches of `batch` non-empty lines and sends them in order; stops at
/// the first read error (sent, named by file and line) or when nobody receives any more.
fn read_batches(
    reader: Box<dyn std::io::Read + Send>,
    batch: usize,
    progress: &ProgressBar,
    name: &str,
    batches: tokio::sync::mpsc::Sender<Result<LinesBatch, String>>,
) {
    let (mut body, mut lines) = (String::new(), Vec::new());
    for (number, line) in (1..).zip(std::io::BufReader::with_capacity(1 << 20, reader).lines()) {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let _ = batches.blocking_send(Err(format!("{name}:{number}: {error}")));
                return;
            }
        };
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        body.push_str(&line);
        body.push('\n');
        lines.push(number);
        if lines.len() == batch {
            let full = (std::mem::take(&mut body), std::mem::take(&mut lines));
            if batches.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !lines.is_empty() {
        let _ = batches.blocking_send(Ok((body, lines)));
    }
}

/// Sends a batch; on refusal, names the file line of the first bad event.
async fn send(
    sink: &Sink,
    path: &Path,
    body: String,
    lines: Vec<usize>,
) -> Result<u64, Box<dyn std::error::Error>> {
    let (status, answer) = sink.post(body).await?;
    if status.is_success() {
        return Ok(lines.len() as u64);
    }
    let error = &answer["error"];
    let line = error["details"]["line"]
        .as_u64()
        .and_then(|l| lines.get(l as usize - 1));
    let place = match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    };
    let message = error["message"].as_str().unwrap_or("no message");
    let message = message
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(message, |(_, rest)| rest);
    Err(format!(
        "{place}: {} ({status}): {message}",
        error["code"].as_str().unwrap_or("error")
    )
    .into())
}

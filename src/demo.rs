//! `chiso demo` writes the demo history as NDJSON; `chiso serve --demo` loads it into an empty
//! data directory through the normal append path before serving.

use chiso_ingest::demo::{write_demo, DemoOptions};
use chiso_ingest::{Author, Ingestor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;

/// Options of `chiso demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Provinces with agencies and dossiers: Vĩnh Phúc, then others (synthetic), up to 63.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=63))]
    provinces: u16,
    /// Dossier volume of the other provinces relative to Vĩnh Phúc's (Vĩnh Phúc never changes).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Go on to 31 December 2025 and apply the reorganisation of 1 July 2025 (Resolution
    /// 202/2025/QH15): Vĩnh Phúc and Hòa Bình merged into Phú Thọ (those two synthetic,
    /// named so), districts dissolved, communes merged two by two (a synthetic mapping).
    #[arg(long)]
    reorganise_2025: bool,
    /// Dossiers from this year on (a shorter history; agencies and services are all there).
    #[arg(long, default_value_t = 2010, value_parser = clap::value_parser!(i32).range(2010..=2025))]
    from_year: i32,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

impl DemoArgs {
    fn options(&self) -> DemoOptions {
        DemoOptions {
            seed: self.seed,
            provinces: self.provinces.into(),
            scale: self.scale,
            reorganise_2025: self.reorganise_2025,
            from_year: self.from_year,
        }
    }
}

pub async fn demo(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.scale.is_finite() && args.scale > 0.0) {
        return Err("--scale must be a positive number".into());
    }
    let options = args.options();
    let output = args.output.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut out: Box<dyn Write> = match output {
            Some(path) => Box::new(std::fs::File::create(path)?),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
        let written = write_demo(&options, &mut out)?;
        out.flush()?;
        Ok(written)
    })
    .await??;
    Ok(())
}

/// Lines per append while loading.
const BATCH_LINES: usize = 5_000;

/// Sends the generated NDJSON in batches of whole lines.
struct Batches {
    buffer: Vec<u8>,
    lines: usize,
    sender: tokio::sync::mpsc::Sender<(Vec<u8>, usize)>,
}

impl Write for Batches {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        self.lines += bytes.iter().filter(|b| **b == b'\n').count();
        if self.lines >= BATCH_LINES && self.buffer.last() == Some(&b'\n') {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = (
            std::mem::take(&mut self.buffer),
            std::mem::take(&mut self.lines),
        );
        self.sender
            .blocking_send(batch)
            .map_err(|_| std::io::Error::other("the loader stopped"))
    }
}

/// Loads the demo history (default options) in NDJSON batches through `ingestor`, as
/// `POST /v1/events` appends them.
pub async fn load(
    ingestor: &Ingestor,
    options: DemoOptions,
) -> Result<u64, Box<dyn std::error::Error>> {
    let (sender, mut batches) = tokio::sync::mpsc::channel(4);
    let generator = tokio::task::spawn_blocking(move || {
        let mut out = Batches {
            buffer: Vec::new(),
            lines: 0,
            sender,
        };
        write_demo(&options, &mut out)?;
        out.flush()
    });
    let progress = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
        "{spinner} loading the demo history: {human_pos} events ({per_sec}, {elapsed})",
    )?);
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut loaded = 0;
    while let Some((body, lines)) = batches.recv().await {
        if let Err(error) =
            chiso_api::append_ndjson(ingestor, &Author::admin("demo"), body.into()).await
        {
            return Err(format!(
                "the demo history was refused at event {loaded}: {}",
                error.body()
            )
            .into());
        }
        loaded += lines as u64;
        progress.set_position(loaded);
    }
    generator.await??;
    progress.finish_and_clear();
    Ok(loaded)
}

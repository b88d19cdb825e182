//! `chiso serve`: open the log, serve HTTP, and on SIGTERM or Ctrl-C drain in-flight appends
//! before exiting.

use crate::cli::{DataDir, TableArgs};
use chiso_api::{router, AppState, Auth, Limits, ServeLimits};
use chiso_flight::FlightLimits;
use chiso_ingest::{IngestModel, Ingestor};
use chiso_pg::PgLimits;
use chiso_query::{Projections, SqlEngine, SqlLimits};
use chiso_store::{EventStore, LogOptions};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `chiso serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data_dir: DataDir,
    #[command(flatten)]
    tables: TableArgs,
    /// Address to listen on.
    #[arg(
        long,
        env = "CHISO_LISTEN",
        default_value = "127.0.0.1:7878",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Turns authentication on, with this admin token (at least 16 characters).
    #[arg(
        long,
        env = "CHISO_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// Queries a token may run at once, unless it was created with its own `limits.queries`
    /// (429 `too_many_queries` past it). Unlimited when absent.
    #[arg(long, env = "CHISO_TOKEN_QUERIES", value_name = "N")]
    token_queries: Option<u32>,
    /// Rows a token's queries may return a minute, unless it has its own limit (429
    /// `row_quota_exceeded`). Unlimited when absent.
    #[arg(long, env = "CHISO_TOKEN_ROWS_PER_MINUTE", value_name = "N")]
    token_rows_per_minute: Option<u64>,
    /// Events a token may append a second, unless it has its own limit (429
    /// `append_quota_exceeded`). Unlimited when absent.
    #[arg(long, env = "CHISO_TOKEN_APPENDS_PER_SECOND", value_name = "N")]
    token_appends_per_second: Option<u32>,
    /// Memory all running SQL queries may hold together, in MiB (503 past it).
    #[arg(long, env = "CHISO_SQL_MEMORY_MB", default_value_t = 1024)]
    sql_memory_mb: usize,
    /// Threads SQL queries run on (and partitions a scan is split into), at a lower CPU
    /// priority than appends and the fold.
    #[arg(long, env = "CHISO_SQL_THREADS", default_value_t = SqlLimits::default().threads)]
    sql_threads: usize,
    /// The most rows one SQL answer may have (413 past it).
    #[arg(long, env = "CHISO_SQL_MAX_ROWS", default_value_t = SqlLimits::default().max_rows)]
    sql_max_rows: usize,
    /// The most one call of `repeat`, `lpad`, `concat`, … may build for a batch of rows, in
    /// MiB (413 `value_too_large` past it): the memory the query pool does not count.
    #[arg(long, env = "CHISO_SQL_MAX_FUNCTION_MB", default_value_t = SqlLimits::default().max_function_bytes >> 20)]
    sql_max_function_mb: usize,
    /// Queries that ended kept in `system.queries` for admins (0 keeps none).
    #[arg(long, env = "CHISO_QUERY_LOG_SIZE", default_value_t = SqlLimits::default().query_log)]
    query_log_size: usize,
    /// Stream runs (one per append) and event ids kept in memory before the background
    /// indexer writes them to the log's stream and id indexes: more means fewer, larger
    /// background writes, more memory (~120 bytes a run, ~40 an id) and more to rebuild from
    /// the log after a crash.
    #[arg(long, env = "CHISO_INDEX_BATCH_RUNS", default_value_t = LogOptions::default().index_batch_runs)]
    index_batch_runs: usize,
    /// Free space, in MiB, that appends leave on the data directory's disk for RocksDB's
    /// flushes and compactions and the tables' checkpoints: below it appends answer 507
    /// `disk_full` (nothing written) until space is freed. 0 turns the check off.
    #[arg(long, env = "CHISO_DISK_RESERVE_MB", default_value_t = LogOptions::default().disk_reserve_bytes >> 20)]
    disk_reserve_mb: u64,
    /// The most the log's memtables (writes not yet flushed) hold together, in MiB.
    #[arg(long, env = "CHISO_LOG_MEMTABLE_MB", default_value_t = LogOptions::default().memtable_bytes >> 20)]
    log_memtable_mb: usize,
    /// Load the demo history (Vĩnh Phúc 2010–2019) first, if the data directory is empty.
    #[arg(long)]
    demo: bool,
    /// With `--demo`: provinces with agencies and dossiers (as `chiso demo --provinces`), so
    /// the national league table has provinces to rank.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=63), requires = "demo")]
    demo_provinces: u16,
    /// With `--demo`: the other provinces' dossier volume relative to Vĩnh Phúc's (as `chiso
    /// demo --scale`).
    #[arg(long, default_value_t = 1.0, requires = "demo")]
    demo_scale: f64,
    /// With `--demo`: on to 2025 through the reorganisation of 1 July 2025 (as `chiso demo
    /// --reorganise-2025`).
    #[arg(long, requires = "demo")]
    demo_reorganise_2025: bool,
    /// With `--demo`: dossiers from this year on (as `chiso demo --from-year`).
    #[arg(long, default_value_t = 2010, value_parser = clap::value_parser!(i32).range(2010..=2025), requires = "demo")]
    demo_from_year: i32,
    /// Largest body of an append or NDJSON batch, in bytes (413 above it).
    #[arg(long, env = "CHISO_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Connections open at once; past it a new one is answered 503 `too_many_connections`.
    #[arg(long, env = "CHISO_MAX_CONNECTIONS", default_value_t = ServeLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "CHISO_HEADER_TIMEOUT_SECS", default_value_t = ServeLimits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seconds a connection may move no bytes either way before it is closed.
    #[arg(long, env = "CHISO_IDLE_TIMEOUT_SECS", default_value_t = ServeLimits::default().idle_timeout.as_secs())]
    idle_timeout_secs: u64,
    /// Bytes of append bodies held at once across requests, in MiB: past it a new body waits
    /// a second for room, then is refused with 429 `overloaded`.
    #[arg(long, env = "CHISO_MAX_INFLIGHT_BODY_MB", default_value_t = Limits::default().max_inflight_body_bytes >> 20)]
    max_inflight_body_mb: usize,
    /// Largest body of a SQL request, in bytes (413 above it); also the longest SQL text a
    /// PostgreSQL client may send (SQLSTATE 54000 above it).
    #[arg(long, env = "CHISO_MAX_SQL_BODY_BYTES", default_value_t = Limits::default().max_sql_body_bytes)]
    max_sql_body_bytes: usize,
    /// Address of the PostgreSQL wire protocol (psql, JDBC, psycopg, BI tools), or `off`.
    #[arg(
        long,
        env = "CHISO_PG_LISTEN",
        default_value = "127.0.0.1:7879",
        value_name = "ADDR|off",
        value_parser = optional_address
    )]
    pg_listen: OptionalAddress,
    /// PostgreSQL connections open at once; past it a new one is refused (SQLSTATE 53300).
    #[arg(long, env = "CHISO_PG_MAX_CONNECTIONS", default_value_t = PgLimits::default().max_connections)]
    pg_max_connections: usize,
    /// Address of Arrow Flight SQL (ADBC, pyarrow, polars, the Flight SQL JDBC driver), or
    /// `off`.
    #[arg(
        long,
        env = "CHISO_FLIGHT_LISTEN",
        default_value = "127.0.0.1:7880",
        value_name = "ADDR|off",
        value_parser = optional_address
    )]
    flight_listen: OptionalAddress,
    /// TLS certificate chain (PEM) for the PostgreSQL protocol and Flight SQL; with
    /// `--tls-key`. A client
    /// on another host must use TLS to send its token.
    #[arg(long, env = "CHISO_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "CHISO_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// A listening address, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct OptionalAddress(Option<SocketAddr>);

fn optional_address(text: &str) -> Result<OptionalAddress, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddress(None));
    }
    text.parse()
        .map(|address| OptionalAddress(Some(address)))
        .map_err(|error| format!("{error}: give an address such as 127.0.0.1:7879, or off"))
}

pub async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    chiso_api::install_panic_hook();
    match &args.admin_token {
        Some(token) if token.len() < 16 => {
            return Err("CHISO_ADMIN_TOKEN must be at least 16 characters long".into());
        }
        Some(_) => {}
        None if !args.listen.ip().is_loopback() => {
            return Err(format!(
                "refusing to listen on {} without authentication: set CHISO_ADMIN_TOKEN, \
                 or keep chiso on loopback only (127.0.0.1)",
                args.listen
            )
            .into());
        }
        None if args
            .pg_listen
            .0
            .is_some_and(|address| !address.ip().is_loopback()) =>
        {
            return Err(
                "refusing the PostgreSQL protocol off loopback without authentication: set \
                 CHISO_ADMIN_TOKEN, or keep --pg-listen on loopback only (127.0.0.1)"
                    .into(),
            );
        }
        None if args
            .flight_listen
            .0
            .is_some_and(|address| !address.ip().is_loopback()) =>
        {
            return Err(
                "refusing Flight SQL off loopback without authentication: set \
                 CHISO_ADMIN_TOKEN, or keep --flight-listen on loopback only (127.0.0.1)"
                    .into(),
            );
        }
        None => tracing::warn!(
            "no admin token (CHISO_ADMIN_TOKEN): serving loopback only, without authentication"
        ),
    }
    // Flight SQL sends the token in every call's headers: off loopback only over TLS.
    let tls_asked = args.tls_cert.is_some() && args.tls_key.is_some();
    if !tls_asked
        && args
            .flight_listen
            .0
            .is_some_and(|address| !address.ip().is_loopback())
    {
        return Err(
            "refusing Flight SQL off loopback without TLS: every call carries a token; set \
             --tls-cert and --tls-key, or keep --flight-listen on loopback only (127.0.0.1)"
                .into(),
        );
    }
    // TLS that was asked for and cannot be set up stops the start: no silent plaintext.
    let (tls, flight_tls) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (
            Some(chiso_pg::tls_acceptor(cert, key)?),
            Some(chiso_flight::tls_config(cert, key)?),
        ),
        _ => (None, None),
    };
    let metrics = chiso_store::StoreMetrics::default();
    let options = LogOptions {
        index_batch_runs: args.index_batch_runs,
        disk_reserve_bytes: args.disk_reserve_mb << 20,
        memtable_bytes: args.log_memtable_mb << 20,
        // The tables are put back first, on both cores; compactions run once they are.
        defer_compactions: true,
        ..LogOptions::default()
    };
    let appender =
        EventStore::open_with_options(args.data_dir.log(), metrics, IngestModel::new(), options)?;
    let store = appender.store().clone();
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_sql_body_bytes: args.max_sql_body_bytes,
        max_inflight_body_bytes: args.max_inflight_body_mb << 20,
    };
    let projections = Projections::open_with(&store, args.data_dir.tables(), args.tables.policy())?;
    store.resume_compactions()?;
    tracing::info!(
        checkpoint = projections.position(),
        log_head = store.head(),
        "tables loaded; following the log"
    );
    let sql_limits = SqlLimits {
        memory_bytes: args.sql_memory_mb << 20,
        max_rows: args.sql_max_rows,
        threads: args.sql_threads,
        max_function_bytes: args.sql_max_function_mb << 20,
        query_log: args.query_log_size,
        ..SqlLimits::default()
    };
    let engine = SqlEngine::new(&store, &projections, sql_limits)?;
    let token_defaults = chiso_ingest::TokenLimits {
        queries: args.token_queries.filter(|n| *n > 0),
        rows_per_minute: args.token_rows_per_minute.filter(|n| *n > 0),
        appends_per_second: args.token_appends_per_second.filter(|n| *n > 0),
    };
    let auth = match &args.admin_token {
        Some(token) => Auth::enabled_with(token, &store, token_defaults)?,
        None => Auth::default(),
    };
    let state = AppState::new(Ingestor::new(appender), limits)
        .with_sql(engine.clone())
        .with_auth(auth.clone());
    let shutdown = state.shutdown.clone();
    // The tables stop following only after the server has drained: every append acknowledged
    // while draining is folded and saved.
    let drained = tokio_util::sync::CancellationToken::new();
    let follower = projections.follow(drained.clone());
    if args.demo {
        let options = chiso_ingest::demo::DemoOptions {
            provinces: args.demo_provinces.into(),
            scale: args.demo_scale,
            reorganise_2025: args.demo_reorganise_2025,
            from_year: args.demo_from_year,
            ..Default::default()
        };
        load_demo(&state.ingestor, options).await?;
    }
    let scheduler = chiso_api::spawn_scheduler(state.clone());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let address = listener.local_addr()?;
    let flight = match args.flight_listen.0 {
        Some(flight_address) => {
            let flight_listener = tokio::net::TcpListener::bind(flight_address).await?;
            let flight_address = flight_listener.local_addr()?;
            tracing::info!(address = %flight_address, tls = flight_tls.is_some(), "Flight SQL listening");
            let limits = FlightLimits {
                max_message_bytes: args.max_sql_body_bytes.max(1 << 20),
                ..FlightLimits::default()
            };
            Some(tokio::spawn(chiso_flight::serve(
                flight_listener,
                engine.clone(),
                auth.clone(),
                flight_tls,
                limits,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let postgres = match args.pg_listen.0 {
        Some(pg_address) => {
            let pg_listener = tokio::net::TcpListener::bind(pg_address).await?;
            let pg_address = pg_listener.local_addr()?;
            tracing::info!(address = %pg_address, tls = tls.is_some(), "PostgreSQL protocol listening");
            let limits = PgLimits {
                max_connections: args.pg_max_connections,
                max_sql_bytes: args.max_sql_body_bytes,
                ..PgLimits::default()
            };
            Some(tokio::spawn(chiso_pg::serve(
                pg_listener,
                engine,
                auth,
                tls,
                limits,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(%address, "chiso listening");
    // Where `chiso backup` finds this server while it holds the data directory.
    let url_file = args.data_dir.path.join(crate::backup::SERVE_URL_FILE);
    std::fs::write(&url_file, format!("http://{}\n", reachable(address)))?;
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let serve_limits = ServeLimits {
        max_connections: args.max_connections,
        header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs),
    };
    raise_open_files_limit(serve_limits.max_connections + args.pg_max_connections);
    chiso_api::serve(listener, router(state), serve_limits, shutdown.clone()).await;
    if let Some(postgres) = postgres {
        if let Err(error) = postgres.await {
            tracing::error!(%error, "the PostgreSQL listener failed");
        }
    }
    if let Some(flight) = flight {
        match flight.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the Flight SQL listener failed"),
            Err(error) => tracing::error!(%error, "the Flight SQL listener failed"),
        }
    }
    // Every acknowledged append is in the log now: fold it and save the tables, then close.
    shutdown.cancel();
    scheduler.abort();
    drained.cancel();
    follower.await?;
    store.shutdown().await;
    let _ = std::fs::remove_file(&url_file);
    tracing::info!("chiso stopped cleanly");
    Ok(())
}

/// Raises the soft limit of open files to the hard one, so `max_connections` sockets and
/// RocksDB's files fit; warns when even the hard limit is too low.
fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    let open_files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if open_files < max_connections as u64 + 256 {
        tracing::warn!(
            open_files,
            max_connections,
            "the open-files limit is below the connection limit and the log's files: raise ulimit -n"
        );
    }
}

/// The address a local client reaches a listener on (loopback for "every interface").
fn reachable(mut address: std::net::SocketAddr) -> std::net::SocketAddr {
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
    }
    shutdown.cancel();
}

/// `--demo`: the demo history into an empty log; a log with events is left as it is.
async fn load_demo(
    ingestor: &Ingestor,
    options: chiso_ingest::demo::DemoOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    if !(options.scale.is_finite() && options.scale > 0.0) {
        return Err("--demo-scale must be a positive number".into());
    }
    let store = ingestor.store();
    if store.head() > 0 {
        tracing::info!(
            events = store.head(),
            "--demo: the log is not empty, nothing loaded"
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let loaded = crate::demo::load(ingestor, options).await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        events = loaded,
        seconds,
        events_per_second = loaded as f64 / seconds,
        "--demo: history loaded"
    );
    Ok(())
}

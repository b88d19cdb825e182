//! Table benchmarks (issue #4): rebuilding every table by replaying the log, restart from
//! segments, append → visible in SQL over HTTP, and the period report and a monthly on-time
//! query. `bench/tables.sh` runs it beside its PostgreSQL and DuckDB peers, on the same
//! events (written to `$CHISO_BENCH_DIR/tables-events.csv`).
//! `cargo bench --bench tables -- rebuild visibility report`; figures are medians.

use chiso_api::{router, AppState, Limits};
use chiso_ingest::{Author, IngestModel, Ingestor};
use chiso_query::{Projections, SqlEngine, SqlLimits};
use chiso_store::{
    AppendRequest, Appender, EventStore, ExpectedRevision, ProposedEvent, StoreMetrics, StreamName,
};
use serde_json::json;
use std::io::Write;
use std::time::Instant;
use uuid::Uuid;

const RUNS: usize = 3;
/// Dossiers in the benchmark history (about 2.6 events each).
const DOSSIERS: usize = 400_000;
const AGENCIES: usize = 166;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch =
        std::env::var("CHISO_BENCH_DIR").unwrap_or_else(|_| "target/bench-scratch".into());
    std::fs::create_dir_all(&scratch).unwrap();
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |section: &str| only.is_empty() || only.iter().any(|o| section.contains(o.as_str()));
    let dir = tempfile::tempdir_in(&scratch).unwrap();
    let store = runtime.block_on(history(dir.path(), &scratch));
    if wanted("rebuild") {
        rebuild(&store, dir.path());
    }
    if wanted("report") {
        runtime.block_on(report(&store, dir.path()));
    }
    drop(store);
    if wanted("visibility") {
        runtime.block_on(visibility(&scratch));
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn event(stream: &str, event_type: &str, data: serde_json::Value) -> (String, ProposedEvent) {
    let proposed = ProposedEvent {
        id: Uuid::new_v4(),
        event_type: event_type.into(),
        data: data.to_string(),
        metadata: "{}".into(),
        decoded: (),
    };
    (stream.to_owned(), proposed)
}

fn time(day: u64, seconds: u64) -> String {
    let at = chrono::DateTime::from_timestamp(
        (1_546_300_800 - 7 * 3600 + day * 86_400 + seconds) as i64,
        0,
    )
    .unwrap();
    at.with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .to_rfc3339()
}

/// One province's year 2019: agencies, services, and dossiers received, paused, resolved,
/// withdrawn, paid and rated, appended through the catalog and the write model. Also
/// written as CSV for the peers.
async fn history(dir: &std::path::Path, scratch: &str) -> Appender<IngestModel> {
    let store = EventStore::open_with(dir.join("log"), StoreMetrics::default(), IngestModel::new())
        .unwrap();
    let mut events = vec![event(
        "agency-26",
        "AgencyRegistered",
        json!({"code": "26", "name": "Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}),
    )];
    for a in 0..AGENCIES {
        let kind = if a < 20 {
            "department"
        } else if a < 29 {
            "district"
        } else {
            "commune"
        };
        events.push(event(&format!("agency-26.{a}"), "AgencyRegistered", json!({"code": format!("26.{a}"), "name": format!("Agency {a}"), "kind": kind, "parent": "26", "province": "26"})));
        events.push(event(&format!("service-s{a}"), "ServiceLaunched", json!({"code": format!("s{a}"), "agency": format!("26.{a}"), "name": "Service", "field": "Field", "level": 1 + a % 4, "at": time(0, 0)})));
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for n in 0..DOSSIERS {
        let stream = format!("dossier-26-{n}");
        let agency = (next() % AGENCIES as u64) as usize;
        let day = (n * 364 / DOSSIERS) as u64;
        let received = next() % 36_000 + 28_800;
        let channel = ["direct", "online", "postal"][(next() % 3) as usize];
        events.push(event(&stream, "DossierReceived", json!({"agency": format!("26.{agency}"), "service": format!("s{agency}"), "channel": channel, "received_at": time(day, received), "due_at": time(day + 5, 61_200)})));
        let mut last = day * 86_400 + received;
        if next() % 10 == 0 {
            events.push(event(
                &stream,
                "DossierPaused",
                json!({"at": time(0, last + 3600)}),
            ));
            events.push(event(
                &stream,
                "DossierResumed",
                json!({"at": time(0, last + 90_000)}),
            ));
            last += 90_000;
        }
        match next() % 10 {
            0 => events.push(event(
                &stream,
                "DossierWithdrawn",
                json!({"at": time(0, last + 7200)}),
            )),
            1 => {}
            _ => {
                let at = last + next() % (7 * 86_400);
                events.push(event(
                    &stream,
                    "DossierResolved",
                    json!({"at": time(0, at), "outcome": "approved"}),
                ));
                if next() % 3 == 0 {
                    events.push(event(&stream, "DossierPaid", json!({"at": time(0, at + 60), "online": next() % 2 == 0, "amount": 50_000})));
                    events.push(event(
                        &stream,
                        "DossierRated",
                        json!({"at": time(0, at + 120), "score": 1 + next() % 5}),
                    ));
                }
            }
        }
    }
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(format!("{scratch}/tables-events.csv")).unwrap(),
    );
    for (position, (stream, e)) in events.iter().enumerate() {
        let data = e.data.replace('"', "\"\"");
        writeln!(csv, "{position},{stream},{},\"{data}\"", e.event_type).unwrap();
    }
    csv.flush().unwrap();
    let ingestor = Ingestor::new(store.clone());
    for chunk in events.chunks(10_000) {
        let requests = chunk
            .iter()
            .map(|(stream, e)| AppendRequest {
                stream: StreamName::new(stream.as_str()).unwrap(),
                expected: ExpectedRevision::Any,
                events: vec![e.clone()],
                principal: (),
            })
            .collect();
        ingestor
            .append_envelopes(&Author::admin("bench"), requests)
            .await
            .unwrap();
    }
    println!(
        "history: {} events, {DOSSIERS} dossiers, {} agencies (one province, 2019)",
        store.head(),
        AGENCIES + 1
    );
    store
}

/// Every table from nothing, then a restart from the segments it checkpointed.
fn rebuild(store: &EventStore, dir: &std::path::Path) {
    let mut rates = Vec::new();
    let mut checkpoints = Vec::new();
    let mut restarts = Vec::new();
    // One segment directory: the manifest lives in the log's metadata, one per log.
    let tables = dir.join("tables");
    for _ in 0..RUNS {
        let projections = Projections::open(store, &tables).unwrap();
        projections.clear().unwrap();
        let started = Instant::now();
        let folded = projections.catch_up(|_, _| {}).unwrap();
        rates.push(folded as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        projections.checkpoint().unwrap();
        checkpoints.push(started.elapsed().as_secs_f64());
        drop(projections);
        let started = Instant::now();
        let reopened = Projections::open(store, &tables).unwrap();
        reopened.catch_up(|_, _| {}).unwrap();
        restarts.push(started.elapsed().as_secs_f64());
        assert_eq!(reopened.dossier_count(), DOSSIERS as u64);
    }
    println!(
        "tables: rebuild by replay, {} events: {:.0} events/s (median of {RUNS}; runs {rates:.0?})",
        store.head(),
        median(rates.clone())
    );
    println!("tables: first checkpoint (every segment as Parquet): {:.2} s; restart from segments: {:.2} s (medians of {RUNS})", median(checkpoints), median(restarts));
}

/// The period report for the province-year, and a monthly on-time rate by agency kind.
async fn report(store: &EventStore, dir: &std::path::Path) {
    let projections = Projections::open(store, dir.join("tables")).unwrap();
    projections.catch_up(|_, _| {}).unwrap();
    let engine = SqlEngine::new(store, &projections, SqlLimits::default()).unwrap();
    let queries = [
        ("dossier_report, one province-year", "SELECT * FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31')"),
        ("monthly on-time rate by agency kind", "SELECT date_trunc('month', d.day) AS month, a.kind, sum(d.resolved_early + d.resolved_on_time) * 1.0 / sum(d.resolved) AS on_time_rate FROM agency_daily d JOIN agencies a ON a.code = d.agency WHERE d.day BETWEEN DATE '2019-01-01' AND DATE '2019-12-31' GROUP BY 1, 2 ORDER BY 1, 2"),
        ("on-time rate of one month from dossiers", "SELECT agency, avg(CASE WHEN timeliness <> 'late' THEN 1.0 ELSE 0.0 END) FROM dossiers WHERE resolved_at >= '2019-06-01' AND resolved_at < '2019-07-01' AND received_at >= '2019-04-01' GROUP BY agency"),
    ];
    for (name, sql) in queries {
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            let batches = engine.collect(sql).await.unwrap();
            assert!(!batches.is_empty());
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "sql: {name}: p50 {:.1} ms, p90 {:.1} ms (21 runs)",
            percentile(&times, 0.5),
            percentile(&times, 0.9)
        );
    }
}

/// Append one event over HTTP, then ask for it over HTTP with `min_position`: the time from
/// the append's acknowledgement to the answer that holds it.
async fn visibility(scratch: &str) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let store = EventStore::open_with(
        dir.path().join("log"),
        StoreMetrics::default(),
        IngestModel::new(),
    )
    .unwrap();
    let projections = Projections::open(&store, dir.path().join("tables")).unwrap();
    let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
    let state = AppState::new(Ingestor::new(store.clone()), Limits::default()).with_sql(engine);
    projections.follow(state.shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let client = reqwest::Client::new();
    let post = |path: &str, body: String| client.post(format!("{url}{path}")).body(body).send();
    post("/v1/streams/agency-26", json!({"events": [{"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": "26", "name": "Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}}]}).to_string()).await.unwrap();
    post("/v1/streams/service-s1", json!({"events": [{"id": Uuid::new_v4(), "type": "ServiceLaunched", "data": {"code": "s1", "agency": "26", "name": "S", "field": "F", "level": 4, "at": time(0, 0)}}]}).to_string()).await.unwrap();
    let mut latencies = Vec::new();
    for n in 0..1000 {
        let body = json!({"events": [{"id": Uuid::new_v4(), "type": "DossierReceived", "data": {"agency": "26", "service": "s1", "channel": "online", "received_at": time(n / 10, 36_000), "due_at": time(n / 10 + 5, 36_000)}}]});
        let answer: serde_json::Value =
            post(&format!("/v1/streams/dossier-v{n}"), body.to_string())
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let acknowledged = Instant::now();
        let query = json!({"sql": format!("SELECT count(*) AS n FROM dossiers WHERE id = 'v{n}'"), "min_position": answer["last_position"]});
        let rows: serde_json::Value = client
            .post(format!("{url}/v1/sql"))
            .json(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows[0]["n"], 1);
        latencies.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "visibility: append acknowledged → row in a /v1/sql answer (1000 appends, one at a time): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}

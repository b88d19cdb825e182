//! Log benchmarks (issue #2): the machine's own fsync latency and sequential write speed, the
//! store's fsynced batch append, and NDJSON over HTTP. `bench/run.sh` runs it beside the
//! 64-client load (wrk against the release binary) and the PostgreSQL peers.
//! Run alone with `cargo bench --bench log`; each figure is the median of `RUNS` runs.

use chiso_api::{router, AppState, Limits};
use chiso_ingest::{IngestModel, Ingestor};
use chiso_store::{
    AppendRequest, EventStore, ExpectedRevision, ProposedEvent, StoreMetrics, StreamName,
};
use std::io::Write;
use std::time::{Duration, Instant};
use uuid::Uuid;

const RUNS: usize = 5;
const BATCH: usize = 10_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch =
        std::env::var("CHISO_BENCH_DIR").unwrap_or_else(|_| "target/bench-scratch".into());
    std::fs::create_dir_all(&scratch).unwrap();
    println!("scratch directory: {scratch} (same filesystem as the data)");
    // `cargo bench --bench log -- store http` runs only the named sections.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |section: &str| only.is_empty() || only.iter().any(|o| section.contains(o.as_str()));
    if wanted("machine") {
        machine_limits(&scratch);
    }
    if wanted("store") {
        runtime.block_on(store_batches(&scratch));
    }
    if wanted("http-ndjson") {
        runtime.block_on(http_ndjson(&scratch, false));
    }
    if wanted("http-ndjson-validated") {
        runtime.block_on(http_ndjson(&scratch, true));
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// fdatasync of a 4 KiB write, and a 1 GiB sequential write closed by one fsync.
fn machine_limits(scratch: &str) {
    let path = format!("{scratch}/fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 4096];
    let mut latencies = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "machine: write 4 KiB + fdatasync: p50 {:.3} ms, p99 {:.3} ms ({:.0} fsyncs/s at p50)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        1.0 / percentile(&latencies, 0.5).as_secs_f64()
    );
    let chunk = vec![1u8; 8 << 20];
    let speeds: Vec<f64> = (0..RUNS)
        .map(|_| {
            let mut file = std::fs::File::create(&path).unwrap();
            let started = Instant::now();
            for _ in 0..128 {
                file.write_all(&chunk).unwrap();
            }
            file.sync_all().unwrap();
            1024.0 / started.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "machine: sequential write 1 GiB + fsync: {:.0} MiB/s (median of {RUNS})",
        median(speeds)
    );
    std::fs::remove_file(&path).unwrap();
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A `DossierReceived` as agencies will send it (~230 bytes of JSON data).
fn dossier_event(n: usize) -> ProposedEvent {
    ProposedEvent {
        id: Uuid::new_v4(),
        event_type: "DossierReceived".into(),
        data: format!(
            r#"{{"agency":"000.00.31.H56","service":"1.011442.000.00.00.H56","channel":"online","received_at":"2019-03-04T08:{:02}:00+07:00","due_at":"2019-03-11T17:00:00+07:00"}}"#,
            n % 60
        ),
        metadata: r#"{"source":"bench"}"#.into(),
        decoded: (),
    }
}

async fn store_batches(scratch: &str) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let mut counter = 0;
    let mut one_stream = Vec::new();
    let mut many_streams = Vec::new();
    for run in 0..RUNS {
        let events: Vec<_> = (0..BATCH)
            .map(|_| {
                counter += 1;
                dossier_event(counter)
            })
            .collect();
        let request = AppendRequest {
            stream: StreamName::new(format!("dossier-bulk-{run}")).unwrap(),
            expected: ExpectedRevision::Any,
            events,
            principal: (),
        };
        let started = Instant::now();
        store.append("bench", request).await.unwrap();
        one_stream.push(BATCH as f64 / started.elapsed().as_secs_f64());

        let requests: Vec<_> = (0..BATCH)
            .map(|_| {
                counter += 1;
                AppendRequest {
                    stream: StreamName::new(format!("dossier-{counter}")).unwrap(),
                    expected: ExpectedRevision::NoStream,
                    events: vec![dossier_event(counter)],
                    principal: (),
                }
            })
            .collect();
        let started = Instant::now();
        store.append_all("bench", requests).await.unwrap();
        many_streams.push(BATCH as f64 / started.elapsed().as_secs_f64());
    }
    let head = store.head();
    let reads: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut position = 0;
            while position < head {
                position += store.read_all(position, 10_000).unwrap().len() as u64;
            }
            head as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "store: read the whole log ({head} events) in position order, 10000 a call: {:.0} events/s (median of {RUNS})",
        median(reads)
    );
    println!(
        "store: {BATCH} events to one stream, one fsynced append: {:.0} events/s (median of {RUNS})",
        median(one_stream)
    );
    println!(
        "store: {BATCH} events to {BATCH} new streams (expected no_stream), one fsynced unit: {:.0} events/s (median of {RUNS})",
        median(many_streams)
    );
    store.shutdown().await;
}

/// An in-process server; `validated` puts the catalog and the write model in the path, with
/// the agency and service the benchmark's dossiers refer to.
async fn start_server(scratch: &str, validated: bool) -> (String, EventStore, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let (store, state) = if validated {
        let store =
            EventStore::open_with(dir.path(), StoreMetrics::default(), IngestModel::new()).unwrap();
        let ingestor = Ingestor::new(store);
        (
            ingestor.store().clone(),
            AppState::new(ingestor, Limits::default()),
        )
    } else {
        let ingestor = Ingestor::without_catalog(EventStore::open(dir.path()).unwrap());
        (
            ingestor.store().clone(),
            AppState::new(ingestor, Limits::default()),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    if validated {
        let client = reqwest::Client::new();
        let reference = [
            (
                "agency-000.00.31.H56",
                r#"{"id":"00000000-0000-4000-8000-000000000001","type":"AgencyRegistered","data":{"code":"000.00.31.H56","name":"Sở Xây dựng","kind":"department","parent":null,"province":"26"}}"#,
            ),
            (
                "service-1.011442.000.00.00.H56",
                r#"{"id":"00000000-0000-4000-8000-000000000002","type":"ServiceLaunched","data":{"code":"1.011442.000.00.00.H56","agency":"000.00.31.H56","name":"Cấp giấy phép xây dựng","field":"Xây dựng","level":4,"at":"2019-01-02T08:00:00+07:00"}}"#,
            ),
        ];
        for (stream, event) in reference {
            let body = format!(r#"{{"events":[{event}]}}"#);
            post_ok(&client, format!("{url}/v1/streams/{stream}"), body).await;
        }
    }
    (url, store, dir)
}

/// Posts `body`, which must be accepted.
async fn post_ok(client: &reqwest::Client, url: String, body: String) {
    let response = client.post(url).body(body).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

/// `BATCH` NDJSON lines, each a `DossierReceived` opening its own dossier.
fn ndjson_batch(counter: &mut usize) -> String {
    (0..BATCH)
        .map(|_| {
            *counter += 1;
            let event = dossier_event(*counter);
            format!(
                r#"{{"stream":"dossier-{}","id":"{}","type":"{}","data":{},"metadata":{}}}"#,
                counter, event.id, event.event_type, event.data, event.metadata
            ) + "\n"
        })
        .collect()
}

async fn http_ndjson(scratch: &str, validated: bool) {
    let (url, _store, _dir) = start_server(scratch, validated).await;
    let client = reqwest::Client::new();
    let mut rates = Vec::new();
    let mut counter = 0;
    for _ in 0..RUNS * 3 {
        let body = ndjson_batch(&mut counter);
        let started = Instant::now();
        post_ok(&client, format!("{url}/v1/events"), body).await;
        rates.push(BATCH as f64 / started.elapsed().as_secs_f64());
    }
    let checks = match validated {
        true => "validated (catalog + write model)",
        false => "envelope only",
    };
    println!(
        "http: NDJSON DossierReceived, {BATCH} events a request, each its own new dossier, {checks}, fsynced: {:.0} events/s (median of {} requests)",
        median(rates),
        RUNS * 3
    );
    // Two clients at once: one body is decoded while the writer commits the other's.
    const CLIENTS: usize = 2;
    let bodies: Vec<Vec<String>> = (0..CLIENTS)
        .map(|_| (0..RUNS * 2).map(|_| ndjson_batch(&mut counter)).collect())
        .collect();
    let events = (CLIENTS * RUNS * 2 * BATCH) as f64;
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for body in bodies {
                    let response = client
                        .post(format!("{url}/v1/events"))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "http: the same, {CLIENTS} clients at once, {checks}: {:.0} events/s ({} requests of {BATCH})",
        events / started.elapsed().as_secs_f64(),
        CLIENTS * RUNS * 2
    );
}

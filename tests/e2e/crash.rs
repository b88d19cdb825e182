//! Crash test: 8 concurrent clients append to the real binary, which is killed with SIGKILL at
//! a random moment, again and again. Every acknowledged event must be there exactly once, at
//! the position it was acknowledged with, in a gapless order; unacknowledged requests, retried
//! with the same ids after the restart, must not duplicate anything.

use crate::support::{
    dossier_received, get_json, read_everything, register_reference_data, Server,
};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const KILLS: usize = 6;
/// The stream index is written every 64 runs, so kills also land while it is being written.
const INDEX_EVERY_FEW_APPENDS: &[(&str, &str)] = &[("CHISO_INDEX_BATCH_RUNS", "64")];
const CLIENTS: usize = 8;

/// What the clients learnt: acknowledged ids with their positions, and requests in doubt.
#[derive(Default)]
struct Ledger {
    acked: HashMap<Uuid, u64>,
    in_doubt: Vec<(String, Value)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = kill_again_and_again(dir.path(), &[]).await;
    streams_are_whole(&server.url, &events).await;
}

/// The same kills with every month sealed after every fold: they land while a month is being
/// sealed, compacted (a payment brings a sealed row back and hides its old copy) and
/// checkpointed. No row is lost or doubled, and the tables equal a rebuild from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sealing_loses_and_duplicates_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, events) = kill_again_and_again(dir.path(), &["--seal-immediately"]).await;
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    let paid: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "DossierPaid")
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    let head = events.last().unwrap()["position"].as_u64().unwrap();
    let rows = sql(
        &server.url,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(resolved_at) AS resolved, \
         count(*) FILTER (WHERE paid_online) AS paid FROM dossiers",
        head,
    )
    .await;
    assert_eq!(
        rows,
        json!([{"n": count("DossierReceived"), "ids": count("DossierReceived"),
                "resolved": count("DossierResolved"), "paid": paid.len()}])
    );
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(gauge("chiso_tables_sealed_months") >= 1.0, "{metrics}");
    assert!(gauge("chiso_tables_dossiers_sealed") >= 100.0, "{metrics}");
    let before = crate::tables::tables(&server.url, head).await;
    assert!(server.terminate().success());
    let rebuilt = std::process::Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["rebuild", "--data-dir"])
        .arg(dir.path())
        .env("CHISO_LOG", "warn")
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let server = Server::start_with_options(dir.path(), &[], &["--seal-immediately"]).await;
    assert_eq!(crate::tables::tables(&server.url, head).await, before);
}

/// Runs the clients against `chiso serve` (with `args`) killed [`KILLS`] times; answers the
/// server started once more, and the log's events after the reference data, checked against
/// what the clients were told.
async fn kill_again_and_again(dir: &std::path::Path, args: &[&str]) -> (Server, Vec<Value>) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let start = || Server::start_with_options(dir, INDEX_EVERY_FEW_APPENDS, args);
    for round in 0..KILLS {
        let mut server = start().await;
        register_reference_data(&server.url).await;
        retry_in_doubt(&server.url, &ledger).await;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                tokio::spawn(run_client(
                    server.url.clone(),
                    round,
                    client,
                    ledger.clone(),
                ))
            })
            .collect();
        let delay = rand::rng().random_range(150..900);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for client in clients {
            client.await.unwrap();
        }
    }
    let server = start().await;
    retry_in_doubt(&server.url, &ledger).await;
    let events = read_everything(&server.url).await;
    let reference_events = 2;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.acked.len() > 1_000,
        "too few appends were acknowledged to mean anything"
    );

    eprintln!(
        "crash test: {KILLS} SIGKILLs, {} events acknowledged, {} stored",
        ledger.acked.len(),
        events.len()
    );
    let mut seen: HashMap<Uuid, u64> = HashMap::new();
    for (index, event) in events.iter().enumerate().skip(reference_events) {
        assert_eq!(
            event["position"], index as u64,
            "gap or disorder at {index}"
        );
        let id: Uuid = event["id"].as_str().unwrap().parse().unwrap();
        assert!(
            seen.insert(id, index as u64).is_none(),
            "event {id} stored twice"
        );
    }
    for (id, position) in &ledger.acked {
        assert_eq!(
            seen.get(id),
            Some(position),
            "acknowledged event {id} lost or moved"
        );
    }
    (server, events[reference_events..].to_vec())
}

/// An SQL answer that includes the log up to `position`.
async fn sql(url: &str, sql: &str, position: u64) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sql"))
        .json(&json!({"sql": sql, "min_position": position, "timeout_ms": 60000}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

/// Every stream reads back as its events in the log, revisions 0, 1, …, and appends continue
/// after its last revision: the stream index was rebuilt after each kill.
async fn streams_are_whole(url: &str, events: &[Value]) {
    let mut streams: HashMap<&str, Vec<u64>> = HashMap::new();
    for event in events {
        let positions = streams
            .entry(event["stream"].as_str().unwrap())
            .or_default();
        assert_eq!(event["revision"], positions.len() as u64, "{event}");
        positions.push(event["position"].as_u64().unwrap());
    }
    let http = reqwest::Client::new();
    for (stream, positions) in &streams {
        let read = get_json(&format!("{url}/v1/streams/{stream}?limit=1000")).await;
        let read: Vec<u64> = read["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        assert_eq!(&read, positions, "stream {stream}");
    }
    let (stream, positions) = streams.iter().next().expect("some stream");
    let at = |revision: Value| {
        json!({"expected_revision": revision, "events": [{"id": Uuid::new_v4(), "type": "DossierPaid",
            "data": {"at": "2019-03-10T09:00:00+07:00", "online": true, "amount": 0}}]})
    };
    let append = |body: Value| {
        http.post(format!("{url}/v1/streams/{stream}"))
            .json(&body)
            .send()
    };
    let stale = append(at(json!("no_stream"))).await.unwrap();
    assert_eq!(stale.status(), 409);
    let next = append(at(json!(positions.len() - 1))).await.unwrap();
    assert_eq!(next.status(), 200, "{}", next.text().await.unwrap());
    let answer: Value = next.json().await.unwrap();
    assert_eq!(answer["first_revision"], positions.len() as u64);
}

/// Appends until the server goes away: single-stream appends and NDJSON batches.
async fn run_client(url: String, round: usize, client: usize, ledger: Arc<Mutex<Ledger>>) {
    let http = reqwest::Client::new();
    // A stream this client created and saw acknowledged: every third request adds a payment
    // to it, so streams have several runs.
    let mut acknowledged: Option<String> = None;
    for n in 0.. {
        let (path, body) = match &acknowledged {
            Some(path) if n % 3 == 2 => (path.clone(), payment()),
            _ => next_request(round, client, n),
        };
        let request = match &body {
            Value::String(ndjson) => http.post(format!("{url}{path}")).body(ndjson.clone()),
            json => http.post(format!("{url}{path}")).json(json),
        };
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let answer: Value = response.json().await.unwrap();
                record_ack(&ledger, &body, &answer);
                if path.starts_with("/v1/streams/") {
                    acknowledged = Some(path);
                }
            }
            Ok(response) => panic!("unexpected refusal {}", response.text().await.unwrap()),
            Err(_) => {
                ledger.lock().unwrap().in_doubt.push((path, body));
                return;
            }
        }
    }
}

/// A payment for a dossier that exists (any state but withdrawn).
fn payment() -> Value {
    json!({"events": [{"id": Uuid::new_v4(), "type": "DossierPaid",
        "data": {"at": "2019-03-10T09:00:00+07:00", "online": true, "amount": 50000}}]})
}

/// Every request opens new dossiers: one or two events on a fresh stream, or an NDJSON batch
/// of receipts. (`round`, `client` and `n` only make stream names readable.)
fn next_request(round: usize, client: usize, n: usize) -> (String, Value) {
    let mut rng = rand::rng();
    if n % 4 == 3 {
        let lines: String = (0..rng.random_range(2..50))
            .map(|k| {
                let mut line = dossier_received(Uuid::new_v4());
                line["stream"] = json!(format!("dossier-{round}.{client}.{n}.{k}"));
                format!("{line}\n")
            })
            .collect();
        return ("/v1/events".into(), Value::String(lines));
    }
    let mut events = vec![dossier_received(Uuid::new_v4())];
    if rng.random_bool(0.5) {
        events.push(json!({"id": Uuid::new_v4(), "type": "DossierResolved",
                           "data": {"at": "2019-03-05T10:00:00+07:00", "outcome": "approved"}}));
    }
    let stream = format!("dossier-{round}.{client}.{n}");
    (format!("/v1/streams/{stream}"), json!({"events": events}))
}

/// Positions of acknowledged events: a stream append answers a contiguous range; a batch
/// answers its range too, and its events were written in line order.
fn record_ack(ledger: &Mutex<Ledger>, body: &Value, answer: &Value) {
    let ids: Vec<Uuid> = match body {
        Value::String(ndjson) => ndjson
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect(),
        json => json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect(),
    };
    let first = answer["first_position"].as_u64().unwrap();
    let last = answer["last_position"].as_u64().unwrap();
    assert_eq!(
        last - first + 1,
        ids.len() as u64,
        "a fresh append is contiguous"
    );
    let mut ledger = ledger.lock().unwrap();
    for (offset, id) in (0..).zip(ids) {
        ledger.acked.insert(id, first + offset);
    }
}

/// Re-sends every request whose answer was lost with the crash: each must now succeed, either
/// writing it or returning where it already is.
async fn retry_in_doubt(url: &str, ledger: &Mutex<Ledger>) {
    let in_doubt = std::mem::take(&mut ledger.lock().unwrap().in_doubt);
    let http = reqwest::Client::new();
    for (path, body) in in_doubt {
        let request = match &body {
            Value::String(ndjson) => http.post(format!("{url}{path}")).body(ndjson.clone()),
            json => http.post(format!("{url}{path}")).json(json),
        };
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "retry refused: {}",
            response.status()
        );
        let answer: Value = response.json().await.unwrap();
        record_ack(ledger, &body, &answer);
    }
}

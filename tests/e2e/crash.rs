//! Crash test: 8 concurrent clients append to the real binary, which is killed with SIGKILL at
//! a random moment, again and again. Every acknowledged event must be there exactly once, at
//! the position it was acknowledged with, in a gapless order; unacknowledged requests, retried
//! with the same ids after the restart, must not duplicate anything.

use crate::support::{
    dossier_received, get_json, read_everything, register_reference_data, Server,
};
use rand::{Rng, SeedableRng};
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
    let (server, events) = kill_again_and_again(dir.path(), &["--seal-immediately"]).await;
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
    tables_equal_a_rebuild(server, dir.path(), head, &["--seal-immediately"]).await;
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
    let seed = rand::rng().random();
    run_client_seeded(url, round, client, ledger, seed).await
}

/// [`run_client`] with its choices drawn from `rng`.
async fn run_client_with(
    url: String,
    round: usize,
    client: usize,
    ledger: Arc<Mutex<Ledger>>,
    rng: &mut rand::rngs::StdRng,
) {
    let http = reqwest::Client::new();
    // A stream this client created and saw acknowledged: every third request adds a payment
    // to it, so streams have several runs.
    let mut acknowledged: Option<String> = None;
    for n in 0.. {
        let (path, body) = match &acknowledged {
            Some(path) if n % 3 == 2 => (path.clone(), payment()),
            _ => next_request(round, client, n, rng),
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
fn next_request(round: usize, client: usize, n: usize, rng: &mut impl Rng) -> (String, Value) {
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

/// SIGKILLs of the mixed-load test.
const MIXED_KILLS: usize = 10;

/// What one SSE subscriber saw: (position, id) in the order received, over every restart.
type Seen = Arc<Mutex<Vec<(u64, Uuid)>>>;

/// The kill loop under mixed load, seeded (the seed is printed; `CHISO_CRASH_SEED` replays the
/// kill times and the clients' choices): 8 clients append single events and NDJSON batches, a
/// client runs SQL in a loop, and two Server-Sent Events subscribers — one for `dossier`, one
/// for the whole log — resume with `Last-Event-ID` after each restart. After 10 SIGKILLs every
/// acknowledged event is there once in a gapless order, each subscriber saw exactly its
/// events, once and in order, and the tables equal a rebuild from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_mixed_load_loses_nothing_and_subscribers_resume() {
    let seed: u64 = std::env::var("CHISO_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("mixed-load crash test: seed {seed} (CHISO_CRASH_SEED={seed} replays it)");
    let mut schedule = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let subscribers: [(Option<&'static str>, Seen); 2] =
        [(Some("dossier"), Seen::default()), (None, Seen::default())];
    let (mut queries, mut subscriptions) = (0, 0);
    let start = || Server::start_with_options(dir.path(), INDEX_EVERY_FEW_APPENDS, &[]);
    let mut replays = Vec::new();
    for round in 0..MIXED_KILLS {
        let mut server = start().await;
        // The write model replayed only the tail the indexer had not stored, not the log.
        let (replayed, head) = replayed_at_open(&server.url).await;
        replays.push((replayed, head));
        assert!(
            replayed <= MAX_TAIL,
            "replayed {replayed} of {head} events at open"
        );
        register_reference_data(&server.url).await;
        retry_in_doubt(&server.url, &ledger).await;
        let mut tasks: Vec<tokio::task::JoinHandle<usize>> = (0..CLIENTS)
            .map(|client| {
                let seed = schedule.random();
                let (url, ledger) = (server.url.clone(), ledger.clone());
                tokio::spawn(async move {
                    run_client_seeded(url, round, client, ledger, seed).await;
                    0
                })
            })
            .collect();
        tasks.push(tokio::spawn(query_until_gone(server.url.clone())));
        for (category, seen) in &subscribers {
            let (url, seen) = (server.url.clone(), seen.clone());
            tasks.push(tokio::spawn(subscribe_until_gone(
                url, *category, seen, None,
            )));
        }
        let delay = schedule.random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        let mut answered = tasks.into_iter();
        for task in answered.by_ref().take(CLIENTS) {
            task.await.unwrap();
        }
        queries += answered.next().unwrap().await.unwrap();
        for task in answered {
            subscriptions += task.await.unwrap();
        }
    }
    let server = start().await;
    retry_in_doubt(&server.url, &ledger).await;
    let events = read_everything(&server.url).await;
    let head = events.len() as u64;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["position"], index as u64,
            "gap or disorder at {index}"
        );
    }
    let ids: HashMap<Uuid, u64> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().parse().unwrap(),
                e["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), events.len(), "an event stored twice");
    let lost = ledger
        .acked
        .iter()
        .filter(|(id, p)| ids.get(id) != Some(p))
        .count();
    assert_eq!(lost, 0, "acknowledged events lost or moved");
    let mut gaps = 0;
    for (category, seen) in &subscribers {
        let wanted: Vec<(u64, Uuid)> = events
            .iter()
            .filter(|e| {
                category.is_none_or(|c| e["stream"].as_str().unwrap().starts_with(&format!("{c}-")))
            })
            .map(|e| {
                (
                    e["position"].as_u64().unwrap(),
                    e["id"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let last = wanted.last().map(|(p, _)| *p);
        subscribe_until_gone(server.url.clone(), *category, seen.clone(), last).await;
        let seen = seen.lock().unwrap().clone();
        gaps += wanted.iter().filter(|w| !seen.contains(w)).count();
        assert_eq!(seen, wanted, "subscriber {category:?} saw another sequence");
    }
    assert!(
        ledger.acked.len() > 1_000,
        "too few appends were acknowledged"
    );
    assert!(queries > 0 && subscriptions > 0);
    eprintln!(
        "mixed-load crash test: {MIXED_KILLS} SIGKILLs, {} events acknowledged, lost 0, \
         duplicated 0, torn batches 0, {queries} SQL answers, {subscriptions} SSE messages, \
         SSE gaps {gaps}; replayed at each open (of the log's events): {replays:?}",
        ledger.acked.len()
    );
    tables_equal_a_rebuild(server, dir.path(), head - 1, &[]).await;
}

/// Most events a restart after SIGKILL may replay into the write model with the indexer's
/// batches of 64: what was committed since its last batch (a few groups of at most 50 events
/// each), not the log.
const MAX_TAIL: u64 = 4_000;

/// The events the write model replayed at the server's open, and the log's head then.
async fn replayed_at_open(url: &str) -> (u64, u64) {
    let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let gauge = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    (
        gauge("chiso_log_replayed_at_open"),
        gauge("chiso_log_head_position"),
    )
}

/// The tables `server` answers (up to `position`) equal those `chiso rebuild` folds anew.
async fn tables_equal_a_rebuild(
    mut server: Server,
    dir: &std::path::Path,
    position: u64,
    args: &[&str],
) {
    let before = crate::tables::tables(&server.url, position).await;
    assert!(server.terminate().success());
    let rebuilt = std::process::Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["rebuild", "--data-dir"])
        .arg(dir)
        .env("CHISO_LOG", "warn")
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let server = Server::start_with_options(dir, &[], args).await;
    assert_eq!(crate::tables::tables(&server.url, position).await, before);
}

/// [`run_client`] with its choices drawn from `seed`.
async fn run_client_seeded(
    url: String,
    round: usize,
    client: usize,
    ledger: Arc<Mutex<Ledger>>,
    seed: u64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    run_client_with(url, round, client, ledger, &mut rng).await
}

/// Runs a cheap aggregate in a loop until the server goes away; answers how many answered.
/// Every answer must be a success: a kill ends the loop through a connection error.
async fn query_until_gone(url: String) -> usize {
    let http = reqwest::Client::new();
    let mut answered = 0;
    loop {
        let query = [(
            "q",
            "SELECT count(*) AS n, count(resolved_at) AS r FROM dossiers",
        )];
        let response = http.get(format!("{url}/v1/sql")).query(&query).send().await;
        let Ok(response) = response else {
            return answered;
        };
        let status = response.status();
        let Ok(body) = response.text().await else {
            return answered;
        };
        assert!(status.is_success(), "{status}: {body}");
        answered += 1;
    }
}

/// Follows `/v1/subscribe` (resuming after what `seen` holds) until the server goes away, or
/// until it has seen position `until`; answers how many events it received.
async fn subscribe_until_gone(
    url: String,
    category: Option<&'static str>,
    seen: Seen,
    until: Option<u64>,
) -> usize {
    use futures_util::StreamExt;
    let query = category.map_or(String::new(), |c| format!("?category={c}"));
    let mut request = reqwest::Client::new().get(format!("{url}/v1/subscribe{query}"));
    let resume = seen.lock().unwrap().last().map(|(position, _)| *position);
    if let Some(position) = resume {
        request = request.header("Last-Event-ID", position.to_string());
    }
    if resume.is_some() && resume == until {
        return 0;
    }
    let Ok(response) = request.send().await else {
        return 0;
    };
    assert!(response.status().is_success());
    let mut body = response.bytes_stream();
    let (mut buffer, mut received) = (Vec::new(), 0);
    let read = async {
        while let Some(Ok(bytes)) = body.next().await {
            buffer.extend_from_slice(&bytes);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = buffer.drain(..end + 2).collect();
                let message = String::from_utf8(message).unwrap();
                let field = |name: &str| {
                    message
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_owned())
                };
                let (Some(id), Some(data)) = (field("id:"), field("data:")) else {
                    continue; // a keep-alive comment
                };
                let event: Value = serde_json::from_str(&data).unwrap();
                let position: u64 = id.parse().unwrap();
                let event_id = event["id"].as_str().unwrap().parse().unwrap();
                seen.lock().unwrap().push((position, event_id));
                received += 1;
                if Some(position) == until {
                    return;
                }
            }
        }
    };
    match until {
        Some(_) => tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the subscriber caught up within a minute"),
        None => read.await,
    }
    received
}

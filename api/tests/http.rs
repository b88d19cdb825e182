//! Every status and error code of the log API, driven through the router, with the log checked
//! not to grow on every refusal; SSE catch-up, live tail and resume. The catalog is off here:
//! these tests pin the log's own semantics; `ingest.rs` tests the catalog and write model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chiso_api::{router, AppState, Limits};
use chiso_ingest::Ingestor;
use chiso_store::EventStore;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    router: Router,
    state: AppState,
    dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, limits)
    }

    fn open(dir: tempfile::TempDir, limits: Limits) -> Self {
        let store = EventStore::open(dir.path()).unwrap();
        let state = AppState::new(Ingestor::without_catalog(store.clone()), limits);
        Self {
            router: router(state.clone()),
            state,
            dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    async fn post(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        self.call("POST", uri, body.to_string()).await
    }

    fn head(&self) -> u64 {
        self.state.store.head()
    }

    /// Sends a request that must be refused with `status` and `code`, writing nothing.
    async fn refused(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let before = self.head();
        let (status, value) = self.call(method, uri, body).await;
        assert_eq!(
            self.head(),
            before,
            "{method} {uri} wrote to the log: {value}"
        );
        (status, value)
    }
}

fn event(n: u128) -> Value {
    json!({"id": uuid::Uuid::from_u128(n), "type": "DossierReceived", "data": {"n": n as u64}})
}

fn code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn append_answers_positions_and_retries_are_idempotent() {
    let api = Api::new();
    let body = json!({"expected_revision": "no_stream", "events": [event(1), event(2)]});
    let (status, first) = api.post("/v1/streams/dossier-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        first,
        json!({"stream": "dossier-1", "first_revision": 0, "last_revision": 1,
               "first_position": 0, "last_position": 1})
    );
    let (status, again) = api.post("/v1/streams/dossier-1", &body).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    // The same content with keys in another order and other spacing is the same event.
    let reformatted = r#"{"events":[ {"data":{"n":1},"type":"DossierReceived","id":"00000000-0000-0000-0000-000000000001"},
        {"type":"DossierReceived","id":"00000000-0000-0000-0000-000000000002","data":{ "n" : 2 }} ]}"#;
    let (status, again) = api.call("POST", "/v1/streams/dossier-1", reformatted).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    assert_eq!(api.head(), 2);

    let exact = json!({"expected_revision": 1, "events": [event(3)]});
    let (status, third) = api.post("/v1/streams/dossier-1", &exact).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(third["first_revision"], 2);
    let exists = json!({"expected_revision": "stream_exists", "events": [event(4)]});
    assert_eq!(
        api.post("/v1/streams/dossier-1", &exists).await.0,
        StatusCode::OK
    );
    let any = json!({"events": [event(5)]});
    assert_eq!(
        api.post("/v1/streams/dossier-9", &any).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn conflicts_are_409_with_the_actual_revision() {
    let api = Api::new();
    api.post("/v1/streams/s-1", &json!({"events": [event(1)]}))
        .await;
    let cases = [
        (
            json!({"expected_revision": "no_stream", "events": [event(2)]}),
            "s-1",
            json!(0),
        ),
        (
            json!({"expected_revision": 5, "events": [event(2)]}),
            "s-1",
            json!(0),
        ),
        (
            json!({"expected_revision": "stream_exists", "events": [event(2)]}),
            "s-2",
            Value::Null,
        ),
        (
            json!({"expected_revision": 0, "events": [event(2)]}),
            "s-2",
            Value::Null,
        ),
    ];
    for (body, stream, actual) in cases {
        let before = api.head();
        let (status, answer) = api.post(&format!("/v1/streams/{stream}"), &body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(code(&answer), "wrong_expected_revision");
        assert_eq!(answer["error"]["details"]["actual_revision"], actual);
        assert_eq!(api.head(), before);
    }
    // Same id, other content; same id, other stream; a retry that is only partly stored.
    let mut changed = event(1);
    changed["data"] = json!({"n": 99});
    let duplicates = [
        ("s-1", json!({"events": [changed]})),
        ("s-3", json!({"events": [event(1)]})),
        ("s-1", json!({"events": [event(1), event(7)]})),
        ("s-1", json!({"events": [event(8), event(1)]})),
    ];
    for (stream, body) in duplicates {
        let (status, answer) = api
            .refused("POST", &format!("/v1/streams/{stream}"), body.to_string())
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(code(&answer), "duplicate_event_id");
        assert_eq!(answer["error"]["details"]["stream"], "s-1");
    }
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_precise_code() {
    let api = Api::new();
    let id = "00000000-0000-0000-0000-000000000001";
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        ("dossier-1", b"{\"events\": [".to_vec(), "invalid_json", None),
        ("dossier-1", b"not json".to_vec(), "invalid_json", None),
        ("dossier-1", b"{\"events\": []} trailing".to_vec(), "invalid_json", None),
        ("dossier-1", b"{\"events\": [\xff]}".to_vec(), "invalid_json", None),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":{{"a":{deep}}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/data")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":{{}},"metadata":{{"a":{deep}}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/metadata")),
        ("dossier-1", deep.clone().into_bytes(), "invalid_event", Some("/0")),
        ("dossier-1", b"".to_vec(), "invalid_json", None),
        ("dossier-1", b"[]".to_vec(), "invalid_event", Some("")),
        ("dossier-1", b"{}".to_vec(), "invalid_event", Some("")),
        ("dossier-1", br#"{"events": {}}"#.to_vec(), "invalid_event", Some("/events")),
        ("dossier-1", br#"{"events": [{"id":"nope","type":"T","data":{}}]}"#.to_vec(), "invalid_event", Some("/events/0/id")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","data":{{}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":[1]}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/data")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":"x"}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/data")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":{{}},"metadata":3}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/metadata")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":{{}},"extra":1}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/extra")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"9lives","data":{{}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/type")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"","data":{{}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/type")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"{}","data":{{}}}}]}}"#, "T".repeat(129)).into_bytes(), "invalid_event", Some("/events/0/type")),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":7,"data":{{}}}}]}}"#).into_bytes(), "invalid_event", Some("/events/0/type")),
        ("dossier-1", br#"{"expected_revision": "maybe", "events": []}"#.to_vec(), "invalid_event", Some("/expected_revision")),
        ("dossier-1", br#"{"expected_revision": -1, "events": []}"#.to_vec(), "invalid_event", Some("/expected_revision")),
        ("dossier-1", br#"{"events": [], "stream": "x"}"#.to_vec(), "invalid_event", Some("/stream")),
        ("dossier-1", br#"{"events": []}"#.to_vec(), "empty_append", None),
        ("dossier-1", format!(r#"{{"events": [{{"id":"{id}","type":"T","data":{{}}}},{{"id":"{id}","type":"T","data":{{}}}}]}}"#).into_bytes(), "duplicate_id_in_request", None),
        ("a%2Fb", b"{}".to_vec(), "invalid_stream_name", None),
        ("a%20b", b"{}".to_vec(), "invalid_stream_name", None),
        ("..", b"{}".to_vec(), "invalid_stream_name", None),
        ("%24all", b"{}".to_vec(), "invalid_stream_name", None),
        ("h%C3%A0", b"{}".to_vec(), "invalid_stream_name", None),
    ];
    let long_name = "x".repeat(300);
    let mut cases = cases;
    cases.push((
        long_name.as_str(),
        b"{}".to_vec(),
        "invalid_stream_name",
        None,
    ));
    for (stream, body, expected_code, pointer) in cases {
        let uri = format!("/v1/streams/{stream}");
        let (status, answer) = api.refused("POST", &uri, body.clone()).await;
        let shown = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown} → {answer}");
        assert_eq!(code(&answer), expected_code, "{shown} → {answer}");
        if let Some(pointer) = pointer {
            assert_eq!(
                answer["error"]["details"]["pointer"], pointer,
                "{shown} → {answer}"
            );
        }
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = Api::with_limits(Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    });
    let events: Vec<Value> = (0..40).map(event).collect();
    let body = json!({"events": events}).to_string();
    assert!(body.len() > 1024);
    let (status, answer) = api.refused("POST", "/v1/streams/s-1", body.clone()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    // Without a Content-Length (streamed) the limit still holds.
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(body.clone())];
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let (status, _) = api.refused("POST", "/v1/events", streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn line(stream: &str, n: u128) -> Value {
    let mut value = event(n);
    value["stream"] = json!(stream);
    value
}

#[tokio::test]
async fn ndjson_batches_are_all_or_nothing_and_name_the_line() {
    let api = Api::new();
    let batch = ndjson(&[
        line("dossier-1", 1),
        line("dossier-2", 2),
        line("dossier-1", 3),
    ]);
    let (status, answer) = api.call("POST", "/v1/events", batch.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"count": 3, "first_position": 0, "last_position": 2})
    );
    // A retry of the whole batch writes nothing and answers the same positions.
    assert_eq!(api.call("POST", "/v1/events", batch).await.1, answer);
    assert_eq!(api.head(), 3);

    let mut conflicting = line("dossier-2", 5);
    conflicting["expected_revision"] = json!("no_stream");
    let cases = [
        (
            ndjson(&[line("d-3", 4), conflicting]),
            StatusCode::CONFLICT,
            "wrong_expected_revision",
            2,
        ),
        (
            format!("{}\n{{oops\n", line("d-3", 4)),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            2,
        ),
        (
            format!(
                "{}\n\n{}",
                line("d-3", 4),
                json!({"id": uuid::Uuid::from_u128(6), "type": "T", "data": {}})
            ),
            StatusCode::BAD_REQUEST,
            "invalid_event",
            3,
        ),
        (
            ndjson(&[line("d-3", 4), line("bad/name", 6)]),
            StatusCode::BAD_REQUEST,
            "invalid_stream_name",
            2,
        ),
        (
            ndjson(&[line("d-3", 4), line("d-4", 4)]),
            StatusCode::BAD_REQUEST,
            "duplicate_id_in_request",
            2,
        ),
        (
            ndjson(&[line("d-3", 4), line("d-9", 1)]),
            StatusCode::CONFLICT,
            "duplicate_event_id",
            2,
        ),
    ];
    for (body, status, expected_code, line_number) in cases {
        let (got, answer) = api.refused("POST", "/v1/events", body).await;
        assert_eq!((got, code(&answer)), (status, expected_code), "{answer}");
        assert_eq!(answer["error"]["details"]["line"], line_number, "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("line {line_number}:")));
    }
    let (status, answer) = api.refused("POST", "/v1/events", "\n  \n").await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "empty_append")
    );
}

#[tokio::test]
async fn reads_answer_events_and_refuse_bad_parameters() {
    let api = Api::new();
    let events: Vec<Value> = (1..=5).map(event).collect();
    api.post("/v1/streams/agency-26", &json!({"events": events}))
        .await;
    api.post("/v1/streams/agency-27", &json!({"events": [event(6)]}))
        .await;

    let (status, read) = api
        .call("GET", "/v1/streams/agency-26?from=1&limit=2", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let revisions: Vec<u64> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [1, 2]);
    let first = &read["events"][0];
    assert_eq!(first["data"], json!({"n": 2}));
    assert_eq!(first["metadata"], json!({}));
    assert_eq!(first["type"], "DossierReceived");
    assert!(first["recorded_at"].as_str().unwrap().ends_with('Z'));

    let (_, read) = api
        .call(
            "GET",
            "/v1/streams/agency-26?direction=backwards&limit=3",
            Body::empty(),
        )
        .await;
    let revisions: Vec<u64> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [4, 3, 2]);

    let (_, all) = api
        .call("GET", "/v1/events?from=4&limit=10", Body::empty())
        .await;
    let positions: Vec<u64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [4, 5]);
    let (_, past_end) = api.call("GET", "/v1/events?from=100", Body::empty()).await;
    assert_eq!(past_end, json!({"events": []}));

    let (status, answer) = api
        .call("GET", "/v1/streams/agency-99", Body::empty())
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "stream_not_found")
    );
    for uri in [
        "/v1/streams/agency-26?direction=sideways",
        "/v1/streams/agency-26?limit=0",
        "/v1/streams/agency-26?limit=10001",
        "/v1/streams/agency-26?from=-1",
        "/v1/streams/agency-26?color=red",
        "/v1/events?limit=abc",
        "/v1/subscribe?from=x",
    ] {
        let (status, answer) = api.call("GET", uri, Body::empty()).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{uri}: {answer}"
        );
    }
    let (status, answer) = api
        .call("GET", "/v1/streams/bad%20name", Body::empty())
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_stream_name")
    );
}

#[tokio::test]
async fn unknown_routes_methods_and_operator_endpoints() {
    let api = Api::new();
    let (status, answer) = api.call("GET", "/v2/nothing", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, answer) = api.refused("DELETE", "/v1/events", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (status, answer) = api.refused("PUT", "/v1/streams/s-1", "{}").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");

    assert_eq!(
        api.call("GET", "/health", Body::empty()).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    api.post("/v1/streams/s-1", &json!({"events": [event(1), event(2)]}))
        .await;
    let (status, ready) = api.call("GET", "/ready", Body::empty()).await;
    assert_eq!((status, &ready["log_head"]), (StatusCode::OK, &json!(2)));

    let response = api
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for metric in [
        "chiso_log_events_appended_total 2",
        "chiso_log_fsync_batches_total 1",
        "chiso_log_append_requests_total 1",
        "chiso_log_head_position 2",
        "chiso_log_fsync_batch_events_count 1",
        r#"chiso_http_request_duration_seconds_count{method="POST",route="/v1/streams/{stream}",status="200"} 1"#,
    ] {
        assert!(text.contains(metric), "missing {metric} in\n{text}");
    }
    // The log's memory, read at the scrape: the two events sit in its memtables.
    let gauge = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
        let value = line.unwrap_or_else(|| panic!("missing {name} in\n{text}"));
        value[name.len() + 1..].parse().unwrap()
    };
    assert!(gauge("chiso_log_memtable_bytes") > 0, "{text}");
    assert!(
        gauge("chiso_log_block_cache_bytes") <= (7 * 8) << 20,
        "{text}"
    );
    gauge("chiso_log_table_readers_bytes");
    // What RocksDB owes behind the writes: two events flush nothing and compact nothing.
    assert_eq!(gauge("chiso_log_compaction_pending_bytes"), 0, "{text}");
    assert_eq!(gauge("chiso_log_compactions_running"), 0, "{text}");
    gauge("chiso_log_flushes_running");
}

#[tokio::test]
async fn a_stopped_log_answers_503() {
    let api = Api::new();
    api.state.store.shutdown().await;
    let (status, answer) = api
        .refused(
            "POST",
            "/v1/streams/s-1",
            json!({"events": [event(1)]}).to_string(),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let (status, ready) = api.call("GET", "/ready", Body::empty()).await;
    assert_eq!(
        (status, &ready["ready"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!(false))
    );
}

#[tokio::test]
async fn a_corrupt_record_is_a_500_that_shows_no_internals() {
    let api = Api::new();
    // Two appends, two group commits, two chunks: one is damaged, the other stays readable.
    api.post("/v1/streams/s-1", &json!({"events": [event(1)]}))
        .await;
    api.post("/v1/streams/s-1", &json!({"events": [event(2)]}))
        .await;
    let Api { state, dir, router } = api;
    state.store.shutdown().await;
    drop((state, router));
    {
        let options = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), cfs).unwrap();
        let events = db.cf_handle("chunks").unwrap();
        let mut record = db.get_cf(events, 0u64.to_be_bytes()).unwrap().unwrap();
        let last = record.len() - 2;
        record[last] ^= 0x01;
        db.put_cf(events, 0u64.to_be_bytes(), record).unwrap();
    }
    let api = Api::open(dir, Limits::default());
    let (status, answer) = api.call("GET", "/v1/events", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    let text = answer.to_string();
    assert!(
        !text.contains("checksum") && !text.contains("position"),
        "{text}"
    );
    let (status, _) = api
        .call("GET", "/v1/streams/s-1?from=1&limit=1", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "the intact record still reads");
}

/// Reads SSE frames from a response body until `count` events arrived.
async fn sse_events(body: Body, count: usize) -> Vec<(u64, Value)> {
    let mut stream = body.into_data_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures_util::StreamExt::next(&mut stream),
        )
        .await
        .expect("SSE stalled")
        .expect("SSE ended")
        .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let id = frame.lines().find_map(|l| l.strip_prefix("id: "));
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id.parse().unwrap(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn sse_catches_up_follows_live_and_resumes_after_last_event_id() {
    let api = Api::new();
    let batch = ndjson(&[
        line("dossier-1", 1),
        line("service-1", 2),
        line("dossier-2", 3),
    ]);
    api.call("POST", "/v1/events", batch).await;

    let response = api
        .router
        .clone()
        .oneshot(Request::get("/v1/subscribe").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.into_body();
    let live = {
        let api_router = api.router.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let body = json!({"events": [event(4)]}).to_string();
            api_router
                .oneshot(
                    Request::post("/v1/streams/dossier-3")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap()
        })
    };
    let events = sse_events(body, 4).await;
    assert_eq!(live.await.unwrap().status(), StatusCode::OK);
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1, 2, 3], "catch-up then live, no gap, no repeat");
    for (id, event) in &events {
        assert_eq!(event["position"], *id);
    }
    assert_eq!(events[3].1["stream"], "dossier-3");

    let resume = Request::get("/v1/subscribe?from=0")
        .header("Last-Event-ID", "1")
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(resume).await.unwrap();
    let resumed = sse_events(response.into_body(), 2).await;
    assert_eq!(
        resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [2, 3]
    );

    let filtered = Request::get("/v1/subscribe?from=0&category=dossier")
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(filtered).await.unwrap();
    let dossiers = sse_events(response.into_body(), 3).await;
    assert_eq!(
        dossiers.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [0, 2, 3]
    );
    // Several categories, from the middle of the log, live past the stored events.
    let both = Request::get("/v1/subscribe?from=1&category=service,%20dossier")
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(both).await.unwrap();
    let body = response.into_body();
    for (stream, n) in [("agency-9", 5), ("service-2", 6)] {
        let (status, _) = api
            .post(
                &format!("/v1/streams/{stream}"),
                &json!({"events": [event(n)]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let events = sse_events(body, 4).await;
    assert_eq!(
        events.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3, 5],
        "the agency event at 4 is not a service or a dossier"
    );
    for bad in [
        "category=",
        "category=,",
        "category=dossier-3",
        "category=a%2Fb",
    ] {
        let request = Request::get(format!("/v1/subscribe?{bad}"))
            .body(Body::empty())
            .unwrap();
        let (status, answer) = api.send(request).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{bad}"
        );
    }

    let bad = Request::get("/v1/subscribe")
        .header("Last-Event-ID", "later")
        .body(Body::empty())
        .unwrap();
    let (status, answer) = api.send(bad).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let overflow = Request::get("/v1/subscribe")
        .header("Last-Event-ID", u64::MAX.to_string())
        .body(Body::empty())
        .unwrap();
    let (status, answer) = api.send(overflow).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

/// The web console's page and assets: public, compiled in, under a strict policy, revalidated
/// by their entity tags; the page names only this origin's files.
#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let api = Api::new();
    let get = |uri: &str, tag: Option<&str>| {
        let mut request = Request::get(uri);
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        api.router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
    };
    let response = get("/", None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'")
            && policy.contains("default-src 'none'")
            && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let page = response.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8(page.to_vec()).unwrap();
    for asset in [
        "/console/app.js",
        "/console/style.css",
        "/console/uPlot.iife.min.js",
    ] {
        assert!(page.contains(asset), "the page does not load {asset}");
        let response = get(asset, None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        let again = get(asset, Some(&tag)).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names another origin:\n{page}"
    );
    let (status, answer) = api.call("GET", "/console/secrets.txt", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = api.call("GET", "/console/index.html", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

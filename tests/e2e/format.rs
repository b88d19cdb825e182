//! Data directories of earlier formats open and answer as they did: `tests/fixtures/format-1`
//! was written by chiso's first storage format (the log, its tokens and write-model snapshot,
//! and the tables' segments), `tests/fixtures/format-2` by the second (sealed months, a month
//! in memory as one segment), each with the answers that version gave. A later version may
//! rebuild its tables from the log at first start, but must answer the same.

use crate::support::{copy_dir, Server};
use serde_json::{json, Value};
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

async fn post(url: &str, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_format_1_data_directory_opens_and_answers_as_it_did() {
    opens_and_answers_as_it_did("format-1").await;
}

#[tokio::test]
async fn a_format_2_data_directory_opens_and_answers_as_it_did() {
    opens_and_answers_as_it_did("format-2").await;
}

async fn opens_and_answers_as_it_did(name: &str) {
    let fixture_dir = Path::new(FIXTURES).join(name);
    let fixture: Value =
        serde_json::from_slice(&std::fs::read(fixture_dir.join("answers.json")).unwrap()).unwrap();
    let admin = fixture["admin_token"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir.join("data"), dir.path());
    let server = Server::start_with(dir.path(), &[("CHISO_ADMIN_TOKEN", admin)]).await;
    let sql = format!("{}/v1/sql", server.url);

    for case in fixture["answers"].as_array().unwrap() {
        let query = json!({"sql": case["sql"], "min_position": 999, "timeout_ms": 60000});
        let (status, answer) = post(&sql, admin, query).await;
        assert_eq!(status, 200, "{}: {answer}", case["sql"]);
        assert_eq!(
            recorded_columns(&answer, &case["answer"]),
            case["answer"],
            "{}",
            case["sql"]
        );
    }

    // Its dossiers were received in `DossierReceived` version 1 (frozen in the fixture's log):
    // every one folds, upcast with the fields of version 2 null.
    let upcast = json!({"sql": "SELECT count(*) AS n FROM dossiers WHERE procedure_code IS NULL AND applicant IS NULL"});
    assert_eq!(post(&sql, admin, upcast).await, (200, json!([{"n": 360}])));

    // Tokens survived: the query token reads, the revoked one is refused.
    let count = json!({"sql": "SELECT count(*) AS n FROM dossiers"});
    let query_token = fixture["query_token"].as_str().unwrap();
    assert_eq!(
        post(&sql, query_token, count.clone()).await,
        (200, json!([{"n": 360}]))
    );
    let revoked = fixture["revoked_token"].as_str().unwrap();
    assert_eq!(post(&sql, revoked, count).await.0, 401);

    // The write model survived: a resolved dossier cannot be resolved again.
    let history = std::fs::read_to_string(fixture_dir.join("history.ndjson")).unwrap();
    let events: Vec<Value> = history
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let rated = |stream: &Value| {
        events
            .iter()
            .any(|e| e["stream"] == *stream && e["type"] == "DossierRated")
    };
    let resolved = events
        .iter()
        .find(|e| e["type"] == "DossierResolved" && !rated(&e["stream"]))
        .unwrap();
    let stream = format!(
        "{}/v1/streams/{}",
        server.url,
        resolved["stream"].as_str().unwrap()
    );
    let again = json!({"events": [{"id": uuid::Uuid::new_v4(), "type": "DossierResolved",
        "data": {"at": "2019-09-01T08:00:00+07:00", "outcome": "approved"}}]});
    let (status, answer) = post(&stream, admin, again).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("invalid_transition"))
    );

    // The category index is built at first open of a log that predates it: a subscriber to
    // one category gets exactly that category's events.
    let services: Vec<&str> = events
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("service-"))
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(!services.is_empty());
    let subscribed = format!("{}/v1/subscribe?category=service", server.url);
    let received = sse_events(&subscribed, admin, services.len()).await;
    let ids: Vec<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, services);

    // Idempotency survived: the first event again answers its position; the log goes on after it.
    let first = &events[0];
    let retry =
        json!({"events": [{"id": first["id"], "type": first["type"], "data": first["data"]}]});
    let url = format!(
        "{}/v1/streams/{}",
        server.url,
        first["stream"].as_str().unwrap()
    );
    let (status, answer) = post(&url, admin, retry).await;
    assert_eq!((status, &answer["first_position"]), (200, &json!(0)));
    let rated = json!({"events": [{"id": uuid::Uuid::new_v4(), "type": "DossierRated",
        "data": {"at": "2019-09-01T08:00:00+07:00", "score": 4}}]});
    let (status, answer) = post(&stream, admin, rated).await;
    assert_eq!(
        (status, &answer["first_position"]),
        (200, &json!(1000)),
        "{answer}"
    );

    // What the months of `agency_daily` add up to, before they are saved again.
    let report = format!(
        "{}/v1/reports/dossiers?from=2019-01-01&to=2019-12-31&min_position=1000",
        server.url
    );
    let daily =
        json!({"sql": "SELECT * FROM agency_daily ORDER BY day, agency", "min_position": 1000});
    let before = (
        get(&report, admin).await,
        post(&sql, admin, daily.clone()).await,
    );

    // Saved again in today's layout: no month in memory as one segment any more, every month
    // of `agency_daily` with its totals by agency.
    let mut server = server;
    assert!(server.terminate().success());
    let files: Vec<String> = std::fs::read_dir(dir.path().join("tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let whole_months: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("dossiers_") && !f.contains(".sealed."))
        .filter(|f| f.split('.').next().is_some_and(|stem| stem.len() == 16))
        .collect();
    assert!(whole_months.is_empty(), "{whole_months:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("dossiers_2019-08_00000.")),
        "{files:?}"
    );
    let months = |suffix: &str| -> Vec<String> {
        let mut months: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix("agency_daily_")?.split_once('.'))
            .filter_map(|(stem, _)| Some(stem.strip_suffix(suffix)?.to_owned()))
            .filter(|month| month.len() == 7)
            .collect();
        months.sort();
        months
    };
    assert!(!months("").is_empty(), "{files:?}");
    assert_eq!(months("_totals"), months(""), "{files:?}");

    // Started again, the settled months are read from their totals (their days stay in their
    // files), and answer as before.
    let server = Server::start_with(dir.path(), &[("CHISO_ADMIN_TOKEN", admin)]).await;
    let report = format!(
        "{}/v1/reports/dossiers?from=2019-01-01&to=2019-12-31&min_position=1000",
        server.url
    );
    let sql = format!("{}/v1/sql", server.url);
    let after = (get(&report, admin).await, post(&sql, admin, daily).await);
    assert_eq!(after, before);
    let metrics = send_get(&format!("{}/metrics", server.url), admin)
        .await
        .text()
        .await
        .unwrap();
    let cold: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chiso_tables_agency_daily_cold_rows "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(cold > 0.0, "no month of agency_daily started cold");
}

async fn send_get(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn get(url: &str, token: &str) -> (u16, Value) {
    let response = send_get(url, token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The first `count` events `url` streams.
async fn sse_events(url: &str, token: &str, count: usize) -> Vec<Value> {
    use futures_util::StreamExt;
    let response = send_get(url, token).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut text, mut events) = (String::new(), Vec::new());
    let read = async {
        while events.len() < count {
            let bytes = body.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&bytes).unwrap());
            while let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                let data = message.lines().find_map(|l| l.strip_prefix("data:"));
                events.extend(data.map(|data| serde_json::from_str::<Value>(data).unwrap()));
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the subscription sent its events");
    events
}

/// `answer` with only the columns `recorded` has: a table may gain columns (`agencies` its
/// `valid_from` and `valid_to`); every recorded one must answer as it did.
fn recorded_columns(answer: &Value, recorded: &Value) -> Value {
    let (Some(rows), Some(recorded_rows)) = (answer.as_array(), recorded.as_array()) else {
        return answer.clone();
    };
    let rows = rows.iter().zip(recorded_rows).map(|(row, recorded_row)| {
        match (row.as_object(), recorded_row.as_object()) {
            (Some(row), Some(recorded_row)) => Value::Object(
                row.iter()
                    .filter(|(key, _)| recorded_row.contains_key(*key))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            ),
            _ => row.clone(),
        }
    });
    let mut projected: Vec<Value> = rows.collect();
    // Rows beyond the recorded ones stay whole (and make the comparison fail).
    projected.extend(
        answer
            .as_array()
            .into_iter()
            .flatten()
            .skip(recorded_rows.len())
            .cloned(),
    );
    Value::Array(projected)
}

//! `chiso serve` as an operator runs it: loopback only without tokens, a clean SIGTERM that
//! drains in-flight appends, and a restart that continues where the log ended.

use crate::support::{dossier_received, read_everything, register_reference_data, Server};
use serde_json::json;
use std::process::Command;
use uuid::Uuid;

#[test]
fn refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["serve", "--listen", "0.0.0.0:7999", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
    // Nor the PostgreSQL protocol.
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "0.0.0.0:7998",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--pg-listen on loopback only"), "{stderr}");
    // Nor Flight SQL.
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .args(["--flight-listen", "0.0.0.0:7997", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--flight-listen on loopback only"),
        "{stderr}"
    );
    // With tokens, Flight SQL off loopback still needs TLS: every call carries one.
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .args(["--flight-listen", "0.0.0.0:7997", "--data-dir"])
        .arg(dir.path())
        .env("CHISO_ADMIN_TOKEN", "a-long-enough-admin-token")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Flight SQL off loopback without TLS"),
        "{stderr}"
    );
}

#[test]
fn data_dir_and_listen_come_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["serve"])
        .env("CHISO_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_appends_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    register_reference_data(&server.url).await;
    let http = reqwest::Client::new();
    for n in 0..10 {
        let body = json!({"events": [dossier_received(Uuid::new_v4())]});
        let url = format!("{}/v1/streams/dossier-before-{n}", server.url);
        assert!(http
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
    }
    let appends: Vec<_> = (0..32)
        .map(|n| {
            let (http, url) = (http.clone(), server.url.clone());
            tokio::spawn(async move {
                let body = json!({"events": [dossier_received(Uuid::new_v4())]});
                http.post(format!("{url}/v1/streams/dossier-{n}"))
                    .json(&body)
                    .send()
                    .await
            })
        })
        .collect();
    let status = server.terminate();
    assert!(status.success(), "chiso exited with {status}");
    let mut acknowledged = 2 + 10;
    for append in appends {
        match append.await.unwrap() {
            Ok(response) if response.status().is_success() => acknowledged += 1,
            // Refused because chiso was already draining, or the connection closed: both fine.
            Ok(response) => {
                assert_eq!(response.status(), 503, "{}", response.text().await.unwrap())
            }
            Err(_) => {}
        }
    }
    let server = Server::start(dir.path()).await;
    let id = Uuid::new_v4();
    let body = json!({"events": [dossier_received(id)]});
    let answer: serde_json::Value = http
        .post(format!("{}/v1/streams/dossier-after", server.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Read after the append: the scheduler may publish the rankings it missed (March 2019)
    // at start, so the log can grow while the test runs; what matters is that positions go
    // on without a gap or an overwrite.
    let events = read_everything(&server.url).await;
    assert!(
        events.len() > acknowledged,
        "{} stored, {acknowledged} acknowledged before the restart",
        events.len()
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["position"], index as u64,
            "positions go on without a gap"
        );
    }
    let position = answer["first_position"].as_u64().unwrap() as usize;
    assert_eq!(
        events[position]["id"],
        id.to_string(),
        "the first append after the restart continues the log"
    );
}

#[test]
fn a_short_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CHISO_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 16 characters"), "{stderr}");
}

#[tokio::test]
async fn with_an_admin_token_requests_need_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[("CHISO_ADMIN_TOKEN", "e2e-admin-token-0123456789")],
    )
    .await;
    let http = reqwest::Client::new();
    let anonymous = http
        .get(format!("{}/v1/events", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let admin = http
        .get(format!("{}/v1/events", server.url))
        .bearer_auth("e2e-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[tokio::test]
async fn server_wide_token_limits_apply_to_tokens_without_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "e2e-admin-token-0123456789";
    let env = [
        ("CHISO_ADMIN_TOKEN", admin),
        ("CHISO_TOKEN_ROWS_PER_MINUTE", "1"),
    ];
    let server = Server::start_with(dir.path(), &env).await;
    let http = reqwest::Client::new();
    let plain = crate::support::create_token(&server.url, admin, &["query"]).await;
    let limits = serde_json::json!({"scopes": ["query"], "limits": {"rows_per_minute": 1000}});
    let own = crate::support::create_token_with(&server.url, admin, limits).await;
    let one_row = |token: String| {
        let request = http
            .get(format!("{}/v1/sql?q=SELECT%201", server.url))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let token = |answer: &serde_json::Value| answer["token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(one_row(token(&own)).await.status(), 200);
    }
    assert_eq!(one_row(token(&plain)).await.status(), 200);
    let refused = one_row(token(&plain)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "60");
    let answer: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "row_quota_exceeded");
    // The environment's admin token has no limits.
    for _ in 0..3 {
        assert_eq!(one_row(admin.to_owned()).await.status(), 200);
    }
}

#[tokio::test]
async fn the_query_log_keeps_the_configured_number_of_queries() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "e2e-admin-token-0123456789";
    let env = [("CHISO_ADMIN_TOKEN", admin), ("CHISO_QUERY_LOG_SIZE", "2")];
    let server = Server::start_with(dir.path(), &env).await;
    let http = reqwest::Client::new();
    let sql = |q: &str, id: &str| {
        http.get(format!("{}/v1/sql", server.url))
            .query(&[("q", q)])
            .bearer_auth(admin)
            .header("x-chiso-query-id", id)
            .header("accept-encoding", "zstd")
            .send()
    };
    for n in 1..=3 {
        let answer = sql(&format!("SELECT {n} AS n"), &format!("q{n}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()["x-chiso-query-id"],
            format!("q{n}").as_str()
        );
    }
    let answer = sql("SELECT id FROM system.queries ORDER BY started_at", "log")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-encoding"], "zstd");
    let body = zstd::decode_all(&answer.bytes().await.unwrap()[..]).unwrap();
    let ids: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ids, serde_json::json!([{"id": "q2"}, {"id": "q3"}]));
}

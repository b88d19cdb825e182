//! `chiso import`: the first bad line stops it with its file and line number; importing again
//! after an interruption writes each event exactly once; `--url` goes through a running chiso.

use crate::support::{create_token, read_everything, read_everything_as, Server};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

fn history(dossiers: u128) -> Vec<String> {
    let mut lines = vec![
        json!({"stream": "agency-26", "id": Uuid::from_u128(1), "type": "AgencyRegistered",
               "data": {"code": "26", "name": "Tỉnh Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}}),
        json!({"stream": "service-1.001", "id": Uuid::from_u128(2), "type": "ServiceLaunched",
               "data": {"code": "1.001", "agency": "26", "name": "Cấp phép", "field": "Xây dựng", "level": 3, "at": "2019-01-02T08:00:00+07:00"}}),
    ];
    for n in 0..dossiers {
        lines.push(json!({"stream": format!("dossier-{n}"), "id": Uuid::from_u128(100 + n), "type": "DossierReceived",
            "data": {"agency": "26", "service": "1.001", "channel": "online",
                     "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}}));
    }
    lines.iter().map(ToString::to_string).collect()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn import(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chiso"))
        .arg("import")
        .args(args)
        .env("CHISO_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn import_names_the_first_bad_line_and_is_safe_to_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let good = history(2_500);
    let mut bad = good.clone();
    bad[1_800] = bad[1_800].replace(r#""agency":"26""#, r#""agency":"99""#);
    let (good_file, bad_file) = (
        dir.path().join("good.ndjson"),
        dir.path().join("bad.ndjson"),
    );
    write(&good_file, &good);
    write(&bad_file, &bad);
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let output = import(&[
        "--data-dir",
        data_arg,
        "--batch",
        "1000",
        bad_file.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.ndjson:1801: unknown_agency"),
        "{stderr}"
    );

    for _ in 0..2 {
        let output = import(&[
            "--data-dir",
            data_arg,
            "--batch",
            "1000",
            good_file.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let server = Server::start(&data).await;
    let events = read_everything(&server.url).await;
    // The scheduler may have published rankings for the imported months at start.
    let imported = events
        .iter()
        .filter(|e| !e["stream"].as_str().unwrap().starts_with("ranking-"));
    assert_eq!(imported.count(), good.len(), "each event exactly once");

    let more = dir.path().join("more.ndjson");
    let mut lines = history(0);
    lines.push(json!({"stream": "dossier-extra", "id": Uuid::from_u128(99_999), "type": "DossierReceived",
        "data": {"agency": "26", "service": "1.001", "channel": "direct",
                 "received_at": "2019-03-05T08:00:00+07:00", "due_at": "2019-03-12T17:00:00+07:00"}}).to_string());
    write(&more, &lines);
    let output = import(&["--url", &server.url, more.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = read_everything(&server.url).await;
    let imported = events
        .iter()
        .filter(|e| !e["stream"].as_str().unwrap().starts_with("ranking-"));
    assert_eq!(imported.count(), good.len() + 1);
}

/// `chiso import --url` with a token scoped to one province: events of its agencies go in, an
/// event of another province's agency stops the import at its line (403), nothing of that
/// batch written.
#[tokio::test]
async fn an_import_with_a_scoped_token_cannot_write_for_another_agency() {
    const ADMIN: &str = "import-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(&dir.path().join("data"), &[("CHISO_ADMIN_TOKEN", ADMIN)]).await;
    let http = reqwest::Client::new();
    let mut reference = history(0);
    reference.push(json!({"stream": "agency-99", "id": Uuid::from_u128(3), "type": "AgencyRegistered",
        "data": {"code": "99", "name": "Other", "kind": "province", "parent": null, "province": "99"}}).to_string());
    let response = http
        .post(format!("{}/v1/events", server.url))
        .bearer_auth(ADMIN)
        .body(reference.join("\n"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let token = create_token(&server.url, ADMIN, &["append:26", "query"]).await;
    let token = token["token"].as_str().unwrap();
    let dossier = |n: u128, agency: &str| {
        json!({"stream": format!("dossier-s{n}"), "id": Uuid::from_u128(500 + n), "type": "DossierReceived",
            "data": {"agency": agency, "service": "1.001", "channel": "online",
                     "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}})
        .to_string()
    };
    let (own, foreign) = (
        dir.path().join("own.ndjson"),
        dir.path().join("foreign.ndjson"),
    );
    write(&own, &[dossier(1, "26")]);
    write(&foreign, &[dossier(2, "26"), dossier(3, "99")]);
    let dossiers = |events: Vec<serde_json::Value>| {
        let streams = events
            .iter()
            .map(|e| e["stream"].as_str().unwrap().to_owned());
        streams
            .filter(|s| s.starts_with("dossier-"))
            .collect::<Vec<_>>()
    };
    let output = import(&[
        "--url",
        &server.url,
        "--token",
        token,
        own.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = import(&[
        "--url",
        &server.url,
        "--token",
        token,
        foreign.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("foreign.ndjson:2: forbidden (403 Forbidden)"),
        "{stderr}"
    );
    let written = dossiers(read_everything_as(&server.url, Some(ADMIN)).await);
    assert_eq!(
        written,
        ["dossier-s1"],
        "nothing of the refused batch written"
    );
}

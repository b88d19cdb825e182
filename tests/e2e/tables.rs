//! The tables across restarts, through the binary: after SIGTERM (checkpoint), after SIGKILL
//! (tail folded from the log), and after `chiso rebuild` they are the same; a late event
//! rewrites only its month's segments; `chiso sql` prints a table.

use crate::support::Server;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

/// Agencies, services and `dossiers` dossiers (streams `dossier-{prefix}{n}`) over 2019, some paused, resolved, withdrawn.
pub(crate) fn history(prefix: &str, dossiers: u32) -> Vec<Value> {
    let mut events = vec![
        json!({"stream": "agency-26", "type": "AgencyRegistered", "data": {"code": "26", "name": "Tỉnh Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}}),
        json!({"stream": "agency-26.SXD", "type": "AgencyRegistered", "data": {"code": "26.SXD", "name": "Sở Xây dựng", "kind": "department", "parent": "26", "province": "26"}}),
        json!({"stream": "service-1.001", "type": "ServiceLaunched", "data": {"code": "1.001", "agency": "26.SXD", "name": "Cấp phép xây dựng", "field": "Xây dựng", "level": 2, "at": "2018-06-01T08:00:00+07:00"}}),
        json!({"stream": "service-1.001", "type": "ServiceLevelChanged", "data": {"level": 3, "at": "2019-05-01T08:00:00+07:00"}}),
        json!({"stream": "ictindex-2019", "type": "IctIndexPublished", "data": {"year": 2019, "province": "26", "rank": 21, "score": null}}),
    ];
    for n in 0..dossiers {
        let stream = format!("dossier-{prefix}{n}");
        let (month, day) = (1 + n % 12, 1 + n % 27);
        let at = |d: u32, h: u32| format!("2019-{month:02}-{:02}T{h:02}:00:00+07:00", d.min(28));
        let channel = ["online", "direct", "postal"][n as usize % 3];
        events.push(json!({"stream": stream, "type": "DossierReceived", "data": {"agency": if n % 2 == 0 { "26.SXD" } else { "26" }, "service": "1.001", "channel": channel, "received_at": at(day, 8), "due_at": at(day + 3, 17)}}));
        if n % 5 == 0 {
            events.push(
                json!({"stream": stream, "type": "DossierPaused", "data": {"at": at(day, 9)}}),
            );
            events.push(
                json!({"stream": stream, "type": "DossierResumed", "data": {"at": at(day + 1, 9)}}),
            );
        }
        match n % 4 {
            0 | 1 => events.push(json!({"stream": stream, "type": "DossierResolved", "data": {"at": at(day + 1 + n % 6, 23), "outcome": "approved"}})),
            2 => events.push(json!({"stream": stream, "type": "DossierWithdrawn", "data": {"at": at(day + 1, 10)}})),
            _ => {}
        }
    }
    events
}

pub(crate) async fn append(url: &str, events: &[Value]) -> u64 {
    let body: String = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["id"] = json!(Uuid::new_v4());
            e.to_string() + "\n"
        })
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{answer}");
    answer["last_position"].as_u64().unwrap()
}

async fn sql(url: &str, sql: &str, min_position: u64) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sql"))
        .json(&json!({"sql": sql, "min_position": min_position}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{sql}");
    response.json().await.unwrap()
}

/// Every table but `rankings` (the scheduler publishes the months it missed at each start),
/// in a fixed order.
pub(crate) async fn tables(url: &str, position: u64) -> Vec<Value> {
    let mut all = Vec::new();
    for query in [
        "SELECT * FROM agencies ORDER BY code",
        "SELECT * FROM services ORDER BY code",
        "SELECT * FROM service_levels ORDER BY code, valid_from",
        "SELECT * FROM dossiers ORDER BY id",
        "SELECT * FROM agency_daily ORDER BY day, agency",
        "SELECT * FROM ict_index ORDER BY year, province",
        "SELECT * FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31')",
        "SELECT count(*) FROM events WHERE stream NOT LIKE 'ranking-%'",
    ] {
        all.push(sql(url, query, position).await);
    }
    all
}

pub(crate) fn segments(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_dir.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn chiso(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(args)
        .env("CHISO_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn tables_after_restarts_equal_tables_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start(data).await;
    let last = append(&server.url, &history("x", 400)).await;
    let before = tables(&server.url, last).await;
    assert_eq!(before[3].as_array().unwrap().len(), 400);
    assert!(server.terminate().success());

    // SIGTERM saved a checkpoint: a restart loads segments, no replay.
    let saved = segments(data);
    assert!(
        saved
            .iter()
            .any(|f| f.starts_with("dossiers_2019-") && f.contains("_00000.")),
        "{saved:?}"
    );
    let mut server = Server::start(data).await;
    assert_eq!(tables(&server.url, last).await, before);
    // At start the scheduler published the twelve months it had missed.
    let months = "SELECT count(DISTINCT month) AS n FROM rankings";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sql(&server.url, months, 0).await != json!([{"n": 12}]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the missed months were not published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ranked = sql(
        &server.url,
        "SELECT * FROM rankings ORDER BY month, scope, metric, agency",
        0,
    )
    .await;

    // A late event for a February dossier rewrites February's chunk only.
    let late = json!({"stream": "dossier-x1", "type": "DossierPaid", "data": {"at": "2019-02-20T10:00:00+07:00", "online": true, "amount": 50000}});
    let last = append(&server.url, &[late]).await;
    let paid = sql(
        &server.url,
        "SELECT paid_online FROM dossiers WHERE id = 'x1'",
        last,
    )
    .await;
    assert_eq!(paid, json!([{"paid_online": true}]));
    assert!(server.terminate().success());
    let now = segments(data);
    // (The rankings published at this start are new too.)
    let changed: Vec<&String> = now
        .difference(&saved)
        .filter(|f| !f.starts_with("rankings."))
        .collect();
    // February was sealed: the row came back to memory (its chunk, a deletion vector), and
    // with its replaced rows past 5 % of its file the month was compacted into a new one.
    assert!(!changed.is_empty() && changed.len() <= 2, "{changed:?}");
    assert!(
        changed.iter().all(
            |f| f.starts_with("dossiers_2019-02_") || f.starts_with("dossiers_2019-02.sealed.")
        ),
        "{changed:?}"
    );

    // SIGKILL after more appends: the restart folds the tail past the checkpoint.
    let mut server = Server::start(data).await;
    let last = append(&server.url, &history("y", 30)[5..]).await;
    let after_kill_expected = tables(&server.url, last).await;
    server.kill();
    let server = Server::start(data).await;
    assert_eq!(tables(&server.url, last).await, after_kill_expected);
    let rankings = "SELECT * FROM rankings ORDER BY month, scope, metric, agency";
    assert_eq!(
        sql(&server.url, rankings, last).await,
        ranked,
        "published months are not republished"
    );

    // `chiso sql` prints a table.
    let printed = chiso(&[
        "sql",
        "--url",
        &server.url,
        "SELECT kind, count(*) AS n FROM agencies GROUP BY kind ORDER BY kind",
    ]);
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8(printed.stdout).unwrap();
    assert!(
        text.contains("| department | 1 |") && text.contains("(2 rows)"),
        "{text}"
    );
    // … or passes a wire format through: an Excel workbook, as openpyxl reads it.
    let workbook = chiso(&[
        "sql",
        "--url",
        &server.url,
        "--format",
        "xlsx",
        "SELECT kind, count(*) AS n FROM agencies GROUP BY kind ORDER BY kind",
    ]);
    assert!(workbook.status.success(), "{workbook:?}");
    let file = tempfile::Builder::new().suffix(".xlsx").tempfile().unwrap();
    std::fs::write(file.path(), &workbook.stdout).unwrap();
    let cells = crate::clients::client_script("xlsx_cells.py", &[file.path().to_str().unwrap()]);
    assert_eq!(cells["rows"][0], serde_json::json!(["kind", "n"]));
    assert!(
        cells["rows"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["department", 1])),
        "{cells}"
    );
    let refused = chiso(&["sql", "--url", &server.url, "DROP TABLE dossiers"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("read_only"));
    drop(server);

    // A full rebuild by replay gives the same tables.
    let rebuilt = chiso(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert!(String::from_utf8_lossy(&rebuilt.stderr).contains("rebuilt every table"));
    let server = Server::start(data).await;
    assert_eq!(tables(&server.url, last).await, after_kill_expected);
    assert_eq!(sql(&server.url, rankings, last).await, ranked);
}

/// Rows of `dossiers` in memory, as `/metrics` says.
async fn dossiers_in_memory(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("chiso_tables_dossiers_in_memory "))
        .unwrap_or_else(|| panic!("{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// [`tables`], and the report of three months whose ends find open rows in sealed files.
async fn tables_and_reports(url: &str, position: u64) -> Vec<Value> {
    let mut all = tables(url, position).await;
    for month in ["01", "02", "06"] {
        let report = format!(
            "SELECT * FROM dossier_report(DATE '2019-{month}-01', DATE '2019-{month}-28') ORDER BY agency"
        );
        all.push(sql(url, &report, position).await);
    }
    all
}

/// Past `--hot-memory-mb` the oldest months leave memory, their open dossiers too but the
/// paused ones: the rows in memory come back under the budget, a paused row's clock columns
/// still move, events on sealed open dossiers (resolved a year later, withdrawn, paused and
/// resumed, rated) bring them back, and every table and report answers as a rebuild does —
/// after a SIGKILL too.
#[tokio::test]
async fn past_the_memory_budget_open_rows_leave_memory_and_answer_as_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // 1 MiB: about 2 600 rows at 400 bytes a row.
    let budget = ["--hot-memory-mb", "1"];
    let mut server = Server::start_with_options(data, &[], &budget).await;
    let mut events = history("x", 400);
    // 4 000 dossiers never closed, received over January to November.
    for n in 0..4000 {
        let (month, day) = (1 + n % 11, 1 + n % 28);
        events.push(json!({"stream": format!("dossier-o{n}"), "type": "DossierReceived", "data": {"agency": "26.SXD", "service": "1.001", "channel": "online", "received_at": format!("2019-{month:02}-{day:02}T08:00:00+07:00"), "due_at": format!("2019-{month:02}-{day:02}T17:00:00+07:00")}}));
    }
    // Received in January and paused since: it stays in memory.
    events.push(json!({"stream": "dossier-o0", "type": "DossierPaused", "data": {"at": "2019-01-01T09:00:00+07:00"}}));
    let mut last = append(&server.url, &events).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dossiers_in_memory(&server.url).await > 2_621 {
        assert!(
            std::time::Instant::now() < deadline,
            "still over the budget"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let clock = "SELECT paused_seconds FROM dossiers WHERE id = 'o0'";
    let paused = sql(&server.url, clock, last).await[0]["paused_seconds"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let later = sql(&server.url, clock, last).await[0]["paused_seconds"].clone();
    assert!(later.as_i64() > paused.as_i64(), "{paused} then {later}");
    let open = "SELECT count(*) AS n FROM dossiers WHERE status = 'open'";
    assert_eq!(sql(&server.url, open, last).await, json!([{"n": 4100}]));

    // Events on open dossiers of the sealed months (January's and February's).
    let resolved = |id: &str, at: &str| json!({"stream": format!("dossier-{id}"), "type": "DossierResolved", "data": {"at": at, "outcome": "approved"}});
    let later_events = [
        resolved("o11", "2020-01-20T10:00:00+07:00"),
        json!({"stream": "dossier-o22", "type": "DossierWithdrawn", "data": {"at": "2019-03-02T10:00:00+07:00"}}),
        json!({"stream": "dossier-o33", "type": "DossierPaused", "data": {"at": "2019-01-10T09:00:00+07:00"}}),
        json!({"stream": "dossier-o33", "type": "DossierResumed", "data": {"at": "2019-02-10T09:00:00+07:00"}}),
        resolved("o33", "2019-02-11T10:00:00+07:00"),
        json!({"stream": "dossier-o33", "type": "DossierRated", "data": {"at": "2019-02-12T10:00:00+07:00", "score": 4}}),
        json!({"stream": "dossier-o1", "type": "DossierPaid", "data": {"at": "2019-02-20T10:00:00+07:00", "online": true, "amount": 50000}}),
        json!({"stream": "dossier-o0", "type": "DossierResumed", "data": {"at": "2019-01-05T09:00:00+07:00"}}),
    ];
    last = append(&server.url, &later_events).await;
    let reports = tables_and_reports(&server.url, last).await;
    let o11 = "SELECT status, CAST(date_part('year', resolved_at) AS INT) AS year, timeliness FROM dossiers WHERE id = 'o11'";
    assert_eq!(
        sql(&server.url, o11, last).await,
        json!([{"status": "resolved", "year": 2020, "timeliness": "late"}])
    );
    assert!(dossiers_in_memory(&server.url).await <= 2_621);

    // After a SIGKILL, and after a rebuild by replay with every month in memory: the same.
    server.kill();
    let server = Server::start_with_options(data, &[], &budget).await;
    let again = tables_and_reports(&server.url, last).await;
    assert_eq!(again, reports);
    drop(server);
    let rebuilt = chiso(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let server = Server::start(data).await;
    let rebuilt = tables_and_reports(&server.url, last).await;
    assert_eq!(rebuilt, reports);
}

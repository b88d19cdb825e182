//! Faults and abuse, tried on the real binary: a full disk (a real small filesystem), a failed
//! fsync (a shim over `fsync`/`fdatasync` loaded with `LD_PRELOAD`), oversized bodies, SQL
//! functions asked to build gigabytes, and a query that panics inside arrow.

use crate::support::{dossier_received, read_everything, register_reference_data, Server};
use crate::tables::{append, history, segments, tables};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use uuid::Uuid;

/// A tmpfs of `size` mounted on `dir` for one test; unmounted when dropped. The tests run as
/// root (CI does); anywhere else they fail here, saying so.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Self {
            dir: dir.to_owned(),
        }
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// `count` new dossiers as one NDJSON body, each with ~200 bytes of metadata.
fn batch(count: usize) -> (String, Vec<Uuid>) {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| {
            let mut event = dossier_received(*id);
            event["stream"] = json!(format!("dossier-{id}"));
            event["metadata"] = json!({"note": "x".repeat(200)});
            event.to_string()
        })
        .collect();
    (lines.join("\n"), ids)
}

async fn post_ndjson(url: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn sql(url: &str, sql: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{url}/v1/sql"))
        .query(&[("q", sql)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `count(*)` of `dossiers` once the tables hold position `position`.
async fn dossier_count(url: &str, position: u64) -> u64 {
    let response = reqwest::Client::new()
        .get(format!("{url}/v1/sql"))
        .query(&[
            ("q", "SELECT count(*) AS n FROM dossiers".to_owned()),
            ("min_position", position.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer[0]["n"].as_u64().unwrap()
}

/// The ids of every `DossierReceived` in the log, in log order.
async fn stored_dossiers(url: &str) -> Vec<Uuid> {
    read_everything(url)
        .await
        .iter()
        .filter(|e| e["type"] == "DossierReceived")
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// The server's resident set and its peak, in bytes.
fn resident(server: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kib = |field: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let digits: String = line.chars().filter(char::is_ascii_digit).collect();
        digits.parse::<u64>().unwrap() << 10
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

async fn metrics(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
    response.text().await.unwrap()
}

/// Appends until the disk is full: refused whole with 507 `disk_full`, while reads and SQL go
/// on; once space is freed appends resume; after a SIGKILL every acknowledged event is there,
/// once, and no refused one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_whole_and_resumes_when_space_is_freed() {
    let scratch = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&scratch.path().join("disk"), "384m");
    // Room a person frees by deleting something, once the disk is full.
    let ballast = disk.dir.join("ballast");
    std::fs::write(&ballast, vec![7u8; 128 << 20]).unwrap();
    let data = disk.dir.join("data");
    let args = ["--disk-reserve-mb", "160"];
    let mut server = Server::start_with_options(&data, &[], &args).await;
    register_reference_data(&server.url).await;
    let mut acknowledged = Vec::new();
    let refused = loop {
        let (body, ids) = batch(2000);
        let (status, answer) = post_ndjson(&server.url, body).await;
        match status {
            200 => acknowledged.extend(ids),
            507 => break (answer, ids),
            other => panic!("{other}: {answer}"),
        }
        assert!(acknowledged.len() < 1_000_000, "the disk never filled");
    };
    let (answer, refused_ids) = refused;
    assert_eq!(answer["error"]["code"], "disk_full", "{answer}");
    let details = &answer["error"]["details"];
    assert_eq!(details["reserve_bytes"], json!(160u64 << 20));
    assert!(
        details["free_bytes"].as_u64().unwrap() < 160 << 20,
        "{answer}"
    );
    let before_full = acknowledged.len();
    assert!(before_full >= 10_000, "only {before_full} acknowledged");

    // While full: reads and SQL answer, a retry is refused again, /ready says why.
    let url = server.url.clone();
    let head = before_full as u64 + 2;
    assert_eq!(dossier_count(&url, head - 1).await, before_full as u64);
    let events = reqwest::get(format!("{url}/v1/events?from={}&limit=5", head - 5))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let ready = reqwest::get(format!("{url}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["reason"].as_str().unwrap().contains("disk is full"),
        "{ready}"
    );
    let (status, _) = post_ndjson(&url, batch(10).0).await;
    assert_eq!(status, 507);
    let text = metrics(&url).await;
    assert!(
        text.contains(r#"chiso_http_errors_total{code="disk_full"} 2"#),
        "{text}"
    );

    // Space freed: appends resume.
    std::fs::remove_file(&ballast).unwrap();
    assert!(disk.free_bytes() > 160 << 20);
    let (body, ids) = batch(2000);
    let (status, answer) = post_ndjson(&url, body).await;
    assert_eq!(status, 200, "{answer}");
    acknowledged.extend(ids);

    server.kill();
    let server = Server::start_with_options(&data, &[], &args).await;
    let stored = read_everything(&server.url).await;
    let dossiers: Vec<Uuid> = stored
        .iter()
        .filter(|e| e["type"] == "DossierReceived")
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let positions: Vec<u64> = stored
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "gapless"
    );
    assert_eq!(
        dossiers, acknowledged,
        "every acknowledged dossier, once, in order"
    );
    assert!(refused_ids.iter().all(|id| !dossiers.contains(id)));
    let last = stored.len() as u64 - 1;
    assert_eq!(
        dossier_count(&server.url, last).await,
        acknowledged.len() as u64
    );
    println!(
        "full disk: {before_full} events acknowledged before full, 2 batches refused while \
         full, reads and SQL answered while full, {} acknowledged in all, 0 lost",
        acknowledged.len()
    );
}

/// A shim over `fsync`/`fdatasync`, built by the test: both fail with EIO while the file named
/// by `CHISO_FAIL_FSYNC_IF` exists.
fn fsync_shim(dir: &Path) -> PathBuf {
    let source = dir.join("failsync.c");
    std::fs::write(
        &source,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
static int failing(void) {
    const char *flag = getenv("CHISO_FAIL_FSYNC_IF");
    return flag && access(flag, F_OK) == 0;
}
#define SHIM(name)                                                   \
    int name(int fd) {                                               \
        static int (*real)(int);                                     \
        if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #name);     \
        if (failing()) { errno = EIO; return -1; }                   \
        return real(fd);                                             \
    }
SHIM(fsync)
SHIM(fdatasync)
"#,
    )
    .unwrap();
    let library = dir.join("failsync.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc runs");
    assert!(status.success());
    library
}

/// A failed fsync: the append is answered 503 `log_write_failed`, the writer takes no more
/// appends (ready says so) while reads and SQL go on; after a restart every acknowledged event
/// is there and a retry of the failed append with the same ids is idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_writer_and_a_restart_recovers() {
    let scratch = tempfile::tempdir().unwrap();
    let shim = fsync_shim(scratch.path());
    let flag = scratch.path().join("fail-now");
    let data = scratch.path().join("data");
    let env = [
        ("LD_PRELOAD", shim.to_str().unwrap()),
        ("CHISO_FAIL_FSYNC_IF", flag.to_str().unwrap()),
    ];
    let mut server = Server::start_with(&data, &env).await;
    register_reference_data(&server.url).await;
    let (body, mut acknowledged) = batch(500);
    assert_eq!(post_ndjson(&server.url, body).await.0, 200);

    std::fs::write(&flag, b"").unwrap();
    let (failed_body, failed_ids) = batch(500);
    let (status, answer) = post_ndjson(&server.url, failed_body.clone()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("log_write_failed"))
    );
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("retry with the same event ids"));
    std::fs::remove_file(&flag).unwrap();
    // The files' state is unknown after a failed fsync: no more appends until a restart.
    let (status, answer) = post_ndjson(&server.url, batch(5).0).await;
    assert_eq!(status, 503, "{answer}");
    let ready = reqwest::get(format!("{}/ready", server.url)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(dossier_count(&server.url, 501).await, 500);
    assert_eq!(read_everything(&server.url).await.len(), 502);

    server.kill();
    let server = Server::start(&data).await;
    // The failed append was never acknowledged: it may or may not have reached the disk, and
    // its retry answers the same either way.
    let (status, answer) = post_ndjson(&server.url, failed_body).await;
    assert_eq!(status, 200, "{answer}");
    acknowledged.extend(failed_ids);
    assert_eq!(stored_dossiers(&server.url).await, acknowledged);
}

/// Bodies are read only up to their route's limit: a 512 MiB body posted to `/v1/tokens`
/// (declared, or streamed without a length) is refused with 413 and the server's peak
/// resident set grows by at most 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let token = "an-admin-token-of-some-length";
    let server = Server::start_with(dir.path(), &[("CHISO_ADMIN_TOKEN", token)]).await;
    let http = reqwest::Client::new();
    let (_, peak_before) = resident(&server);
    const BODY: usize = 512 << 20;
    let chunk = vec![b' '; 1 << 20];
    let stream = futures_util::stream::iter(
        (0..BODY >> 20).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let streamed = http
        .post(format!("{}/v1/tokens", server.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // The server answers as soon as the limit is passed and closes the connection; a client
    // still sending may see the close before the answer.
    if let Ok(response) = streamed {
        assert_eq!(response.status(), 413);
    }
    // Declared too large: answered from the headers alone, before any of the body is sent.
    let declared = raw_request(
        &server.url,
        &format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
        ),
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    let answer: Value =
        serde_json::from_str(&declared[declared.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(answer["error"]["code"], "body_too_large");
    assert_eq!(answer["error"]["details"]["limit_bytes"], 64 << 10);
    // A SQL statement over its route's limit (1 MiB).
    let sql = raw_request(
        &server.url,
        &format!(
            "POST /v1/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        ),
    )
    .await;
    assert!(sql.starts_with("HTTP/1.1 413"), "{sql}");
    let (_, peak_after) = resident(&server);
    let growth = peak_after.saturating_sub(peak_before);
    println!(
        "oversized bodies: peak resident set grew by {} KiB",
        growth >> 10
    );
    assert!(growth <= 16 << 20, "grew by {growth} bytes");
    // The server still answers.
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Sends `head` on a new connection and reads the answer until the server closes it or has
/// sent its whole body.
async fn raw_request(url: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    connection.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            connection.read(&mut buffer),
        );
        match read.await.expect("an answer within 10 s") {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|l| l.trim().parse::<usize>().ok());
            if length.is_some_and(|length| answer.len() >= end + 4 + length) {
                break;
            }
        }
    }
    String::from_utf8(answer).unwrap()
}

/// `repeat`, `lpad`, `range` and friends refuse to build more than the cap (413
/// `value_too_large`) before they allocate: three `repeat('x', 2000000000)` at once leave the
/// server's peak resident set within the query memory budget. Values under the cap answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_cannot_build_values_past_their_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_options(dir.path(), &[], &["--sql-memory-mb", "512"]).await;
    let url = server.url.clone();
    let (_, peak_before) = resident(&server);
    let huge = "SELECT length(repeat('x', 2000000000)) AS n";
    let answers = futures_util::future::join_all((0..3).map(|_| sql(&url, huge))).await;
    for (status, answer) in answers {
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (413, Some("value_too_large")),
            "{answer}"
        );
    }
    let (_, peak_after) = resident(&server);
    let growth = peak_after.saturating_sub(peak_before);
    println!(
        "three repeat('x', 2000000000) at once: peak resident set grew by {} MiB (budget 512 MiB)",
        growth >> 20
    );
    assert!(growth <= 512 << 20, "grew by {growth} bytes");
    for refused in [
        "SELECT lpad('x', 2000000000) AS s",
        "SELECT cardinality(range(1, 100000000000)) AS n",
        "SELECT array_repeat(1, 1000000000) AS a",
        "SELECT length(repeat(repeat('ab', 100000), 10000)) AS n",
    ] {
        let (status, answer) = sql(&url, refused).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (413, Some("value_too_large")),
            "{refused}: {answer}"
        );
    }
    let (status, answer) = sql(
        &url,
        "SELECT sum(length(repeat('ab', 1000))) AS n FROM generate_series(1, 100000)",
    )
    .await;
    assert_eq!((status, answer), (200, json!([{"n": 200_000_000}])));
    let (status, answer) = sql(&url, "SELECT length(lpad('7', 1000, '0')) AS n").await;
    assert_eq!((status, answer), (200, json!([{"n": 1000}])));
}

/// A query that panics inside arrow (a 100 MB value spread over 30 rows overflows a string
/// column's offsets) answers 500 `internal` without its text, is counted in `chiso_panics`,
/// and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_query_answers_500_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let panics =
        "SELECT length(string_agg(repeat('y', 100000000), ',')) FROM generate_series(1, 30)";
    let (status, answer) = sql(&server.url, panics).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("internal")),
        "{answer}"
    );
    assert!(!answer.to_string().contains("overflow"), "{answer}");
    let text = metrics(&server.url).await;
    assert!(text.contains("chiso_panics_total 1"), "{text}");
    assert!(
        text.contains(r#"chiso_http_errors_total{code="internal"} 1"#),
        "{text}"
    );
    let (status, answer) = sql(&server.url, "SELECT 1 AS one").await;
    assert_eq!((status, answer), (200, json!([{"one": 1}])));
}

/// A damage done to a segment file: the file (the first whose name starts so), what is done
/// to it, and the names the files written again may start with.
type Damage = (&'static str, fn(&Path), &'static [&'static str]);

/// A segment file torn (cut short) or missing does not stop the server: it warns, rebuilds
/// only that segment's partition from the log — a month of `dossiers` (hot, or sealed with
/// `--seal-immediately`), a month of `agency_daily` that resolutions of earlier months count
/// on (its days, or its totals by agency), a small table — and answers as before; no other partition's file is written again.
/// A manifest that names a cold month's totals but not its days rebuilds that month too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_missing_segment_is_rebuilt_alone_from_the_log() {
    let tear: fn(&Path) = |file| {
        let bytes = std::fs::read(file).unwrap();
        std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap();
    };
    let remove: fn(&Path) = |file| std::fs::remove_file(file).unwrap();
    let damages: [Damage; 5] = [
        ("dossiers_2019-04", tear, &["dossiers_2019-04"]),
        ("agency_daily_2019-06", remove, &["agency_daily_2019-06"]),
        // A settled month starts from its totals, its days unread but for their footer.
        (
            "agency_daily_2019-07_totals",
            tear,
            &["agency_daily_2019-07"],
        ),
        ("services.", tear, &["services.", "service_levels."]),
        ("dossiers_2019-09", remove, &["dossiers_2019-09"]),
    ];
    for args in [&[][..], &["--seal-immediately"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let mut server = Server::start_with_options(data, &[], args).await;
        let mut events = history("x", 240);
        // Two April dossiers closed in June: June's counts need April's rows as they were.
        events.push(json!({"stream": "dossier-x3", "type": "DossierResolved", "data": {"at": "2019-06-10T10:00:00+07:00", "outcome": "rejected"}}));
        events.push(json!({"stream": "dossier-x15", "type": "DossierWithdrawn", "data": {"at": "2019-06-12T10:00:00+07:00"}}));
        let last = append(&server.url, &events).await;
        let before = tables(&server.url, last).await;
        assert!(server.terminate().success());
        for (prefix, damage, rewritten) in damages {
            let saved = segments(data);
            let file = saved
                .iter()
                .find(|f| f.starts_with(prefix))
                .unwrap_or_else(|| panic!("no segment {prefix}: {saved:?}"));
            damage(&data.join("tables").join(file));
            let mut server = Server::start_with_options(data, &[], args).await;
            assert_eq!(tables(&server.url, last).await, before, "{prefix} {args:?}");
            let text = metrics(&server.url).await;
            assert!(text.contains("chiso_tables_repaired_at_open 1\n"), "{text}");
            assert!(server.terminate().success());
            let now = segments(data);
            let changed: Vec<&String> = now
                .symmetric_difference(&saved)
                .filter(|f| !f.starts_with("rankings."))
                .collect();
            assert!(changed.contains(&file), "{prefix} {args:?}: {changed:?}");
            assert!(
                changed
                    .iter()
                    .all(|f| rewritten.iter().any(|p| f.starts_with(p))),
                "{prefix} {args:?}: {changed:?}"
            );
        }
        // A manifest that names a cold month's totals but not its days: that month is
        // rebuilt too (a loader once panicked on it, and the server with it).
        forget_in_manifest(data, "agency_daily/2019-07");
        let mut server = Server::start_with_options(data, &[], args).await;
        assert_eq!(tables(&server.url, last).await, before, "{args:?}");
        let text = metrics(&server.url).await;
        assert!(text.contains("chiso_tables_repaired_at_open 1\n"), "{text}");
        assert!(server.terminate().success());
    }
}

/// Takes `partition` out of the tables' manifest, which the log keeps in its `meta` column
/// family (the server stopped).
fn forget_in_manifest(data: &Path, partition: &str) {
    let db = crate::verify::open_log(data);
    let meta = db.cf_handle("meta").unwrap();
    let key = b"chiso/projection/tables/manifest";
    let mut manifest: Value =
        serde_json::from_slice(&db.get_cf(meta, key).unwrap().unwrap()).unwrap();
    let segments = manifest["segments"].as_object_mut().unwrap();
    assert!(
        segments.remove(partition).is_some(),
        "{partition} not in {segments:?}"
    );
    db.put_cf(meta, key, serde_json::to_vec(&manifest).unwrap())
        .unwrap();
}

/// Past `--max-connections` a new connection is answered 503 `too_many_connections` at once;
/// a connection that sends no complete headers within `--header-timeout-secs` is closed, and
/// its place is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_and_silent_ones_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let args = ["--max-connections", "4", "--header-timeout-secs", "1"];
    let server = Server::start_with_options(dir.path(), &[], &args).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // The health checks of the start have closed; four silent clients take every place.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
        connection
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        silent.push(connection);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = raw_request(&server.url, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    // Headers never finished: each silent client is closed within the header timeout.
    for mut connection in silent {
        let mut byte = [0u8; 256];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            connection.read(&mut byte),
        );
        match read.await.expect("closed within 5 s") {
            Ok(0) | Err(_) => {}
            Ok(n) => {
                let answer = String::from_utf8_lossy(&byte[..n]);
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            }
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A Server-Sent Events stream with nothing to send is not idle: its keep-alive comments (every
/// 15 s) keep it past `--idle-timeout-secs`, and an event appended then still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_sse_stream_outlives_the_idle_timeout() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--idle-timeout-secs", "16"];
    let server = Server::start_with_options(dir.path(), &[], &args).await;
    register_reference_data(&server.url).await;
    let response = reqwest::get(format!(
        "{}/v1/subscribe?from=2&category=dossier",
        server.url
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let id = Uuid::new_v4();
    let appended = reqwest::Client::new()
        .post(format!("{}/v1/streams/dossier-{id}", server.url))
        .json(&json!({"events": [dossier_received(id)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), 200);
    let mut text = String::new();
    let arrived = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(&id.to_string()) {
                return true;
            }
        }
        false
    });
    assert!(arrived.await.unwrap_or(false), "the stream ended: {text}");
}

/// Append bodies held at once are bounded (`--max-inflight-body-mb`): while one client holds
/// the whole budget with a body it is still sending, another body is refused with 429
/// `overloaded` after a second; once the first is done, appends go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_inflight_budget_are_refused_with_429() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--max-inflight-body-mb", "1", "--max-body-bytes", "1048576"];
    let server = Server::start_with_options(dir.path(), &[], &args).await;
    register_reference_data(&server.url).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // A body of 1 MiB declared, of which most is sent, then the client stalls.
    let mut holder = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
                Content-Length: 1048576\r\n\r\n";
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&vec![b'\n'; 900 << 10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, answer) = post_ndjson(&server.url, batch(50).0).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (429, Some("overloaded")),
        "{answer}"
    );
    assert_eq!(
        answer["error"]["details"]["max_inflight_body_bytes"],
        1 << 20
    );
    drop(holder);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, answer) = post_ndjson(&server.url, batch(50).0).await;
    assert_eq!(status, 200, "{answer}");
}

/// A torn last write: after a SIGKILL the newest write-ahead log ends in the garbage of a
/// write that never completed (and so was never acknowledged). The server opens, every
/// acknowledged event is there, and appends continue after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_write_loses_nothing_acknowledged() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    register_reference_data(&server.url).await;
    let (body, mut acknowledged) = batch(300);
    assert_eq!(post_ndjson(&server.url, body).await.0, 200);
    server.kill();
    let newest_wal = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .expect("a write-ahead log");
    let torn: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest_wal)
        .unwrap();
    wal.write_all(&torn).unwrap();
    drop(wal);
    let server = Server::start(dir.path()).await;
    let (body, ids) = batch(10);
    assert_eq!(post_ndjson(&server.url, body).await.0, 200);
    acknowledged.extend(ids);
    assert_eq!(stored_dossiers(&server.url).await, acknowledged);
}

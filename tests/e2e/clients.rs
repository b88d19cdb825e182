//! Real PostgreSQL clients against `chiso serve`'s PostgreSQL protocol: psql, psycopg 3,
//! SQLAlchemy 2 with pandas, and pgjdbc (a small Java program) connect with a token and read
//! the rows `/v1/sql` gives; writes, engine settings and bad tokens are refused; a runaway
//! query stops at its timeout and at the client's cancel. The clients are installed by `make
//! test` (tests/clients/requirements.txt, Debian's postgresql-client and
//! libpostgresql-jdbc-java).

use crate::support::{copy_dir, create_token, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The format-2 fixture: a small log with dossiers, agencies and rankings, and its admin.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-2/data");
pub(crate) const ADMIN: &str = "format-2-fixture-admin-token";

/// The queries every client runs, as `/v1/sql` runs them (parameters written in).
const PARAM_SQL: &str = "SELECT id, received_at, service_level FROM dossiers \
     WHERE service_level = 3 AND received_at >= TIMESTAMP '2019-04-15T00:00:00+07:00' \
     ORDER BY received_at, id";
const SERIES_SQL: &str = "SELECT date_trunc('month', received_at) AS month, count(*) AS n \
     FROM dossiers GROUP BY 1 ORDER BY 1";

/// A server on the fixture, with auth on, and a `query` token (and its id).
pub(crate) async fn serve_fixture() -> (tempfile::TempDir, Server, String, String) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    let server = Server::start_with(dir.path(), &[("CHISO_ADMIN_TOKEN", ADMIN)]).await;
    let created = create_token(&server.url, ADMIN, &["query"]).await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    // The tables have folded the fixture's log before any client reads.
    http_rows(&server.url, &token, "SELECT 1", &["Int64(1)"]).await;
    (dir, server, token, id)
}

/// The rows of `sql` over `/v1/sql`, columns in the order of `columns`.
pub(crate) async fn http_rows(
    url: &str,
    token: &str,
    sql: &str,
    columns: &[&str],
) -> Vec<Vec<Value>> {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sql"))
        .bearer_auth(token)
        .json(&json!({"sql": sql, "min_position": 999, "timeout_ms": 60000}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{sql}");
    let rows: Vec<Value> = response.json().await.unwrap();
    rows.iter()
        .map(|row| columns.iter().map(|c| row[*c].clone()).collect())
        .collect()
}

/// A timestamp as microseconds since the epoch, from RFC 3339 or psql's text.
pub(crate) fn instant(text: &str) -> i64 {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    parsed.timestamp_micros()
}

/// Rows with their timestamp columns (`at`) as instants, the rest as text.
pub(crate) fn normal(rows: &[Vec<Value>], at: &[usize]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, v)| match (at.contains(&i), v) {
                    (true, Value::String(s)) => instant(s).to_string(),
                    (_, Value::String(s)) => s.clone(),
                    (_, other) => other.to_string(),
                })
                .collect()
        })
        .collect()
}

fn python(args: &[&str]) -> Value {
    client_script("pg_clients.py", args)
}

/// Runs `tests/clients/{script}` with `args`; its one JSON document.
pub(crate) fn client_script(script: &str, args: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn psql(port: u16, password: &str, commands: &[&str]) -> Output {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=chiso dbname=chiso sslmode=disable"
        ))
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    for c in commands {
        command.args(["-c", c]);
    }
    command.output().expect("psql runs")
}

pub(crate) fn as_rows(value: &Value) -> Vec<Vec<Value>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

/// What `/v1/sql` answers to the parameterised query and the time series, timestamps as
/// instants: what every client must read.
pub(crate) async fn expected_rows(url: &str, token: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let columns = ["id", "received_at", "service_level"];
    let param = normal(&http_rows(url, token, PARAM_SQL, &columns).await, &[1]);
    let series = normal(
        &http_rows(url, token, SERIES_SQL, &["month", "n"]).await,
        &[0],
    );
    assert!(
        param.len() >= 5 && series.len() >= 6,
        "{param:?} {series:?}"
    );
    (param, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clients_read_the_rows_http_gives() {
    let (_dir, server, token, _) = serve_fixture().await;
    let port = server.pg_port.to_string();
    let (param, series) = expected_rows(&server.url, &token).await;

    // psycopg 3: server-side and client-side parameters.
    let answer = python(&["psycopg", &port, &token]);
    assert_eq!(normal(&as_rows(&answer["param"]), &[1]), param);
    assert_eq!(normal(&as_rows(&answer["simple"]), &[1]), param);
    assert_eq!(normal(&as_rows(&answer["series"]), &[0]), series);

    // SQLAlchemy 2 reflection and pandas.
    let answer = python(&["sqlalchemy", &port, &token]);
    let tables: Vec<&str> = answer["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "agencies",
            "agency_daily",
            "agency_lineage",
            "calendar",
            "dossiers",
            "events",
            "ict_index",
            "rankings",
            "service_levels",
            "services"
        ]
    );
    assert_eq!(normal(&as_rows(&answer["param"]), &[1]), param);
    assert_eq!(normal(&as_rows(&answer["series"]), &[0]), series);

    // pgjdbc: metadata, a prepared statement with parameters, a time series.
    let output = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(Path::new(ROOT).join("tests/clients/JdbcClient.java"))
        .args([&port, &token])
        .output()
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l[0] == name)
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
    };
    assert_eq!(line("product")[1..], ["PostgreSQL", "16.6"]);
    assert_eq!(line("tables")[1..], tables[..]);
    assert!(
        line("columns").contains(&"received_at:timestamptz"),
        "{stdout}"
    );
    let jdbc = |name: &str| -> Vec<Vec<Value>> {
        lines
            .iter()
            .filter(|l| l[0] == name)
            .map(|l| l[1..].iter().map(|v| json!(v)).collect())
            .collect()
    };
    let param_jdbc: Vec<Vec<String>> = param.iter().map(|r| r[..2].to_vec()).collect();
    assert_eq!(normal(&jdbc("param"), &[1]), param_jdbc);
    assert_eq!(normal(&jdbc("series"), &[0]), series);

    // psql: \dt, \d, a time series, and \copy out.
    let output = psql(
        server.pg_port,
        &token,
        &["\\dt", "\\d dossiers", SERIES_SQL],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("public|dossiers|table|"), "{stdout}");
    assert!(
        stdout.contains("received_at|timestamp with time zone"),
        "{stdout}"
    );
    let psql_series: Vec<Vec<Value>> = stdout
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| l.split('|').map(|v| json!(v)).collect())
        .collect();
    assert_eq!(normal(&psql_series, &[0]), series);
    let copy = format!("\\copy ({PARAM_SQL}) TO STDOUT WITH CSV HEADER");
    let output = psql(server.pg_port, &token, &[&copy]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("id,received_at,service_level"));
    let copied: Vec<Vec<Value>> = lines
        .map(|l| l.split(',').map(|v| json!(v)).collect())
        .collect();
    assert_eq!(normal(&copied, &[1]), param);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_writes_engine_settings_and_bad_tokens() {
    let (_dir, server, token, token_id) = serve_fixture().await;
    let port = server.pg_port.to_string();
    let settings = "SELECT name, value FROM information_schema.df_settings ORDER BY name";
    let catalog = "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2";
    let before = (
        http_rows(&server.url, ADMIN, settings, &["name", "value"]).await,
        http_rows(&server.url, ADMIN, catalog, &["table_schema", "table_name"]).await,
    );
    let answer = python(&["refusals", &port, &token]);
    let expected = [
        ("CREATE TABLE t (a INT)", "25006"),
        ("CREATE VIEW v AS SELECT 1", "25006"),
        ("DROP TABLE dossiers", "25006"),
        ("INSERT INTO agencies SELECT * FROM agencies", "25006"),
        ("DELETE FROM dossiers", "25006"),
        ("UPDATE dossiers SET status = 'x'", "25006"),
        ("COPY dossiers FROM STDIN", "25006"),
        ("COPY dossiers TO '/tmp/chiso-copy-out'", "25006"),
        ("COPY (SELECT 1) TO '/tmp/chiso-copy-out'", "25006"),
        ("SET datafusion.runtime.memory_limit = '1K'", "42501"),
        ("SET datafusion.execution.batch_size = 1", "42501"),
        ("SET no_such_setting = 1", "42704"),
        ("SELECT * FROM system.queries", "42501"),
        ("SELECT * FROM no_such_table", "42P01"),
        // A parameter number a client wrote never sizes anything.
        ("SELECT 1 WHERE 1 = $2000000000", "42P02"),
        ("SELECT 1 WHERE 1 = $0", "42601"), // DataFusion's planner refuses it first
    ];
    for (sql, state) in expected {
        assert_eq!(answer[sql], state, "{sql}: {answer}");
    }
    // DataFusion's own DDL does not even parse as PostgreSQL.
    let external = answer["CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'"]
        .as_str()
        .unwrap();
    assert_ne!(external, "ok");
    assert_eq!(answer["alive"], 1);
    let after = (
        http_rows(&server.url, ADMIN, settings, &["name", "value"]).await,
        http_rows(&server.url, ADMIN, catalog, &["table_schema", "table_name"]).await,
    );
    assert_eq!(before, after, "the shared engine is as it was");
    assert!(!Path::new("/tmp/chiso-copy-out").exists());

    // A wrong token, and a token revoked while its connection is open.
    let output = psql(server.pg_port, "not-a-token", &["SELECT 1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    let answer = python(&["revocation", &port, &token, &server.url, ADMIN, &token_id]);
    assert_eq!(answer["before"], 6, "{answer}");
    assert_eq!(answer["revoke_status"], 204, "{answer}");
    assert_ne!(
        answer["after"], "ok",
        "a revoked token's open connection reads no more: {answer}"
    );
    let reconnect = answer["reconnect"].as_str().unwrap();
    assert!(
        reconnect.contains("password authentication failed"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queries_stop_at_the_timeout_and_the_clients_cancel() {
    let (_dir, server, token, token_id) = serve_fixture().await;
    let answer = python(&["timeout-and-cancel", &server.pg_port.to_string(), &token]);
    assert_eq!(answer["timed_out"], "57014", "{answer}");
    assert_eq!(answer["after_timeout"], 1, "{answer}");
    assert_eq!(answer["cancelled"], "57014", "{answer}");
    assert!(
        answer["cancel_seconds"].as_f64().unwrap() < 20.0,
        "{answer}"
    );
    assert_eq!(answer["after_cancel"], 1, "{answer}");
    assert_eq!(
        answer["statement_timeout"], "30000ms",
        "RESET restores the default: {answer}"
    );
    // Both are in the query log, as the protocol and token that ran them.
    let log = http_rows(
        &server.url,
        ADMIN,
        &format!(
            "SELECT outcome, error_code FROM system.queries WHERE protocol = 'postgres' \
             AND token_id = '{token_id}' AND sql LIKE '%generate_series%' ORDER BY started_at"
        ),
        &["outcome", "error_code"],
    )
    .await;
    assert_eq!(
        log,
        [
            vec![json!("failed"), json!("query_timeout")],
            vec![json!("cancelled"), json!("query_cancelled")]
        ]
    );
}

/// The metadata statements Grafana, Metabase and DBeaver send when they connect and browse
/// (tests/clients/bi_metadata.json, from their sources and recorded logs) all run, and the
/// listings of tables and columns list chiso's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tools_metadata_queries_run() {
    let (_dir, server, token, _) = serve_fixture().await;
    let file = Path::new(ROOT).join("tests/clients/bi_metadata.json");
    let answer = python(&[
        "replay",
        &server.pg_port.to_string(),
        &token,
        file.to_str().unwrap(),
    ]);
    let answers = answer.as_array().unwrap();
    assert_eq!(answers.len(), 41);
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer["ok"], true, "statement {n}: {answer}");
        assert!(
            answer["rows"].as_u64() >= answer["min_rows"].as_u64(),
            "statement {n}: {answer}"
        );
    }
    let tools: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|a| a["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools.into_iter().collect::<Vec<_>>(),
        ["DBeaver", "Grafana", "Metabase"]
    );
}

/// TLS: with `--tls-cert`/`--tls-key`, psql connects with `sslmode=require`; a certificate
/// that cannot be read stops the start rather than serving in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_and_a_bad_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let data = dir.path().join("data");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start_with_options(
        &data,
        &[("CHISO_ADMIN_TOKEN", ADMIN)],
        &["--tls-cert", cert, "--tls-key", key],
    )
    .await;
    // Flight SQL over the same certificate: ADBC checks it against the one it was given.
    let port = server.flight_port.to_string();
    let flight = client_script("flight_clients.py", &["adbc-tls", &port, ADMIN, cert]);
    assert_eq!(flight["agencies"], 0, "{flight}");
    assert!(
        flight["plaintext"]
            .as_str()
            .unwrap()
            .contains("Unavailable")
            || flight["plaintext"].as_str().unwrap().contains("IO"),
        "a plaintext client gets no answer: {flight}"
    );
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM agencies"])
        .arg(format!(
            "host=127.0.0.1 port={} user=chiso dbname=chiso sslmode=require",
            server.pg_port
        ))
        .env("PGPASSWORD", ADMIN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["0"]
    );
    drop(server);

    let output = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args([
            "serve",
            "--pg-listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .args(["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the certificate"), "{stderr}");
}

/// SIGTERM while a statement runs: it finishes and its client reads the whole answer, the
/// connection then closes, and the server exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_postgres_statement_finish() {
    let (_dir, mut server, token, _) = serve_fixture().await;
    let client = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/clients/pg_clients.py"))
        .args(["drain", &server.pg_port.to_string(), &token])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client has connected and its statement runs (it takes seconds in a debug build).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let output = client.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["count"], 0, "{answer}");
    assert_ne!(
        answer["next"], "ok",
        "the connection closed after the statement: {answer}"
    );
}

/// The protocol's edges, through psycopg and psql: rows stream before a query ends; a message
/// of many statements runs them one after another; a COPY that fails midway leaves the
/// connection usable; binary COPY reads back, with no rows too; settings are read as
/// PostgreSQL reads them; a statement too long or unsupported gets its SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_protocol_edges() {
    let (_dir, server, token, token_id) = serve_fixture().await;
    let answer = python(&["protocol", &server.pg_port.to_string(), &token]);
    assert!(
        answer["streamed_rows"].as_u64().unwrap() > 0,
        "rows came before the query ended: {answer}"
    );
    let end = answer["stream_end"].as_str().unwrap();
    assert!(end == "57014" || end == "54000", "{answer}");
    let ids = http_rows(
        &server.url,
        ADMIN,
        "SELECT id, service_level FROM dossiers ORDER BY id LIMIT 3",
        &["id", "service_level"],
    )
    .await;
    assert_eq!(as_rows(&answer["binary_rows"]), ids, "{answer}");
    assert_eq!(answer["binary_rowcount"], 3, "{answer}");
    // The signature, flags, extension length, then the trailer.
    assert_eq!(
        answer["binary_empty"],
        "5047434f50590aff0d0a00\
         0000000000000000\
         ffff"
    );
    let csv: Vec<String> = ids
        .iter()
        .take(2)
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answer["csv"], format!("id\n{}\n{}\n", csv[0], csv[1]));
    assert_eq!(
        answer["csv_rowcount"], 2,
        "the header is not a row: {answer}"
    );
    assert_eq!(answer["datestyle"], "ISO, DMY", "{answer}");
    assert_eq!(answer["datestyle_reset"], "ISO, MDY", "{answer}");
    assert_eq!(answer["application_name"], "default", "{answer}");
    assert_eq!(answer["application_name_reset"], "", "{answer}");
    assert_eq!(answer["half_ms"], "1ms", "{answer}");
    assert_eq!(answer["utc"], "ok", "{answer}");
    let expected = [
        ("SET default_transaction_read_only = off", "25006"),
        ("SET transaction_read_only = false", "25006"),
        ("BEGIN READ WRITE", "25006"),
        ("SET ALL = 1", "42601"),
        ("LISTEN dossiers", "0A000"),
        // sqlparser reads one ASCII character there.
        (
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, DELIMITER 'é')",
            "42601",
        ),
        (
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, ESCAPE '\\')",
            "0A000",
        ),
        (
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, DELIMITER '\"')",
            "22023",
        ),
        ("DISCARD PLANS", "ok"),
        (
            "SELECT 1 /* xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "54000",
        ),
    ];
    for (sql, state) in expected {
        assert_eq!(answer[sql], state, "{sql}: {answer}");
    }
    assert_eq!(answer["alive"], 1);

    // One message, three statements: each starts once the one before it is written.
    let slow = "SELECT count(*) FROM generate_series(1, 3000000) WHERE value % 7 = 8";
    let output = psql(
        server.pg_port,
        &token,
        &[&format!("{slow}; {slow}; {slow}")],
    );
    assert!(output.status.success(), "{output:?}");
    let runs = http_rows(
        &server.url,
        ADMIN,
        &format!(
            "SELECT CAST(started_at AS BIGINT) / 1000.0 AS started, duration_ms FROM system.queries \
             WHERE token_id = '{token_id}' AND sql LIKE '%generate_series(1, 3000000)%' \
             ORDER BY started_at"
        ),
        &["started", "duration_ms"],
    )
    .await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for pair in runs.windows(2) {
        let ended = pair[0][0].as_f64().unwrap() + pair[0][1].as_f64().unwrap();
        assert!(
            pair[1][0].as_f64().unwrap() + 1.0 >= ended,
            "one at a time: {runs:?}"
        );
    }

    // A COPY that fails midway (its row limit) ends with the error, and the connection
    // goes on.
    let output = Command::new("psql")
        .args(["-X", "-A", "-t"])
        .arg(format!(
            "host=127.0.0.1 port={} user=chiso dbname=chiso sslmode=disable",
            server.pg_port
        ))
        .env("PGPASSWORD", &token)
        .args([
            "-c",
            "\\copy (SELECT value FROM generate_series(1, 100000000000)) TO '/dev/null'",
            "-c",
            "SELECT 42",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1000000 rows") || stderr.contains("statement timeout"),
        "{stderr}"
    );
    assert!(!stderr.contains("unexpected"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "42",
        "{stderr}"
    );
}

/// A `query:{agency}` token reads only that agency's rows over the PostgreSQL and Flight SQL
/// listeners too: each runs its queries as the token's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_scope_holds_over_postgres_and_flight_sql() {
    let (_dir, server, _token, _id) = serve_fixture().await;
    // The agency with the most dossiers among those with none below them.
    let busiest = "SELECT d.agency, count(*) AS n FROM dossiers d \
        WHERE d.agency NOT IN (SELECT parent FROM agencies WHERE parent IS NOT NULL) \
        GROUP BY d.agency ORDER BY n DESC, d.agency LIMIT 1";
    let found = http_rows(&server.url, ADMIN, busiest, &["agency", "n"]).await;
    let (agency, n) = (
        found[0][0].as_str().unwrap().to_owned(),
        found[0][1].as_i64().unwrap(),
    );
    let everyone = http_rows(
        &server.url,
        ADMIN,
        "SELECT count(*) AS n FROM dossiers",
        &["n"],
    )
    .await;
    assert!(
        everyone[0][0].as_i64().unwrap() > n,
        "the fixture has other agencies' dossiers"
    );
    let scoped = create_token(&server.url, ADMIN, &[&format!("query:{agency}")]).await;
    let scoped = scoped["token"].as_str().unwrap();
    let sql = "SELECT count(*) AS n, count(DISTINCT agency) AS agencies, min(agency) AS agency FROM dossiers";
    let output = psql(server.pg_port, scoped, &[sql]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("{n}|1|{agency}")
    );
    let port = server.flight_port.to_string();
    let answer = client_script("flight_clients.py", &["rows", &port, scoped, sql]);
    assert_eq!(answer["rows"], json!([[n, 1, agency]]), "{answer}");
}

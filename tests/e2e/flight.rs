//! Real Arrow Flight SQL clients against `chiso serve`'s Flight SQL service: ADBC (its Go
//! driver, from Python, with polars on top) and pyarrow's Flight client connect with a token
//! and read the rows `/v1/sql` gives; writes, engine settings and bad or revoked tokens are
//! refused; a runaway query stops at the client's deadline and when its reader goes away.
//! The clients are installed by `make test` (tests/clients/requirements.txt).

use crate::clients::{
    as_rows, client_script, expected_rows, http_rows, normal, serve_fixture, ADMIN,
};
use serde_json::{json, Value};
use std::path::Path;

fn python(args: &[&str]) -> Value {
    client_script("flight_clients.py", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_clients_read_the_rows_http_gives() {
    let (_dir, server, token, _) = serve_fixture().await;
    let port = server.flight_port.to_string();
    let (param, series) = expected_rows(&server.url, &token).await;

    let answer = python(&["adbc", &port, &token]);
    assert_eq!(normal(&as_rows(&answer["param"]), &[1]), param, "`?`");
    assert_eq!(normal(&as_rows(&answer["dollar"]), &[1]), param, "`$1`");
    assert_eq!(normal(&as_rows(&answer["series"]), &[0]), series);
    assert_eq!(normal(&as_rows(&answer["polars"]), &[0]), series, "polars");
    assert_eq!(
        answer["series_types"],
        json!(["timestamp[us, tz=+07:00]", "int64"]),
        "{answer}"
    );
    assert_eq!(answer["empty_columns"], json!(["id"]));
    assert_eq!(answer["empty_rows"], 0);
    let tables: Vec<&str> = answer["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for table in ["public.dossiers", "public.agencies", "public.rankings"] {
        assert!(tables.contains(&table), "{table} in {tables:?}");
    }
    assert!(
        !tables.contains(&"system.queries"),
        "system.queries is for admins: {tables:?}"
    );
    let columns = answer["dossiers_columns"].as_array().unwrap();
    assert!(columns.contains(&json!("received_at")), "{answer}");
    assert_eq!(&answer["dossiers_schema"], &answer["dossiers_columns"]);
    assert_eq!(answer["vendor"], "chiso");

    let answer = python(&["adbc-basic", &port, &token]);
    assert_eq!(answer["agencies"], 6, "{answer}");
    let answer = python(&["pyarrow", &port, &token]);
    assert_eq!(normal(&as_rows(&answer["series"]), &[0]), series);
    assert_eq!(normal(&as_rows(&answer["param"]), &[1]), param, "prepared");
    assert_eq!(answer["same_schema"], true, "{answer}");
    assert_eq!(answer["header"], "authorization");

    // Every query is in the query log as Flight SQL's, with its token's id and its bytes.
    let log = http_rows(
        &server.url,
        ADMIN,
        "SELECT count(*) AS n, min(bytes) AS bytes FROM system.queries \
         WHERE protocol = 'flightsql' AND sql LIKE '%date_trunc%'",
        &["n", "bytes"],
    )
    .await;
    assert_eq!(log[0][0], 3, "{log:?}");
    assert!(log[0][1].as_u64().unwrap() > 0, "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_refuses_writes_settings_and_bad_tokens() {
    let (_dir, server, token, token_id) = serve_fixture().await;
    let port = server.flight_port.to_string();
    let settings = "SELECT name, value FROM information_schema.df_settings ORDER BY name";
    let before = http_rows(&server.url, ADMIN, settings, &["name", "value"]).await;
    let answer = python(&["refusals", &port, &token]);
    let refused = [
        ("CREATE TABLE t (a INT)", "read-only"),
        ("INSERT INTO agencies SELECT * FROM agencies", "read-only"),
        ("DELETE FROM dossiers", "read-only"),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "read-only",
        ),
        ("SET datafusion.runtime.memory_limit = '1K'", "read-only"),
        // No format: refused before it could be a write.
        ("COPY dossiers TO '/tmp/chiso-flight-copy-out'", "STORED AS"),
        (
            "COPY dossiers TO '/tmp/chiso-flight-copy-out.csv'",
            "read-only",
        ),
        ("SELECT * FROM system.queries", "for admins"),
        ("SELECT * FROM no_such_table", "not found"),
    ];
    for (sql, says) in refused {
        let error = answer[sql].as_str().unwrap();
        assert!(error.contains(says), "{sql}: {error}");
    }
    assert_eq!(answer["alive"], 1);
    for bad in ["wrong", "none"] {
        let error = answer[bad].as_str().unwrap();
        assert!(error.contains("Unauthenticated"), "{bad}: {error}");
    }
    let after = http_rows(&server.url, ADMIN, settings, &["name", "value"]).await;
    assert_eq!(before, after, "the shared engine is as it was");
    assert!(!Path::new("/tmp/chiso-flight-copy-out").exists());

    let answer = python(&["revocation", &port, &token, &server.url, ADMIN, &token_id]);
    assert_eq!(answer["before"], 6, "{answer}");
    assert_eq!(answer["revoke_status"], 204, "{answer}");
    let after = answer["after"].as_str().unwrap();
    assert!(after.contains("Unauthenticated"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_queries_stop_at_the_deadline_and_when_the_reader_goes() {
    let (_dir, server, token, _) = serve_fixture().await;
    let port = server.flight_port.to_string();
    let answer = python(&["timeout-and-cancel", &port, &token, &server.url, ADMIN]);
    let timed_out = answer["timed_out"].as_str().unwrap();
    assert!(
        timed_out.contains("DeadlineExceeded") || timed_out.contains("deadline"),
        "{answer}"
    );
    assert!(
        answer["timeout_seconds"].as_f64().unwrap() < 20.0,
        "{answer}"
    );
    assert_eq!(answer["running_before"], 1, "{answer}");
    assert_eq!(answer["running_after"], 0, "{answer}");
    let log = http_rows(
        &server.url,
        ADMIN,
        "SELECT outcome FROM system.queries WHERE protocol = 'flightsql' \
         AND sql LIKE '%generate_series%' ORDER BY started_at",
        &["outcome"],
    )
    .await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_ne!(log[1][0], "finished", "{log:?}");
}

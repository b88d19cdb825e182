//! `/v1/sql` and `/v1/reports/dossiers` through HTTP: every format parsed back, parameters,
//! `min_position`, read-only refusals, the time, row and memory limits, and cancellation when
//! the client goes away.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use chiso_api::{router, AppState, Limits};
use chiso_ingest::{IngestModel, Ingestor};
use chiso_query::datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use chiso_query::datafusion::arrow::ipc::reader::StreamReader;
use chiso_query::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use chiso_query::{Projections, SealPolicy, SqlEngine, SqlLimits};
use chiso_store::{EventStore, StoreMetrics};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

const FIXTURE: &str = include_str!("../../query/tests/slt/fixture.ndjson");

/// Every test runs twice: with every month in memory, and with every month sealed as soon as
/// it is folded (sealed rows read from their Parquet files; late events recall them).
macro_rules! on_hot_and_sealed_months {
    ($($test:ident),* $(,)?) => {
        mod hot {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::SealPolicy::NEVER).await
                }
            )*
        }
        mod sealed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::SealPolicy::AT_ONCE).await
                }
            )*
        }
    };
}

on_hot_and_sealed_months!(
    json_answers_are_arrays_of_objects_with_local_times,
    jsonl_and_csv_stream_rows,
    arrow_and_parquet_answers_parse_back,
    parameters_bind_by_position_and_by_name,
    the_report_endpoint_serves_biểu_06,
    excel_answers_hold_the_cells_of_the_csv,
    only_reads_are_allowed,
    limits_answer_408_413_503,
    min_position_waits_for_the_tables,
    a_client_that_goes_away_cancels_its_query,
    rankings_publish_once_and_revise_after_late_events,
    the_scheduler_publishes_every_missed_month_at_start,
    backups_go_to_new_directories_and_name_what_is_wrong,
);

struct Api {
    router: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

impl Api {
    /// A server whose tables follow the log, loaded with the fixture.
    async fn start(limits: SqlLimits, tables: SealPolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open_with(
            dir.path().join("log"),
            StoreMetrics::default(),
            IngestModel::new(),
        )
        .unwrap();
        let projections =
            Projections::open_with(&store, dir.path().join("tables"), tables).unwrap();
        let engine = SqlEngine::new(&store, &projections, limits).unwrap();
        let state = AppState::new(Ingestor::new(store.clone()), Limits::default()).with_sql(engine);
        projections.follow(state.shutdown.clone());
        let api = Self {
            router: router(state.clone()),
            state,
            _dir: dir,
        };
        let (status, answer) = api.call("POST", "/v1/events", FIXTURE).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        api
    }

    async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, String, Vec<u8>) {
        let (status, headers, bytes) = self.request(method, uri, &[], body).await;
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, bytes)
    }

    /// A request with `headers`; the answer's status, headers and body.
    async fn request(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(uri);
        if method == "POST" && uri.starts_with("/v1/sql") && !uri.contains('?') {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes.to_vec())
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let (status, _, bytes) = self.raw(method, uri, body).await;
        let text = String::from_utf8_lossy(&bytes);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::String(text.into())),
        )
    }

    /// POSTs a JSON query; waits for the fixture to be in the tables first.
    async fn sql(&self, body: Value) -> (StatusCode, Value) {
        let mut body = body;
        if body.get("min_position").is_none() {
            body["min_position"] = json!(0);
        }
        self.call("POST", "/v1/sql", body.to_string()).await
    }
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

async fn json_answers_are_arrays_of_objects_with_local_times(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let (status, answer) = api
        .sql(json!({"sql": "SELECT id, received_at, timeliness, rating FROM dossiers WHERE id IN ('d2', 'd4') ORDER BY id"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!([
            {"id": "d2", "received_at": "2019-03-04T08:00:00+07:00", "timeliness": "on_time", "rating": null},
            {"id": "d4", "received_at": "2019-03-04T08:00:00+07:00", "timeliness": "on_time", "rating": 5},
        ])
    );
    let (status, answer) = api
        .sql(json!({"sql": "SELECT * FROM agencies WHERE code = 'none'"}))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!([])));
}

async fn jsonl_and_csv_stream_rows(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    api.sql(json!({"sql": "SELECT 1"})).await;
    let q = "SELECT code, kind FROM agencies ORDER BY code";
    let uri = |format: &str| format!("/v1/sql?format={format}&q={}", q.replace(' ', "%20"));
    let (status, content_type, body) = api.raw("GET", &uri("jsonl"), Body::empty()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let lines: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], json!({"code": "26.243", "kind": "district"}));
    let (status, content_type, body) = api.raw("GET", &uri("csv"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "code,kind\n26,province\n26.243,district\n26.STP,department\n"
    );
    // An empty answer still names its columns.
    let empty = "/v1/sql?format=csv&q=SELECT%20code%20FROM%20agencies%20WHERE%20false";
    let (_, _, body) = api.raw("GET", empty, Body::empty()).await;
    assert_eq!(String::from_utf8(body).unwrap(), "code\n");
}

/// The cells of a workbook as `tests/clients/xlsx_cells.py` reads them with openpyxl.
fn workbook_cells(bytes: &[u8]) -> Value {
    let file = tempfile::Builder::new().suffix(".xlsx").tempfile().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/clients/xlsx_cells.py"
    );
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(file.path())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether a workbook's cell holds what the CSV's field says: text as text, a time as its
/// local time without the offset (openpyxl writes `T` between date and time), a number as
/// the same number, a boolean as `true`/`false`, nothing as an empty field.
fn cell_holds(cell: &Value, field: &str) -> bool {
    match cell {
        Value::Null => field.is_empty(),
        Value::Bool(b) => field == b.to_string(),
        Value::Number(n) => field.parse::<f64>().ok() == n.as_f64(),
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(field) {
            Ok(time) => *text == time.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string(),
            Err(_) => text == field,
        },
        _ => false,
    }
}

fn csv_rows(csv: &[u8]) -> Vec<Vec<String>> {
    // The fixture's values hold no commas, quotes or line breaks.
    String::from_utf8(csv.to_vec())
        .unwrap()
        .lines()
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

/// Workbook rows against CSV rows, cell by cell.
fn assert_rows_equal(cells: &[Value], csv: &[Vec<String>]) {
    assert_eq!(cells.len(), csv.len());
    assert_eq!(cells[0], json!(csv[0]));
    for (row, expected) in cells[1..].iter().zip(&csv[1..]) {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), expected.len());
        for (cell, field) in row.iter().zip(expected) {
            assert!(
                cell_holds(cell, field),
                "{cell} is not {field:?} in {row:?}"
            );
        }
    }
}

async fn excel_answers_hold_the_cells_of_the_csv(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    api.sql(json!({"sql": "SELECT 1"})).await;
    // Every kind of column: text, integers, times, booleans, nulls. An open pause counts up
    // to the clock, so a dossier still open shows none: the two answers are asked apart.
    let q = "SELECT id, agency, service_level, received_at, resolved_at, timeliness, \
             CASE WHEN resolved_at IS NULL THEN NULL ELSE paused_seconds END AS paused_seconds, \
             paid_online, rating FROM dossiers ORDER BY id";
    let uri = |format: &str| format!("/v1/sql?format={format}&q={}", q.replace(' ', "%20"));
    let (status, headers, xlsx) = api.request("GET", &uri("xlsx"), &[], Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&xlsx));
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"chiso-"));
    assert!(disposition.ends_with(".xlsx\""));
    let (_, _, csv) = api.raw("GET", &uri("csv"), Body::empty()).await;
    let csv = csv_rows(&csv);
    assert!(csv.len() > 5, "the fixture has dossiers");
    let book = workbook_cells(&xlsx);
    assert_eq!(book["sheets"], 1);
    assert_eq!(book["freeze"], "A2");
    assert_eq!(book["filter"], format!("A1:I{}", csv.len()));
    assert_rows_equal(book["rows"].as_array().unwrap(), &csv);
    // Accept-Encoding does not zip a zip again.
    let (_, headers, _) = api
        .request(
            "GET",
            &uri("xlsx"),
            &[("accept-encoding", "gzip")],
            Body::empty(),
        )
        .await;
    assert!(headers.get("content-encoding").is_none());

    // The report: the form's title and column groups above the CSV's header and rows.
    let report = "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&format=";
    let (status, headers, xlsx) = api
        .request("GET", &format!("{report}xlsx"), &[], Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"bieu06-2019-03-01-2019-03-31.xlsx\""
    );
    let (_, _, csv) = api.raw("GET", &format!("{report}csv"), Body::empty()).await;
    let csv = csv_rows(&csv);
    let book = workbook_cells(&xlsx);
    let rows = book["rows"].as_array().unwrap();
    assert!(rows[0][0].as_str().unwrap().starts_with("Biểu 06"));
    assert!(rows[0][0]
        .as_str()
        .unwrap()
        .ends_with("2019-03-01 – 2019-03-31"));
    assert_eq!(rows[1][1], "Số hồ sơ tiếp nhận (received)");
    assert_eq!(rows[1][5], "Số hồ sơ đã giải quyết (resolved)");
    assert_eq!(rows[1][10], "Số hồ sơ đang giải quyết (still open)");
    assert_eq!(book["merged"], json!(["B2:E2", "F2:I2", "K2:M2"]));
    assert_eq!(book["freeze"], "A4");
    assert_rows_equal(&rows[2..], &csv);

    // Past what a sheet holds, and a value longer than a cell: refused, nothing sent.
    for (sql, code) in [
        (
            "SELECT v FROM generate_series(1, 1048576) AS t(v)",
            "too_many_rows",
        ),
        ("SELECT repeat('x', 40000) AS long", "value_too_large"),
    ] {
        let (status, answer) = api
            .call(
                "POST",
                "/v1/sql",
                json!({"sql": sql, "format": "xlsx"}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_eq!(answer["error"]["code"], code);
    }
    // The query log says the refused workbook was not sent.
    let ended = api
        .sql(
            json!({"sql": "SELECT outcome, error_code FROM system.queries \
                            WHERE sql LIKE '%repeat(%40000)%' AND sql NOT LIKE '%system%'"}),
        )
        .await;
    assert_eq!(
        ended,
        (
            StatusCode::OK,
            json!([{"outcome": "failed", "error_code": "value_too_large"}])
        )
    );
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

async fn arrow_and_parquet_answers_parse_back(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    api.sql(json!({"sql": "SELECT 1"})).await;
    let q = "SELECT agency, count(*) AS n FROM dossiers GROUP BY agency ORDER BY agency";
    for format in ["arrow", "parquet"] {
        let body = json!({"sql": q, "format": format}).to_string();
        let (status, content_type, bytes) = api.raw("POST", "/v1/sql", body).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        let batches: Vec<RecordBatch> = if format == "arrow" {
            assert_eq!(content_type, "application/vnd.apache.arrow.stream");
            StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        } else {
            assert_eq!(content_type, "application/vnd.apache.parquet");
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let batch =
            chiso_query::datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .unwrap();
        let agencies = column::<StringArray>(&batch, "agency");
        let counts = column::<Int64Array>(&batch, "n");
        assert_eq!(
            (agencies.value(0), counts.value(0)),
            ("26.243", 3),
            "{format}"
        );
        assert_eq!(
            (agencies.value(1), counts.value(1)),
            ("26.STP", 5),
            "{format}"
        );
    }
}

async fn parameters_bind_by_position_and_by_name(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let (status, answer) = api
        .sql(json!({"sql": "SELECT id FROM dossiers WHERE agency = $1 AND rating >= $2", "params": ["26.STP", 4]}))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"id": "d4"}])));
    let (status, answer) = api
        .sql(json!({"sql": "SELECT count(*) AS n FROM dossiers WHERE channel = $channel", "params": {"channel": "online"}}))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"n": 3}])));
    let uri = "/v1/sql?q=SELECT%20%241%20AS%20x&params=%5B%22a%27b%22%5D";
    let (status, answer) = api.call("GET", uri, Body::empty()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"x": "a'b"}])));
    let (status, answer) = api.sql(json!({"sql": "SELECT $1", "params": "x"})).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (status, answer) = api.sql(json!({"sql": "SELECT $1 + 1", "params": []})).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_sql"),
        "{answer}"
    );
}

async fn the_report_endpoint_serves_biểu_06(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    api.sql(json!({"sql": "SELECT 1"})).await;
    let (status, answer) = api
        .call(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer[0]["agency"], "26.243");
    assert_eq!(answer[0]["carried_over"], 1);
    assert_eq!(answer[0]["open_overdue"], 1);
    assert_eq!(answer[1]["resolved_total"], 4);
    let (_, _, csv) = api
        .raw(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&format=csv",
            Body::empty(),
        )
        .await;
    assert!(String::from_utf8(csv)
        .unwrap()
        .starts_with("agency,carried_over,received_online"));
    // One province's agencies; the printed form's rows (every agency, groups, subtotals, total).
    let (status, of_26) = api
        .call(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&province=26",
            Body::empty(),
        )
        .await;
    assert_eq!((status, &of_26), (StatusCode::OK, &answer));
    let (_, none) = api
        .call(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&province=27",
            Body::empty(),
        )
        .await;
    assert_eq!(none, json!([]));
    let (status, form) = api
        .call(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&province=26&layout=form",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{form}");
    let form = form.as_array().unwrap();
    let lines: Vec<(&str, &str)> = form
        .iter()
        .map(|r| {
            (
                r["line"].as_str().unwrap(),
                r["agency"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("agency", "26"),
            ("agency", "26.STP"),
            ("subtotal", ""),
            ("agency", "26.243"),
            ("subtotal", ""),
            ("total", "")
        ]
    );
    assert_eq!(form[1]["name"], "Sở Tư pháp");
    assert_eq!(form[4]["name"], "Cộng Thành phố Vĩnh Yên (subtotal)");
    let counts = chiso_query::REPORT
        .fields()
        .iter()
        .filter(|f| f.data_type().is_integer())
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>();
    assert_eq!(counts.len(), 12);
    for count in counts {
        let n = |row: &Value| row[count].as_i64().unwrap();
        // An agency's row is the report's (zeros where it had none); each subtotal sums its
        // group; the total sums every agency, as the report does.
        for row in form.iter().filter(|r| r["line"] == "agency") {
            let reported = answer
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["agency"] == row["agency"])
                .map_or(0, n);
            assert_eq!(n(row), reported, "{count} of {}", row["agency"]);
        }
        assert_eq!(n(&form[2]), n(&form[0]) + n(&form[1]), "{count}");
        assert_eq!(n(&form[4]), n(&form[3]), "{count}");
        let all: i64 = answer.as_array().unwrap().iter().map(n).sum();
        assert_eq!(n(&form[5]), all, "{count}");
    }
    // In Excel, with the form's heading.
    let (status, _, xlsx) = api
        .raw(
            "GET",
            "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&province=26&layout=form&format=xlsx",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let book = workbook_cells(&xlsx);
    assert_eq!(book["rows"][2][0], "line");
    assert_eq!(book["rows"][8][2], "Tổng cộng (total)");
    for bad in [
        "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&layout=form",
        "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&province=26&layout=table",
        "/v1/reports/dossiers?from=2019-03-01",
        "/v1/reports/dossiers?from=2019-3-1&to=2019-03-31",
        "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31'--",
        "/v1/reports/dossiers?from=2019-03-01&to=2019-03-31&agency=x",
    ] {
        let (status, answer) = api.call("GET", bad, Body::empty()).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{bad}"
        );
    }
}

async fn only_reads_are_allowed(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    for statement in [
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE dossiers",
        "INSERT INTO agencies VALUES ('x', 'x', 'province', NULL, '01', NULL, NULL)",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.target_partitions = 64",
    ] {
        let (status, answer) = api.sql(json!({ "sql": statement })).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::FORBIDDEN, "read_only"),
            "{statement}: {answer}"
        );
    }
    for statement in [
        "SELECT * FROM '/etc/passwd'",
        "SELEC 1",
        "SELECT nope FROM agencies",
        "SELECT 1; SELECT 2",
        // A COPY with no format is refused before DataFusion sees a write (was a 500).
        "COPY agencies TO '/tmp/chiso-copy-no-format'",
    ] {
        let (status, answer) = api.sql(json!({ "sql": statement })).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_sql"),
            "{statement}: {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, answer) = api.call("GET", "/v1/sql", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (status, answer) = api
        .call("GET", "/v1/sql?q=SELECT%201&format=xml", Body::empty())
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (status, answer) = api.call("POST", "/v1/sql", "{not json").await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
}

/// A query that runs for minutes unless stopped.
const ENDLESS: &str = "SELECT sum(v % 7) FROM generate_series(1, 100000000000) AS t(v)";

async fn limits_answer_408_413_503(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let (status, answer) = api.sql(json!({"sql": ENDLESS, "timeout_ms": 200})).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::REQUEST_TIMEOUT, "query_timeout"),
        "{answer}"
    );
    let (status, answer) = api
        .sql(json!({"sql": "SELECT * FROM dossiers", "max_rows": 3}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_many_rows")
    );
    let (status, _) = api
        .sql(json!({"sql": "SELECT * FROM dossiers", "max_rows": 8}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let small = SqlLimits {
        memory_bytes: 1 << 20,
        ..SqlLimits::default()
    };
    let api = Api::start(small, tables).await;
    let group_by = "SELECT v, count(*) FROM generate_series(1, 3000000) AS t(v) GROUP BY v";
    let (status, answer) = api.sql(json!({ "sql": group_by })).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "query_memory_exhausted"),
        "{answer}"
    );
    // The pool is free again for a query that fits.
    let (status, _) = api
        .sql(json!({"sql": "SELECT count(*) FROM dossiers"}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn min_position_waits_for_the_tables(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let head = api.state.store.head();
    let (status, answer) = api
        .sql(json!({"sql": "SELECT count(*) AS n FROM events", "min_position": head - 1}))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"n": head}])));
    let (status, answer) = api
        .sql(json!({"sql": "SELECT 1", "min_position": head + 10, "timeout_ms": 300}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "tables_behind")
    );
    assert_eq!(answer["error"]["details"]["position"], head);
    // An append, then a read of it, asking for its position.
    let event = json!({"stream": "ictindex-2018", "id": uuid::Uuid::new_v4(), "type": "IctIndexPublished",
        "data": {"year": 2018, "province": "26", "rank": 18, "score": null}});
    let (status, appended) = api.call("POST", "/v1/events", event.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = api
        .sql(json!({"sql": "SELECT rank FROM ict_index WHERE year = 2018", "min_position": appended["last_position"]}))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"rank": 18}])));
    let (status, ready) = api.call("GET", "/ready", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["tables_position"], ready["log_head"]);
}

async fn a_client_that_goes_away_cancels_its_query(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = api.router.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let metrics = api.state.sql_metrics().clone();
    let client = reqwest::Client::new();
    let request = tokio::spawn(
        client
            .post(format!("http://{address}/v1/sql"))
            .json(&json!({"sql": ENDLESS}))
            .send(),
    );
    // Give up on the answer once the query has started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.running_now() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline && !request.is_finished(),
            "the endless query did not start, or answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    request.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metrics.running_now() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query kept running after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rankings(api: &Api, query: &str) -> Vec<(String, String, f64, u64, u64)> {
    let (status, answer) = api
        .call("GET", &format!("/v1/rankings?{query}"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_owned();
            (
                text("scope"),
                text("agency"),
                r["value"].as_f64().unwrap(),
                r["rank"].as_u64().unwrap(),
                r["position"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn rankings_publish_once_and_revise_after_late_events(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    api.sql(json!({"sql": "SELECT 1"})).await;
    let (status, published) = api
        .call("POST", "/v1/rankings/2019-03/publish", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{published}");
    let first = published["published"].as_u64().unwrap();
    assert!(first >= 6, "{published}");
    let position = published["last_position"].as_u64().unwrap();
    api.sql(json!({"sql": "SELECT 1", "min_position": position}))
        .await;

    // March: 26.STP resolved 4, 3 in time; 26.243 resolved nothing, so it has no on-time rate.
    let on_time = rankings(&api, "month=2019-03&metric=on_time_rate").await;
    let rows: Vec<(&str, &str, f64, u64)> = on_time
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2, r.3))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("national:province", "26", 75.0, 1),
            ("province:26:department", "26.STP", 75.0, 1)
        ]
    );
    let online = rankings(
        &api,
        "month=2019-03&metric=online_share&scope=province:26:district",
    )
    .await;
    assert_eq!(
        (online[0].1.as_str(), online[0].2, online[0].3),
        ("26.243", 50.0, 1)
    );

    // Publishing again writes nothing.
    let head = api.state.store.head();
    let (_, again) = api
        .call("POST", "/v1/rankings/2019-03/publish", Body::empty())
        .await;
    assert_eq!(again["published"], 0);
    assert_eq!(api.state.store.head(), head);

    // A late resolution in March changes the district's figures: a new revision, the old stays.
    let late = json!({"stream": "dossier-d5", "id": uuid::Uuid::new_v4(), "type": "DossierResolved",
        "data": {"at": "2019-03-20T10:00:00+07:00", "outcome": "approved"}});
    let (status, _) = api.call("POST", "/v1/events", late.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, revised) = api
        .call("POST", "/v1/rankings/2019-03/publish", Body::empty())
        .await;
    let changed = revised["published"].as_u64().unwrap();
    assert!(changed >= 1 && changed < first, "{revised}");
    api.sql(json!({"sql": "SELECT 1", "min_position": revised["last_position"]}))
        .await;
    let district = rankings(
        &api,
        "month=2019-03&metric=on_time_rate&scope=province:26:district",
    )
    .await;
    assert_eq!(
        (district[0].1.as_str(), district[0].2, district[0].3),
        ("26.243", 0.0, 1)
    );
    assert!(
        district[0].4 > position,
        "the row carries its new publication's position"
    );
    let (_, stored) = api
        .sql(json!({"sql": "SELECT count(*) AS n FROM events WHERE stream = 'ranking-2019-03'"}))
        .await;
    assert_eq!(stored[0]["n"].as_u64().unwrap(), first + changed);

    // A corrected deadline makes d3 on time, a void takes d2 (received at the desk) out of
    // March: each changes the department's figures, and each publication revises them.
    let corrected = json!({"stream": "dossier-d3", "id": uuid::Uuid::new_v4(), "type": "DossierCorrected",
        "data": {"at": "2019-04-02T08:00:00+07:00", "reason": "thời hạn đúng là 09/3", "due_at": "2019-03-09T17:00:00+07:00"}});
    let voided = json!({"stream": "dossier-d2", "id": uuid::Uuid::new_v4(), "type": "DossierVoided",
        "data": {"at": "2019-04-02T08:00:00+07:00", "reason": "nhập trùng hồ sơ d1"}});
    // Values are published to two decimals.
    let expected = [("on_time_rate", 100.0), ("online_share", 66.67)];
    for (change, (metric, value)) in [corrected, voided].into_iter().zip(expected) {
        let (status, answer) = api.call("POST", "/v1/events", change.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (_, revised) = api
            .call("POST", "/v1/rankings/2019-03/publish", Body::empty())
            .await;
        assert!(revised["published"].as_u64().unwrap() >= 1, "{revised}");
        api.sql(json!({"sql": "SELECT 1", "min_position": revised["last_position"]}))
            .await;
        let department = rankings(
            &api,
            &format!("month=2019-03&metric={metric}&scope=province:26:department"),
        )
        .await;
        assert_eq!(department[0].1, "26.STP");
        assert!(
            (department[0].2 - value).abs() < 1e-9,
            "{metric}: {department:?}"
        );
    }
    let (_, march) = api
        .sql(json!({"sql": "SELECT count(*) AS n, sum(CASE WHEN timeliness = 'late' THEN 1 ELSE 0 END) AS late \
                             FROM dossiers WHERE agency = '26.STP' \
                             AND received_at BETWEEN TIMESTAMP '2019-02-28T17:00:00Z' AND TIMESTAMP '2019-03-31T17:00:00Z'"}))
        .await;
    assert_eq!(march, json!([{"n": 3, "late": 0}]));

    let (status, answer) = api
        .call("POST", "/v1/rankings/2019-13/publish", Body::empty())
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

async fn the_scheduler_publishes_every_missed_month_at_start(tables: SealPolicy) {
    let api = Api::start(SqlLimits::default(), tables).await;
    let scheduler = chiso_api::spawn_scheduler(api.state.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, months) = api
            .sql(json!({"sql": "SELECT DISTINCT month FROM rankings ORDER BY month"}))
            .await;
        // April holds only a withdrawal: nothing to rank, so nothing is published for it.
        if months == json!([{"month": "2019-01"}, {"month": "2019-02"}, {"month": "2019-03"}]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missed months not published: {months}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scheduler.abort();
}

async fn backups_go_to_new_directories_and_name_what_is_wrong(tables: SealPolicy) {
    let api = &Api::start(SqlLimits::default(), tables).await;
    // The tables include the fixture, so the copy has segments.
    let head = api.state.store.head();
    let caught_up = json!({"sql": "SELECT 1", "min_position": head - 1}).to_string();
    let (status, answer) = api.call("POST", "/v1/sql", caught_up).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taken"), "").unwrap();
    let post = |destination: Value| {
        let body = json!({ "destination": destination }).to_string();
        async move { api.call("POST", "/v1/admin/backup", body).await }
    };
    let (status, answer) = post(json!("relative/dir")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_parameter");
    let (status, answer) = post(json!(dir.path())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "destination_exists");
    let (status, answer) = post(json!(dir.path().join("taken").join("copy"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "backup_failed");
    let copy = dir.path().join("copy");
    let (status, answer) = post(json!(copy)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["log_head"], head);
    assert!(copy.join("log").join("CURRENT").is_file());
    let segments = std::fs::read_dir(copy.join("tables")).unwrap().count();
    assert_eq!(answer["segments"], segments as u64);
    assert!(
        segments > 0,
        "the fixture's tables were checkpointed and copied"
    );
}

/// Waits until `id` is among the running queries.
async fn until_running(api: &Api, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, listed) = api.call("GET", "/v1/queries", Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let found = listed["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["id"] == id);
        if let Some(query) = found {
            return query.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_have_ids_are_listed_cancelled_and_logged() {
    let api = Api::start(SqlLimits::default(), SealPolicy::NEVER).await;
    // A new id on every answer, errors included; the client's own when it sends one.
    let (status, headers, _) = api
        .request("GET", "/v1/sql?q=SELECT%201", &[], Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let generated = headers["x-chiso-query-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let (status, headers, _) = api
        .request("GET", "/v1/sql?q=SELEC", &[], Body::empty())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.contains_key("x-chiso-query-id"));
    let mine = [("x-chiso-query-id", "report-2019.q1")];
    let uri = "/v1/sql?q=SELECT%20id%20FROM%20dossiers%20ORDER%20BY%20id&min_position=0";
    let (status, headers, body) = api.request("GET", uri, &mine, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-chiso-query-id"], "report-2019.q1");
    let sent = body.len();
    let bad = [("x-chiso-query-id", "two words")];
    let (status, _, _) = api
        .request("GET", "/v1/sql?q=SELECT%201", &bad, Body::empty())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A running query is listed, its id taken, and a cancel ends it with 409.
    let endless = json!({"sql": ENDLESS}).to_string();
    let running = {
        let router = api.router.clone();
        let request = Request::post("/v1/sql")
            .header("content-type", "application/json")
            .header("x-chiso-query-id", "endless-1")
            .body(Body::from(endless.clone()))
            .unwrap();
        tokio::spawn(async move { router.oneshot(request).await.unwrap() })
    };
    let listed = until_running(&api, "endless-1").await;
    assert_eq!(
        (&listed["sql"], &listed["protocol"], &listed["token_id"]),
        (&json!(ENDLESS), &json!("http"), &json!("local"))
    );
    let taken = [("x-chiso-query-id", "endless-1")];
    let (status, _, body) = api
        .request("POST", "/v1/sql", &taken, endless.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        code(&serde_json::from_slice(&body).unwrap()),
        "query_id_in_use"
    );
    let (status, _) = api
        .call("DELETE", "/v1/queries/endless-1", Body::empty())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("a cancelled query answers at once")
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        code(&serde_json::from_slice(&body).unwrap()),
        "query_cancelled"
    );
    let (status, answer) = api
        .call("DELETE", "/v1/queries/endless-1", Body::empty())
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "query_not_found")
    );

    // Every query that ended is in `system.queries`, with how it ended.
    let (status, log) = api
        .sql(
            json!({"sql": "SELECT id, protocol, token_id, rows, bytes, outcome, error_code \
            FROM system.queries WHERE id IN ('report-2019.q1', 'endless-1') ORDER BY id"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(
        log,
        json!([
            {"id": "endless-1", "protocol": "http", "token_id": "local", "rows": 0,
             "bytes": 0, "outcome": "cancelled", "error_code": "query_cancelled"},
            {"id": "report-2019.q1", "protocol": "http", "token_id": "local", "rows": 8,
             "bytes": sent, "outcome": "finished", "error_code": null},
        ])
    );
    let (_, failed) = api
        .sql(json!({"sql": "SELECT outcome, error_code FROM system.queries WHERE sql = 'SELEC'"}))
        .await;
    assert_eq!(
        failed,
        json!([{"outcome": "failed", "error_code": "invalid_sql"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_the_answer_started_ends_the_body_with_it() {
    let api = Api::start(SqlLimits::default(), SealPolicy::NEVER).await;
    // Past the rows held back before the first byte, then past the row limit.
    let sql = "SELECT v FROM generate_series(1, 200000) AS t(v)";
    let uri = |format: &str| {
        format!(
            "/v1/sql?q={}&format={format}&max_rows=100000",
            sql.replace(' ', "%20")
        )
    };
    let (status, _, body) = api.raw("GET", &uri("json"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<Value> = serde_json::from_slice(&body).expect("a whole JSON array");
    assert!(
        rows.len() > 65_536 && rows.len() <= 100_001,
        "{}",
        rows.len()
    );
    assert_eq!(code(rows.last().unwrap()), "too_many_rows");
    assert_eq!(rows[rows.len() - 2], json!({"v": rows.len() - 1}));

    let (_, _, body) = api.raw("GET", &uri("jsonl"), Body::empty()).await;
    let last = String::from_utf8(body)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(code(&serde_json::from_str(&last).unwrap()), "too_many_rows");

    let (_, _, body) = api.raw("GET", &uri("csv"), Body::empty()).await;
    let text = String::from_utf8(body).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("# error: too_many_rows: "), "{last}");
    assert_eq!(text.lines().next(), Some("v"));

    // An Arrow answer is cut: the body itself fails.
    let request = Request::get(uri("arrow")).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());
}

fn decompress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap(),
        "zstd" => zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("{other}"),
    };
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_compress_as_the_client_accepts() {
    let api = Api::start(SqlLimits::default(), SealPolicy::NEVER).await;
    let q = "SELECT%20*%20FROM%20dossiers%20ORDER%20BY%20id&min_position=0";
    for format in ["json", "jsonl", "csv", "arrow", "parquet"] {
        let uri = format!("/v1/sql?q={q}&format={format}");
        let (status, headers, plain) = api.request("GET", &uri, &[], Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("content-encoding"));
        for encoding in ["gzip", "zstd"] {
            let accept = [("accept-encoding", encoding)];
            let (status, headers, bytes) = api.request("GET", &uri, &accept, Body::empty()).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers["content-encoding"], encoding, "{format}");
            assert_eq!(decompress(encoding, &bytes), plain, "{format} {encoding}");
        }
    }
    // Buffers compressed inside Arrow and Parquet answers read back as the plain ones.
    let batches = |format: &str, bytes: Vec<u8>| -> Vec<RecordBatch> {
        match format {
            "arrow" => StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap(),
            _ => ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap(),
        }
    };
    for format in ["arrow", "parquet"] {
        let uri = format!("/v1/sql?q={q}&format={format}");
        let (_, _, plain) = api.raw("GET", &uri, Body::empty()).await;
        let plain = batches(format, plain);
        for codec in ["zstd", "lz4"] {
            let (status, _, bytes) = api
                .raw("GET", &format!("{uri}&compression={codec}"), Body::empty())
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(batches(format, bytes), plain, "{format} {codec}");
        }
    }
    let (status, answer) = api
        .call(
            "GET",
            &format!("/v1/sql?q={q}&compression=zstd"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

/// The routes ARCHITECTURE.md §6 lists: `(METHOD, /path)`.
fn routes_in_architecture() -> std::collections::BTreeSet<(String, String)> {
    let text = include_str!("../../ARCHITECTURE.md");
    let section = text
        .split("## 6. HTTP (api)")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has §6");
    let mut routes = std::collections::BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split(" | ").next().unwrap().trim_start_matches("| ");
        for route in cell.split(" · ") {
            let route = route.trim().trim_matches('`');
            let (methods, path) = route.split_once(' ').expect("METHOD /path");
            let path = path.split('?').next().unwrap();
            for method in methods.split('·') {
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_every_route_and_each_is_served() {
    let api = Api::start(SqlLimits::default(), SealPolicy::NEVER).await;
    let (status, document) = api.call("GET", "/v1/openapi.json", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    assert_eq!(document, chiso_api::openapi_document());
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_eq!(
        documented,
        routes_in_architecture(),
        "the document and ARCHITECTURE.md §6"
    );
    assert_eq!(documented.len(), 24, "{documented:?}");
    // Each documented route reaches its handler: whatever it answers, it is not the router's
    // own 404 or 405.
    for (method, path) in &documented {
        let uri = path
            .replace("{stream}", "agency-26")
            .replace("{month}", "2019-03")
            .replace("{id}", "no-such-query")
            .replace("{token}", "no-such-token")
            .replace("{file}", "app.js");
        let request = Request::builder().method(method.as_str()).uri(&uri);
        let response = api
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let code = if !content_type.starts_with("application/json") {
            String::new()
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            code(&answer).to_owned()
        };
        assert!(
            !matches!(code.as_str(), "not_found" | "method_not_allowed"),
            "{method} {uri}: {status} {code}"
        );
    }
    // And a route that is not documented is not served.
    let (status, answer) = api.call("GET", "/v1/undocumented", Body::empty()).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

//! SQL semantics pinned in sqllogictest files (`tests/slt/*.slt`), run against the tables
//! folded from `tests/slt/fixture.ndjson` (appended through the catalog and write model).

use chiso_ingest::{Author, IngestModel, Ingestor};
use chiso_query::datafusion::arrow::array::RecordBatch;
use chiso_query::datafusion::arrow::datatypes::DataType;
use chiso_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use chiso_query::{DossierStorage, Projections, Query, SealPolicy, SqlEngine, SqlLimits};
use chiso_store::{
    AppendRequest, Appender, EventStore, ExpectedRevision, ProposedEvent, StoreMetrics, StreamName,
};
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};

struct Chiso {
    engine: SqlEngine,
}

#[derive(Debug)]
struct QueryFailed(String);

impl std::fmt::Display for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryFailed {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Chiso {
    type Error = QueryFailed;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryFailed> {
        let query = Query {
            sql: sql.to_owned(),
            ..Query::default()
        };
        let failed = |e: chiso_query::Error| QueryFailed(format!("{}: {e}", e.code()));
        let stream = self.engine.execute(query).await.map_err(failed)?;
        let schema = stream.schema();
        let batches = stream.collect().await.map_err(failed)?;
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int32 | DataType::Int64 | DataType::UInt64 => DefaultColumnType::Integer,
                DataType::Float64 => DefaultColumnType::FloatingPoint,
                DataType::Utf8 => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "chiso"
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        text if text.is_empty() => "(empty)".to_owned(),
                        text => text,
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// Appends the fixture through the write model, one request per line, folding each into
/// every one of `projections`.
/// The names of the files in `dir` (none when it does not exist yet).
fn file_names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A fixture's events, one append request each.
fn fixture_requests(fixture: &Path) -> Vec<AppendRequest> {
    let text = std::fs::read_to_string(fixture).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            AppendRequest {
                stream: StreamName::new(event["stream"].as_str().unwrap()).unwrap(),
                expected: ExpectedRevision::Any,
                events: vec![ProposedEvent {
                    id: event["id"].as_str().unwrap().parse().unwrap(),
                    event_type: event["type"].as_str().unwrap().to_owned(),
                    data: event["data"].to_string(),
                    metadata: event.get("metadata").map_or("{}".into(), |m| m.to_string()),
                    decoded: (),
                }],
                principal: (),
            }
        })
        .collect()
}

async fn load_fixture(store: &Log, projections: &[&Projections], fixture: &Path) {
    for (number, request) in fixture_requests(fixture).into_iter().enumerate() {
        if let Err(error) = append(store, vec![request]).await {
            panic!("fixture line {}: {error}", number + 1);
        }
        for projections in projections {
            projections.catch_up(|_, _| {}).unwrap();
            // Sealed at once, every saved month of `agency_daily` goes cold: the next count
            // on one of its days brings it back.
            projections.checkpoint().unwrap();
        }
    }
}

/// The same events folded twice: sealed at once, and kept in memory (tables keep their
/// manifest in their log's store, so each has a log of its own).
struct Twins {
    store: Log,
    hot_store: Log,
    tables: PathBuf,
    sealed: Projections,
    hot: Projections,
}

impl Twins {
    /// Twins with `fixture` (under `tests/`) folded by both, one line at a time.
    async fn loaded(dir: &Path, fixture: &str) -> Self {
        Self::loaded_with(dir, fixture, SealPolicy::AT_ONCE).await
    }

    /// [`Twins::loaded`], the sealed twin sealing under `policy`.
    async fn loaded_with(dir: &Path, fixture: &str, policy: SealPolicy) -> Self {
        let twins = Self::open_with(dir, policy);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(fixture);
        load_fixture(&twins.store, &[&twins.sealed], &fixture).await;
        load_fixture(&twins.hot_store, &[&twins.hot], &fixture).await;
        twins
    }

    fn open(dir: &Path) -> Self {
        Self::open_with(dir, SealPolicy::AT_ONCE)
    }

    fn open_with(dir: &Path, policy: SealPolicy) -> Self {
        let (store, hot_store) = (
            open_store(&dir.join("log")),
            open_store(&dir.join("hot-log")),
        );
        let tables = dir.join("tables");
        let sealed = Projections::open_with(&store, &tables, policy).unwrap();
        let hot = Projections::open_with(&hot_store, dir.join("hot"), SealPolicy::NEVER).unwrap();
        Self {
            store,
            hot_store,
            tables,
            sealed,
            hot,
        }
    }
}

/// A request appending one event (its id made of `serial`).
fn append_one(
    serial: u128,
    stream: &str,
    event_type: &str,
    data: serde_json::Value,
) -> AppendRequest {
    AppendRequest {
        stream: StreamName::new(stream).unwrap(),
        expected: ExpectedRevision::Any,
        events: vec![ProposedEvent {
            id: uuid::Uuid::from_u128(serial),
            event_type: event_type.to_owned(),
            data: data.to_string(),
            metadata: "{}".into(),
            decoded: (),
        }],
        principal: (),
    }
}

/// The events of a province, one of its departments (`26.STP`) and one service (`1.001`).
fn one_service(
    request: &mut impl FnMut(&str, &str, serde_json::Value) -> AppendRequest,
) -> Vec<AppendRequest> {
    vec![
        request(
            "agency-26",
            "AgencyRegistered",
            serde_json::json!({"code": "26", "name": "Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}),
        ),
        request(
            "agency-26.STP",
            "AgencyRegistered",
            serde_json::json!({"code": "26.STP", "name": "Sở Tư pháp", "kind": "department", "parent": "26", "province": "26"}),
        ),
        request(
            "service-1.001",
            "ServiceLaunched",
            serde_json::json!({"code": "1.001", "agency": "26.STP", "name": "Lý lịch tư pháp", "field": "Tư pháp", "level": 3, "at": "2018-01-01T08:00:00+07:00"}),
        ),
    ]
}

/// A log with the catalog's rules.
type Log = Appender<IngestModel>;

/// A log at `path` with the catalog and the write model, as the server opens it.
fn open_store(path: &Path) -> Log {
    EventStore::open_with(path, StoreMetrics::default(), IngestModel::new()).unwrap()
}

/// Appends `requests` as one unit through the catalog, as an admin.
async fn append(log: &Log, requests: Vec<AppendRequest>) -> chiso_store::Result<()> {
    let ingestor = Ingestor::new(log.clone());
    ingestor
        .append_envelopes(&Author::admin("test"), requests)
        .await?;
    Ok(())
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

/// Every month in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_on_hot_months() {
    run_slt_files(SealPolicy::NEVER, |stored| {
        assert_eq!(stored.sealed_months, 0)
    })
    .await;
}

/// Every month sealed after every event: rows are read from sealed files, and the events
/// after a dossier's receipt find it sealed (a late payment, rating, resolution or pause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_on_sealed_months() {
    run_slt_files(SealPolicy::AT_ONCE, |stored| {
        assert!(stored.sealed_months >= 2, "{stored:?}");
        assert!(stored.daily_cold_rows > 0, "{stored:?}");
        assert!(
            stored.recalled >= 2,
            "late events found sealed rows: {stored:?}"
        );
    })
    .await;
}

/// Every month sealed after every event, each file installed after the next: the events
/// land on rows being sealed and on files being compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_on_months_sealed_while_they_change() {
    run_slt_files(SealPolicy::OVERLAPPED, |stored| {
        assert!(stored.sealed_months >= 2, "{stored:?}")
    })
    .await;
}

/// A filter comparing a code with constants is applied on the sealed files' dictionaries (the
/// slt files check the answers are those of the hot months).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_months_filter_codes_on_their_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let projections =
        Projections::open_with(&store, dir.path().join("tables"), SealPolicy::AT_ONCE).unwrap();
    load_fixture(&store, &[&projections], &slt_dir().join("fixture.ndjson")).await;
    let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
    let plan = |sql: &'static str| {
        let engine = engine.clone();
        async move {
            let batches = engine.collect(&format!("EXPLAIN {sql}")).await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        }
    };
    let late = plan("SELECT id FROM dossiers WHERE timeliness = 'late'").await;
    assert!(late.contains("timeliness@1 IN (late)"), "{late}");
    let among = plan("SELECT count(*) FROM dossiers WHERE status IN ('open', 'withdrawn')").await;
    assert!(among.contains("status@0 IN (open, withdrawn)"), "{among}");
    // DataFusion writes a NOT IN of two values as two `<>`.
    let not_in =
        plan("SELECT count(*) FROM dossiers WHERE status NOT IN ('open', 'withdrawn')").await;
    assert!(
        not_in.contains("status@0 NOT IN (open) AND status@0 NOT IN (withdrawn)"),
        "{not_in}"
    );
    // Not a comparison with constants: read as string views, filtered above the scan.
    let like = plan("SELECT id FROM dossiers WHERE timeliness LIKE 'la%'").await;
    assert!(!like.contains(" IN ("), "{like}");
}

async fn run_slt_files(policy: SealPolicy, check: impl Fn(DossierStorage)) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let projections = Projections::open_with(&store, dir.path().join("tables"), policy).unwrap();
    load_fixture(&store, &[&projections], &slt_dir().join("fixture.ndjson")).await;
    check(projections.dossier_storage());
    let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the .slt files are missing");
    for file in files {
        let engine = engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok::<_, QueryFailed>(Chiso { engine }) }
        });
        if let Err(error) = runner.run_file_async(&file).await {
            panic!("{}: {error}", file.display());
        }
    }
}

/// What the late-events test compares: every column of every table a late event touches
/// (an open row's pause-dependent columns grow with the clock, so they are left out), and
/// reports over periods before, across and after the late events.
const LATE_QUERIES: &[&str] = &[
    "SELECT id, agency, province, service, service_level, channel, received_at, due_at, \
     CASE WHEN status = 'open' THEN NULL ELSE effective_due_at END, resolved_at, withdrawn_at, \
     status, outcome, timeliness, CASE WHEN status = 'open' THEN NULL ELSE paused_seconds END, \
     paid_online, rating FROM dossiers",
    "SELECT * FROM agency_daily",
    "SELECT * FROM services",
    "SELECT * FROM service_levels",
    "SELECT * FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31')",
    "SELECT * FROM dossier_report(DATE '2019-02-01', DATE '2019-02-28')",
    "SELECT * FROM dossier_report(DATE '2020-01-01', DATE '2020-03-31')",
];

/// Each of [`LATE_QUERIES`] with its rows, sorted.
async fn late_answers(
    store: &EventStore,
    projections: &Projections,
) -> Vec<(String, Vec<Vec<String>>)> {
    let engine = SqlEngine::new(store, projections, SqlLimits::default()).unwrap();
    let mut answers = Vec::new();
    for sql in LATE_QUERIES {
        let batches = engine.collect(sql).await.unwrap();
        let mut rows = rows(&batches);
        rows.sort();
        answers.push(((*sql).to_owned(), rows));
    }
    answers
}

/// Late events on sealed rows — a payment and a rating months after the resolution, a
/// resolution a year after receipt, a pause opened and closed long after, a level change
/// appended after a receipt it predates — answer as hot tables and a rebuild from the log do,
/// and go on doing so after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_on_sealed_rows_answer_as_a_rebuild_does() {
    late_events_answer_as_a_rebuild_does(SealPolicy::AT_ONCE).await;
}

/// The same, each sealed file installed one event late: late events land on rows being
/// sealed, and recall rows of the file being compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_on_months_being_sealed_answer_as_a_rebuild_does() {
    late_events_answer_as_a_rebuild_does(SealPolicy::OVERLAPPED).await;
}

async fn late_events_answer_as_a_rebuild_does(policy: SealPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let Twins {
        store,
        hot_store,
        tables,
        sealed,
        hot,
    } = Twins::loaded_with(dir.path(), "late_events.ndjson", policy).await;
    let stored = sealed.dossier_storage();
    assert!(stored.sealed_months >= 5, "{stored:?}");
    // d paid and rated, a rated and paid, i rated: five late events on closed, sealed rows.
    assert!(
        stored.recalled >= 5,
        "late events found sealed rows: {stored:?}"
    );
    assert_eq!(hot.dossier_storage().sealed_months, 0);

    let expected = late_answers(&hot_store, &hot).await;
    assert_eq!(expected[0].1.len(), 10, "every dossier is there");
    answers_sealed_reopened_and_rebuilt(&store, sealed, &tables, &expected).await;
}

/// The tables sealed as they went answer `expected`, and so do they reopened from their
/// checkpoint and rebuilt from the log.
async fn answers_sealed_reopened_and_rebuilt(
    store: &Log,
    sealed: Projections,
    tables: &Path,
    expected: &[(String, Vec<Vec<String>>)],
) {
    assert_eq!(
        late_answers(store, &sealed).await,
        expected,
        "sealed as it went"
    );
    sealed.checkpoint().unwrap();
    drop(sealed);
    let reopened = Projections::open_with(store, tables, SealPolicy::AT_ONCE).unwrap();
    assert_eq!(reopened.position(), store.head());
    assert_eq!(late_answers(store, &reopened).await, expected, "reopened");
    // As `chiso rebuild` does: every table dropped, the log replayed.
    reopened.clear().unwrap();
    reopened.catch_up(|_, _| {}).unwrap();
    assert_eq!(late_answers(store, &reopened).await, expected, "rebuilt");
}

/// The fixture as it would have been had every dossier been received as corrected and the
/// voided ones never entered: its receipts with the corrections' values, without the
/// corrections, the voided dossiers' events and the voids.
fn as_if_received_so(fixture: &Path) -> Vec<AppendRequest> {
    let text = std::fs::read_to_string(fixture).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_type = |event: &serde_json::Value, kind: &str| event["type"] == kind;
    let voided: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| of_type(e, "DossierVoided"))
        .map(|e| &e["stream"])
        .collect();
    let mut requests = Vec::new();
    for (serial, event) in events.iter().enumerate() {
        if voided.contains(&&event["stream"]) || of_type(event, "DossierCorrected") {
            continue;
        }
        let mut data = event["data"].clone();
        if of_type(event, "DossierReceived") {
            let corrections = events
                .iter()
                .filter(|e| of_type(e, "DossierCorrected") && e["stream"] == event["stream"]);
            for correction in corrections {
                for field in ["channel", "service", "received_at", "due_at"] {
                    if let Some(value) = correction["data"].get(field) {
                        data[field] = value.clone();
                    }
                }
            }
        }
        let stream = event["stream"].as_str().unwrap();
        let kind = event["type"].as_str().unwrap();
        requests.push(append_one(serial as u128 + 1, stream, kind, data));
    }
    requests
}

/// Corrections and voids — of hot rows and of sealed ones, moving a row to another month
/// (earlier and later), changing its timeliness, its service (and so its level), a void of
/// a resolved, a withdrawn and an open dossier — answer exactly as the same history entered
/// right the first time: every column of `dossiers`, `agency_daily` and the reports; sealed
/// as it went, kept hot, reopened and rebuilt from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_and_voids_answer_as_if_entered_right() {
    corrections_and_voids_answer_so(SealPolicy::AT_ONCE).await;
}

/// The same, each sealed file installed one event late: corrections and voids land on
/// months being sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_and_voids_of_months_being_sealed_answer_as_if_entered_right() {
    corrections_and_voids_answer_so(SealPolicy::OVERLAPPED).await;
}

async fn corrections_and_voids_answer_so(policy: SealPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let Twins {
        store,
        hot_store,
        tables,
        sealed,
        hot,
    } = Twins::loaded_with(dir.path(), "corrections.ndjson", policy).await;
    let stored = sealed.dossier_storage();
    assert!(stored.sealed_months >= 4, "{stored:?}");
    assert!(
        stored.recalled >= 5,
        "corrections found sealed rows: {stored:?}"
    );

    let right_store = open_store(&dir.path().join("right-log"));
    let right =
        Projections::open_with(&right_store, dir.path().join("right"), SealPolicy::NEVER).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corrections.ndjson");
    append(&right_store, as_if_received_so(&fixture))
        .await
        .unwrap();
    right.catch_up(|_, _| {}).unwrap();
    let expected = late_answers(&right_store, &right).await;
    // Fifteen dossiers received, three voided.
    assert_eq!(expected[0].1.len(), 12, "{:#?}", expected[0].1);
    assert_eq!(late_answers(&hot_store, &hot).await, expected, "hot");
    answers_sealed_reopened_and_rebuilt(&store, sealed, &tables, &expected).await;
}

/// The 2025 reorganisation in miniature: on 1 July a district is dissolved after its commune
/// moved up, Vĩnh Phúc's communes are merged into a new one of Phú Thọ or moved there (and
/// renamed), and Vĩnh Phúc is merged into Phú Thọ. History stays where it was: June's days,
/// report and ranking are Vĩnh Phúc's; August's are Phú Thọ's — hot and sealed alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorganisation_leaves_history_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let twins = Twins::loaded(dir.path(), "reorganisation.ndjson").await;
    for (store, projections) in [
        (&twins.store, &twins.sealed),
        (&twins.hot_store, &twins.hot),
    ] {
        let engine = SqlEngine::new(store, projections, SqlLimits::default()).unwrap();
        let answer = |sql: &'static str| {
            let engine = engine.clone();
            async move { rows(&engine.collect(sql).await.unwrap()) }
        };
        let agencies = answer(
            "SELECT code, name, coalesce(parent, '-'), province, \
             coalesce(CAST(valid_from AS VARCHAR), '-'), coalesce(CAST(valid_to AS VARCHAR), '-') \
             FROM agencies ORDER BY code",
        )
        .await;
        let july = "2025-07-01T00:00:00+07:00";
        let expected: Vec<Vec<String>> = [
            ["25", "Tỉnh Phú Thọ", "-", "25", "-", "-"],
            ["25.001", "Huyện A (Phú Thọ, thử)", "25", "25", "-", july],
            ["25.001.01", "Xã A1 (thử)", "25", "25", "-", "-"],
            [
                "25.900",
                "Phường Vĩnh Phúc (mới, thử)",
                "25",
                "25",
                july,
                "-",
            ],
            ["26", "Tỉnh Vĩnh Phúc", "-", "26", "-", july],
            ["26.243", "Thành phố Vĩnh Yên", "26", "26", "-", july],
            ["26.243.01", "Phường Tích Sơn", "26.243", "26", "-", july],
            [
                "26.243.02",
                "Phường Liên Bảo (tỉnh Phú Thọ)",
                "25",
                "25",
                "-",
                "-",
            ],
        ]
        .iter()
        .map(|row| row.iter().map(|v| v.to_string()).collect())
        .collect();
        assert_eq!(agencies, expected);
        let daily = answer(
            "SELECT CAST(day AS VARCHAR), agency, province, received FROM agency_daily \
             WHERE received > 0 ORDER BY 1, 2",
        )
        .await;
        let expected: Vec<Vec<String>> = [
            ["2025-06-10", "25.001.01", "25", "1"],
            ["2025-06-10", "26.243.01", "26", "1"],
            ["2025-06-10", "26.243.02", "26", "2"],
            ["2025-08-05", "25.001.01", "25", "1"],
            ["2025-08-05", "25.900", "25", "1"],
            ["2025-08-05", "26.243.02", "25", "1"],
        ]
        .iter()
        .map(|row| row.iter().map(|v| v.to_string()).collect())
        .collect();
        assert_eq!(daily, expected);
        let june = answer(
            "SELECT agency, received_total FROM dossier_report(DATE '2025-06-01', DATE '2025-06-30') \
             WHERE province = '26' AND received_total > 0 ORDER BY agency",
        )
        .await;
        assert_eq!(june, [["26.243.01", "1"], ["26.243.02", "2"]]);
        // The hierarchy on a day, as that day ends.
        let table = |rows: &[[&str; 4]]| -> Vec<Vec<String>> {
            rows.iter()
                .map(|row| row.iter().map(|v| v.to_string()).collect())
                .collect()
        };
        let before = answer(
            "SELECT code, name, coalesce(parent, '-'), province FROM agencies_at(DATE '2025-06-30') ORDER BY code",
        )
        .await;
        assert_eq!(
            before,
            table(&[
                ["25", "Tỉnh Phú Thọ", "-", "25"],
                ["25.001", "Huyện A (Phú Thọ, thử)", "25", "25"],
                ["25.001.01", "Xã A1 (thử)", "25.001", "25"],
                ["26", "Tỉnh Vĩnh Phúc", "-", "26"],
                ["26.243", "Thành phố Vĩnh Yên", "26", "26"],
                ["26.243.01", "Phường Tích Sơn", "26.243", "26"],
                ["26.243.02", "Phường Liên Bảo", "26.243", "26"],
            ])
        );
        let after = answer(
            "SELECT code, name, coalesce(parent, '-'), province FROM agencies_at('2025-07-01') ORDER BY code",
        )
        .await;
        assert_eq!(
            after,
            table(&[
                ["25", "Tỉnh Phú Thọ", "-", "25"],
                ["25.001.01", "Xã A1 (thử)", "25", "25"],
                ["25.900", "Phường Vĩnh Phúc (mới, thử)", "25", "25"],
                ["26.243.02", "Phường Liên Bảo (tỉnh Phú Thọ)", "25", "25"],
            ])
        );
        let lineage = answer(
            "SELECT agency, coalesce(successor, '-'), CAST(since AS VARCHAR) AS since, change \
             FROM agency_lineage ORDER BY agency, 3",
        )
        .await;
        assert_eq!(
            lineage,
            table(&[
                ["25.001", "-", july, "dissolved"],
                ["25.001.01", "25", july, "moved"],
                ["26", "25", july, "merged"],
                ["26.243", "-", july, "dissolved"],
                ["26.243.01", "25.900", july, "merged"],
                ["26.243.02", "25", july, "moved"],
            ])
        );
        // History rolled up to today's units keeps every dossier: by province and by agency.
        let by_province = answer(
            "SELECT current_agency(province), sum(received) FROM agency_daily GROUP BY 1 ORDER BY 1",
        )
        .await;
        assert_eq!(by_province, [["25", "7"]]);
        let by_agency = answer(
            "SELECT current_agency(agency), sum(received) FROM agency_daily GROUP BY 1 ORDER BY 1",
        )
        .await;
        assert_eq!(
            by_agency,
            [["25.001.01", "2"], ["25.900", "2"], ["26.243.02", "3"]]
        );
        let units = answer(
            "SELECT coalesce(current_agency(c), '-') FROM (VALUES ('26'), ('26.243'), ('nobody')) AS t(c)",
        )
        .await;
        assert_eq!(units, [["25"], ["25"], ["-"]]);
        // Each month ranks the units that existed as it ended, in the provinces they were in.
        let june = vec![
            ("national:province", vec!["25", "26"]),
            ("province:25:commune", vec!["25.001.01"]),
            ("province:26:commune", vec!["26.243.01", "26.243.02"]),
        ];
        let august = vec![
            ("national:province", vec!["25"]),
            (
                "province:25:commune",
                vec!["25.001.01", "25.900", "26.243.02"],
            ),
        ];
        for (month, expected) in [("2025-06", june), ("2025-08", august)] {
            let key = chiso_query::local_time::parse_month(month).unwrap();
            let changes = chiso_query::rankings::changes(projections, key).unwrap();
            let scopes: Vec<(&str, Vec<&str>)> = changes
                .iter()
                .filter(|p| p.event.metric.as_str() == "online_share")
                .map(|p| {
                    let mut ranked: Vec<&str> =
                        p.event.entries.iter().map(|e| e.agency.as_str()).collect();
                    ranked.sort_unstable();
                    (p.event.scope.as_str(), ranked)
                })
                .collect();
            assert_eq!(scopes, expected, "{month}");
        }
    }
}

/// Late events rewrite sealed files under a new name: the footers an engine parsed of a file
/// a checkpoint removed leave its cache with the file, rather than staying until the cache's
/// 50 MiB limit pushes them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footers_of_removed_sealed_files_leave_the_engines_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let tables = dir.path().join("tables");
    let projections = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
    let files = || file_names(&tables);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/late_events.ndjson");
    let (mut removed, mut most_cached) = (0, 0);
    for request in fixture_requests(&fixture) {
        let before = files();
        append(&store, vec![request]).await.unwrap();
        projections.catch_up(|_, _| {}).unwrap();
        projections.checkpoint().unwrap();
        removed += before.difference(&files()).count();
        // Every sealed file read, so its footer is parsed and cached.
        engine
            .collect("SELECT count(*), max(resolved_at), sum(paused_seconds) FROM dossiers")
            .await
            .unwrap();
        let (cached, bytes) = engine.cached_footers();
        for file in &cached {
            assert!(
                Path::new("/").join(file).exists(),
                "{file} was removed, its footer is still cached"
            );
        }
        most_cached = most_cached.max(cached.len());
        assert!(bytes > 0 || cached.is_empty());
    }
    assert!(removed > 0, "no sealed file was rewritten");
    assert!(most_cached > 0, "no footer was cached");
}

/// A month of three chunks in memory: a late resolution of a dossier in the middle one
/// rewrites that chunk's segment only, and the tables reopened from the segments answer as
/// before it was saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_rewrites_one_chunk_of_its_month() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let tables = dir.path().join("tables");
    let projections = Projections::open_with(&store, &tables, SealPolicy::NEVER).unwrap();
    let mut serial = 0u128;
    let mut request = |stream: &str, event_type: &str, data: serde_json::Value| {
        serial += 1;
        append_one(serial, stream, event_type, data)
    };
    let mut requests = one_service(&mut request);
    const DOSSIERS: usize = 40_000;
    for n in 0..DOSSIERS {
        let received = format!("2019-03-{:02}T08:00:00+07:00", 1 + n * 28 / DOSSIERS);
        requests.push(request(&format!("dossier-c{n}"), "DossierReceived", serde_json::json!({"agency": "26.STP", "service": "1.001", "channel": "online", "received_at": received, "due_at": "2019-04-05T17:00:00+07:00"})));
    }
    let late = request(
        "dossier-c20000",
        "DossierResolved",
        serde_json::json!({"at": "2019-05-02T09:00:00+07:00", "outcome": "approved"}),
    );
    while !requests.is_empty() {
        let rest = requests.split_off(requests.len().min(10_000));
        append(&store, requests).await.unwrap();
        requests = rest;
    }
    projections.catch_up(|_, _| {}).unwrap();
    projections.checkpoint().unwrap();
    let chunks = || -> std::collections::BTreeSet<String> {
        let names = file_names(&tables).into_iter();
        names
            .filter(|name| name.starts_with("dossiers_2019-03_"))
            .collect()
    };
    let saved = chunks();
    let numbers: Vec<&str> = saved.iter().map(|name| &name[17..22]).collect();
    assert_eq!(numbers, ["00000", "00001", "00002"], "{saved:?}");

    append(&store, vec![late]).await.unwrap();
    projections.catch_up(|_, _| {}).unwrap();
    projections.checkpoint().unwrap();
    let now = chunks();
    let written: Vec<&String> = now.difference(&saved).collect();
    let dropped: Vec<&String> = saved.difference(&now).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].starts_with("dossiers_2019-03_00001."),
        "{written:?}"
    );
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].starts_with("dossiers_2019-03_00001."));

    let counts = "SELECT count(*) AS n, count(resolved_at) AS resolved, \
        max(CASE WHEN id = 'c20000' THEN status END) AS status FROM dossiers";
    let answer = |projections: Projections| {
        let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
        async move { rows(&engine.collect(counts).await.unwrap()) }
    };
    let expected = vec![vec![
        DOSSIERS.to_string(),
        "1".to_owned(),
        "resolved".to_owned(),
    ]];
    assert_eq!(answer(projections.clone()).await, expected);
    drop(projections);
    let reopened = Projections::open_with(&store, &tables, SealPolicy::NEVER).unwrap();
    assert_eq!(reopened.position(), store.head());
    assert_eq!(answer(reopened).await, expected, "reopened from the chunks");
}

/// A sealed month keeps the dossiers that closed more than 45 days after its end in row
/// groups of their own, and its open ones (sealed at once here) after them; a report ending
/// after that reads only those, and answers as
/// the same tables in memory do. A lookup by an id no sealed file can hold scans no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_closers_of_a_sealed_month_are_apart_and_reports_read_them_alone() {
    use chiso_query::datafusion::parquet::arrow::arrow_reader::ArrowReaderMetadata;
    let dir = tempfile::tempdir().unwrap();
    let Twins {
        store,
        hot_store,
        tables,
        sealed,
        hot,
    } = Twins::open(dir.path());
    let mut serial = 0u128;
    let mut request = |stream: &str, event_type: &str, data: serde_json::Value| {
        serial += 1;
        append_one(serial, stream, event_type, data)
    };
    let mut requests = one_service(&mut request);
    // Received in March 2019: 30 resolved in March, 5 in late June (more than 45 days after
    // March ended), 2 never.
    for n in 0..37 {
        let id = format!("dossier-m{n:02}");
        let received = format!("2019-03-{:02}T08:00:00+07:00", 1 + n % 28);
        requests.push(request(&id, "DossierReceived", serde_json::json!({"agency": "26.STP", "service": "1.001", "channel": "online", "received_at": received, "due_at": "2019-04-15T17:00:00+07:00"})));
        let resolved = match n {
            0..30 => format!("2019-03-{:02}T09:00:00+07:00", 1 + n % 28),
            30..35 => "2019-06-20T09:00:00+07:00".to_owned(),
            _ => continue,
        };
        requests.push(request(
            &id,
            "DossierResolved",
            serde_json::json!({"at": resolved, "outcome": "approved"}),
        ));
    }
    for projections_store in [&store, &hot_store] {
        for request in &requests {
            append(projections_store, vec![request.clone()])
                .await
                .unwrap();
        }
    }
    sealed.catch_up(|_, _| {}).unwrap();
    hot.catch_up(|_, _| {}).unwrap();
    sealed.checkpoint().unwrap();

    let files: Vec<PathBuf> = std::fs::read_dir(&tables)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dossiers_2019-03.sealed.")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let footer =
        ArrowReaderMetadata::load(&std::fs::File::open(&files[0]).unwrap(), Default::default())
            .unwrap();
    let groups: Vec<i64> = footer
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(
        groups,
        [30, 5, 2],
        "the on-time rows, then the late ones, then the open ones"
    );

    let queries = [
        // Ends before the late rows' threshold (16 May): the close times still leave out
        // the on-time row group.
        "SELECT * FROM dossier_report(DATE '2019-03-01', DATE '2019-03-31')",
        // Ends after it: the late row group alone, as for any later end.
        "SELECT * FROM dossier_report(DATE '2019-04-01', DATE '2019-05-31')",
        "SELECT * FROM dossier_report(DATE '2019-06-01', DATE '2019-06-30')",
        "SELECT * FROM dossier_report(DATE '2019-07-01', DATE '2019-07-31') WHERE province = '26'",
        "SELECT id, status FROM dossiers WHERE id = 'm31'",
    ];
    let hot_engine = SqlEngine::new(&hot_store, &hot, SqlLimits::default()).unwrap();
    let engine = SqlEngine::new(&store, &sealed, SqlLimits::default()).unwrap();
    for sql in queries {
        let expected = rows(&hot_engine.collect(sql).await.unwrap());
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(rows(&engine.collect(sql).await.unwrap()), expected, "{sql}");
    }
    let may_06 = rows(&engine.collect(queries[1]).await.unwrap());
    assert_eq!(
        may_06[0][12], "7",
        "open at the end of May: the 5 late and the 2 open"
    );

    let plan = |sql: &str| {
        let engine = engine.clone();
        let sql = format!("EXPLAIN {sql}");
        async move { format!("{:?}", rows(&engine.collect(&sql).await.unwrap())) }
    };
    let parquet = "file_type=parquet";
    let present = plan("SELECT * FROM dossiers WHERE id = 'm31'").await;
    assert!(present.contains(parquet), "{present}");
    let absent = plan("SELECT * FROM dossiers WHERE id = 'zz-not-there'").await;
    assert!(!absent.contains(parquet), "{absent}");
}

/// What a statement could change: every table's rows, the catalog of tables, and files.
async fn everything(engine: &SqlEngine) -> Vec<Vec<Vec<String>>> {
    let mut all = Vec::new();
    for sql in [
        "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables ORDER BY 1, 2, 3",
        "SELECT * FROM agencies ORDER BY code",
        "SELECT * FROM services ORDER BY code",
        "SELECT * FROM dossiers ORDER BY id",
        "SELECT * FROM agency_daily ORDER BY day, agency",
        "SELECT name, value FROM information_schema.df_settings ORDER BY name",
    ] {
        let query = Query {
            sql: sql.to_owned(),
            ..Query::default()
        };
        let batches = engine.execute(query).await.unwrap().collect().await.unwrap();
        all.push(rows(&batches));
    }
    all
}

/// Statements meant to change something, with random tails, several in one request, and
/// odd spacing and case: every one is refused (`read_only` or `invalid_sql`), and afterwards
/// every table, the catalog, the settings and the disk are as they were.
#[test]
fn random_statements_never_change_anything() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written");
    let (engine, before) = runtime.block_on(async {
        let store = open_store(&dir.path().join("log"));
        let projections =
            Projections::open_with(&store, dir.path().join("tables"), SealPolicy::NEVER).unwrap();
        load_fixture(&store, &[&projections], &slt_dir().join("fixture.ndjson")).await;
        let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
        let before = everything(&engine).await;
        (engine, before)
    });
    let file = target.display().to_string();
    let verbs = vec![
        "INSERT INTO agencies VALUES ('x', 'x', 'province', NULL, '01')".to_owned(),
        "INSERT INTO dossiers SELECT * FROM dossiers".to_owned(),
        "DELETE FROM dossiers".to_owned(),
        "UPDATE agencies SET name = 'x'".to_owned(),
        "DROP TABLE dossiers".to_owned(),
        "DROP VIEW IF EXISTS agencies".to_owned(),
        "TRUNCATE agencies".to_owned(),
        "CREATE TABLE t AS SELECT * FROM agencies".to_owned(),
        "CREATE OR REPLACE VIEW agencies AS SELECT 1".to_owned(),
        "CREATE SCHEMA s".to_owned(),
        format!("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{file}.csv'"),
        format!("COPY agencies TO '{file}.parquet'"),
        format!("COPY (SELECT * FROM dossiers) TO '{file}.csv' STORED AS CSV"),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "SET TIME ZONE 'UTC'".to_owned(),
        "PREPARE p AS SELECT 1".to_owned(),
        "EXPLAIN ANALYZE INSERT INTO agencies SELECT * FROM agencies".to_owned(),
        "CREATE FUNCTION f() RETURNS INT RETURN 1".to_owned(),
        "DEALLOCATE p".to_owned(),
    ];
    let statement = (
        proptest::sample::select(verbs),
        proptest::sample::select(vec![
            "",
            " ",
            ";",
            "; SELECT 1",
            " -- x",
            "\n",
            "; DROP TABLE services",
        ]),
        proptest::sample::select(vec!["", "SELECT 1; ", "  ", "/* c */ "]),
        any::<bool>(),
    )
        .prop_map(|(verb, tail, head, lower)| {
            let statement = format!("{head}{verb}{tail}");
            match lower {
                true => statement.to_lowercase(),
                false => statement,
            }
        });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(192));
    runner
        .run(&statement, |sql| {
            let answer = runtime.block_on(async {
                let query = Query {
                    sql: sql.clone(),
                    ..Query::default()
                };
                match engine.execute(query).await {
                    Ok(stream) => stream.collect().await.map(|_| ()),
                    Err(error) => Err(error),
                }
            });
            match answer {
                Ok(()) => prop_assert!(false, "{sql:?} was run"),
                Err(error) => {
                    let code = error.code();
                    prop_assert!(
                        code == "read_only" || code == "invalid_sql",
                        "{sql:?}: {code} {error}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let after = runtime.block_on(everything(&engine));
    assert_eq!(after, before);
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("written"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// A query nobody reads stops at its deadline: the task that produces it lets go of its
/// memory (here a sort's) though nobody reads, and the reader gets what was in flight, then
/// the timeout (not the end of a shorter answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_query_stops_at_its_deadline() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let projections =
        Projections::open_with(&store, dir.path().join("tables"), SealPolicy::NEVER).unwrap();
    let engine = SqlEngine::new(&store, &projections, SqlLimits::default()).unwrap();
    let query = Query {
        sql: "SELECT value FROM generate_series(1, 1000000) ORDER BY value DESC".into(),
        timeout: Some(Duration::from_secs(6)),
        ..Query::default()
    };
    let started = tokio::time::Instant::now();
    let mut stream = engine.execute(query).await.unwrap();
    // The sort holds its rows while it waits for the reader.
    while engine.memory_reserved() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the sort never held memory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep_until(started + Duration::from_millis(6500)).await;
    assert_eq!(
        engine.memory_reserved(),
        0,
        "the unread query let go of its memory"
    );
    let mut batches = 0;
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => batches += 1,
            Some(Err(error)) => break error,
            None => panic!("the answer ended short"),
        }
    };
    assert!(batches <= 2, "{batches} batches after the deadline");
    assert_eq!(error.code(), "query_timeout", "{error}");
}

/// Calendar announcements change `calendar` and `dossiers.working_days_late` as soon as they
/// are folded — sealed months included, nothing rewritten — and stay after a restart and a
/// rebuild from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_announcements_apply_at_once_and_survive_restart_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let tables = dir.path().join("tables");
    let projections = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    load_fixture(&store, &[&projections], &slt_dir().join("fixture.ndjson")).await;
    assert!(projections.dossier_storage().sealed_months >= 2);
    async fn answers(store: &Log, projections: &Projections) -> Vec<Vec<String>> {
        let engine = SqlEngine::new(store, projections, SqlLimits::default()).unwrap();
        let sql = "SELECT id, CAST(working_days_late AS VARCHAR) FROM dossiers WHERE timeliness = 'late' \
                   UNION ALL SELECT CAST(date AS VARCHAR), concat(is_working_day, ' ', holiday, ' ', source) \
                   FROM calendar WHERE date BETWEEN DATE '2019-01-19' AND DATE '2019-02-11' \
                   AND source IS NOT NULL ORDER BY 1";
        rows(&engine.collect(sql).await.unwrap())
    }
    let before = answers(&store, &projections).await;
    let late = |rows: &[Vec<String>]| -> Vec<String> {
        rows.iter()
            .filter(|r| r[0].starts_with('d'))
            .map(|r| r.join(" "))
            .collect()
    };
    assert_eq!(late(&before), ["d3 0", "d8 11"]);

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/calendar.ndjson");
    load_fixture(&store, &[&projections], &fixture).await;
    let after = answers(&store, &projections).await;
    // d8, due Sunday 20 January and resolved Monday 11 February: Friday 25 January swapped
    // for Saturday 19 January, 30 January declared a holiday, 11 February added to Tết.
    assert_eq!(late(&after), ["d3 0", "d8 8"]);
    let days: Vec<String> = after
        .iter()
        .filter(|r| r[0].starts_with('2'))
        .map(|r| r.join(" "))
        .collect();
    assert_eq!(days.len(), 9, "{days:#?}");
    assert_eq!(days[0], "2019-01-19 true  Công văn (thử) 1/2019");
    assert_eq!(
        days[1],
        "2019-01-25 false Nghỉ bù, làm bù 19/01/2019 Công văn (thử) 1/2019"
    );
    assert_eq!(
        days[2],
        "2019-01-30 false Ngày Văn hóa (thử) Nghị quyết (thử) 2/2019"
    );
    assert_eq!(
        days[8],
        "2019-02-11 false Tết Nguyên đán Thông báo (thử) 3/2019"
    );

    projections.checkpoint().unwrap();
    drop(projections);
    let reopened = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    assert_eq!(answers(&store, &reopened).await, after, "reopened");
    reopened.clear().unwrap();
    let built_in: Vec<_> = before
        .iter()
        .filter(|r| r[0].starts_with('2'))
        .cloned()
        .collect();
    assert_eq!(
        answers(&store, &reopened).await,
        built_in,
        "cleared: the built-in calendar"
    );
    reopened.catch_up(|_, _| {}).unwrap();
    assert_eq!(answers(&store, &reopened).await, after, "rebuilt");
}

/// `DossierReceived` in version 1 (no `$version`: every event written before versions) and
/// version 2 fold side by side, hot and sealed, and after a restart and a rebuild: version 1
/// upcast with `procedure_code` and `applicant` null. The stored bytes stay as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_versions_of_a_receipt_fold_and_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("log"));
    let tables = dir.path().join("tables");
    let projections = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    load_fixture(&store, &[&projections], &slt_dir().join("fixture.ndjson")).await;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/versions.ndjson");
    load_fixture(&store, &[&projections], &fixture).await;
    async fn answers(store: &Log, projections: &Projections) -> Vec<Vec<String>> {
        let engine = SqlEngine::new(store, projections, SqlLimits::default()).unwrap();
        let sql = "SELECT d.id, d.procedure_code, d.applicant, d.status, e.metadata \
                   FROM dossiers d JOIN events e ON e.stream = 'dossier-' || d.id AND e.type = 'DossierReceived' \
                   WHERE d.id IN ('d1', 'v1', 'v2') ORDER BY d.id";
        rows(&engine.collect(sql).await.unwrap())
    }
    let expected = vec![
        ["d1", "NULL", "NULL", "resolved", "{}"],
        ["v1", "NULL", "NULL", "resolved", "{}"],
        [
            "v2",
            "1.011442.000.00.00.H38",
            "business",
            "resolved",
            r#"{"$version":2}"#,
        ],
    ]
    .into_iter()
    .map(|row| row.map(String::from).to_vec())
    .collect::<Vec<_>>();
    assert_eq!(answers(&store, &projections).await, expected);
    assert!(projections.dossier_storage().sealed_months >= 3);
    projections.checkpoint().unwrap();
    drop(projections);
    let reopened = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    assert_eq!(answers(&store, &reopened).await, expected, "reopened");
    reopened.clear().unwrap();
    reopened.catch_up(|_, _| {}).unwrap();
    assert_eq!(answers(&store, &reopened).await, expected, "rebuilt");
}

/// A read scope sees its agency and every agency that is or was below it — including those
/// merged into it — in every table it narrows, hot and sealed alike, and nothing more, however
/// the SQL around the tables is written: compared with an unscoped answer filtered by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_scope_sees_its_subtree_in_every_table_and_nothing_more() {
    use chiso_query::{Caller, ReadScope};
    let dir = tempfile::tempdir().unwrap();
    let twins = Twins::loaded(dir.path(), "reorganisation.ndjson").await;
    let scopes: [(&str, &[&str]); 3] = [
        // Liên Bảo moved to Phú Thọ in July: it was below Vĩnh Yên, so Vĩnh Yên sees it.
        ("26.243", &["26.243", "26.243.01", "26.243.02"]),
        // Tích Sơn merged into the new commune: it sees Tích Sơn's history too.
        ("25.900", &["25.900", "26.243.01"]),
        ("25.001", &["25.001", "25.001.01"]),
    ];
    for (store, projections) in [
        (&twins.store, &twins.sealed),
        (&twins.hot_store, &twins.hot),
    ] {
        let engine = SqlEngine::new(store, projections, SqlLimits::default()).unwrap();
        let run = |sql: String, scope: ReadScope| {
            let engine = engine.clone();
            async move {
                let caller = Caller {
                    scope,
                    ..Caller::default()
                };
                let query = Query {
                    sql,
                    caller,
                    ..Query::default()
                };
                match engine.execute(query).await {
                    Ok(answer) => answer.collect().await.map(|batches| rows(&batches)),
                    Err(error) => Err(error),
                }
            }
        };
        for (root, visible) in scopes {
            let scope = ReadScope::Agencies(vec![root.to_owned()]);
            let within = |agency: &str| visible.contains(&agency);
            // Every narrowed table, row for row, against the unscoped rows of those agencies.
            for (table, order) in [
                ("dossiers", "id"),
                ("agency_daily", "day, agency"),
                ("services", "code"),
                ("service_levels", "code, valid_from"),
                (
                    "dossier_report(DATE '2025-01-01', DATE '2025-12-31')",
                    "agency",
                ),
            ] {
                let sql = format!("SELECT agency AS owner, * FROM {table} ORDER BY {order}");
                let all = run(sql.clone(), ReadScope::All).await.unwrap();
                let expected: Vec<_> = all.into_iter().filter(|row| within(&row[0])).collect();
                let seen = run(sql, scope.clone()).await.unwrap();
                assert_eq!(seen, expected, "{root}: {table}");
            }
            // Ways around the tables give nothing more.
            let mine: Vec<String> = {
                let sql = "SELECT agency FROM dossiers ORDER BY agency".to_owned();
                let all = run(sql, ReadScope::All).await.unwrap();
                all.into_iter()
                    .map(|row| row[0].clone())
                    .filter(|a| within(a))
                    .collect()
            };
            let probes = [
                // Aggregates, which statistics could otherwise answer.
                ("SELECT count(*) FROM dossiers", vec![vec![mine.len().to_string()]]),
                // A join with a published table, and a subquery naming another agency.
                (
                    "SELECT count(*) FROM agencies a JOIN dossiers d ON d.agency = a.code",
                    vec![vec![mine.len().to_string()]],
                ),
                (
                    "SELECT (SELECT count(*) FROM dossiers WHERE agency NOT IN ('26.243', '26.243.01', '26.243.02', '25.900', '25.001', '25.001.01'))",
                    vec![vec!["0".to_owned()]],
                ),
            ];
            for (sql, expected) in probes {
                let seen = run(sql.to_owned(), scope.clone()).await.unwrap();
                assert_eq!(seen, expected, "{root}: {sql}");
            }
            let union = "SELECT agency FROM dossiers UNION SELECT agency FROM agency_daily \
                         UNION SELECT agency FROM services UNION SELECT agency FROM \
                         dossier_report(DATE '2019-01-01', DATE '2025-12-31')";
            for row in run(union.to_owned(), scope.clone()).await.unwrap() {
                assert!(within(&row[0]), "{root}: {} through a UNION", row[0]);
            }
            // The log: the published categories whole, a dossier's or service's events when
            // its agency is in the scope, never chiso's own token records.
            let sql = "SELECT stream, type, position FROM events ORDER BY position".to_owned();
            let all = run(sql.clone(), ReadScope::All).await.unwrap();
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reorganisation.ndjson");
            let mut owners = std::collections::HashMap::new();
            for line in std::fs::read_to_string(fixture).unwrap().lines() {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(agency) = event["data"]["agency"].as_str() {
                    let stream = event["stream"].as_str().unwrap().to_owned();
                    owners.entry(stream).or_insert_with(|| agency.to_owned());
                }
            }
            let expected: Vec<_> = all
                .into_iter()
                .filter(|row| match row[0].split_once('-').map(|(c, _)| c) {
                    Some("agency" | "ictindex" | "ranking" | "calendar") => true,
                    Some("dossier" | "service") => within(&owners[&row[0]]),
                    _ => false,
                })
                .collect();
            assert!(expected.iter().any(|row| row[0].starts_with("dossier-")));
            assert_eq!(
                run(sql, scope.clone()).await.unwrap(),
                expected,
                "{root}: events"
            );
            let limited = "SELECT stream FROM events WHERE stream LIKE 'dossier-%' LIMIT 1";
            let first = run(limited.to_owned(), scope.clone()).await.unwrap();
            assert!(within(&owners[&first[0][0]]), "{root}: events with a LIMIT");
        }
        // Published tables stay whole.
        let published = "SELECT count(*) FROM agencies";
        let scoped = ReadScope::Agencies(vec!["25.001".into()]);
        assert_eq!(
            run(published.into(), scoped).await.unwrap(),
            run(published.into(), ReadScope::All).await.unwrap()
        );
    }
}

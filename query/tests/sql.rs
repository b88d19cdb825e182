//! SQL semantics pinned in sqllogictest files (`tests/slt/*.slt`), run against the tables
//! folded from `tests/slt/fixture.ndjson` (appended through the catalog and write model).

use chiso_ingest::IngestModel;
use chiso_query::datafusion::arrow::array::RecordBatch;
use chiso_query::datafusion::arrow::datatypes::DataType;
use chiso_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use chiso_query::{DossierStorage, Projections, Query, SealPolicy, SqlEngine, SqlLimits};
use chiso_store::{
    AppendRequest, EventStore, ExpectedRevision, ProposedEvent, StoreMetrics, StreamName,
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
async fn load_fixture(store: &EventStore, projections: &[&Projections], fixture: &Path) {
    let text = std::fs::read_to_string(fixture).unwrap();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let request = AppendRequest {
            stream: StreamName::new(event["stream"].as_str().unwrap()).unwrap(),
            expected: ExpectedRevision::Any,
            events: vec![ProposedEvent {
                id: event["id"].as_str().unwrap().parse().unwrap(),
                event_type: event["type"].as_str().unwrap().to_owned(),
                data: event["data"].to_string(),
                metadata: "{}".into(),
                decoded: None,
            }],
            principal: None,
        };
        if let Err(error) = store.append(request).await {
            panic!("fixture line {}: {error}", number + 1);
        }
        for projections in projections {
            projections.catch_up(|_, _| {}).unwrap();
        }
    }
}

/// A log at `path` with the catalog and the write model, as the server opens it.
fn open_store(path: &Path) -> EventStore {
    EventStore::open_with(path, StoreMetrics::default(), IngestModel::new()).unwrap()
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
        assert!(
            stored.recalled >= 2,
            "late events found sealed rows: {stored:?}"
        );
    })
    .await;
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
    // Tables keep their manifest in their log's store: one store for the sealed tables, one
    // for the hot ones, the same events appended to each.
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| open_store(&dir.path().join(name));
    let (store, hot_store) = (open("log"), open("hot-log"));
    let tables = dir.path().join("tables");
    let sealed = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    let hot =
        Projections::open_with(&hot_store, dir.path().join("hot"), SealPolicy::NEVER).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/late_events.ndjson");
    load_fixture(&store, &[&sealed], &fixture).await;
    load_fixture(&hot_store, &[&hot], &fixture).await;
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
    assert_eq!(
        late_answers(&store, &sealed).await,
        expected,
        "sealed as it went"
    );

    sealed.checkpoint().unwrap();
    drop(sealed);
    let reopened = Projections::open_with(&store, &tables, SealPolicy::AT_ONCE).unwrap();
    assert_eq!(reopened.position(), store.head());
    assert_eq!(late_answers(&store, &reopened).await, expected, "reopened");

    // As `chiso rebuild` does: every table dropped, the log replayed.
    reopened.clear().unwrap();
    reopened.catch_up(|_, _| {}).unwrap();
    assert_eq!(late_answers(&store, &reopened).await, expected, "rebuilt");
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
        AppendRequest {
            stream: StreamName::new(stream).unwrap(),
            expected: ExpectedRevision::Any,
            events: vec![ProposedEvent {
                id: uuid::Uuid::from_u128(serial),
                event_type: event_type.to_owned(),
                data: data.to_string(),
                metadata: "{}".into(),
                decoded: None,
            }],
            principal: None,
        }
    };
    let mut requests = vec![
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
    ];
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
        store.append_all(requests).await.unwrap();
        requests = rest;
    }
    projections.catch_up(|_, _| {}).unwrap();
    projections.checkpoint().unwrap();
    let chunks = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(&tables)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("dossiers_2019-03_"))
            .collect()
    };
    let saved = chunks();
    let numbers: Vec<&str> = saved.iter().map(|name| &name[17..22]).collect();
    assert_eq!(numbers, ["00000", "00001", "00002"], "{saved:?}");

    store.append_all(vec![late]).await.unwrap();
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

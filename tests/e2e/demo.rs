//! The demo history through the binary: `chiso demo` is deterministic, and `chiso serve --demo`
//! loads it so that every figure of the seeds reads back through `/v1/sql`.

use crate::support::Server;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn demo(seed: &str, output: &std::path::Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["demo", "--seed", seed, "--output"])
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn one_seed_gives_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    demo("7", &a);
    demo("7", &b);
    demo("8", &c);
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert!(a.len() > 100_000_000, "the history is {} bytes", a.len());
    assert!(a == b, "two runs with one seed differ");
    assert!(a != c, "another seed gives the same history");
}

async fn sql(url: &str, sql: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sql"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer = response.json().await.unwrap();
    assert!(status.is_success(), "{sql}: {answer}");
    answer
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("{url}/ready")).await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the demo history did not load");
}

#[tokio::test]
async fn the_demo_history_holds_the_figures_of_the_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--demo"]).await;
    wait_ready(&server.url).await;
    let url = &server.url;

    // 2019, counted as in ARCHITECTURE.md §5: received in the year, resolved in the year.
    let totals = sql(url, "
        SELECT CASE WHEN a.kind = 'center' THEN 'center' ELSE 'one_stop' END AS desk,
               count(*) FILTER (WHERE d.received_at >= '2019-01-01' AND d.received_at < '2020-01-01') AS received,
               count(*) FILTER (WHERE d.resolved_at >= '2019-01-01' AND d.resolved_at < '2020-01-01') AS resolved,
               count(*) FILTER (WHERE d.resolved_at >= '2019-01-01' AND d.resolved_at < '2020-01-01' AND d.timeliness <> 'late') AS in_time
        FROM dossiers d JOIN agencies a ON a.code = d.agency
        WHERE a.province = '26' AND a.kind IN ('department', 'district', 'commune', 'center')
        GROUP BY 1 ORDER BY 1").await;
    assert_eq!(
        totals,
        json!([
            {"desk": "center", "received": 36451, "resolved": 34664, "in_time": 34030},
            {"desk": "one_stop", "received": 314984, "resolved": 252856, "in_time": 237179},
        ])
    );
    // Receipts before July 2019 are version 1 (upcast: no procedure code, no applicant), the
    // later ones version 2, and the procedure code of a version 2 receipt is its service's.
    let versions = sql(url, "
        SELECT count(*) FILTER (WHERE procedure_code IS NULL) = count(*) FILTER (WHERE received_at < '2019-07-01') AS by_date,
               count(*) FILTER (WHERE procedure_code IS NOT NULL AND procedure_code <> service) AS other_code,
               count(*) FILTER (WHERE applicant = 'business') > 0 AND count(*) FILTER (WHERE applicant = 'citizen') > 0 AS both_applicants
        FROM dossiers").await;
    assert_eq!(
        versions,
        json!([{"by_date": true, "other_code": 0, "both_applicants": true}])
    );
    let rates = sql(url, "
        SELECT round(100.0 * sum(resolved_early + resolved_on_time) / sum(resolved_total), 2) AS on_time,
               round(100.0 * sum(resolved_total) / sum(received_online + received_direct_postal), 2) AS resolved_share,
               sum(received_total) - sum(resolved_total + withdrawn + open_total) AS identity
        FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31')
        WHERE kind IN ('department', 'district', 'commune') AND province = '26'").await;
    assert_eq!(
        rates,
        json!([{"on_time": 93.8, "resolved_share": 80.28, "identity": 0}])
    );
    let center = sql(url, "
        SELECT round(100.0 * sum(resolved_early + resolved_on_time) / sum(resolved_total), 2) AS on_time
        FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31') WHERE kind = 'center' AND province = '26'").await;
    assert_eq!(center, json!([{"on_time": 98.17}]));

    // The report (sums of agency_daily and the dossiers open at the end) agrees with the
    // dossiers counted one by one, over periods whose months are hot, sealed, or sealed with
    // dossiers that closed after the period; a filter on the province narrows it exactly.
    for (from, to) in [
        ("2012-02-29", "2012-02-29"),
        ("2015-01-01", "2015-12-31"),
        ("2017-03-08", "2017-05-20"),
        ("2019-11-15", "2019-12-31"),
        ("2008-01-01", "2030-12-31"),
    ] {
        let (start, end) = (
            format!("'{from}T00:00:00+07:00'"),
            format!("arrow_cast('{to}T00:00:00+07:00', 'Timestamp(Microsecond, Some(\"+07:00\"))') + INTERVAL '1 day'"),
        );
        let counted = sql(url, &format!("
            SELECT agency,
              count(*) FILTER (WHERE received_at < {start}) AS carried_over,
              count(*) FILTER (WHERE received_at >= {start} AND channel = 'online') AS received_online,
              count(*) FILTER (WHERE received_at >= {start} AND channel <> 'online') AS received_direct_postal,
              count(*) AS received_total,
              count(*) FILTER (WHERE resolved_at >= {start} AND resolved_at < {end} AND timeliness = 'early') AS resolved_early,
              count(*) FILTER (WHERE resolved_at >= {start} AND resolved_at < {end} AND timeliness = 'on_time') AS resolved_on_time,
              count(*) FILTER (WHERE resolved_at >= {start} AND resolved_at < {end} AND timeliness = 'late') AS resolved_late,
              count(*) FILTER (WHERE resolved_at >= {start} AND resolved_at < {end}) AS resolved_total,
              count(*) FILTER (WHERE withdrawn_at >= {start} AND withdrawn_at < {end}) AS withdrawn,
              count(*) FILTER (WHERE coalesce(resolved_at, withdrawn_at, {end}) >= {end}) AS open_total
            FROM dossiers
            WHERE received_at < {end} AND coalesce(resolved_at, withdrawn_at, {end}) >= {start}
            GROUP BY agency ORDER BY agency")).await;
        let report = format!("dossier_report(DATE '{from}', DATE '{to}')");
        let reported = sql(
            url,
            &format!(
                "
            SELECT agency, carried_over, received_online, received_direct_postal, received_total,
              resolved_early, resolved_on_time, resolved_late, resolved_total, withdrawn, open_total
            FROM {report} ORDER BY agency"
            ),
        )
        .await;
        assert!(
            counted.as_array().unwrap().len() > 10,
            "{from}..{to}: {counted}"
        );
        assert_eq!(reported, counted, "{from}..{to}");
        let narrowed = sql(
            url,
            &format!("SELECT * FROM {report} WHERE province = '26' ORDER BY agency"),
        )
        .await;
        let filtered = sql(
            url,
            &format!("SELECT * FROM {report} WHERE province || '' = '26' ORDER BY agency"),
        )
        .await;
        assert!(!narrowed.as_array().unwrap().is_empty(), "{from}..{to}");
        assert_eq!(narrowed, filtered, "{from}..{to}: province pushed down");
    }

    // Services by level at the end of 2019.
    let levels = sql(url, "
        SELECT l.level, count(*) AS services FROM service_levels l JOIN agencies a ON a.code = l.agency
        WHERE a.province = '26' AND l.valid_from < '2020-01-01' AND (l.valid_to IS NULL OR l.valid_to >= '2020-01-01')
        GROUP BY l.level ORDER BY l.level DESC").await;
    assert_eq!(
        levels,
        json!([
            {"level": 4, "services": 137}, {"level": 3, "services": 299},
            {"level": 2, "services": 1198}, {"level": 1, "services": 165},
        ])
    );

    // ICT Index: Vĩnh Phúc's real ranks, the other real facts, the rest marked synthetic.
    let ranks = sql(
        url,
        "SELECT array_agg(rank ORDER BY year) AS ranks FROM ict_index WHERE province = '26'",
    )
    .await;
    assert_eq!(
        ranks,
        json!([{"ranks": [9, 15, 31, 27, 23, 26, 24, 18, 18, 21]}])
    );
    let facts = sql(url, "
        SELECT count(*) FILTER (WHERE province = '48' AND rank = 1) AS da_nang_first,
               count(*) FILTER (WHERE year = 2019 AND ((province = '46' AND rank = 2 AND score = 0.8046) OR (province = '22' AND rank = 3 AND score = 0.735) OR (province = '48' AND score = 0.8654))) AS facts_2019,
               count(*) FILTER (WHERE year IN (2017, 2018) AND ((province = '79' AND rank = 2) OR (province = '01' AND rank = 3))) AS facts_2017_2018,
               count(DISTINCT year * 100 + rank) AS distinct_ranks, count(*) AS rows
        FROM ict_index").await;
    assert_eq!(
        facts,
        json!([{"da_nang_first": 10, "facts_2019": 3, "facts_2017_2018": 4, "distinct_ranks": 630, "rows": 630}])
    );
    let synthetic = sql(
        url,
        "
        SELECT strpos(metadata, '\"synthetic\":true') > 0 AS synthetic, count(*) AS n FROM events
        WHERE type = 'IctIndexPublished' GROUP BY 1 ORDER BY 1",
    )
    .await;
    // Real: Vĩnh Phúc ×10, Đà Nẵng ×10, Huế and Quảng Ninh in 2019, TP.HCM and Hà Nội in 2017–2018.
    assert_eq!(
        synthetic,
        json!([{"synthetic": false, "n": 26}, {"synthetic": true, "n": 604}])
    );
    // Made-up ranks drift as real ones do: a few places a year, not a new draw each year.
    let moves = sql(
        url,
        "
        SELECT median(abs(b.rank - a.rank)) AS median_move, max(abs(b.rank - a.rank)) AS largest_move
        FROM ict_index a JOIN ict_index b ON b.province = a.province AND b.year = a.year + 1
        WHERE a.province NOT IN ('26', '48', '46', '22', '79', '01')",
    )
    .await;
    let (median, largest) = (
        moves[0]["median_move"].as_f64(),
        moves[0]["largest_move"].as_i64(),
    );
    assert!(
        median.is_some_and(|m| m <= 3.0) && largest.is_some_and(|m| m <= 15),
        "synthetic ICT ranks jump: {moves}"
    );

    // The scheduler published the rankings of all 120 months at start.
    let deadline = Instant::now() + Duration::from_secs(900);
    let months = "SELECT count(DISTINCT month) AS months, min(month) AS first, max(month) AS last FROM rankings";
    while sql(url, months).await != json!([{"months": 120, "first": "2010-01", "last": "2019-12"}])
    {
        assert!(
            Instant::now() < deadline,
            "the monthly rankings were not published"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let districts = sql(
        url,
        "
        SELECT count(*) AS ranked, min(rank) AS best, max(value) <= 100 AS bounded FROM rankings
        WHERE month = '2019-12' AND scope = 'province:26:district' AND metric = 'scorecard'",
    )
    .await;
    assert_eq!(
        districts,
        json!([{"ranked": 9, "best": 1, "bounded": true}])
    );

    // The agencies of Vĩnh Phúc.
    let agencies = sql(url, "SELECT kind, count(*) AS n FROM agencies WHERE province = '26' GROUP BY kind ORDER BY kind").await;
    assert_eq!(
        agencies,
        json!([
            {"kind": "center", "n": 1}, {"kind": "commune", "n": 136}, {"kind": "department", "n": 20},
            {"kind": "district", "n": 9}, {"kind": "province", "n": 1},
        ])
    );
}

/// `--demo-reorganise-2025` (a short history: 2025 alone, a hundredth of the volume): June
/// ranks Vĩnh Phúc, Phú Thọ and Hòa Bình, August only Phú Thọ; `agencies_at` shows the old
/// hierarchy on 30 June and the new one on 1 July; every dossier after the merger is received
/// by an agency that exists; and history rolled up to today's units keeps every dossier.
#[tokio::test]
async fn the_reorganised_demo_ranks_each_month_its_own_units() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--demo",
        "--demo-reorganise-2025",
        "--demo-from-year",
        "2025",
        "--demo-scale",
        "0.01",
    ];
    let server = Server::start_with_args(dir.path(), &args).await;
    wait_ready(&server.url).await;
    let url = &server.url;
    let http = reqwest::Client::new();
    for month in ["2025-06", "2025-08"] {
        let response = http
            .post(format!("{url}/v1/rankings/{month}/publish"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{month}");
    }
    let head = sql(url, "SELECT max(position) AS p FROM events").await[0]["p"].clone();
    let caught_up = json!({"sql": "SELECT 1", "min_position": head});
    let response = http
        .post(format!("{url}/v1/sql"))
        .json(&caught_up)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let national = sql(url, "
        SELECT month, string_agg(agency, ',' ORDER BY agency) AS provinces FROM rankings
        WHERE scope = 'national:province' AND metric = 'online_share' AND month IN ('2025-06', '2025-08')
        GROUP BY month ORDER BY month").await;
    assert_eq!(
        national,
        json!([
            {"month": "2025-06", "provinces": "17,25,26"},
            {"month": "2025-08", "provinces": "25"},
        ])
    );
    let hierarchy = sql(url, "
        SELECT 'before' AS day, kind, count(*) AS n, string_agg(DISTINCT province, ',' ORDER BY province) AS provinces
        FROM agencies_at(DATE '2025-06-30') WHERE kind IN ('district', 'commune') AND province IN ('17', '25', '26') GROUP BY kind
        UNION ALL
        SELECT 'after', kind, count(*), string_agg(DISTINCT province, ',' ORDER BY province)
        FROM agencies_at(DATE '2025-07-01') WHERE kind IN ('district', 'commune') AND province IN ('17', '25', '26') GROUP BY kind
        ORDER BY 1 DESC, 2").await;
    // Vĩnh Phúc's 9 districts and 136 communes, 6 × 8 synthetic ones in each of the others;
    // after: no district, the communes two by two (an odd one out moved as it is).
    let communes_before: u64 = 136 + 2 * 48;
    let rows = hierarchy.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{hierarchy}");
    assert_eq!(
        rows[0],
        json!({"day": "before", "kind": "commune", "n": communes_before, "provinces": "17,25,26"})
    );
    assert_eq!(
        rows[1],
        json!({"day": "before", "kind": "district", "n": 21, "provinces": "17,25,26"})
    );
    assert_eq!(rows[2]["kind"], "commune");
    assert_eq!(rows[2]["provinces"], "25");
    let after = rows[2]["n"].as_u64().unwrap();
    assert!(
        after > communes_before / 2 && after < communes_before * 2 / 3,
        "{hierarchy}"
    );
    let stray = sql(
        url,
        "
        SELECT count(*) AS n FROM dossiers d JOIN agencies a ON a.code = d.agency
        WHERE d.received_at >= '2025-07-01' AND a.valid_to IS NOT NULL",
    )
    .await;
    assert_eq!(stray, json!([{"n": 0}]));
    let rolled = sql(url, "
        SELECT (SELECT sum(received) FROM agency_daily) AS total,
               (SELECT sum(n) FROM (SELECT current_agency(province) AS unit, sum(received) AS n
                                    FROM agency_daily GROUP BY 1)) AS rolled,
               (SELECT string_agg(DISTINCT current_agency(province), ',') FROM agency_daily) AS units").await;
    assert_eq!(rolled[0]["total"], rolled[0]["rolled"], "{rolled}");
    assert_eq!(rolled[0]["units"], "25", "{rolled}");
}

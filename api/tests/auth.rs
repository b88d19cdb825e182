//! The token matrix: every scope against every endpoint, revocation, and tokens that survive
//! a restart.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chiso_api::{router, AppState, Auth, Limits};
use chiso_ingest::{IngestModel, Ingestor};
use chiso_store::{EventStore, StoreMetrics};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

const ADMIN: &str = "admin-token-0123456789";
const DEPT: &str = "000.00.31.H56";

fn open(dir: &std::path::Path) -> (Router, EventStore) {
    let store = EventStore::open_with(dir, StoreMetrics::default(), IngestModel::new()).unwrap();
    let auth = Auth::enabled(ADMIN, &store).unwrap();
    let state = AppState::new(Ingestor::new(store.clone()), Limits::default()).with_auth(auth);
    (router(state), store.store().clone())
}

/// With the SQL engine and tables following the log (which hold the store until the runtime
/// ends, so not for restarts).
fn open_with_sql(dir: &std::path::Path) -> (Router, EventStore) {
    let store = EventStore::open_with(dir, StoreMetrics::default(), IngestModel::new()).unwrap();
    let auth = Auth::enabled(ADMIN, &store).unwrap();
    let projections = chiso_query::Projections::open(&store, dir.join("tables")).unwrap();
    let engine = chiso_query::SqlEngine::new(&store, &projections, Default::default()).unwrap();
    let state = AppState::new(Ingestor::new(store.clone()), Limits::default())
        .with_auth(auth)
        .with_sql(engine);
    projections.follow(state.shutdown.clone());
    (router(state), store.store().clone())
}

/// Where the token matrix's `n`th request would put a backup.
fn backup_dir(n: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("chiso-auth-backup-{}-{n}", std::process::id()))
}

async fn call(
    router: &Router,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: String,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert!(response.headers().contains_key("www-authenticate"));
    }
    if response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream")
    {
        return (status, Value::Null);
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn new_token(router: &Router, scopes: &[&str]) -> String {
    let created = created_token(router, json!({ "scopes": scopes })).await;
    created["token"].as_str().unwrap().to_owned()
}

/// The answer of `POST /v1/tokens` with `request`, made by the admin (201).
async fn created_token(router: &Router, request: Value) -> Value {
    let body = request.to_string();
    let (status, answer) = call(router, Some(ADMIN), "POST", "/v1/tokens", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

fn received(agency: &str) -> Value {
    json!({"id": Uuid::new_v4(), "type": "DossierReceived", "data": {"agency": agency, "service": "1.001", "channel": "online",
        "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}})
}

async fn reference(router: &Router) {
    let events = [
        (
            "agency-26",
            json!({"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": "26", "name": "Tỉnh Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}}),
        ),
        (
            &format!("agency-{DEPT}") as &str,
            json!({"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": DEPT, "name": "Sở Xây dựng", "kind": "department", "parent": "26", "province": "26"}}),
        ),
        (
            "agency-99",
            json!({"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": "99", "name": "Other", "kind": "province", "parent": null, "province": "99"}}),
        ),
        (
            "service-1.001",
            json!({"id": Uuid::new_v4(), "type": "ServiceLaunched", "data": {"code": "1.001", "agency": DEPT, "name": "Cấp phép", "field": "Xây dựng", "level": 3, "at": "2019-01-02T08:00:00+07:00"}}),
        ),
        ("dossier-existing", received(DEPT)),
    ];
    for (stream, event) in events {
        let (status, answer) = call(
            router,
            Some(ADMIN),
            "POST",
            &format!("/v1/streams/{stream}"),
            json!({"events": [event]}).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

#[tokio::test]
async fn every_scope_against_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open_with_sql(dir.path());
    reference(&router).await;
    let query = new_token(&router, &["query"]).await;
    let province = new_token(&router, &["append:26"]).await;
    let dept = new_token(&router, &["append:000.00.31.H56"]).await;
    let other = new_token(&router, &["append:99"]).await;
    // Every row below sees the tables caught up with the log.
    while call(&router, None, "GET", "/ready", String::new()).await.0 != StatusCode::OK {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let principals: [(&str, Option<&str>); 7] = [
        ("none", None),
        ("unknown", Some("chiso_0000")),
        ("query", Some(&query)),
        ("append:26", Some(&province)),
        ("append:dept", Some(&dept)),
        ("append:99", Some(&other)),
        ("admin", Some(ADMIN)),
    ];
    use StatusCode as S;
    const OK: S = S::OK;
    const NO: S = S::UNAUTHORIZED;
    const FB: S = S::FORBIDDEN;
    // endpoint → expected status for: none, unknown, query, append:26, append:dept, append:99, admin
    type Request = fn(u32) -> (&'static str, String, String);
    let endpoints: Vec<(&str, Request, [S; 7])> = vec![
        (
            "health",
            |_| ("GET", "/health".into(), String::new()),
            [OK, OK, OK, OK, OK, OK, OK],
        ),
        (
            "ready",
            |_| ("GET", "/ready".into(), String::new()),
            [OK, OK, OK, OK, OK, OK, OK],
        ),
        (
            "schema",
            |_| ("GET", "/v1/schema".into(), String::new()),
            [OK, OK, OK, OK, OK, OK, OK],
        ),
        (
            "metrics",
            |_| ("GET", "/metrics".into(), String::new()),
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "read $all",
            |_| ("GET", "/v1/events".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "read stream",
            |_| ("GET", "/v1/streams/agency-26".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "subscribe",
            |_| ("GET", "/v1/subscribe".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "sql, GET",
            |_| ("GET", "/v1/sql?q=SELECT%201".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "sql, POST",
            |_| {
                (
                    "POST",
                    "/v1/sql".into(),
                    "SELECT count(*) FROM dossiers".into(),
                )
            },
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "rankings",
            |_| ("GET", "/v1/rankings?month=2019-03".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "publish rankings",
            |_| ("POST", "/v1/rankings/2019-03/publish".into(), String::new()),
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "backup",
            |n| {
                let dest = backup_dir(n);
                let body = json!({ "destination": dest }).to_string();
                ("POST", "/v1/admin/backup".into(), body)
            },
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "report",
            |_| {
                let uri = "/v1/reports/dossiers?from=2019-01-01&to=2019-12-31";
                ("GET", uri.into(), String::new())
            },
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "list tokens",
            |_| ("GET", "/v1/tokens".into(), String::new()),
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "running queries",
            |_| ("GET", "/v1/queries".into(), String::new()),
            [NO, NO, OK, FB, FB, FB, OK],
        ),
        (
            "cancel a query",
            |_| ("DELETE", "/v1/queries/none-such".into(), String::new()),
            [NO, NO, S::NOT_FOUND, FB, FB, FB, S::NOT_FOUND],
        ),
        (
            "query log",
            |_| {
                let sql = "/v1/sql?q=SELECT%20count(*)%20FROM%20system.queries";
                ("GET", sql.into(), String::new())
            },
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "append, department dossier",
            |n| {
                (
                    "POST",
                    format!("/v1/streams/dossier-d{n}"),
                    json!({"events": [received(DEPT)]}).to_string(),
                )
            },
            [NO, NO, FB, OK, OK, FB, OK],
        ),
        (
            "append, province dossier",
            |n| {
                (
                    "POST",
                    format!("/v1/streams/dossier-p{n}"),
                    json!({"events": [received("26")]}).to_string(),
                )
            },
            [NO, NO, FB, OK, FB, FB, OK],
        ),
        (
            "append, department agency",
            |n| {
                ("POST", format!("/v1/streams/agency-x{n}"), json!({"events": [{"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": format!("x{n}"), "name": "Phòng", "kind": "department", "parent": DEPT, "province": "26"}}]}).to_string())
            },
            [NO, NO, FB, OK, OK, FB, OK],
        ),
        (
            "append, resolve existing",
            |_| {
                ("POST", "/v1/streams/dossier-existing".into(), json!({"events": [{"id": Uuid::new_v4(), "type": "DossierPaid", "data": {"at": "2019-03-05T08:00:00+07:00", "online": true, "amount": 1000}}]}).to_string())
            },
            [NO, NO, FB, OK, OK, FB, OK],
        ),
        (
            "batch, department dossier",
            |n| {
                ("POST", "/v1/events".into(), {
                    let mut e = received(DEPT);
                    e["stream"] = json!(format!("dossier-b{n}"));
                    format!("{e}\n")
                })
            },
            [NO, NO, FB, OK, OK, FB, OK],
        ),
        (
            "append, ICT index",
            |n| {
                ("POST", format!("/v1/streams/ictindex-{}", 2000 + n % 20), json!({"events": [{"id": Uuid::new_v4(), "type": "IctIndexPublished", "data": {"year": 2000 + n % 20, "province": "26", "rank": 9, "score": null}}]}).to_string())
            },
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "append, calendar announcement",
            |n| {
                ("POST", format!("/v1/streams/calendar-{}", 2010 + n % 20), json!({"events": [{"id": Uuid::new_v4(), "type": "HolidayDeclared", "data": {"holiday": "culture_day", "name": "Ngày Văn hóa Việt Nam", "dates": [format!("{}-11-24", 2010 + n % 20)], "source": "x"}}]}).to_string())
            },
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "append, top-level agency",
            |n| {
                ("POST", format!("/v1/streams/agency-y{n}"), json!({"events": [{"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": format!("y{n}"), "name": "Tỉnh", "kind": "province", "parent": null, "province": "27"}}]}).to_string())
            },
            [NO, NO, FB, FB, FB, FB, OK],
        ),
        (
            "append, dossier never received",
            |n| {
                ("POST", format!("/v1/streams/dossier-never{n}"), json!({"events": [{"id": Uuid::new_v4(), "type": "DossierResolved", "data": {"at": "2019-03-05T08:00:00+07:00", "outcome": "approved"}}]}).to_string())
            },
            [
                NO,
                NO,
                FB,
                S::CONFLICT,
                S::CONFLICT,
                S::CONFLICT,
                S::CONFLICT,
            ],
        ),
        (
            "create token",
            |_| {
                (
                    "POST",
                    "/v1/tokens".into(),
                    json!({"scopes": ["query"]}).to_string(),
                )
            },
            [NO, NO, FB, FB, FB, FB, S::CREATED],
        ),
    ];
    let mut n = 0;
    for (endpoint, request, expected) in &endpoints {
        for ((who, token), want) in principals.iter().zip(expected) {
            n += 1;
            let (method, uri, body) = request(n);
            let (status, answer) = call(&router, *token, method, &uri, body).await;
            assert_eq!(status, *want, "{endpoint} as {who}: {answer}");
            if status == S::FORBIDDEN {
                assert_eq!(answer["error"]["code"], "forbidden", "{endpoint} as {who}");
            }
        }
    }
    for n in 0..=n {
        let _ = std::fs::remove_dir_all(backup_dir(n));
    }
    // A scope over an agency that does not exist yet does not let it register itself at the top.
    let squatter = new_token(&router, &["append:zz"]).await;
    let body = json!({"events": [{"id": Uuid::new_v4(), "type": "AgencyRegistered", "data": {"code": "zz", "name": "Tỉnh", "kind": "province", "parent": null, "province": "27"}}]});
    let (status, _) = call(
        &router,
        Some(&squatter),
        "POST",
        "/v1/streams/agency-zz",
        body.to_string(),
    )
    .await;
    assert_eq!(status, S::FORBIDDEN);
    // Revoking needs admin; a revoked token is refused at once.
    for (who, token) in principals.iter().take(6) {
        let victim = new_token(&router, &["query"]).await;
        let (status, _) = call(
            &router,
            *token,
            "DELETE",
            &format!("/v1/tokens/{victim}"),
            String::new(),
        )
        .await;
        let want = if token.is_none() || *who == "unknown" {
            NO
        } else {
            FB
        };
        assert_eq!(status, want, "revoke as {who}");
    }
    let (status, _) = call(
        &router,
        Some(ADMIN),
        "DELETE",
        &format!("/v1/tokens/{query}"),
        String::new(),
    )
    .await;
    assert_eq!(status, S::NO_CONTENT);
    let (status, answer) = call(&router, Some(&query), "GET", "/v1/events", String::new()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (NO, Some("invalid_token"))
    );
    let (status, answer) = call(
        &router,
        Some(ADMIN),
        "DELETE",
        &format!("/v1/tokens/{query}"),
        String::new(),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (S::NOT_FOUND, Some("token_not_found"))
    );
    for scopes in [
        json!([]),
        json!(["root"]),
        json!(["append:"]),
        json!(["append:a/b"]),
    ] {
        let (status, answer) = call(
            &router,
            Some(ADMIN),
            "POST",
            "/v1/tokens",
            json!({"scopes": scopes}).to_string(),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (S::BAD_REQUEST, Some("invalid_scope")),
            "{scopes}"
        );
    }
}

#[tokio::test]
async fn tokens_survive_a_restart_and_are_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let token = {
        let (router, store) = open(dir.path());
        reference(&router).await;
        let token = new_token(&router, &["append:000.00.31.H56", "query"]).await;
        store.shutdown().await;
        token
    };
    let (router, store) = open(dir.path());
    let body = json!({"events": [received(DEPT)]}).to_string();
    let (status, answer) = call(
        &router,
        Some(&token),
        "POST",
        "/v1/streams/dossier-after",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stored = store.settings(b"").unwrap();
    assert!(!stored.is_empty());
    for (key, value) in stored {
        let secret = &token["chiso_".len()..];
        assert!(
            !String::from_utf8_lossy(&key).contains(secret)
                && !String::from_utf8_lossy(&value).contains(secret)
        );
    }
}

#[tokio::test]
async fn revoking_a_token_ends_its_live_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open(dir.path());
    reference(&router).await;
    let reader = new_token(&router, &["query"]).await;
    let streaming = subscribe(&router, &reader).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!streaming.is_finished(), "a live subscription stays open");
    let (status, _) = call(
        &router,
        Some(ADMIN),
        "DELETE",
        &format!("/v1/tokens/{reader}"),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), streaming)
        .await
        .expect("the stream ends when its token is revoked")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("id: 0"),
        "it had streamed the log"
    );
}

/// A log without the catalog has no agencies to check an `append:` scope against: it refuses
/// such tokens (403, nothing written) and takes appends from an admin only.
#[tokio::test]
async fn a_log_without_the_catalog_refuses_the_grants_it_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let auth = Auth::enabled(ADMIN, &store).unwrap();
    let ingestor = Ingestor::without_catalog(store.clone());
    let router = router(AppState::new(ingestor, Limits::default()).with_auth(auth));
    let scoped = new_token(&router, &["append:26"]).await;
    assert_eq!(store.head(), 1, "the token's creation is on record");
    let event = json!({"id": Uuid::new_v4(), "type": "Noted", "data": {"n": 1}});
    let single = json!({"events": [event]}).to_string();
    let line = json!({"stream": "note-1", "id": Uuid::new_v4(), "type": "Noted", "data": {}});
    for (uri, body) in [
        ("/v1/streams/note-1", single.clone()),
        ("/v1/events", line.to_string()),
    ] {
        let (status, answer) = call(&router, Some(&scoped), "POST", uri, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    }
    assert_eq!(store.head(), 1, "nothing of a refused append is written");
    let (status, answer) = call(&router, Some(ADMIN), "POST", "/v1/streams/note-1", single).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(store.head(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_and_cancels_only_its_own_queries() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open_with_sql(dir.path());
    let (status, created) = call(
        &router,
        Some(ADMIN),
        "POST",
        "/v1/tokens",
        json!({"scopes": ["query"]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let mine = created["token"].as_str().unwrap().to_owned();
    let hash = sha2::Sha256::digest(mine.as_bytes());
    let id: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        created["id"],
        id.as_str(),
        "a token's id is its hash's first 16 hex digits"
    );
    let theirs = new_token(&router, &["query"]).await;

    let endless = "SELECT sum(v % 7) FROM generate_series(1, 100000000000) AS t(v)";
    let running = {
        let router = router.clone();
        let request = Request::post("/v1/sql")
            .header("Authorization", format!("Bearer {mine}"))
            .header("x-chiso-query-id", "mine-1")
            .body(Body::from(endless))
            .unwrap();
        tokio::spawn(async move { router.oneshot(request).await.unwrap() })
    };
    let listed = |token: &'static str| {
        let router = router.clone();
        let token = match token {
            "mine" => mine.clone(),
            "theirs" => theirs.clone(),
            _ => ADMIN.to_owned(),
        };
        async move {
            let (status, answer) =
                call(&router, Some(&token), "GET", "/v1/queries", String::new()).await;
            assert_eq!(status, StatusCode::OK);
            answer["queries"].as_array().unwrap().clone()
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed("mine").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(listed("theirs").await.is_empty());
    let seen = listed("admin").await;
    assert_eq!(
        (&seen[0]["id"], &seen[0]["token_id"]),
        (&json!("mine-1"), &json!(id))
    );
    let (status, _) = call(
        &router,
        Some(&theirs),
        "DELETE",
        "/v1/queries/mine-1",
        String::new(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another token's query is not theirs to cancel"
    );
    let (status, _) = call(
        &router,
        Some(&mine),
        "DELETE",
        "/v1/queries/mine-1",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = running.await.unwrap();
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    // The admin reads who ran it in the query log.
    let uri = "/v1/sql?q=SELECT%20token_id,%20outcome%20FROM%20system.queries%20WHERE%20id%20=%20'mine-1'";
    let (status, log) = call(&router, Some(ADMIN), "GET", uri, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(log, json!([{"token_id": id, "outcome": "cancelled"}]));
}

#[tokio::test]
async fn admins_list_tokens_by_id_and_revoke_one_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open(dir.path());
    let (status, created) = call(
        &router,
        Some(ADMIN),
        "POST",
        "/v1/tokens",
        json!({"scopes": ["append:26", "query"]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (token, id) = (
        created["token"].as_str().unwrap(),
        created["id"].as_str().unwrap(),
    );
    let other = new_token(&router, &["query"]).await;
    let (status, listed) = call(&router, Some(ADMIN), "GET", "/v1/tokens", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        (&tokens[0]["id"], &tokens[0]["scopes"]),
        (&json!(id), &json!(["append:26", "query"]))
    );
    assert!(tokens[0]["created_at"].is_string());
    assert!(
        !listed.to_string().contains(token),
        "a listing never shows a token"
    );
    let (status, _) = call(&router, Some(token), "GET", "/v1/events", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let uri = format!("/v1/tokens/{id}");
    let (status, _) = call(&router, Some(ADMIN), "DELETE", &uri, String::new()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = call(&router, Some(token), "GET", "/v1/events", String::new()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    let (status, answer) = call(&router, Some(ADMIN), "DELETE", &uri, String::new()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("token_not_found"))
    );
    // The other token is untouched, and still revoked by itself.
    let (status, listed) = call(&router, Some(ADMIN), "GET", "/v1/tokens", String::new()).await;
    assert_eq!(
        (status, listed["tokens"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (status, _) = call(
        &router,
        Some(ADMIN),
        "DELETE",
        &format!("/v1/tokens/{other}"),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// The events of `stream`, as an admin reads them.
async fn stream_events(router: &Router, stream: &str) -> Vec<Value> {
    let uri = format!("/v1/streams/{stream}");
    let (status, answer) = call(router, Some(ADMIN), "GET", &uri, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_event_records_who_appended_it_and_tokens_are_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open_with_sql(dir.path());
    reference(&router).await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let request = json!({"name": "Sở Xây dựng — một cửa", "scopes": ["append:26", "query"],
        "limits": {"queries": 2}, "expires_at": expires_at});
    let created = created_token(&router, request.clone()).await;
    let (token, id) = (
        created["token"].as_str().unwrap(),
        created["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        (&created["name"], &created["limits"], &created["expires_at"]),
        (&request["name"], &json!({"queries": 2}), &json!(expires_at))
    );
    // Each event records who appended it: the admin, or the token's id.
    let body = json!({"events": [received(DEPT)]}).to_string();
    let (status, answer) = call(
        &router,
        Some(token),
        "POST",
        "/v1/streams/dossier-mine",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mine = stream_events(&router, "dossier-mine").await;
    assert_eq!(mine[0]["recorded_by"], json!(id));
    let theirs = stream_events(&router, "dossier-existing").await;
    assert_eq!(theirs[0]["recorded_by"], json!("admin"));
    let sql = "/v1/sql?q=SELECT%20stream,%20recorded_by%20FROM%20events%20WHERE%20stream%20LIKE%20'dossier-%25'%20ORDER%20BY%20position";
    let (status, rows) = call(&router, Some(ADMIN), "GET", sql, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    assert_eq!(
        rows,
        json!([{"stream": "dossier-existing", "recorded_by": "admin"},
            {"stream": "dossier-mine", "recorded_by": id}])
    );
    // The listing shows its name, limits, expiry and the minute it was last used.
    let (_, listed) = call(&router, Some(ADMIN), "GET", "/v1/tokens", String::new()).await;
    let listed = &listed["tokens"][0];
    assert_eq!(
        (&listed["id"], &listed["name"], &listed["limits"]["queries"]),
        (&json!(id), &request["name"], &json!(2))
    );
    assert_eq!(listed["expires_at"], json!(expires_at));
    let last_used = listed["last_used_at"].as_str().expect("used just now");
    let last_used = chrono::DateTime::parse_from_rfc3339(last_used).unwrap();
    assert!((chrono::Utc::now() - last_used.to_utc()).num_seconds() < 120);
    // Creating and revoking it is in the log, by the admin, without the token or its hash.
    let uri = format!("/v1/tokens/{id}");
    let (status, _) = call(&router, Some(ADMIN), "DELETE", &uri, String::new()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let records = stream_events(&router, &format!("token-{id}")).await;
    let types: Vec<_> = records
        .iter()
        .map(|e| (&e["type"], &e["recorded_by"]))
        .collect();
    assert_eq!(
        types,
        [
            (&json!("TokenCreated"), &json!("admin")),
            (&json!("TokenRevoked"), &json!("admin"))
        ]
    );
    assert_eq!(
        (&records[0]["data"]["scopes"], &records[0]["data"]["name"]),
        (&json!(["append:26", "query"]), &request["name"])
    );
    assert!(!records[0].to_string().contains(token));
    // Nobody else writes such records, not even an admin.
    let forged = json!({"events": [{"id": Uuid::new_v4(), "type": "TokenCreated",
        "data": {"id": "0123456789abcdef", "scopes": ["admin"], "at": "2019-03-04T08:00:00+07:00"}}]});
    let (status, answer) = call(
        &router,
        Some(ADMIN),
        "POST",
        "/v1/streams/token-0123456789abcdef",
        forged.to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let uri = "/v1/streams/token-0123456789abcdef";
    let (status, _) = call(&router, Some(ADMIN), "GET", uri, String::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open(dir.path());
    let create = |expires_at: chrono::DateTime<chrono::Utc>, limits: Value| {
        let body =
            json!({"scopes": ["query"], "expires_at": expires_at.to_rfc3339(), "limits": limits});
        let router = router.clone();
        async move { call(&router, Some(ADMIN), "POST", "/v1/tokens", body.to_string()).await }
    };
    let now = chrono::Utc::now();
    let (status, past) = create(now - chrono::Duration::seconds(1), json!({})).await;
    assert_eq!(
        (
            status,
            past["error"]["code"].as_str(),
            &past["error"]["details"]["pointer"]
        ),
        (
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
            &json!("/expires_at")
        )
    );
    let (status, zero) = create(now + chrono::Duration::hours(1), json!({"queries": 0})).await;
    assert_eq!(
        (status, &zero["error"]["details"]["pointer"]),
        (StatusCode::BAD_REQUEST, &json!("/limits/queries"))
    );
    let (status, created) = create(now + chrono::Duration::milliseconds(1500), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap();
    let (status, _) = call(&router, Some(token), "GET", "/v1/events", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (status, answer) = call(&router, Some(token), "GET", "/v1/events", String::new()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
}

/// Calls `uri` with `token` and returns the status, the `Retry-After` header and the body.
async fn call_with_retry_after(
    router: &Router,
    token: &str,
    method: &str,
    uri: &str,
    body: String,
) -> (StatusCode, Option<u64>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry_after, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_429_with_retry_after_and_release_when_the_load_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open_with_sql(dir.path());
    reference(&router).await;
    let create = |limits: Value| {
        let router = router.clone();
        async move {
            let body = json!({"scopes": ["query", "append:26"], "limits": limits});
            let created = created_token(&router, body).await;
            let id = created["id"].as_str().unwrap().to_owned();
            (created["token"].as_str().unwrap().to_owned(), id)
        }
    };

    // One query at a time: a second while the first runs is refused, and taken once it ends.
    let (single, single_id) = create(json!({"queries": 1})).await;
    let endless = "SELECT sum(v % 7) FROM generate_series(1, 100000000000) AS t(v)";
    let running = {
        let (router, single) = (router.clone(), single.clone());
        let request = Request::post("/v1/sql")
            .header("Authorization", format!("Bearer {single}"))
            .header("x-chiso-query-id", "long-1")
            .body(Body::from(endless))
            .unwrap();
        tokio::spawn(async move { router.oneshot(request).await.unwrap() })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, queries) = call(&router, Some(&single), "GET", "/v1/queries", String::new()).await;
        if !queries["queries"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let one = "/v1/sql?q=SELECT%201%20AS%20one";
    let (status, retry_after, answer) =
        call_with_retry_after(&router, &single, "GET", one, String::new()).await;
    assert_eq!(
        (status, retry_after, answer["error"]["code"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some(1),
            Some("too_many_queries")
        )
    );
    // Another token is not held back by it.
    let (other, _) = create(json!({"queries": 1})).await;
    let (status, _) = call(&router, Some(&other), "GET", one, String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &router,
        Some(&single),
        "DELETE",
        "/v1/queries/long-1",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    running.await.unwrap();
    let (status, answer) = call(&router, Some(&single), "GET", one, String::new()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!([{"one": 1}])));

    // Rows a minute: a query that returns more than the budget goes through, then the token
    // waits until the debt is paid (60 a minute: one a second).
    let (reader, _) = create(json!({"rows_per_minute": 60})).await;
    let hundred = "/v1/sql?q=SELECT%20v%20FROM%20generate_series(1,%20100)%20AS%20t(v)";
    let (status, rows) = call(&router, Some(&reader), "GET", hundred, String::new()).await;
    assert_eq!(
        (status, rows.as_array().map(Vec::len)),
        (StatusCode::OK, Some(100))
    );
    let (status, retry_after, answer) =
        call_with_retry_after(&router, &reader, "GET", one, String::new()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("row_quota_exceeded"))
    );
    assert!((40..=42).contains(&retry_after.unwrap()), "{retry_after:?}");

    // Events a second: a batch may spend the second's budget; the next waits for it.
    let (writer, writer_id) = create(json!({"appends_per_second": 2})).await;
    let append = |stream: &str| {
        let paused = json!({"id": Uuid::new_v4(), "type": "DossierPaused",
            "data": {"at": "2019-03-05T08:00:00+07:00"}});
        let body = json!({"events": [received(DEPT), paused]}).to_string();
        let (router, writer, uri) = (
            router.clone(),
            writer.clone(),
            format!("/v1/streams/{stream}"),
        );
        async move { call_with_retry_after(&router, &writer, "POST", &uri, body).await }
    };
    let (status, _, answer) = append("dossier-q1").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, retry_after, answer) = append("dossier-q2").await;
    assert_eq!(
        (status, retry_after, answer["error"]["code"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some(1),
            Some("append_quota_exceeded")
        )
    );
    let (status, _) = call(
        &router,
        Some(ADMIN),
        "GET",
        "/v1/streams/dossier-q2",
        String::new(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of a refused append is written"
    );
    // Released when the load stops.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, answer) = append("dossier-q2").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // /metrics counts each token's use and refusals by its id.
    let request = Request::get("/metrics")
        .header("Authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let metrics = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        format!("chiso_token_refusals_total{{token=\"{single_id}\",code=\"too_many_queries\"}} 1"),
        format!("chiso_token_events_total{{token=\"{writer_id}\"}} 4"),
        format!(
            "chiso_token_refusals_total{{token=\"{writer_id}\",code=\"append_quota_exceeded\"}} 1"
        ),
    ] {
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}

/// Appends one event to `stream` as the admin; its position.
/// A live subscription to everything `token` may read, collected until it ends.
async fn subscribe(
    router: &Router,
    token: &str,
) -> tokio::task::JoinHandle<Result<bytes::Bytes, axum::Error>> {
    let request = Request::get("/v1/subscribe")
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::spawn(async move { response.into_body().collect().await.map(|b| b.to_bytes()) })
}

async fn admin_append(router: &Router, stream: &str, event: Value) -> u64 {
    let uri = format!("/v1/streams/{stream}");
    let body = json!({"events": [event]}).to_string();
    let (status, answer) = call(router, Some(ADMIN), "POST", &uri, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["last_position"].as_u64().unwrap()
}

/// The streams of `/v1/events` as `token` reads them, in order.
async fn streams_read(router: &Router, token: &str) -> Vec<String> {
    let (status, answer) = call(
        router,
        Some(token),
        "GET",
        "/v1/events?limit=10000",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let events = answer["events"].as_array().unwrap();
    events
        .iter()
        .map(|e| e["stream"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_scope_reads_its_subtree_on_every_endpoint_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = open_with_sql(dir.path());
    reference(&router).await;
    // Another province's department, service and dossier.
    admin_append(&router, "agency-99.A", json!({"id": Uuid::new_v4(), "type": "AgencyRegistered",
        "data": {"code": "99.A", "name": "Sở khác", "kind": "department", "parent": "99", "province": "99"}})).await;
    admin_append(&router, "service-9.001", json!({"id": Uuid::new_v4(), "type": "ServiceLaunched",
        "data": {"code": "9.001", "agency": "99.A", "name": "Khác", "field": "Khác", "level": 2, "at": "2019-01-02T08:00:00+07:00"}})).await;
    let mut other = received("99.A");
    other["data"]["service"] = json!("9.001");
    let last = admin_append(&router, "dossier-other", other).await;
    let created = created_token(&router, json!({"scopes": ["query:26"]})).await;
    let reader = created["token"].as_str().unwrap().to_owned();
    // SQL, once the tables hold the log: its province's rows only, published tables whole.
    let sql = |token: String, sql: &str| {
        let body = json!({"sql": sql, "min_position": last}).to_string();
        let request = Request::post("/v1/sql")
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let dossiers = "SELECT id, agency FROM dossiers ORDER BY id";
    let (status, all) = sql(ADMIN.into(), dossiers).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, mine) = sql(reader.clone(), dossiers).await;
    assert_eq!(mine, json!([{"id": "existing", "agency": DEPT}]));
    for (query, expected) in [
        ("SELECT count(*) AS n FROM services", json!([{"n": 1}])),
        ("SELECT count(*) AS n FROM agencies", json!([{"n": 4}])),
        ("SELECT count(*) AS n FROM events WHERE stream IN ('dossier-other', 'service-9.001')", json!([{"n": 0}])),
        ("SELECT count(*) AS n FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31') WHERE agency = '99.A'", json!([{"n": 0}])),
    ] {
        let (status, answer) = sql(reader.clone(), query).await;
        assert_eq!((status, &answer), (StatusCode::OK, &expected), "{query}");
    }
    // The log: another province's streams are as if they did not exist; published ones whole.
    for (stream, expected) in [
        ("dossier-other", StatusCode::NOT_FOUND),
        ("service-9.001", StatusCode::NOT_FOUND),
        ("dossier-existing", StatusCode::OK),
        ("agency-99.A", StatusCode::OK),
    ] {
        let uri = format!("/v1/streams/{stream}");
        let (status, answer) = call(&router, Some(&reader), "GET", &uri, String::new()).await;
        assert_eq!(status, expected, "{stream}: {answer}");
    }
    let everything = streams_read(&router, ADMIN).await;
    let seen = streams_read(&router, &reader).await;
    let hidden =
        |s: &String| s == "dossier-other" || s == "service-9.001" || s.starts_with("token-");
    let expected: Vec<String> = everything.iter().filter(|s| !hidden(s)).cloned().collect();
    assert!(everything.iter().any(hidden));
    assert_eq!(seen, expected);
    // Live: a subscriber from the start sees the same, and new events of its province only.
    let streaming = subscribe(&router, &reader).await;
    let mut theirs = received("99.A");
    theirs["data"]["service"] = json!("9.001");
    admin_append(&router, "dossier-other-2", theirs).await;
    admin_append(&router, "dossier-mine-2", received(DEPT)).await;
    // A unit registered below it while it streams is in its scope from then on.
    admin_append(&router, "agency-26.NEW", json!({"id": Uuid::new_v4(), "type": "AgencyRegistered",
        "data": {"code": "26.NEW", "name": "Trung tâm mới", "kind": "center", "parent": "26", "province": "26"}})).await;
    admin_append(&router, "dossier-new-unit", received("26.NEW")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let uri = format!("/v1/tokens/{}", created["id"].as_str().unwrap());
    let (status, _) = call(&router, Some(ADMIN), "DELETE", &uri, String::new()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), streaming)
        .await
        .expect("the stream ends when its token is revoked")
        .unwrap()
        .unwrap();
    let streamed: Vec<String> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| {
            serde_json::from_str::<Value>(data.trim()).unwrap()["stream"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut expected = expected;
    expected.extend(["dossier-mine-2", "agency-26.NEW", "dossier-new-unit"].map(String::from));
    assert_eq!(streamed, expected);
}

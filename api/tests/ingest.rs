//! The catalog and the write model through the HTTP API: a corpus of bad requests (each
//! asserting its status, its code, the field it names, and that the log did not grow), the
//! dossier state machine, concurrent double-resolves, and the model rebuilt after a restart.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chiso_api::{router, AppState, Limits};
use chiso_ingest::{IngestModel, Ingestor};
use chiso_store::{EventStore, StoreMetrics};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

struct Api {
    router: Router,
    store: EventStore,
}

impl Api {
    fn open(dir: &std::path::Path) -> Self {
        let store =
            EventStore::open_with(dir, StoreMetrics::default(), IngestModel::new()).unwrap();
        let state = AppState::new(Ingestor::new(store.clone()), Limits::default());
        Self {
            router: router(state),
            store: store.store().clone(),
        }
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn append(&self, stream: &str, events: Vec<Value>) -> (StatusCode, Value) {
        let body = json!({"events": events}).to_string();
        self.call("POST", &format!("/v1/streams/{stream}"), body)
            .await
    }

    async fn ok(&self, stream: &str, events: Vec<Value>) {
        let (status, answer) = self.append(stream, events).await;
        assert_eq!(status, StatusCode::OK, "{stream}: {answer}");
    }
}

fn event(event_type: &str, data: Value) -> Value {
    json!({"id": Uuid::new_v4(), "type": event_type, "data": data})
}

fn agency(code: &str, kind: &str, parent: Option<&str>) -> Value {
    event(
        "AgencyRegistered",
        json!({"code": code, "name": format!("Agency {code}"), "kind": kind, "parent": parent, "province": "26"}),
    )
}

fn service(code: &str, agency: &str) -> Value {
    event(
        "ServiceLaunched",
        json!({"code": code, "agency": agency, "name": "Cấp phép", "field": "Xây dựng", "level": 3, "at": "2019-01-02T08:00:00+07:00"}),
    )
}

fn received(agency: &str, service: &str) -> Value {
    event(
        "DossierReceived",
        json!({"agency": agency, "service": service, "channel": "online",
        "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}),
    )
}

/// `event` with `metadata.$version` set to `version`.
fn versioned(mut event: Value, version: Value) -> Value {
    event["metadata"] = json!({"$version": version});
    event
}

fn at(event_type: &str, time: &str) -> Value {
    event(event_type, json!({"at": time}))
}

/// A `DossierCorrected` made on 2019-08-01 with `data`'s fields.
fn correct(data: Value) -> Value {
    let mut data = data;
    data["at"] = json!("2019-08-01T08:00:00+07:00");
    event("DossierCorrected", data)
}

/// A `DossierVoided` made on 2019-08-01.
fn void() -> Value {
    event(
        "DossierVoided",
        json!({"at": "2019-08-01T08:00:00+07:00", "reason": "nhập trùng"}),
    )
}

fn resolved(time: &str) -> Value {
    event(
        "DossierResolved",
        json!({"at": time, "outcome": "approved"}),
    )
}

const DEPT: &str = "000.00.31.H56";

/// Agencies, services and dossiers in every state the corpus needs.
async fn reference(api: &Api) {
    api.ok("agency-26", vec![agency("26", "province", None)])
        .await;
    api.ok(
        &format!("agency-{DEPT}"),
        vec![agency(DEPT, "department", Some("26"))],
    )
    .await;
    api.ok("service-1.001", vec![service("1.001", DEPT)]).await;
    api.ok(
        "service-1.002",
        vec![
            service("1.002", DEPT),
            at("ServiceWithdrawn", "2019-02-01T08:00:00+07:00"),
        ],
    )
    .await;
    api.ok("dossier-open", vec![received(DEPT, "1.001")]).await;
    api.ok(
        "dossier-resolved",
        vec![
            received(DEPT, "1.001"),
            resolved("2019-03-05T10:00:00+07:00"),
        ],
    )
    .await;
    api.ok(
        "dossier-paused",
        vec![
            received(DEPT, "1.001"),
            at("DossierPaused", "2019-03-05T08:00:00+07:00"),
        ],
    )
    .await;
    api.ok(
        "dossier-withdrawn",
        vec![
            received(DEPT, "1.001"),
            at("DossierWithdrawn", "2019-03-05T08:00:00+07:00"),
        ],
    )
    .await;
    let rated = event(
        "DossierRated",
        json!({"at": "2019-03-06T08:00:00+07:00", "score": 5}),
    );
    api.ok(
        "dossier-rated",
        vec![
            received(DEPT, "1.001"),
            resolved("2019-03-05T10:00:00+07:00"),
            rated,
        ],
    )
    .await;
    let ict = event(
        "IctIndexPublished",
        json!({"year": 2019, "province": "26", "rank": 21, "score": null}),
    );
    api.ok("ictindex-2019", vec![ict]).await;
}

fn with(mut value: Value, field: &str, replacement: Value) -> Value {
    value["data"][field] = replacement;
    value
}

fn without(mut value: Value, field: &str) -> Value {
    value["data"].as_object_mut().unwrap().remove(field);
    value
}

#[tokio::test]
async fn the_corpus_of_bad_requests_is_refused_precisely_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path());
    reference(&api).await;
    let ahead = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let rec = || received(DEPT, "1.001");
    let ranking = |agency: &str, month: &str| {
        event(
            "RankingPublished",
            json!({"month": month, "scope": "26/department", "metric": "on_time_rate", "entries": [{"agency": agency, "value": 0.9, "rank": 1}]}),
        )
    };
    let ict = |year: u16, rank: u8, province: &str| {
        event(
            "IctIndexPublished",
            json!({"year": year, "province": province, "rank": rank, "score": 0.5}),
        )
    };
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    use StatusCode as S;
    // (stream, events or raw body, status, code, pointer)
    let cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        // the envelope
        (
            "dossier-new",
            json!("{\"events\": ["),
            S::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            "dossier-new",
            json!([{"id": "not-a-uuid", "type": "DossierReceived", "data": {}}]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/id"),
        ),
        (
            "dossier-new",
            json!([{"id": Uuid::new_v4(), "type": "DossierReceived", "data": [1]}]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data"),
        ),
        (
            "dossier-new",
            json!([{"id": Uuid::new_v4(), "type": "DossierReceived", "data": {"x": serde_json::from_str::<Value>(&deep).unwrap()}}]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data"),
        ),
        (
            "dossier-new",
            json!([{"id": Uuid::new_v4(), "type": "DossierReceived", "data": {}, "stream": "x"}]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/stream"),
        ),
        // the catalog
        (
            "dossier-new",
            json!([event("DossierTeleported", json!({}))]),
            S::BAD_REQUEST,
            "unknown_event_type",
            Some("/events/0/type"),
        ),
        (
            "agency-27",
            json!([rec()]),
            S::BAD_REQUEST,
            "wrong_category",
            Some("/events/0/type"),
        ),
        (
            "dossier-new",
            json!([agency("27", "province", None)]),
            S::BAD_REQUEST,
            "wrong_category",
            Some("/events/0/type"),
        ),
        (
            "ranking-2019-01",
            json!([rec()]),
            S::BAD_REQUEST,
            "wrong_category",
            Some("/events/0/type"),
        ),
        (
            "parcel-1",
            json!([rec()]),
            S::BAD_REQUEST,
            "unknown_category",
            None,
        ),
        (
            "dossier",
            json!([rec()]),
            S::BAD_REQUEST,
            "unknown_category",
            None,
        ),
        (
            "dossier-",
            json!([rec()]),
            S::BAD_REQUEST,
            "unknown_category",
            None,
        ),
        (
            "dossier%2F..%2Fx",
            json!([rec()]),
            S::BAD_REQUEST,
            "invalid_stream_name",
            None,
        ),
        (
            "..",
            json!([rec()]),
            S::BAD_REQUEST,
            "invalid_stream_name",
            None,
        ),
        (
            "dossier-a%20b",
            json!([rec()]),
            S::BAD_REQUEST,
            "invalid_stream_name",
            None,
        ),
        (
            "dossier-%E1%BB%87",
            json!([rec()]),
            S::BAD_REQUEST,
            "invalid_stream_name",
            None,
        ),
        // the shape of data
        (
            "agency-27",
            json!([with(agency("27", "province", None), "extra", json!(1))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/extra"),
        ),
        (
            "agency-27",
            json!([with(
                agency("27", "province", None),
                "kind",
                json!("village")
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/kind"),
        ),
        (
            "service-1.009",
            json!([without(service("1.009", DEPT), "level")]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data"),
        ),
        (
            "service-1.009",
            json!([with(service("1.009", DEPT), "level", json!("three"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/level"),
        ),
        (
            "service-1.009",
            json!([with(service("1.009", DEPT), "level", json!(300))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/level"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "channel", json!("fax"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/channel"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "received_at", json!("2019-03-04T08:00:00"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "received_at", json!("yesterday"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "agency", json!(26))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/agency"),
        ),
        (
            "dossier-open",
            json!([event(
                "DossierPaid",
                json!({"at": "2019-03-05T08:00:00+07:00", "online": true, "amount": -5})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/amount"),
        ),
        (
            "dossier-open",
            json!([event(
                "DossierPaid",
                json!({"at": "2019-03-05T08:00:00+07:00", "online": "yes", "amount": 5})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/online"),
        ),
        (
            "dossier-resolved",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-06T08:00:00+07:00", "score": 4.5})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/score"),
        ),
        (
            "dossier-open",
            json!([event(
                "DossierResolved",
                json!({"at": "2019-03-05T10:00:00+07:00", "outcome": "maybe"})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/outcome"),
        ),
        (
            "ranking-2019-01",
            json!([with(ranking(DEPT, "2019-01"), "metric", json!("speed"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/metric"),
        ),
        // values
        (
            "service-1.009",
            json!([with(service("1.009", DEPT), "level", json!(5))]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/level"),
        ),
        (
            "service-1.009",
            json!([with(service("1.009", DEPT), "level", json!(0))]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/level"),
        ),
        (
            "dossier-resolved",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-06T08:00:00+07:00", "score": 6})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/score"),
        ),
        (
            "dossier-resolved",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-06T08:00:00+07:00", "score": 0})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/score"),
        ),
        (
            "ictindex-2018",
            json!([ict(2018, 64, "26")]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/rank"),
        ),
        (
            "ictindex-2018",
            json!([ict(2018, 0, "26")]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/rank"),
        ),
        (
            "ictindex-1999",
            json!([ict(1999, 5, "26")]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/year"),
        ),
        (
            "ictindex-2018",
            json!([ict(2018, 5, "6")]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_code",
            Some("/events/0/data/province"),
        ),
        (
            "dossier-new",
            json!([with(
                rec(),
                "received_at",
                json!("1999-12-31T23:00:00+07:00")
            )]),
            S::UNPROCESSABLE_ENTITY,
            "time_out_of_range",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-new",
            json!([with(
                with(rec(), "received_at", json!(ahead)),
                "due_at",
                json!(ahead)
            )]),
            S::UNPROCESSABLE_ENTITY,
            "time_out_of_range",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "due_at", json!("2019-03-01T08:00:00+07:00"))]),
            S::UNPROCESSABLE_ENTITY,
            "due_before_received",
            Some("/events/0/data/due_at"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "due_at", json!("2021-03-01T08:00:00+07:00"))]),
            S::UNPROCESSABLE_ENTITY,
            "time_out_of_range",
            Some("/events/0/data/due_at"),
        ),
        (
            "agency-27",
            json!([agency("28", "province", None)]),
            S::UNPROCESSABLE_ENTITY,
            "stream_mismatch",
            Some("/events/0/data/code"),
        ),
        (
            "ictindex-2019",
            json!([ict(2018, 5, "27")]),
            S::UNPROCESSABLE_ENTITY,
            "stream_mismatch",
            Some("/events/0/data/year"),
        ),
        (
            "ranking-2019-13",
            json!([ranking(DEPT, "2019-13")]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_month",
            Some("/events/0/data/month"),
        ),
        (
            "agency-27",
            json!([agency("27", "province", Some("27"))]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_parent",
            Some("/events/0/data/parent"),
        ),
        (
            "agency-27",
            json!([with(agency("27", "province", None), "name", json!("  "))]),
            S::UNPROCESSABLE_ENTITY,
            "blank_field",
            Some("/events/0/data/name"),
        ),
        // references
        (
            "agency-27",
            json!([agency("27", "district", Some("99"))]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            Some("/events/0/data/parent"),
        ),
        (
            "service-1.009",
            json!([service("1.009", "nobody")]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            Some("/events/0/data/agency"),
        ),
        (
            "dossier-new",
            json!([received("nobody", "1.001")]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            Some("/events/0/data/agency"),
        ),
        (
            "dossier-new",
            json!([received(DEPT, "9.999")]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_service",
            Some("/events/0/data/service"),
        ),
        (
            "dossier-new",
            json!([received(DEPT, "1.002")]),
            S::UNPROCESSABLE_ENTITY,
            "service_withdrawn",
            Some("/events/0/data/service"),
        ),
        (
            "ranking-2019-01",
            json!([ranking("nobody", "2019-01")]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            Some("/events/0/data/entries/0/agency"),
        ),
        // state
        (
            "agency-26",
            json!([agency("26", "province", None)]),
            S::CONFLICT,
            "already_exists",
            None,
        ),
        (
            "service-1.001",
            json!([service("1.001", DEPT)]),
            S::CONFLICT,
            "already_exists",
            None,
        ),
        (
            "dossier-open",
            json!([rec()]),
            S::CONFLICT,
            "already_exists",
            None,
        ),
        (
            "ictindex-2019",
            json!([ict(2019, 3, "26")]),
            S::CONFLICT,
            "already_exists",
            None,
        ),
        (
            "dossier-never",
            json!([resolved("2019-03-05T10:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-resolved",
            json!([resolved("2019-03-06T10:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-paused",
            json!([resolved("2019-03-05T07:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/at"),
        ),
        (
            "dossier-resolved",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-05T09:00:00+07:00", "score": 4})
            )]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/at"),
        ),
        (
            "dossier-withdrawn",
            json!([resolved("2019-03-06T10:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-open",
            json!([at("DossierResumed", "2019-03-06T10:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-open",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-06T08:00:00+07:00", "score": 5})
            )]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-rated",
            json!([event(
                "DossierRated",
                json!({"at": "2019-03-07T08:00:00+07:00", "score": 1})
            )]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-withdrawn",
            json!([event(
                "DossierPaid",
                json!({"at": "2019-03-06T08:00:00+07:00", "online": true, "amount": 5})
            )]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-open",
            json!([at("DossierPaused", "2019-03-01T08:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/at"),
        ),
        (
            "service-1.002",
            json!([event(
                "ServiceLevelChanged",
                json!({"level": 4, "at": "2019-06-01T08:00:00+07:00"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "service-1.001",
            json!([event(
                "ServiceLevelChanged",
                json!({"level": 4, "at": "2018-06-01T08:00:00+07:00"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/at"),
        ),
        (
            "service-1.009",
            json!([at("ServiceWithdrawn", "2019-06-01T08:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        // corrections and voids
        (
            "dossier-open",
            json!([correct(json!({"reason": "nhập sai"}))]),
            S::UNPROCESSABLE_ENTITY,
            "nothing_to_correct",
            Some("/events/0/data"),
        ),
        (
            "dossier-open",
            json!([correct(json!({"reason": "  ", "channel": "direct"}))]),
            S::UNPROCESSABLE_ENTITY,
            "blank_field",
            Some("/events/0/data/reason"),
        ),
        (
            "dossier-open",
            json!([correct(json!({"channel": "fax", "reason": "r"}))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/channel"),
        ),
        (
            "dossier-open",
            json!([correct(
                json!({"reason": "r", "received_at": "2019-03-12T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "due_before_received",
            Some("/events/0/data/due_at"),
        ),
        (
            "dossier-open",
            json!([correct(
                json!({"reason": "r", "received_at": "2019-03-12T08:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "due_before_received",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-open",
            json!([correct(
                json!({"reason": "r", "due_at": "2020-03-12T08:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "time_out_of_range",
            Some("/events/0/data/due_at"),
        ),
        (
            "dossier-open",
            json!([correct(json!({"reason": "r", "service": "9.999"}))]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_service",
            Some("/events/0/data/service"),
        ),
        (
            "dossier-never",
            json!([correct(json!({"reason": "r", "channel": "direct"}))]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-resolved",
            json!([correct(
                json!({"reason": "r", "received_at": "2019-03-05T11:00:00+07:00"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-paused",
            json!([correct(
                json!({"reason": "r", "received_at": "2019-03-05T09:00:00+07:00"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/received_at"),
        ),
        (
            "dossier-open",
            json!([event(
                "DossierCorrected",
                json!({"at": "2019-03-03T08:00:00+07:00", "reason": "r", "channel": "direct"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/0/data/at"),
        ),
        (
            "dossier-open",
            json!([event(
                "DossierVoided",
                json!({"at": "2019-03-04T08:00:00+07:00"})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data"),
        ),
        (
            "dossier-never",
            json!([void()]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-new",
            json!([rec(), void(), void()]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-new",
            json!([
                rec(),
                void(),
                correct(json!({"reason": "r", "channel": "direct"}))
            ]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-new",
            json!([rec(), void(), resolved("2019-03-05T10:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        // agencies over time
        (
            "agency-26",
            json!([event(
                "AgencyMerged",
                json!({"into": "26", "at": "2025-07-01T00:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_successor",
            Some("/events/0/data/into"),
        ),
        (
            "agency-26",
            json!([event(
                "AgencyMoved",
                json!({"parent": DEPT, "at": "2025-07-01T00:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_parent",
            Some("/events/0/data/parent"),
        ),
        (
            "agency-26",
            json!([event(
                "AgencyMoved",
                json!({"parent": "nobody", "at": "2025-07-01T00:00:00+07:00"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            Some("/events/0/data/parent"),
        ),
        (
            "agency-26",
            json!([at("AgencyDissolved", "2025-07-01T00:00:00+07:00")]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "agency-nobody",
            json!([event(
                "AgencyRenamed",
                json!({"name": "X", "at": "2025-07-01T00:00:00+07:00"})
            )]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "agency-26.X",
            json!([
                agency("26.X", "commune", Some("26")),
                at("AgencyDissolved", "2025-07-01T00:00:00+07:00"),
                event(
                    "AgencyRenamed",
                    json!({"name": "X", "at": "2025-07-02T00:00:00+07:00"})
                )
            ]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "agency-26.X",
            json!([
                agency("26.X", "commune", Some("26")),
                event(
                    "AgencyRenamed",
                    json!({"name": "X", "at": "2025-07-02T00:00:00+07:00"})
                ),
                event(
                    "AgencyRenamed",
                    json!({"name": "Y", "at": "2025-07-01T00:00:00+07:00"})
                )
            ]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/2/data/at"),
        ),
        // later events of one request see the earlier ones, and a refusal undoes them all
        (
            "dossier-new",
            json!([
                rec(),
                resolved("2019-03-05T10:00:00+07:00"),
                resolved("2019-03-06T10:00:00+07:00")
            ]),
            S::CONFLICT,
            "invalid_transition",
            None,
        ),
        (
            "dossier-new",
            json!([
                rec(),
                at("DossierPaused", "2019-03-05T12:00:00+07:00"),
                at("DossierResumed", "2019-03-05T13:00:00+07:00"),
                at("DossierPaused", "2019-03-05T10:00:00+07:00")
            ]),
            S::CONFLICT,
            "invalid_transition",
            Some("/events/3/data/at"),
        ),
        // versions: metadata.$version picks the shape of data
        (
            "dossier-new",
            json!([versioned(rec(), json!(3))]),
            S::BAD_REQUEST,
            "unknown_version",
            Some("/events/0/metadata/$version"),
        ),
        (
            "dossier-new",
            json!([versioned(rec(), json!("2"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/metadata/$version"),
        ),
        (
            "dossier-new",
            json!([versioned(rec(), json!(2))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data"),
        ),
        (
            "dossier-new",
            json!([with(rec(), "applicant", json!("citizen"))]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/applicant"),
        ),
        (
            "dossier-new",
            json!([versioned(
                with(
                    with(rec(), "applicant", json!("citizen")),
                    "procedure_code",
                    json!("1 011442")
                ),
                json!(2)
            )]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_code",
            Some("/events/0/data/procedure_code"),
        ),
        (
            "dossier-new",
            json!([versioned(resolved("2019-03-05T10:00:00+07:00"), json!(2))]),
            S::BAD_REQUEST,
            "unknown_version",
            Some("/events/0/metadata/$version"),
        ),
        // the calendar: one year's announcements in calendar-{year}
        (
            "calendar-2019",
            json!([event(
                "HolidayDeclared",
                json!({"holiday": "tet", "name": "Tết", "dates": ["2020-01-24"], "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "date_out_of_year",
            Some("/events/0/data/dates/0"),
        ),
        (
            "calendar-2019",
            json!([event(
                "HolidayDeclared",
                json!({"holiday": "tet", "name": "Tết", "dates": ["2019-02-04", "2019-02-04"], "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "duplicate_date",
            Some("/events/0/data/dates/1"),
        ),
        (
            "calendar-2019",
            json!([event(
                "HolidayDeclared",
                json!({"holiday": "Tết", "name": "Tết", "dates": [], "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "invalid_code",
            Some("/events/0/data/holiday"),
        ),
        (
            "calendar-2019",
            json!([event(
                "HolidayDeclared",
                json!({"holiday": "tet", "name": "Tết", "dates": [], "source": " "})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "blank_field",
            Some("/events/0/data/source"),
        ),
        (
            "calendar-2019",
            json!([event(
                "HolidayDeclared",
                json!({"holiday": "tet", "name": "Tết", "dates": ["2019-02-30"], "source": "x"})
            )]),
            S::BAD_REQUEST,
            "invalid_event",
            Some("/events/0/data/dates/0"),
        ),
        (
            "calendar-2031",
            json!([event(
                "WorkdaySwapped",
                json!({"from": "2031-01-02", "to": "2031-01-04", "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "year_out_of_range",
            None,
        ),
        (
            "calendar-2025",
            json!([event(
                "WorkdaySwapped",
                json!({"from": "2025-04-26", "to": "2025-05-02", "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "not_a_weekday",
            Some("/events/0/data/from"),
        ),
        (
            "calendar-2025",
            json!([event(
                "WorkdaySwapped",
                json!({"from": "2025-05-02", "to": "2025-05-05", "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "not_a_weekend_day",
            Some("/events/0/data/to"),
        ),
        (
            "calendar-2025",
            json!([event(
                "WorkdaySwapped",
                json!({"from": "2025-05-02", "to": "2025-06-14", "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("/events/0/data/to"),
        ),
        (
            "calendar-2024",
            json!([event(
                "WorkdaySwapped",
                json!({"from": "2025-05-02", "to": "2025-04-26", "source": "x"})
            )]),
            S::UNPROCESSABLE_ENTITY,
            "date_out_of_year",
            Some("/events/0/data/from"),
        ),
        (
            "calendar-2025",
            json!([rec()]),
            S::BAD_REQUEST,
            "wrong_category",
            Some("/events/0/type"),
        ),
    ];
    assert!(cases.len() >= 50, "the corpus has {} cases", cases.len());
    for (stream, events, status, code, pointer) in cases {
        let before = api.store.head();
        let body = match &events {
            Value::String(raw) => raw.clone(),
            events => json!({"events": events}).to_string(),
        };
        let (got, answer) = api
            .call("POST", &format!("/v1/streams/{stream}"), body)
            .await;
        let context = format!("{stream} {events} → {answer}");
        assert_eq!(got, status, "{context}");
        assert_eq!(answer["error"]["code"], code, "{context}");
        if let Some(pointer) = pointer {
            assert_eq!(answer["error"]["details"]["pointer"], pointer, "{context}");
        }
        assert!(
            !answer["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{context}"
        );
        assert_eq!(api.store.head(), before, "refused but written: {context}");
    }
    // A paused dossier is still open: it may be resolved while paused.
    api.ok(
        "dossier-paused",
        vec![resolved("2019-03-06T10:00:00+07:00")],
    )
    .await;
    // Version 2 is accepted as written: the log keeps its bytes, metadata included, and the
    // same event again is an idempotent retry.
    let v2 = versioned(
        with(
            with(rec(), "applicant", json!("citizen")),
            "procedure_code",
            json!("1.011442.000.00.00.H38"),
        ),
        json!(2),
    );
    let (status, first) = api.append("dossier-v2", vec![v2.clone()]).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = api.append("dossier-v2", vec![v2.clone()]).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let (_, stored) = api
        .call("GET", "/v1/streams/dossier-v2", Body::empty())
        .await;
    assert_eq!(
        stored["events"][0]["metadata"],
        json!({"$version": 2}),
        "{stored}"
    );
    assert_eq!(stored["events"][0]["data"], v2["data"], "{stored}");
    // What the refused requests staged is gone: the same dossier can now be received.
    api.ok(
        "dossier-new",
        vec![rec(), resolved("2019-03-05T10:00:00+07:00")],
    )
    .await;
}

/// What a correction may change, and what it leaves: a corrected receipt time is what later
/// events are checked against; a void ends the dossier for good, after a restart too.
#[tokio::test]
async fn corrections_and_voids_are_checked_against_the_corrected_dossier() {
    let dir = tempfile::tempdir().unwrap();
    {
        let api = Api::open(dir.path());
        reference(&api).await;
        // A dossier received on 4 March, really received on the 6th: a pause on the 5th is
        // now before its receipt; one on the 7th is not.
        api.ok(
            "dossier-late-entry",
            vec![
                received(DEPT, "1.001"),
                correct(json!({"reason": "nhận ngày 06/3", "received_at": "2019-03-06T08:00:00+07:00", "channel": "postal", "service": "1.002"})),
            ],
        )
        .await;
        let (status, answer) = api
            .append(
                "dossier-late-entry",
                vec![at("DossierPaused", "2019-03-05T08:00:00+07:00")],
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_transition")),
            "{answer}"
        );
        api.ok(
            "dossier-late-entry",
            vec![
                at("DossierPaused", "2019-03-07T08:00:00+07:00"),
                // Earlier again, but not after the pause: allowed.
                correct(
                    json!({"reason": "nhận ngày 07/3", "received_at": "2019-03-07T08:00:00+07:00"}),
                ),
            ],
        )
        .await;
        // A resolved, a withdrawn and a rated dossier may each be corrected and voided.
        for stream in ["dossier-resolved", "dossier-withdrawn", "dossier-rated"] {
            api.ok(
                stream,
                vec![
                    correct(json!({"reason": "r", "due_at": "2019-03-12T17:00:00+07:00"})),
                    void(),
                ],
            )
            .await;
        }
        api.store.shutdown().await;
    }
    let api = Api::open(dir.path());
    for (stream, event) in [
        ("dossier-resolved", void()),
        (
            "dossier-withdrawn",
            correct(json!({"reason": "r", "channel": "direct"})),
        ),
        (
            "dossier-rated",
            event(
                "DossierPaid",
                json!({"at": "2019-08-02T08:00:00+07:00", "online": true, "amount": 5}),
            ),
        ),
        (
            "dossier-late-entry",
            at("DossierPaused", "2019-03-07T07:00:00+07:00"),
        ),
    ] {
        let (status, answer) = api.append(stream, vec![event]).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_transition")),
            "{stream}: {answer}"
        );
    }
    let (_, answer) = api.append("dossier-resolved", vec![void()]).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("voided"),
        "{answer}"
    );
}

/// A merged or dissolved agency takes nothing dated after it ceased — no dossier, service
/// or agency below it — and takes what is dated before; an agency that came into being on
/// a day takes nothing dated before it. After a restart too.
#[tokio::test]
async fn agencies_take_only_what_is_dated_while_they_exist() {
    let dir = tempfile::tempdir().unwrap();
    let july = "2025-07-01T00:00:00+07:00";
    let with_at = |mut event: Value| {
        event["data"]["at"] = json!(july);
        event
    };
    {
        let api = Api::open(dir.path());
        reference(&api).await;
        api.ok(
            "agency-26.OLD",
            vec![agency("26.OLD", "commune", Some("26"))],
        )
        .await;
        api.ok(
            "agency-26.NEW",
            vec![with_at(agency("26.NEW", "commune", Some("26")))],
        )
        .await;
        api.ok(
            "agency-26.OLD",
            vec![event("AgencyMerged", json!({"into": "26.NEW", "at": july}))],
        )
        .await;
        api.store.shutdown().await;
    }
    let api = Api::open(dir.path());
    let receipt = |agency: &str, at: &str| {
        let mut event = received(agency, "1.001");
        event["data"]["received_at"] = json!(at);
        event["data"]["due_at"] = json!(at);
        event
    };
    let mut june_agency = agency("26.D", "commune", Some("26.NEW"));
    june_agency["data"]["at"] = json!("2025-06-30T00:00:00+07:00");
    let mut late_service = service("9.9", "26.OLD");
    late_service["data"]["at"] = json!("2025-07-02T08:00:00+07:00");
    for (stream, event, pointer) in [
        (
            "dossier-a",
            receipt("26.OLD", "2025-07-01T08:00:00+07:00"),
            "/events/0/data/agency",
        ),
        (
            "dossier-b",
            receipt("26.NEW", "2025-06-30T08:00:00+07:00"),
            "/events/0/data/agency",
        ),
        ("service-9.9", late_service, "/events/0/data/agency"),
        (
            "agency-26.C",
            agency("26.C", "commune", Some("26.OLD")),
            "/events/0/data/parent",
        ),
        ("agency-26.D", june_agency, "/events/0/data/parent"),
    ] {
        let (status, answer) = api.append(stream, vec![event]).await;
        assert_eq!(
            (
                status,
                answer["error"]["code"].as_str(),
                answer["error"]["details"]["pointer"].as_str()
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("agency_inactive"),
                Some(pointer)
            ),
            "{stream}: {answer}"
        );
    }
    // Dated while each existed: taken (a dossier of June entered late, one of July).
    api.ok(
        "dossier-c",
        vec![receipt("26.OLD", "2025-06-30T08:00:00+07:00")],
    )
    .await;
    api.ok(
        "dossier-d",
        vec![receipt("26.NEW", "2025-07-02T08:00:00+07:00")],
    )
    .await;
    api.ok(
        "agency-26.E",
        vec![agency("26.E", "commune", Some("26.NEW"))],
    )
    .await;
}

#[tokio::test]
async fn ndjson_batches_are_checked_line_by_line_with_the_state_they_build() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path());
    reference(&api).await;
    let line = |stream: &str, mut event: Value| {
        event["stream"] = json!(stream);
        format!("{event}\n")
    };
    let good = line("dossier-b1", received(DEPT, "1.001"))
        + &line("dossier-b1", resolved("2019-03-05T10:00:00+07:00"));
    let bad = [
        (
            good.clone() + &line("dossier-b1", resolved("2019-03-06T10:00:00+07:00")),
            StatusCode::CONFLICT,
            "invalid_transition",
            3,
        ),
        (
            good.clone() + &line("dossier-b2", received("nobody", "1.001")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            3,
        ),
        (
            good.clone()
                + &line(
                    "dossier-b2",
                    with(received(DEPT, "1.001"), "level", json!(1)),
                ),
            StatusCode::BAD_REQUEST,
            "invalid_event",
            3,
        ),
        (
            good.clone() + &line("agency-b2", received(DEPT, "1.001")),
            StatusCode::BAD_REQUEST,
            "wrong_category",
            3,
        ),
    ];
    for (body, status, code, line_number) in bad {
        let before = api.store.head();
        let (got, answer) = api.call("POST", "/v1/events", body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap()),
            (status, code),
            "{answer}"
        );
        assert_eq!(answer["error"]["details"]["line"], line_number, "{answer}");
        assert_eq!(api.store.head(), before);
    }
    let (status, answer) = api.call("POST", "/v1/events", good).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["count"], 2);

    // A body large enough to be decoded on several threads still names the right line.
    let big: Vec<String> = (0..3_000)
        .map(|n| line(&format!("dossier-big{n}"), received(DEPT, "1.001")))
        .collect();
    for bad_line in [1, 1_600, 2_999] {
        let mut lines = big.clone();
        lines[bad_line - 1] = line("dossier-bad", received("nobody", "1.001"));
        let before = api.store.head();
        let (status, answer) = api.call("POST", "/v1/events", lines.concat()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["details"]["line"], bad_line, "{answer}");
        assert_eq!(api.store.head(), before);
        lines[bad_line - 1] = line(
            "dossier-bad",
            with(received(DEPT, "1.001"), "channel", json!("fax")),
        );
        let (status, answer) = api.call("POST", "/v1/events", lines.concat()).await;
        assert_eq!(
            (status, &answer["error"]["details"]["line"]),
            (StatusCode::BAD_REQUEST, &json!(bad_line))
        );
    }
    let (status, answer) = api.call("POST", "/v1/events", big.concat()).await;
    assert_eq!((status, &answer["count"]), (StatusCode::OK, &json!(3_000)));
}

#[tokio::test]
async fn two_clients_resolving_one_dossier_at_once_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path());
    reference(&api).await;
    for n in 0..30 {
        let stream = format!("dossier-race-{n}");
        api.ok(&stream, vec![received(DEPT, "1.001")]).await;
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let router = api.router.clone();
                let body = json!({"events": [resolved("2019-03-05T10:00:00+07:00")]}).to_string();
                let request = Request::post(format!("/v1/streams/{stream}"))
                    .body(Body::from(body))
                    .unwrap();
                tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
            })
            .collect();
        let mut statuses = Vec::new();
        for racer in racers {
            statuses.push(racer.await.unwrap());
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "dossier {n}"
        );
    }
}

#[tokio::test]
async fn the_write_model_is_rebuilt_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let api = Api::open(dir.path());
        reference(&api).await;
        api.store.shutdown().await;
    }
    let api = Api::open(dir.path());
    let (status, answer) = api
        .append(
            "dossier-resolved",
            vec![resolved("2019-03-06T10:00:00+07:00")],
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"))
    );
    let (status, answer) = api.append("dossier-x", vec![received(DEPT, "1.002")]).await;
    assert_eq!(answer["error"]["code"], "service_withdrawn", "{status}");
    api.ok(
        "dossier-paused",
        vec![
            at("DossierResumed", "2019-03-06T08:00:00+07:00"),
            resolved("2019-03-06T10:00:00+07:00"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_schema_is_generated_from_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path());
    let (status, schema) = api.call("GET", "/v1/schema", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let text = schema.to_string();
    for (name, _) in chiso_ingest::EVENT_TYPES {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} missing from the schema"
        );
    }
    assert!(text.contains("date-time"));
    assert!(
        text.contains("deny") || text.contains("additionalProperties"),
        "unknown fields are refused"
    );
}

#[tokio::test]
async fn hostile_bodies_and_names_are_refused_before_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EventStore::open_with(dir.path(), StoreMetrics::default(), IngestModel::new()).unwrap();
    let limits = Limits {
        max_body_bytes: 64 << 10,
        ..Limits::default()
    };
    let api = Api {
        router: router(AppState::new(Ingestor::new(store.clone()), limits)),
        store: store.store().clone(),
    };
    reference(&api).await;
    let huge =
        json!({"events": [with(received(DEPT, "1.001"), "agency", json!("x".repeat(70_000)))]})
            .to_string();
    let long_name = format!("dossier-{}", "x".repeat(300));
    let cases: Vec<(String, Vec<u8>, StatusCode, &str)> = vec![
        (
            "dossier-new".into(),
            huge.into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "dossier-new".into(),
            b"{\"events\": [\xff\xfe]}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "dossier-new".into(),
            b"\xef\xbb\xbf{\"events\": []}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            long_name,
            json!({"events": [received(DEPT, "1.001")]})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_stream_name",
        ),
        (
            "dossier-new".into(),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (stream, body, status, code) in cases {
        let before = api.store.head();
        let (got, answer) = api
            .call("POST", &format!("/v1/streams/{stream}"), body)
            .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{stream}: {answer}"
        );
        assert_eq!(api.store.head(), before);
    }
}

/// The rules' state of every stream, as a restart finds it: the service withdrawn, the
/// dossiers resolved, paused and withdrawn, the tail dossier received.
async fn check_restored_state(api: &Api) {
    let (status, answer) = api
        .append("dossier-tail", vec![received(DEPT, "1.001")])
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_exists")),
        "{answer}"
    );
    let (status, answer) = api
        .append("dossier-new", vec![received(DEPT, "1.002")])
        .await;
    assert_eq!(answer["error"]["code"], "service_withdrawn", "{status}");
    let cases = [
        ("dossier-resolved", resolved("2019-03-06T10:00:00+07:00")),
        ("dossier-withdrawn", resolved("2019-03-06T10:00:00+07:00")),
        (
            "dossier-paused",
            at("DossierPaused", "2019-03-06T08:00:00+07:00"),
        ),
    ];
    for (stream, event) in cases {
        let (status, answer) = api.append(stream, vec![event]).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_transition")),
            "{stream}: {answer}"
        );
    }
}

/// The write model's state lives in the log, per stream: a restart replays only the events
/// the indexer had not stored (none after a clean shutdown), and states stored in another
/// format are rebuilt from the whole log.
#[tokio::test]
async fn a_restart_replays_only_the_tail_the_indexer_had_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let open = |index_batch_runs, index_at_shutdown| {
        let options = chiso_store::LogOptions {
            index_batch_runs,
            index_at_shutdown,
            ..chiso_store::LogOptions::default()
        };
        let store = EventStore::open_with_options(
            dir.path(),
            StoreMetrics::default(),
            IngestModel::new(),
            options,
        )
        .unwrap();
        let state = AppState::new(Ingestor::new(store.clone()), Limits::default());
        Api {
            router: router(state),
            store: store.store().clone(),
        }
    };
    {
        // The indexer writes states every few appends.
        let api = open(4, true);
        reference(&api).await;
        api.store.shutdown().await;
    }
    {
        // As after a crash: what the indexer had not written stays unwritten.
        let api = open(1_000_000, false);
        api.ok("dossier-tail", vec![received(DEPT, "1.001")]).await;
        api.store.shutdown().await;
    }
    let api = open(4, true);
    assert_eq!(api.store.replayed_at_open(), 1, "only the tail is replayed");
    check_restored_state(&api).await;
    api.store.shutdown().await;
    drop(api);
    let api = open(4, true);
    assert_eq!(
        api.store.replayed_at_open(),
        0,
        "a clean shutdown stored every state"
    );
    check_restored_state(&api).await;
    // States of another format (an older chiso's) are rebuilt from the whole log.
    api.store
        .put_setting(b"chiso/log/states-format", &[0, 0, 0, 0])
        .unwrap();
    api.store.shutdown().await;
    let head = api.store.head();
    drop(api);
    let api = open(4, true);
    assert_eq!(api.store.replayed_at_open(), head);
    check_restored_state(&api).await;
    api.ok(
        "dossier-paused",
        vec![at("DossierResumed", "2019-03-06T08:00:00+07:00")],
    )
    .await;
    let (status, answer) = api
        .append(
            "dossier-paused",
            vec![at("DossierResumed", "2019-03-07T08:00:00+07:00")],
        )
        .await;
    assert_eq!(
        answer["error"]["code"], "invalid_transition",
        "{status}: resumed once"
    );
}

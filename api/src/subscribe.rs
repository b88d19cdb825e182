//! `GET /v1/subscribe`: Server-Sent Events, catch-up then live. Each message is one event with
//! its position as the SSE `id`, so a client resumes with `Last-Event-ID`.

use crate::error::{ApiError, Result};
use crate::log::invalid_query;
use crate::wire::EventOut;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chiso_store::{category_of, RecordedEvent};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CHUNK: usize = 1_000;

/// Query of `GET /v1/subscribe`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    from: Option<u64>,
    /// Comma-separated categories (`dossier,service`); all when absent.
    category: Option<String>,
}

/// Streams the log from `from` (or after `Last-Event-ID`) as SSE.
pub async fn subscribe(
    State(state): State<AppState>,
    principal: crate::Principal,
    headers: HeaderMap,
    query: std::result::Result<Query<SubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    principal.require_query()?;
    let Query(query) = query.map_err(invalid_query)?;
    let from = match last_event_id(&headers)? {
        Some(seen) => seen.checked_add(1).ok_or_else(bad_last_event_id)?,
        None => query.from.unwrap_or(0),
    };
    let categories: Option<Vec<String>> = query
        .category
        .map(|c| c.split(',').map(|s| s.trim().to_owned()).collect());
    let (tx, rx) = mpsc::channel(CHUNK);
    let mut subscription = state.store.subscribe(from);
    let shutdown = state.shutdown.clone();
    let revoked = state.auth.revocation(&headers).unwrap_or_default();
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = revoked.cancelled() => break,
                _ = tx.closed() => break,
                batch = subscription.next_batch(CHUNK) => batch,
            };
            let Ok(events) = batch else { break };
            for event in events.iter().filter(|e| wanted(e, categories.as_deref())) {
                let Some(message) = sse_event(event) else {
                    return;
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    });
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(keep_alive))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(bad_last_event_id)
}

fn bad_last_event_id() -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        "Last-Event-ID must be the position of an event (a whole number)",
    )
}

fn wanted(event: &RecordedEvent, categories: Option<&[String]>) -> bool {
    categories.is_none_or(|cs| cs.iter().any(|c| c == category_of(&event.stream)))
}

fn sse_event(event: &RecordedEvent) -> Option<Event> {
    let json = EventOut::new(event)
        .and_then(|out| serde_json::to_string(&out).map_err(|e| ApiError::internal(&e)))
        .ok()?;
    Some(Event::default().id(event.position.to_string()).data(json))
}

//! `GET /v1/subscribe`: Server-Sent Events, catch-up then live. Each message is one event with
//! its position as the SSE `id`, so a client resumes with `Last-Event-ID`.

use crate::error::{ApiError, Result};
use crate::log::invalid_query;
use crate::wire::EventOut;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chiso_query::{LogScope, ReadScope, SqlEngine};
use chiso_store::{category_of, EventStore, RecordedEvent, StreamName};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CHUNK: usize = 1_000;

/// Query of `GET /v1/subscribe`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscribeQuery {
    /// The position to start at (default: the live head).
    from: Option<u64>,
    /// Comma-separated categories (`dossier,service`); all when absent.
    category: Option<String>,
}

/// How long a scoped subscription waits for the tables to fold an agency's change.
const REFOLD: Duration = Duration::from_secs(10);

/// Streams the log from `from` (or after `Last-Event-ID`) as SSE.
#[utoipa::path(get, path = "/v1/subscribe", tag = "log", security(("bearer" = [])), params(SubscribeQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position")),
    responses((status = 200, description = "Server-Sent Events: stored events, then live; `id:` is the position", content_type = "text/event-stream"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
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
    let categories = query.category.as_deref().map(categories).transpose()?;
    let (tx, rx) = mpsc::channel(CHUNK);
    let mut subscription = match categories {
        Some(categories) => state.store.subscribe_categories(from, categories),
        None => state.store.subscribe(from),
    };
    let shutdown = state.shutdown.clone();
    let revoked = state.auth.revocation(&headers).unwrap_or_default();
    // The tables' position first: the scope resolved after it includes every agency before it.
    let resolved_at = state.sql.as_ref().map_or(0, |e| e.projections().position());
    let mut scoped = crate::log::log_scope(&state, &principal)?.map(|scope| ScopedFeed {
        scope,
        refresh: state.sql.clone().zip(principal.read_scope()),
        resolved_at,
        store: state.store.clone(),
    });
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = revoked.cancelled() => break,
                _ = tx.closed() => break,
                batch = subscription.next_batch(CHUNK) => batch,
            };
            let Ok(mut events) = batch else { break };
            // Only the caller's events (a stream's first event may have to be read).
            if let Some(mut feed) = scoped.take() {
                let runtime = tokio::runtime::Handle::current();
                let kept = tokio::task::spawn_blocking(move || {
                    let kept = feed.keep(events, &runtime);
                    kept.map(|kept| (kept, feed))
                })
                .await;
                let Ok(Ok((kept, feed))) = kept else { break };
                (events, scoped) = (kept, Some(feed));
            }
            for event in &events {
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

/// A scoped subscription's filter: its scope, resolved again after each agency change it
/// streams (once the tables have folded it), so a unit registered below it is in it from then.
struct ScopedFeed {
    scope: LogScope,
    /// What resolves the scope again.
    refresh: Option<(SqlEngine, ReadScope)>,
    /// The tables' position when the scope was last resolved: changes before it are in it.
    resolved_at: u64,
    store: EventStore,
}

impl ScopedFeed {
    /// The events of `events` the scope reads (blocking: it may read streams' first events).
    fn keep(
        &mut self,
        events: Vec<RecordedEvent>,
        runtime: &tokio::runtime::Handle,
    ) -> chiso_store::Result<Vec<RecordedEvent>> {
        let mut kept = Vec::with_capacity(events.len());
        for event in events {
            let changed =
                category_of(&event.stream) == "agency" && event.position >= self.resolved_at;
            if let Some((engine, read_scope)) = self.refresh.as_ref().filter(|_| changed) {
                let _ = runtime.block_on(engine.projections().wait_for(event.position, REFOLD));
                self.resolved_at = engine.projections().position();
                if let Some(scope) = engine.log_scope(read_scope) {
                    self.scope = scope;
                }
            }
            if self.scope.sees(&self.store, &event)? {
                kept.push(event);
            }
        }
        Ok(kept)
    }
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

/// The categories of `category=dossier,service`: at least one, each a valid category name.
fn categories(list: &str) -> Result<Vec<String>> {
    let names: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let invalid =
        |reason: &str| ApiError::bad_request("invalid_parameter", format!("category: {reason}"));
    if names.is_empty() {
        return Err(invalid(
            "name at least one category (category=dossier,service)",
        ));
    }
    let not_a_category = |name: &&String| name.contains('-') || StreamName::new(*name).is_err();
    if let Some(name) = names.iter().find(not_a_category) {
        return Err(invalid(&format!(
            "{name:?} is not a category: the part of a stream name before its first '-'"
        )));
    }
    Ok(names)
}

fn sse_event(event: &RecordedEvent) -> Option<Event> {
    let json = EventOut::new(event)
        .and_then(|out| serde_json::to_string(&out).map_err(|e| ApiError::internal(&e)))
        .ok()?;
    Some(Event::default().id(event.position.to_string()).data(json))
}

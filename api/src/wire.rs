//! JSON shapes of the log API (ARCHITECTURE.md §6), decoded strictly: unknown fields are refused.

use crate::error::{ApiError, Result};
use chiso_ingest::{Checked, Checker};
use chiso_store::{ExpectedRevision, ProposedEvent, RecordedEvent, StreamName};
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Longest event type name, in bytes.
const MAX_TYPE_LEN: usize = 128;

/// Body of `POST /v1/streams/{stream}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// `"any"` (the default), `"no_stream"`, `"stream_exists"` or the stream's current
    /// revision.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub expected_revision: WireExpectedRevision,
    /// The events, in order.
    pub events: Vec<EventIn>,
}

/// One event of a request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Client-chosen UUID: a retry with the same id is not appended twice.
    #[schema(value_type = String)]
    pub id: Uuid,
    /// Event type (the catalog: `GET /v1/schema`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// JSON object.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// JSON object, `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

/// One line of `POST /v1/events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonLine {
    /// Target stream.
    pub stream: String,
    /// Defaults to `any`.
    #[serde(default)]
    pub expected_revision: WireExpectedRevision,
    /// Client-chosen UUID.
    pub id: Uuid,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// JSON object.
    pub data: Box<RawValue>,
    /// JSON object, `{}` when absent.
    pub metadata: Option<Box<RawValue>>,
}

impl NdjsonLine {
    /// The event part of the line.
    pub fn into_event(self) -> (String, WireExpectedRevision, EventIn) {
        let event = EventIn {
            id: self.id,
            event_type: self.event_type,
            data: self.data,
            metadata: self.metadata,
        };
        (self.stream, self.expected_revision, event)
    }
}

impl EventIn {
    /// Checks the envelope (type name, object data and metadata), then the event itself as
    /// of `now` by the ingestor's `checker` (the catalog, ARCHITECTURE.md §4). `pointer`
    /// locates the event in the request for error messages.
    pub fn into_checked(
        self,
        pointer: &str,
        stream: &StreamName,
        checker: Checker,
        now: DateTime<Utc>,
    ) -> Result<Checked> {
        check_type_name(&self.event_type, pointer)?;
        let data = object_text(self.data, pointer, "data")?;
        let metadata = match self.metadata {
            Some(metadata) => object_text(metadata, pointer, "metadata")?,
            None => "{}".to_owned(),
        };
        let envelope = ProposedEvent {
            id: self.id,
            event_type: self.event_type,
            data,
            metadata,
            decoded: (),
        };
        checker
            .check(stream, envelope, now)
            .map_err(|e| ApiError::from_ingest(e, pointer))
    }
}

fn check_type_name(name: &str, pointer: &str) -> Result<()> {
    let well_formed = name.len() <= MAX_TYPE_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if well_formed {
        return Ok(());
    }
    Err(invalid_event(
        &format!("{pointer}/type"),
        "type",
        "must be a letter followed by letters, digits, '_' or '.', at most 128 bytes",
    ))
}

/// Deepest nesting of objects and arrays accepted in `data` and `metadata`.
const MAX_DEPTH: usize = 32;

/// The text of the event's `field` (`data` or `metadata`), which must be an object.
fn object_text(raw: Box<RawValue>, event_pointer: &str, field: &str) -> Result<String> {
    let refuse = |message| invalid_event(&format!("{event_pointer}/{field}"), field, message);
    if !raw.get().starts_with('{') {
        return Err(refuse("must be a JSON object"));
    }
    if nesting_depth(raw.get()) > MAX_DEPTH {
        return Err(refuse("nests objects and arrays deeper than 32 levels"));
    }
    Ok(String::from(Box::<str>::from(raw)))
}

/// Deepest nesting of `{`/`[` in valid JSON text (brackets inside strings do not count).
fn nesting_depth(json: &str) -> usize {
    let bytes = json.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::nesting_depth;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(nesting_depth(r#"{"a":"\"[["}"#), 1);
        assert_eq!(nesting_depth("{}"), 1);
    }
}

/// 400 `invalid_event`: the message names the event's `field`, the details hold its pointer.
pub fn invalid_event(pointer: &str, field: &str, message: &str) -> ApiError {
    ApiError::bad_request("invalid_event", format!("{field} {message}"))
        .with_details(json!({"pointer": pointer}))
}

/// `expected_revision` on the wire: `"any"`, `"no_stream"`, `"stream_exists"` or a number.
#[derive(Default, Clone, Copy)]
pub struct WireExpectedRevision(pub ExpectedRevision);

impl<'de> Deserialize<'de> for WireExpectedRevision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExpectedVisitor;
        impl Visitor<'_> for ExpectedVisitor {
            type Value = WireExpectedRevision;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#""any", "no_stream", "stream_exists" or a revision number"#)
            }
            fn visit_u64<E: de::Error>(self, revision: u64) -> Result<Self::Value, E> {
                Ok(WireExpectedRevision(ExpectedRevision::Exact(revision)))
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<Self::Value, E> {
                let expected = match word {
                    "any" => ExpectedRevision::Any,
                    "no_stream" => ExpectedRevision::NoStream,
                    "stream_exists" => ExpectedRevision::StreamExists,
                    _ => return Err(E::invalid_value(de::Unexpected::Str(word), &self)),
                };
                Ok(WireExpectedRevision(expected))
            }
        }
        deserializer.deserialize_any(ExpectedVisitor)
    }
}

/// An event as the API answers it.
#[derive(Serialize)]
pub struct EventOut<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a RawValue,
    metadata: &'a RawValue,
    recorded_at: String,
    /// Who appended it; absent for events written before authors were recorded.
    #[serde(skip_serializing_if = "str::is_empty")]
    recorded_by: &'a str,
}

impl<'a> EventOut<'a> {
    /// Borrows a stored event for serialisation.
    pub fn new(event: &'a RecordedEvent) -> Result<Self> {
        let raw = |text: &'a str| -> Result<&'a RawValue> {
            serde_json::from_str(text).map_err(|e| ApiError::internal(&e))
        };
        Ok(Self {
            position: event.position,
            stream: &event.stream,
            revision: event.revision,
            id: event.id,
            event_type: &event.event_type,
            data: raw(&event.data)?,
            metadata: raw(&event.metadata)?,
            recorded_at: format_micros(event.recorded_at_micros),
            recorded_by: &event.recorded_by,
        })
    }
}

/// RFC 3339 in UTC with microseconds.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `{"events": [...]}` for a read, serialised straight from the stored JSON texts.
pub fn events_response(events: &[RecordedEvent]) -> Result<axum::response::Response> {
    #[derive(Serialize)]
    struct EventsBody<'a> {
        events: Vec<EventOut<'a>>,
    }
    let events = events.iter().map(EventOut::new).collect::<Result<_>>()?;
    let body = serde_json::to_vec(&EventsBody { events }).map_err(|e| ApiError::internal(&e))?;
    let content_type = [(axum::http::header::CONTENT_TYPE, "application/json")];
    Ok(axum::response::IntoResponse::into_response((
        content_type,
        body,
    )))
}

//! The event catalog (ARCHITECTURE.md §4): one typed struct per event, each allowed in one stream
//! category, decoded strictly (unknown fields are refused) and checked on its own: value
//! ranges, times, and that the stream names what the data says.

mod events;

pub use events::*;

use crate::error::{IngestError, Result};
use chiso_store::StreamName;
use chrono::{DateTime, Datelike, Duration, FixedOffset, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A stream category of the catalog: the part of a stream name before the first `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `agency-{code}`
    Agency,
    /// `service-{code}`
    Service,
    /// `dossier-{id}`
    Dossier,
    /// `ictindex-{year}`
    IctIndex,
    /// `ranking-{YYYY-MM}`
    Ranking,
    /// `calendar-{year}`
    Calendar,
    /// `token-{id}`: written by chiso as tokens are created and revoked.
    Token,
}

impl Category {
    /// Every category, in catalog order.
    pub const ALL: [Category; 7] = [
        Self::Agency,
        Self::Service,
        Self::Dossier,
        Self::IctIndex,
        Self::Ranking,
        Self::Calendar,
        Self::Token,
    ];

    /// The category's prefix in stream names.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Service => "service",
            Self::Dossier => "dossier",
            Self::IctIndex => "ictindex",
            Self::Ranking => "ranking",
            Self::Calendar => "calendar",
            Self::Token => "token",
        }
    }

    /// The category of a stream and the id after its prefix.
    pub fn of(stream: &StreamName) -> Result<(Self, &str)> {
        let name = stream.as_str();
        Self::ALL
            .into_iter()
            .find_map(|category| {
                let id = name.strip_prefix(category.prefix())?.strip_prefix('-')?;
                (!id.is_empty()).then_some((category, id))
            })
            .ok_or_else(|| {
                let known: Vec<String> = Self::ALL
                    .iter()
                    .map(|c| format!("{}-…", c.prefix()))
                    .collect();
                IngestError::malformed(
                    "unknown_category",
                    format!(
                        "stream {name} is in no category of the catalog; streams are {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

/// A decoded event of the catalog, tagged by its type as on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    /// `agency-{code}`
    AgencyRegistered(AgencyRegistered),
    /// `agency-{code}`
    AgencyRenamed(AgencyRenamed),
    /// `agency-{code}`
    AgencyMoved(AgencyMoved),
    /// `agency-{code}`
    AgencyMerged(AgencyMerged),
    /// `agency-{code}`
    AgencyDissolved(AgencyDissolved),
    /// `service-{code}`
    ServiceLaunched(ServiceLaunched),
    /// `service-{code}`
    ServiceLevelChanged(ServiceLevelChanged),
    /// `service-{code}`
    ServiceWithdrawn(ServiceWithdrawn),
    /// `dossier-{id}`
    DossierReceived(DossierReceived),
    /// `dossier-{id}`
    DossierPaused(DossierPaused),
    /// `dossier-{id}`
    DossierResumed(DossierResumed),
    /// `dossier-{id}`
    DossierResolved(DossierResolved),
    /// `dossier-{id}`
    DossierWithdrawn(DossierWithdrawn),
    /// `dossier-{id}`
    DossierPaid(DossierPaid),
    /// `dossier-{id}`
    DossierRated(DossierRated),
    /// `dossier-{id}`
    DossierCorrected(DossierCorrected),
    /// `dossier-{id}`
    DossierVoided(DossierVoided),
    /// `ictindex-{year}`
    IctIndexPublished(IctIndexPublished),
    /// `ranking-{YYYY-MM}`
    RankingPublished(RankingPublished),
    /// `calendar-{year}`
    HolidayDeclared(HolidayDeclared),
    /// `calendar-{year}`
    WorkdaySwapped(WorkdaySwapped),
    /// `token-{id}` (chiso's own)
    TokenCreated(TokenCreated),
    /// `token-{id}` (chiso's own)
    TokenRevoked(TokenRevoked),
}

/// Every event type with its category, in catalog order.
pub const EVENT_TYPES: [(&str, Category); 23] = [
    ("AgencyRegistered", Category::Agency),
    ("AgencyRenamed", Category::Agency),
    ("AgencyMoved", Category::Agency),
    ("AgencyMerged", Category::Agency),
    ("AgencyDissolved", Category::Agency),
    ("ServiceLaunched", Category::Service),
    ("ServiceLevelChanged", Category::Service),
    ("ServiceWithdrawn", Category::Service),
    ("DossierReceived", Category::Dossier),
    ("DossierPaused", Category::Dossier),
    ("DossierResumed", Category::Dossier),
    ("DossierResolved", Category::Dossier),
    ("DossierWithdrawn", Category::Dossier),
    ("DossierPaid", Category::Dossier),
    ("DossierRated", Category::Dossier),
    ("DossierCorrected", Category::Dossier),
    ("DossierVoided", Category::Dossier),
    ("IctIndexPublished", Category::IctIndex),
    ("RankingPublished", Category::Ranking),
    ("HolidayDeclared", Category::Calendar),
    ("WorkdaySwapped", Category::Calendar),
    ("TokenCreated", Category::Token),
    ("TokenRevoked", Category::Token),
];

/// The latest version of an event type of the catalog (1 for a type that never changed).
pub fn latest_version(event_type: &str) -> u32 {
    match event_type {
        "DossierReceived" => 2,
        _ => 1,
    }
}

/// The version an event says it is in: `metadata.$version`, 1 when absent (every event written
/// before versions existed). The stored bytes keep it: an event is upcast each time it is
/// read, never rewritten.
pub fn version_of(metadata: &str) -> Result<u32> {
    // Nearly every event has no version: its metadata is not parsed at all.
    if !metadata.contains("$version") && !metadata.contains('\\') {
        return Ok(1);
    }
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(rename = "$version")]
        version: Option<serde_json::Value>,
    }
    let invalid = || {
        IngestError::malformed(
            "invalid_event",
            "metadata.$version must be a positive integer (1 when absent)",
        )
        .at("/metadata/$version")
    };
    let versioned: Versioned = serde_json::from_str(metadata).map_err(|_| invalid())?;
    match versioned.version {
        None => Ok(1),
        Some(version) => version
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(invalid),
    }
}

/// Decodes and checks one event for `stream`: its type must belong to the stream's category,
/// its version (`metadata.$version`) must be one of its type's, its data must have exactly
/// that version's fields, and its values must be in range. `now` bounds the times (no more
/// than a day ahead).
pub fn decode(
    stream: &StreamName,
    event_type: &str,
    data: &str,
    metadata: &str,
    now: DateTime<Utc>,
) -> Result<DomainEvent> {
    let (category, id) = Category::of(stream)?;
    let Some(&(_, expected)) = EVENT_TYPES.iter().find(|(name, _)| *name == event_type) else {
        let known: Vec<&str> = EVENT_TYPES.iter().map(|(name, _)| *name).collect();
        return Err(IngestError::malformed(
            "unknown_event_type",
            format!(
                "{event_type} is not an event type of the catalog ({})",
                known.join(", ")
            ),
        )
        .at("/type"));
    };
    if expected != category {
        return Err(IngestError::malformed(
            "wrong_category",
            format!(
                "{event_type} belongs in {}-… streams, not in {stream}",
                expected.prefix()
            ),
        )
        .at("/type"));
    }
    let event = parse_data(event_type, version_of(metadata)?, data)?;
    event.check(id, &Limits::at(now))?;
    Ok(event)
}

/// The point of the log's hash chain an event copied, if any: a `RankingPublished` with
/// `chain` (its figures' log position and chain hash), for `chiso verify` to check.
pub fn anchor_of(event_type: &str, data: &str) -> Option<(u64, [u8; 32])> {
    if event_type != "RankingPublished" || !data.contains("\"chain\"") {
        return None;
    }
    let anchor = serde_json::from_str::<RankingPublished>(data).ok()?.chain?;
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(anchor.hash.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((anchor.position, hash))
}

/// Decodes a stored event, upcast to its type's latest version, without the checks that
/// depend on the clock (for replay).
pub fn decode_stored(event_type: &str, data: &str, metadata: &str) -> Result<DomainEvent> {
    parse_data(event_type, version_of(metadata)?, data)
}

fn parse_data(event_type: &str, version: u32, data: &str) -> Result<DomainEvent> {
    fn typed<T: DeserializeOwned>(data: &str, wrap: fn(T) -> DomainEvent) -> Result<DomainEvent> {
        match serde_json::from_str(data) {
            Ok(value) => Ok(wrap(value)),
            Err(_) => Err(explain::<T>(data)),
        }
    }
    let latest = latest_version(event_type);
    if version > latest {
        let versions: Vec<String> = (1..=latest).map(|v| v.to_string()).collect();
        return Err(IngestError::malformed(
            "unknown_version",
            format!(
                "{event_type} has no version {version} (its versions: {})",
                versions.join(", ")
            ),
        )
        .at("/metadata/$version"));
    }
    match (event_type, version) {
        ("DossierReceived", 1) => typed(data, |v1: DossierReceivedV1| {
            DomainEvent::DossierReceived(v1.into())
        }),
        ("DossierReceived", _) => typed(data, |v2: DossierReceivedV2| {
            DomainEvent::DossierReceived(v2.into())
        }),
        ("AgencyRegistered", _) => typed(data, DomainEvent::AgencyRegistered),
        ("AgencyRenamed", _) => typed(data, DomainEvent::AgencyRenamed),
        ("AgencyMoved", _) => typed(data, DomainEvent::AgencyMoved),
        ("AgencyMerged", _) => typed(data, DomainEvent::AgencyMerged),
        ("AgencyDissolved", _) => typed(data, DomainEvent::AgencyDissolved),
        ("ServiceLaunched", _) => typed(data, DomainEvent::ServiceLaunched),
        ("ServiceLevelChanged", _) => typed(data, DomainEvent::ServiceLevelChanged),
        ("ServiceWithdrawn", _) => typed(data, DomainEvent::ServiceWithdrawn),
        ("DossierPaused", _) => typed(data, DomainEvent::DossierPaused),
        ("DossierResumed", _) => typed(data, DomainEvent::DossierResumed),
        ("DossierResolved", _) => typed(data, DomainEvent::DossierResolved),
        ("DossierWithdrawn", _) => typed(data, DomainEvent::DossierWithdrawn),
        ("DossierPaid", _) => typed(data, DomainEvent::DossierPaid),
        ("DossierRated", _) => typed(data, DomainEvent::DossierRated),
        ("DossierCorrected", _) => typed(data, DomainEvent::DossierCorrected),
        ("DossierVoided", _) => typed(data, DomainEvent::DossierVoided),
        ("IctIndexPublished", _) => typed(data, DomainEvent::IctIndexPublished),
        ("RankingPublished", _) => typed(data, DomainEvent::RankingPublished),
        ("HolidayDeclared", _) => typed(data, DomainEvent::HolidayDeclared),
        ("WorkdaySwapped", _) => typed(data, DomainEvent::WorkdaySwapped),
        ("TokenCreated", _) => typed(data, DomainEvent::TokenCreated),
        ("TokenRevoked", _) => typed(data, DomainEvent::TokenRevoked),
        (other, _) => Err(IngestError::malformed(
            "unknown_event_type",
            format!("{other} is not an event type of the catalog"),
        )),
    }
}

/// Parses again with path tracking to name the field that made the fast parse fail.
fn explain<T: DeserializeOwned>(data: &str) -> IngestError {
    let mut deserializer = serde_json::Deserializer::from_str(data);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => error,
        Ok(_) => {
            return IngestError::malformed("invalid_event", "data has trailing characters")
                .at("/data")
        }
    };
    let pointer = format!("/data{}", json_pointer(error.path()));
    let message = format!("{}: {}", field_name(&pointer), error.into_inner());
    IngestError::malformed("invalid_event", message).at(pointer)
}

/// A serde path (`events[0].id`) as an RFC 6901 JSON pointer (`/events/0/id`).
pub fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(format!("/{index}")),
            Segment::Map { key } => Some(format!("/{}", key.replace('~', "~0").replace('/', "~1"))),
            Segment::Enum { variant } => Some(format!("/{variant}")),
            Segment::Unknown => None,
        })
        .collect()
}

/// A JSON pointer as a field name for messages (`/data/due_at` → `data.due_at`): messages
/// name fields in words, the pointer itself goes only in an answer's details.
pub fn field_name(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The bounds an event's values are checked against.
pub struct Limits {
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
    latest_year: i32,
}

impl Limits {
    /// Times from 2000-01-01 to one day after `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            earliest: DateTime::from_timestamp(946_684_800, 0).expect("2000-01-01T00:00:00Z"),
            latest: now + Duration::days(1),
            latest_year: now.year() + 1,
        }
    }

    /// Checks a time of the event named by `pointer`.
    pub fn time(&self, time: &Timestamp, pointer: &str) -> Result<()> {
        let utc = time.0.with_timezone(&Utc);
        if utc < self.earliest || utc > self.latest {
            return Err(IngestError::unprocessable(
                "time_out_of_range",
                format!(
                    "{}: {} is outside 2000-01-01 … {} (times may be at most a day ahead)",
                    field_name(pointer),
                    time.0.to_rfc3339(),
                    self.latest.format("%Y-%m-%d %H:%M UTC")
                ),
            )
            .at(pointer));
        }
        Ok(())
    }
}

/// A time with an explicit UTC offset, RFC 3339 (`2019-03-04T08:00:00+07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(Timestamp)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 time with an offset, e.g. 2019-03-04T08:00:00+07:00"
            ))
            })
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with an offset, e.g. 2019-03-04T08:00:00+07:00"
        })
    }
}

/// The JSON Schema of the catalog: the envelope's `type` and the `data` of each type in its
/// latest version, and under `x-chiso-versions` every version of the types that have more than
/// one, with where the version is given.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(DomainEvent);
    let mut document = serde_json::to_value(schema).expect("a schema is JSON");
    let version = |schema: schemars::Schema| serde_json::to_value(schema).expect("JSON");
    document["x-chiso-versions"] = serde_json::json!({
        "in": "metadata.$version (an integer; 1 when absent)",
        "types": {
            "DossierReceived": {
                "latest": latest_version("DossierReceived"),
                "versions": {
                    "1": version(schemars::schema_for!(DossierReceivedV1)),
                    "2": version(schemars::schema_for!(DossierReceivedV2)),
                },
                "upcast": "version 1 folds as version 2 with procedure_code and applicant null",
            }
        }
    });
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(event_type: &str) -> (&'static str, String) {
        let at = r#""at": "2019-03-05T10:00:00+07:00""#;
        match event_type {
            "AgencyRegistered" => ("agency-26", r#"{"code": "26", "name": "Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}"#.into()),
            "AgencyRenamed" => ("agency-26", format!(r#"{{"name": "Phú Thọ", {at}}}"#)),
            "AgencyMoved" => ("agency-26.243", format!(r#"{{"parent": "25", {at}}}"#)),
            "AgencyMerged" => ("agency-26", format!(r#"{{"into": "25", {at}}}"#)),
            "AgencyDissolved" => ("agency-26.243", format!("{{{at}}}")),
            "ServiceLaunched" => ("service-1.001", format!(r#"{{"code": "1.001", "agency": "26", "name": "n", "field": "f", "level": 2, {at}}}"#)),
            "ServiceLevelChanged" => ("service-1.001", format!(r#"{{"level": 4, {at}}}"#)),
            "DossierReceived" => ("dossier-1", r#"{"agency": "26", "service": "1.001", "channel": "postal", "received_at": "2019-03-04T23:30:00+07:00", "due_at": "2019-03-04T23:30:00+07:00"}"#.into()),
            "DossierResolved" => ("dossier-1", format!(r#"{{{at}, "outcome": "rejected"}}"#)),
            "DossierPaid" => ("dossier-1", format!(r#"{{{at}, "online": false, "amount": 0}}"#)),
            "DossierRated" => ("dossier-1", format!(r#"{{{at}, "score": 1}}"#)),
            "DossierCorrected" => ("dossier-1", format!(r#"{{{at}, "reason": "kênh nhập sai", "channel": "online", "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}}"#)),
            "DossierVoided" => ("dossier-1", format!(r#"{{{at}, "reason": "nhập trùng"}}"#)),
            "IctIndexPublished" => ("ictindex-2019", r#"{"year": 2019, "province": "48", "rank": 1, "score": 0.8654}"#.into()),
            "RankingPublished" => ("ranking-2019-12", r#"{"month": "2019-12", "scope": "26/district", "metric": "scorecard", "entries": []}"#.into()),
            "ServiceWithdrawn" => ("service-1.001", format!("{{{at}}}")),
            "HolidayDeclared" => ("calendar-2025", r#"{"holiday": "tet", "name": "Tết Nguyên đán", "dates": ["2025-01-27", "2025-01-31"], "source": "Công văn 8726/VPCP-KGVX"}"#.into()),
            "TokenCreated" => ("token-0123456789abcdef", format!(r#"{{"id": "0123456789abcdef", "name": "Sở Tư pháp", "scopes": ["append:26.001"], {at}}}"#)),
            "TokenRevoked" => ("token-0123456789abcdef", format!(r#"{{"id": "0123456789abcdef", {at}}}"#)),
            "WorkdaySwapped" => ("calendar-2025", r#"{"from": "2025-05-02", "to": "2025-04-26", "source": "Công văn 8726/VPCP-KGVX"}"#.into()),
            _ => ("dossier-1", format!("{{{at}}}")),
        }
    }

    /// A JSON leaf of any type, including the awkward ones (huge numbers, odd text, times).
    fn leaf() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "\\PC{0,40}".prop_map(serde_json::Value::from),
            "(19|20|99)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})"
                .prop_map(serde_json::Value::from),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(|v| serde_json::json!(v)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// A valid event with one field replaced, removed or added, for every type: decoding
        /// answers or refuses, never panics, and a refusal names a field of the event.
        #[test]
        fn changed_events_are_judged_never_panicking(
            which in 0..EVENT_TYPES.len(),
            field in proptest::sample::select(vec!["code", "agency", "service", "at", "received_at", "due_at", "level", "score", "rank", "year", "month", "entries", "parent", "province", "outcome", "amount", "kind", "holiday", "dates", "from", "to", "source", "reason", "channel", "name", "into", "other"]),
            value in leaf(),
            remove in proptest::prelude::any::<bool>(),
        ) {
            let (event_type, _) = EVENT_TYPES[which];
            let (stream, data) = sample(event_type);
            let mut data: serde_json::Value = serde_json::from_str(&data).unwrap();
            let object = data.as_object_mut().unwrap();
            match remove {
                true => { object.remove(field); }
                false => { object.insert(field.to_owned(), value); }
            }
            let stream = StreamName::new(stream).unwrap();
            if let Err(error) = decode(&stream, event_type, &data.to_string(), "{}", Utc::now()) {
                let pointer = error.pointer.unwrap_or_default();
                proptest::prop_assert!(pointer.is_empty() || pointer.starts_with("/data") || pointer == "/type", "{pointer}");
                proptest::prop_assert!(!error.message.is_empty());
            }
        }

        /// Any text as `data` of any type in any stream: an answer or a refusal, never a panic.
        #[test]
        fn any_text_as_data_never_panics(
            which in 0..EVENT_TYPES.len(),
            stream in "(agency|service|dossier|ictindex|ranking|calendar|other)-[A-Za-z0-9._-]{0,12}",
            data in "\\PC{0,120}|\\{(\"[a-z_]{1,12}\": ?(null|true|-?[0-9]{1,25}(\\.[0-9]{0,5})?|\"[^\"]{0,20}\"), ?){0,6}\"x\": 1\\}",
        ) {
            let stream = StreamName::new(stream).unwrap();
            let _ = decode(&stream, EVENT_TYPES[which].0, &data, "{}", Utc::now());
            let _ = decode_stored(EVENT_TYPES[which].0, &data, r#"{"$version": 2}"#);
        }
    }

    #[test]
    fn every_type_of_the_catalog_decodes_a_valid_sample() {
        for (event_type, category) in EVENT_TYPES {
            let (stream, data) = sample(event_type);
            let stream = StreamName::new(stream).unwrap();
            assert_eq!(Category::of(&stream).unwrap().0, category);
            let event = decode(&stream, event_type, &data, "{}", Utc::now())
                .unwrap_or_else(|e| panic!("{event_type}: {e}"));
            let wire = serde_json::to_value(&event).unwrap();
            assert_eq!(wire["type"], event_type, "the tag is the wire type");
        }
    }

    #[test]
    fn versions_come_from_the_metadata_and_upcast() {
        let stream = StreamName::new("dossier-1").unwrap();
        let v1 = r#"{"agency": "26", "service": "1.001", "channel": "online", "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-08T17:00:00+07:00"}"#;
        let v2 = r#"{"agency": "26", "service": "1.001", "channel": "online", "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-08T17:00:00+07:00", "procedure_code": "1.011442.000.00.00.H38", "applicant": "business"}"#;
        let received =
            |data, metadata| match decode(&stream, "DossierReceived", data, metadata, Utc::now()) {
                Ok(DomainEvent::DossierReceived(e)) => Ok((e.procedure_code, e.applicant)),
                Ok(other) => panic!("{other:?}"),
                Err(error) => Err((error.code, error.pointer)),
            };
        assert_eq!(received(v1, "{}"), Ok((None, None)));
        assert_eq!(
            received(v1, r#"{"$version": 1, "by": "x"}"#),
            Ok((None, None))
        );
        assert_eq!(
            received(v2, r#"{"$version": 2}"#),
            Ok((
                Some("1.011442.000.00.00.H38".into()),
                Some(Applicant::Business)
            ))
        );
        // Version 2's fields are not version 1's, and version 2 needs them.
        assert_eq!(received(v2, "{}").unwrap_err().0, "invalid_event");
        assert_eq!(
            received(v1, r#"{"$version": 2}"#).unwrap_err().0,
            "invalid_event"
        );
        let unknown = received(v1, r#"{"$version": 3}"#).unwrap_err();
        assert_eq!(
            unknown,
            ("unknown_version", Some("/metadata/$version".into()))
        );
        assert_eq!(
            received(v1, r#"{"$version": "2"}"#).unwrap_err().0,
            "invalid_event"
        );
        assert_eq!(
            received(v1, r#"{"$version": 0}"#).unwrap_err().0,
            "invalid_event"
        );
        // A type with one version has no version 2.
        let stream = StreamName::new("dossier-1").unwrap();
        let resolved = decode(
            &stream,
            "DossierResolved",
            r#"{"at": "2019-03-05T10:00:00+07:00", "outcome": "approved"}"#,
            r#"{"$version": 2}"#,
            Utc::now(),
        );
        assert_eq!(resolved.unwrap_err().code, "unknown_version");
        // Escaped keys are read as what they are.
        assert_eq!(
            received(v1, r#"{"\u0024version": 3}"#).unwrap_err().0,
            "unknown_version"
        );
        let schema = json_schema();
        assert_eq!(
            schema["x-chiso-versions"]["types"]["DossierReceived"]["latest"],
            2
        );
        let versions = &schema["x-chiso-versions"]["types"]["DossierReceived"]["versions"];
        assert!(versions["2"].to_string().contains("procedure_code"));
        assert!(!versions["1"].to_string().contains("procedure_code"));
    }

    #[test]
    fn times_keep_their_offset_and_are_bounded() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let limits = Limits::at(now);
        let at = |text: &str| Timestamp(DateTime::parse_from_rfc3339(text).unwrap());
        assert!(limits.time(&at("2000-01-01T07:00:00+07:00"), "/t").is_ok());
        assert!(limits.time(&at("2000-01-01T06:59:59+07:00"), "/t").is_err());
        assert!(limits.time(&at("2026-11-24T00:00:00Z"), "/t").is_ok());
        assert!(limits.time(&at("2026-11-24T00:00:01Z"), "/t").is_err());
        let parsed: Timestamp = serde_json::from_str(r#""2019-12-31T23:30:00+07:00""#).unwrap();
        assert_eq!(parsed.0.offset().local_minus_utc(), 7 * 3600);
        assert!(serde_json::from_str::<Timestamp>(r#""2019-12-31 23:30:00""#).is_err());
    }
}

//! The events of the catalog and the checks each makes on its own.

use super::{field_name, Limits, Timestamp};
use crate::calendar::CALENDAR_YEARS;
use crate::error::{IngestError, Result};
use chrono::{Datelike, Duration, NaiveDate, Weekday};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kinds of agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgencyKind {
    /// A ministry (bộ).
    Ministry,
    /// A province (tỉnh, thành phố).
    Province,
    /// A provincial department (sở, ban, ngành).
    Department,
    /// A Public Administration Service Center.
    Center,
    /// A district (huyện, thị xã, thành phố thuộc tỉnh).
    District,
    /// A commune (xã, phường, thị trấn).
    Commune,
}

/// An agency joins the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyRegistered {
    /// The agency code; the stream is `agency-{code}`.
    pub code: String,
    /// Its name.
    pub name: String,
    /// What kind of agency.
    pub kind: AgencyKind,
    /// The code of the agency above it, or null.
    pub parent: Option<String>,
    /// Two-digit province code (Decision 124/2004/QĐ-TTg), e.g. `26`.
    pub province: String,
    /// When it came into being (e.g. a commune formed by a merger); absent or null: before
    /// the records begin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// An agency takes a new name (the code stays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyRenamed {
    /// The new name.
    pub name: String,
    /// From when.
    pub at: Timestamp,
}

/// An agency comes under another: it and every agency below it take the new parent's
/// province.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyMoved {
    /// The code of the agency above it from now on.
    pub parent: String,
    /// From when.
    pub at: Timestamp,
}

/// An agency is merged into another, which carries on its work: it ceases to exist. The
/// agencies below it must have been moved, merged or dissolved first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyMerged {
    /// The code of the agency it is merged into (its successor).
    pub into: String,
    /// From when (the first moment it no longer exists).
    pub at: Timestamp,
}

/// An agency is dissolved without a successor (e.g. the district level in 2025). The
/// agencies below it must have been moved, merged or dissolved first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyDissolved {
    /// From when (the first moment it no longer exists).
    pub at: Timestamp,
}

/// A public service goes online at a level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLaunched {
    /// The procedure code; the stream is `service-{code}`.
    pub code: String,
    /// The agency that offers it.
    pub agency: String,
    /// Its name.
    pub name: String,
    /// Its field (lĩnh vực).
    pub field: String,
    /// Online service level, 1–4 (Decree 43/2011).
    pub level: u8,
    /// When.
    pub at: Timestamp,
}

/// A service moves to another level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLevelChanged {
    /// The new level, 1–4.
    pub level: u8,
    /// When.
    pub at: Timestamp,
}

/// A service is taken offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceWithdrawn {
    /// When.
    pub at: Timestamp,
}

/// How a dossier reached the one-stop desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// At the desk.
    Direct,
    /// Through the online portal.
    Online,
    /// By public postal service.
    Postal,
}

/// Who applies for a dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Applicant {
    /// A citizen (công dân).
    Citizen,
    /// A business or organisation (doanh nghiệp, tổ chức).
    Business,
}

/// A dossier is received at a one-stop desk: its latest version (2), to which version 1 is
/// upcast (`procedure_code` and `applicant` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierReceived {
    /// The receiving agency.
    pub agency: String,
    /// The service (procedure) it is for.
    pub service: String,
    /// How it came in.
    pub channel: Channel,
    /// When it was received.
    pub received_at: Timestamp,
    /// The legal deadline; not before `received_at`.
    pub due_at: Timestamp,
    /// The national procedure code, e.g. `1.011442.000.00.00.H38` (version 2; null when
    /// upcast from version 1).
    pub procedure_code: Option<String>,
    /// Who applies (version 2; null when upcast from version 1).
    pub applicant: Option<Applicant>,
}

/// `DossierReceived` version 1: every event written without `metadata.$version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierReceivedV1 {
    /// The receiving agency.
    pub agency: String,
    /// The service (procedure) it is for.
    pub service: String,
    /// How it came in.
    pub channel: Channel,
    /// When it was received.
    pub received_at: Timestamp,
    /// The legal deadline; not before `received_at`.
    pub due_at: Timestamp,
}

/// `DossierReceived` version 2 (`metadata.$version: 2`): version 1 and who applies for which
/// national procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierReceivedV2 {
    /// The receiving agency.
    pub agency: String,
    /// The service (procedure) it is for.
    pub service: String,
    /// How it came in.
    pub channel: Channel,
    /// When it was received.
    pub received_at: Timestamp,
    /// The legal deadline; not before `received_at`.
    pub due_at: Timestamp,
    /// The national procedure code (Cơ sở dữ liệu quốc gia về thủ tục hành chính), e.g.
    /// `1.011442.000.00.00.H38`.
    pub procedure_code: String,
    /// Who applies.
    pub applicant: Applicant,
}

impl From<DossierReceivedV1> for DossierReceived {
    fn from(v1: DossierReceivedV1) -> Self {
        Self {
            agency: v1.agency,
            service: v1.service,
            channel: v1.channel,
            received_at: v1.received_at,
            due_at: v1.due_at,
            procedure_code: None,
            applicant: None,
        }
    }
}

impl From<DossierReceivedV2> for DossierReceived {
    fn from(v2: DossierReceivedV2) -> Self {
        Self {
            agency: v2.agency,
            service: v2.service,
            channel: v2.channel,
            received_at: v2.received_at,
            due_at: v2.due_at,
            procedure_code: Some(v2.procedure_code),
            applicant: Some(v2.applicant),
        }
    }
}

/// A dossier's clock stops (waiting for supplements) or restarts; also withdrawal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierPaused {
    /// When.
    pub at: Timestamp,
}

/// The clock of a paused dossier restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierResumed {
    /// When.
    pub at: Timestamp,
}

/// The result of a resolved dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Granted.
    Approved,
    /// Refused.
    Rejected,
}

/// A dossier is resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierResolved {
    /// When.
    pub at: Timestamp,
    /// The result.
    pub outcome: Outcome,
}

/// The citizen withdraws an open dossier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierWithdrawn {
    /// When.
    pub at: Timestamp,
}

/// A fee is paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierPaid {
    /// When.
    pub at: Timestamp,
    /// Paid online.
    pub online: bool,
    /// Amount in VND.
    pub amount: u64,
}

/// The citizen rates a resolved dossier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierRated {
    /// When.
    pub at: Timestamp,
    /// 1 (worst) to 5 (best).
    pub score: u8,
}

/// What was entered wrong about a dossier's receipt, put right: each field given replaces
/// what `DossierReceived` (or an earlier correction) said, from the start — the dossier is
/// counted as if it had been received so. The wrong events stay in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierCorrected {
    /// When the correction was made.
    pub at: Timestamp,
    /// Why, e.g. `nhập sai kênh tiếp nhận` (required).
    pub reason: String,
    /// The channel it really came in by.
    pub channel: Option<Channel>,
    /// The service it is really for (a launched one).
    pub service: Option<String>,
    /// When it was really received: not after any later change of its state.
    pub received_at: Option<Timestamp>,
    /// Its real legal deadline: not before the (corrected) `received_at`.
    pub due_at: Option<Timestamp>,
}

/// A dossier was entered in error (a duplicate, a test, the wrong desk): it leaves every
/// table, report and ranking; its events stay in the log. Nothing follows a void.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DossierVoided {
    /// When it was voided.
    pub at: Timestamp,
    /// Why, e.g. `nhập trùng hồ sơ 000.00.26.H38-190304-0001` (required).
    pub reason: String,
}

/// A province's place in the Vietnam ICT Index of a year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IctIndexPublished {
    /// The year; the stream is `ictindex-{year}`.
    pub year: u16,
    /// Two-digit province code.
    pub province: String,
    /// 1 to 63.
    pub rank: u8,
    /// The index score, if published.
    pub score: Option<f64>,
}

/// A token was created (written by chiso, never by a client: the token itself and its hash
/// are never in the log, only its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    /// The token's id: the first 16 hex digits of its SHA-256; the stream is `token-{id}`.
    pub id: String,
    /// What the token is for, as the admin named it, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `admin`, `query`, `query:{agency}`, `append:{agency}`.
    pub scopes: Vec<String>,
    /// What it may use at most; absent fields are unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TokenLimits>,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// When it was created.
    pub at: Timestamp,
}

/// A token's quotas: unlimited where absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenLimits {
    /// How many of its queries may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<u32>,
    /// Rows its queries may return in a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_minute: Option<u64>,
    /// Events it may append in a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appends_per_second: Option<u32>,
}

/// A token was revoked (written by chiso).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    /// The token's id; the stream is `token-{id}`.
    pub id: String,
    /// When it was revoked.
    pub at: Timestamp,
}

/// What a ranking ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// (early + on time) / resolved in the month.
    OnTimeRate,
    /// received online / received in the month.
    OnlineShare,
    /// The Decision 766 scorecard, scaled to 100.
    Scorecard,
}

/// One place in a ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankingEntry {
    /// The agency.
    pub agency: String,
    /// Its value of the metric.
    pub value: f64,
    /// 1 + the number of agencies with a strictly greater value.
    pub rank: u32,
}

/// A monthly ranking is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankingPublished {
    /// `YYYY-MM`; the stream is `ranking-{month}`.
    pub month: String,
    /// What is ranked against what (a province's agencies of one kind, or the provinces).
    pub scope: String,
    /// The metric.
    pub metric: Metric,
    /// The places.
    pub entries: Vec<RankingEntry>,
    /// Where in the log's hash chain the figures were computed: set by chiso's publisher and
    /// left out of the event's content-derived id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainAnchor>,
}

/// A point of the log's hash chain: `hash` pins every event up to `position`, so a copy of it
/// kept outside the log lets anyone check later that the log up to there is unchanged
/// (`GET /v1/verify`, `chiso verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainAnchor {
    /// The last position of the chunk whose chain hash this is.
    pub position: u64,
    /// Its chain hash: 64 lowercase hex digits (SHA-256).
    pub hash: String,
}

/// The days off a public holiday gets in one year, as the government announces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HolidayDeclared {
    /// Which holiday: `new_year`, `tet`, `hung_kings`, `reunification` (30/4), `labour_day`
    /// (1/5) and `national_day` replace the Labour Code's placement of that holiday in the
    /// year; any other key (`[a-z_]`, e.g. `culture_day`) adds a holiday.
    pub holiday: String,
    /// Its name as the calendar shows it, e.g. `Tết Nguyên đán`.
    pub name: String,
    /// Its days off in the stream's year, `YYYY-MM-DD` (none: no day off that year). A day on
    /// a Saturday or Sunday gives the next working day off.
    pub dates: Vec<NaiveDate>,
    /// The act that decides it, e.g. `Công văn 8726/VPCP-KGVX ngày 26/11/2024`.
    pub source: String,
}

/// A working day is swapped with a weekend day: civil servants take `from` off and work `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkdaySwapped {
    /// The weekday (Monday–Friday) that becomes a day off.
    pub from: NaiveDate,
    /// The Saturday or Sunday worked instead, at most 31 days from `from`.
    pub to: NaiveDate,
    /// The act that decides it, e.g. `Công văn 6519/VPCP-KGVX ngày 11/7/2018`.
    pub source: String,
}

/// A dossier may be due at most this long after it is received.
pub(crate) const LONGEST_DEADLINE_DAYS: i64 = 366;

impl super::DomainEvent {
    /// The checks the event makes on its own, for the stream id `id` (the part after the
    /// category prefix).
    pub fn check(&self, id: &str, limits: &Limits) -> Result<()> {
        use super::DomainEvent as E;
        match self {
            E::AgencyRegistered(e) => {
                same_as_stream(&e.code, id, "/data/code")?;
                code_like(&e.code, "/data/code")?;
                province_code(&e.province, "/data/province")?;
                if let Some(parent) = &e.parent {
                    not_itself(parent, &e.code, "parent")?;
                }
                if let Some(at) = &e.at {
                    limits.time(at, "/data/at")?;
                }
                not_blank(&e.name, "/data/name")
            }
            E::AgencyRenamed(e) => {
                not_blank(&e.name, "/data/name")?;
                limits.time(&e.at, "/data/at")
            }
            E::AgencyMoved(e) => {
                code_like(&e.parent, "/data/parent")?;
                not_itself(&e.parent, id, "parent")?;
                limits.time(&e.at, "/data/at")
            }
            E::AgencyMerged(e) => {
                code_like(&e.into, "/data/into")?;
                not_itself(&e.into, id, "into")?;
                limits.time(&e.at, "/data/at")
            }
            E::AgencyDissolved(e) => limits.time(&e.at, "/data/at"),
            E::ServiceLaunched(e) => {
                same_as_stream(&e.code, id, "/data/code")?;
                not_blank(&e.name, "/data/name")?;
                level(e.level)?;
                limits.time(&e.at, "/data/at")
            }
            E::ServiceLevelChanged(e) => {
                level(e.level)?;
                limits.time(&e.at, "/data/at")
            }
            E::ServiceWithdrawn(ServiceWithdrawn { at })
            | E::DossierPaused(DossierPaused { at })
            | E::DossierResumed(DossierResumed { at })
            | E::DossierResolved(DossierResolved { at, .. })
            | E::DossierWithdrawn(DossierWithdrawn { at })
            | E::DossierPaid(DossierPaid { at, .. }) => limits.time(at, "/data/at"),
            E::DossierReceived(e) => {
                limits.time(&e.received_at, "/data/received_at")?;
                if let Some(code) = &e.procedure_code {
                    code_like(code, "/data/procedure_code")?;
                }
                deadline(&e.received_at, &e.due_at)
            }
            E::DossierRated(e) => {
                in_range(e.score.into(), 1, 5, "/data/score")?;
                limits.time(&e.at, "/data/at")
            }
            E::DossierCorrected(e) => {
                limits.time(&e.at, "/data/at")?;
                not_blank(&e.reason, "/data/reason")?;
                if let Some(service) = &e.service {
                    code_like(service, "/data/service")?;
                }
                if let Some(received_at) = &e.received_at {
                    limits.time(received_at, "/data/received_at")?;
                }
                if let Some(due_at) = &e.due_at {
                    limits.time(due_at, "/data/due_at")?;
                }
                if let (Some(received_at), Some(due_at)) = (&e.received_at, &e.due_at) {
                    deadline(received_at, due_at)?;
                }
                let corrects = e.channel.is_some()
                    || e.service.is_some()
                    || e.received_at.is_some()
                    || e.due_at.is_some();
                if corrects {
                    return Ok(());
                }
                Err(IngestError::unprocessable(
                    "nothing_to_correct",
                    "a correction gives at least one of data.channel, data.service, \
                     data.received_at and data.due_at",
                )
                .at("/data"))
            }
            E::DossierVoided(e) => {
                limits.time(&e.at, "/data/at")?;
                not_blank(&e.reason, "/data/reason")
            }
            E::IctIndexPublished(e) => {
                same_as_stream(&e.year.to_string(), id, "/data/year")?;
                in_range(e.year.into(), 2000, limits.latest_year.into(), "/data/year")?;
                province_code(&e.province, "/data/province")?;
                in_range(e.rank.into(), 1, 63, "/data/rank")?;
                match e.score {
                    Some(score) if !score.is_finite() || score < 0.0 => {
                        Err(IngestError::unprocessable(
                            "out_of_range",
                            "data.score must be a non-negative number",
                        )
                        .at("/data/score"))
                    }
                    _ => Ok(()),
                }
            }
            E::RankingPublished(e) => {
                same_as_stream(&e.month, id, "/data/month")?;
                month(&e.month)?;
                not_blank(&e.scope, "/data/scope")?;
                let hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
                if e.chain.as_ref().is_some_and(|anchor| !hex(&anchor.hash)) {
                    return Err(IngestError::malformed(
                        "invalid_event",
                        "data.chain.hash must be 64 hex digits (a SHA-256)",
                    )
                    .at("/data/chain/hash"));
                }
                for (i, entry) in e.entries.iter().enumerate() {
                    in_range(
                        entry.rank.into(),
                        1,
                        u32::MAX.into(),
                        &format!("/data/entries/{i}/rank"),
                    )?;
                    if !entry.value.is_finite() {
                        return Err(IngestError::unprocessable(
                            "out_of_range",
                            "a ranking value must be a finite number",
                        )
                        .at(format!("/data/entries/{i}/value")));
                    }
                }
                Ok(())
            }
            E::TokenCreated(e) => {
                same_as_stream(&e.id, id, "/data/id")?;
                token_id(&e.id)?;
                if let Some(name) = &e.name {
                    not_blank(name, "/data/name")?;
                }
                limits.time(&e.at, "/data/at")
            }
            E::TokenRevoked(e) => {
                same_as_stream(&e.id, id, "/data/id")?;
                token_id(&e.id)?;
                limits.time(&e.at, "/data/at")
            }
            E::HolidayDeclared(e) => {
                let year = calendar_year(id)?;
                holiday_key(&e.holiday)?;
                not_blank(&e.name, "/data/name")?;
                not_blank(&e.source, "/data/source")?;
                if e.dates.len() > 16 {
                    return Err(IngestError::unprocessable(
                        "out_of_range",
                        "data.dates: a holiday has at most 16 days off in a year",
                    )
                    .at("/data/dates"));
                }
                for (i, date) in e.dates.iter().enumerate() {
                    let pointer = format!("/data/dates/{i}");
                    if date.year() != year {
                        return Err(IngestError::unprocessable(
                            "date_out_of_year",
                            format!(
                                "{}: {date} is not in {year}, the stream's year",
                                field_name(&pointer)
                            ),
                        )
                        .at(pointer));
                    }
                    if e.dates[..i].contains(date) {
                        return Err(IngestError::unprocessable(
                            "duplicate_date",
                            format!("{}: {date} is listed twice", field_name(&pointer)),
                        )
                        .at(pointer));
                    }
                }
                Ok(())
            }
            E::WorkdaySwapped(e) => {
                let year = calendar_year(id)?;
                not_blank(&e.source, "/data/source")?;
                let weekend =
                    |date: &NaiveDate| matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
                if weekend(&e.from) {
                    return Err(IngestError::unprocessable(
                        "not_a_weekday",
                        format!(
                            "data.from: {} is a {}; the day taken off must be a weekday",
                            e.from,
                            e.from.weekday()
                        ),
                    )
                    .at("/data/from"));
                }
                if !weekend(&e.to) {
                    return Err(IngestError::unprocessable(
                        "not_a_weekend_day",
                        format!("data.to: {} is a {}; the day worked instead must be a Saturday or Sunday", e.to, e.to.weekday()),
                    )
                    .at("/data/to"));
                }
                if (e.from - e.to).num_days().abs() > 31 {
                    return Err(IngestError::unprocessable(
                        "out_of_range",
                        "data.to is more than 31 days from data.from",
                    )
                    .at("/data/to"));
                }
                if e.from.year() != year && e.to.year() != year {
                    return Err(IngestError::unprocessable(
                        "date_out_of_year",
                        format!("data.from and data.to are both outside {year}, the stream's year"),
                    )
                    .at("/data/from"));
                }
                Ok(())
            }
        }
    }
}

/// The year of a `calendar-{year}` stream, within [`CALENDAR_YEARS`].
fn calendar_year(id: &str) -> Result<i32> {
    let year = id.parse::<i32>().ok().filter(|_| id.len() == 4);
    match year {
        Some(year) if CALENDAR_YEARS.contains(&year) => Ok(year),
        _ => Err(IngestError::unprocessable(
            "year_out_of_range",
            format!(
                "calendar-{id}: the calendar covers the years {} to {} (the lunar holidays are known for those)",
                CALENDAR_YEARS.start(),
                CALENDAR_YEARS.end()
            ),
        )),
    }
}

fn holiday_key(key: &str) -> Result<()> {
    let ok =
        (1..=40).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "invalid_code",
        "data.holiday: a holiday key is 1–40 lowercase letters or '_', e.g. tet",
    )
    .at("/data/holiday"))
}

fn same_as_stream(value: &str, id: &str, pointer: &str) -> Result<()> {
    if value == id {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "stream_mismatch",
        format!(
            "{} is {value:?} but the stream names {id:?}: they must be the same",
            field_name(pointer)
        ),
    )
    .at(pointer))
}

fn code_like(code: &str, pointer: &str) -> Result<()> {
    let ok = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if ok {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "invalid_code",
        format!(
            "{}: codes are 1–64 letters, digits, '.' or '_'",
            field_name(pointer)
        ),
    )
    .at(pointer))
}

fn province_code(code: &str, pointer: &str) -> Result<()> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "invalid_code",
        format!(
            "{}: a province code has two digits, e.g. \"26\" (got {code:?})",
            field_name(pointer)
        ),
    )
    .at(pointer))
}

/// An agency named in `data.{field}` (its parent, or the agency it is merged into) is not
/// the agency `code` itself.
fn not_itself(other: &str, code: &str, field: &str) -> Result<()> {
    if other != code {
        return Ok(());
    }
    let (error, message) = match field {
        "parent" => ("invalid_parent", "an agency cannot be its own parent"),
        _ => (
            "invalid_successor",
            "an agency cannot be merged into itself",
        ),
    };
    Err(IngestError::unprocessable(error, message).at(format!("/data/{field}")))
}

fn not_blank(text: &str, pointer: &str) -> Result<()> {
    if !text.trim().is_empty() {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "blank_field",
        format!("{} must not be blank", field_name(pointer)),
    )
    .at(pointer))
}

/// A token id: 16 lowercase hex digits.
fn token_id(id: &str) -> Result<()> {
    if id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    Err(IngestError::malformed(
        "invalid_event",
        "data.id must be a token id: 16 lowercase hex digits",
    )
    .at("/data/id"))
}

fn level(level: u8) -> Result<()> {
    in_range(level.into(), 1, 4, "/data/level")
}

fn in_range(value: i64, low: i64, high: i64, pointer: &str) -> Result<()> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "out_of_range",
        format!(
            "{} is {value}; it must be between {low} and {high}",
            field_name(pointer)
        ),
    )
    .at(pointer))
}

/// A deadline (`due_at`) must follow receipt, by at most a year.
pub(crate) fn deadline(received_at: &Timestamp, due_at: &Timestamp) -> Result<()> {
    let (from, due) = (received_at.0, due_at.0);
    if due < from {
        return Err(IngestError::unprocessable(
            "due_before_received",
            format!(
                "data.due_at ({}) is before data.received_at ({})",
                due.to_rfc3339(),
                from.to_rfc3339()
            ),
        )
        .at("/data/due_at"));
    }
    if due - from > Duration::days(LONGEST_DEADLINE_DAYS) {
        return Err(IngestError::unprocessable(
            "time_out_of_range",
            "data.due_at is more than a year after data.received_at",
        )
        .at("/data/due_at"));
    }
    Ok(())
}

fn month(month: &str) -> Result<()> {
    let valid = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_ok()
        && month.len() == 7;
    if valid {
        return Ok(());
    }
    Err(IngestError::unprocessable(
        "invalid_month",
        format!("data.month: {month:?} is not YYYY-MM"),
    )
    .at("/data/month"))
}

/// The wire names of the catalog's enums, defined once: `as_str` and `FromStr` (an unknown
/// name is an error, never a default).
macro_rules! wire_names {
    ($($enum:ident { $($variant:ident => $name:literal),+ $(,)? })+) => {$(
        impl $enum {
            /// Every value, in declaration order.
            pub const ALL: &[$enum] = &[$($enum::$variant),+];

            /// The name on the wire (as serialized).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($enum::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $enum {
            type Err = String;

            fn from_str(name: &str) -> std::result::Result<Self, String> {
                match name {
                    $($name => Ok($enum::$variant),)+
                    _ => Err(format!("unknown {} {name:?}", stringify!($enum))),
                }
            }
        }
    )+};
}

wire_names! {
    AgencyKind {
        Ministry => "ministry", Province => "province", Department => "department",
        Center => "center", District => "district", Commune => "commune",
    }
    Channel { Direct => "direct", Online => "online", Postal => "postal" }
    Applicant { Citizen => "citizen", Business => "business" }
    Outcome { Approved => "approved", Rejected => "rejected" }
    Metric { OnTimeRate => "on_time_rate", OnlineShare => "online_share", Scorecard => "scorecard" }
}

#[cfg(test)]
mod wire_name_tests {
    use super::*;

    #[test]
    fn wire_names_are_the_serialized_names() {
        fn check<
            T: Serialize + std::str::FromStr<Err = String> + PartialEq + std::fmt::Debug + Copy,
        >(
            values: &[T],
            name: impl Fn(T) -> &'static str,
        ) {
            for value in values {
                assert_eq!(serde_json::to_value(value).unwrap(), name(*value));
                assert_eq!(name(*value).parse::<T>(), Ok(*value));
            }
            assert!("nothing".parse::<T>().is_err());
        }
        check(AgencyKind::ALL, AgencyKind::as_str);
        check(Channel::ALL, Channel::as_str);
        check(Applicant::ALL, Applicant::as_str);
        check(Outcome::ALL, Outcome::as_str);
        check(Metric::ALL, Metric::as_str);
    }
}

//! Bearer tokens with scopes (ARCHITECTURE.md §6–§7): `admin`, `query`, and `append:{agency}`
//! (that agency and every agency below it). Tokens are random, shown once, and stored only as
//! SHA-256 hashes beside the log, so they survive restarts; the admin token comes from the
//! environment and is compared in constant time. With no admin token, auth is off.

use crate::error::{ApiError, ErrorKind, Result};
use crate::quota::{QuotaMetrics, TokenQuota};
use crate::AppState;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chiso_ingest::{Append, Author, Grant, TokenLimits};
use chiso_store::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

const TOKEN_KEY_PREFIX: &[u8] = b"token/";

/// A scope a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything, including tokens.
    Admin,
    /// Reads and SQL.
    Query,
    /// Reads and SQL of this agency and every agency that is or was below it (merged ones
    /// included); published tables and streams whole.
    QueryIn(String),
    /// Appends for this agency and the agencies below it.
    Append(String),
}

impl Scope {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "query" => Some(Self::Query),
            _ => {
                let (kind, agency) = text.split_once(':')?;
                let valid = (1..=64).contains(&agency.len())
                    && agency
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
                match kind {
                    "append" if valid => Some(Self::Append(agency.to_owned())),
                    "query" if valid => Some(Self::QueryIn(agency.to_owned())),
                    _ => None,
                }
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::Query => "query".into(),
            Self::QueryIn(agency) => format!("query:{agency}"),
            Self::Append(agency) => format!("append:{agency}"),
        }
    }
}

type Digest32 = [u8; 32];

/// The token registry; `None` inside when auth is off.
#[derive(Clone, Default)]
pub struct Auth {
    inner: Option<Arc<AuthInner>>,
}

struct AuthInner {
    admin: Digest32,
    tokens: RwLock<HashMap<Digest32, Arc<Token>>>,
    store: EventStore,
    /// The limits of tokens created without their own.
    defaults: TokenLimits,
    /// Set when the server's metrics registry takes them ([`Auth::metrics`]).
    metrics: Arc<OnceLock<QuotaMetrics>>,
}

/// A token as the registry keeps it: never the token itself (its hash is the registry's key).
struct Token {
    id: String,
    name: Option<String>,
    scopes: Vec<Scope>,
    limits: TokenLimits,
    expires_at: Option<DateTime<Utc>>,
    created_at: String,
    /// The Unix minute it was last used in; stored when it changes (kept to the minute, not
    /// written per request).
    last_used_minute: AtomicI64,
    /// Cancelled when it is revoked or expires: ends its live streams.
    ended: CancellationToken,
    /// Its limits (its own, or the server's defaults) and what it uses of them.
    quota: Arc<TokenQuota>,
}

impl Token {
    /// The stored record (settings `token/{hash}`).
    fn record(&self) -> serde_json::Value {
        let scopes: Vec<String> = self.scopes.iter().map(Scope::text).collect();
        let mut record = json!({"scopes": scopes, "created_at": self.created_at});
        if let Some(name) = &self.name {
            record["name"] = json!(name);
        }
        if self.limits != TokenLimits::default() {
            record["limits"] = json!(self.limits);
        }
        if let Some(expires_at) = self.expires_at {
            record["expires_at"] = json!(rfc3339(expires_at));
        }
        if let Some(at) = self.last_used_at() {
            record["last_used_at"] = json!(rfc3339(at));
        }
        record
    }

    fn from_record(hash: &Digest32, record: &serde_json::Value, source: &QuotaSource) -> Self {
        let text = |field: &str| record[field].as_str().map(str::to_owned);
        let time = |field: &str| {
            record[field]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let scopes: Vec<String> =
            serde_json::from_value(record["scopes"].clone()).unwrap_or_default();
        let limits = serde_json::from_value(record["limits"].clone()).unwrap_or_default();
        let id = token_id(hash);
        Self {
            quota: source.quota(&id, limits),
            id,
            name: text("name"),
            scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            limits,
            expires_at: time("expires_at"),
            created_at: text("created_at").unwrap_or_default(),
            last_used_minute: AtomicI64::new(
                time("last_used_at").map_or(0, |at| at.timestamp() / 60),
            ),
            ended: CancellationToken::new(),
        }
    }

    fn last_used_at(&self) -> Option<DateTime<Utc>> {
        match self.last_used_minute.load(Ordering::Relaxed) {
            0 => None,
            minute => DateTime::from_timestamp(minute * 60, 0),
        }
    }

    /// What `GET /v1/tokens` shows of it.
    fn listed(&self) -> serde_json::Value {
        let scopes: Vec<String> = self.scopes.iter().map(Scope::text).collect();
        json!({
            "id": self.id,
            "name": self.name,
            "scopes": scopes,
            "limits": self.limits,
            "expires_at": self.expires_at.map(rfc3339),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at().map(rfc3339),
        })
    }

    /// Ends its live streams when it expires.
    fn watch_expiry(&self) {
        let (Some(expires_at), Ok(runtime)) =
            (self.expires_at, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let ended = self.ended.clone();
        let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
        runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(left) => ended.cancel(),
                () = ended.cancelled() => {}
            }
        });
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token's id, safe to show and log: the first 16 hex digits of its SHA-256.
fn token_id(hash: &Digest32) -> String {
    hex(&hash[..8])
}

/// What a token's quota is made from: the server's default limits and the metrics.
struct QuotaSource {
    defaults: TokenLimits,
    metrics: Arc<OnceLock<QuotaMetrics>>,
}

impl QuotaSource {
    fn quota(&self, id: &str, limits: TokenLimits) -> Arc<TokenQuota> {
        let metrics = self.metrics.clone();
        Arc::new(TokenQuota::new(id, limits, self.defaults, metrics))
    }
}

impl Auth {
    /// Auth on, with `admin_token`, and the tokens stored beside `store`'s log; tokens have
    /// no limits but their own.
    pub fn enabled(admin_token: &str, store: &EventStore) -> chiso_store::Result<Self> {
        Self::enabled_with(admin_token, store, TokenLimits::default())
    }

    /// Like [`Auth::enabled`], with `defaults` for the limits a token was created without.
    pub fn enabled_with(
        admin_token: &str,
        store: &EventStore,
        defaults: TokenLimits,
    ) -> chiso_store::Result<Self> {
        let source = QuotaSource {
            defaults,
            metrics: Arc::default(),
        };
        let mut tokens = HashMap::new();
        for (key, value) in store.settings(TOKEN_KEY_PREFIX)? {
            let Some(hash) = decode_key(&key) else {
                continue;
            };
            let record = serde_json::from_slice(&value).unwrap_or_default();
            let token = Token::from_record(&hash, &record, &source);
            token.watch_expiry();
            tokens.insert(hash, Arc::new(token));
        }
        tracing::info!(tokens = tokens.len(), "authentication on");
        Ok(Self {
            inner: Some(Arc::new(AuthInner {
                admin: digest(admin_token),
                tokens: RwLock::new(tokens),
                store: store.clone(),
                defaults,
                metrics: source.metrics,
            })),
        })
    }

    /// Counts each token's use in `metrics` (the server's registry holds them).
    pub(crate) fn count_in(&self, metrics: &QuotaMetrics) {
        if let Some(inner) = &self.inner {
            let _ = inner.metrics.set(metrics.clone());
        }
    }

    /// Whether requests need tokens.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn principal(&self, parts: &Parts) -> Result<Principal> {
        if self.inner.is_none() {
            return self.principal_of("");
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("unauthorized", "send `Authorization: Bearer <token>`"))?;
        self.principal_of(token)
    }

    /// Who `token` is: 401 `invalid_token` for a token unknown or revoked, `token_expired`
    /// for one past its expiry. With auth off, anyone is `local` with every scope, whatever
    /// the token.
    pub fn principal_of(&self, token: &str) -> Result<Principal> {
        let Some(inner) = &self.inner else {
            return Ok(Principal::unrestricted("local"));
        };
        let hash = digest(token);
        if bool::from(hash.ct_eq(&inner.admin)) {
            return Ok(Principal::unrestricted("admin"));
        }
        let found = inner.tokens.read().expect("token lock").get(&hash).cloned();
        let Some(token) = found else {
            return Err(unauthorized(
                "invalid_token",
                "the token is unknown or was revoked",
            ));
        };
        let now = Utc::now();
        if let Some(expires_at) = token.expires_at.filter(|at| *at <= now) {
            return Err(unauthorized(
                "token_expired",
                format!("the token expired at {}", rfc3339(expires_at)),
            ));
        }
        inner.touch(&hash, &token, now);
        let access = match token.scopes.contains(&Scope::Admin) {
            true => Access::Unrestricted,
            false => Access::Scoped(token.scopes.clone()),
        };
        Ok(Principal {
            token_id: token.id.clone(),
            access,
            quota: Some(token.quota.clone()),
        })
    }
}

impl AuthInner {
    /// Notes that `token` was used at `now`: stored when the minute changes, off the request's
    /// thread.
    fn touch(&self, hash: &Digest32, token: &Arc<Token>, now: DateTime<Utc>) {
        let minute = now.timestamp() / 60;
        if token.last_used_minute.fetch_max(minute, Ordering::Relaxed) >= minute {
            return;
        }
        let (store, key, record) = (self.store.clone(), token_key(hash), token.record());
        let store_it = move || {
            if let Err(error) = store.put_setting(&key, record.to_string().as_bytes()) {
                tracing::warn!(%error, "a token's last use could not be stored");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(store_it)),
            Err(_) => store_it(),
        }
    }
}

impl Auth {
    /// Cancelled when the bearer token of `headers` is revoked or expires; `None` for the
    /// admin token, or with auth off.
    pub fn revocation(&self, headers: &axum::http::HeaderMap) -> Option<CancellationToken> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        self.revocation_of(token.trim())
    }

    /// Cancelled when `token` is revoked or expires; `None` for the admin token, or with auth
    /// off.
    pub fn revocation_of(&self, token: &str) -> Option<CancellationToken> {
        let inner = self.inner.as_ref()?;
        let tokens = inner.tokens.read().expect("token lock");
        tokens.get(&digest(token)).map(|token| token.ended.clone())
    }
}

impl Auth {
    /// The token registry, for token management; 400 when authentication is off.
    fn registry(&self) -> Result<&AuthInner> {
        self.inner.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "auth_disabled",
                "tokens need authentication on: start chiso with CHISO_ADMIN_TOKEN",
            )
        })
    }
}

/// Where a token's hash and scopes are kept among the store's settings.
fn token_key(hash: &Digest32) -> Vec<u8> {
    [TOKEN_KEY_PREFIX, hex(hash).as_bytes()].concat()
}

fn decode_key(key: &[u8]) -> Option<Digest32> {
    let hex = std::str::from_utf8(key.strip_prefix(TOKEN_KEY_PREFIX)?).ok()?;
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, code, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, "forbidden", message)
}

/// Who is asking: the id of their token, what it may do, and how much.
#[derive(Clone)]
pub struct Principal {
    /// The token's id: the first 16 hex digits of its SHA-256, `admin` for the environment's
    /// admin token, `local` while auth is off. Never the token itself.
    pub token_id: String,
    access: Access,
    /// Its token's limits; `None` for the environment's admin token and with auth off.
    quota: Option<Arc<TokenQuota>>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("token_id", &self.token_id)
            .field("access", &self.access)
            .finish()
    }
}

#[derive(Debug, Clone)]
enum Access {
    /// Auth off, or an admin.
    Unrestricted,
    /// A token's scopes.
    Scoped(Vec<Scope>),
}

impl Principal {
    /// Everything, as the admin token or with auth off.
    fn unrestricted(token_id: impl Into<String>) -> Self {
        Self {
            token_id: token_id.into(),
            access: Access::Unrestricted,
            quota: None,
        }
    }

    /// Whether this is an admin (or auth is off).
    pub fn is_admin(&self) -> bool {
        matches!(self.access, Access::Unrestricted)
    }

    /// The caller of a query this principal runs.
    pub fn caller(&self) -> chiso_query::Caller {
        chiso_query::Caller {
            token_id: self.token_id.clone(),
            admin: self.is_admin(),
            quota: self
                .quota
                .clone()
                .map(|quota| quota as Arc<dyn chiso_query::Quota>),
            // No reading scope reads nothing (such a caller is refused before it asks).
            scope: self
                .read_scope()
                .unwrap_or(chiso_query::ReadScope::Agencies(Vec::new())),
        }
    }

    /// Reads and queries need `query` (or admin).
    pub fn require_query(&self) -> Result<()> {
        match &self.access {
            Access::Scoped(_) if self.read_scope().is_none() => {
                Err(forbidden("this token has no `query` scope"))
            }
            _ => Ok(()),
        }
    }

    /// What this principal reads: every agency (`admin`, `query`), those below its
    /// `query:{agency}` scopes, or nothing (`None`: no reading scope).
    pub fn read_scope(&self) -> Option<chiso_query::ReadScope> {
        let Access::Scoped(scopes) = &self.access else {
            return Some(chiso_query::ReadScope::All);
        };
        if scopes.contains(&Scope::Query) {
            return Some(chiso_query::ReadScope::All);
        }
        let roots = agencies_in(scopes, |scope| match scope {
            Scope::QueryIn(agency) => Some(agency),
            _ => None,
        });
        (!roots.is_empty()).then_some(chiso_query::ReadScope::Agencies(roots))
    }

    /// Token management and metrics need `admin`.
    pub fn require_admin(&self) -> Result<()> {
        match self.access {
            Access::Unrestricted => Ok(()),
            Access::Scoped(_) => Err(forbidden("this needs the `admin` scope")),
        }
    }

    /// Takes an append's events (counted only if the token has an append rate) from its
    /// rate: 429 `append_quota_exceeded` while it is spent.
    pub fn take_appends(&self, events: impl FnOnce() -> usize) -> Result<()> {
        match &self.quota {
            Some(quota) => quota.append(events),
            None => Ok(()),
        }
    }

    /// Counts `events` this principal's token appended (`/metrics`).
    pub fn appended(&self, events: usize) {
        if let Some(quota) = &self.quota {
            quota.appended(events);
        }
    }

    /// This principal as the author of an append: its token id, recorded with each event,
    /// and what the write model lets it append; refused without any append scope.
    pub fn author(&self) -> Result<Author> {
        let grant = self.append_grant()?;
        Ok(Author {
            id: self.token_id.clone(),
            grant,
        })
    }

    fn append_grant(&self) -> Result<Grant> {
        match &self.access {
            Access::Unrestricted => Ok(Grant::All),
            Access::Scoped(scopes) => {
                let agencies = agencies_in(scopes, |scope| match scope {
                    Scope::Append(agency) => Some(agency),
                    _ => None,
                });
                if agencies.is_empty() {
                    return Err(forbidden("this token has no `append:` scope"));
                }
                Ok(Grant::Agencies(agencies))
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        state.auth.principal(parts).map_err(|error| {
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                let challenge = HeaderValue::from_static("Bearer realm=\"chiso\"");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            response
        })
    }
}

/// Body of `POST /v1/tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// `admin`, `query`, `query:{agency code}` (reads of that agency and those that are or
    /// were below it), `append:{agency code}` (that agency and those below it).
    scopes: Vec<String>,
    /// What the token is for, e.g. `Sở Tư pháp Vĩnh Phúc — one-stop system`.
    #[serde(default)]
    name: Option<String>,
    /// Quotas (unlimited where absent): `queries` at once, `rows_per_minute` returned,
    /// `appends_per_second` events.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    limits: Option<TokenLimits>,
    /// When the token stops working (RFC 3339, in the future).
    #[serde(default)]
    expires_at: Option<String>,
}

/// `POST /v1/tokens` (admin): a new random token with the given scopes, shown once, and a
/// `TokenCreated` event in `token-{id}` (never the token or its hash).
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", security(("bearer" = [])), request_body = NewToken,
    responses((status = 201, description = "`{token, id, name, scopes, limits, expires_at}`: the token is shown once"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response> {
    principal.require_admin()?;
    let inner = state.auth.registry()?;
    let body = crate::body::read_limited(&headers, body, crate::MAX_CONTROL_BODY_BYTES).await?;
    let request: NewToken = crate::body::parse_json(&body, "")?;
    if request.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_scope",
            "give at least one scope",
        ));
    }
    let scopes = request
        .scopes
        .iter()
        .map(|text| {
            Scope::parse(text).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_scope",
                    format!("{text:?} is not a scope: use admin, query, query:{{agency code}} or append:{{agency code}}"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let now = Utc::now();
    let expires_at = request
        .expires_at
        .as_deref()
        .map(|text| expiry(text, now))
        .transpose()?;
    let limits = request.limits.unwrap_or_default();
    check_limits(&limits)?;
    let name = request.name.map(|name| name.trim().to_owned());
    if name
        .as_ref()
        .is_some_and(|name| name.is_empty() || name.len() > 200)
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "name must be 1 to 200 bytes, not blank",
        )
        .with_details(json!({"pointer": "/name"})));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("chiso_{}", hex(&secret));
    let hash = digest(&token);
    let id = token_id(&hash);
    let source = QuotaSource {
        defaults: inner.defaults,
        metrics: inner.metrics.clone(),
    };
    let entry = Token {
        quota: source.quota(&id, limits),
        id,
        name,
        scopes,
        limits,
        expires_at,
        created_at: now.to_rfc3339(),
        last_used_minute: AtomicI64::new(0),
        ended: CancellationToken::new(),
    };
    // Recorded first: a token the log does not know of never works.
    let texts: Vec<String> = entry.scopes.iter().map(Scope::text).collect();
    let created = chiso_ingest::TokenCreated {
        id: entry.id.clone(),
        name: entry.name.clone(),
        scopes: texts.clone(),
        limits: (limits != TokenLimits::default()).then_some(limits),
        expires_at: expires_at.map(|at| chiso_ingest::Timestamp(at.fixed_offset())),
        at: chiso_ingest::Timestamp(now.fixed_offset()),
    };
    let event = ("TokenCreated", serde_json::to_string(&created));
    record(
        &state,
        &principal,
        &entry.id,
        ExpectedRevision::NoStream,
        event,
    )
    .await?;
    inner
        .store
        .put_setting(&token_key(&hash), entry.record().to_string().as_bytes())?;
    entry.watch_expiry();
    let body = json!({"token": token, "id": entry.id, "name": entry.name, "scopes": texts,
        "limits": limits, "expires_at": expires_at.map(rfc3339)});
    inner
        .tokens
        .write()
        .expect("token lock")
        .insert(hash, Arc::new(entry));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// An expiry in the future, or 400.
fn expiry(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let invalid = |message: String| {
        ApiError::bad_request("invalid_parameter", message)
            .with_details(json!({"pointer": "/expires_at"}))
    };
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| invalid(format!("expires_at must be an RFC 3339 time, not {text:?}")))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(invalid(format!("expires_at ({text}) is not in the future")));
    }
    Ok(at)
}

/// Each limit given must be at least 1 (leave it out for none).
fn check_limits(limits: &TokenLimits) -> Result<()> {
    let given = [
        ("queries", limits.queries.map(u64::from)),
        ("rows_per_minute", limits.rows_per_minute),
        (
            "appends_per_second",
            limits.appends_per_second.map(u64::from),
        ),
    ];
    match given.into_iter().find(|(_, value)| *value == Some(0)) {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limits.{name} must be at least 1 (leave it out for no limit)"),
        )
        .with_details(json!({"pointer": format!("/limits/{name}")}))),
    }
}

/// Appends chiso's own record of a change to token `id`, as the admin who made it.
async fn record(
    state: &AppState,
    principal: &Principal,
    id: &str,
    expected: ExpectedRevision,
    (event_type, data): (&str, serde_json::Result<String>),
) -> Result<()> {
    let stream = StreamName::new(format!("token-{id}"))?;
    let envelope = ProposedEvent {
        id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        data: data.map_err(|e| ApiError::internal(&e))?,
        metadata: "{}".into(),
        decoded: (),
    };
    let checked = state
        .ingestor
        .checker()
        .check(&stream, envelope, Utc::now())
        .map_err(|e| ApiError::internal(&format!("a token record was refused: {e}")))?;
    let author = Author {
        id: principal.token_id.clone(),
        grant: Grant::System,
    };
    let append = Append {
        stream,
        expected,
        events: vec![checked],
    };
    state.ingestor.append(&author, append).await?;
    Ok(())
}

/// `GET /v1/tokens` (admin): every token's id, name, scopes, limits, expiry, creation and last
/// use (to the minute); never the token.
#[utoipa::path(get, path = "/v1/tokens", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "`{tokens: [{id, name, scopes, limits, expires_at, created_at, last_used_at}]}`, oldest first"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>> {
    principal.require_admin()?;
    let inner = state.auth.registry()?;
    let mut tokens: Vec<Arc<Token>> = inner
        .tokens
        .read()
        .expect("token lock")
        .values()
        .cloned()
        .collect();
    tokens.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let tokens: Vec<serde_json::Value> = tokens.iter().map(|token| token.listed()).collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// `DELETE /v1/tokens/{token}` (admin): revokes a token, named by itself or by its id, at once,
/// and records a `TokenRevoked` event.
#[utoipa::path(delete, path = "/v1/tokens/{token}", tag = "admin", security(("bearer" = [])),
    params(("token" = String, Path, description = "The token itself, or its id (16 hex digits, as `GET /v1/tokens` and `system.queries` show it)")),
    responses((status = 204, description = "Revoked at once"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(token): Path<String>,
) -> Result<StatusCode> {
    principal.require_admin()?;
    let inner = state.auth.registry()?;
    let is_id = token.len() == 16
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let hash = if is_id {
        let tokens = inner.tokens.read().expect("token lock");
        let mut matching = tokens.keys().filter(|hash| token_id(hash) == token);
        match (matching.next(), matching.next()) {
            (Some(hash), None) => *hash,
            _ => return Err(token_not_found()),
        }
    } else {
        digest(&token)
    };
    // Revoked first, whatever happens to the record: a revocation must work on a full disk.
    let existed = inner.store.delete_setting(&token_key(&hash))?;
    if let Some(token) = inner.tokens.write().expect("token lock").remove(&hash) {
        token.ended.cancel();
    }
    if !existed {
        return Err(token_not_found());
    }
    let id = token_id(&hash);
    let revoked = chiso_ingest::TokenRevoked {
        id: id.clone(),
        at: chiso_ingest::Timestamp(Utc::now().fixed_offset()),
    };
    let event = ("TokenRevoked", serde_json::to_string(&revoked));
    record(&state, &principal, &id, ExpectedRevision::Any, event)
        .await
        .map_err(|mut error| {
            error.message = format!(
                "the token is revoked, but its revocation could not be recorded in the log: {}",
                error.message
            );
            error
        })?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "token_not_found", "no such token")
}

/// The agencies that `scopes` name through the kind of scope `pick` reads.
fn agencies_in(scopes: &[Scope], pick: impl Fn(&Scope) -> Option<&String>) -> Vec<String> {
    scopes.iter().filter_map(pick).cloned().collect()
}

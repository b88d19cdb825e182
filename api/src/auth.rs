//! Bearer tokens with scopes (ARCHITECTURE.md §6–§7): `admin`, `query`, and `append:{agency}`
//! (that agency and every agency below it). Tokens are random, shown once, and stored only as
//! SHA-256 hashes beside the log, so they survive restarts; the admin token comes from the
//! environment and is compared in constant time. With no admin token, auth is off.

use crate::error::{ApiError, ErrorKind, Result};
use crate::AppState;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chiso_ingest::Grant;
use chiso_store::EventStore;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
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
    /// Appends for this agency and the agencies below it.
    Append(String),
}

impl Scope {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "query" => Some(Self::Query),
            _ => {
                let agency = text.strip_prefix("append:")?;
                let valid = (1..=64).contains(&agency.len())
                    && agency
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
                valid.then(|| Self::Append(agency.to_owned()))
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::Query => "query".into(),
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
    /// Each token's scopes, and a signal cancelled when it is revoked (ends its live streams).
    tokens: RwLock<HashMap<Digest32, (Vec<Scope>, CancellationToken)>>,
    store: EventStore,
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token's id, safe to show and log: the first 16 hex digits of its SHA-256.
fn token_id(hash: &Digest32) -> String {
    hex(&hash[..8])
}

impl Auth {
    /// Auth on, with `admin_token`, and the tokens stored beside `store`'s log.
    pub fn enabled(admin_token: &str, store: &EventStore) -> chiso_store::Result<Self> {
        let mut tokens = HashMap::new();
        for (key, value) in store.settings(TOKEN_KEY_PREFIX)? {
            let Some(hash) = decode_key(&key) else {
                continue;
            };
            let scopes: Vec<String> = serde_json::from_slice::<serde_json::Value>(&value)
                .ok()
                .and_then(|v| serde_json::from_value(v["scopes"].clone()).ok())
                .unwrap_or_default();
            let scopes = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
            tokens.insert(hash, (scopes, CancellationToken::new()));
        }
        tracing::info!(tokens = tokens.len(), "authentication on");
        Ok(Self {
            inner: Some(Arc::new(AuthInner {
                admin: digest(admin_token),
                tokens: RwLock::new(tokens),
                store: store.clone(),
            })),
        })
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

    /// Who `token` is: 401 `invalid_token` for a token unknown or revoked. With auth off,
    /// anyone is `anonymous` with every scope, whatever the token.
    pub fn principal_of(&self, token: &str) -> Result<Principal> {
        let Some(inner) = &self.inner else {
            return Ok(Principal::unrestricted("anonymous"));
        };
        let hash = digest(token);
        if bool::from(hash.ct_eq(&inner.admin)) {
            return Ok(Principal::unrestricted("admin"));
        }
        let tokens = inner.tokens.read().expect("token lock");
        match tokens.get(&hash) {
            Some((scopes, _)) if scopes.contains(&Scope::Admin) => {
                Ok(Principal::unrestricted(token_id(&hash)))
            }
            Some((scopes, _)) => Ok(Principal {
                token_id: token_id(&hash),
                access: Access::Scoped(scopes.clone()),
            }),
            None => Err(unauthorized(
                "invalid_token",
                "the token is unknown or was revoked",
            )),
        }
    }
}

impl Auth {
    /// Cancelled when the bearer token of `headers` is revoked; `None` for the admin token,
    /// or with auth off.
    pub fn revocation(&self, headers: &axum::http::HeaderMap) -> Option<CancellationToken> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        self.revocation_of(token.trim())
    }

    /// Cancelled when `token` is revoked; `None` for the admin token, or with auth off.
    pub fn revocation_of(&self, token: &str) -> Option<CancellationToken> {
        let inner = self.inner.as_ref()?;
        let tokens = inner.tokens.read().expect("token lock");
        tokens
            .get(&digest(token))
            .map(|(_, revoked)| revoked.clone())
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

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, code, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, "forbidden", message)
}

/// Who is asking: the id of their token, and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id: the first 16 hex digits of its SHA-256, `admin` for the environment's
    /// admin token, `anonymous` while auth is off. Never the token itself.
    pub token_id: String,
    access: Access,
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
        }
    }

    /// Reads and queries need `query` (or admin).
    pub fn require_query(&self) -> Result<()> {
        match &self.access {
            Access::Scoped(scopes) if !scopes.contains(&Scope::Query) => {
                Err(forbidden("this token has no `query` scope"))
            }
            _ => Ok(()),
        }
    }

    /// Token management and metrics need `admin`.
    pub fn require_admin(&self) -> Result<()> {
        match self.access {
            Access::Unrestricted => Ok(()),
            Access::Scoped(_) => Err(forbidden("this needs the `admin` scope")),
        }
    }

    /// What the write model lets this principal append; refused without any append scope.
    pub fn append_grant(&self) -> Result<Grant> {
        match &self.access {
            Access::Unrestricted => Ok(Grant::All),
            Access::Scoped(scopes) => {
                let agencies: Vec<String> = scopes
                    .iter()
                    .filter_map(|s| match s {
                        Scope::Append(agency) => Some(agency.clone()),
                        _ => None,
                    })
                    .collect();
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
    /// `admin`, `query`, `append:{agency code}` (that agency and those below it).
    scopes: Vec<String>,
}

/// `POST /v1/tokens` (admin): a new random token with the given scopes, shown once.
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", security(("bearer" = [])), request_body = NewToken,
    responses((status = 201, description = "`{token, id, scopes}`: the token is shown once"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
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
                    format!("{text:?} is not a scope: use admin, query or append:{{agency code}}"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("chiso_{}", hex(&secret));
    let hash = digest(&token);
    let texts: Vec<String> = scopes.iter().map(Scope::text).collect();
    let record = json!({"scopes": texts, "created_at": chrono::Utc::now().to_rfc3339()});
    let key = token_key(&hash);
    inner
        .store
        .put_setting(&key, record.to_string().as_bytes())?;
    let entry = (scopes, CancellationToken::new());
    inner
        .tokens
        .write()
        .expect("token lock")
        .insert(hash, entry);
    let body = json!({"token": token, "id": token_id(&hash), "scopes": texts});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tokens` (admin): every token's id, scopes and creation time (never the token).
#[utoipa::path(get, path = "/v1/tokens", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "`{tokens: [{id, scopes, created_at}]}`, oldest first"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>> {
    principal.require_admin()?;
    let inner = state.auth.registry()?;
    let mut tokens: Vec<serde_json::Value> = inner
        .store
        .settings(TOKEN_KEY_PREFIX)?
        .into_iter()
        .filter_map(|(key, value)| {
            let hash = decode_key(&key)?;
            let record: serde_json::Value = serde_json::from_slice(&value).ok()?;
            Some(json!({"id": token_id(&hash), "scopes": record["scopes"],
                "created_at": record["created_at"]}))
        })
        .collect();
    tokens.sort_by(|a, b| {
        let at = |v: &serde_json::Value| v["created_at"].as_str().unwrap_or("").to_owned();
        at(a).cmp(&at(b))
    });
    Ok(Json(json!({ "tokens": tokens })))
}

/// `DELETE /v1/tokens/{token}` (admin): revokes a token, named by itself or by its id, at once.
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
    let key = token_key(&hash);
    let existed = inner.store.delete_setting(&key)?;
    if let Some((_, revoked)) = inner.tokens.write().expect("token lock").remove(&hash) {
        revoked.cancel();
    }
    match existed {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(token_not_found()),
    }
}

fn token_not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "token_not_found", "no such token")
}

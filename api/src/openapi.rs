//! The OpenAPI 3.1 document of the HTTP API, `GET /v1/openapi.json`: generated from the
//! handlers' annotations and types with utoipa, and collected by the same router that serves
//! them (`utoipa_axum`), so a route cannot be served undocumented.

use axum::Json;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's frame: what every path shares.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chiso",
        description = "An event-sourced analytics backend for public-service performance data: \
            agencies append events to a log; tables folded from it answer SQL.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerToken),
    tags(
        (name = "log", description = "Appends, reads and subscriptions"),
        (name = "sql", description = "SQL over the tables, the Biểu 06 report, rankings, running queries"),
        (name = "admin", description = "Tokens, backups, metrics"),
        (name = "ops", description = "Health, readiness and this document"),
        (name = "console", description = "The web console: a page and its files, public, compiled into the binary")
    )
)]
pub struct ApiDoc;

/// Bearer tokens: the environment's admin token or one made by `POST /v1/tokens`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (README › Errors lists them).
    code: String,
    /// What is wrong, in words.
    message: String,
    /// Where: `pointer`, `line`, `index`, and what a client may act on.
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// The document, set once when the router is built.
pub(crate) static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();

/// `GET /v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn document() -> Json<serde_json::Value> {
    Json(DOCUMENT.get().cloned().unwrap_or_default())
}

//! The web console: `GET /` and `GET /console/{file}`, a page and its assets compiled into the
//! binary (no CDN, no network: it works on an offline government network). The page and its
//! assets are public; every figure on it comes from the authenticated API, with the token the
//! person gives the page.
//!
//! The sources are `api/console/`; `vendor/` holds the one npm package they use (uPlot, the
//! charts), rebuilt from the lockfile by `npm ci && npm run vendor` there — cargo needs no node.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

/// Only this origin's scripts, styles and requests: no inline script or style, nothing from
/// other origins, no framing. Names come from agencies' own events, so the page puts every
/// value in as text; this is the second wall.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $path:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../console/", $path)),
        }
    };
}

static ASSETS: [Asset; 6] = [
    asset!("index.html", "index.html", "text/html; charset=utf-8"),
    asset!("app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("i18n.js", "i18n.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "style.css", "text/css; charset=utf-8"),
    asset!(
        "uPlot.iife.min.js",
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "uPlot.min.css",
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8"
    ),
];

/// Each asset's entity tag: a hash of its bytes, so a browser revalidates and gets 304 until
/// the binary changes.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let mut hasher = std::hash::DefaultHasher::new();
            asset.body.hash(&mut hasher);
            HeaderValue::try_from(format!("\"{:016x}\"", hasher.finish())).expect("hex is ASCII")
        })
        .collect()
});

/// `GET /`: the console's page.
#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The web console's page (HTML)", content_type = "text/html"), (status = 304, description = "Unchanged since the `If-None-Match` tag")))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /console/{file}`: a script or a style of the page.
#[utoipa::path(get, path = "/console/{file}", tag = "console",
    params(("file" = String, Path, description = "`app.js`, `i18n.js`, `style.css`, `uPlot.iife.min.js`, `uPlot.min.css`")),
    responses((status = 200, description = "The file"), (status = 304, description = "Unchanged since the `If-None-Match` tag"), (status = 404, description = "No such file", body = crate::openapi::ErrorBody)))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS
        .iter()
        .position(|asset| asset.name == file && file != "index.html")
    {
        Some(index) => serve(index, &headers),
        None => crate::not_found().await.into_response(),
    }
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

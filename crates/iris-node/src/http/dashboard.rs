//! The dashboard: one page, served by the node at `GET /`, whose assets are compiled into the
//! binary (no build step, no CDN, no fonts to fetch: the node may have no internet).
//!
//! The page itself holds no secret, so its three files are the only routes served without the
//! token. The page reads the token from its URL's fragment (`iris dashboard` prints that URL;
//! a fragment never reaches a server or its logs), keeps it in the tab's session storage, and
//! sends it as a header with every call: the control API for the snapshot and the actions, and
//! the event stream ([`crate::http::events`]) for everything live. Its content security policy
//! allows nothing but the node itself.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
pub const INDEX_PATH: &str = "/";
/// Its script.
pub const SCRIPT_PATH: &str = "/dashboard.js";
/// Its style sheet.
pub const STYLE_PATH: &str = "/dashboard.css";

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Only the node itself, no inline script or style, never in a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's routes (served without the token).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            INDEX_PATH,
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            STYLE_PATH,
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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
    // The assets change with the binary: a browser revalidates them on every load.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

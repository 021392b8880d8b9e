//! `GET /ui`: the operators' fleet dashboard. A static page and script compiled into the
//! binary (no internet, no build step); the script asks for an API key, keeps it in the tab's
//! `sessionStorage` and polls `GET /agents`, `GET /phones` and `GET /processes` with it, so the
//! page itself needs no auth and holds no data.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
/// Same-origin only: the page loads nothing from elsewhere and talks only to this API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui`
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /ui/app.js`
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

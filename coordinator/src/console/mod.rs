//! The operators' console at `/ui`: server-rendered HTML (maud), htmx and its SSE extension
//! vendored in `assets/`, live parts pushed as server-sent events (docs/decisions/0004).
//!
//! An operator or admin API key is exchanged once for a session cookie ([`session`]); every
//! action carries the session's CSRF token and is written to the audit log ([`audit`]), which
//! also records the API's operator actions and is served at `GET /audit`.
//!
//! The CSP is strict: no inline script or style. `live` re-renders a page's live part each
//! second and sends it when it changed. The pages: `fleet`, `phone` (health charts from
//! `phone_health_samples`, filled by a trigger on `phones`), `processes`, `failures` (with the
//! evidence from the agents' object stores), `sessions` (admins list and revoke sessions).
//! Their SQL is in `db::console_sessions`, `db::audit_log` and `db::console_views`. Tested
//! over HTTP (`tests/console.rs`, the admin actions in `tests/console_admin.rs`) and in
//! Debian's chromium over WebDriver: `tests/console_browser.rs` (no agent) and, against a real
//! agent and simulated phones, `tests/e2e/tests/system/console.rs` (skipped without
//! chromium-driver unless `PF_REQUIRE_BROWSER=1`).

pub mod audit;
mod failures;
pub mod fleet;
mod live;
mod phone;
mod processes;
mod screen;
pub mod session;
mod sessions;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::http::AppState;
use session::Signed;

const HTMX: &str = include_str!("assets/htmx.min.js");
const HTMX_SSE: &str = include_str!("assets/htmx-sse.min.js");
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// Same-origin only, no inline script or style: escaped text could not run even if escaping
/// failed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (merged into the API router) and `GET /audit`.
pub fn router() -> Router<AppState> {
    let ui = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/fleet") }))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/fleet", get(fleet::page))
        .route("/ui/phones/{phone_id}", get(phone::page))
        .route("/ui/phones/{phone_id}/{action}", post(phone::act))
        .route("/ui/phones/{phone_id}/screen", get(screen::image))
        .route("/ui/processes", get(processes::list_page))
        .route("/ui/processes/{process_id}", get(processes::page))
        .route("/ui/processes/{process_id}/cancel", post(processes::cancel))
        .route(
            "/ui/queue-items/{queue_item_id}/retry",
            post(processes::retry),
        )
        .route("/ui/failures", get(failures::page))
        .route(
            "/ui/evidence/{queue_item_id}/{attempt}",
            get(failures::evidence),
        )
        .route(
            "/ui/evidence/{queue_item_id}/{attempt}/screenshot",
            get(failures::screenshot),
        )
        .route("/ui/audit", get(audit::page))
        .route("/ui/sessions", get(sessions::page))
        .route("/ui/sessions/{ref}/revoke", post(sessions::revoke))
        .route("/ui/live/{*view}", get(live::stream))
        .route("/ui/assets/{name}", get(asset))
        .layer(middleware::from_fn(secure_headers));
    Router::new()
        .merge(ui)
        .route("/audit", get(audit::list_api))
}

async fn secure_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "htmx-sse.min.js" => (HTMX_SSE, "text/javascript; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return ApiError::not_found(vec![format!("asset_not_found:{name}")]).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A whole page: head, navigation, the signed-in operator and a sign-out form.
fn layout(title: &str, who: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · Phonefarm" }
                link rel="stylesheet" href="/ui/assets/console.css";
                link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
                script src="/ui/assets/htmx.min.js" {}
                script src="/ui/assets/htmx-sse.min.js" {}
                script src="/ui/assets/console.js" {}
            }
            body {
                @if let Some(s) = who {
                    nav {
                        strong { "Phonefarm" }
                        a href="/ui/fleet" { "Fleet" }
                        a href="/ui/processes" { "Processes" }
                        a href="/ui/failures" { "Failures" }
                        a href="/ui/audit" { "Audit" }
                        @if s.role >= crate::config::Role::Admin { a href="/ui/sessions" { "Sessions" } }
                        span.who { (s.key_name) " (" (s.role.as_str()) ")" }
                        form method="post" action="/ui/sign-out" {
                            (s.csrf_field())
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page answer with a status other than 200 (errors shown to a person).
fn page_with(status: StatusCode, title: &str, who: Option<&Signed>, body: Markup) -> Response {
    (status, layout(title, who, body)).into_response()
}

/// An error page for a failed console request; the cause is logged, not shown.
fn error_page(who: Option<&Signed>, e: ApiError) -> Response {
    let status = e.status;
    if status.is_server_error() {
        tracing::warn!(detail = %e.detail, "console request failed");
    }
    let msg = if status.is_server_error() {
        "Something went wrong on the server; try again.".to_string()
    } else {
        e.errors.join(", ")
    };
    page_with(
        status,
        status.canonical_reason().unwrap_or("Error"),
        who,
        html! {
            p.error { (msg) }
            p { a href="/ui/fleet" { "Back to the fleet" } }
        },
    )
}

/// A 303 to a console path; a path that cannot be a header goes to the fleet page.
fn see_other(path: &str) -> Response {
    let location = HeaderValue::from_str(path).unwrap_or(HeaderValue::from_static("/ui/fleet"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// `2026-03-22 08:30:00` (UTC), or a dash.
fn when(t: Option<OffsetDateTime>) -> String {
    match t {
        Some(t) => {
            let s = crate::domain::time::fmt(t);
            s.get(..19).unwrap_or(&s).replace('T', " ")
        }
        None => "—".into(),
    }
}

/// `12 s ago`, `3 min ago`, `2 h ago`.
fn ago(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(t) = t else { return "never".into() };
    let s = (now - t).whole_seconds().max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A JSON value as readable nested fields: objects as definition lists, arrays as lists.
fn fields(v: &serde_json::Value) -> Markup {
    use serde_json::Value;
    match v {
        Value::Object(m) if m.is_empty() => html! { span.muted { "—" } },
        Value::Object(m) => html! {
            dl.fields {
                @for (k, v) in m { dt { (k) } dd { (fields(v)) } }
            }
        },
        Value::Array(a) if a.is_empty() => html! { span.muted { "none" } },
        Value::Array(a) => html! { ul { @for v in a { li { (fields(v)) } } } },
        Value::String(s) => html! { (s) },
        Value::Null => html! { span.muted { "—" } },
        other => html! { (other.to_string()) },
    }
}

//! Console sessions: an operator or admin API key is posted once to `/ui/sign-in` and exchanged
//! for a random session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind HTTPS).
//! Postgres keeps only the id's SHA-256, with the key's name and role, a CSRF token, an expiry
//! and a revocation time. A session ends at sign-out, at expiry, after [`IDLE`] without a page,
//! or when its API key is revoked.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::serve::IncomingStream;
use base64::Engine;
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::Duration;

use super::{audit, layout, page_with};
use crate::config::Role;
use crate::db;
use crate::domain::time::now_ms;
use crate::error::ApiError;
use crate::http::AppState;

pub const COOKIE: &str = "pf_session";
/// A session's whole life.
pub const LIFETIME: Duration = Duration::hours(12);
/// A session unused this long has ended.
pub const IDLE: Duration = Duration::hours(2);

/// The signed-in operator of a console request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub key_name: String,
    pub role: Role,
    pub csrf: String,
    /// Where the request came from (peer address, and the proxy's `X-Forwarded-For`).
    pub address: Option<String>,
    id_hash: Vec<u8>,
}

impl Signed {
    /// The hidden form field that carries the CSRF token.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// The refusal of an action whose form or `X-CSRF-Token` header lacks this session's token.
    pub fn csrf_refusal(&self, headers: &HeaderMap, form: Option<&str>) -> Option<Response> {
        let sent = form.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        match sent {
            Some(t) if constant_time_eq(t.as_bytes(), self.csrf.as_bytes()) => None,
            _ => Some(page_with(
                StatusCode::FORBIDDEN,
                "Forbidden",
                Some(self),
                html! { p.error { "csrf_token_missing_or_wrong: reload the page and try again." } },
            )),
        }
    }

    /// The SHA-256 of the session id (to tell this session apart in lists; never shown).
    pub(super) fn id_hash(&self) -> &[u8] {
        &self.id_hash
    }

    /// Whether this session still counts (for live streams, checked on every tick).
    pub async fn still_valid(&self, db: &sqlx::PgPool) -> Result<bool, sqlx::Error> {
        Ok(lookup(db, &self.id_hash, false).await?.is_some())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The peer's address, plus what a proxy says in `X-Forwarded-For`.
pub fn address(parts_headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    let forwarded = parts_headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    match (peer.map(|p| p.ip().to_string()), forwarded) {
        (Some(p), Some(f)) => Some(format!("{p} (forwarded for {f})")),
        (Some(p), None) => Some(p),
        (None, f) => f,
    }
}

/// How a connection reached the server: the peer's address and whether it is TLS (the
/// connect info of [`crate::app`]'s service).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            tls: false,
        }
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            tls: true,
        }
    }
}

/// The connection's [`Peer`], when the service was built with it.
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<Peer> {
    extensions.get::<ConnectInfo<Peer>>().map(|c| c.0)
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    peer_of(&parts.extensions).map(|p| p.addr)
}

/// A live session by id hash: (key name, role, csrf). Touches `last_seen_at` when `touch`.
async fn lookup(
    db: &sqlx::PgPool,
    id_hash: &[u8],
    touch: bool,
) -> Result<Option<(String, String, String)>, sqlx::Error> {
    let now = now_ms();
    db::console_sessions::live(db, id_hash, now, now - IDLE, touch).await
}

/// Rejection of a console request without a live session: to the sign-in page.
pub struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/ui/sign-in").into_response()
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let Some(id) = cookie_value(&parts.headers, COOKIE) else {
            return Err(SignInFirst.into_response());
        };
        let id_hash = hash(id);
        // Live streams are checked on every tick instead of touching the row each time.
        let touch = !parts.uri.path().starts_with("/ui/live/");
        match lookup(&st.db, &id_hash, touch).await {
            Ok(Some((key_name, role, csrf))) => Ok(Signed {
                key_name,
                role: Role::parse(&role).unwrap_or(Role::Operator),
                csrf,
                address: address(&parts.headers, peer(parts)),
                id_hash,
            }),
            Ok(None) => Err(SignInFirst.into_response()),
            Err(e) => Err(super::error_page(None, ApiError::from(e))),
        }
    }
}

/// The request's address, for the audit of sign-in (before there is a session).
pub struct Address(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Address {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Address(address(&parts.headers, peer(parts))))
    }
}

/// Whether the request came over the coordinator's own TLS.
pub struct Tls(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Tls {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Tls(peer_of(&parts.extensions).is_some_and(|p| p.tls)))
    }
}

fn sign_in_form(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { p.error { (m) } }
        form.signin method="post" action="/ui/sign-in" {
            label { "Operator or admin API key "
                input type="password" name="key" autocomplete="off" required autofocus; }
            button type="submit" { "Sign in" }
        }
        p.muted { "The key is exchanged for a session and not kept in this browser." }
    }
}

/// `GET /ui/sign-in`
pub async fn sign_in_page() -> Response {
    layout("Sign in", None, sign_in_form(None)).into_response()
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    key: String,
}

/// Whether another site posted this form: `Sec-Fetch-Site` says so, or, from a browser that
/// sends none, an `Origin` that is not this host.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let bare = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            bare != host
        }
        _ => false,
    }
}

fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `POST /ui/sign-in` (`key`): operator and admin keys get a session; integrator keys, wrong
/// keys and cross-site posts are refused.
pub async fn sign_in(
    State(st): State<AppState>,
    Address(addr): Address,
    tls: Tls,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let refuse =
        |status: StatusCode, msg: &str| page_with(status, "Sign in", None, sign_in_form(Some(msg)));
    if cross_site(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross_site_sign_in_refused");
    }
    let key = form.key.trim();
    if key.is_empty() {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "missing_field:key");
    }
    let caller = match st
        .auth
        .authenticate(&st.db, Some(&format!("Bearer {key}")))
        .await
    {
        Ok(c) => c,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized: that key is not valid",
            );
        }
        Err(e) => return super::error_page(None, e),
    };
    if caller.role < Role::Operator {
        return refuse(
            StatusCode::FORBIDDEN,
            "insufficient_role: integrator keys cannot sign in to the console",
        );
    }
    let id = random_token();
    let csrf = random_token();
    let now = now_ms();
    let session = db::console_sessions::New {
        id_hash: &hash(&id),
        key_name: &caller.name,
        role: caller.role.as_str(),
        csrf_token: &csrf,
        address: addr.as_deref(),
        now,
        expires_at: now + LIFETIME,
    };
    let inserted = db::console_sessions::insert(&st.db, &session).await;
    if let Err(e) = inserted {
        return super::error_page(None, e.into());
    }
    let entry = audit::Entry::console(&caller.name, "sign_in", None, addr.clone());
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(None, e.into());
    }
    let secure = if tls.0 || behind_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.whole_seconds()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/ui/fleet".into()),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /ui/sign-out`: revokes the session and clears the cookie.
pub async fn sign_out(
    State(st): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = who.csrf_refusal(&headers, form.csrf.as_deref()) {
        return r;
    }
    let revoked = db::console_sessions::revoke(&st.db, &who.id_hash, now_ms()).await;
    if let Err(e) = revoked {
        return super::error_page(Some(&who), e.into());
    }
    let entry = audit::Entry::console(&who.key_name, "sign_out", None, who.address.clone());
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(Some(&who), e.into());
    }
    let clear = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear),
            (header::LOCATION, "/ui/sign-in".into()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_static("a=1; pf_session=abc; b=2"),
        );
        assert_eq!(super::cookie_value(&h, "pf_session"), Some("abc"));
        assert_eq!(super::cookie_value(&h, "c"), None);
        h.insert("host", HeaderValue::from_static("farm:8080"));
        assert!(!super::cross_site(&h));
        h.insert("origin", HeaderValue::from_static("http://farm:8080"));
        assert!(!super::cross_site(&h));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(super::cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!super::cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(super::cross_site(&h));
        assert!(super::constant_time_eq(b"x", b"x") && !super::constant_time_eq(b"x", b"y"));
    }
}

//! The audit log: every console action and every operator action of the API (who by API key
//! name, what, on what, when, from which address). Shown at `/ui/audit`, served at
//! `GET /audit` (admin).

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::instrument;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::session::{Signed, address, peer_of};
use super::{layout, when};
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::db::audit_log::newest;
use crate::domain::time::{fmt, now_ms};
use crate::error::ApiError;
use crate::error::answers::{Forbidden, Internal, Unauthorized, Unavailable, Unprocessable};
use crate::http::AppState;
use crate::http::extract::ApiQuery;

/// One action to record.
pub struct Entry {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub address: Option<String>,
    pub via: &'static str,
    pub detail: Value,
}

impl Entry {
    pub fn console(
        actor: &str,
        action: &str,
        target: Option<String>,
        address: Option<String>,
    ) -> Self {
        Entry {
            actor: actor.into(),
            action: action.into(),
            target,
            address,
            via: "console",
            detail: json!({}),
        }
    }

    pub fn with(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// The row to insert, stamped now (for a caller that writes it in its own transaction).
    pub fn row(&self) -> db::audit_log::New<'_> {
        db::audit_log::New {
            at: now_ms(),
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            address: self.address.as_deref(),
            via: self.via,
            detail: &self.detail,
        }
    }
}

pub async fn record(db: &PgPool, e: Entry) -> Result<(), sqlx::Error> {
    db::audit_log::insert(db, &e.row()).await
}

/// One recorded action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The API key's name (`ingest-secret` for the compatibility secret).
    pub actor: String,
    /// What was done: `sign_in`, `phone.disable`, `PUT /phones/{phone_id}`, ...
    pub action: String,
    /// What it was done to (a phone id, a process id, ...).
    pub target: Option<String>,
    /// Where the request came from.
    pub address: Option<String>,
    /// `console` or `api`.
    pub via: String,
    pub detail: Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditParams {
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Only entries older than this id (the previous page's `next_before`).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
}

/// `GET /audit` (admin): the audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "fleet", params(AuditParams),
    responses((status = 200, description = "A page of the audit log", body = AuditList),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn list_api(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(Role::Admin)?;
    let mut errors = Vec::new();
    let limit = match q.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => {
            errors.push("out_of_range:limit:1_to_500".to_string());
            100
        }
    };
    let before = match q.before.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => {
            errors.push("invalid_value:before".to_string());
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    let rows = newest(&st.db, before, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: fmt(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            address: r.address,
            via: r.via,
            detail: r.detail,
        })
        .collect();
    Ok(Json(AuditList {
        entries,
        next_before,
    }))
}

/// The OpenAPI of `GET /audit`, merged into the API's document.
#[derive(OpenApi)]
#[openapi(paths(list_api))]
pub struct AuditDoc;

/// `GET /ui/audit`: the newest 200 entries.
pub async fn page(State(st): State<AppState>, who: Signed) -> Response {
    let rows = match newest(&st.db, None, 200).await {
        Ok(r) => r,
        Err(e) => return super::error_page(Some(&who), e.into()),
    };
    layout(
        "Audit",
        Some(&who),
        html! {
            table {
                thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } th { "Target" }
                             th { "From" } th { "Via" } th { "Detail" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { (when(Some(r.at))) } td { (r.actor) } td { code { (r.action) } }
                            td { (r.target.as_deref().unwrap_or("—")) }
                            td { (r.address.as_deref().unwrap_or("—")) } td { (r.via) }
                            td { @if r.detail.as_object().is_some_and(|m| !m.is_empty()) {
                                code { (r.detail.to_string()) } } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// The API's operator actions that are recorded when they succeed: method and route.
const AUDITED: &[(Method, &str)] = &[
    (Method::PUT, "/phones/{phone_id}"),
    (Method::POST, "/phones/{phone_id}/move"),
    (Method::PUT, "/accounts/{account_id}"),
    (Method::PUT, "/capabilities/{name}"),
    (Method::POST, "/processes/{process_id}/cancel"),
    (Method::POST, "/queue-items/{queue_item_id}/retry"),
];

/// Middleware over the API: records a successful audited request with its caller's key name.
pub async fn api_layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let audited = route
        .as_deref()
        .is_some_and(|r| AUDITED.iter().any(|(m, p)| m == req.method() && *p == r));
    if !audited {
        return next.run(req).await;
    }
    let route = route.unwrap_or_default();
    // The target is the route's parameter (a phone id, a process id), not the path.
    let target = route
        .split('/')
        .zip(req.uri().path().split('/'))
        .find(|(template, _)| template.starts_with('{'))
        .map(|(_, value)| value.to_owned());
    let action = format!("{} {route}", req.method());
    let peer = peer_of(req.extensions()).map(|p| p.addr);
    let from = address(req.headers(), peer);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let resp = next.run(req).await;
    if resp.status().is_success() {
        // The handler authenticated this caller a moment ago: the answer is cached.
        let actor = match st.auth.authenticate(&st.db, authorization.as_deref()).await {
            Ok(c) => c.name,
            Err(_) => "unknown".into(),
        };
        let entry = Entry {
            actor,
            action,
            target,
            address: from,
            via: "api",
            detail: json!({"status": resp.status().as_u16()}),
        };
        if let Err(e) = record(&st.db, entry).await {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
    resp
}

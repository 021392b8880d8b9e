//! `/ui/sessions` (admin): the live console sessions (key name, role, created, last seen,
//! address; named by their handle, never by their id or its hash) and revoking one: its next
//! request goes to the sign-in page.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::json;

use super::session::{CsrfForm, IDLE, Signed};
use super::{ago, audit, layout, page_with, see_other, when};
use crate::config::Role;
use crate::db;
use crate::domain::time::now_ms;
use crate::error::ApiError;
use crate::http::AppState;

/// The page an operator gets instead.
fn admins_only(who: &Signed) -> Option<Response> {
    (who.role < Role::Admin).then(|| {
        page_with(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some(who),
            html! { p.error { "insufficient_role: the sessions page needs an admin key." } },
        )
    })
}

/// `GET /ui/sessions`
pub async fn page(State(st): State<AppState>, who: Signed) -> Response {
    if let Some(r) = admins_only(&who) {
        return r;
    }
    let now = now_ms();
    let rows = match db::console_sessions::list_live(&st.db, who.id_hash(), now, now - IDLE).await {
        Ok(r) => r,
        Err(e) => return super::error_page(Some(&who), e.into()),
    };
    layout(
        "Sessions",
        Some(&who),
        html! {
            p.muted { "Signed-in consoles. Revoking one sends its next request to the sign-in page." }
            table.sessions {
                thead { tr { th { "Key" } th { "Role" } th { "Created (UTC)" } th { "Last seen" }
                             th { "Expires (UTC)" } th { "From" } th {} } }
                tbody {
                    @for s in &rows {
                        tr data-session=(s.r#ref) {
                            td { (s.key_name) @if s.mine { " " span.muted { "(this session)" } } }
                            td { (s.role) }
                            td { (when(Some(s.created_at))) }
                            td { (ago(Some(s.last_seen_at), now)) }
                            td { (when(Some(s.expires_at))) }
                            td { (s.address.as_deref().unwrap_or("—")) }
                            td {
                                form.actions method="post" action={ "/ui/sessions/" (s.r#ref) "/revoke" } {
                                    (who.csrf_field())
                                    button type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `POST /ui/sessions/{ref}/revoke` (admin, CSRF)
pub async fn revoke(
    State(st): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Path(r): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = who.csrf_refusal(&headers, form.csrf.as_deref()) {
        return refused;
    }
    if let Some(refused) = admins_only(&who) {
        return refused;
    }
    let not_found = || ApiError::not_found(vec![format!("session_not_found:{r}")]);
    let Ok(handle) = r.parse::<i64>() else {
        return super::error_page(Some(&who), not_found());
    };
    let key_name = match db::console_sessions::revoke_ref(&st.db, handle, now_ms()).await {
        Ok(Some(k)) => k,
        Ok(None) => return super::error_page(Some(&who), not_found()),
        Err(e) => return super::error_page(Some(&who), e.into()),
    };
    let entry = audit::Entry::console(
        &who.key_name,
        "session.revoke",
        Some(key_name),
        who.address.clone(),
    )
    .with(json!({"session": handle}));
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(Some(&who), e.into());
    }
    see_other("/ui/sessions")
}

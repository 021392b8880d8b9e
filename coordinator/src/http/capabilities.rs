//! The capability registry: readable by every role, changed by admins without a deploy.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::domain::requests;
use crate::error::ApiError;

/// `GET /capabilities`
#[utoipa::path(get, path = "/capabilities", tag = "capabilities",
    responses((status = 200, body = super::docs::CapabilityList)), security(("bearer" = [])))]
pub async fn list(State(st): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let rules = db::capabilities::list(&st.db).await?;
    Ok(Json(json!({"capabilities": rules})))
}

/// `PUT /capabilities/{name}`
#[utoipa::path(put, path = "/capabilities/{name}", tag = "capabilities", params(("name" = String, Path)),
    request_body = super::docs::CapabilityBody,
    responses((status = 200, body = crate::domain::capabilities::CapabilityRule), (status = 404, body = super::docs::Problem)),
    security(("bearer" = [])))]
pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let rule = requests::capability_put(&name, &body).map_err(ApiError::unprocessable)?;
    let stored = db::capabilities::update(&st.db, &rule)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("capability_not_found:{name}")]))?;
    st.invalidate_capabilities();
    Ok(Json(serde_json::to_value(stored).unwrap_or_default()))
}

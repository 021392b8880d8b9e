//! The capability registry: readable by every role, changed by admins without a deploy.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::bodies;
use super::extract::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::domain::capabilities::CapabilityRule;
use crate::domain::requests;
use crate::error::ApiError;
use crate::error::answers::{
    BadRequest, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};

/// `GET /capabilities`
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"capabilities": [{"name": "keyword_warmup", "manual": true,
    "unattended": true, "live_verified": true, "routings": ["direct", "queue", "group"]}]}))]
pub struct CapabilityList {
    pub capabilities: Vec<CapabilityRule>,
}

/// `GET /capabilities`
#[utoipa::path(get, path = "/capabilities", tag = "capabilities",
    responses((status = 200, description = "The registry", body = CapabilityList),
              (status = 401, response = Unauthorized), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    _caller: Caller,
) -> Result<Json<CapabilityList>, ApiError> {
    let capabilities = db::capabilities::list(&st.db).await?;
    Ok(Json(CapabilityList { capabilities }))
}

/// `PUT /capabilities/{name}`
#[utoipa::path(put, path = "/capabilities/{name}", tag = "capabilities", params(("name" = String, Path)),
    request_body = bodies::CapabilityBody,
    responses((status = 200, description = "The rule as stored", body = CapabilityRule),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<CapabilityRule>, ApiError> {
    caller.require(Role::Admin)?;
    let rule = requests::capability_put(&name, &body).map_err(ApiError::unprocessable)?;
    let stored = db::capabilities::update(&st.db, &rule)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("capability_not_found:{name}")]))?;
    st.invalidate_capabilities();
    Ok(Json(stored))
}

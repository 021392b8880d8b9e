//! The account registry (operator endpoints).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tracing::instrument;

use super::AppState;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::config::Role;
use crate::db::{self, accounts::AccountRow};
use crate::domain::requests;
use crate::domain::time::fmt;
use crate::error::ApiError;

fn view(a: &AccountRow) -> Value {
    json!({
        "account_id": a.account_id,
        "phone_id": a.phone_id,
        "platform_username": a.platform_username,
        "active": a.active,
        "created_at": fmt(a.created_at),
        "updated_at": fmt(a.updated_at),
    })
}

/// `PUT /accounts/{account_id}`
#[utoipa::path(put, path = "/accounts/{account_id}", tag = "fleet", params(("account_id" = String, Path)),
    request_body = super::docs::AccountBody,
    responses((status = 200, body = super::docs::AccountDoc), (status = 201, body = super::docs::AccountDoc)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(account_id = %id))]
pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Operator)?;
    if id.is_empty() || id.chars().count() > 200 {
        return Err(ApiError::unprocessable(vec![
            "out_of_range:account_id:length_1_to_200".into(),
        ]));
    }
    let put = requests::account_put(&body).map_err(ApiError::unprocessable)?;
    let mut tx = st.db.begin().await?;
    let (row, created) = db::accounts::upsert(
        &mut tx,
        &id,
        put.phone_id.as_deref(),
        put.platform_username.as_deref(),
        put.active,
    )
    .await?;
    tx.commit().await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(view(&row))))
}

/// `GET /accounts/{account_id}`
#[utoipa::path(get, path = "/accounts/{account_id}", tag = "fleet", params(("account_id" = String, Path)),
    responses((status = 200, body = super::docs::AccountDoc), (status = 404, body = super::docs::Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let row = db::accounts::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("account_not_found:{id}")]))?;
    Ok(Json(view(&row)))
}

/// `GET /accounts`
#[utoipa::path(get, path = "/accounts", tag = "fleet",
    responses((status = 200, body = super::docs::AccountList)), security(("bearer" = [])))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::accounts::list(&st.db).await?;
    Ok(Json(
        json!({"accounts": rows.iter().map(view).collect::<Vec<_>>()}),
    ))
}

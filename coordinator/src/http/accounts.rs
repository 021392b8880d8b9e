//! The account registry (operator endpoints).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;

use super::AppState;
use super::bodies;
use super::extract::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::config::Role;
use crate::db::{self, accounts::AccountRow};
use crate::domain::requests;
use crate::domain::time::fmt;
use crate::error::ApiError;
use crate::error::answers::{
    BadRequest, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};

/// One account of the registry that routing resolves against.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"account_id": "acct-1", "phone_id": "R58M123", "platform_username": "ana.cooks",
    "active": true, "created_at": "2026-03-22T08:30:00.000Z", "updated_at": "2026-03-22T08:30:00.000Z"}))]
pub struct Account {
    pub account_id: String,
    /// The phone it is bound to.
    pub phone_id: Option<String>,
    pub platform_username: Option<String>,
    pub active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// `GET /accounts`
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

fn view(a: &AccountRow) -> Account {
    Account {
        account_id: a.account_id.clone(),
        phone_id: a.phone_id.clone(),
        platform_username: a.platform_username.clone(),
        active: a.active,
        created_at: fmt(a.created_at),
        updated_at: fmt(a.updated_at),
    }
}

/// `PUT /accounts/{account_id}`
#[utoipa::path(put, path = "/accounts/{account_id}", tag = "fleet", params(("account_id" = String, Path)),
    request_body = bodies::AccountBody,
    responses((status = 200, description = "Updated", body = Account),
              (status = 201, description = "Created", body = Account),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 413, response = PayloadTooLarge),
              (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(account_id = %id))]
pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    caller.require(Role::Operator)?;
    if id.is_empty() || id.chars().count() > 200 {
        return Err(ApiError::unprocessable(vec![
            "out_of_range:account_id:length_1_to_200".into(),
        ]));
    }
    let put = requests::account_put(&body).map_err(ApiError::unprocessable)?;
    let (row, created) = crate::lifecycle::fleet::put_account(&st.db, &id, &put).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(view(&row))))
}

/// `GET /accounts/{account_id}`
#[utoipa::path(get, path = "/accounts/{account_id}", tag = "fleet", params(("account_id" = String, Path)),
    responses((status = 200, description = "The account", body = Account),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Account>, ApiError> {
    caller.require(Role::Operator)?;
    let row = db::accounts::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("account_not_found:{id}")]))?;
    Ok(Json(view(&row)))
}

/// `GET /accounts`
#[utoipa::path(get, path = "/accounts", tag = "fleet",
    responses((status = 200, description = "Every account", body = AccountList),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<AccountList>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::accounts::list(&st.db).await?;
    Ok(Json(AccountList {
        accounts: rows.iter().map(view).collect(),
    }))
}

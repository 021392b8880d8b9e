//! The legacy endpoints: `POST /ingest` (post_video items), `POST /cancel`, and
//! `POST /runtime-snapshots/upsert`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::db;
use crate::domain::requests;
use crate::domain::status::ItemState;
use crate::domain::time::{fmt, now_ms};
use crate::error::ApiError;
use crate::events;

/// `POST /ingest`
#[utoipa::path(post, path = "/ingest", tag = "legacy", request_body = super::docs::IngestBody,
    responses((status = 202, body = super::docs::IngestAccepted), (status = 200, body = super::docs::IngestAccepted),
              (status = 404, body = super::docs::Problem), (status = 422, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn ingest(
    State(st): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Response, ApiError> {
    let req = requests::ingest(&body).map_err(ApiError::unprocessable)?;
    if !db::accounts::is_active(&st.db, &req.account_id).await? {
        return Err(ApiError::not_found(vec![format!(
            "account_not_found:{}",
            req.account_id
        )]));
    }
    if let Some(existing) =
        db::queue_items::find_ingest(&st.db, &req.account_id, &req.content_id).await?
    {
        return Ok(duplicate(existing));
    }
    if let Some(url) = &req.callback_url {
        super::check_url(&st, url, "callback_url_not_allowed").await?;
    }
    // Both assets are checked concurrently; every failure is reported.
    let video = st.http.head_ok(&req.video_path);
    let cover = async {
        match &req.cover_image_path {
            Some(u) => st.http.head_ok(u).await.map(Some),
            None => Ok(None),
        }
    };
    let (video, cover) = tokio::join!(video, cover);
    let mut errors = Vec::new();
    if let Err(e) = video {
        tracing::info!(error = %e, "video_path failed its HEAD check");
        errors.push("asset_unreachable:video_path".to_string());
    }
    if let Err(e) = cover {
        tracing::info!(error = %e, "cover_image_path failed its HEAD check");
        errors.push("asset_unreachable:cover_image_path".to_string());
    }
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    let now = now_ms();
    let scheduled = req.scheduling_hint.filter(|t| *t > now);
    let state = if scheduled.is_some() {
        ItemState::Scheduled
    } else {
        ItemState::Queued
    };
    let id = Uuid::now_v7();
    let inputs = req.inputs();
    let mut tx = st.db.begin().await?;
    let inserted = db::queue_items::insert_ingest(
        &mut tx,
        db::queue_items::NewIngest {
            queue_item_id: id,
            account_id: &req.account_id,
            content_id: &req.content_id,
            state: state.as_str(),
            inputs: &inputs,
            scheduled_at: scheduled,
            callback_url: req.callback_url.as_deref(),
            metadata: &req.metadata,
            now,
        },
    )
    .await?;
    if !inserted {
        drop(tx);
        let existing = db::queue_items::find_ingest(&st.db, &req.account_id, &req.content_id)
            .await?
            .ok_or_else(ApiError::internal)?;
        return Ok(duplicate(existing));
    }
    events::queue_item_updated(
        &mut tx,
        req.callback_url.as_deref(),
        id,
        &req.content_id,
        &req.account_id,
        state.as_str(),
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    if req.callback_url.is_some() {
        st.callbacks.notify_one();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "queue_item_id": id,
            "content_id": req.content_id,
            "account_id": req.account_id,
            "queue_status": state.as_str(),
        })),
    )
        .into_response())
}

fn duplicate(existing: db::queue_items::ItemRow) -> Response {
    (
        StatusCode::OK,
        Json(json!({
            "status": "duplicate",
            "queue_item_id": existing.queue_item_id,
            "content_id": existing.content_id,
            "account_id": existing.account_id,
            "queue_status": existing.state,
        })),
    )
        .into_response()
}

/// `POST /cancel`
#[utoipa::path(post, path = "/cancel", tag = "legacy", request_body = super::docs::LegacyCancelBody,
    responses((status = 200, body = super::docs::LegacyCancelled), (status = 404, body = super::docs::Problem),
              (status = 409, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn cancel(
    State(st): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Json<Value>, ApiError> {
    let (content_id, account_id, reason) =
        requests::legacy_cancel(&body).map_err(ApiError::unprocessable)?;
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    let item = db::queue_items::find_ingest_locked(&mut tx, &account_id, &content_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(vec![format!(
                "queue_item_not_found:{account_id}:{content_id}"
            )])
        })?;
    let state: ItemState = item.state.parse().map_err(|_| ApiError::internal())?;
    if !matches!(
        state,
        ItemState::Queued | ItemState::Scheduled | ItemState::Retryable
    ) {
        return Err(ApiError::conflict(format!("not_cancellable:{state}")));
    }
    db::queue_items::cancel(&mut tx, &[item.queue_item_id], now).await?;
    db::queue_items::record_event(
        &mut tx,
        item.queue_item_id,
        "cancelled",
        now,
        json!({"reason": reason}),
    )
    .await?;
    events::queue_item_updated(
        &mut tx,
        item.callback_url.as_deref(),
        item.queue_item_id,
        &content_id,
        &account_id,
        ItemState::Cancelled.as_str(),
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    if item.callback_url.is_some() {
        st.callbacks.notify_one();
    }
    Ok(Json(json!({
        "status": "cancelled",
        "queue_item_id": item.queue_item_id,
        "previous_status": state.as_str(),
    })))
}

/// `POST /runtime-snapshots/upsert`
#[utoipa::path(post, path = "/runtime-snapshots/upsert", tag = "legacy", request_body = super::docs::SnapshotBody,
    responses((status = 200, body = super::docs::SnapshotResult), (status = 422, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn snapshot(
    State(st): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Json<Value>, ApiError> {
    let s = requests::snapshot(&body).map_err(ApiError::unprocessable)?;
    Ok(Json(match db::snapshots::upsert(&st.db, &s).await? {
        Some(synced) => json!({
            "status": "upserted",
            "account_id": s.account_id,
            "snapshot_id": s.snapshot_id,
            "strategy_version": s.strategy_version,
            "strategy_synced_at": fmt(synced),
        }),
        None => json!({
            "status": "ignored_stale",
            "account_id": s.account_id,
            "snapshot_id": s.snapshot_id,
            "strategy_version": s.strategy_version,
        }),
    }))
}

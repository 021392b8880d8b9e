//! The legacy endpoints: `POST /ingest` (post_video items), `POST /cancel`, and
//! `POST /runtime-snapshots/upsert`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::bodies;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::db;
use crate::domain::requests;
use crate::domain::status::ItemState;
use crate::domain::time::{fmt, now_ms};
use crate::error::ApiError;
use crate::error::answers::{
    Conflict, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
    UnsupportedMediaType,
};
use crate::lifecycle::{self, cancel::LegacyOutcome, ingest::Ingested};

/// `status` of an ingest answer.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    /// A new queue item (202).
    Accepted,
    /// The `(account_id, content_id)` was ingested before (200).
    Duplicate,
}

/// The answer to `POST /ingest`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "accepted", "queue_item_id": "0190c6f0-0000-7000-8000-000000000002",
    "content_id": "clip-7", "account_id": "acct-1", "queue_status": "QUEUED"}))]
pub struct IngestAnswer {
    pub status: IngestStatus,
    pub queue_item_id: Uuid,
    pub content_id: String,
    pub account_id: String,
    /// The item's internal state.
    pub queue_status: ItemState,
}

/// `status` of a legacy cancel.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelledTag {
    Cancelled,
}

/// The answer to `POST /cancel`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyCancelled {
    pub status: CancelledTag,
    pub queue_item_id: Uuid,
    /// The state the item was cancelled from.
    pub previous_status: ItemState,
}

/// The answer to `POST /runtime-snapshots/upsert`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SnapshotAnswer {
    /// Stored; `strategy_synced_at` as stored (RFC 3339, milliseconds).
    Upserted {
        account_id: String,
        snapshot_id: String,
        strategy_version: i64,
        #[schema(format = DateTime)]
        strategy_synced_at: String,
    },
    /// A newer snapshot is stored: this one was ignored (`strategy_version` is the incoming
    /// one).
    IgnoredStale {
        account_id: String,
        snapshot_id: String,
        strategy_version: i64,
    },
}

/// `POST /ingest`
#[utoipa::path(post, path = "/ingest", tag = "legacy", request_body = bodies::IngestBody,
    responses((status = 202, description = "A new queue item", body = IngestAnswer),
              (status = 200, description = "Ingested before", body = IngestAnswer),
              (status = 401, response = Unauthorized), (status = 404, response = NotFound),
              (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
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
    match lifecycle::ingest::create(&st.db, &req, now_ms()).await? {
        Ingested::Exists(existing) => Ok(duplicate(existing)),
        Ingested::Created {
            queue_item_id,
            state,
            wake,
        } => {
            st.wake(wake);
            let body = IngestAnswer {
                status: IngestStatus::Accepted,
                queue_item_id,
                content_id: req.content_id,
                account_id: req.account_id,
                queue_status: state,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    }
}

fn duplicate(existing: db::queue_items::ItemRow) -> Response {
    let body = IngestAnswer {
        status: IngestStatus::Duplicate,
        queue_item_id: existing.queue_item_id,
        content_id: existing.content_id.unwrap_or_default(),
        account_id: existing.account_id.unwrap_or_default(),
        queue_status: existing.state,
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// `POST /cancel`
#[utoipa::path(post, path = "/cancel", tag = "legacy", request_body = bodies::LegacyCancelBody,
    responses((status = 200, description = "The item was cancelled", body = LegacyCancelled),
              (status = 401, response = Unauthorized), (status = 404, response = NotFound),
              (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
              (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn cancel(
    State(st): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Json<LegacyCancelled>, ApiError> {
    let (content_id, account_id, reason) =
        requests::legacy_cancel(&body).map_err(ApiError::unprocessable)?;
    match lifecycle::cancel::legacy(
        &st.db,
        &account_id,
        &content_id,
        reason.as_deref(),
        now_ms(),
    )
    .await?
    {
        LegacyOutcome::NotFound => Err(ApiError::not_found(vec![format!(
            "queue_item_not_found:{account_id}:{content_id}"
        )])),
        LegacyOutcome::NotCancellable(state) => {
            Err(ApiError::conflict(format!("not_cancellable:{state}")))
        }
        LegacyOutcome::Cancelled {
            queue_item_id,
            previous,
            wake,
        } => {
            st.wake(wake);
            Ok(Json(LegacyCancelled {
                status: CancelledTag::Cancelled,
                queue_item_id,
                previous_status: previous,
            }))
        }
    }
}

/// `POST /runtime-snapshots/upsert`
#[utoipa::path(post, path = "/runtime-snapshots/upsert", tag = "legacy", request_body = bodies::SnapshotBody,
    responses((status = 200, description = "Stored, or ignored as stale", body = SnapshotAnswer,
               example = json!({"status": "upserted", "account_id": "acct-1", "snapshot_id": "snap-3",
                   "strategy_version": 4, "strategy_synced_at": "2026-03-22T08:30:00.000Z"})),
              (status = 401, response = Unauthorized), (status = 413, response = PayloadTooLarge),
              (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn snapshot(
    State(st): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Json<SnapshotAnswer>, ApiError> {
    let s = requests::snapshot(&body).map_err(ApiError::unprocessable)?;
    let synced = lifecycle::fleet::upsert_snapshot(&st.db, &s).await?;
    let (account_id, snapshot_id, strategy_version) =
        (s.account_id, s.snapshot_id, s.strategy_version);
    Ok(Json(match synced {
        Some(synced) => SnapshotAnswer::Upserted {
            account_id,
            snapshot_id,
            strategy_version,
            strategy_synced_at: fmt(synced),
        },
        None => SnapshotAnswer::IgnoredStale {
            account_id,
            snapshot_id,
            strategy_version,
        },
    }))
}

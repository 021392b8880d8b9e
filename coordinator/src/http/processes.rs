//! The process API: enqueue, maintenance requests, read, list, cancel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::batched::{Creation, Outcome};
use super::bodies;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::views::{self, ProcessBody};
use crate::auth::Caller;
use crate::db;
use crate::domain::requests::{self, CapabilityRequest};
use crate::domain::routing::RoutingError;
use crate::domain::status::{ItemState, Status};
use crate::domain::{capabilities, time::now_ms};
use crate::error::ApiError;
use crate::error::answers::{
    BadRequest, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};
use crate::lifecycle::{
    self,
    cancel::{Cancelled, TerminationStatus},
};

/// `status` of an accepted creation.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AcceptedTag {
    Accepted,
}

/// The answer to a creation (202), or to a repeat of its idempotency key (200, with
/// `duplicate`, `process_status` and, when the body differs from the first one,
/// `payload_mismatch`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "accepted", "process_id": "0190c6f0-0000-7000-8000-000000000001",
    "request_id": "req-42", "process_type": "keyword_warmup"}))]
pub struct Accepted {
    pub status: AcceptedTag,
    pub process_id: Uuid,
    pub request_id: String,
    pub process_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_mismatch: Option<bool>,
}

/// A page of `GET /processes`, newest first.
#[derive(Serialize, ToSchema)]
pub struct ProcessList<'a> {
    pub processes: Vec<ProcessBody<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A process and its status after a cancel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessRef {
    pub process_id: Uuid,
    pub status: Status,
}

/// The run a cancel found (or the process's target when nothing runs).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveTarget {
    pub process_id: Uuid,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub queue_item_id: Option<Uuid>,
    pub capability_request_id: String,
}

/// The agent, phone and run of the active item.
#[derive(Debug, Serialize, ToSchema)]
pub struct Container {
    pub agent_id: String,
    pub phone_id: Option<String>,
    pub run_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Termination {
    pub process_id: Uuid,
    pub status: TerminationStatus,
    pub terminate_issued: bool,
    pub container: Option<Container>,
}

/// The answer to `POST /processes/{process_id}/cancel`.
#[allow(clippy::large_enum_variant)] // one per request, serialized at once
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CancelAnswer {
    /// Pending items were cancelled at once; running ones were asked to stop.
    CancelRequested {
        cancelled_queue_item_ids: Vec<Uuid>,
        active_queue_item_ids: Vec<Uuid>,
        active_target: ActiveTarget,
        termination: Termination,
        process: ProcessRef,
    },
    /// The process was terminal already: nothing changed.
    IgnoredTerminal { process: ProcessRef },
}

/// `POST /capability-requests/enqueue`
#[utoipa::path(post, path = "/capability-requests/enqueue", tag = "processes",
    request_body = bodies::EnqueueBody,
    responses((status = 202, description = "A new process", body = Accepted),
              (status = 200, description = "A repeat of an accepted request", body = Accepted,
               example = json!({"status": "accepted", "process_id": "0190c6f0-0000-7000-8000-000000000001",
                   "request_id": "req-42", "process_type": "keyword_warmup", "duplicate": true,
                   "process_status": "queued"})),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 413, response = PayloadTooLarge),
              (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(request_id))]
pub async fn enqueue(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Response, ApiError> {
    if let Some(system) = body.pointer("/requested_by/system").and_then(Value::as_str) {
        caller.may_act_as(system)?;
    }
    let rules = st.capabilities().await?;
    let parsed = requests::enqueue(&body);
    // Registry rules join the shape errors whenever capability and mode are readable.
    let mut errors = match &parsed {
        Ok(_) => Vec::new(),
        Err(e) => e.clone(),
    };
    if let (Some(cap), Some(mode)) = (
        body.get("capability").and_then(Value::as_str),
        body.get("mode").and_then(Value::as_str),
    ) && let Some(rule) = rules.iter().find(|r| r.name == cap)
    {
        let routing = body.pointer("/target/routing").and_then(Value::as_str);
        errors.extend(capabilities::check(rule, mode, routing));
    }
    match parsed {
        Ok(req) if errors.is_empty() => create(&st, req).await,
        _ => Err(ApiError::unprocessable(errors)),
    }
}

/// `POST /maintenance/requests`
#[utoipa::path(post, path = "/maintenance/requests", tag = "processes",
    request_body = bodies::MaintenanceBody,
    responses((status = 202, description = "A new process", body = Accepted),
              (status = 200, description = "A repeat of an accepted request", body = Accepted),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 413, response = PayloadTooLarge),
              (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn maintenance(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson,
) -> Result<Response, ApiError> {
    if let Some(system) = body.pointer("/requested_by/system").and_then(Value::as_str) {
        caller.may_act_as(system)?;
    }
    let req = requests::maintenance(&body).map_err(ApiError::unprocessable)?;
    let rules = st.capabilities().await?;
    if let Some(rule) = rules.iter().find(|r| r.name == "maintenance") {
        let errors = capabilities::check(rule, "unattended", Some("queue"));
        if !errors.is_empty() {
            return Err(ApiError::unprocessable(errors));
        }
    }
    create(&st, req).await
}

fn accepted_body(process_id: Uuid, req: &CapabilityRequest) -> Accepted {
    Accepted {
        status: AcceptedTag::Accepted,
        process_id,
        request_id: req.request_id.clone(),
        process_type: req.capability.clone(),
        duplicate: None,
        process_status: None,
        payload_mismatch: None,
    }
}

/// Creates the process, its queue items and the `accepted` callback in one transaction (shared
/// with the other requests waiting at that moment, see [`super::batched`]), or answers for the
/// existing process with the same idempotency key.
async fn create(st: &AppState, req: CapabilityRequest) -> Result<Response, ApiError> {
    tracing::Span::current().record("request_id", req.request_id.as_str());
    super::check_url(st, &req.callback.url, "callback_url_not_allowed").await?;
    let req = Arc::new(req);
    let creation = Creation::new(Arc::clone(&req));
    let (process_id, fingerprint) = (creation.process_id, creation.fingerprint.clone());
    let outcome = st
        .committer
        .call(creation)
        .await
        .map_err(|_| ApiError::unavailable())??;
    match outcome {
        Outcome::Created { items } => {
            st.callbacks.notify_one();
            tracing::info!(%process_id, items, "process accepted");
            Ok((StatusCode::ACCEPTED, Json(accepted_body(process_id, &req))).into_response())
        }
        Outcome::Exists => duplicate(st, &req, &fingerprint)
            .await?
            .ok_or_else(ApiError::internal),
        Outcome::Routing(e) => {
            // A duplicate is answered even if the registry changed since the first request.
            if let Some(resp) = duplicate(st, &req, &fingerprint).await? {
                return Ok(resp);
            }
            Err(match e {
                RoutingError::NotFound(errors) => ApiError::not_found(errors),
                RoutingError::Invalid(errors) => ApiError::unprocessable(errors),
            })
        }
    }
}

async fn duplicate(
    st: &AppState,
    req: &CapabilityRequest,
    fingerprint: &[u8],
) -> Result<Option<Response>, ApiError> {
    let Some((id, status, stored)) = db::processes::find_by_key(
        &st.db,
        &req.capability,
        &req.requested_by.system,
        &req.request_id,
    )
    .await?
    else {
        return Ok(None);
    };
    let body = Accepted {
        duplicate: Some(true),
        process_status: Some(status),
        payload_mismatch: (stored != fingerprint).then_some(true),
        ..accepted_body(id, req)
    };
    Ok(Some((StatusCode::OK, Json(body)).into_response()))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(vec![format!("process_not_found:{id}")]))
}

/// `GET /processes/{process_id}`
#[utoipa::path(get, path = "/processes/{process_id}", tag = "processes",
    params(("process_id" = String, Path)),
    responses((status = 200, description = "The process", body = ProcessBody<'static>),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 404, response = NotFound), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(process_id = %id))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let pid = parse_id(&id)?;
    // Batched with the other reads waiting at this moment (see `super::batched`).
    let found = st
        .views
        .call(pid)
        .await
        .map_err(|_| ApiError::unavailable())??
        .filter(|f| caller.sees(&f.0.system))
        .ok_or_else(|| ApiError::not_found(vec![format!("process_not_found:{id}")]))?;
    let (p, items) = &*found;
    let items = items.iter().map(|(id, state)| (*id, *state));
    Ok(Json(views::process(p, items)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Only processes with this public status.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Only processes of this type (`keyword_warmup`, `fyp_warmup`, `maintenance`).
    process_type: Option<String>,
    /// Only processes of this `requested_by.system` (a system-bound key sees its own only).
    system: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn encode_cursor(at: OffsetDateTime, id: Uuid) -> String {
    let raw = format!("{}|{id}", at.unix_timestamp_nanos());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Option<(OffsetDateTime, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (nanos, id) = raw.split_once('|')?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// `GET /processes`: newest first, keyset pagination.
#[utoipa::path(get, path = "/processes", tag = "processes", params(ListParams),
    responses((status = 200, description = "A page of processes", body = ProcessList<'static>),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if let Some(s) = &q.status
        && Status::parse(s).is_none()
    {
        errors.push("invalid_value:status".to_string());
    }
    let limit = match q.limit.as_deref().map(str::parse::<i64>) {
        None => 50,
        Some(Ok(n)) if (1..=200).contains(&n) => n,
        Some(_) => {
            errors.push("out_of_range:limit:1_to_200".into());
            50
        }
    };
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => match decode_cursor(c) {
            Some(b) => Some(b),
            None => {
                errors.push("invalid_value:cursor".into());
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    let system = match (&caller.system, q.system) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(caller.may_act_as(&asked).unwrap_err());
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let filter = db::processes::ListFilter {
        status: q.status,
        process_type: q.process_type,
        system,
        before,
        limit,
    };
    let rows = db::processes::list(&st.db, &filter).await?;
    let ids: Vec<Uuid> = rows.iter().map(|p| p.process_id).collect();
    let items = db::queue_items::states_for_processes(&st.db, &ids).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|p| encode_cursor(p.created_at, p.process_id))
        })
        .flatten();
    let mut by_process: HashMap<Uuid, Vec<(Uuid, ItemState)>> = HashMap::new();
    for (process_id, item_id, state) in &items {
        by_process
            .entry(*process_id)
            .or_default()
            .push((*item_id, *state));
    }
    let processes: Vec<_> = rows
        .iter()
        .map(|p| {
            let mine = by_process.remove(&p.process_id).unwrap_or_default();
            views::process(p, mine)
        })
        .collect();
    Ok(Json(ProcessList {
        processes,
        next_cursor,
    })
    .into_response())
}

/// `POST /processes/{process_id}/cancel`
#[utoipa::path(post, path = "/processes/{process_id}/cancel", tag = "processes",
    params(("process_id" = String, Path)), request_body = bodies::CancelBody,
    responses((status = 200, description = "What the cancel did", body = CancelAnswer,
               example = json!({"status": "ignored_terminal",
                   "process": {"process_id": "0190c6f0-0000-7000-8000-000000000001", "status": "completed"}})),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(process_id = %id))]
pub async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<CancelAnswer>, ApiError> {
    let pid = parse_id(&id)?;
    let req = requests::cancel(&body).map_err(ApiError::unprocessable)?;
    caller.may_act_as(&req.requested_by.system)?;
    let outcome =
        lifecycle::cancel::process(&st.db, pid, &req, |s| caller.sees(s), now_ms()).await?;
    let (p, cancelled_ids, active, termination, next, wake) = match outcome {
        Cancelled::NotFound => {
            return Err(ApiError::not_found(vec![format!("process_not_found:{id}")]));
        }
        Cancelled::Terminal { process } => {
            return Ok(Json(CancelAnswer::IgnoredTerminal {
                process: ProcessRef {
                    process_id: process.process_id,
                    status: process.status,
                },
            }));
        }
        Cancelled::Requested {
            process,
            cancelled,
            active,
            termination,
            next,
            wake,
        } => (process, cancelled, active, termination, next, wake),
    };
    st.wake(wake);
    let active_ids: Vec<Uuid> = active.iter().map(|i| i.queue_item_id).collect();
    let first_active = active.first();
    let container = first_active.and_then(|i| {
        i.agent_id.as_ref().map(|agent| Container {
            agent_id: agent.clone(),
            phone_id: i.phone_id.clone(),
            run_id: i.run_id,
        })
    });
    let from_target = |key: &str| p.target.get(key).and_then(Value::as_str).map(String::from);
    Ok(Json(CancelAnswer::CancelRequested {
        cancelled_queue_item_ids: cancelled_ids,
        active_queue_item_ids: active_ids,
        active_target: ActiveTarget {
            process_id: p.process_id,
            phone_id: first_active
                .and_then(|i| i.phone_id.clone())
                .or_else(|| from_target("phone_id")),
            account_id: first_active
                .and_then(|i| i.account_id.clone())
                .or_else(|| from_target("account_id")),
            queue_item_id: first_active.map(|i| i.queue_item_id),
            capability_request_id: p.request_id.clone(),
        },
        termination: Termination {
            process_id: p.process_id,
            status: termination,
            terminate_issued: termination == TerminationStatus::Issued,
            container,
        },
        process: ProcessRef {
            process_id: p.process_id,
            status: next,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_774_000_000_123_456_000).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(at, id)), Some((at, id)));
        assert_eq!(decode_cursor("!!"), None);
        assert_eq!(decode_cursor("YWJj"), None);
    }
}

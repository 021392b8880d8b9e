//! `GET /queue-items/{id}`: the internal view of one queue item (operators);
//! `POST /queue-items/{id}/retry`: an admin re-queues a dead-lettered item (decision 0005).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::ApiPath;
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::domain::status::{ItemState, Status};
use crate::domain::time::{fmt, fmt_opt, now_ms};
use crate::error::ApiError;
use crate::error::answers::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, Unauthorized, Unavailable,
};
use crate::lifecycle::retry::Retried;

/// The item's times (RFC 3339, UTC, milliseconds).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QueueItemTimestamps)]
pub struct ItemTimestamps {
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub scheduled_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub lease_expires_at: Option<String>,
    pub started_at: Option<String>,
    pub cancel_requested_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One run attempt, from the coordinator's dispatch record and the agent's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub agent_id: Option<Value>,
    pub phone_id: Option<Value>,
    pub run_id: Option<Value>,
    pub dispatched_at: Option<String>,
    pub accepted_at: Option<String>,
    pub finished_at: Option<String>,
    /// The agent's outcome (`done`, `failed`, ...).
    pub outcome: Option<Value>,
    pub error: Option<Value>,
    /// How many of the agent's events belong to this attempt.
    pub events: i64,
}

/// Who recorded an event.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Coordinator,
    Agent,
}

/// One recorded event, the coordinator's (attempt 0) or the agent's.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    #[schema(format = DateTime)]
    pub at: String,
    pub attempt: i32,
    pub seq: i64,
    pub kind: String,
    pub source: EventSource,
    /// The event's payload as recorded.
    pub detail: Value,
}

/// A failed step's evidence: an object in the agent's evidence store.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evidence {
    pub attempt: i32,
    #[schema(format = DateTime)]
    pub at: String,
    /// The object store bucket (`pf_evidence_<agent_id>`, or `pf_evidence` for old objects).
    pub bucket: String,
    pub object: Option<String>,
    /// `ui_dump` or `screenshot`.
    pub kind: Option<Value>,
}

/// The internal view of one queue item (`GET /queue-items/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItem {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub state: ItemState,
    pub mode: String,
    pub routing: String,
    pub agent_id: Option<String>,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub content_id: Option<String>,
    pub result: Option<Value>,
    pub last_error: Option<Value>,
    pub timestamps: ItemTimestamps,
    pub attempts: Vec<Attempt>,
    /// Every recorded event, coordinator's and agent's.
    pub history: Vec<HistoryEntry>,
    /// Evidence (UI dump, screenshot) per failed attempt.
    pub evidence: Vec<Evidence>,
}

fn new_attempt(attempt: i64) -> Attempt {
    Attempt {
        attempt,
        agent_id: None,
        phone_id: None,
        run_id: None,
        dispatched_at: None,
        accepted_at: None,
        finished_at: None,
        outcome: None,
        error: None,
        events: 0,
    }
}

/// A payload field, `None` when absent or JSON `null`.
fn field(payload: &Value, key: &str) -> Option<Value> {
    payload.get(key).filter(|v| !v.is_null()).cloned()
}

/// `GET /queue-items/{queue_item_id}`: state history, run attempts, agent, phone, last error
/// and evidence references (objects in the agent's `pf_evidence_<agent_id>` store).
#[utoipa::path(get, path = "/queue-items/{queue_item_id}", tag = "fleet",
    params(("queue_item_id" = String, Path)),
    responses((status = 200, description = "The queue item", body = QueueItem),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(queue_item_id = %id))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<QueueItem>, ApiError> {
    caller.require(Role::Operator)?;
    let not_found = || ApiError::not_found(vec![format!("queue_item_not_found:{id}")]);
    let qid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let item = db::dispatch::detail(&st.db, qid)
        .await?
        .ok_or_else(not_found)?;
    let events = db::item_events::for_item(&st.db, qid).await?;
    let history = events
        .iter()
        .map(|e| HistoryEntry {
            at: fmt(e.at),
            attempt: e.attempt,
            seq: e.seq,
            kind: e.kind.clone(),
            source: if e.attempt == 0 {
                EventSource::Coordinator
            } else {
                EventSource::Agent
            },
            detail: e.payload.clone(),
        })
        .collect();
    // One entry per run attempt, from the coordinator's dispatch records and the agent's events.
    let mut attempts: BTreeMap<i64, Attempt> = BTreeMap::new();
    for e in &events {
        let n = if e.attempt == 0 {
            match (
                e.kind.as_str(),
                e.payload.get("attempt").and_then(Value::as_i64),
            ) {
                ("dispatched", Some(n)) => n,
                _ => continue,
            }
        } else {
            i64::from(e.attempt)
        };
        let a = attempts.entry(n).or_insert_with(|| new_attempt(n));
        match e.kind.as_str() {
            "dispatched" => {
                a.dispatched_at = Some(fmt(e.at));
                a.agent_id = field(&e.payload, "agent_id");
                a.phone_id = field(&e.payload, "phone_id");
                a.run_id = field(&e.payload, "run_id");
            }
            "accepted" => a.accepted_at = Some(fmt(e.at)),
            "finished" => {
                a.finished_at = Some(fmt(e.at));
                a.outcome = field(&e.payload, "outcome");
                a.error = field(&e.payload, "error");
            }
            _ => {}
        }
        if e.attempt != 0 {
            a.events += 1;
        }
    }
    let evidence = events
        .iter()
        .filter(|e| e.kind == "evidence")
        .map(|e| {
            let object = e.payload.get("object").and_then(Value::as_str);
            Evidence {
                attempt: e.attempt,
                at: fmt(e.at),
                bucket: evidence_bucket(object.unwrap_or_default()),
                object: object.map(String::from),
                kind: field(&e.payload, "kind"),
            }
        })
        .collect();
    Ok(Json(QueueItem {
        queue_item_id: item.queue_item_id,
        process_id: item.process_id,
        kind: item.kind,
        state: item.state,
        mode: item.mode,
        routing: item.routing,
        agent_id: item.agent_id,
        phone_id: item.phone_id,
        account_id: item.account_id,
        run_id: item.run_id,
        attempt: item.attempt,
        max_attempts: item.max_attempts,
        content_id: item.content_id,
        result: item.result,
        last_error: item.error,
        timestamps: ItemTimestamps {
            created_at: fmt(item.created_at),
            updated_at: fmt(item.updated_at),
            scheduled_at: fmt_opt(item.scheduled_at),
            next_attempt_at: fmt_opt(item.next_attempt_at),
            lease_expires_at: fmt_opt(item.lease_expires_at),
            started_at: fmt_opt(item.started_at),
            cancel_requested_at: fmt_opt(item.cancel_requested_at),
            finished_at: fmt_opt(item.finished_at),
        },
        attempts: attempts.into_values().collect(),
        history,
        evidence,
    }))
}

/// What a retry did.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryStatus {
    /// The item is `RETRYABLE` and due now.
    Requeued,
}

/// The answer of `POST /queue-items/{queue_item_id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAnswer {
    pub status: RetryStatus,
    pub queue_item_id: Uuid,
    /// The item's process (`null` for a legacy `post_video` item).
    pub process_id: Option<Uuid>,
    /// The item's state now (`RETRYABLE`).
    pub queue_status: ItemState,
    /// The attempt the dispatcher runs next; it is the item's last (`max_attempts`).
    pub next_attempt: i32,
    pub max_attempts: i32,
    /// The process's status after the retry (`null` for a legacy item).
    pub process_status: Option<Status>,
}

/// `POST /queue-items/{queue_item_id}/retry` (admin): a `DEAD_LETTER` item goes back to
/// `RETRYABLE`, due now, with one more attempt allowed; its process gets the `retrying`
/// milestone. A terminal process status is final, so an item whose process is terminal is
/// refused (409 `process_terminal:<status>`: enqueue a new request instead), as is one whose
/// process has a cancel requested (409 `cancel_requested`) and one not dead-lettered (409
/// `not_dead_lettered:<STATE>`).
#[utoipa::path(post, path = "/queue-items/{queue_item_id}/retry", tag = "fleet",
    params(("queue_item_id" = String, Path)),
    responses((status = 200, description = "The item is re-queued", body = RetryAnswer),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 409, response = Conflict), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(queue_item_id = %id))]
pub async fn retry(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RetryAnswer>, ApiError> {
    caller.require(Role::Admin)?;
    let not_found = || ApiError::not_found(vec![format!("queue_item_not_found:{id}")]);
    let qid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let conflict = |detail: String, reason: String| {
        ApiError::new(axum::http::StatusCode::CONFLICT, detail, vec![reason])
    };
    match crate::lifecycle::retry::dead_letter(&st.db, qid, &caller.name, now_ms()).await? {
        Retried::NotFound => Err(not_found()),
        Retried::NotDeadLettered(state) => Err(conflict(
            format!("only a DEAD_LETTER item can be retried; this one is {state}"),
            format!("not_dead_lettered:{state}"),
        )),
        Retried::ProcessTerminal(status) => Err(conflict(
            format!(
                "the item's process is {}, and a terminal status is final: enqueue a new \
                 request to run the work again",
                status.as_str()
            ),
            format!("process_terminal:{}", status.as_str()),
        )),
        Retried::CancelRequested => Err(conflict(
            "the item's process has a cancel requested".into(),
            "cancel_requested".into(),
        )),
        Retried::Requeued {
            process_id,
            attempt,
            max_attempts,
            process_status,
            wake,
        } => {
            st.wake(wake);
            Ok(Json(RetryAnswer {
                status: RetryStatus::Requeued,
                queue_item_id: qid,
                process_id,
                queue_status: ItemState::Retryable,
                next_attempt: attempt + 1,
                max_attempts,
                process_status,
            }))
        }
    }
}

/// The bucket holding `object`: an agent's own (`<agent_id>/<item>/<attempt>/<name>`), or the
/// shared one of evidence from before per-agent buckets (`<item>/<attempt>/<name>`).
fn evidence_bucket(object: &str) -> String {
    let first = object.split('/').next().unwrap_or_default();
    let legacy = object.split('/').count() < 4 || uuid::Uuid::parse_str(first).is_ok();
    if legacy {
        phonefarm_shared::subjects::EVIDENCE_BUCKET.to_string()
    } else {
        phonefarm_shared::subjects::evidence_bucket(first)
    }
}

#[cfg(test)]
mod evidence_tests {
    #[test]
    fn buckets_follow_the_object_name() {
        let item = "0190c6f0-0000-7000-8000-000000000001";
        assert_eq!(
            super::evidence_bucket(&format!("rack-1/{item}/2/screen.png")),
            "pf_evidence_rack-1"
        );
        assert_eq!(
            super::evidence_bucket(&format!("{item}/2/screen.png")),
            "pf_evidence"
        );
    }
}

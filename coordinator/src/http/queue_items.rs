//! `GET /queue-items/{id}`: the internal view of one queue item (operators).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::domain::time::{fmt, fmt_opt};
use crate::error::ApiError;

/// `GET /queue-items/{queue_item_id}`: state history, run attempts, agent, phone, last error
/// and evidence references (objects in the agent's `pf_evidence_<agent_id>` store).
#[utoipa::path(get, path = "/queue-items/{queue_item_id}", tag = "fleet",
    params(("queue_item_id" = String, Path)),
    responses((status = 200, body = super::docs::QueueItemDoc), (status = 404, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(queue_item_id = %id))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let not_found = || ApiError::not_found(vec![format!("queue_item_not_found:{id}")]);
    let qid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let item = db::dispatch::detail(&st.db, qid)
        .await?
        .ok_or_else(not_found)?;
    let events = db::item_events::for_item(&st.db, qid).await?;
    let history: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({"at": fmt(e.at), "attempt": e.attempt, "seq": e.seq, "kind": e.kind,
                   "source": if e.attempt == 0 { "coordinator" } else { "agent" },
                   "detail": e.payload})
        })
        .collect();
    // One entry per run attempt, from the coordinator's dispatch records and the agent's events.
    let mut attempts: BTreeMap<i64, Value> = BTreeMap::new();
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
        let a = attempts.entry(n).or_insert_with(|| {
            json!({"attempt": n, "agent_id": null, "phone_id": null, "run_id": null,
                   "dispatched_at": null, "accepted_at": null, "finished_at": null,
                   "outcome": null, "error": null, "events": 0})
        });
        match e.kind.as_str() {
            "dispatched" => {
                a["dispatched_at"] = json!(fmt(e.at));
                for k in ["agent_id", "phone_id", "run_id"] {
                    a[k] = e.payload.get(k).cloned().unwrap_or(Value::Null);
                }
            }
            "accepted" => a["accepted_at"] = json!(fmt(e.at)),
            "finished" => {
                a["finished_at"] = json!(fmt(e.at));
                a["outcome"] = e.payload.get("outcome").cloned().unwrap_or(Value::Null);
                a["error"] = e.payload.get("error").cloned().unwrap_or(Value::Null);
            }
            _ => {}
        }
        if e.attempt != 0 {
            a["events"] = json!(a["events"].as_i64().unwrap_or(0) + 1);
        }
    }
    let evidence: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == "evidence")
        .map(|e| {
            let object = e.payload.get("object").and_then(|o| o.as_str());
            json!({"attempt": e.attempt, "at": fmt(e.at),
                   "bucket": evidence_bucket(object.unwrap_or_default()),
                   "object": object, "kind": e.payload.get("kind")})
        })
        .collect();
    Ok(Json(json!({
        "queue_item_id": item.queue_item_id,
        "process_id": item.process_id,
        "kind": item.kind,
        "state": item.state,
        "mode": item.mode,
        "routing": item.routing,
        "agent_id": item.agent_id,
        "phone_id": item.phone_id,
        "account_id": item.account_id,
        "run_id": item.run_id,
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "content_id": item.content_id,
        "result": item.result,
        "last_error": item.error,
        "timestamps": {
            "created_at": fmt(item.created_at),
            "updated_at": fmt(item.updated_at),
            "scheduled_at": fmt_opt(item.scheduled_at),
            "next_attempt_at": fmt_opt(item.next_attempt_at),
            "lease_expires_at": fmt_opt(item.lease_expires_at),
            "started_at": fmt_opt(item.started_at),
            "cancel_requested_at": fmt_opt(item.cancel_requested_at),
            "finished_at": fmt_opt(item.finished_at),
        },
        "attempts": attempts.into_values().collect::<Vec<_>>(),
        "history": history,
        "evidence": evidence,
    })))
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

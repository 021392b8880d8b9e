//! Response bodies built from rows, shaped field for field as the contract shows them. One
//! typed shape ([`ProcessBody`]) serves both the full rows of lists and cancels (JSON columns
//! as [`Value`]) and the lean read of `GET /processes/{id}` (JSON columns passed through raw).

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::db::processes::{ProcessRow, ProcessView};
use crate::db::queue_items::ItemRow;
use crate::domain::status::{ItemState, Status};
use crate::domain::time::{fmt, fmt_opt};

#[derive(Serialize)]
struct Timestamps {
    created_at: String,
    accepted_at: Option<String>,
    queued_at: Option<String>,
    executing_at: Option<String>,
    retrying_at: Option<String>,
    cancel_requested_at: Option<String>,
    finished_at: Option<String>,
}

#[derive(Serialize, Default)]
struct LinkedIds {
    queue_item_ids: Vec<String>,
    completed_queue_item_ids: Vec<String>,
    failed_queue_item_ids: Vec<String>,
    cancelled_queue_item_ids: Vec<String>,
}

impl LinkedIds {
    fn new<'a>(items: impl Iterator<Item = (Uuid, &'a str)>) -> Self {
        let mut ids = Self::default();
        for (id, state) in items {
            let id = id.to_string();
            match state.parse::<ItemState>().ok().map(ItemState::public) {
                Some(Status::Completed) => ids.completed_queue_item_ids.push(id.clone()),
                Some(Status::FailedTerminal) => ids.failed_queue_item_ids.push(id.clone()),
                Some(Status::Cancelled) => ids.cancelled_queue_item_ids.push(id.clone()),
                _ => {}
            }
            ids.queue_item_ids.push(id);
        }
        ids
    }
}

/// The process object of `GET /processes/{id}` (contract section 6); `J` is how the JSON
/// columns are held.
#[derive(Serialize)]
pub struct ProcessBody<'a, J: ?Sized + Serialize> {
    process_id: Uuid,
    process_type: &'a str,
    request_id: &'a str,
    status: &'a str,
    target: &'a J,
    requested_by: &'a J,
    callback: &'a J,
    result: &'a J,
    error: Option<&'a J>,
    timestamps: Timestamps,
    linked_ids: LinkedIds,
    partial_progress: &'a J,
}

/// `GET /processes/{id}` from the lean read: JSON columns copied through.
pub fn process_view<'a>(p: &'a ProcessView, items: &[(Uuid, String)]) -> ProcessBody<'a, RawValue> {
    ProcessBody {
        process_id: p.process_id,
        process_type: &p.process_type,
        request_id: &p.request_id,
        status: &p.status,
        target: &p.target,
        requested_by: &p.requested_by,
        callback: &p.callback,
        result: &p.result,
        error: p.error.as_deref(),
        timestamps: Timestamps {
            created_at: fmt(p.created_at),
            accepted_at: fmt_opt(p.accepted_at),
            queued_at: fmt_opt(p.queued_at),
            executing_at: fmt_opt(p.executing_at),
            retrying_at: fmt_opt(p.retrying_at),
            cancel_requested_at: fmt_opt(p.cancel_requested_at),
            finished_at: fmt_opt(p.finished_at),
        },
        linked_ids: LinkedIds::new(items.iter().map(|(id, s)| (*id, s.as_str()))),
        partial_progress: &p.partial_progress,
    }
}

/// The same object from a full row (lists, cancel responses).
pub fn process(p: &ProcessRow, items: &[&ItemRow]) -> Value {
    let body = ProcessBody {
        process_id: p.process_id,
        process_type: &p.process_type,
        request_id: &p.request_id,
        status: &p.status,
        target: &p.target,
        requested_by: &p.requested_by,
        callback: &p.callback,
        result: &p.result,
        error: p.error.as_ref(),
        timestamps: Timestamps {
            created_at: fmt(p.created_at),
            accepted_at: fmt_opt(p.accepted_at),
            queued_at: fmt_opt(p.queued_at),
            executing_at: fmt_opt(p.executing_at),
            retrying_at: fmt_opt(p.retrying_at),
            cancel_requested_at: fmt_opt(p.cancel_requested_at),
            finished_at: fmt_opt(p.finished_at),
        },
        linked_ids: LinkedIds::new(items.iter().map(|i| (i.queue_item_id, i.state.as_str()))),
        partial_progress: &p.partial_progress,
    };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

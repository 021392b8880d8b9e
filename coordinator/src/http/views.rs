//! Response bodies built from rows, shaped field for field as the contract shows them.

use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::db::processes::ProcessView;
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

/// The process object of `GET /processes/{id}` and of list pages (contract section 6), with
/// the JSON columns copied through as Postgres sent them.
#[derive(Serialize)]
pub struct ProcessBody<'a> {
    process_id: Uuid,
    process_type: &'a str,
    request_id: &'a str,
    status: &'a str,
    target: &'a RawValue,
    requested_by: &'a RawValue,
    callback: &'a RawValue,
    result: &'a RawValue,
    error: Option<&'a RawValue>,
    timestamps: Timestamps,
    linked_ids: LinkedIds,
    partial_progress: &'a RawValue,
}

/// `items`: `(queue_item_id, state)` of the process's items in id order.
pub fn process<'a, 'b>(
    p: &'a ProcessView,
    items: impl IntoIterator<Item = (Uuid, &'b str)>,
) -> ProcessBody<'a> {
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
        linked_ids: LinkedIds::new(items.into_iter()),
        partial_progress: &p.partial_progress,
    }
}

//! Response bodies built from rows, shaped field for field as the contract shows them.

use serde_json::{Value, json};

use crate::db::processes::ProcessRow;
use crate::db::queue_items::ItemRow;
use crate::domain::status::{ItemState, Status};
use crate::domain::time::{fmt, fmt_opt};

fn item_state(i: &ItemRow) -> Option<ItemState> {
    i.state.parse().ok()
}

/// `GET /processes/{id}`.
pub fn process(p: &ProcessRow, items: &[&ItemRow]) -> Value {
    let ids = |f: &dyn Fn(Status) -> bool| -> Vec<String> {
        items
            .iter()
            .filter(|i| item_state(i).is_some_and(|s| f(s.public())))
            .map(|i| i.queue_item_id.to_string())
            .collect()
    };
    json!({
        "process_id": p.process_id,
        "process_type": p.process_type,
        "request_id": p.request_id,
        "status": p.status,
        "target": p.target,
        "requested_by": p.requested_by,
        "callback": p.callback,
        "result": p.result,
        "error": p.error,
        "timestamps": {
            "created_at": fmt(p.created_at),
            "accepted_at": fmt_opt(p.accepted_at),
            "queued_at": fmt_opt(p.queued_at),
            "executing_at": fmt_opt(p.executing_at),
            "retrying_at": fmt_opt(p.retrying_at),
            "cancel_requested_at": fmt_opt(p.cancel_requested_at),
            "finished_at": fmt_opt(p.finished_at),
        },
        "linked_ids": {
            "queue_item_ids": items.iter().map(|i| i.queue_item_id.to_string()).collect::<Vec<_>>(),
            "completed_queue_item_ids": ids(&|s| s == Status::Completed),
            "failed_queue_item_ids": ids(&|s| s == Status::FailedTerminal),
            "cancelled_queue_item_ids": ids(&|s| s == Status::Cancelled),
        },
        "partial_progress": p.partial_progress,
    })
}

//! Response bodies built from rows, shaped field for field as the contract shows them.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::processes::ProcessView;
use crate::domain::status::{ItemState, Status};
use crate::domain::time::{fmt, fmt_opt};

/// Milestone times (RFC 3339, UTC, milliseconds); they never move backwards.
#[derive(Serialize, ToSchema)]
#[schema(as = ProcessTimestamps)]
pub struct Timestamps {
    #[schema(format = DateTime, example = "2026-03-22T08:30:00.000Z")]
    created_at: String,
    accepted_at: Option<String>,
    queued_at: Option<String>,
    executing_at: Option<String>,
    retrying_at: Option<String>,
    cancel_requested_at: Option<String>,
    finished_at: Option<String>,
}

/// The process's queue items, all and by outcome.
#[derive(Serialize, Default, ToSchema)]
pub struct LinkedIds {
    queue_item_ids: Vec<String>,
    completed_queue_item_ids: Vec<String>,
    failed_queue_item_ids: Vec<String>,
    cancelled_queue_item_ids: Vec<String>,
}

impl LinkedIds {
    fn new(items: impl Iterator<Item = (Uuid, ItemState)>) -> Self {
        let mut ids = Self::default();
        for (id, state) in items {
            let id = id.to_string();
            match state.public() {
                Status::Completed => ids.completed_queue_item_ids.push(id.clone()),
                Status::FailedTerminal => ids.failed_queue_item_ids.push(id.clone()),
                Status::Cancelled => ids.cancelled_queue_item_ids.push(id.clone()),
                _ => {}
            }
            ids.queue_item_ids.push(id);
        }
        ids
    }
}

/// The process object of `GET /processes/{id}` and of list pages, with the JSON columns
/// copied through as Postgres sent them.
#[derive(Serialize, ToSchema)]
#[schema(as = Process, example = json!({
    "process_id": "0190c6f0-0000-7000-8000-000000000001", "process_type": "keyword_warmup",
    "request_id": "req-42", "status": "executing",
    "target": {"routing": "queue", "account_id": "acct-1"},
    "requested_by": {"system": "crm", "user": "ana", "metadata": {}},
    "callback": {"url": "https://crm.example/hooks/phonefarm", "metadata": {}},
    "result": {}, "error": null,
    "timestamps": {"created_at": "2026-03-22T08:30:00.000Z", "accepted_at": "2026-03-22T08:30:00.000Z",
        "queued_at": "2026-03-22T08:30:00.000Z", "executing_at": "2026-03-22T08:30:02.120Z",
        "retrying_at": null, "cancel_requested_at": null, "finished_at": null},
    "linked_ids": {"queue_item_ids": ["0190c6f0-0000-7000-8000-000000000002"],
        "completed_queue_item_ids": [], "failed_queue_item_ids": [], "cancelled_queue_item_ids": []},
    "partial_progress": {}}))]
pub struct ProcessBody<'a> {
    process_id: Uuid,
    process_type: &'a str,
    request_id: &'a str,
    status: Status,
    /// The target as requested (`routing`, `phone_id`, `account_id`, ...).
    #[schema(value_type = Object)]
    target: &'a RawValue,
    /// `{system, user?, metadata}`.
    #[schema(value_type = Object)]
    requested_by: &'a RawValue,
    /// `{url, metadata}`.
    #[schema(value_type = Object)]
    callback: &'a RawValue,
    /// Facts collected from the device, per capability.
    #[schema(value_type = Object)]
    result: &'a RawValue,
    /// `null`, or the latest failure `{code, message, queue_item_id, at}`.
    #[schema(value_type = Option<Object>)]
    error: Option<&'a RawValue>,
    timestamps: Timestamps,
    linked_ids: LinkedIds,
    /// `{}` for one item; counts `{total, queued, executing, retrying, completed, failed,
    /// cancelled}` for several.
    #[schema(value_type = Object)]
    partial_progress: &'a RawValue,
}

/// `items`: `(queue_item_id, state)` of the process's items in id order.
pub fn process(
    p: &ProcessView,
    items: impl IntoIterator<Item = (Uuid, ItemState)>,
) -> ProcessBody<'_> {
    ProcessBody {
        process_id: p.process_id,
        process_type: &p.process_type,
        request_id: &p.request_id,
        status: p.status,
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

//! After a queue item changed state: the process's status, derived fields, milestone
//! timestamps and callbacks, in the same transaction (the caller holds the process lock).
//! Also the control messages (cancel orders) every part of the bus writes to the outbox.

use phonefarm_shared::{CancelMode, Control, subjects};
use serde_json::{Value, json};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{self, dispatch::RunItem, processes::ProcessRow};
use crate::domain::status::{self, ItemState, Status};
use crate::domain::time::fmt;
use crate::events;

/// What happened to one item.
pub struct Change<'a> {
    pub item: &'a RunItem,
    pub new_state: ItemState,
    /// The run's result (for DONE, or a failed run's partial facts).
    pub result: Option<&'a Value>,
    /// The process-level error object, if the run failed.
    pub error: Option<Value>,
}

/// The `error` object of the contract: `{code, message, queue_item_id, at}`.
pub fn error_value(code: &str, message: &str, queue_item_id: Uuid, at: OffsetDateTime) -> Value {
    json!({"code": code, "message": message, "queue_item_id": queue_item_id, "at": fmt(at)})
}

/// A queue item locked for a state change, with its process and the process's items.
pub struct Locked {
    pub process: Option<ProcessRow>,
    /// Every item of the process (just the item for one without a process), as locked.
    pub items: Vec<RunItem>,
    /// Which of `items` is the one locked for.
    index: usize,
}

impl Locked {
    /// The item locked for.
    pub fn item(&self) -> &RunItem {
        &self.items[self.index]
    }
}

/// Locks a queue item for a state change in the lock order of every writer: its process
/// first (found and locked by one statement), then the process's items in id order. `None`
/// for an unknown item.
pub async fn lock_item(
    conn: &mut PgConnection,
    queue_item_id: Uuid,
) -> Result<Option<Locked>, sqlx::Error> {
    let process = db::processes::get_for_update_of_item(&mut *conn, queue_item_id).await?;
    let items = match &process {
        Some(p) => db::dispatch::run_items_locked(&mut *conn, p.process_id).await?,
        None => db::dispatch::run_item_locked(&mut *conn, queue_item_id)
            .await?
            .into_iter()
            .collect(),
    };
    let Some(index) = items.iter().position(|i| i.queue_item_id == queue_item_id) else {
        return Ok(None);
    };
    Ok(Some(Locked {
        process,
        items,
        index,
    }))
}

/// Recomputes the process after `change`; returns true if callbacks were enqueued. `items`
/// are the process's items as the caller locked them, before the change (the caller's lock
/// keeps the others as they are).
pub async fn process(
    conn: &mut PgConnection,
    p: &ProcessRow,
    items: &[RunItem],
    change: &Change<'_>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let states: Vec<ItemState> = items
        .iter()
        .map(|i| {
            if i.queue_item_id == change.item.queue_item_id {
                change.new_state
            } else {
                i.state
            }
        })
        .collect();
    let current = p.status;
    let next = status::next(current, &states, p.cancel_requested_at.is_some());
    let mut milestones: Vec<&str> = Vec::new();
    if next == Status::Executing && p.executing_at.is_none() {
        milestones.push("executing");
    }
    let retried = change.new_state == ItemState::Retryable;
    if retried && !next.is_terminal() {
        milestones.push("retrying");
    }
    if next.is_terminal() && !current.is_terminal() {
        milestones.push(next.as_str());
    }
    let mut result = p.result.clone();
    if let Some(r) = change.result {
        let mut facts = match r {
            Value::Object(_) => r.clone(),
            other => json!({"value": other}),
        };
        facts["phone_id"] = json!(change.item.phone_id);
        facts["account_id"] = json!(change.item.account_id);
        if items.len() <= 1 {
            result = facts;
        } else {
            if !result.is_object() {
                result = json!({});
            }
            if !result.get("runs").is_some_and(Value::is_object) {
                result["runs"] = json!({});
            }
            result["runs"][change.item.queue_item_id.to_string()] = facts;
        }
    }
    let update = db::processes::RunUpdate {
        status: next.as_str().into(),
        partial_progress: status::progress(&states),
        result,
        error: change.error.clone(),
        executing_at: (next == Status::Executing).then_some(now),
        retrying_at: retried.then_some(now),
        finished_at: (next.is_terminal() && !current.is_terminal()).then_some(now),
        events: milestones.len() as i64,
    };
    let version = db::processes::apply_run(&mut *conn, p.process_id, &update).await?;
    for (n, m) in milestones.iter().enumerate() {
        events::process_updated(&mut *conn, p, m, next.as_str(), version + 1 + n as i64, now)
            .await?;
    }
    if current != next {
        tracing::info!(process_id = %p.process_id, from = current.as_str(), to = next.as_str(), "process status");
    }
    Ok(!milestones.is_empty())
}

/// The legacy per-item callback for a `post_video` item without a process; true if enqueued.
pub async fn legacy(
    conn: &mut PgConnection,
    item: &RunItem,
    state: ItemState,
    error: Option<Value>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let (Some(url), Some(content), Some(account)) = (
        item.callback_url.as_deref(),
        item.content_id.as_deref(),
        item.account_id.as_deref(),
    ) else {
        return Ok(false);
    };
    events::queue_item_updated(
        conn,
        Some(url),
        item.queue_item_id,
        content,
        account,
        state.as_str(),
        error,
        now,
    )
    .await?;
    Ok(true)
}

/// Writes a `Control::Cancel` for one attempt to the outbox. `tag` makes the message id unique
/// per order (a cancel request id, or `force`/`fence`); the same tag twice is one message.
pub async fn enqueue_cancel(
    conn: &mut PgConnection,
    agent_id: &str,
    queue_item_id: Uuid,
    attempt: i32,
    mode: CancelMode,
    tag: &str,
) -> Result<bool, sqlx::Error> {
    let mode_s = match mode {
        CancelMode::Soft => "soft",
        CancelMode::Hard => "hard",
    };
    let msg = Control::Cancel {
        queue_item_id,
        attempt: attempt.max(0) as u32,
        mode,
    };
    let msg_id = format!("ctl:{queue_item_id}:{attempt}:{mode_s}:{tag}");
    tracing::info!(%queue_item_id, agent_id, attempt, mode = mode_s, "cancel order queued");
    db::outbox::insert(
        conn,
        &subjects::control(agent_id),
        &msg_id,
        &phonefarm_shared::encode(&msg),
    )
    .await
}

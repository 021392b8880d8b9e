//! Callback events a state change emits, written to the callback outbox in the same
//! transaction as the change.

use serde_json::{Value, json};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::callbacks::{self, NewCallback, PROCESS_UPDATED, QUEUE_ITEM_UPDATED};
use crate::db::processes::ProcessRow;
use crate::domain::time::fmt;

/// Enqueues one `process.updated` event with the given sequence.
pub async fn process_updated(
    conn: &mut PgConnection,
    p: &ProcessRow,
    milestone: &str,
    status: &str,
    sequence: i64,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let (Some(url), Some((event_id, body))) = (
        p.callback.get("url").and_then(Value::as_str),
        process_updated_body(p.into(), milestone, status, sequence, at),
    ) else {
        return Ok(());
    };
    callbacks::enqueue(
        conn,
        NewCallback {
            event_id,
            event_type: PROCESS_UPDATED,
            process_id: Some(p.process_id),
            queue_item_id: None,
            sequence: Some(sequence),
            url,
            body: &body,
        },
    )
    .await
}

/// What a `process.updated` event says of its process.
#[derive(Debug, Clone, Copy)]
pub struct EventProcess<'a> {
    pub process_id: Uuid,
    pub process_type: &'a str,
    pub request_id: &'a str,
    /// The stored `callback` object (`url`, `metadata`).
    pub callback: &'a Value,
}

impl<'a> From<&'a ProcessRow> for EventProcess<'a> {
    fn from(p: &'a ProcessRow) -> Self {
        Self {
            process_id: p.process_id,
            process_type: &p.process_type,
            request_id: &p.request_id,
            callback: &p.callback,
        }
    }
}

/// The body of a `process.updated` event: (event id, body), or `None` without a callback URL.
pub fn process_updated_body(
    p: EventProcess<'_>,
    milestone: &str,
    status: &str,
    sequence: i64,
    at: OffsetDateTime,
) -> Option<(Uuid, Value)> {
    p.callback.get("url").and_then(Value::as_str)?;
    let event_id = Uuid::now_v7();
    let body = json!({
        "event_type": PROCESS_UPDATED,
        "milestone": milestone,
        "emitted_at": fmt(at),
        "event_id": event_id,
        "sequence": sequence,
        "process": {
            "process_id": p.process_id,
            "process_type": p.process_type,
            "request_id": p.request_id,
            "status": status,
            "callback_metadata": p.callback.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }
    });
    Some((event_id, body))
}

/// Enqueues one legacy `queue_item.updated` event, if the item has a callback URL.
#[allow(clippy::too_many_arguments)]
pub async fn queue_item_updated(
    conn: &mut PgConnection,
    url: Option<&str>,
    queue_item_id: Uuid,
    content_id: &str,
    account_id: &str,
    queue_status: &str,
    error: Option<Value>,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let Some(url) = url else { return Ok(()) };
    let event_id = Uuid::now_v7();
    let body = json!({
        "event_type": QUEUE_ITEM_UPDATED,
        "event_id": event_id,
        "queue_item_id": queue_item_id,
        "content_id": content_id,
        "account_id": account_id,
        "queue_status": queue_status,
        "emitted_at": fmt(at),
        "error": error,
    });
    callbacks::enqueue(
        conn,
        NewCallback {
            event_id,
            event_type: QUEUE_ITEM_UPDATED,
            process_id: None,
            queue_item_id: Some(queue_item_id),
            sequence: None,
            url,
            body: &body,
        },
    )
    .await
}

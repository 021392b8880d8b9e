//! Retrying a dead-lettered queue item (an admin's `POST /queue-items/{id}/retry`, or the
//! console's button on the process page), in one transaction with the callbacks it causes
//! (decision 0005).
//!
//! The item goes back to `RETRYABLE`, due now, with exactly one more attempt allowed
//! (`max_attempts = attempt + 1`); the dispatcher claims it as attempt `attempt + 1`. Its
//! process is settled as after any retry: the `retrying` milestone (callback) and
//! `retrying_at`, its status derived again. A terminal process status is final, so the item of
//! a terminal process is refused ([`Retried::ProcessTerminal`]): a process is still open only
//! while some of its other items are unfinished (a group fan-out). A process whose cancel was
//! asked is refused as well. A legacy `post_video` item (no process) is re-queued with its
//! `queue_item.updated` callback.

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Wake;
use super::agent_event::settle_change;
use super::settle;
use crate::db;
use crate::domain::status::{self, ItemState, Status};

/// The outcome of a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// No such queue item.
    NotFound,
    /// The item is not `DEAD_LETTER`: nothing changed.
    NotDeadLettered(ItemState),
    /// The item's process is terminal, which is final: nothing changed.
    ProcessTerminal(Status),
    /// The item's process has a cancel requested: nothing changed.
    CancelRequested,
    /// The item is `RETRYABLE`, due now, for attempt `attempt + 1` (its last one).
    Requeued {
        process_id: Option<Uuid>,
        /// The attempt that dead-lettered.
        attempt: i32,
        max_attempts: i32,
        /// The process's status after the change (`None` for a legacy item).
        process_status: Option<Status>,
        wake: Wake,
    },
}

/// Re-queues the dead-lettered item `queue_item_id` for one more attempt; `actor` (an API key's
/// name) is recorded in the item's history.
pub async fn dead_letter(
    db: &PgPool,
    queue_item_id: Uuid,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Retried, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(locked) = settle::lock_item(&mut tx, queue_item_id).await? else {
        return Ok(Retried::NotFound);
    };
    let item = locked.item();
    if item.state != ItemState::DeadLetter {
        return Ok(Retried::NotDeadLettered(item.state));
    }
    if let Some(p) = &locked.process {
        if p.status.is_terminal() {
            return Ok(Retried::ProcessTerminal(p.status));
        }
        if p.cancel_requested_at.is_some() {
            return Ok(Retried::CancelRequested);
        }
    }
    let max_attempts = item.attempt + 1;
    db::queue_items::requeue_dead_letter(&mut tx, queue_item_id, max_attempts, now).await?;
    let payload = json!({"by": actor, "attempt": item.attempt, "max_attempts": max_attempts});
    db::queue_items::record_event(&mut tx, queue_item_id, "retry_requested", now, payload).await?;
    let callbacks = settle_change(&mut tx, &locked, ItemState::Retryable, None, None, now).await?;
    // The status `settle_change` stored: derived from the items with this one retryable.
    let process_status = locked.process.as_ref().map(|p| {
        let states: Vec<ItemState> = locked
            .items
            .iter()
            .map(|i| {
                if i.queue_item_id == queue_item_id {
                    ItemState::Retryable
                } else {
                    i.state
                }
            })
            .collect();
        status::next(p.status, &states, false)
    });
    tx.commit().await?;
    tracing::info!(%queue_item_id, actor, attempt = item.attempt, "dead-lettered item re-queued");
    Ok(Retried::Requeued {
        process_id: item.process_id,
        attempt: item.attempt,
        max_attempts,
        process_status,
        wake: Wake {
            callbacks,
            relay: false,
            dispatch: true,
        },
    })
}

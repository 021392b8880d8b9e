//! Cancelling: a process (`POST /processes/{id}/cancel`) and a legacy `post_video` item
//! (`POST /cancel`), each one transaction with the callbacks and cancel orders it causes.

use phonefarm_shared::CancelMode;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Wake;
use crate::db::{self, processes::ProcessRow, queue_items::ItemRow};
use crate::domain::requests::{CancelRequest, Strategy};
use crate::domain::status::{self, ItemState, Status};
use crate::events;

/// What a cancel did about the running items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminationStatus {
    /// Nothing was running.
    NotNeeded,
    /// A soft stop was asked.
    Requested,
    /// A soft stop was asked; a hard abort follows after `force_after_seconds`.
    Scheduled,
    /// A hard abort was sent.
    Issued,
}

/// The outcome of a process cancel.
#[derive(Debug)]
pub enum Cancelled {
    /// No such process, or one the caller may not see.
    NotFound,
    /// The process was terminal already: nothing changed.
    Terminal { process: ProcessRow },
    /// Pending items were cancelled; running ones were asked to stop.
    Requested {
        process: ProcessRow,
        cancelled: Vec<Uuid>,
        /// The running items (`CLAIMED`, `EXECUTING`), as they were.
        active: Vec<ItemRow>,
        termination: TerminationStatus,
        next: Status,
        wake: Wake,
    },
}

/// Cancels process `pid` if `visible` says the caller may see it: pending items at once,
/// running ones by cancel orders to their agents (the relay publishes them on `pf.ctl.<agent>`;
/// the forced half of `soft_then_force` is the sweeper's, at `cancel_force_at`).
pub async fn process(
    db: &PgPool,
    pid: Uuid,
    req: &CancelRequest,
    visible: impl Fn(&str) -> bool,
    now: OffsetDateTime,
) -> Result<Cancelled, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(p) = db::processes::get_for_update(&mut tx, pid)
        .await?
        .filter(|p| visible(&p.system))
    else {
        return Ok(Cancelled::NotFound);
    };
    let current = p.status;
    if current.is_terminal() {
        return Ok(Cancelled::Terminal { process: p });
    }
    let items = db::queue_items::for_process_locked(&mut tx, pid).await?;
    let mut states = Vec::with_capacity(items.len());
    let (mut cancelled, mut active) = (Vec::new(), Vec::new());
    for item in items {
        if item.state.is_pending() {
            cancelled.push(item.queue_item_id);
            states.push(ItemState::Cancelled);
        } else {
            states.push(item.state);
            if matches!(item.state, ItemState::Claimed | ItemState::Executing) {
                active.push(item);
            }
        }
    }
    let active_ids: Vec<Uuid> = active.iter().map(|i| i.queue_item_id).collect();
    db::queue_items::cancel(&mut tx, &cancelled, now).await?;
    db::queue_items::mark_cancel_requested(&mut tx, &active_ids, now).await?;
    for i in &cancelled {
        db::queue_items::record_event(&mut tx, *i, "cancelled", now, json!({"reason": req.reason}))
            .await?;
    }
    for i in &active_ids {
        let payload = json!({"reason": req.reason, "strategy": req.strategy.as_str()});
        db::queue_items::record_event(&mut tx, *i, "cancel_requested", now, payload).await?;
    }
    let next = status::next(current, &states, true);
    let mut milestones: Vec<&str> = Vec::new();
    if p.cancel_requested_at.is_none() {
        milestones.push("cancel_requested");
    }
    if next.is_terminal() {
        milestones.push(next.as_str());
    }
    let (termination, force_at) = match (active.is_empty(), req.strategy) {
        (true, _) => (TerminationStatus::NotNeeded, None),
        (false, Strategy::Soft) => (TerminationStatus::Requested, None),
        (false, Strategy::Hard) => (TerminationStatus::Issued, None),
        (false, Strategy::SoftThenForce) if req.force_after_seconds == 0 => {
            (TerminationStatus::Issued, None)
        }
        (false, Strategy::SoftThenForce) => (
            TerminationStatus::Scheduled,
            Some(now + time::Duration::seconds(req.force_after_seconds)),
        ),
    };
    let update = db::processes::StateUpdate {
        status: next.as_str().into(),
        partial_progress: status::progress(&states),
        cancel_requested_at: Some(now),
        cancel_strategy: Some(req.strategy.as_str().into()),
        cancel_reason: Some(req.reason.clone()),
        cancel_force_at: force_at,
        finished_at: next.is_terminal().then_some(now),
        events: milestones.len() as i64,
    };
    let version = db::processes::apply(&mut tx, pid, &update).await?;
    for (n, m) in milestones.iter().enumerate() {
        events::process_updated(&mut tx, &p, m, next.as_str(), version + 1 + n as i64, now).await?;
    }
    let mode = match termination {
        TerminationStatus::Issued => Some(CancelMode::Hard),
        TerminationStatus::Requested | TerminationStatus::Scheduled => Some(CancelMode::Soft),
        TerminationStatus::NotNeeded => None,
    };
    let mut orders = 0;
    if let Some(mode) = mode {
        let tag = Uuid::now_v7().to_string();
        for i in &active {
            if let Some(agent) = i.agent_id.as_deref() {
                super::settle::enqueue_cancel(
                    &mut tx,
                    agent,
                    i.queue_item_id,
                    i.attempt,
                    mode,
                    &tag,
                )
                .await?;
                orders += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(Cancelled::Requested {
        process: p,
        cancelled,
        active,
        termination,
        next,
        wake: Wake {
            callbacks: !milestones.is_empty(),
            relay: orders > 0,
            dispatch: false,
        },
    })
}

/// The outcome of a legacy cancel.
#[derive(Debug)]
pub enum LegacyOutcome {
    NotFound,
    /// Not cancellable from this state (`CLAIMED`, `EXECUTING` or terminal).
    NotCancellable(ItemState),
    Cancelled {
        queue_item_id: Uuid,
        previous: ItemState,
        wake: Wake,
    },
}

/// Cancels the `post_video` item `(account_id, content_id)` if it has not started.
pub async fn legacy(
    db: &PgPool,
    account_id: &str,
    content_id: &str,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<LegacyOutcome, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(item) = db::queue_items::find_ingest_locked(&mut tx, account_id, content_id).await?
    else {
        return Ok(LegacyOutcome::NotFound);
    };
    let state = item.state;
    if !matches!(
        state,
        ItemState::Queued | ItemState::Scheduled | ItemState::Retryable
    ) {
        return Ok(LegacyOutcome::NotCancellable(state));
    }
    db::queue_items::cancel(&mut tx, &[item.queue_item_id], now).await?;
    db::queue_items::record_event(
        &mut tx,
        item.queue_item_id,
        "cancelled",
        now,
        json!({"reason": reason}),
    )
    .await?;
    events::queue_item_updated(
        &mut tx,
        item.callback_url.as_deref(),
        item.queue_item_id,
        content_id,
        account_id,
        ItemState::Cancelled.as_str(),
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(LegacyOutcome::Cancelled {
        queue_item_id: item.queue_item_id,
        previous: state,
        wake: Wake {
            callbacks: item.callback_url.is_some(),
            ..Wake::default()
        },
    })
}

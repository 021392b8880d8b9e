//! The sweeper's changes: a run whose lease lapsed (the agent stopped reporting) becomes
//! `RETRYABLE`, `DEAD_LETTER` or `CANCELLED` by [`retry::next_state`], with a hard cancel to
//! the agent in case it still runs; the forced half of due `soft_then_force` cancels. One
//! transaction each.

use phonefarm_shared::CancelMode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::agent_event::{Timing, settle_change};
use super::settle;
use crate::db;
use crate::domain::retry;
use crate::domain::status::ItemState;
use crate::domain::time::now_ms;

/// Expires one lapsed lease; true if it did (callbacks may have been enqueued).
pub async fn expire(
    timing: &Timing,
    db: &PgPool,
    item_id: Uuid,
) -> Result<(bool, bool), sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let Some(locked) = settle::lock_item(&mut tx, item_id).await? else {
        return Ok((false, false));
    };
    let item = locked.item();
    let state = item.state;
    let lapsed = matches!(state, ItemState::Claimed | ItemState::Executing)
        && item.lease_expires_at.is_some_and(|l| l < now);
    if !lapsed {
        return Ok((false, false));
    }
    let next = retry::next_state(
        retry::Ending::Lapsed,
        item.cancel_requested_at.is_some(),
        item.attempt,
        item.max_attempts,
    );
    let (code, message) = match next {
        ItemState::Cancelled => ("lease_expired", "the run stopped reporting after a cancel"),
        ItemState::Retryable => (
            "lease_expired",
            "the agent stopped reporting; the run will be retried",
        ),
        _ => (
            "lease_expired",
            "the agent stopped reporting and no attempts are left",
        ),
    };
    let err = settle::error_value(code, message, item.queue_item_id, now);
    let next_at = (next == ItemState::Retryable).then(|| now + timing.backoff(item.attempt));
    db::dispatch::finish(
        &mut tx,
        item.queue_item_id,
        next.as_str(),
        None,
        Some(&err),
        next_at,
        now,
    )
    .await?;
    db::queue_items::record_event(
        &mut tx,
        item.queue_item_id,
        "lease_expired",
        now,
        json!({"attempt": item.attempt, "state_was": item.state, "next": next.as_str()}),
    )
    .await?;
    if let Some(agent) = item.agent_id.as_deref() {
        settle::enqueue_cancel(
            &mut tx,
            agent,
            item.queue_item_id,
            item.attempt,
            CancelMode::Hard,
            "lease",
        )
        .await?;
    }
    let callbacks = settle_change(&mut tx, &locked, next, None, Some(err), now).await?;
    tx.commit().await?;
    tracing::warn!(queue_item_id = %item.queue_item_id, process_id = ?item.process_id, agent_id = ?item.agent_id,
        attempt = item.attempt, next = %next, "lease lapsed");
    Ok((true, callbacks))
}

/// Issues the hard half of due `soft_then_force` cancels; returns orders written.
pub async fn force_cancels(db: &PgPool) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let due = db::dispatch::forced_cancels_due(db, now).await?;
    let mut by_process: std::collections::BTreeMap<Uuid, Vec<(Uuid, i32, String)>> =
        Default::default();
    for (pid, item, attempt, agent) in due {
        by_process
            .entry(pid)
            .or_default()
            .push((item, attempt, agent));
    }
    let mut written = 0;
    for (pid, items) in by_process {
        let mut tx = db.begin().await?;
        db::processes::get_for_update(&mut tx, pid).await?;
        if !db::dispatch::clear_force(&mut tx, pid).await? {
            continue; // another pass did it
        }
        for (item, attempt, agent) in items {
            settle::enqueue_cancel(&mut tx, &agent, item, attempt, CancelMode::Hard, "force")
                .await?;
            db::queue_items::record_event(
                &mut tx,
                item,
                "cancel_forced",
                now,
                json!({"attempt": attempt, "agent_id": agent}),
            )
            .await?;
            written += 1;
        }
        tx.commit().await?;
        tracing::info!(process_id = %pid, "forced cancel issued");
    }
    db::dispatch::clear_moot_forces(db, now).await?;
    Ok(written)
}

//! Settling one run event of an agent (`Accepted`, milestones, `Finished`) in one
//! transaction: the queue item's state, its history row, and through [`settle`] the process's
//! status, timestamps, result, error, partial progress and callbacks. The ingester
//! (`bus::ingester`) decodes, orders and acks the messages and calls [`apply`].
//!
//! A replayed `(queue_item_id, attempt, seq)` records nothing and changes nothing; an event of
//! another attempt than the item's current one is ignored (fencing), and a stale run that
//! reports `Accepted` is sent a hard cancel. A failed run's next state is
//! [`retry::next_state`]. A run whose lease lapsed while it went on (`RETRYABLE`, same attempt,
//! same agent) and then completes is done: its work is kept, not run again.

use std::time::Duration;

use phonefarm_shared::{AgentEvent, CancelMode, EventKind, Outcome, RunError};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::Wake;
use super::settle::{self, Change};
use crate::db;
use crate::domain::retry;
use crate::domain::status::ItemState;
use crate::domain::time::{from_unix_ms_or_now, now_ms};

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// State changed (or the milestone was recorded).
    Recorded,
    /// The same (item, attempt, seq) was applied before.
    Replay,
    /// The event is of another attempt than the item's current one.
    Stale,
    /// Unknown item, or an agent that does not hold it.
    Ignored,
    /// The predecessor (seq - 1) is not applied yet: hand the event back and apply it later.
    /// Only the lease was renewed.
    Early,
}

/// The lease timings of the bus.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a run's lease lasts from its latest renewal.
    pub lease: Duration,
    /// The retry backoff: `retry_base` doubled per attempt, at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Timing {
    pub fn backoff(&self, attempt: i32) -> time::Duration {
        td(retry::backoff(attempt, self.retry_base, self.retry_max))
    }
}

fn td(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

fn json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| json!({"raw": s}))
}

/// The history row of an event: (kind, payload).
fn history(kind: &EventKind) -> (&'static str, Value) {
    match kind {
        EventKind::Accepted => ("accepted", json!({})),
        EventKind::StepStarted { step } => ("step_started", json!({"step": step})),
        EventKind::StepFinished { step } => ("step_finished", json!({"step": step})),
        EventKind::Progress { counters_json } => {
            ("progress", json!({"counters": json_text(counters_json)}))
        }
        EventKind::Heartbeat => ("heartbeat", json!({})),
        EventKind::Evidence { object, kind } => {
            ("evidence", json!({"object": object, "kind": kind}))
        }
        EventKind::PackChosen { name, revision } => {
            ("flow_pack", json!({"name": name, "revision": revision}))
        }
        EventKind::Finished {
            outcome,
            result_json,
            error,
        } => (
            "finished",
            json!({
                "outcome": outcome_label(*outcome),
                "result": json_text(result_json),
                "error": error.as_ref().map(|e| json!({"code": e.code, "message": e.message, "retryable": e.retryable})),
            }),
        ),
    }
}

/// Whether [`apply`] waits for an event's predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// An event whose predecessor is not applied yet is not applied ([`Applied::Early`]).
    Wait,
    /// Waited long enough: apply it anyway (with a warning if the predecessor is missing).
    GiveUp,
}

/// Applies one run event of `agent_id` in one transaction.
#[tracing::instrument(skip_all, fields(agent_id = %agent_id, queue_item_id = %ev.queue_item_id, attempt = ev.attempt, seq = ev.seq))]
pub async fn apply(
    timing: &Timing,
    conn: &mut PgConnection,
    agent_id: &str,
    ev: &AgentEvent,
    order: Order,
) -> Result<(Applied, Wake), sqlx::Error> {
    let mut wake = Wake::default();
    let now = now_ms();
    let lease_until = now + td(timing.lease);
    // A run's events renew its lease at most once per quarter lease: the milestones in
    // between write nothing to the item. A run then lapses after 3/4 of a lease without events
    // at the earliest (the whole lease with a renewal on every event), far above the agent's
    // heartbeat interval (10 s against 60 s in production).
    let renew_below = now + td(timing.lease * 3 / 4);
    let seq = ev.seq.min(i64::MAX as u64) as i64;
    let (kind, payload) = history(&ev.kind);
    // A milestone of a run under way (most events) changes no state: one statement applies it
    // if the item is EXECUTING at its attempt on this agent. Otherwise (the milestone would
    // start the run, the item is over, a stale attempt, …) it takes the general path below.
    if !matches!(ev.kind, EventKind::Accepted | EventKind::Finished { .. }) {
        let progress = match &ev.kind {
            EventKind::Progress { counters_json } => Some(json_text(counters_json)),
            _ => None,
        };
        let milestone = db::item_events::RunningMilestone {
            queue_item_id: ev.queue_item_id,
            attempt: i32::try_from(ev.attempt).unwrap_or(i32::MAX),
            agent_id,
            seq,
            kind,
            at: from_unix_ms_or_now(ev.at_unix_ms),
            payload: &payload,
            anyway: order == Order::GiveUp,
            renew_below,
            lease_until,
            progress: progress.as_ref(),
        };
        if let Some(rec) = db::item_events::record_running_milestone(conn, &milestone).await? {
            return Ok((recorded(agent_id, seq, rec), wake));
        }
    }
    let mut tx = conn.begin().await?;
    let Some(locked) = settle::lock_item(&mut tx, ev.queue_item_id).await? else {
        tracing::warn!(agent_id, "event for an unknown queue item; ignored");
        return Ok((Applied::Ignored, wake));
    };
    let item = locked.item();
    if i64::from(ev.attempt) != i64::from(item.attempt) {
        // Fencing: a stale attempt never changes state. A stale run that starts is stopped.
        if matches!(ev.kind, EventKind::Accepted) {
            settle::enqueue_cancel(
                &mut tx,
                agent_id,
                item.queue_item_id,
                ev.attempt as i32,
                CancelMode::Hard,
                "fence",
            )
            .await?;
            wake.relay = true;
        }
        tx.commit().await?;
        tracing::info!(
            agent_id,
            current = item.attempt,
            "event of a stale attempt ignored"
        );
        return Ok((Applied::Stale, wake));
    }
    if item.agent_id.as_deref() != Some(agent_id) {
        tracing::warn!(agent_id, holder = ?item.agent_id, "event from an agent that does not hold the item; ignored");
        return Ok((Applied::Ignored, wake));
    }
    let state = item.state;
    let renew_due = item.lease_expires_at.is_none_or(|t| t < renew_below);
    // In seq order (under the item's lock, so replicas serialize here): recorded only if its
    // predecessor is, unless the wait is over.
    let rec = db::item_events::record_agent_event(
        &mut tx,
        item.queue_item_id,
        item.attempt,
        seq,
        kind,
        from_unix_ms_or_now(ev.at_unix_ms),
        &payload,
        order == Order::GiveUp,
    )
    .await?;
    let applied = recorded(agent_id, seq, rec);
    if applied != Applied::Recorded {
        // Ahead of its predecessor, an event only proves the run is alive; a replay does
        // nothing.
        if applied == Applied::Early
            && matches!(state, ItemState::Claimed | ItemState::Executing)
            && renew_due
        {
            db::dispatch::renew(&mut tx, item.queue_item_id, lease_until).await?;
        }
        tx.commit().await?;
        return Ok((applied, wake));
    }
    let mut change: Option<(ItemState, Option<Value>, Option<Value>)> = None;
    let mut finished_run: Option<(&'static str, Option<(String, i64)>)> = None;
    match &ev.kind {
        EventKind::Finished {
            outcome,
            result_json,
            error,
        } => {
            let pack = db::item_events::pack_of(&mut *tx, item.queue_item_id, item.attempt).await?;
            finished_run = Some((outcome_label(*outcome), pack));
            // A run whose lease lapsed while it went on (its agent cut off from NATS) may
            // still complete: the same attempt's completion, from the agent that held it,
            // before the next attempt is dispatched, settles the item as if the lease had held,
            // rather than being recorded and run again. Only a completion: the lapse itself
            // sent the run a hard cancel, and a failure would only repeat the lapse's verdict.
            let late_completion =
                state == ItemState::Retryable && matches!(outcome, Outcome::Completed);
            if matches!(state, ItemState::Claimed | ItemState::Executing) || late_completion {
                if late_completion {
                    tracing::info!(
                        agent_id,
                        "a run whose lease lapsed completed before its retry; accepted"
                    );
                }
                let result = json_text(result_json);
                let (next, err) = match outcome {
                    Outcome::Completed => (ItemState::Done, None),
                    Outcome::Cancelled => (ItemState::Cancelled, None),
                    Outcome::Failed => {
                        let e = error.clone().unwrap_or(RunError {
                            code: "device_error".into(),
                            message: "the agent reported a failure without an error".into(),
                            retryable: true,
                        });
                        let err = settle::error_value(&e.code, &e.message, item.queue_item_id, now);
                        let ending = retry::Ending::Failed {
                            code: &e.code,
                            agent_retryable: e.retryable,
                        };
                        let next = retry::next_state(
                            ending,
                            item.cancel_requested_at.is_some(),
                            item.attempt,
                            item.max_attempts,
                        );
                        (next, Some(err))
                    }
                };
                let next_at =
                    (next == ItemState::Retryable).then(|| now + timing.backoff(item.attempt));
                db::dispatch::finish(
                    &mut tx,
                    item.queue_item_id,
                    next.as_str(),
                    Some(&result),
                    err.as_ref(),
                    next_at,
                    now,
                )
                .await?;
                change = Some((next, Some(result), err));
                wake.dispatch = true;
            }
        }
        other => {
            match state {
                ItemState::Claimed => {
                    db::dispatch::start(&mut tx, item.queue_item_id, now, lease_until).await?;
                    change = Some((ItemState::Executing, None, None));
                }
                ItemState::Executing if renew_due => {
                    db::dispatch::renew(&mut tx, item.queue_item_id, lease_until).await?;
                }
                s if s.is_terminal() && matches!(other, EventKind::Accepted) => {
                    // The run starts although the item is over (cancelled while queued on the
                    // agent): stop it.
                    settle::enqueue_cancel(
                        &mut tx,
                        agent_id,
                        item.queue_item_id,
                        item.attempt,
                        CancelMode::Hard,
                        "fence",
                    )
                    .await?;
                    wake.relay = true;
                }
                _ => {}
            }
            if let EventKind::Progress { counters_json } = other
                && matches!(state, ItemState::Claimed | ItemState::Executing)
            {
                db::dispatch::progress(&mut tx, item.queue_item_id, &json_text(counters_json))
                    .await?;
            }
        }
    }
    if let Some((next, result, err)) = change {
        wake.callbacks |= settle_change(&mut tx, &locked, next, result.as_ref(), err, now).await?;
        tracing::info!(agent_id, from = %state, to = %next, "queue item state");
    }
    tx.commit().await?;
    if let Some((outcome, pack)) = finished_run {
        count_run(outcome, pack);
    }
    Ok((applied, wake))
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "cancelled",
    }
}

/// One run's outcome (its `Finished`, recorded once), by the flow pack revision it ran:
/// `phonefarm_flow_runs_total`, which the alert on a pack revision's failure ratio reads. A
/// run that never reached the app counts under `pack="none"`.
fn count_run(outcome: &'static str, pack: Option<(String, i64)>) {
    let (name, revision) = match pack {
        Some((name, revision)) => (name, revision.to_string()),
        None => ("none".to_string(), "none".to_string()),
    };
    metrics::counter!("phonefarm_flow_runs_total", "pack" => name, "revision" => revision,
        "outcome" => outcome)
    .increment(1);
}

/// What recording an event came to ([`Applied::Recorded`], `Early` or `Replay`), logged and
/// counted alike on both paths of [`apply`].
fn recorded(agent_id: &str, seq: i64, rec: db::item_events::Recorded) -> Applied {
    if rec.inserted {
        if !rec.predecessor {
            tracing::warn!(
                agent_id,
                missing = seq - 1,
                "the predecessor of this event never came; applied without it"
            );
            metrics::counter!("phonefarm_bus_events_out_of_order_total").increment(1);
        }
        Applied::Recorded
    } else if !rec.predecessor && !rec.existed {
        // Not recorded although it is new: ahead of its predecessor (it was not given up on).
        tracing::debug!(agent_id, "event ahead of its predecessor; handed back");
        Applied::Early
    } else {
        // Recorded before (possibly without its predecessor): a replay.
        Applied::Replay
    }
}

/// Settles the process (or the legacy item's callback) after an item changed.
pub async fn settle_change(
    conn: &mut sqlx::PgConnection,
    locked: &settle::Locked,
    next: ItemState,
    result: Option<&Value>,
    error: Option<Value>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    match &locked.process {
        Some(p) => {
            settle::process(
                conn,
                p,
                &locked.items,
                &Change {
                    item: locked.item(),
                    new_state: next,
                    result,
                    error,
                },
                now,
            )
            .await
        }
        None => settle::legacy(conn, locked.item(), next, error, now).await,
    }
}

//! The ingester: the shared durable `coordinator` consumer on `PF_EVT`. Each run event is
//! applied in one transaction (queue item state, milestone history, process status and
//! timestamps, result, error, partial progress, callbacks), then acked.
//!
//! Exactly-once effect: the event is recorded under the unique `(queue_item_id, attempt, seq)`
//! first; a replay inserts nothing and changes nothing. Events of an attempt other than the
//! item's current one are ignored (fencing); a stale run that reports `Accepted` is sent a hard
//! cancel. A message that cannot be decoded is logged and terminated (never redelivered); a
//! database failure naks it for redelivery.
//!
//! In order: the events of a run are applied in their seq order, none skipped. Replicas share
//! the consumer, and a message delivered to a pull request that a NATS outage cut off comes
//! back only after the ack wait, behind later ones; so an event whose predecessor (seq - 1 of
//! the same item and attempt) is not recorded yet is handed back (NAK with a short, growing
//! delay) and applied once the predecessor is. It only renews the run's lease meanwhile (it
//! proves the run is alive). `Accepted` is seq 1 and waits for nothing. A predecessor can be
//! lost for good (a journal entry the agent had to set aside, an event the database kept
//! rejecting): after `BusConfig::event_order_wait` worth of redeliveries the event is applied
//! without it, with a warning. The check runs under the item's row lock, so two replicas
//! applying neighbouring events serialize.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use phonefarm_shared::{AgentEvent, CancelMode, EventKind, Inventory, Outcome, RunError, subjects};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::settle::{self, Change};
use super::{BusHandle, bootstrap, td};
use crate::db::{self, Held};
use crate::domain::status::ItemState;
use crate::domain::time::now_ms;

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

/// Side effects to trigger after the commit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wake {
    pub callbacks: bool,
    pub relay: bool,
    pub dispatch: bool,
}

/// Whether a failed run may be tried again: `device_error` is; `flow_error` and
/// `account_outcome` never are; other codes follow the agent's `retryable` flag.
pub fn retryable(e: &RunError) -> bool {
    let reason = e.code.split(':').next().unwrap_or("");
    match reason {
        "device_error" => true,
        "flow_error" | "account_outcome" => false,
        _ => e.retryable,
    }
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or_else(|_| now_ms())
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
        EventKind::Finished {
            outcome,
            result_json,
            error,
        } => (
            "finished",
            json!({
                "outcome": match outcome { Outcome::Completed => "completed", Outcome::Failed => "failed", Outcome::Cancelled => "cancelled" },
                "result": json_text(result_json),
                "error": error.as_ref().map(|e| json!({"code": e.code, "message": e.message, "retryable": e.retryable})),
            }),
        ),
    }
}

/// Whether [`apply_event`] waits for an event's predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// An event whose predecessor is not applied yet is not applied ([`Applied::Early`]).
    Wait,
    /// Waited long enough: apply it anyway (with a warning if the predecessor is missing).
    GiveUp,
}

/// Applies one run event of `agent_id` in one transaction.
#[tracing::instrument(skip_all, fields(agent_id = %agent_id, queue_item_id = %ev.queue_item_id, attempt = ev.attempt, seq = ev.seq))]
pub async fn apply_event(
    bus: &BusHandle,
    conn: &mut PgConnection,
    agent_id: &str,
    ev: &AgentEvent,
    order: Order,
) -> Result<(Applied, Wake), sqlx::Error> {
    let mut wake = Wake::default();
    let now = now_ms();
    let lease_until = now + td(bus.config.lease);
    // A run's events renew its lease at most once per quarter lease: the milestones in
    // between write nothing to the item. A run then lapses after 3/4 of a lease without events
    // at the earliest (the whole lease with a renewal on every event), far above the agent's
    // heartbeat interval (10 s against 60 s in production).
    let renew_below = now + td(bus.config.lease * 3 / 4);
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
            at: at(ev.at_unix_ms),
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
    let state: ItemState = item.state.parse().unwrap_or(ItemState::Queued);
    let renew_due = item.lease_expires_at.is_none_or(|t| t < renew_below);
    // In seq order (under the item's lock, so replicas serialize here): recorded only if its
    // predecessor is, unless the wait is over.
    let rec = db::item_events::record_agent_event(
        &mut tx,
        item.queue_item_id,
        item.attempt,
        seq,
        kind,
        at(ev.at_unix_ms),
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
    match &ev.kind {
        EventKind::Finished {
            outcome,
            result_json,
            error,
        } => {
            if matches!(state, ItemState::Claimed | ItemState::Executing) {
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
                        let next = if item.cancel_requested_at.is_some() {
                            ItemState::Cancelled
                        } else if retryable(&e) && item.attempt < item.max_attempts {
                            ItemState::Retryable
                        } else {
                            ItemState::DeadLetter
                        };
                        (next, Some(err))
                    }
                };
                let next_at = (next == ItemState::Retryable)
                    .then(|| now + td(bus.config.backoff(item.attempt)));
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
    Ok((applied, wake))
}

/// What recording an event came to ([`Applied::Recorded`], `Early` or `Replay`), logged and
/// counted alike on both paths of [`apply_event`].
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
pub(crate) async fn settle_change(
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

/// `pf.evt.<agent>.<kind>` → (agent, kind).
fn parse_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("pf.evt.")?;
    let (agent, kind) = rest.split_once('.')?;
    Some((agent, kind))
}

/// After this many deliveries, an event that Postgres keeps rejecting (a constraint or data
/// error, not an outage) is terminated instead of retried forever. Counted beyond the
/// deliveries an event may spend waiting for its predecessor.
const MAX_REJECTED_DELIVERIES: i64 = 10;

/// The delay before an event waiting for its predecessor is delivered again, after its
/// `delivered`-th delivery: 50 ms, doubling, at most 5 s (two replicas racing resolve within
/// the first; an outage's stranded predecessor takes up to the ack wait).
pub fn order_delay(delivered: i64) -> Duration {
    let exp = delivered.clamp(1, 8) as u32 - 1;
    (Duration::from_millis(50) * (1 << exp)).min(Duration::from_secs(5))
}

/// Whether an event delivered `delivered` times has waited `wait` for its predecessor: the
/// redelivery delays of its earlier deliveries add up to `wait`.
pub fn order_waited(delivered: i64, wait: Duration) -> bool {
    let mut waited = Duration::ZERO;
    for d in 1..delivered {
        if waited >= wait {
            break;
        }
        waited += order_delay(d);
    }
    waited >= wait
}

/// Deliveries an event may spend waiting for its predecessor under `wait`.
fn order_deliveries(wait: Duration) -> i64 {
    (1..).find(|&d| order_waited(d, wait)).unwrap_or(1)
}

/// Handles one message (`delivered`: how many times the server has delivered it); returns how
/// to ack it.
async fn handle(
    bus: &BusHandle,
    db: &mut Held,
    callbacks: &Notify,
    subject: &str,
    payload: &[u8],
    delivered: i64,
) -> AckKind {
    let Some((agent, kind)) = parse_subject(subject) else {
        tracing::warn!(subject, "event on an unexpected subject; dropped");
        return AckKind::Term;
    };
    let result = match kind {
        "run" => match phonefarm_shared::decode::<AgentEvent>(payload) {
            Ok(ev) => {
                let order = if order_waited(delivered, bus.config.event_order_wait) {
                    Order::GiveUp
                } else {
                    Order::Wait
                };
                match db
                    .with(async |conn| apply_event(bus, conn, agent, &ev, order).await)
                    .await
                {
                    Ok((Applied::Early, _)) => return AckKind::Nak(Some(order_delay(delivered))),
                    r => r.map(|(_, w)| w),
                }
            }
            Err(e) => {
                tracing::warn!(agent_id = agent, error = %e, "undecodable run event; dropped");
                return AckKind::Term;
            }
        },
        "inventory" => match phonefarm_shared::decode::<Inventory>(payload) {
            Ok(inv) if inv.agent_id == agent => db
                .with(async |conn| {
                    super::fleet::apply_inventory(conn, agent, &inv, bus.config.offline_after).await
                })
                .await
                .map(|n| Wake {
                    dispatch: n > 0,
                    ..Wake::default()
                }),
            Ok(inv) => {
                tracing::warn!(agent_id = agent, claimed = %inv.agent_id, "inventory names another agent; dropped");
                return AckKind::Term;
            }
            Err(e) => {
                tracing::warn!(agent_id = agent, error = %e, "undecodable inventory; dropped");
                return AckKind::Term;
            }
        },
        other => {
            tracing::debug!(
                agent_id = agent,
                kind = other,
                "event kind not handled by the coordinator"
            );
            return AckKind::Ack;
        }
    };
    match result {
        Ok(w) => {
            if w.callbacks {
                callbacks.notify_one();
            }
            if w.relay {
                bus.wakers.relay.notify_one();
            }
            if w.dispatch {
                bus.wakers.dispatch.notify_one();
            }
            AckKind::Ack
        }
        Err(e @ sqlx::Error::Database(_))
            if delivered
                >= MAX_REJECTED_DELIVERIES + order_deliveries(bus.config.event_order_wait) =>
        {
            tracing::error!(agent_id = agent, subject, delivered, error = %e,
                "the database keeps rejecting an event; dropped");
            metrics::counter!("phonefarm_bus_events_dropped_total").increment(1);
            AckKind::Term
        }
        Err(e) => {
            tracing::warn!(agent_id = agent, delivered, error = %e, "applying an event failed; redelivery requested");
            AckKind::Nak(Some(Duration::from_secs(1)))
        }
    }
}

async fn consumer(bus: &BusHandle) -> Result<jetstream::consumer::PullConsumer, async_nats::Error> {
    let stream = bus.js.get_stream(subjects::EVT_STREAM).await?;
    match stream.get_consumer(subjects::COORDINATOR_CONSUMER).await {
        Ok(c) => Ok(c),
        Err(_) => {
            bootstrap::ensure(&bus.js, &bus.config).await?;
            let stream = bus.js.get_stream(subjects::EVT_STREAM).await?;
            Ok(stream.get_consumer(subjects::COORDINATOR_CONSUMER).await?)
        }
    }
}

/// Sleeps `d` unless shutdown comes first (then false).
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Messages asked for in one pull request, and how long one request waits for them.
const PULL_BATCH: usize = 256;
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// The lane of a message: every event of one queue item (and every inventory of one agent)
/// goes to the same lane, so they are applied in the order the stream delivered them; other
/// items' events are applied meanwhile in the other lanes.
fn lane(subject: &str, payload: &[u8], lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match parse_subject(subject) {
        Some((_, "run")) => match phonefarm_shared::decode::<AgentEvent>(payload) {
            Ok(ev) => ev.queue_item_id.hash(&mut h),
            Err(_) => subject.hash(&mut h),
        },
        Some((agent, _)) => agent.hash(&mut h),
        None => subject.hash(&mut h),
    }
    (h.finish() % lanes.max(1) as u64) as usize
}

/// Applies and acks the messages of one lane, one at a time, until its sender is dropped.
async fn lane_worker(
    bus: BusHandle,
    db: PgPool,
    callbacks: Arc<Notify>,
    mut rx: tokio::sync::mpsc::Receiver<jetstream::Message>,
) {
    // One connection per lane, kept between events (no checkout and release ping per event).
    let mut db = Held::new(db);
    while let Some(msg) = rx.recv().await {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let ack = handle(
            &bus,
            &mut db,
            &callbacks,
            msg.subject.as_str(),
            &msg.payload,
            delivered,
        )
        .await;
        metrics::counter!("phonefarm_bus_events_total").increment(1);
        if let Err(e) = msg.ack_with(ack).await {
            tracing::warn!(error = %e, "acking an event failed (it will be redelivered)");
        }
    }
}

/// Consumes events until shutdown; recreates the consumer if it disappears.
///
/// Events are pulled in short requests (at most [`PULL_BATCH`] messages, expiring after
/// [`PULL_EXPIRES`]), and what was delivered is applied before the ingester stops: every
/// message the server delivered to this replica is applied and acked. (A continuous pull keeps
/// a request of hundreds of messages open; whatever it delivered while the replica stopped was
/// stranded until the ack wait, 30 s, and then applied behind later events of the same run.)
/// Messages are applied in `BusConfig::ingest_lanes` lanes by queue item (see [`lane`]): one
/// transaction per event round-trips to Postgres a dozen times, and one lane left the database
/// and the CPU idle between them while a burst of `Accepted`s waited.
pub async fn run(bus: BusHandle, db: PgPool, callbacks: Arc<Notify>, shutdown: CancellationToken) {
    let n = bus.config.ingest_lanes.max(1);
    let mut lanes = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = tokio::sync::mpsc::channel(PULL_BATCH);
        lanes.push(tx);
        workers.push(tokio::spawn(lane_worker(
            bus.clone(),
            db.clone(),
            Arc::clone(&callbacks),
            rx,
        )));
    }
    let mut bound: Option<jetstream::consumer::PullConsumer> = None;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let c = match bound.take() {
            Some(c) => c,
            None => match consumer(&bus).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "ingester: cannot open the event consumer; retrying");
                    if !pause(Duration::from_secs(1), &shutdown).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let batch = c
            .batch()
            .max_messages(PULL_BATCH)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "ingester: pull request failed; retrying");
                if !pause(Duration::from_millis(250), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let mut healthy = true;
        let mut cut_off = false;
        loop {
            // Finish the request even if shutdown comes meanwhile (it ends within
            // PULL_EXPIRES); only with NATS away is there nothing to finish. A request that
            // was under way when the connection dropped is given up once it is back (the
            // server forgot it; waiting for the client's own timeout would idle 5 s).
            let next = tokio::select! {
                n = batch.next() => n,
                () = shutdown.cancelled(), if !bus.connected() => None,
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if !bus.connected() {
                        cut_off = true;
                    } else if cut_off {
                        break;
                    }
                    continue;
                }
            };
            match next {
                None => break,
                Some(Ok(msg)) => {
                    let i = lane(msg.subject.as_str(), &msg.payload, n);
                    if lanes[i].send(msg).await.is_err() {
                        tracing::error!("ingester lane stopped; the event is redelivered later");
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "ingester: consumer error; binding again");
                    healthy = false;
                    break;
                }
            }
        }
        if healthy {
            bound = Some(c);
        } else if !pause(Duration::from_millis(250), &shutdown).await {
            break;
        }
    }
    // Everything handed to the lanes is applied and acked before the connection is dropped.
    drop(lanes);
    for w in workers {
        let _ = w.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), bus.client.flush()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_by_code() {
        let e = |code: &str, retryable: bool| RunError {
            code: code.into(),
            message: String::new(),
            retryable,
        };
        assert!(retryable(&e("device_error", false)));
        assert!(retryable(&e("device_error:usb_reset", false)));
        assert!(!retryable(&e("flow_error:unknown_screen", true)));
        assert!(!retryable(&e("account_outcome:banned", true)));
        assert!(retryable(&e("timeout", true)));
        assert!(!retryable(&e("timeout", false)));
    }

    #[test]
    fn events_wait_for_their_predecessor_a_bounded_time() {
        assert_eq!(order_delay(1), Duration::from_millis(50));
        assert_eq!(order_delay(2), Duration::from_millis(100));
        assert_eq!(order_delay(30), Duration::from_secs(5));
        let wait = Duration::from_secs(40);
        assert!(!order_waited(1, wait), "the first delivery always waits");
        let n = order_deliveries(wait);
        assert!(!order_waited(n - 1, wait) && order_waited(n, wait));
        let waited: Duration = (1..n).map(order_delay).sum();
        assert!(waited >= wait && waited < wait + Duration::from_secs(5));
        assert_eq!(order_deliveries(Duration::ZERO), 1);
    }

    #[test]
    fn events_of_one_item_share_a_lane() {
        let ev = |seq| AgentEvent {
            queue_item_id: uuid::Uuid::from_u128(7),
            attempt: 1,
            seq,
            at_unix_ms: 0,
            kind: EventKind::Heartbeat,
        };
        let first = lane("pf.evt.rack-1.run", &phonefarm_shared::encode(&ev(1)), 4);
        for seq in 2..20 {
            assert_eq!(
                lane("pf.evt.rack-1.run", &phonefarm_shared::encode(&ev(seq)), 4),
                first
            );
        }
        let lanes: std::collections::HashSet<usize> = (0..64u128)
            .map(|n| {
                let mut e = ev(1);
                e.queue_item_id = uuid::Uuid::from_u128(n);
                lane("pf.evt.rack-1.run", &phonefarm_shared::encode(&e), 4)
            })
            .collect();
        assert_eq!(lanes.len(), 4, "items spread over every lane");
        assert_eq!(
            lane("pf.evt.rack-1.inventory", b"x", 4),
            lane("pf.evt.rack-1.inventory", b"y", 4)
        );
    }

    #[test]
    fn subjects_parse() {
        assert_eq!(parse_subject("pf.evt.rack-1.run"), Some(("rack-1", "run")));
        assert_eq!(
            parse_subject("pf.evt.rack-1.inventory"),
            Some(("rack-1", "inventory"))
        );
        assert_eq!(parse_subject("pf.work.rack-1"), None);
    }
}

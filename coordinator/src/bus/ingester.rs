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
//!
//! Round trips: `Accepted` and `Finished` take eight in their transaction: one statement locks
//! the item's process, the next its items (`lifecycle::settle::lock_item`, shared with the
//! sweeper; the process status is derived from these rows, not read again), and the
//! predecessor check, the replay check and the history insert are one statement
//! (`item_events::record_agent_event`). A milestone of a run under way (step, progress,
//! heartbeat, evidence: most events) is one statement, so one transaction and one round trip
//! instead of four (`item_events::record_running_milestone`): it locks the item alone, only if it
//! is EXECUTING at the event's attempt on its agent, takes no other row lock (so it cannot
//! deadlock with writers that lock in the full order), records the event, renews a due lease
//! and merges progress. Anything else it meets (the milestone would start the run, the item is
//! over, another attempt or agent) changes nothing and the event goes the general way.
//!
//! Timings: a NAK for a missing predecessor waits 50 ms, doubling to 5 s; `event_order_wait` is
//! the ack wait + 10 s. Events renew the lease at most once per quarter lease, so a run lapses
//! after 3/4 of a lease without events at the earliest. Events run in 4 lanes keyed by queue item
//! (`BusConfig::ingest_lanes`): a run stays in order while others proceed. Pulls are short
//! requests (256 messages or 1 s), and the message under way is finished before stopping, so a
//! stopping replica strands nothing for the ack wait.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use phonefarm_shared::{AgentEvent, Inventory, PhoneOpReport, subjects};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{BusHandle, bootstrap};
use crate::db::Held;
use crate::lifecycle::Wake;
use crate::lifecycle::agent_event::{self, Applied, Order, Timing};

/// The lease timings `agent_event::apply` runs with.
pub(crate) fn timing(bus: &BusHandle) -> Timing {
    Timing {
        lease: bus.config.lease,
        retry_base: bus.config.retry_base,
        retry_max: bus.config.retry_max,
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

/// Decodes a report that names its agent: terminated (and logged) when it does not decode or
/// names another agent than the subject it came on.
fn own<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    agent: &str,
    what: &str,
    named: fn(&T) -> &str,
) -> Result<T, AckKind> {
    match phonefarm_shared::decode::<T>(payload) {
        Ok(v) if named(&v) == agent => Ok(v),
        Ok(v) => {
            tracing::warn!(
                agent_id = agent,
                claimed = named(&v),
                what,
                "report names another agent; dropped"
            );
            Err(AckKind::Term)
        }
        Err(e) => {
            tracing::warn!(agent_id = agent, error = %e, what, "undecodable report; dropped");
            Err(AckKind::Term)
        }
    }
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
                    .with(async |conn| {
                        agent_event::apply(&timing(bus), conn, agent, &ev, order).await
                    })
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
        "inventory" => {
            let inv = match own::<Inventory>(payload, agent, "inventory", |i| &i.agent_id) {
                Ok(inv) => inv,
                Err(ack) => return ack,
            };
            db.with(async |conn| {
                crate::lifecycle::inventory::apply_inventory(
                    conn,
                    agent,
                    &inv,
                    bus.config.offline_after,
                )
                .await
            })
            .await
            .map(|n| Wake {
                dispatch: n > 0,
                ..Wake::default()
            })
        }
        "ops" => {
            let r = match own::<PhoneOpReport>(payload, agent, "phone action", |r| &r.agent_id) {
                Ok(r) => r,
                Err(ack) => return ack,
            };
            db.with(async |conn| {
                crate::lifecycle::fleet::phone_action_report(conn, agent, &r).await
            })
            .await
            .map(|_| Wake::default())
        }
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
    match parse_subject(subject) {
        Some((_, "run")) => match phonefarm_shared::decode::<AgentEvent>(payload) {
            Ok(ev) => lane_of_item(ev.queue_item_id, lanes),
            Err(_) => lane_of(subject, lanes),
        },
        Some((agent, _)) => lane_of(agent, lanes),
        None => lane_of(subject, lanes),
    }
}

/// The lane every run event of `queue_item_id` goes to.
pub fn lane_of_item(queue_item_id: uuid::Uuid, lanes: usize) -> usize {
    lane_of(&queue_item_id, lanes)
}

fn lane_of(key: &(impl std::hash::Hash + ?Sized), lanes: usize) -> usize {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
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
    use phonefarm_shared::EventKind;

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

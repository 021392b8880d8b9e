//! The dispatcher: one replica at a time (transaction-scoped advisory lock) releases SCHEDULED
//! items whose time came and turns dispatchable items into work orders: the item becomes
//! CLAIMED with attempt + 1 and a fresh run id, and its `WorkOrder` goes to the outbox for
//! `pf.work.<agent_id>`, in one transaction (`lifecycle::dispatch`). The message id `work:<item>:<attempt>` makes a
//! re-published order land once.
//!
//! Routing rules live in the candidate query (`db::dispatch::candidates`): the phone is pinned
//! (direct, group) or the account's bound phone (queue); it must be enabled, online on an online
//! agent and free (one run per phone at a time, also enforced by a unique index); manual work
//! goes only to attended phones.

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::{BusHandle, idle, td};
use crate::db::Held;
use crate::domain::time::now_ms;
use crate::lifecycle;

/// Most items claimed in one transaction (one pass).
const BATCH: i64 = 256;

/// One dispatch pass; returns how many items were dispatched (0 if another replica holds the
/// dispatcher lock). With `release`, SCHEDULED items whose time came are released first (the
/// loop asks for that once per `dispatch_interval`, not on every wake-up). The transaction is
/// [`lifecycle::dispatch::claim_pass`]'s.
pub async fn pass(
    bus: &BusHandle,
    conn: &mut PgConnection,
    callbacks: &tokio::sync::Notify,
    release: bool,
) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let started = std::time::Instant::now();
    let pass = lifecycle::dispatch::claim_pass(
        conn,
        lifecycle::dispatch::Pass {
            now,
            accept_by: now + td(bus.config.accept_timeout),
            deadline: now + td(bus.config.run_deadline),
            release,
            batch: BATCH,
        },
        &bus.handoff,
    )
    .await?;
    let dispatched = pass.dispatched;
    tracing::debug!(
        dispatched,
        candidates = pass.candidates,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "dispatch pass"
    );
    if dispatched > 0 {
        metrics::counter!("phonefarm_bus_dispatched_total").increment(dispatched as u64);
    }
    if pass.wake.relay {
        bus.wakers.relay.notify_one();
    }
    if pass.wake.callbacks {
        callbacks.notify_one();
    }
    Ok(dispatched)
}

/// Dispatches until shutdown: on every wake-up (new work, a phone freed or appeared) and at
/// least every `dispatch_interval` (retry backoffs); SCHEDULED items are released by the first
/// pass after each `dispatch_interval`, so at most that late, as with polling alone.
pub async fn run(
    bus: BusHandle,
    db: PgPool,
    callbacks: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    // One connection kept between passes (no checkout and release ping per pass).
    let mut db = Held::new(db);
    let mut released_at: Option<std::time::Instant> = None;
    loop {
        let release = released_at.is_none_or(|t| t.elapsed() >= bus.config.dispatch_interval);
        if release {
            released_at = Some(std::time::Instant::now());
        }
        match db
            .with(async |conn| pass(&bus, conn, &callbacks, release).await)
            .await
        {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dispatcher: database"),
        }
        if !idle(
            &bus.wakers.dispatch,
            bus.config.dispatch_interval,
            &shutdown,
        )
        .await
        {
            return;
        }
    }
}

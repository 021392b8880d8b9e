//! The sweeper: one replica at a time (session advisory lock held for a pass) handles what
//! happens by the clock:
//!
//! - lapsed leases: a CLAIMED item not accepted in time, or an EXECUTING item without a
//!   milestone or heartbeat within the lease, becomes RETRYABLE (retried with attempt + 1 after
//!   backoff) or, at max attempts, DEAD_LETTER; a cancel-requested one becomes CANCELLED. The
//!   silent run is sent a hard cancel for its attempt (it may only be cut off from NATS).
//! - `soft_then_force` cancels whose delay passed with work still running: a hard cancel.
//! - agents silent longer than the offline threshold: offline, and their phones with them.
//!
//! Leases are judged only by a replica that hears NATS and has heard it for a whole lease
//! ([`Hearing`]): while NATS (or this replica's link to it) is away, agents journal their
//! milestones and heartbeats, and they reach `PF_EVT` and the ingester only after it is back.
//! Silence the coordinator could not hear is not the agent's; expiring those leases would
//! cancel healthy runs and run their work twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{BusHandle, idle, td};
use crate::db;
use crate::domain::time::now_ms;
use crate::lifecycle::lapse;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub lapsed: usize,
    pub forced: usize,
    pub offline: usize,
    /// Another replica holds the sweeper lock.
    pub skipped: bool,
}

/// Marks agents offline whose last heartbeat (as seen here, or as stored) is too old.
async fn offline_agents(bus: &BusHandle, db: &PgPool) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let limit = td(bus.config.offline_after);
    let mut silent = Vec::new();
    for (agent, stored) in db::agents::online(db).await? {
        let seen = match (bus.heartbeats.last_seen(&agent), stored) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if seen.is_none_or(|s| now - s > limit) {
            silent.push(agent);
        }
    }
    if silent.is_empty() {
        return Ok(0);
    }
    let changed = db::agents::mark_offline(db, &silent, now).await?;
    for a in &changed {
        tracing::warn!(agent_id = %a, "agent silent: offline with its phones");
    }
    Ok(changed.len())
}

/// Whether this replica may judge leases: it hears NATS, and has heard it for a whole lease
/// (since it started or reconnected), so the milestones agents journaled meanwhile had time to
/// arrive.
#[derive(Debug, Default)]
pub struct Hearing {
    since: Option<Instant>,
}

impl Hearing {
    /// Records whether the connection is up at `now`.
    pub fn update(&mut self, connected: bool, now: Instant) {
        if connected {
            self.since.get_or_insert(now);
        } else {
            self.since = None;
        }
    }

    /// True once the connection has been up for `lease` without a break.
    pub fn may_judge(&self, lease: Duration, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= lease)
    }
}

/// One sweep, if this replica gets the sweeper lock.
pub async fn pass(bus: &BusHandle, db: &PgPool, callbacks: &Notify) -> Result<Swept, sqlx::Error> {
    pass_judging(bus, db, callbacks, true).await
}

/// As [`pass`]; lapsed leases are expired only if `judge_leases`.
async fn pass_judging(
    bus: &BusHandle,
    db: &PgPool,
    callbacks: &Notify,
    judge_leases: bool,
) -> Result<Swept, sqlx::Error> {
    let mut lock = db.acquire().await?;
    let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(db::dispatch::SWEEP_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !got {
        return Ok(Swept {
            skipped: true,
            ..Swept::default()
        });
    }
    let result = sweep(bus, db, callbacks, judge_leases).await;
    if sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(db::dispatch::SWEEP_LOCK)
        .execute(&mut *lock)
        .await
        .is_err()
    {
        // Closing the session releases the lock for sure.
        let _ = lock.close().await;
    }
    result
}

async fn sweep(
    bus: &BusHandle,
    db: &PgPool,
    callbacks: &Notify,
    judge_leases: bool,
) -> Result<Swept, sqlx::Error> {
    let mut swept = Swept::default();
    let mut notify = false;
    if judge_leases {
        for item in db::dispatch::lapsed(db, now_ms(), 200).await? {
            let (done, cb) = lapse::expire(&super::ingester::timing(bus), db, item).await?;
            swept.lapsed += usize::from(done);
            notify |= cb;
        }
    }
    swept.forced = lapse::force_cancels(db).await?;
    swept.offline = offline_agents(bus, db).await?;
    if notify {
        callbacks.notify_one();
    }
    if swept.lapsed > 0 || swept.forced > 0 {
        bus.wakers.relay.notify_one();
    }
    if swept.lapsed > 0 {
        bus.wakers.dispatch.notify_one();
    }
    Ok(swept)
}

/// Sweeps every `sweep_interval` until shutdown; leases only while [`Hearing`] allows.
pub async fn run(bus: BusHandle, db: PgPool, callbacks: Arc<Notify>, shutdown: CancellationToken) {
    let never = Notify::new();
    let mut hearing = Hearing::default();
    let mut judged = false;
    loop {
        let now = Instant::now();
        hearing.update(bus.connected(), now);
        let judge = hearing.may_judge(bus.config.lease, now);
        if judge != judged {
            if judge {
                tracing::info!("sweeper: judging leases");
            } else {
                tracing::warn!(
                    "sweeper: NATS away; leases are not judged until it has been back for a lease"
                );
            }
            judged = judge;
        }
        if let Err(e) = pass_judging(&bus, &db, &callbacks, judge).await {
            tracing::warn!(error = %e, "sweeper: database");
        }
        if !idle(&never, bus.config.sweep_interval, &shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_judged_after_a_whole_lease_of_hearing_nats() {
        let lease = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut h = Hearing::default();
        assert!(!h.may_judge(lease, t0), "not before it connected");
        h.update(true, t0);
        assert!(!h.may_judge(lease, t0 + Duration::from_secs(9)));
        h.update(true, t0 + Duration::from_secs(9));
        assert!(h.may_judge(lease, t0 + lease), "connected since t0");
        h.update(false, t0 + Duration::from_secs(11));
        assert!(
            !h.may_judge(lease, t0 + Duration::from_secs(11)),
            "NATS away"
        );
        h.update(true, t0 + Duration::from_secs(20));
        assert!(
            !h.may_judge(lease, t0 + Duration::from_secs(29)),
            "just back"
        );
        assert!(h.may_judge(lease, t0 + Duration::from_secs(30)));
    }
}

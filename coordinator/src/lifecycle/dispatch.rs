//! The dispatcher's claim pass, one transaction: SCHEDULED items whose time came are released
//! (with their `released` history rows and legacy callbacks), and dispatchable items become
//! CLAIMED with attempt + 1 and a fresh run id, their `WorkOrder`s and `dispatched` records in
//! the outbox. The routing rules are the candidate query's (`db::dispatch::candidates`);
//! `bus::dispatcher` runs the passes and wakes the relay.
//!
//! Round trips: a pass is three (four in the pass that also releases SCHEDULED items, once per
//! `dispatch_interval`). The advisory lock is taken inside the first statement and checked in
//! the candidate query. Claims, orders and history rows go as one statement per 12 KiB or less
//! (`db::statement_ranges`); the statement builds the subject, the message id and the history
//! payload itself, so a claim sends little more than its encoded order.

use std::collections::HashSet;

use phonefarm_shared::{Capability, WorkOrder};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Wake;
use crate::bus::relay::Handoff;
use crate::db;
use crate::domain::status::ItemState;

/// What one pass is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub now: OffsetDateTime,
    /// A claimed order not accepted by then goes back (`accept_timeout`).
    pub accept_by: OffsetDateTime,
    /// The run's deadline, written into its order (`run_deadline`).
    pub deadline: OffsetDateTime,
    /// Release SCHEDULED items whose time came first.
    pub release: bool,
    /// Most items claimed.
    pub batch: i64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub dispatched: usize,
    pub candidates: usize,
    pub wake: Wake,
}

/// Splits claims into statements under [`db::STATEMENT_BUDGET`] (at least one claim each).
fn chunks(claims: &[db::dispatch::Claim]) -> Vec<&[db::dispatch::Claim]> {
    let sizes: Vec<usize> = claims.iter().map(db::dispatch::Claim::size).collect();
    db::statement_ranges(&sizes)
        .into_iter()
        .map(|r| &claims[r])
        .collect()
}

/// One claim pass in one transaction; 0 dispatched if another replica holds the dispatcher
/// lock. The orders it commits are held in `handoff` from just before the commit and handed
/// to this replica's relay after it (given back to the claim pass if the commit fails).
///
/// Three round trips to Postgres for up to [`db::STATEMENT_BUDGET`] of work orders, four with the
/// release (the lock is taken inside the first statement, release or candidates, and checked
/// again in the candidates query; claims, work orders and history rows are one statement):
/// under a burst of enqueues every round trip waits for a CPU, and items committed while a
/// pass runs wait for the next one.
pub async fn claim_pass(
    conn: &mut PgConnection,
    pass: Pass,
    handoff: &Handoff,
) -> Result<Claimed, sqlx::Error> {
    let Pass {
        now,
        accept_by,
        deadline,
        release,
        batch,
    } = pass;
    let lock = Some(db::dispatch::DISPATCH_LOCK);
    let mut tx = conn.begin().await?;
    let released = if release {
        db::dispatch::release_scheduled(&mut tx, now, lock).await?
    } else {
        Vec::new()
    };
    let mut notify_callbacks = false;
    for r in &released {
        db::queue_items::record_event(&mut tx, r.queue_item_id, "released", now, json!({})).await?;
        if r.process_id.is_none()
            && let (Some(url), Some(content), Some(account)) = (
                r.callback_url.as_deref(),
                r.content_id.as_deref(),
                r.account_id.as_deref(),
            )
        {
            crate::events::queue_item_updated(
                &mut tx,
                Some(url),
                r.queue_item_id,
                content,
                account,
                ItemState::Queued.as_str(),
                None,
                now,
            )
            .await?;
            notify_callbacks = true;
        }
        tracing::info!(queue_item_id = %r.queue_item_id, "scheduled item released");
    }
    // No candidates at all if another replica holds the lock.
    let candidates = db::dispatch::candidates(&mut tx, now, batch, lock).await?;
    // One run per phone: the oldest item of each phone goes first.
    let mut phones = HashSet::new();
    let mut claims = Vec::with_capacity(candidates.len());
    let mut processes = Vec::with_capacity(candidates.len());
    for c in &candidates {
        if !phones.insert(c.phone_id.as_str()) {
            continue;
        }
        let Some(capability) = Capability::parse(&c.kind) else {
            tracing::error!(queue_item_id = %c.queue_item_id, kind = %c.kind, "unknown capability; not dispatched");
            continue;
        };
        // The candidate is locked by this transaction: its next attempt is this one.
        let attempt = c.attempt + 1;
        let run_id = Uuid::now_v7();
        let order = WorkOrder {
            queue_item_id: c.queue_item_id,
            attempt: attempt.max(0) as u32,
            run_id,
            process_id: c.process_id,
            capability,
            phone_id: c.phone_id.clone(),
            account_id: c.account_id.clone().unwrap_or_default(),
            inputs_json: c.inputs.to_string(),
            flow_pack_version: None,
            deadline_unix_ms: (deadline.unix_timestamp_nanos() / 1_000_000) as i64,
        };
        processes.push(c.process_id);
        claims.push(db::dispatch::Claim {
            queue_item_id: c.queue_item_id,
            phone_id: c.phone_id.clone(),
            agent_id: c.agent_id.clone(),
            run_id,
            attempt,
            payload: phonefarm_shared::encode(&order),
        });
    }
    let mut orders = Vec::with_capacity(claims.len());
    for chunk in chunks(&claims) {
        orders.extend(db::dispatch::claim_all(&mut tx, chunk, now, accept_by).await?);
    }
    // The relay publishes these straight after the commit; until then (and if the commit
    // fails) its claim pass leaves them alone or picks them up.
    handoff.hold(&orders);
    if let Err(e) = tx.commit().await {
        handoff.release(orders.iter().map(|r| r.id));
        return Err(e);
    }
    handoff.ready(orders);
    let dispatched = claims.len();
    for (c, process_id) in claims.iter().zip(&processes) {
        tracing::info!(queue_item_id = %c.queue_item_id, ?process_id, agent_id = %c.agent_id,
            phone_id = %c.phone_id, attempt = c.attempt, "dispatched");
    }
    Ok(Claimed {
        dispatched,
        candidates: candidates.len(),
        wake: Wake {
            callbacks: notify_callbacks,
            relay: dispatched > 0,
            dispatch: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(payload: usize) -> db::dispatch::Claim {
        db::dispatch::Claim {
            queue_item_id: Uuid::nil(),
            phone_id: "P1".into(),
            agent_id: "rack-1".into(),
            run_id: Uuid::nil(),
            attempt: 1,
            payload: vec![0; payload],
        }
    }

    #[test]
    fn claims_are_split_below_one_tls_record() {
        let small: Vec<_> = (0..100).map(|_| claim(300)).collect();
        let parts = chunks(&small);
        assert!(
            parts.len() > 1,
            "100 orders of 300 bytes do not fit one statement"
        );
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 100);
        for p in &parts {
            let bytes: usize = p.iter().map(|c| c.payload.len()).sum();
            assert!(bytes <= db::STATEMENT_BUDGET, "{bytes}");
        }
        // An order bigger than the budget still goes, alone.
        let big = vec![claim(300), claim(20_000), claim(300)];
        let sizes: Vec<usize> = chunks(&big).iter().map(|p| p.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(chunks(&[]).is_empty());
    }
}

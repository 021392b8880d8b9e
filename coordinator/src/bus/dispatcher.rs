//! The dispatcher: one replica at a time (transaction-scoped advisory lock) releases SCHEDULED
//! items whose time came and turns dispatchable items into work orders: the item becomes
//! CLAIMED with attempt + 1 and a fresh run id, and its `WorkOrder` goes to the outbox for
//! `pf.work.<agent_id>`, in one transaction. The message id `work:<item>:<attempt>` makes a
//! re-published order land once.
//!
//! Routing rules live in the candidate query (`db::dispatch::candidates`): the phone is pinned
//! (direct, group) or the account's bound phone (queue); it must be enabled, online on an online
//! agent and free (one run per phone at a time, also enforced by a unique index); manual work
//! goes only to attended phones.

use std::collections::{HashMap, HashSet};

use phonefarm_shared::{Capability, WorkOrder, subjects};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BusHandle, idle, td};
use crate::db;
use crate::domain::status::ItemState;
use crate::domain::time::now_ms;

/// Most items claimed in one transaction.
const BATCH: i64 = 256;

/// One dispatch pass; returns how many items were dispatched (0 if another replica holds the
/// dispatcher lock).
pub async fn pass(
    bus: &BusHandle,
    db: &PgPool,
    callbacks: &tokio::sync::Notify,
) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    if !db::dispatch::try_xact_lock(&mut tx, db::dispatch::DISPATCH_LOCK).await? {
        return Ok(0);
    }
    let released = db::dispatch::release_scheduled(&mut tx, now).await?;
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
    let candidates = db::dispatch::candidates(&mut tx, now, BATCH).await?;
    // One run per phone: the oldest item of each phone goes first.
    let mut phones = HashSet::new();
    let mut picked = Vec::with_capacity(candidates.len());
    for c in &candidates {
        if !phones.insert(c.phone_id.as_str()) {
            continue;
        }
        let Some(capability) = Capability::parse(&c.kind) else {
            tracing::error!(queue_item_id = %c.queue_item_id, kind = %c.kind, "unknown capability; not dispatched");
            continue;
        };
        picked.push((c, capability, Uuid::now_v7()));
    }
    // Claims, work orders and history rows: one statement each, whatever the batch size.
    let claims: Vec<db::dispatch::Claim> = picked
        .iter()
        .map(|(c, _, run_id)| db::dispatch::Claim {
            queue_item_id: c.queue_item_id,
            phone_id: c.phone_id.clone(),
            agent_id: c.agent_id.clone(),
            run_id: *run_id,
        })
        .collect();
    let accept_by = now + td(bus.config.accept_timeout);
    let deadline = now + td(bus.config.run_deadline);
    let attempts: HashMap<Uuid, i32> = db::dispatch::claim_all(&mut tx, &claims, now, accept_by)
        .await?
        .into_iter()
        .collect();
    let n = picked.len();
    let (mut subjects_, mut msg_ids, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ids, mut history) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (c, capability, run_id) in &picked {
        let Some(&attempt) = attempts.get(&c.queue_item_id) else {
            continue; // locked by this transaction, so always claimed; never silently wrong
        };
        let order = WorkOrder {
            queue_item_id: c.queue_item_id,
            attempt: attempt.max(0) as u32,
            run_id: *run_id,
            process_id: c.process_id,
            capability: *capability,
            phone_id: c.phone_id.clone(),
            account_id: c.account_id.clone().unwrap_or_default(),
            inputs_json: c.inputs.to_string(),
            flow_pack_version: None,
            deadline_unix_ms: (deadline.unix_timestamp_nanos() / 1_000_000) as i64,
        };
        subjects_.push(subjects::work(&c.agent_id));
        msg_ids.push(format!("work:{}:{attempt}", c.queue_item_id));
        payloads.push(phonefarm_shared::encode(&order));
        ids.push(c.queue_item_id);
        history.push(json!({"attempt": attempt, "agent_id": c.agent_id, "phone_id": c.phone_id, "run_id": run_id}));
        tracing::info!(queue_item_id = %c.queue_item_id, process_id = ?c.process_id, agent_id = %c.agent_id,
            phone_id = %c.phone_id, attempt, "dispatched");
    }
    db::outbox::insert_all(&mut tx, &subjects_, &msg_ids, &payloads).await?;
    db::dispatch::record_dispatched(&mut tx, &ids, &history, now).await?;
    let dispatched = ids.len();
    tx.commit().await?;
    if dispatched > 0 {
        metrics::counter!("phonefarm_bus_dispatched_total").increment(dispatched as u64);
        bus.wakers.relay.notify_one();
    }
    if notify_callbacks {
        callbacks.notify_one();
    }
    Ok(dispatched)
}

/// Dispatches until shutdown: on every wake-up (new work, a phone freed or appeared) and at
/// least every `dispatch_interval` (scheduled items, retry backoffs).
pub async fn run(
    bus: BusHandle,
    db: PgPool,
    callbacks: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match pass(&bus, &db, &callbacks).await {
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

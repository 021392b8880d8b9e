//! An agent's inventory report mirrored into `phones`, one transaction: only rows that changed
//! are written; a phone another agent holds is taken only when its holder is offline or has
//! not named it for the offline window, else the claim is refused, logged and kept in
//! `phone_claims` (`bus::fleet` settles it later); every move goes to `phone_moves`.

use std::collections::HashMap;
use std::time::Duration;

use phonefarm_shared::{Inventory, PhoneState};
use sqlx::{Connection as _, PgConnection};
use time::OffsetDateTime;

use crate::db;
use crate::domain::time::{from_unix_ms_or_now, now_ms};

fn phone_state(s: PhoneState) -> &'static str {
    match s {
        PhoneState::Online => "online",
        PhoneState::Unauthorized => "unauthorized",
        PhoneState::Offline => "offline",
        PhoneState::NeedsAttention => "needs_attention",
    }
}

/// Whether a report by another agent may take a phone from its holder now: it has none yet,
/// the holder is offline, or the holder has not named the phone since `absent_before` or
/// earlier. Returns the move's reason.
fn may_take(
    held: &db::phones::HeldElsewhere,
    absent_before: OffsetDateTime,
) -> Option<&'static str> {
    if held.agent_id.is_none() {
        // Known (an account is bound to it) but never reported by an agent.
        Some("first_seen")
    } else if !held.holder_online {
        Some("holder_offline")
    } else if held.absent_since.is_some_and(|t| t <= absent_before) {
        Some("holder_gone")
    } else {
        None
    }
}

/// Mirrors an inventory report into `phones`, writing only rows that changed; a phone another
/// agent holds is taken only if [`may_take`] says so, else the claim is refused, logged and
/// kept (see the module docs). Returns how many phone rows were written (0 for an
/// out-of-order report).
#[tracing::instrument(skip_all, fields(agent_id = %agent_id, seq = inv.seq))]
pub async fn apply_inventory(
    conn: &mut PgConnection,
    agent_id: &str,
    inv: &Inventory,
    offline_after: Duration,
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let mut tx = conn.begin().await?;
    if !db::agents::advance_inventory(
        &mut *tx,
        agent_id,
        from_unix_ms_or_now(inv.at_unix_ms),
        inv.seq.min(i64::MAX as u64) as i64,
    )
    .await?
    {
        tx.commit().await?;
        tracing::debug!(agent_id, "out-of-order inventory ignored");
        return Ok(0);
    }
    let mut reported: Vec<db::phones::Reported> = Vec::with_capacity(inv.phones.len());
    let mut index = HashMap::with_capacity(inv.phones.len());
    for ph in &inv.phones {
        if !phonefarm_shared::is_subject_token(&ph.phone_id) {
            tracing::warn!(agent_id, phone_id = %ph.phone_id, "phone id is not subject-safe; skipped");
            continue;
        }
        let r = db::phones::Reported {
            phone_id: ph.phone_id.clone(),
            serial: ph.serial.clone(),
            transport: ph.transport.clone(),
            location: ph.location.clone(),
            state: phone_state(ph.state),
            model: ph.model.clone(),
            android_version: ph.android_version.clone(),
            battery_level: ph.battery_level.map(i32::from),
            temperature_c: ph.temperature_decicelsius.map(|t| f32::from(t) / 10.0),
            storage_free_bytes: ph.storage_free_bytes.map(|b| b.min(i64::MAX as u64) as i64),
            screen_state: ph.screen_on.map(|on| if on { "on" } else { "off" }),
            app_version: ph.app_version.clone(),
            current_queue_item_id: ph.current_queue_item_id,
        };
        // A phone named twice in one report: its last entry counts.
        match index.entry(ph.phone_id.as_str()) {
            std::collections::hash_map::Entry::Occupied(e) => reported[*e.get()] = r,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(reported.len());
                reported.push(r);
            }
        }
    }
    let present: Vec<&str> = reported.iter().map(|r| r.phone_id.as_str()).collect();
    // Phones of this report that another agent holds: taken, or claimed.
    let absent_before =
        now - time::Duration::try_from(offline_after).unwrap_or(time::Duration::MAX);
    let mut taking = Vec::new();
    let mut claiming = Vec::new();
    let mut moves = Vec::new();
    let held = db::phones::lock_held_elsewhere(&mut tx, agent_id, &present).await?;
    for h in &held {
        match may_take(h, absent_before) {
            Some(reason) => {
                taking.push(h.phone_id.as_str());
                moves.push(db::phone_moves::NewMove {
                    phone_id: &h.phone_id,
                    from_agent_id: h.agent_id.as_deref(),
                    reason,
                });
            }
            None => {
                tracing::warn!(
                    phone_id = %h.phone_id,
                    holder = h.agent_id.as_deref().unwrap_or(""),
                    claimant = agent_id,
                    "phone reported by an agent that does not hold it; claim refused until the holder lets go"
                );
                metrics::counter!("phonefarm_phone_claims_refused_total").increment(1);
                claiming.push(h.phone_id.as_str());
            }
        }
    }
    let (own, claimed): (Vec<_>, Vec<_>) = reported
        .iter()
        .partition(|r| !claiming.contains(&r.phone_id.as_str()));
    let own: Vec<db::phones::Reported> = own.into_iter().cloned().collect();
    let upserted = db::phones::upsert_reported(&mut tx, agent_id, &own, &taking, now).await?;
    db::phone_claims::upsert(&mut tx, agent_id, &claimed, now).await?;
    moves.extend(upserted.created.iter().map(|id| db::phone_moves::NewMove {
        phone_id: id,
        from_agent_id: None,
        reason: "first_seen",
    }));
    db::phone_moves::record_reported(&mut tx, agent_id, &moves, now).await?;
    let mut written = upserted.written;
    written +=
        db::phones::mark_missing_offline(&mut tx, agent_id, &present, &claiming, now).await?;
    tx.commit().await?;
    for m in moves.iter().filter(|m| m.reason != "first_seen") {
        tracing::info!(
            phone_id = %m.phone_id,
            from = m.from_agent_id.unwrap_or(""),
            to = agent_id,
            reason = m.reason,
            "phone moved to the agent that reports it"
        );
    }
    if written > 0 {
        tracing::info!(agent_id, written, "inventory mirrored");
    }
    Ok(written)
}

//! The fleet mirror of presence: every replica watches the KV bucket `pf_agents` (last value per
//! key first, then updates; agents put their `Presence` there every 10 s) and keeps the latest
//! heartbeat per agent in memory ([`Heartbeats`]); the sweeper and `GET /agents` read it there.
//!
//! Postgres is written only when something changed: a new agent (which is also enrolled: its
//! consumers are created), other facts (version, host, start time, phone count), or an agent
//! coming back online. A heartbeat that changes nothing writes no row: `last_seen_at` in
//! Postgres is the time of the last change, the live one is in memory. As a safety net (another
//! replica's sweeper may have judged an agent silent), every `offline_after` per agent this
//! replica asks Postgres to set `online` again if it is not, a query that writes nothing when it
//! is. The sweeper marks silent agents offline (2.9 sends no event when the bucket's max age
//! expires a key); it starts once this mirror has replayed the bucket ([`Heartbeats::warmed`]),
//! so a coordinator restart does not flap every agent offline.
//!
//! Inventory reports (`lifecycle::inventory::apply_inventory`) are mirrored into `phones`, but a report does not
//! take another agent's phone: a phone changes agent only when it is really moved, i.e. the
//! new agent reports it and its holder is offline or has not named it for the offline window
//! (at once if that is already so, else when the claimant's periodic check above finds it so:
//! `db::phone_claims::settle`), or when an operator moves it (`POST /phones/{id}/move`). Every
//! move is recorded in `phone_moves`; a claim that cannot be settled yet is refused, logged
//! and kept in `phone_claims`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use phonefarm_shared::{Presence, subjects};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{BusHandle, bootstrap, td};
use crate::db;
use crate::domain::time::now_ms;

/// What this replica last saw and wrote of one agent.
#[derive(Debug, Clone)]
struct Seen {
    at: OffsetDateTime,
    presence: Presence,
    checked_at: Option<OffsetDateTime>,
    enrolled: bool,
}

/// The latest heartbeats seen by this replica.
#[derive(Debug, Default)]
pub struct Heartbeats {
    inner: Mutex<HashMap<String, Seen>>,
    /// The watch has delivered every value the bucket held when it started.
    warm: AtomicBool,
    warmed: tokio::sync::Notify,
}

impl Heartbeats {
    /// When `agent_id` last put its presence, as seen here.
    pub fn last_seen(&self, agent_id: &str) -> Option<OffsetDateTime> {
        self.inner.lock().ok()?.get(agent_id).map(|s| s.at)
    }

    /// Whether the bucket's values at start have all been seen.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    fn set_warm(&self) {
        if !self.warm.swap(true, Ordering::AcqRel) {
            self.warmed.notify_waiters();
        }
    }

    /// Waits until the bucket has been replayed, or `at_most`; true if it has.
    pub async fn warmed(&self, at_most: Duration) -> bool {
        let notified = self.warmed.notified();
        if self.is_warm() {
            return true;
        }
        let _ = tokio::time::timeout(at_most, notified).await;
        self.is_warm()
    }
}

/// Applies one presence put; returns true if Postgres was written.
pub async fn apply_presence(
    bus: &BusHandle,
    db: &PgPool,
    key: &str,
    presence: Presence,
    created: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    if presence.agent_id != key || !phonefarm_shared::is_subject_token(key) {
        tracing::warn!(key, agent_id = %presence.agent_id, "presence under a foreign or unsafe key; ignored");
        return Ok(false);
    }
    let now = now_ms();
    let silent_after = td(bus.config.offline_after);
    let (need_write, need_enroll) = {
        let Ok(mut map) = bus.heartbeats.inner.lock() else {
            return Ok(false);
        };
        let entry = map.entry(key.to_string()).or_insert_with(|| Seen {
            at: created,
            presence: presence.clone(),
            checked_at: None,
            enrolled: false,
        });
        // Silent long enough before this put that a sweeper may have marked it offline.
        let was_silent = created - entry.at > silent_after;
        if created > entry.at {
            entry.at = created;
        }
        let changed = entry.presence != presence;
        entry.presence = presence.clone();
        // First sighting here, or the periodic check that Postgres still says online.
        let check_due = entry.checked_at.is_none_or(|w| now - w >= silent_after);
        (changed || was_silent || check_due, !entry.enrolled)
    };
    if now - created > td(bus.config.offline_after) {
        // An old entry replayed by the watch: the agent is silent, nothing to write.
        return Ok(false);
    }
    if need_enroll {
        match bootstrap::enroll_agent(&bus.js, key, bus.config.replicas).await {
            Ok(()) => {
                if let Ok(mut map) = bus.heartbeats.inner.lock()
                    && let Some(s) = map.get_mut(key)
                {
                    s.enrolled = true;
                }
                tracing::info!(
                    agent_id = key,
                    "agent enrolled (work and control consumers ready)"
                );
            }
            Err(e) => {
                tracing::warn!(agent_id = key, error = %e, "enrolling an agent failed; will retry")
            }
        }
    }
    if !need_write {
        return Ok(false);
    }
    let written = db::agents::upsert_presence(
        db,
        &db::agents::PresenceWrite {
            agent_id: key,
            version: &presence.version,
            host: &presence.host,
            started_at: crate::domain::time::from_unix_ms(presence.started_at_unix_ms),
            phones: presence.phones.min(i32::MAX as u32) as i32,
            seen_at: created,
        },
    )
    .await?;
    if let Ok(mut map) = bus.heartbeats.inner.lock()
        && let Some(s) = map.get_mut(key)
    {
        s.checked_at = Some(now);
    }
    // The same periodic look settles this agent's claims whose holder has let go since.
    let settled = settle_claims(db, key, silent_after, now).await?;
    if written {
        tracing::info!(agent_id = key, "agent presence mirrored");
    }
    if written || settled > 0 {
        bus.wakers.dispatch.notify_one();
    }
    Ok(written)
}

/// Moves to `agent_id` the phones it claims whose holder let go (offline, or not naming the
/// phone for `window`); returns how many moved.
async fn settle_claims(
    db: &PgPool,
    agent_id: &str,
    window: time::Duration,
    now: OffsetDateTime,
) -> Result<usize, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let settled = db::phone_claims::settle(&mut conn, agent_id, now - window, now).await?;
    for m in &settled {
        tracing::info!(
            phone_id = %m.phone_id,
            from = m.from_agent_id.as_deref().unwrap_or(""),
            to = agent_id,
            reason = %m.reason,
            "phone moved to the agent that reports it"
        );
    }
    Ok(settled.len())
}

/// Watches `pf_agents` until shutdown (re-watching after errors).
pub async fn run_presence(bus: BusHandle, db: PgPool, shutdown: CancellationToken) {
    // Agents enrolled before this start get their consumers back even if they stay silent
    // (beside the watch, so the heartbeats are replayed without waiting for it).
    let re_enroll = {
        let (bus, db) = (bus.clone(), db.clone());
        tokio::spawn(async move {
            match db::agents::ids(&db).await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) =
                            bootstrap::enroll_agent(&bus.js, &id, bus.config.replicas).await
                        {
                            tracing::warn!(agent_id = %id, error = %e, "re-enrolling a known agent failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing known agents"),
            }
        })
    };
    watch_presence(&bus, &db, &shutdown).await;
    re_enroll.abort();
}

async fn watch_presence(bus: &BusHandle, db: &PgPool, shutdown: &CancellationToken) {
    loop {
        let watch = match bus.js.get_key_value(subjects::AGENTS_BUCKET).await {
            Ok(kv) => {
                // An empty bucket has nothing to replay.
                if kv.status().await.is_ok_and(|s| s.values() == 0) {
                    bus.heartbeats.set_warm();
                }
                kv.watch_with_history(">")
                    .await
                    .map_err(async_nats::Error::from)
            }
            Err(e) => Err(async_nats::Error::from(e)),
        };
        match watch {
            Ok(mut watch) => loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = watch.next() => n,
                };
                match next {
                    None => break,
                    Some(Ok(entry)) => {
                        if entry.operation == async_nats::jetstream::kv::Operation::Put {
                            match phonefarm_shared::decode::<Presence>(&entry.value) {
                                Ok(p) => {
                                    if let Err(e) =
                                        apply_presence(bus, db, &entry.key, p, entry.created).await
                                    {
                                        tracing::warn!(agent_id = %entry.key, error = %e, "mirroring presence failed");
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(key = %entry.key, error = %e, "undecodable presence; ignored")
                                }
                            }
                        }
                        // `delta`: values still pending behind this one; 0 = caught up.
                        if entry.delta == 0 {
                            bus.heartbeats.set_warm();
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "presence watch failed; re-watching");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch pf_agents; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

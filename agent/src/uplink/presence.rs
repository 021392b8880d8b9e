//! Presence and inventory.
//!
//! - Presence: `encode(Presence)` under the agent's key in KV `pf_agents`, every
//!   `interval` (10 s in production). The bucket's max age expires silent agents. The bucket
//!   is opened with `get_key_value` (never created: `create_key_value` fails on 2.9).
//! - Inventory: `encode(Inventory)` to `pf.evt.<id>.inventory` at start and whenever the
//!   fleet's view of its phones changes; a report is retried (same msg id) until stored or
//!   superseded by a newer one.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use phonefarm_shared::{Inventory, PhoneStatus, Presence, subjects};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{now_ms, pause};

/// What presence reports about this agent process.
#[derive(Debug, Clone)]
pub struct PresenceInfo {
    pub agent_id: String,
    pub version: String,
    pub host: String,
    pub started_at_unix_ms: i64,
}

/// Writes presence every `interval` until `shutdown`; failures are logged and retried at the
/// next tick (or sooner, while the bucket cannot be opened).
pub async fn run_presence(
    js: jetstream::Context,
    info: PresenceInfo,
    interval: Duration,
    phones: watch::Receiver<Vec<PhoneStatus>>,
    shutdown: CancellationToken,
) {
    let agent_id = info.agent_id.clone();
    let mut kv = None;
    loop {
        if kv.is_none() {
            match js.get_key_value(subjects::AGENTS_BUCKET).await {
                Ok(store) => kv = Some(store),
                Err(e) => {
                    tracing::warn!(%agent_id, error = %e, "cannot open the presence bucket");
                }
            }
        }
        if let Some(store) = &kv {
            let presence = Presence {
                agent_id: info.agent_id.clone(),
                version: info.version.clone(),
                host: info.host.clone(),
                started_at_unix_ms: info.started_at_unix_ms,
                phones: u32::try_from(phones.borrow().len()).unwrap_or(u32::MAX),
            };
            let put = tokio::time::timeout(
                Duration::from_secs(5),
                store.put(&agent_id, phonefarm_shared::encode(&presence).into()),
            )
            .await;
            match put {
                Ok(Ok(_)) => tracing::trace!(%agent_id, "presence written"),
                Ok(Err(e)) => tracing::warn!(%agent_id, error = %e, "presence write failed"),
                Err(_) => tracing::warn!(%agent_id, "presence write timed out"),
            }
        }
        let delay = if kv.is_some() {
            interval
        } else {
            interval.min(Duration::from_secs(1))
        };
        if !pause(delay, &shutdown).await {
            return;
        }
    }
}

/// Publishes an inventory report at start, on every change of `phones` and after every
/// (re)connect (`connects` changes).
pub async fn run_inventory(
    js: jetstream::Context,
    agent_id: String,
    started_at_unix_ms: i64,
    mut phones: watch::Receiver<Vec<PhoneStatus>>,
    mut connects: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let subject = subjects::inventory(&agent_id);
    let mut seq = 0u64;
    connects.mark_unchanged();
    loop {
        seq += 1;
        let report = Inventory {
            agent_id: agent_id.clone(),
            seq,
            at_unix_ms: now_ms(),
            phones: phones.borrow_and_update().clone(),
        };
        let payload: bytes::Bytes = phonefarm_shared::encode(&report).into();
        let msg_id = format!("inventory:{agent_id}:{started_at_unix_ms}:{seq}");
        let mut delay = Duration::from_millis(200);
        // Retry this report until stored, unless a newer one replaces it.
        loop {
            let publish = async {
                let ack = js
                    .send_publish(
                        subject.clone(),
                        PublishMessage::build()
                            .payload(payload.clone())
                            .message_id(msg_id.clone()),
                    )
                    .await?;
                ack.await?;
                Ok::<(), async_nats::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(5), publish).await {
                Ok(Ok(())) => {
                    tracing::debug!(%agent_id, seq, phones = report.phones.len(), "inventory published");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%agent_id, seq, error = %e, "inventory publish failed")
                }
                Err(_) => tracing::warn!(%agent_id, seq, "inventory publish timed out"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                changed = phones.changed() => {
                    if changed.is_err() { return; }
                    // A newer view supersedes this report.
                    break;
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if phones.has_changed().unwrap_or(false) {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = phones.changed() => if changed.is_err() { return; },
            changed = connects.changed() => {
                if changed.is_err() { return; }
                tracing::debug!(%agent_id, "reconnected: inventory sent again");
            }
        }
    }
}

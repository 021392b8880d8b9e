//! The live screen view's agent side: capture a phone's screen about once a second while
//! someone watches it in the console, and publish each frame to the coordinator.
//!
//! ```text
//! coordinator --core NATS pf.watch.<agent> (Watch{phone, for_seconds}, renewed every 2 s)--> here
//! here --screencap -p over ADB, 1 per second--> pf.screen.<agent>.<phone> (ScreenFrame)--> coordinator
//! ```
//!
//! Core NATS, not JetStream: a frame or a watch is worth nothing once late, and nothing of it is
//! journaled or stored. A watch lasts `for_seconds` (at most [`MAX_WATCH`]) from its latest
//! renewal, so the capture stops by itself soon after the last viewer leaves, with no message
//! needed (and none lost). One capture loop per phone at most, whatever the number of viewers or
//! coordinator replicas asking; a capture starts only after the previous one ended (a slow phone
//! gets fewer frames, never a queue of them). Captures go on during runs: watching a run is what
//! an operator wants the view for, and one `screencap` a second costs a phone little next to
//! the flow's own UI dumps. A frame larger than the server's `max_payload` (a real phone's
//! 1080x2400 PNG is 1-3 MB, the default `max_payload` 1 MB) goes in parts
//! (`phonefarm_shared::screen`), which the coordinator puts back together; one larger than
//! [`MAX_FRAME`] is dropped and logged.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use phonefarm_shared::{ScreenFrame, Watch, subjects};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fleet::FleetHandle;

/// The longest a watch lasts without a renewal.
pub const MAX_WATCH: Duration = Duration::from_secs(60);
/// The largest frame sent.
pub const MAX_FRAME: usize = 8 << 20;
/// PNG files start so.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Capture timing.
#[derive(Debug, Clone)]
pub struct ScreenOptions {
    /// Between the starts of two captures of one phone.
    pub interval: Duration,
    /// Deadline of one capture.
    pub capture_timeout: Duration,
}

impl Default for ScreenOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            capture_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves watch requests on `pf.watch.<agent_id>` until `shutdown`.
pub async fn run_screen_watch(
    client: async_nats::Client,
    agent_id: String,
    fleet: FleetHandle,
    options: ScreenOptions,
    shutdown: CancellationToken,
) {
    let subject = subjects::screen_watch(&agent_id);
    let mut watches = loop {
        match client.subscribe(subject.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(%agent_id, error = %e, "cannot subscribe to screen watches; retrying");
                if !super::pause(Duration::from_secs(1), &shutdown).await {
                    return;
                }
            }
        }
    };
    // The deadline of each phone's capture loop; a loop ends (dropping its receiver) when its
    // deadline passed.
    let mut loops: HashMap<String, watch::Sender<Instant>> = HashMap::new();
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => return,
            m = watches.next() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let w = match phonefarm_shared::decode::<Watch>(&msg.payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(%agent_id, error = %e, "undecodable watch ignored");
                continue;
            }
        };
        if fleet.phone(&w.phone_id).is_none() {
            tracing::debug!(%agent_id, phone_id = %w.phone_id, "watch for a phone not ours ignored");
            continue;
        }
        let until = Instant::now() + Duration::from_secs(u64::from(w.for_seconds)).min(MAX_WATCH);
        loops.retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = loops.get(&w.phone_id) {
            tx.send_modify(|d| *d = (*d).max(until));
            continue;
        }
        let (tx, rx) = watch::channel(until);
        loops.insert(w.phone_id.clone(), tx);
        // Room for the frame's other fields and the part header in one message.
        let part_size = client
            .server_info()
            .max_payload
            .saturating_sub(1024 + w.phone_id.len());
        tracing::info!(%agent_id, phone_id = %w.phone_id, "screen watched: capturing");
        tokio::spawn(capture_loop(CaptureLoop {
            client: client.clone(),
            subject: subjects::screen(&agent_id, &w.phone_id),
            phone_id: w.phone_id,
            fleet: fleet.clone(),
            options: options.clone(),
            until: rx,
            part_size,
            shutdown: shutdown.clone(),
        }));
    }
}

struct CaptureLoop {
    client: async_nats::Client,
    subject: String,
    phone_id: String,
    fleet: FleetHandle,
    options: ScreenOptions,
    until: watch::Receiver<Instant>,
    /// The largest slice of a PNG one message carries.
    part_size: usize,
    shutdown: CancellationToken,
}

async fn capture_loop(c: CaptureLoop) {
    let mut tick = tokio::time::interval(c.options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seq, mut too_large) = (0u64, false);
    loop {
        tokio::select! {
            () = c.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if Instant::now() >= *c.until.borrow() {
            tracing::info!(phone_id = %c.phone_id, frames = seq, "screen no longer watched: capture stopped");
            return;
        }
        let Some(h) = c.fleet.phone(&c.phone_id) else {
            continue;
        };
        let deadline = Instant::now() + c.options.capture_timeout;
        let png = match h.shell("screencap -p", deadline).await {
            Ok(o) if o.exit == Some(0) && o.stdout.starts_with(PNG_SIGNATURE) => o.stdout,
            Ok(o) => {
                tracing::debug!(phone_id = %c.phone_id, exit = ?o.exit, bytes = o.stdout.len(), "screencap gave no PNG");
                continue;
            }
            Err(e) => {
                tracing::debug!(phone_id = %c.phone_id, error = %e, "screencap failed");
                continue;
            }
        };
        let parts = if png.len() > MAX_FRAME {
            None
        } else {
            phonefarm_shared::screen::split(&png, c.part_size)
        };
        let Some(parts) = parts else {
            if !too_large {
                tracing::warn!(phone_id = %c.phone_id, bytes = png.len(), max = MAX_FRAME, part_size = c.part_size, "screen frame too large to send; dropped");
                too_large = true;
            }
            continue;
        };
        seq += 1;
        let at_unix_ms = super::now_ms();
        let whole = parts.len() == 1;
        for (index, count, slice) in parts {
            let bytes = phonefarm_shared::encode(&ScreenFrame {
                phone_id: c.phone_id.clone(),
                seq,
                at_unix_ms,
                png: slice.to_vec(),
            });
            let sent = if whole {
                c.client.publish(c.subject.clone(), bytes.into()).await
            } else {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    phonefarm_shared::screen::PART_HEADER,
                    phonefarm_shared::screen::part_header(index, count),
                );
                c.client
                    .publish_with_headers(c.subject.clone(), headers, bytes.into())
                    .await
            };
            if let Err(e) = sent {
                tracing::debug!(phone_id = %c.phone_id, error = %e, "screen frame not sent");
                break;
            }
        }
    }
}

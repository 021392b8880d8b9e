//! The live screen view's coordinator side: while this replica has viewers of a phone (the
//! console's screen streams), ask the phone's agent for frames and keep the latest in memory.
//!
//! ```text
//! viewer opens /ui/live/screen/<phone> --> Screens::watch (first viewer: a feed task)
//! feed task --every 2 s: Watch{phone, 6 s} on pf.watch.<agent> (core NATS)--> agent
//! agent --ScreenFrame on pf.screen.<agent>.<phone> (in parts when large)--> feed task
//!       --> latest frame + notify viewers
//! last viewer leaves --> feed task ends: no renewals, the agent stops within 6 s
//! ```
//!
//! Nothing here touches Postgres or JetStream: frames are large and worth nothing once late.
//! Memory is bounded: frames are kept only for phones being watched (at most [`MAX_PHONES`] per
//! replica), one per phone, each at most [`MAX_FRAME`] bytes and a PNG. Each replica feeds its
//! own viewers (NATS fans the frames out to every replica subscribed), so nothing is shared
//! between replicas and any replica can serve any viewer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use phonefarm_shared::{ScreenFrame, Watch, subjects};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Phones one replica watches at once.
pub const MAX_PHONES: usize = 256;
/// The largest frame kept.
pub const MAX_FRAME: usize = 8 << 20;
/// How long a watch lasts on the agent without a renewal.
pub const WATCH_SECONDS: u32 = 6;
/// Renewal period of a watch.
pub const RENEW: Duration = Duration::from_secs(2);

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Counts the frames this replica received for the phone (1, 2, …).
    pub n: u64,
    pub at_unix_ms: i64,
    pub png: Bytes,
}

struct Feed {
    viewers: usize,
    frames: watch::Sender<Option<Frame>>,
    stop: CancellationToken,
}

/// The replica's watched phones and their latest frames.
#[derive(Clone)]
pub struct Screens {
    client: async_nats::Client,
    feeds: Arc<Mutex<HashMap<String, Feed>>>,
}

impl std::fmt::Debug for Screens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screens").finish_non_exhaustive()
    }
}

/// Why a watch was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    #[error("too many phones are being watched on this coordinator")]
    TooMany,
}

/// A viewer of one phone's screen: frames while it lives; dropping it may end the feed.
pub struct Viewer {
    screens: Screens,
    phone_id: String,
    pub frames: watch::Receiver<Option<Frame>>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut feeds = self.screens.lock();
        if let Some(f) = feeds.get_mut(&self.phone_id) {
            f.viewers -= 1;
            if f.viewers == 0 {
                f.stop.cancel();
                feeds.remove(&self.phone_id);
                tracing::info!(phone_id = %self.phone_id, "screen no longer watched here");
            }
        }
    }
}

impl Screens {
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            feeds: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Feed>> {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `phone_id` on `agent_id` (or joins the watch already going).
    pub fn watch(&self, agent_id: &str, phone_id: &str) -> Result<Viewer, WatchRefused> {
        let mut feeds = self.lock();
        if let Some(f) = feeds.get_mut(phone_id) {
            f.viewers += 1;
            return Ok(Viewer {
                screens: self.clone(),
                phone_id: phone_id.to_string(),
                frames: f.frames.subscribe(),
            });
        }
        if feeds.len() >= MAX_PHONES {
            return Err(WatchRefused::TooMany);
        }
        let (frames, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        tokio::spawn(feed(
            self.client.clone(),
            agent_id.to_string(),
            phone_id.to_string(),
            frames.clone(),
            stop.clone(),
        ));
        feeds.insert(
            phone_id.to_string(),
            Feed {
                viewers: 1,
                frames,
                stop,
            },
        );
        tracing::info!(phone_id, agent_id, "screen watched here");
        Ok(Viewer {
            screens: self.clone(),
            phone_id: phone_id.to_string(),
            frames: rx,
        })
    }

    /// The phones watched now, with their viewer counts (for tests and diagnostics).
    pub fn watched(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, f)| (k.clone(), f.viewers))
            .collect();
        v.sort();
        v
    }
}

/// Subscribes to the phone's frames and renews the watch until `stop`.
async fn feed(
    client: async_nats::Client,
    agent_id: String,
    phone_id: String,
    frames: watch::Sender<Option<Frame>>,
    stop: CancellationToken,
) {
    let mut sub = match client
        .subscribe(subjects::screen(&agent_id, &phone_id))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%phone_id, error = %e, "cannot subscribe to the phone's screen");
            return;
        }
    };
    let watch = phonefarm_shared::encode(&Watch {
        phone_id: phone_id.clone(),
        for_seconds: WATCH_SECONDS,
    });
    let watch_subject = subjects::screen_watch(&agent_id);
    let mut renew = tokio::time::interval(RENEW);
    let mut n = 0u64;
    let mut parts = phonefarm_shared::screen::Reassembler::new(MAX_FRAME);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = renew.tick() => {
                if let Err(e) = client.publish(watch_subject.clone(), watch.clone().into()).await {
                    tracing::debug!(%phone_id, error = %e, "watch not sent");
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if msg.payload.len() > MAX_FRAME + 1024 {
                    continue;
                }
                let header = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(phonefarm_shared::screen::PART_HEADER));
                let part = match header.map(|v| phonefarm_shared::screen::parse_part_header(v.as_str())) {
                    None => None,
                    Some(Some(p)) => Some(p),
                    Some(None) => {
                        tracing::debug!(%phone_id, "screen frame part with a bad header ignored");
                        continue;
                    }
                };
                let frame = phonefarm_shared::decode::<ScreenFrame>(&msg.payload)
                    .map(|f| parts.feed(part, f));
                match frame {
                    Ok(None) => {}
                    Ok(Some(f)) if f.phone_id == phone_id && f.png.starts_with(PNG_SIGNATURE) => {
                        n += 1;
                        let frame = Frame { n, at_unix_ms: f.at_unix_ms, png: Bytes::from(f.png) };
                        frames.send_replace(Some(frame));
                    }
                    Ok(_) => tracing::debug!(%phone_id, "screen frame of another phone or not a PNG ignored"),
                    Err(e) => tracing::debug!(%phone_id, error = %e, "undecodable screen frame ignored"),
                }
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

//! One run of one work order on one phone.
//!
//! Milestones from the flow (a synchronous [`MilestoneSink`]) go through a channel to a
//! forwarder task that journals them in order (assigning `seq`), interleaved with a
//! `Heartbeat` every `heartbeat_interval`. Soft cancel is the flow's cancellation token
//! (checked at step boundaries and during dwells; it also stops `post_video`'s download); hard cancel drops the flow future at once,
//! then force-stops the app and goes home ([`phonefarm_flows::flows::abort`]). The order's
//! deadline is a hard stop too. On failure the flow's evidence (UI dump, screenshot) is
//! journaled in the evidence spool (uploaded by the uplink's uploader) and announced with
//! `Evidence` events before `Finished`.

use std::sync::Arc;
use std::time::Duration;

use phonefarm_flows::flows::{self, FlowError, FlowFailure, MilestoneSink, PostVideoInputs};
use phonefarm_flows::{FlowOptions, Ui};
use phonefarm_shared::{Capability, EventKind, Outcome, RunError, WorkOrder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::RunnerDeps;
use super::device::PhoneDevice;
use super::exec::{FlowRequest, run_flow};
use crate::uplink::evidence::object_name;
use crate::uplink::journal::JournalError;
use crate::uplink::publisher::EmitError;

/// Milestones into the forwarder's channel (the sink must not block the flow).
struct ChannelSink(mpsc::UnboundedSender<EventKind>);

impl MilestoneSink for ChannelSink {
    fn step_started(&self, step: &str) {
        let _ = self.0.send(EventKind::StepStarted {
            step: step.to_string(),
        });
    }

    fn step_finished(&self, step: &str, _ok: bool) {
        let _ = self.0.send(EventKind::StepFinished {
            step: step.to_string(),
        });
    }

    fn progress(&self, progress: &serde_json::Value) {
        let _ = self.0.send(EventKind::Progress {
            counters_json: progress.to_string(),
        });
    }

    fn pack_chosen(&self, name: &str, revision: u32) {
        let _ = self.0.send(EventKind::PackChosen {
            name: name.to_string(),
            revision,
        });
    }
}

/// How a run ended, before it becomes `Finished`.
enum End {
    Done(serde_json::Value),
    Flow(Box<FlowError>),
    HardCancelled,
    /// Soft-cancelled before the phone was touched (while the video downloaded).
    CancelledUnstarted,
    DeadlineExceeded,
    Refused {
        code: String,
        message: String,
        retryable: bool,
    },
}

fn now_ms() -> i64 {
    crate::uplink::now_ms()
}

/// Runs `order` to its `Finished` event. If `shutdown` fires the run is dropped without
/// `Finished` (the next agent process reports it as `agent_restarted`).
pub async fn execute(
    deps: &Arc<RunnerDeps>,
    order: WorkOrder,
    soft: CancellationToken,
    hard: CancellationToken,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!(
        "run",
        agent_id = %deps.agent_id,
        phone_id = %order.phone_id,
        queue_item_id = %order.queue_item_id,
        attempt = order.attempt,
        capability = order.capability.as_str(),
    );
    execute_inner(deps, order, soft, hard, shutdown)
        .instrument(span)
        .await;
}

async fn execute_inner(
    deps: &Arc<RunnerDeps>,
    order: WorkOrder,
    soft: CancellationToken,
    hard: CancellationToken,
    shutdown: CancellationToken,
) {
    let (qid, attempt) = (order.queue_item_id, order.attempt);
    let (tx, mut rx) = mpsc::unbounded_channel::<EventKind>();
    let events = deps.events.clone();
    let heartbeat = deps.options.heartbeat_interval;
    let forwarder = tokio::spawn(
        async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + heartbeat,
                heartbeat.max(Duration::from_millis(10)),
            );
            loop {
                let kind = tokio::select! {
                    k = rx.recv() => match k {
                        Some(k) => k,
                        None => return,
                    },
                    _ = tick.tick() => EventKind::Heartbeat,
                };
                match events.emit(qid, attempt, kind).await {
                    Ok(_) => {}
                    // The agent is stopping.
                    Err(EmitError::Journal(JournalError::Closed) | EmitError::Stopped) => return,
                    Err(e) => tracing::error!(error = %e, "cannot journal a run event"),
                }
            }
        }
        .in_current_span(),
    );

    tracing::info!("run started");
    let end = tokio::select! {
        end = drive(deps, &order, &soft, &hard, ChannelSink(tx)) => end,
        () = shutdown.cancelled() => {
            forwarder.abort();
            tracing::warn!("agent shutting down: run dropped");
            return;
        }
    };
    // Every milestone sender is gone: the forwarder drains the rest and ends.
    let _ = forwarder.await;
    if shutdown.is_cancelled() {
        return;
    }
    finish(deps, &order, end).await;
}

/// Selects the pack and runs the flow, with hard cancel and the deadline as hard stops.
async fn drive(
    deps: &RunnerDeps,
    order: &WorkOrder,
    soft: &CancellationToken,
    hard: &CancellationToken,
    sink: ChannelSink,
) -> End {
    let Some(phone) = deps.fleet.phone(&order.phone_id) else {
        return End::Refused {
            code: "device_error".into(),
            message: format!("phone {} is not attached to this agent", order.phone_id),
            retryable: true,
        };
    };
    let inputs: serde_json::Value = match serde_json::from_str(&order.inputs_json) {
        Ok(v) => v,
        Err(e) => {
            return End::Refused {
                code: "invalid_input:inputs".into(),
                message: format!("inputs are not JSON: {e}"),
                retryable: false,
            };
        }
    };
    let device = PhoneDevice::fleet(phone, deps.fleet.clone(), &order.phone_id);
    let ui = Ui::new(device, deps.options.ui.clone());
    let package = deps.options.app_package.clone();
    let remaining = order.deadline_unix_ms.saturating_sub(now_ms());
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(remaining.max(0)).unwrap_or(0));
    let seed = u64::from_le_bytes(order.run_id.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    // post_video: the video is fetched before the phone is touched.
    let video = if order.capability == Capability::PostVideo {
        let fetch = video_inputs(&sink, inputs.clone(), &deps.options.asset_policy, false);
        // A soft cancel ends the run here too: nothing is on the phone yet, and a download
        // may take minutes.
        let fetched = tokio::select! {
            r = fetch => r.map_err(End::from),
            () = soft.cancelled() => Err(End::CancelledUnstarted),
            () = hard.cancelled() => Err(End::HardCancelled),
            () = tokio::time::sleep_until(deadline) => Err(End::DeadlineExceeded),
        };
        match fetched {
            Ok(v) => Some(v),
            Err(end) => return end,
        }
    } else {
        None
    };
    let packs = deps.packs.snapshot();
    let request = FlowRequest {
        capability: order.capability.as_str(),
        inputs,
        video,
        pinned_pack: order.flow_pack_version.as_deref(),
    };
    let options = FlowOptions {
        seed,
        ..deps.options.flow.clone()
    };
    let flow = run_flow(&ui, &packs, &package, request, options, &sink, soft);
    let end = tokio::select! {
        r = flow => match r {
            Ok(result) => End::Done(result),
            Err(e) => {
                if let FlowFailure::Health { problem, .. } = &e.failure {
                    deps.fleet.flag(&order.phone_id, *problem).await;
                }
                End::Flow(Box::new(e))
            }
        },
        () = hard.cancelled() => End::HardCancelled,
        () = tokio::time::sleep_until(deadline) => End::DeadlineExceeded,
    };
    if matches!(end, End::HardCancelled | End::DeadlineExceeded) {
        let abort = tokio::time::timeout(deps.options.abort_timeout, flows::abort(&ui, &package));
        match abort.await {
            Ok(Ok(())) => tracing::info!("app force-stopped, phone at home"),
            Ok(Err(e)) => tracing::warn!(error = %e, "abort did not complete"),
            Err(_) => tracing::warn!("abort timed out"),
        }
    }
    end
}

async fn finish(deps: &RunnerDeps, order: &WorkOrder, end: End) {
    let (qid, attempt) = (order.queue_item_id, order.attempt);
    let (outcome, result_json, error) = match end {
        End::Done(result) => (Outcome::Completed, result.to_string(), None),
        End::HardCancelled | End::CancelledUnstarted => (Outcome::Cancelled, "null".into(), None),
        End::DeadlineExceeded => (
            Outcome::Failed,
            "null".into(),
            Some(RunError {
                code: "deadline_exceeded".into(),
                message: "the run did not finish by the order's deadline".into(),
                retryable: false,
            }),
        ),
        End::Refused {
            code,
            message,
            retryable,
        } => (
            Outcome::Failed,
            "null".into(),
            Some(RunError {
                code,
                message,
                retryable,
            }),
        ),
        End::Flow(e) if matches!(e.failure, FlowFailure::Cancelled) => {
            (Outcome::Cancelled, e.partial.to_string(), None)
        }
        End::Flow(e) => {
            keep_evidence(deps, order, &e).await;
            // The message says what the evidence shows: the screen, and the pack (and its
            // revision) that read it.
            let message = match &e.evidence {
                Some(ev) => format!(
                    "{e} (screen {}, pack {} r{})",
                    ev.screen, ev.pack, ev.pack_revision
                ),
                None => e.to_string(),
            };
            (
                Outcome::Failed,
                e.partial.to_string(),
                Some(RunError {
                    code: e.code(),
                    message,
                    retryable: matches!(
                        e.failure,
                        FlowFailure::Device(_) | FlowFailure::Health { .. }
                    ),
                }),
            )
        }
    };
    tracing::info!(
        ?outcome,
        code = error.as_ref().map(|e| e.code.as_str()),
        "run finished"
    );
    let finished = EventKind::Finished {
        outcome,
        result_json,
        error,
    };
    if let Err(e) = deps.events.emit(qid, attempt, finished).await {
        tracing::error!(error = %e, "cannot journal Finished");
    }
}

/// Journals the dump and screenshot in the evidence spool (durably; the uploader stores them
/// in the agent's `pf_evidence_<id>` whenever NATS is reachable, so an outage at this moment loses nothing) and
/// announces each with an `Evidence` event.
async fn keep_evidence(deps: &RunnerDeps, order: &WorkOrder, e: &FlowError) {
    let (Some(spool), Some(evidence)) = (&deps.evidence, &e.evidence) else {
        return;
    };
    let items = [
        ("ui_dump.xml", "ui_dump", evidence.dump.clone()),
        ("screenshot.png", "screenshot", evidence.screenshot.clone()),
    ];
    for (name, kind, data) in items {
        let Some(data) = data else { continue };
        let object = object_name(&deps.agent_id, order.queue_item_id, order.attempt, name);
        match spool.keep(&object, data).await {
            Ok(()) => {
                let ev = EventKind::Evidence {
                    object: object.clone(),
                    kind: kind.into(),
                };
                if let Err(err) = deps
                    .events
                    .emit(order.queue_item_id, order.attempt, ev)
                    .await
                {
                    tracing::error!(error = %err, "cannot journal an Evidence event");
                }
            }
            Err(err) => tracing::warn!(%object, error = %err, "cannot keep evidence"),
        }
    }
}

/// `post_video` inputs as the coordinator sends them (the `post_video` request in the coordinator's OpenAPI document, `/openapi.json`).
#[derive(Debug, serde::Deserialize)]
struct PostVideoOrder {
    content_id: String,
    video_path: String,
    caption: String,
    #[serde(default)]
    hashtags: Vec<String>,
}

/// `[A-Za-z0-9._-]`, other characters as `_`, at most `max` bytes.
fn safe_name(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// The file name on the phone (`<content_id>.<ext>`) and the post's marker (`pf-<content_id>`,
/// so a retry recognises its own post on the profile and never posts twice).
fn video_names(content_id: &str, url: &str) -> (String, String) {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .filter(|e| ["mp4", "mov", "3gp", "webm", "mkv"].contains(&e.as_str()))
        .unwrap_or_else(|| "mp4".into());
    let base = safe_name(content_id, 100);
    let base = base.trim_start_matches('.');
    let base = if base.is_empty() { "video" } else { base };
    (
        format!("{base}.{ext}"),
        format!("pf-{}", safe_name(content_id, 61)),
    )
}

/// Why a `post_video` order's video could not be had.
pub(crate) struct Refusal {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl From<Refusal> for End {
    fn from(r: Refusal) -> Self {
        End::Refused {
            code: r.code,
            message: r.message,
            retryable: r.retryable,
        }
    }
}

/// Fetches the video of a `post_video` order (step `fetch_video`); a failure ends the run
/// with the fetch's code (`asset_timeout`, `asset_http_status:404`, …), retryable when another
/// attempt may succeed (timeouts, unreachable host, 5xx). With `local_files` (a technician's
/// `run`), a `video_path` without a scheme is a file on this host.
pub(crate) async fn video_inputs<S: MilestoneSink + ?Sized>(
    sink: &S,
    inputs: serde_json::Value,
    asset_policy: &crate::assets::SsrfPolicy,
    local_files: bool,
) -> Result<PostVideoInputs, Refusal> {
    let order: PostVideoOrder = serde_json::from_value(inputs).map_err(|e| Refusal {
        code: "invalid_input:inputs".into(),
        message: e.to_string(),
        retryable: false,
    })?;
    sink.step_started("fetch_video");
    let bytes = if local_files && !order.video_path.contains("://") {
        let read = tokio::fs::read(&order.video_path).await;
        sink.step_finished("fetch_video", read.is_ok());
        read.map_err(|e| Refusal {
            code: "invalid_input:video_path".into(),
            message: format!("cannot read {}: {e}", order.video_path),
            retryable: false,
        })?
    } else {
        let limits = crate::assets::FetchLimits::default();
        let fetched = async {
            let client = crate::assets::client(&limits, asset_policy.clone())?;
            crate::assets::fetch(&client, &order.video_path, &limits).await
        }
        .await;
        sink.step_finished("fetch_video", fetched.is_ok());
        let asset = fetched.map_err(|e| {
            use crate::assets::FetchError as F;
            let retryable = matches!(e, F::Timeout(_) | F::Connect(_) | F::Request(_))
                || matches!(e, F::Status(s) if s >= 500);
            Refusal {
                code: e.code(),
                message: e.to_string(),
                retryable,
            }
        })?;
        tracing::info!(bytes = asset.bytes.len(), sha256 = %asset.sha256_hex, "video fetched");
        asset.bytes
    };
    let (file_name, marker) = video_names(&order.content_id, &order.video_path);
    Ok(PostVideoInputs {
        file_name,
        video: bytes,
        caption: order.caption,
        hashtags: order.hashtags,
        marker: Some(marker),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_names_are_safe_for_the_phone_and_the_caption() {
        assert_eq!(
            video_names("c-1", "https://cdn/x/clip.MOV?sig=a.b"),
            ("c-1.mov".into(), "pf-c-1".into())
        );
        let (file, marker) = video_names("../a b/é", "https://cdn/v");
        assert_eq!(file, "_a_b__.mp4", "no leading dot, no path");
        assert!(marker.len() <= 64 && !marker.contains(char::is_whitespace));
        assert_eq!(video_names("", "https://cdn/v.webm").0, "video.webm");
    }
}

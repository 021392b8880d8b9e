//! `phonefarm-agent run`: one capability on one phone from a technician's shell, the same way
//! a work order runs ([`super::exec::run_flow`]): inputs as inline JSON, `@file` or a `.json`
//! path; dwells divided by `speed`; milestones on stderr as they happen, one line each
//! ([`StderrSink`]); a deadline after which the app is force-stopped and the phone sent home.

use std::io::Write as _;
use std::time::Duration;

use phonefarm_flows::flows::{self, FlowError, FlowOptions, MilestoneSink};
use phonefarm_flows::{PackSet, Ui, UiConfig};
use tokio_util::sync::CancellationToken;

use super::device::PhoneDevice;
use super::exec::{FlowRequest, run_flow};

/// How a technician's run goes.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The app the flows drive.
    pub app: String,
    pub seed: u64,
    /// Dwell times are divided by this.
    pub speed: f64,
    /// The run is stopped (app force-stopped, phone home) after this long.
    pub deadline: Duration,
    pub ui: UiConfig,
}

/// Why a technician's run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{}", describe(.0))]
    Flow(Box<FlowError>),
    /// The video of a `post_video` could not be had.
    #[error("{code}: {message}")]
    Video { code: String, message: String },
    #[error("deadline_exceeded: the run did not finish within {0:?}")]
    Deadline(Duration),
}

impl LocalError {
    /// The machine reason (`device_error`, `account_outcome:suspended`, …).
    pub fn code(&self) -> String {
        match self {
            Self::Flow(e) => e.code(),
            Self::Video { code, .. } => code.clone(),
            Self::Deadline(_) => "deadline_exceeded".into(),
        }
    }

    pub fn flow(&self) -> Option<&FlowError> {
        match self {
            Self::Flow(e) => Some(e),
            _ => None,
        }
    }
}

/// `<reason> in step <step>: <message>`, then what the evidence shows (screen, pack).
fn describe(e: &FlowError) -> String {
    let mut line = e.to_string();
    if let Some(ev) = &e.evidence {
        line.push_str(&format!(
            " (screen {}, pack {} r{})",
            ev.screen, ev.pack, ev.pack_revision
        ));
    }
    line.replace(['\n', '\r'], " ")
}

/// `--inputs`: inline JSON, `@FILE`, or the path of a `.json` file.
pub fn parse_inputs(arg: &str) -> Result<serde_json::Value, String> {
    let (text, origin) = if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --inputs {path}: {e}"))?;
        (text, path.to_string())
    } else if arg.trim_end().ends_with(".json") && !arg.trim_start().starts_with(['{', '[']) {
        let path = arg.trim();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --inputs {path}: {e}"))?;
        (text, path.to_string())
    } else {
        (arg.to_string(), "--inputs".to_string())
    };
    serde_json::from_str(&text).map_err(|e| format!("{origin} is not valid JSON: {e}"))
}

/// Milestones on stderr, one line each, as they happen: `step <name>`, `step <name> ok` (or
/// `failed`), `progress <json>`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrSink;

impl StderrSink {
    fn line(s: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{s}");
        let _ = err.flush();
    }
}

impl MilestoneSink for StderrSink {
    fn step_started(&self, step: &str) {
        Self::line(&format!("step {step}"));
    }

    fn step_finished(&self, step: &str, ok: bool) {
        Self::line(&format!("step {step} {}", if ok { "ok" } else { "failed" }));
    }

    fn progress(&self, progress: &serde_json::Value) {
        Self::line(&format!("progress {progress}"));
    }
}

/// Runs `capability` on `device` with `inputs` (for `post_video`, `video_path` may be a URL or
/// a file on this host).
pub async fn run_local<S: MilestoneSink + ?Sized>(
    device: PhoneDevice,
    packs: &PackSet,
    capability: &str,
    inputs: serde_json::Value,
    options: &LocalOptions,
    sink: &S,
    cancel: &CancellationToken,
) -> Result<serde_json::Value, LocalError> {
    flows::check_inputs(capability, &inputs).map_err(|e| LocalError::Flow(Box::new(e)))?;
    let video = if capability == "post_video" {
        // A URL goes through the SSRF guard with its defaults (public addresses only).
        let policy = crate::assets::SsrfPolicy::default();
        let v = super::run::video_inputs(sink, inputs.clone(), &policy, true)
            .await
            .map_err(|r| LocalError::Video {
                code: r.code,
                message: r.message,
            })?;
        Some(v)
    } else {
        None
    };
    let ui = Ui::new(device, options.ui.clone());
    let request = FlowRequest {
        capability,
        inputs,
        video,
        pinned_pack: None,
    };
    let flow_options = FlowOptions {
        seed: options.seed,
        speed: options.speed,
        ..FlowOptions::default()
    };
    let flow = run_flow(
        &ui,
        packs,
        &options.app,
        request,
        flow_options,
        sink,
        cancel,
    );
    match tokio::time::timeout(options.deadline, flow).await {
        Ok(r) => r.map_err(|e| LocalError::Flow(Box::new(e))),
        Err(_) => {
            let abort = flows::abort(&ui, &options.app);
            if tokio::time::timeout(Duration::from_secs(30), abort)
                .await
                .is_err()
            {
                tracing::warn!("abort timed out");
            }
            Err(LocalError::Deadline(options.deadline))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_come_inline_from_at_file_or_a_json_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, r#"{"keywords": ["a"]}"#).unwrap();
        let want = serde_json::json!({"keywords": ["a"]});
        assert_eq!(parse_inputs(r#"{"keywords": ["a"]}"#).unwrap(), want);
        assert_eq!(parse_inputs(&format!("@{}", path.display())).unwrap(), want);
        assert_eq!(parse_inputs(path.to_str().unwrap()).unwrap(), want);
        let err = parse_inputs("@/no/such/file").unwrap_err();
        assert!(err.contains("cannot read --inputs /no/such/file"), "{err}");
        let err = parse_inputs("{nope").unwrap_err();
        assert!(err.starts_with("--inputs is not valid JSON"), "{err}");
    }
}

//! The rig: a simulated phone, the flow runner over a TCP connection to it, and assertions on
//! what the phone recorded.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions};
use phonefarm_agent::runner::device::PhoneDevice;
use phonefarm_agent::runner::exec::{FlowRequest, run_flow};
use phonefarm_flows::flows::{FlowError, FlowOptions, Milestone, PostVideoInputs, RecordingSink};
use phonefarm_flows::{PackSet, Ui, UiConfig, UiStats};
use phonefarm_phonesim::model::{Action, Behaviour, PhoneConfig, ScreenKind};
use phonefarm_phonesim::{Sim, SimConfig, spawn};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const APP: &str = "com.zhiliaoapp.musically";
/// Real time per phone time.
pub const SCALE: f64 = 0.1;

pub fn key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate().expect("generate key"))
        .clone()
}

pub fn packs() -> PackSet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowpacks");
    PackSet::load_path(&dir).expect("flow packs")
}

/// The `realistic` profile.
pub fn realistic() -> PhoneConfig {
    PhoneConfig {
        behaviour: Behaviour::realistic(),
        fault_seed: 11,
        ..PhoneConfig::default()
    }
}

pub fn sim_config(model: PhoneConfig) -> SimConfig {
    let mut c = SimConfig::with_serial("SIMHOSTILE");
    c.model = model;
    c.time_scale = SCALE;
    c
}

pub async fn sim(model: PhoneConfig) -> Sim {
    spawn(sim_config(model)).await.expect("simulator")
}

/// UI timings scaled like the phone.
pub fn ui_config() -> UiConfig {
    UiConfig {
        poll_interval: Duration::from_millis(50),
        settle: Duration::from_millis(30),
        dump_backoff: Duration::from_millis(25),
        ..UiConfig::default()
    }
}

pub fn options() -> FlowOptions {
    FlowOptions {
        seed: 7,
        speed: 20.0,
        reconnect_timeout: Duration::from_secs(30),
        ..FlowOptions::default()
    }
}

/// How a run went.
pub struct Ran {
    pub result: Result<Value, FlowError>,
    pub stats: UiStats,
    pub compressed: bool,
    pub milestones: Vec<Milestone>,
    /// The phone's action log at the end.
    pub actions: Vec<Action>,
}

impl Ran {
    pub fn ok(&self) -> &Value {
        match &self.result {
            Ok(v) => v,
            Err(e) => panic!("the run failed: {e}"),
        }
    }

    pub fn err(&self) -> &FlowError {
        match &self.result {
            Ok(v) => panic!("the run succeeded: {v}"),
            Err(e) => e,
        }
    }

    /// Asserts the failure's code and that its evidence (dump, screenshot, pack and revision)
    /// is there.
    pub fn failed_with(&self, code: &str) -> &FlowError {
        let e = self.err();
        assert_eq!(e.code(), code, "{e}");
        let ev = e
            .evidence
            .as_ref()
            .unwrap_or_else(|| panic!("no evidence: {e}"));
        assert!(
            ev.dump.as_ref().is_some_and(|d| d.starts_with(b"<?xml")),
            "no dump in the evidence"
        );
        assert!(
            ev.screenshot
                .as_ref()
                .is_some_and(|s| s.starts_with(b"\x89PNG")),
            "no screenshot in the evidence"
        );
        assert!(ev.pack.starts_with("tiktok-3"), "{}", ev.pack);
        assert_eq!(ev.pack_revision, 1);
        e
    }

    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|a| f(a)).count()
    }

    /// Steps started, in order.
    pub fn steps(&self) -> Vec<String> {
        self.milestones
            .iter()
            .filter_map(|m| match m {
                Milestone::StepStarted(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// Asserts nothing was done on the phone (no input, no launch) once a dump had shown
    /// `screen`.
    pub fn nothing_done_after(&self, screen: ScreenKind) {
        let at = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::UiDumped { screen: s } if *s == screen))
            .unwrap_or_else(|| panic!("no dump showed {screen:?}"));
        let after: Vec<&Action> = self.actions[at..].iter().filter(|a| is_input(a)).collect();
        assert!(after.is_empty(), "done after {screen:?}: {after:?}");
    }
}

/// An action a person's hands (or the agent's commands) did on the phone.
pub fn is_input(a: &Action) -> bool {
    matches!(
        a,
        Action::Tap { .. }
            | Action::Swipe { .. }
            | Action::Key { .. }
            | Action::TextTyped { .. }
            | Action::AppLaunched { .. }
            | Action::AppForceStopped
    )
}

pub async fn connect(sim: &Sim) -> PhoneDevice {
    let opts = PhoneOptions::new(KeyRing::new(vec![key()]));
    let addr = sim.address();
    let h = PhoneHandle::connect_tcp(&addr, opts.clone())
        .await
        .expect("connect");
    h.wait_online(Instant::now() + Duration::from_secs(30))
        .await
        .expect("online");
    PhoneDevice::tcp(h, &addr, opts)
}

pub async fn run(sim: &Sim, capability: &str, inputs: Value) -> Ran {
    run_with(sim, capability, inputs, None, options()).await
}

pub async fn post(sim: &Sim, video: PostVideoInputs) -> Ran {
    run_with(sim, "post_video", json!({}), Some(video), options()).await
}

/// Runs a capability as a work order would, bounded (a hang fails the test).
pub async fn run_with(
    sim: &Sim,
    capability: &str,
    inputs: Value,
    video: Option<PostVideoInputs>,
    options: FlowOptions,
) -> Ran {
    let ui = Ui::new(connect(sim).await, ui_config());
    let sink = RecordingSink::default();
    let cancel = CancellationToken::new();
    let request = FlowRequest {
        capability,
        inputs,
        video,
        pinned_pack: None,
    };
    let set = packs();
    let flow = run_flow(&ui, &set, APP, request, options, &sink, &cancel);
    let result = tokio::time::timeout(Duration::from_secs(180), flow)
        .await
        .expect("the run hung");
    let actions = sim.phone.lock().unwrap().actions().to_vec();
    Ran {
        result,
        stats: ui.stats(),
        compressed: ui.compressed(),
        milestones: sink.milestones(),
        actions,
    }
}

/// One keyword, two videos, every one liked.
pub fn keyword_inputs() -> Value {
    json!({"keywords": ["cooking"], "videos_per_keyword": 2,
           "watch_seconds": {"min": 1, "max": 2}, "like_probability": 1.0})
}

pub fn keyword_done() -> Value {
    json!({"keywords": {"cooking": {"videos_watched": 2, "liked": 2, "commented": false}}})
}

pub fn fyp_inputs() -> Value {
    json!({"duration_seconds": 60, "watch_seconds": {"min": 2, "max": 4},
           "judge_prompt": "cooking recipes and food", "like_probability": 1.0})
}

pub fn maintenance_inputs() -> Value {
    json!({"steps": [{"action": "edit_profile",
                      "params": {"display_name": "Hostile Tester", "bio": "sim phone"}}]})
}

/// A minimal MP4 declaring `ms` of duration (`moov/mvhd`).
pub fn mp4(ms: u32) -> Vec<u8> {
    let boxed = |kind: &[u8], body: &[u8]| {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    };
    let mut mvhd = vec![0u8; 20];
    mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
    mvhd[16..20].copy_from_slice(&ms.to_be_bytes());
    let mut file = boxed(b"ftyp", b"isom\0\0\0\0");
    file.extend(boxed(b"moov", &boxed(b"mvhd", &mvhd)));
    file
}

pub fn video(content: &str) -> PostVideoInputs {
    PostVideoInputs {
        file_name: format!("{content}.mp4"),
        video: mp4(21_300),
        caption: "Dinner in ten minutes".into(),
        hashtags: vec!["cooking".into()],
        marker: Some(format!("pf-{content}")),
    }
}

/// The captions of the posts the phone holds (newest first).
pub fn posts(sim: &Sim) -> Vec<String> {
    sim.phone
        .lock()
        .unwrap()
        .posts()
        .iter()
        .map(|p| p.caption.clone())
        .collect()
}

//! On real phones the dump is the cost of a step, so count it. Against a simulated phone with
//! the `realistic` profile at real speed (dumps of 0.9-3.2 s, taps of a quarter second, the
//! idle-state error on a playing video), through the agent's real path (the flow runner over
//! ADB over TCP), for each capability: dumps per UI action and `input` commands per UI action,
//! beside the same run on an `ideal` phone (the baseline, measured in this run); then a
//! keyword_warmup's wall time beside the sum of its dwell times and its unavoidable dumps (one
//! per UI action, at the mean dump time this run measured). Targets: at most 1.3 dumps per UI
//! action, and a wall time at most 1.3x that sum.
//!
//! `cargo run --release -p phonefarm-agent --example hostile_bench [time-scale]` (default 1:
//! real phone speed; the figures' shape holds at any scale, the wall times scale with it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions};
use phonefarm_agent::runner::device::PhoneDevice;
use phonefarm_agent::runner::exec::{FlowRequest, run_flow};
use phonefarm_flows::flows::{FlowOptions, NoopSink, PostVideoInputs};
use phonefarm_flows::{PackSet, Ui, UiConfig, UiStats};
use phonefarm_phonesim::model::{Behaviour, PhoneConfig};
use phonefarm_phonesim::{SimConfig, spawn};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const APP: &str = "com.zhiliaoapp.musically";

fn mp4(ms: u32) -> Vec<u8> {
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

struct Measured {
    stats: UiStats,
    wall: Duration,
}

async fn measure(
    behaviour: Behaviour,
    scale: f64,
    capability: &str,
    speed: f64,
    key: &AdbKey,
) -> anyhow::Result<Measured> {
    let mut config = SimConfig::with_serial("SIMBENCH");
    config.model = PhoneConfig {
        behaviour,
        fault_seed: 5,
        ..PhoneConfig::default()
    };
    config.time_scale = scale;
    let sim = spawn(config).await?;
    let opts = PhoneOptions::new(KeyRing::new(vec![key.clone()]));
    let h = PhoneHandle::connect_tcp(&sim.address(), opts.clone()).await?;
    h.wait_online(tokio::time::Instant::now() + Duration::from_secs(30))
        .await?;
    let ui = Ui::new(
        PhoneDevice::tcp(h, &sim.address(), opts),
        UiConfig {
            poll_interval: Duration::from_secs_f64(0.5 * scale),
            settle: Duration::from_secs_f64(0.3 * scale),
            dump_backoff: Duration::from_secs_f64(0.25 * scale),
            ..UiConfig::default()
        },
    );
    let packs =
        PackSet::load_path(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowpacks"))?;
    let (inputs, video) = match capability {
        "keyword_warmup" => (
            json!({"keywords": ["cooking", "home workout"], "videos_per_keyword": 3,
                   "watch_seconds": {"min": 8, "max": 25}, "like_probability": 0.5,
                   "comment_plan": {"cooking": {"text": "Looks great"},
                                    "home workout": {"text": "Saving this"}}}),
            None,
        ),
        "fyp_warmup" => (
            json!({"duration_seconds": 90, "watch_seconds": {"min": 4, "max": 12},
                   "judge_prompt": "cooking and food", "like_probability": 0.5}),
            None,
        ),
        "maintenance" => (
            json!({"steps": [{"action": "edit_profile",
                "params": {"display_name": "Bench User", "username": "bench.user", "bio": "benchmarks"}}]}),
            None,
        ),
        _ => (
            json!({}),
            Some(PostVideoInputs {
                file_name: "bench.mp4".into(),
                video: mp4(17_000),
                caption: "Bench clip".into(),
                hashtags: vec!["bench".into()],
                marker: Some("pf-bench".into()),
            }),
        ),
    };
    let request = FlowRequest {
        capability,
        inputs,
        video,
        pinned_pack: None,
    };
    let options = FlowOptions {
        seed: 3,
        speed,
        ..FlowOptions::default()
    };
    let cancel = CancellationToken::new();
    let start = Instant::now();
    run_flow(&ui, &packs, APP, request, options, &NoopSink, &cancel)
        .await
        .map_err(|e| anyhow::anyhow!("{capability}: {e}"))?;
    Ok(Measured {
        stats: ui.stats(),
        wall: start.elapsed(),
    })
}

fn per(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1.0);
    let key = AdbKey::generate()?;
    println!(
        "realistic phone at time scale {scale} (1 = real phone speed); baseline: an ideal phone"
    );
    println!(
        "{:<16} {:>8} {:>7} {:>8} {:>14} {:>14} {:>16} {:>16}",
        "capability",
        "actions",
        "dumps",
        "inputs",
        "dumps/action",
        "inputs/action",
        "ideal dumps/act",
        "ideal inputs/act"
    );
    let mut total = (0u64, 0u64);
    for capability in ["keyword_warmup", "fyp_warmup", "maintenance", "post_video"] {
        // Dwells shortened (the counts do not depend on them), except fyp_warmup's: its dwells
        // fill its time budget, so shorter ones would leave too few videos to count.
        let speed = if capability == "fyp_warmup" {
            2.0
        } else {
            50.0
        };
        let ideal = measure(Behaviour::ideal(), 1.0, capability, speed * 20.0, &key).await?;
        let real = measure(Behaviour::realistic(), scale, capability, speed, &key).await?;
        let (r, i) = (real.stats, ideal.stats);
        total.0 += r.dumps;
        total.1 += r.actions;
        println!(
            "{capability:<16} {:>8} {:>7} {:>8} {:>14.2} {:>14.2} {:>16.2} {:>16.2}",
            r.actions,
            r.dumps,
            r.inputs,
            per(r.dumps, r.actions),
            per(r.inputs, r.actions),
            per(i.dumps, i.actions),
            per(i.inputs, i.actions),
        );
    }
    println!(
        "all capabilities: {:.2} dumps per UI action (target <= 1.30)",
        per(total.0, total.1)
    );

    // keyword_warmup with its dwells at real length.
    let run = measure(Behaviour::realistic(), scale, "keyword_warmup", 1.0, &key).await?;
    let s = run.stats;
    let unavoidable = s.mean_dump() * u32::try_from(s.actions).unwrap_or(u32::MAX);
    let floor = s.dwell + unavoidable;
    println!(
        "keyword_warmup: wall {:.1} s; dwells {:.1} s + unavoidable dumps {} x {:.2} s = {:.1} s; \
         wall / that = {:.2}x (target <= 1.30x); {} dumps ({} failed), {} actions, {} inputs",
        run.wall.as_secs_f64(),
        s.dwell.as_secs_f64(),
        s.actions,
        s.mean_dump().as_secs_f64(),
        floor.as_secs_f64(),
        run.wall.as_secs_f64() / floor.as_secs_f64().max(1e-9),
        s.dumps,
        s.failed_dumps,
        s.actions,
        s.inputs,
    );
    Ok(())
}

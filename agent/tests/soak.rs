//! Soak: runs of the four capabilities on 8 simulated phones with the `realistic` profile, each
//! run meeting one random fault (or none) at a random moment, through the agent's real path
//! (the flow runner over ADB to the simulator over TCP). Every run must end with the outcome
//! the fault it met calls for (a fault that never fired calls for a completed run), with no
//! post made twice and no run past its deadline. Prints a table of fault × outcome counts.
//!
//! Seeded: `PF_SOAK_SEED` (random when unset; printed, and a failing seed reproduces the same
//! plan). CI runs a short version (`PF_SOAK_RUNS`, default 24, at `PF_SOAK_SCALE` 0.05 of real
//! time). The long one, 200 runs at real phone speed:
//!
//!     PF_SOAK_RUNS=200 PF_SOAK_SCALE=1 cargo test --release -p phonefarm-agent --test soak -- --nocapture

#[path = "faults/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phonefarm_agent::runner::local::{LocalError, LocalOptions, run_local};
use phonefarm_flows::UiConfig;
use phonefarm_flows::flows::RecordingSink;
use phonefarm_phonesim::model::{
    AccountState, Action, Behaviour, Fault, FaultTrigger, Permission, PhoneConfig, ScreenSize,
};
use phonefarm_phonesim::{AuthMode, KeyOffer, Sim, SimConfig, spawn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PHONES: usize = 8;
const CAPABILITIES: [&str; 4] = ["keyword_warmup", "fyp_warmup", "maintenance", "post_video"];

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fault to meet, and how it is set up.
#[derive(Debug, Clone)]
enum Planned {
    None,
    Inject(Fault, FaultTrigger),
    /// Knobs set on the phone before the run (battery, heat, storage, review).
    Knob(&'static str),
}

impl Planned {
    fn name(&self) -> String {
        match self {
            Planned::None => "none".into(),
            Planned::Knob(k) => (*k).into(),
            Planned::Inject(f, _) => match f {
                Fault::Account { state } => format!("account:{state:?}"),
                Fault::Permission { permission } => format!("permission:{permission:?}"),
                Fault::NotResponding { returns } => format!("not_responding:{returns}"),
                other => {
                    let s = format!("{other:?}");
                    s.split([' ', '{']).next().unwrap_or(&s).to_string()
                }
            },
        }
    }
}

fn plan_fault(rng: &mut StdRng, capability: &str) -> Planned {
    let trigger = if rng.random_bool(0.5) {
        FaultTrigger::AfterInputs(rng.random_range(1..=8))
    } else {
        FaultTrigger::AfterDumps(rng.random_range(1..=8))
    };
    let account = [
        AccountState::LoggedOut,
        AccountState::SessionExpired,
        AccountState::Banned,
        AccountState::Suspended,
        AccountState::Captcha,
        AccountState::VerificationRequired,
        AccountState::RateLimited,
    ];
    match rng.random_range(0..20) {
        0 => Planned::None,
        1 => Planned::Inject(Fault::NotResponding { returns: 0 }, trigger),
        2 => Planned::Inject(Fault::NotResponding { returns: 1 }, trigger),
        3 => Planned::Inject(Fault::KeepsStopping, trigger),
        4 => Planned::Inject(Fault::AppDied, trigger),
        5 => Planned::Inject(Fault::ScreenOff, trigger),
        6 => Planned::Inject(Fault::LowBattery, trigger),
        7 => Planned::Inject(
            Fault::Permission {
                permission: Permission::Contacts,
            },
            trigger,
        ),
        8 => Planned::Inject(Fault::Reboot, trigger),
        9 => Planned::Inject(Fault::AdbOffline { ms: 8_000 }, trigger),
        10 => Planned::Inject(Fault::RevokeHostKeys, trigger),
        11 => Planned::Inject(Fault::LoseTaps { n: 2 }, trigger),
        12 | 13 => {
            let state = account[rng.random_range(0..account.len())];
            Planned::Inject(Fault::Account { state }, trigger)
        }
        14 => Planned::Knob("battery_low"),
        15 => Planned::Knob("too_hot"),
        16 if capability == "post_video" => Planned::Knob("storage_full"),
        17 if capability == "post_video" => Planned::Knob("under_review"),
        18 if capability == "post_video" => Planned::Inject(
            Fault::KeepsStopping,
            FaultTrigger::DuringUpload {
                committed: rng.random_bool(0.5),
            },
        ),
        19 if capability == "post_video" => Planned::Inject(
            Fault::Reboot,
            FaultTrigger::DuringUpload {
                committed: rng.random_bool(0.5),
            },
        ),
        _ => Planned::None,
    }
}

/// The outcome a run must end with, given what it met.
fn expected(planned: &Planned, fired: bool) -> String {
    match planned {
        Planned::Knob("battery_low" | "too_hot" | "storage_full") => "device_error".into(),
        Planned::Knob("under_review") => "account_outcome:under_review".into(),
        Planned::Inject(Fault::Account { state }, _) if fired => {
            let s = match state {
                AccountState::LoggedOut => "logged_out",
                AccountState::SessionExpired => "session_expired",
                AccountState::Banned => "banned",
                AccountState::Suspended => "suspended",
                AccountState::Captcha => "captcha",
                AccountState::VerificationRequired => "verification_required",
                AccountState::RateLimited => "rate_limited",
                AccountState::Active => "completed",
            };
            format!("account_outcome:{s}")
        }
        _ => "completed".into(),
    }
}

fn inputs(capability: &str, run: usize) -> serde_json::Value {
    match capability {
        "keyword_warmup" => json!({"keywords": ["cooking"], "videos_per_keyword": 2,
            "watch_seconds": {"min": 1, "max": 3}, "like_probability": 0.5}),
        "fyp_warmup" => json!({"duration_seconds": 60, "watch_seconds": {"min": 2, "max": 5},
            "judge_prompt": "cooking and food", "like_probability": 0.5}),
        "maintenance" => json!({"steps": [{"action": "edit_profile",
            "params": {"display_name": format!("Soak {run}"), "bio": format!("run {run}")}}]}),
        _ => {
            json!({"content_id": format!("soak-{run}"), "video_path": "", "caption": format!("Soak clip {run}"),
            "hashtags": ["soak"]})
        }
    }
}

#[derive(Default)]
struct Tally {
    /// (fault, outcome) -> runs
    table: BTreeMap<(String, String), u32>,
    wrong: Vec<String>,
    double_posts: u32,
    past_deadline: u32,
    runs: u32,
}

async fn phone(i: usize, seed: u64, scale: f64) -> Sim {
    let mut c = SimConfig::with_serial(&format!("SOAK{i:02}"));
    c.model = PhoneConfig {
        behaviour: Behaviour::realistic(),
        fault_seed: seed.wrapping_add(i as u64),
        boot_delay_polls: 1,
        screen: [ScreenSize::HD, ScreenSize::FHD_PLUS, ScreenSize::QHD_PLUS][i % 3],
        ..PhoneConfig::default()
    };
    c.time_scale = scale;
    // A revoked key is allowed again by the phone's user a moment later.
    c.auth = AuthMode::Required {
        known_keys: vec![common::key().public_key_line()],
        on_offer: KeyOffer::AcceptAfter(Duration::from_millis(500)),
    };
    spawn(c).await.expect("simulator")
}

/// Puts a phone back to health between runs (a person charging it, freeing space, ...).
fn restore(sim: &Sim, planned: &Planned) {
    let mut p = sim.phone.lock().unwrap();
    let c = p.config_mut();
    c.account = AccountState::Active;
    c.battery_level = 85;
    c.battery_temperature = 300;
    c.storage_free = 40 * 1024 * 1024 * 1024;
    c.review_posts = false;
    c.media_permission = true;
    drop(p);
    let mut p = sim.phone.lock().unwrap();
    match planned {
        Planned::Knob("battery_low") => p.config_mut().battery_level = 9,
        Planned::Knob("too_hot") => p.config_mut().battery_temperature = 461,
        Planned::Knob("storage_full") => p.config_mut().storage_free = 1000,
        Planned::Knob("under_review") => p.config_mut().review_posts = true,
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_realistic_phones_with_random_faults() {
    let runs: usize = env("PF_SOAK_RUNS", 24);
    let scale: f64 = env("PF_SOAK_SCALE", 0.05);
    let seed: u64 = env("PF_SOAK_SEED", rand::random::<u64>() % 1_000_000);
    println!("soak: {runs} runs on {PHONES} phones, time scale {scale}, PF_SOAK_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let plan: Vec<(usize, &str, Planned)> = (0..runs)
        .map(|i| {
            let capability = CAPABILITIES[rng.random_range(0..CAPABILITIES.len())];
            (i, capability, plan_fault(&mut rng, capability))
        })
        .collect();
    let video_dir = tempfile::tempdir().unwrap();
    let video = video_dir.path().join("clip.mp4");
    std::fs::write(&video, common::mp4(18_200)).unwrap();
    let video = video.to_str().unwrap().to_string();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for p in 0..PHONES {
        let mine: Vec<_> = plan
            .iter()
            .filter(|(i, _, _)| i % PHONES == p)
            .cloned()
            .collect();
        let tally = tally.clone();
        let video = video.clone();
        tasks.push(tokio::spawn(async move {
            let sim = phone(p, seed, scale).await;
            let set = common::packs();
            for (i, capability, planned) in mine {
                restore(&sim, &planned);
                if let Planned::Inject(f, t) = &planned {
                    sim.phone.lock().unwrap().inject_fault(f.clone(), *t);
                }
                let log_start = sim.phone.lock().unwrap().actions().len();
                let mut inputs = inputs(capability, i);
                if capability == "post_video" {
                    inputs["video_path"] = json!(video);
                }
                let options = LocalOptions {
                    app: common::APP.into(),
                    seed: seed.wrapping_add(i as u64),
                    speed: 20.0,
                    deadline: Duration::from_secs_f64((600.0 * scale).max(60.0)),
                    ui: UiConfig {
                        poll_interval: Duration::from_secs_f64(0.5 * scale),
                        settle: Duration::from_secs_f64(0.3 * scale),
                        dump_backoff: Duration::from_secs_f64(0.25 * scale),
                        ..UiConfig::default()
                    },
                };
                let sink = RecordingSink::default();
                let cancel = CancellationToken::new();
                let device = common::connect(&sim).await;
                let r = run_local(device, &set, capability, inputs, &options, &sink, &cancel).await;
                let actions = sim.phone.lock().unwrap().actions()[log_start..].to_vec();
                // A fault that never fired must not leak into the next run.
                sim.phone.lock().unwrap().clear_pending_faults();
                let fired = actions.iter().any(|a| matches!(a, Action::FaultFired { .. }));
                let outcome = match &r {
                    Ok(_) => "completed".to_string(),
                    Err(e) => e.code(),
                };
                let want = expected(&planned, fired);
                let mut t = tally.lock().unwrap();
                t.runs += 1;
                if matches!(r, Err(LocalError::Deadline(_))) {
                    t.past_deadline += 1;
                }
                let marker = format!("pf-soak-{i}");
                let posted = sim
                    .phone
                    .lock()
                    .unwrap()
                    .posts()
                    .iter()
                    .filter(|p| p.caption.contains(&marker))
                    .count();
                if posted > 1 {
                    t.double_posts += 1;
                }
                let name = planned.name();
                if outcome != want {
                    // The phone's last actions say what it did with the run's last inputs.
                    let tail: Vec<String> = actions
                        .iter()
                        .rev()
                        .take(40)
                        .rev()
                        .map(|a| format!("{a:?}"))
                        .collect();
                    t.wrong.push(format!(
                        "run {i} on phone {p}: {capability} with {name} (fired: {fired}) ended {outcome}, want {want}: {}\n  the phone's last actions:\n    {}",
                        match &r {
                            Err(e) => e.to_string(),
                            Ok(v) => v.to_string(),
                        },
                        tail.join("\n    ")
                    ));
                }
                if capability == "post_video" && outcome == "completed" && posted != 1 {
                    t.wrong.push(format!("run {i}: completed with {posted} posts"));
                }
                let label = if fired || matches!(planned, Planned::Knob(_) | Planned::None) {
                    name
                } else {
                    format!("{name} (not met)")
                };
                *t.table.entry((label, outcome)).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a phone's runs panicked");
    }
    let t = tally.lock().unwrap();
    println!("\n{:<40} {:<40} {:>5}", "FAULT", "OUTCOME", "RUNS");
    for ((fault, outcome), n) in &t.table {
        println!("{fault:<40} {outcome:<40} {n:>5}");
    }
    println!(
        "\n{} runs, {} wrong, {} double posts, {} past their deadline (PF_SOAK_SEED={seed})",
        t.runs,
        t.wrong.len(),
        t.double_posts,
        t.past_deadline
    );
    assert_eq!(t.runs as usize, runs);
    assert!(t.wrong.is_empty(), "PF_SOAK_SEED={seed}: {:#?}", t.wrong);
    assert_eq!(t.double_posts, 0, "PF_SOAK_SEED={seed}");
    assert_eq!(t.past_deadline, 0, "PF_SOAK_SEED={seed}");
}

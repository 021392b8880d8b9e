//! The device: battery, temperature, storage, adb going away, the host key revoked, and the
//! three screen sizes.

use std::time::Duration;

use phonefarm_flows::flows::{FlowFailure, HealthProblem};
use phonefarm_phonesim::model::{Action, Fault, FaultTrigger, PhoneConfig, ScreenSize};
use phonefarm_phonesim::{AuthMode, KeyOffer, spawn};
use serde_json::json;

use crate::common::*;

fn health(ran: &Ran) -> HealthProblem {
    match &ran.err().failure {
        FlowFailure::Health { problem, .. } => *problem,
        other => panic!("not a health failure: {other:?}"),
    }
}

/// Below 15 % battery or above 42 °C a phone is not given the run: `device_error` before
/// anything is done on it (the agent then flags it, see the fleet's tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_battery_or_hot_phone_is_refused_before_it_starts() {
    for (config, problem) in [
        (
            PhoneConfig {
                battery_level: 12,
                charging: false,
                ..realistic()
            },
            HealthProblem::BatteryLow,
        ),
        (
            PhoneConfig {
                battery_temperature: 455,
                ..realistic()
            },
            HealthProblem::TooHot,
        ),
    ] {
        let sim = sim(config).await;
        let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
        assert_eq!(ran.err().code(), "device_error", "{}", ran.err());
        assert_eq!(health(&ran), problem);
        assert_eq!(ran.stats.actions, 0, "nothing done on the phone");
        assert_eq!(ran.count(is_input), 0);
        assert_eq!(ran.stats.dumps, 0);
    }
}

/// A push into a full phone fails with no space: `device_error` (storage full), nothing posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_full_is_a_device_error() {
    // Room for the dumps, not for a 2 MB video.
    let sim = sim(PhoneConfig {
        storage_free: 256 * 1024,
        ..realistic()
    })
    .await;
    let mut v = video("full-1");
    v.video.extend(std::iter::repeat_n(0u8, 2 * 1024 * 1024));
    let ran = post(&sim, v).await;
    let e = ran.failed_with("device_error");
    assert_eq!(health(&ran), HealthProblem::StorageFull);
    assert!(e.message.contains("No space left on device"), "{e}");
    assert!(posts(&sim).is_empty());
    assert_eq!(e.step.as_deref(), Some("push_media"));
}

/// adb drops every connection and answers nothing for a few seconds: reconnect, resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_offline_for_a_few_seconds_is_waited_out() {
    let sim = sim(realistic()).await;
    sim.phone.lock().unwrap().inject_fault(
        Fault::AdbOffline { ms: 20_000 },
        FaultTrigger::AfterInputs(4),
    );
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(ran.count(|a| matches!(a, Action::FaultFired { .. })), 1);
    assert_eq!(ran.count(|a| matches!(a, Action::Unliked { .. })), 0);
}

/// The phone forgets this host: the next connection shows "Allow USB debugging?". Allowed a
/// while later, the run goes on; never allowed, it ends with `device_error` (not a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_host_key_is_waited_for_or_reported() {
    for (answer, completes) in [
        (KeyOffer::AcceptAfter(Duration::from_secs(2)), true),
        (KeyOffer::Refuse, false),
    ] {
        let mut config = sim_config(realistic());
        config.auth = AuthMode::Required {
            known_keys: vec![key().public_key_line()],
            on_offer: answer.clone(),
        };
        let sim = spawn(config).await.unwrap();
        sim.phone
            .lock()
            .unwrap()
            .inject_fault(Fault::RevokeHostKeys, FaultTrigger::AfterInputs(4));
        let mut opts = options();
        opts.reconnect_timeout = Duration::from_secs(6);
        let ran = run_with(&sim, "keyword_warmup", keyword_inputs(), None, opts).await;
        if completes {
            assert_eq!(ran.ok(), &keyword_done(), "{answer:?}");
        } else {
            let e = ran.err();
            assert_eq!(e.code(), "device_error", "{e}");
            assert!(e.message.contains("Allow USB debugging"), "{e}");
        }
    }
}

/// Taps and swipes come from the bounds in the dump: every capability works on 720x1280,
/// 1080x2400 and 1440x3200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capability_works_on_all_three_screen_sizes() {
    for screen in [ScreenSize::HD, ScreenSize::FHD_PLUS, ScreenSize::QHD_PLUS] {
        let sim = sim(PhoneConfig {
            screen,
            ..realistic()
        })
        .await;
        let size = format!("{}x{}", screen.width, screen.height);
        let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
        assert_eq!(ran.ok(), &keyword_done(), "{size}");
        let ran = run(&sim, "fyp_warmup", fyp_inputs()).await;
        assert!(ran.ok()["videos_watched"].as_u64().unwrap() >= 2, "{size}");
        let ran = run(&sim, "maintenance", maintenance_inputs()).await;
        assert_eq!(
            ran.ok()["profile"]["display_name"],
            "Hostile Tester",
            "{size}"
        );
        let ran = post(&sim, video(&format!("size-{}", screen.width))).await;
        assert_eq!(ran.ok()["posted"], true, "{size}");
        let taps_on_nothing = ran.count(|a| matches!(a, Action::Tap { node: None, .. }));
        assert_eq!(taps_on_nothing, 0, "{size}: every tap hit its view");
    }
}

/// Text `input text` cannot type (stock Android is ASCII-only) is refused up front with
/// `invalid_input`: nothing is typed, nothing mistyped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_inputs_are_refused_up_front() {
    let sim = sim(realistic()).await;
    for inputs in [
        json!({"keywords": ["receta fácil"]}),
        json!({"keywords": ["料理"]}),
        json!({"keywords": ["cooking"], "comment_plan": {"cooking": {"text": "¡Qué rico!"}}}),
    ] {
        let ran = run(&sim, "keyword_warmup", inputs.clone()).await;
        let e = ran.err();
        assert!(e.code().starts_with("invalid_input:"), "{inputs}: {e}");
        assert!(e.evidence.is_none());
    }
    let ran = run(
        &sim,
        "maintenance",
        json!({"steps": [{"action": "edit_profile", "params": {"display_name": "José"}}]}),
    )
    .await;
    assert_eq!(ran.err().code(), "invalid_input:display_name_not_typeable");
    let mut v = video("nonascii");
    v.caption = "Cena rápida".into();
    let ran = post(&sim, v).await;
    assert_eq!(ran.err().code(), "invalid_input:caption_not_typeable");
    let actions = sim.phone.lock().unwrap().actions().to_vec();
    assert!(!actions.iter().any(is_input), "{actions:?}");
}

/// A phone that stops answering mid-run (every connection hangs after a few dumps): the run
/// ends, by its deadline at the latest; no step waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_phone_ends_the_run_by_its_deadline() {
    use phonefarm_agent::runner::local::{LocalError, LocalOptions, run_local};
    let mut config = sim_config(realistic());
    config.faults.stall_after_bytes = Some(20_000);
    let sim = spawn(config).await.unwrap();
    let options = LocalOptions {
        app: APP.into(),
        seed: 1,
        speed: 20.0,
        deadline: Duration::from_secs(20),
        ui: phonefarm_flows::UiConfig {
            command_timeout: Duration::from_secs(2),
            ..ui_config()
        },
    };
    let sink = phonefarm_flows::flows::RecordingSink::default();
    let cancel = tokio_util::sync::CancellationToken::new();
    let set = packs();
    let run = run_local(
        connect(&sim).await,
        &set,
        "keyword_warmup",
        keyword_inputs(),
        &options,
        &sink,
        &cancel,
    );
    let r = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("a stalled phone must not hang the run");
    match r {
        Err(e @ LocalError::Deadline(_)) => assert_eq!(e.code(), "deadline_exceeded"),
        Err(e) => assert_eq!(e.code(), "device_error", "{e}"),
        Ok(v) => panic!("a phone that hangs every connection completed a run: {v}"),
    }
}

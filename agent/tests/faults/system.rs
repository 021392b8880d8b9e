//! The system: "isn't responding", "keeps stopping", the app dying, the lock screen, the low
//! battery dialog, permission prompts, a reboot mid-run, and interrupted uploads.

use phonefarm_phonesim::model::{Action, Fault, FaultTrigger, Permission, ScreenKind};

use crate::common::*;

fn answered(ran: &Ran, dialog: &str, button: &str) -> usize {
    ran.count(|a| {
        matches!(a, Action::SystemAnswered { dialog: d, button: b } if d == dialog && b == button)
    })
}

/// "TikTok isn't responding" once: Wait, and the run goes on as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_responding_once_is_waited_for() {
    let sim = sim(realistic()).await;
    sim.phone.lock().unwrap().inject_fault(
        Fault::NotResponding { returns: 0 },
        FaultTrigger::AfterInputs(3),
    );
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(answered(&ran, "not_responding", "wait"), 1);
    assert_eq!(answered(&ran, "not_responding", "close_app"), 0);
    assert_eq!(ran.count(|a| matches!(a, Action::AppDied)), 0);
}

/// It comes back after Wait: Close app, relaunch, and resume at the step it hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_responding_twice_closes_and_relaunches() {
    let sim = sim(realistic()).await;
    sim.phone.lock().unwrap().inject_fault(
        Fault::NotResponding { returns: 1 },
        FaultTrigger::AfterInputs(4),
    );
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(answered(&ran, "not_responding", "wait"), 1);
    assert_eq!(answered(&ran, "not_responding", "close_app"), 1);
    assert_eq!(
        ran.count(|a| matches!(a, Action::AppLaunched { cold: true })),
        2
    );
    assert_eq!(ran.count(|a| matches!(a, Action::Liked { .. })), 2);
}

/// "TikTok keeps stopping" mid-watch: Close app, relaunch, search again and finish the
/// videos still to watch; the counts are right and nothing is liked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_stopping_is_closed_and_the_run_resumes() {
    let sim = sim(realistic()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::KeepsStopping, FaultTrigger::AfterInputs(7));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(answered(&ran, "keeps_stopping", "close_app"), 1);
    assert_eq!(ran.count(|a| matches!(a, Action::AppDied)), 1);
    assert_eq!(ran.count(|a| matches!(a, Action::Unliked { .. })), 0);
    let searched = ran.count(|a| matches!(a, Action::Searched { .. }));
    assert_eq!(searched, 2, "searched again after the relaunch");
}

/// The app's process dies without a word: the launcher shows; relaunch and resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_dying_mid_flow_is_relaunched_and_resumed() {
    let sim = sim(realistic()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::AppDied, FaultTrigger::AfterInputs(5));
    let ran = run(&sim, "maintenance", maintenance_inputs()).await;
    assert_eq!(ran.ok()["profile"]["bio"], "sim phone");
    assert_eq!(ran.count(|a| matches!(a, Action::AppDied)), 1);
    assert_eq!(
        ran.count(|a| matches!(a, Action::AppLaunched { cold: true })),
        2
    );
    assert!(
        ran.steps()
            .iter()
            .filter(|s| *s == "edit_profile:1")
            .count()
            == 1
    );
    let p = sim.phone.lock().unwrap().profile().clone();
    assert_eq!(p.display_name, "Hostile Tester");
}

/// The screen times out during a long watch and locks: wake it, swipe the keyguard away (no
/// PIN), carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_off_and_keyguard_are_woken_and_swiped_away() {
    let mut config = realistic();
    config.behaviour.screen_timeout_ms = Some(8_000);
    let sim = sim(config).await;
    let mut inputs = keyword_inputs();
    // 25-30 s watches at speed 20 are 1.25-1.5 s of real time, 12.5-15 s of the phone's
    // (time scale 0.1): longer than its screen timeout.
    inputs["watch_seconds"] = serde_json::json!({"min": 25, "max": 30});
    let ran = run(&sim, "keyword_warmup", inputs).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert!(ran.count(|a| matches!(a, Action::ScreenTurnedOff)) >= 1);
    assert!(
        ran.count(|a| matches!(a, Action::Key { code: 224 })) >= 1,
        "woken"
    );
    assert_eq!(
        ran.count(|a| matches!(a, Action::Unlocked)),
        ran.count(|a| matches!(a, Action::ScreenTurnedOff)),
        "unlocked after every lock"
    );
}

/// "Battery is low": Cancel (Battery Saver is never turned on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_low_battery_dialog_is_dismissed() {
    let sim = sim(realistic()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LowBattery, FaultTrigger::AfterDumps(3));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(answered(&ran, "low_battery", "cancel"), 1);
    assert_eq!(answered(&ran, "low_battery", "turn_on"), 0);
}

/// A prompt for a permission the flow does not need is refused; the one it needs (photos and
/// videos, to post) is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_permission_the_flow_needs_is_granted() {
    let sim = sim(realistic()).await;
    sim.phone.lock().unwrap().inject_fault(
        Fault::Permission {
            permission: Permission::Contacts,
        },
        FaultTrigger::AfterDumps(2),
    );
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    let granted = |ran: &Ran, p: Permission, g: bool| {
        ran.count(|a| matches!(a, Action::PermissionAnswered { permission, granted } if *permission == p && *granted == g))
    };
    assert_eq!(granted(&ran, Permission::Contacts, false), 1);
    assert_eq!(granted(&ran, Permission::Contacts, true), 0);

    let mut config = realistic();
    config.media_permission = false;
    let sim = crate::common::sim(config).await;
    sim.phone.lock().unwrap().inject_fault(
        Fault::Permission {
            permission: Permission::Microphone,
        },
        FaultTrigger::AfterDumps(1),
    );
    let ran = post(&sim, video("perm-1")).await;
    assert_eq!(ran.ok()["posted"], true);
    assert_eq!(granted(&ran, Permission::Microphone, false), 1);
    assert_eq!(granted(&ran, Permission::Media, true), 1);
    assert_eq!(posts(&sim).len(), 1);
}

/// The phone reboots mid-run: wait for it to come back and finish booting, unlock it,
/// relaunch, resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_mid_run_is_waited_out_and_the_run_resumes() {
    let mut config = realistic();
    config.boot_delay_polls = 2;
    let sim = sim(config).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::Reboot, FaultTrigger::AfterInputs(6));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(ran.count(|a| matches!(a, Action::Rebooted)), 1);
    assert_eq!(
        ran.count(|a| matches!(a, Action::Unlocked)),
        1,
        "locked after the boot"
    );
    assert_eq!(ran.count(|a| matches!(a, Action::Unliked { .. })), 0);
}

/// The app crashes (or the phone reboots) right after Post, before or after the upload
/// reached the server: the retry looks at the profile first, so there is exactly one post
/// either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_is_never_posted_twice() {
    for (fault, committed) in [
        (Fault::KeepsStopping, true),
        (Fault::KeepsStopping, false),
        (Fault::Reboot, true),
        (Fault::Reboot, false),
    ] {
        let sim = sim(realistic()).await;
        sim.phone
            .lock()
            .unwrap()
            .inject_fault(fault.clone(), FaultTrigger::DuringUpload { committed });
        let ran = post(&sim, video("c-77")).await;
        let what = format!("{fault:?} committed={committed}");
        let done = ran.ok();
        assert_eq!(done["posted"], true, "{what}: {done}");
        assert_eq!(posts(&sim).len(), 1, "{what}: one post on the profile");
        let published = ran.count(|a| matches!(a, Action::VideoPosted { .. }));
        assert_eq!(published, 1, "{what}");
        let lost = ran.count(|a| matches!(a, Action::UploadLost { .. }));
        assert_eq!(lost, usize::from(!committed), "{what}");
        assert!(posts(&sim)[0].contains("pf-c-77"), "{what}");
    }
}

/// A screen no pack knows: `flow_error:unknown`, with evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_screen_is_a_flow_error_with_evidence() {
    let sim = sim(realistic()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::StrangeScreen, FaultTrigger::AfterInputs(2));
    let mut opts = options();
    opts.screen_timeout = std::time::Duration::from_secs(3);
    let ran = run_with(&sim, "keyword_warmup", keyword_inputs(), None, opts).await;
    let e = ran.failed_with("flow_error:unknown");
    assert_eq!(e.evidence.as_ref().unwrap().screen, "unknown");
    let dump =
        String::from_utf8_lossy(e.evidence.as_ref().unwrap().dump.as_ref().unwrap()).to_string();
    assert!(dump.contains("Something new"), "{dump}");
    assert!(
        ran.count(|a| matches!(
            a,
            Action::UiDumped {
                screen: ScreenKind::Placeholder
            }
        )) >= 1
    );
}

/// A pop-up that comes up right after the query is typed takes the Enter meant for the search
/// field: once it is dismissed the search is done again (and the run completes), as a person
/// would search again, instead of waiting for results that never come. Found by the long soak
/// (PF_SOAK_SEED=20261207: "expected search_results" after each of these three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_up_that_takes_the_enter_key_is_dismissed_and_the_search_done_again() {
    for fault in [
        Fault::LowBattery,
        Fault::ScreenOff,
        Fault::NotResponding { returns: 0 },
    ] {
        let sim = sim(realistic()).await;
        // Inputs of keyword_warmup: 1 taps the search icon, 2 types the query, 3 is Enter.
        sim.phone
            .lock()
            .unwrap()
            .inject_fault(fault.clone(), FaultTrigger::AfterInputs(2));
        let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
        assert!(
            ran.result.is_ok(),
            "{fault:?}: {:?}",
            ran.result
                .as_ref()
                .err()
                .map(|e| (e.failure.code(), &e.message))
        );
        assert_eq!(ran.ok(), &keyword_done(), "{fault:?}");
    }
}

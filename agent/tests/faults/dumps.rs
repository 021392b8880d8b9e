//! Dumps and input: latency, idle-state errors, stale hierarchies, slow and lost taps.

use phonefarm_phonesim::model::{Action, Fault, FaultTrigger, Latency, ScreenKind};

use crate::common::*;

/// Real-phone latencies (dumps of 0.9-3.2 s, taps of a quarter second) are waited out, not
/// timed out: the run completes with exactly what it was asked to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_and_input_latency_are_waited_out() {
    let sim = sim(realistic()).await;
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    assert_eq!(ran.count(|a| matches!(a, Action::Liked { .. })), 2);
    assert_eq!(ran.count(|a| matches!(a, Action::Searched { .. })), 1);
    assert!(ran.stats.dumps > 0 && ran.stats.actions > 0);
}

/// A playing video never lets uiautomator see the screen idle: the first dump there fails
/// with `could not get idle state`, and the agent dumps `--compressed` from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_state_errors_switch_to_compressed_dumps() {
    let sim = sim(realistic()).await;
    let ran = run(&sim, "fyp_warmup", fyp_inputs()).await;
    let done = ran.ok();
    assert!(done["videos_watched"].as_u64().unwrap() >= 2, "{done}");
    assert!(ran.compressed, "the agent switched to --compressed");
    assert_eq!(
        ran.stats.failed_dumps, 1,
        "one failure on the feed, then compressed dumps"
    );
    assert!(
        ran.count(|a| matches!(
            a,
            Action::UiDumped {
                screen: ScreenKind::Feed
            }
        )) >= 2
    );
}

/// For a while after each transition a dump shows the previous screen (here 800 ms, longer than
/// a tap and the agent's settle): the agent reads again instead of acting on it, so nothing is
/// done twice and nothing is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_dumps_are_read_again_before_acting() {
    let mut config = realistic();
    config.behaviour.stale_ms = 800;
    let sim = sim(config).await;
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    let stale = ran.count(|a| matches!(a, Action::StaleDump { .. }));
    assert!(stale >= 1, "some dump after a transition was stale");
    assert_eq!(ran.count(|a| matches!(a, Action::Searched { .. })), 1);
    assert_eq!(ran.count(|a| matches!(a, Action::Liked { .. })), 2);
    assert_eq!(ran.count(|a| matches!(a, Action::Unliked { .. })), 0);
}

/// An older phone takes over a second per tap: still done, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_input_is_waited_out() {
    let mut config = realistic();
    config.behaviour.input = Latency::uniform(1000, 1400);
    let sim = sim(config).await;
    let ran = run(&sim, "maintenance", maintenance_inputs()).await;
    assert_eq!(ran.ok()["profile"]["display_name"], "Hostile Tester");
    let profile = sim.phone.lock().unwrap().profile().clone();
    assert_eq!(
        (profile.display_name.as_str(), profile.bio.as_str()),
        ("Hostile Tester", "sim phone")
    );
}

/// Three taps in a row lost (a slow phone mid-transition, as the long soak met with
/// PF_SOAK_SEED=20261207 on post_video's profile tab): a person keeps tapping, and so does
/// the run; the fourth tap lands and the run completes with the search done once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_lost_taps_in_a_row_are_tapped_again() {
    use phonefarm_phonesim::model::PhoneConfig;
    let sim = sim(PhoneConfig::default()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LoseTaps { n: 3 }, FaultTrigger::AfterDumps(1));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    let lost =
        ran.count(|a| matches!(a, Action::InputIgnored { reason } if reason == "transition"));
    assert_eq!(lost, 3, "all three lost taps happened");
    assert_eq!(ran.count(|a| matches!(a, Action::Searched { .. })), 1);
}

/// Taps that land on nothing (as during a transition) are tapped again once two reads show
/// the screen unchanged: the like registers exactly once per video, and the run sends exactly
/// one `input tap` more per lost tap than the same run on a phone that loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_taps_are_tapped_again() {
    use phonefarm_phonesim::model::PhoneConfig;
    let baseline = sim(PhoneConfig::default()).await;
    let clean = run(&baseline, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(clean.ok(), &keyword_done());

    let sim = sim(PhoneConfig::default()).await;
    // One tap early on, one later.
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LoseTaps { n: 1 }, FaultTrigger::AfterDumps(1));
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LoseTaps { n: 1 }, FaultTrigger::AfterInputs(5));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    assert_eq!(ran.ok(), &keyword_done());
    let lost =
        ran.count(|a| matches!(a, Action::InputIgnored { reason } if reason == "transition"));
    assert_eq!(lost, 2, "both lost taps happened");
    assert_eq!(ran.count(|a| matches!(a, Action::Liked { .. })), 2);
    assert_eq!(ran.count(|a| matches!(a, Action::Unliked { .. })), 0);
    assert_eq!(ran.count(|a| matches!(a, Action::Searched { .. })), 1);
    assert_eq!(
        ran.stats.actions, clean.stats.actions,
        "the same UI actions"
    );
    assert_eq!(
        ran.stats.inputs,
        clean.stats.inputs + 2,
        "one more tap per lost one"
    );
}

/// A view that never takes a tap (every tap lost): the run stops after its re-taps with a flow
/// error on the screen it stayed on, and the message names the view by its own attributes,
/// which match exactly that view in the evidence's dump (so the console highlights it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_never_takes_a_tap_is_named_in_the_failure() {
    use phonefarm_flows::parse_dump_bytes;
    use phonefarm_flows::quoted::{pairs_match, quoted_pairs};
    use phonefarm_phonesim::model::PhoneConfig;
    let sim = sim(PhoneConfig::default()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LoseTaps { n: 1000 }, FaultTrigger::AfterDumps(1));
    let ran = run(&sim, "keyword_warmup", keyword_inputs()).await;
    let e = ran.err();
    assert!(e.code().starts_with("flow_error:"), "{e}");
    let e = ran.failed_with(&e.code());
    assert!(e.message.contains("taps on "), "{}", e.message);
    assert!(e.message.ends_with(" did not take"), "{}", e.message);
    // The named pairs, as the console reads them, match that one view of the dump.
    let pairs = quoted_pairs(&e.message);
    assert!(!pairs.is_empty(), "{}", e.message);
    let dump = e.evidence.as_ref().unwrap().dump.as_ref().unwrap();
    let tree = parse_dump_bytes(dump).unwrap();
    let matching = tree
        .nodes()
        .iter()
        .filter(|n| pairs_match(n, &pairs))
        .count();
    assert_eq!(matching, 1, "{pairs:?} in the dump");
    let lost =
        ran.count(|a| matches!(a, Action::InputIgnored { reason } if reason == "transition"));
    assert_eq!(lost, 4, "the tap and its three re-taps");
}

//! Account screens end the run as `account_outcome:<what>` with evidence, and nothing more is
//! done on the phone: no challenge is tried, no limit worked around.

use phonefarm_phonesim::model::{AccountState, Action, Fault, FaultTrigger, ScreenKind};

use crate::common::*;

async fn stops_at(state: AccountState, screen: ScreenKind, code: &str, capability: &str) {
    let sim = sim(realistic()).await;
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::Account { state }, FaultTrigger::AfterDumps(3));
    let inputs = match capability {
        "fyp_warmup" => fyp_inputs(),
        "maintenance" => maintenance_inputs(),
        _ => keyword_inputs(),
    };
    let ran = run(&sim, capability, inputs).await;
    let e = ran.failed_with(code);
    assert!(e.step.is_some(), "{e}");
    ran.nothing_done_after(screen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_stops_the_run() {
    stops_at(
        AccountState::LoggedOut,
        ScreenKind::LoggedOut,
        "account_outcome:logged_out",
        "keyword_warmup",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_stops_the_run() {
    stops_at(
        AccountState::SessionExpired,
        ScreenKind::SessionExpired,
        "account_outcome:session_expired",
        "fyp_warmup",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_it_is_you_challenge_stops_the_run() {
    stops_at(
        AccountState::VerificationRequired,
        ScreenKind::VerificationRequired,
        "account_outcome:verification_required",
        "maintenance",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_stops_the_run() {
    stops_at(
        AccountState::Suspended,
        ScreenKind::Suspended,
        "account_outcome:suspended",
        "keyword_warmup",
    )
    .await;
}

/// "You're tapping too fast": stop; the OK that would dismiss it is not tapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_stops_the_run() {
    stops_at(
        AccountState::RateLimited,
        ScreenKind::RateLimited,
        "account_outcome:rate_limited",
        "fyp_warmup",
    )
    .await;
}

/// The video went up but is held for review: stop there, nothing more (not even the profile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_under_review_stops_the_run() {
    let mut config = realistic();
    config.review_posts = true;
    let sim = sim(config).await;
    let ran = post(&sim, video("rev-1")).await;
    let e = ran.failed_with("account_outcome:under_review");
    assert_eq!(e.step.as_deref(), Some("publish"));
    assert_eq!(e.partial["publish_tapped"], true);
    assert_eq!(posts(&sim).len(), 1);
    let posted = ran
        .actions
        .iter()
        .position(|a| matches!(a, Action::VideoPosted { .. }))
        .unwrap();
    let after: Vec<&Action> = ran.actions[posted..]
        .iter()
        .filter(|a| is_input(a))
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

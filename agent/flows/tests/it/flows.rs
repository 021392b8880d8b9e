//! The executors against the phone model, in both UI variants, asserting on the model's action
//! log and state. Time is paused: dwells and polls take no wall time.

use std::collections::BTreeMap;
use std::time::Duration;

use phonefarm_flows::flows::{
    CommentPlan, FlowCtx, FlowOptions, FypWarmupInputs, KeywordWarmupInputs, MaintenanceInputs,
    Milestone, OverlapJudge, RecordingSink, WatchSeconds, edit_profile, fyp_warmup, keyword_warmup,
    post_video, select_pack,
};
use phonefarm_flows::{PackSet, Ui};
use phonefarm_phonemodel::{AccountState, Action, PhoneConfig, Popup, PopupTrigger, UiVariant};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::model::{ModelDevice, VARIANTS, ui};
use crate::packs::{APP, packs_dir};
use crate::post_video::post_inputs;

pub(crate) struct Harness {
    pub(crate) device: ModelDevice,
    pub(crate) sink: RecordingSink,
    pub(crate) cancel: CancellationToken,
}

impl Harness {
    pub(crate) fn new(config: PhoneConfig) -> Self {
        Self {
            device: ModelDevice::new(config),
            sink: RecordingSink::default(),
            cancel: CancellationToken::new(),
        }
    }

    pub(crate) fn variant(variant: UiVariant) -> Self {
        Self::new(PhoneConfig {
            variant,
            ..PhoneConfig::default()
        })
    }

    pub(crate) fn actions(&self) -> Vec<Action> {
        self.device.phone().actions().to_vec()
    }

    pub(crate) fn started_steps(&self) -> Vec<String> {
        self.sink
            .milestones()
            .into_iter()
            .filter_map(|m| match m {
                Milestone::StepStarted(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}

pub(crate) async fn with_ctx<T>(
    h: &Harness,
    f: impl AsyncFnOnce(&FlowCtx<'_, &ModelDevice, RecordingSink>) -> T,
) -> T {
    let ui: Ui<&ModelDevice> = ui(&h.device);
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let pack = select_pack(&ui, &set, APP).await.unwrap();
    let ctx = FlowCtx {
        ui: &ui,
        pack: &pack,
        sink: &h.sink,
        cancel: &h.cancel,
        options: FlowOptions {
            seed: 7,
            ..FlowOptions::default()
        },
    };
    f(&ctx).await
}

pub(crate) fn warmup_inputs() -> KeywordWarmupInputs {
    KeywordWarmupInputs {
        keywords: vec!["cooking".into(), "home workout".into()],
        videos_per_keyword: 2,
        watch_seconds: WatchSeconds { min: 2, max: 4 },
        like_probability: 1.0,
        comment_plan: Some(BTreeMap::from([
            (
                "cooking".to_string(),
                CommentPlan {
                    text: "Looks great, thanks!".into(),
                },
            ),
            (
                "home workout".to_string(),
                CommentPlan {
                    text: "100% doing this".into(),
                },
            ),
        ])),
    }
}

#[tokio::test(start_paused = true)]
async fn keyword_warmup_searches_watches_likes_and_comments_in_both_variants() {
    for variant in VARIANTS {
        let h = Harness::variant(variant);
        let result = with_ctx(&h, async |ctx| keyword_warmup(ctx, &warmup_inputs()).await)
            .await
            .unwrap();
        assert_eq!(
            result,
            json!({"keywords": {
                "cooking": {"videos_watched": 2, "liked": 2, "commented": true},
                "home workout": {"videos_watched": 2, "liked": 2, "commented": true},
            }}),
            "{variant:?}"
        );
        let actions = h.actions();
        let searched: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Searched { query } => Some(query.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(searched, ["cooking", "home workout"], "{variant:?}");
        let liked = actions
            .iter()
            .filter(|a| matches!(a, Action::Liked { .. }))
            .count();
        assert_eq!(liked, 4);
        assert_eq!(
            h.device.phone().liked_videos().len(),
            4,
            "four distinct videos liked"
        );
        let comments: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Commented { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(comments, ["Looks great, thanks!", "100% doing this"]);
        assert_eq!(
            h.started_steps()[..4],
            [
                "search:cooking",
                "open_result:cooking",
                "watch:cooking:1",
                "next_video:cooking:2"
            ]
        );
        assert!(
            h.sink
                .milestones()
                .iter()
                .all(|m| !matches!(m, Milestone::StepFinished { ok: false, .. }))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn pop_ups_are_dismissed_wherever_they_appear() {
    let h = Harness::variant(UiVariant::B);
    h.device
        .phone()
        .inject_popup(Popup::UpdatePrompt, PopupTrigger::AfterDumps(4));
    let mut inputs = warmup_inputs();
    inputs.keywords.truncate(1);
    inputs.comment_plan = None;
    let result = with_ctx(&h, async |ctx| keyword_warmup(ctx, &inputs).await)
        .await
        .unwrap();
    assert_eq!(result["keywords"]["cooking"]["videos_watched"], 2);
    assert!(h.actions().contains(&Action::PopupAnswered {
        popup: Popup::UpdatePrompt,
        accepted: false
    }));
}

#[tokio::test(start_paused = true)]
async fn account_screens_end_the_run_with_their_outcome_and_evidence() {
    for (state, code) in [
        (AccountState::Banned, "account_outcome:banned"),
        (AccountState::LoggedOut, "account_outcome:logged_out"),
        (AccountState::Captcha, "account_outcome:captcha"),
        (
            AccountState::VerificationRequired,
            "account_outcome:verification_required",
        ),
    ] {
        let h = Harness::new(PhoneConfig {
            account: state,
            ..PhoneConfig::default()
        });
        let err = with_ctx(&h, async |ctx| keyword_warmup(ctx, &warmup_inputs()).await)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert_eq!(err.step.as_deref(), Some("search:cooking"));
        let evidence = err.evidence.expect("evidence");
        assert!(evidence.dump.is_some_and(|d| d.starts_with(b"<?xml")));
        assert!(
            evidence
                .screenshot
                .is_some_and(|p| p.starts_with(b"\x89PNG"))
        );
        assert_eq!(err.partial["keywords"]["cooking"]["videos_watched"], 0);
        assert!(h.sink.milestones().contains(&Milestone::StepFinished {
            step: "search:cooking".into(),
            ok: false
        }));
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_at_the_next_boundary_or_dwell() {
    // Cancelled before the start: nothing happens on the phone.
    let h = Harness::variant(UiVariant::A);
    h.cancel.cancel();
    let err = with_ctx(&h, async |ctx| keyword_warmup(ctx, &warmup_inputs()).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert!(
        !h.actions()
            .iter()
            .any(|a| matches!(a, Action::Tap { .. } | Action::AppLaunched { .. }))
    );

    // Cancelled while watching: the run stops within the dwell, with its partial result.
    let h = Harness::variant(UiVariant::A);
    let mut inputs = warmup_inputs();
    inputs.watch_seconds = WatchSeconds { min: 100, max: 100 };
    let started = tokio::time::Instant::now();
    let (res, ()) = tokio::join!(
        with_ctx(&h, async |ctx| keyword_warmup(ctx, &inputs).await),
        async {
            tokio::time::sleep(Duration::from_secs(150)).await;
            h.cancel.cancel();
        }
    );
    let err = res.unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.partial["keywords"]["cooking"]["videos_watched"], 1);
    assert_eq!(err.step.as_deref(), Some("watch:cooking:2"));
    assert_eq!(
        h.sink.milestones().last(),
        Some(&Milestone::StepFinished {
            step: "watch:cooking:2".into(),
            ok: false
        })
    );
    assert!(err.evidence.is_none());
}

#[tokio::test(start_paused = true)]
async fn edit_profile_saves_and_reads_back_in_both_variants() {
    for variant in VARIANTS {
        let h = Harness::variant(variant);
        let inputs: MaintenanceInputs = serde_json::from_value(json!({"steps": [
            {"action": "edit_profile", "params": {"display_name": "Jo Doe", "username": "jo.doe_7", "bio": "Cooking & travel"}},
            {"action": "edit_profile", "params": {"bio": ""}},
        ]}))
        .unwrap();
        let result = with_ctx(&h, async |ctx| edit_profile(ctx, &inputs).await)
            .await
            .unwrap();
        assert_eq!(
            result,
            json!({"profile": {"display_name": "Jo Doe", "username": "jo.doe_7", "bio": ""}}),
            "{variant:?}"
        );
        let phone = h.device.phone();
        assert_eq!(phone.profile().display_name, "Jo Doe");
        assert_eq!(phone.profile().username, "jo.doe_7");
        assert_eq!(phone.profile().bio, "");
    }
}

#[tokio::test(start_paused = true)]
async fn a_taken_username_is_an_account_outcome() {
    let h = Harness::new(PhoneConfig {
        taken_usernames: ["taken.name".to_string()].into(),
        ..PhoneConfig::default()
    });
    let inputs: MaintenanceInputs = serde_json::from_value(
        json!({"steps": [{"action": "edit_profile", "params": {"username": "taken.name"}}]}),
    )
    .unwrap();
    let err = with_ctx(&h, async |ctx| edit_profile(ctx, &inputs).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "account_outcome:username_taken");
    assert_eq!(h.device.phone().profile().username, "sim.user01");
}

#[tokio::test(start_paused = true)]
async fn fyp_warmup_watches_relevant_videos_longer_and_likes_them() {
    let h = Harness::variant(UiVariant::B);
    let inputs = FypWarmupInputs {
        duration_seconds: 120,
        watch_seconds: WatchSeconds { min: 3, max: 20 },
        judge_prompt: "cooking recipes, fitness and yoga".into(),
        like_probability: 1.0,
    };
    let started = tokio::time::Instant::now();
    let result = with_ctx(&h, async |ctx| {
        fyp_warmup(ctx, &inputs, &OverlapJudge).await
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let watched = result["videos_watched"].as_u64().unwrap();
    let relevant = result["relevant"].as_u64().unwrap();
    assert!(watched >= 6, "{result}");
    assert!(relevant >= 1 && relevant < watched, "{result}");
    assert_eq!(result["liked"], result["relevant"]);
    assert_eq!(h.device.phone().liked_videos().len() as u64, relevant);
    assert!(
        watched * 3 + relevant * 17 >= 120,
        "dwells fill the budget: {result}"
    );
    assert!(
        elapsed >= Duration::from_secs(120) && elapsed < Duration::from_secs(150),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn bad_inputs_are_refused_before_touching_the_phone() {
    let h = Harness::variant(UiVariant::A);
    let mut inputs = warmup_inputs();
    inputs.keywords.push("café".into());
    inputs
        .comment_plan
        .as_mut()
        .unwrap()
        .insert("café".into(), CommentPlan { text: "ok".into() });
    let err = with_ctx(&h, async |ctx| keyword_warmup(ctx, &inputs).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input:keyword_not_typeable");
    let mut inputs = warmup_inputs();
    inputs.comment_plan.as_mut().unwrap().remove("cooking");
    let err = with_ctx(&h, async |ctx| keyword_warmup(ctx, &inputs).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input:needs_comment_plan");
    assert!(!h.actions().iter().any(|a| matches!(a, Action::Tap { .. })));
}

#[test]
fn executor_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let h = Harness::variant(UiVariant::A);
    let ui = ui(&h.device);
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let pack = set.packs()[0].clone();
    let ctx = FlowCtx {
        ui: &ui,
        pack: &pack,
        sink: &h.sink,
        cancel: &h.cancel,
        options: FlowOptions::default(),
    };
    let inputs = warmup_inputs();
    is_send(&keyword_warmup(&ctx, &inputs));
    let m: MaintenanceInputs = serde_json::from_value(
        json!({"steps": [{"action": "edit_profile", "params": {"bio": "x"}}]}),
    )
    .unwrap();
    is_send(&edit_profile(&ctx, &m));
}

#[tokio::test(start_paused = true)]
async fn the_32_pack_drives_a_33_phone_on_fallbacks_alone() {
    let h = Harness::variant(UiVariant::B);
    let ui = ui(&h.device);
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let old = set.select(APP, &"32.5.3".parse().unwrap()).unwrap();
    let ctx = FlowCtx {
        ui: &ui,
        pack: &old,
        sink: &h.sink,
        cancel: &h.cancel,
        options: FlowOptions::default(),
    };
    let result = keyword_warmup(&ctx, &warmup_inputs()).await.unwrap();
    assert_eq!(result["keywords"]["home workout"]["commented"], true);
    let m: MaintenanceInputs = serde_json::from_value(
        json!({"steps": [{"action": "edit_profile", "params": {"display_name": "Fallback Fan", "bio": "ids renamed"}}]}),
    )
    .unwrap();
    let result = edit_profile(&ctx, &m).await.unwrap();
    assert_eq!(result["profile"]["display_name"], "Fallback Fan");
    assert_eq!(result["profile"]["bio"], "ids renamed");
    assert_eq!(h.device.phone().profile().bio, "ids renamed");
    // post_video's profile check reads the captions on fallbacks too.
    let inputs = post_inputs();
    let first = post_video(&ctx, &inputs).await.unwrap();
    assert_eq!(first["already_posted"], false);
    let again = post_video(&ctx, &inputs).await.unwrap();
    assert_eq!(again["already_posted"], true);
    assert_eq!(h.device.phone().posts().len(), 1);
}

#[tokio::test]
async fn abort_force_stops_the_app_and_goes_home() {
    let h = Harness::variant(UiVariant::A);
    let ui = ui(&h.device);
    ui.launch(APP).await.unwrap();
    phonefarm_flows::flows::abort(&ui, APP).await.unwrap();
    let actions = h.actions();
    assert!(actions.contains(&Action::AppForceStopped));
    assert_eq!(actions.last(), Some(&Action::Key { code: 3 }));
    assert!(!h.device.phone().app_running());
}

#[tokio::test(start_paused = true)]
async fn run_capability_takes_work_order_json() {
    let h = Harness::variant(UiVariant::A);
    let inputs = json!({"keywords": ["pets"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 2}, "future_field": true});
    let result = with_ctx(&h, async |ctx| {
        phonefarm_flows::flows::run_capability(ctx, "keyword_warmup", inputs, &OverlapJudge).await
    })
    .await
    .unwrap();
    assert_eq!(
        result,
        json!({"keywords": {"pets": {"videos_watched": 1, "liked": 0, "commented": false}}})
    );
    let err = with_ctx(&h, async |ctx| {
        phonefarm_flows::flows::run_capability(
            ctx,
            "fyp_warmup",
            json!({"duration_seconds": 60}),
            &OverlapJudge,
        )
        .await
    })
    .await
    .unwrap_err();
    assert_eq!(
        err.code(),
        "invalid_input:inputs",
        "judge_prompt is required: {err}"
    );
    let err = with_ctx(&h, async |ctx| {
        phonefarm_flows::flows::run_capability(ctx, "teleport", json!({}), &OverlapJudge).await
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "invalid_input:capability");
}

#[tokio::test]
async fn pack_selection_reports_a_missing_app_or_an_uncovered_version() {
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let h = Harness::new(PhoneConfig {
        app_installed: false,
        ..PhoneConfig::default()
    });
    let err = select_pack(&ui(&h.device), &set, APP).await.unwrap_err();
    assert_eq!(err.code(), "flow_pack:app_not_installed", "{err}");
    let h = Harness::new(PhoneConfig {
        app_version: Some("34.0.1".into()),
        ..PhoneConfig::default()
    });
    let err = select_pack(&ui(&h.device), &set, APP).await.unwrap_err();
    assert_eq!(err.code(), "flow_pack:no_pack:34.0.1", "{err}");
    let h = Harness::new(PhoneConfig {
        app_version: Some("33.9.2".into()),
        ..PhoneConfig::default()
    });
    assert_eq!(
        select_pack(&ui(&h.device), &set, APP).await.unwrap().name(),
        "tiktok-33"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_dump_failures_are_ridden_out() {
    let h = Harness::new(PhoneConfig {
        failing_dumps: 3,
        ..PhoneConfig::default()
    });
    let inputs: MaintenanceInputs = serde_json::from_value(
        json!({"steps": [{"action": "edit_profile", "params": {"display_name": "Patient"}}]}),
    )
    .unwrap();
    let result = with_ctx(&h, async |ctx| edit_profile(ctx, &inputs).await)
        .await
        .unwrap();
    assert_eq!(result["profile"]["display_name"], "Patient");
    assert_eq!(
        h.device.phone().config().failing_dumps,
        0,
        "the failing dumps were consumed"
    );
}

/// Records when each step started and finished (virtual time: the test clock is paused).
#[derive(Default)]
struct TimedSink {
    events: std::sync::Mutex<Vec<(String, bool, tokio::time::Instant)>>,
}

impl phonefarm_flows::MilestoneSink for TimedSink {
    fn step_started(&self, step: &str) {
        self.events
            .lock()
            .unwrap()
            .push((step.to_string(), false, tokio::time::Instant::now()));
    }
    fn step_finished(&self, step: &str, _ok: bool) {
        self.events
            .lock()
            .unwrap()
            .push((step.to_string(), true, tokio::time::Instant::now()));
    }
    fn progress(&self, _progress: &serde_json::Value) {}
}

#[tokio::test(start_paused = true)]
async fn dwells_stay_in_range_and_probability_zero_never_likes() {
    let device = ModelDevice::new(PhoneConfig::default());
    let ui: Ui<&ModelDevice> = ui(&device);
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let pack = select_pack(&ui, &set, APP).await.unwrap();
    let sink = TimedSink::default();
    let cancel = CancellationToken::new();
    let ctx = FlowCtx {
        ui: &ui,
        pack: &pack,
        sink: &sink,
        cancel: &cancel,
        options: FlowOptions {
            seed: 11,
            ..FlowOptions::default()
        },
    };
    let inputs = KeywordWarmupInputs {
        keywords: vec!["travel".into()],
        videos_per_keyword: 4,
        watch_seconds: WatchSeconds { min: 5, max: 9 },
        like_probability: 0.0,
        comment_plan: None,
    };
    let result = keyword_warmup(&ctx, &inputs).await.unwrap();
    assert_eq!(
        result["keywords"]["travel"],
        json!({"videos_watched": 4, "liked": 0, "commented": false})
    );
    let actions = device.phone().actions().to_vec();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Liked { .. })),
        "probability 0 never likes"
    );
    assert!(device.phone().liked_videos().is_empty());

    // Each watch step lasts its dwell: at least `min`, and at most `max` plus the UI round
    // trips of the step itself (screen reads at the poll interval).
    let events = sink.events.lock().unwrap().clone();
    let mut dwells = Vec::new();
    for (i, (step, finished, at)) in events.iter().enumerate() {
        if *finished || !step.starts_with("watch:") {
            continue;
        }
        let (_, _, end) = events[i..]
            .iter()
            .find(|(s, f, _)| *f && s == step)
            .expect("the watch step finishes");
        dwells.push(end.duration_since(*at));
    }
    assert_eq!(dwells.len(), 4, "{events:?}");
    for d in &dwells {
        assert!(*d >= Duration::from_secs(5), "dwell {d:?} below min");
        assert!(
            *d <= Duration::from_secs(9) + Duration::from_secs(5),
            "dwell {d:?} far above max"
        );
    }
    // Drawn from the range, not a constant.
    assert!(dwells.iter().any(|d| *d != dwells[0]), "{dwells:?}");
}

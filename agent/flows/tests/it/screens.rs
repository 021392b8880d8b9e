//! The shipped packs identify every screen of the phone model in both UI variants, with the
//! resource-ids and with the fallbacks alone.

use phonefarm_flows::pack::{FlowPack, Identified};
use phonefarm_flows::selector::Fallbacks;
use phonefarm_flows::ui::keycode;
use phonefarm_phonemodel::{AccountState, Fault, FaultTrigger, Popup, PopupTrigger, ScreenKind};

use crate::model::{ModelDevice, VARIANTS, pack_for, ui};

/// The pack's name for what the model says is on screen.
fn expected(kind: ScreenKind) -> &'static str {
    match kind {
        ScreenKind::Feed => "feed",
        ScreenKind::SearchInput => "search",
        ScreenKind::SearchResults => "search_results",
        ScreenKind::Player => "video",
        ScreenKind::CommentSheet => "comments",
        ScreenKind::Profile => "profile",
        ScreenKind::EditProfile => "edit_profile",
        ScreenKind::Gallery => "upload_gallery",
        ScreenKind::PostScreen => "upload_caption",
        ScreenKind::UpdatePrompt => "popup:update_prompt",
        ScreenKind::PermissionDialog => "popup:media_permission",
        ScreenKind::LoggedOut => "logged_out",
        ScreenKind::Banned => "banned",
        ScreenKind::Captcha => "captcha",
        ScreenKind::VerificationRequired => "verification_required",
        ScreenKind::SessionExpired => "session_expired",
        ScreenKind::Suspended => "suspended",
        ScreenKind::RateLimited => "rate_limited",
        ScreenKind::NotResponding => "popup:not_responding",
        ScreenKind::KeepsStopping => "popup:keeps_stopping",
        ScreenKind::LowBattery => "popup:low_battery",
        ScreenKind::Keyguard => "popup:keyguard",
        ScreenKind::Launcher => "launcher",
        ScreenKind::PlayStore => "play_store",
        // The viewer (the console's locate) is no app screen: runs start after it is gone.
        ScreenKind::Placeholder | ScreenKind::ScreenOff | ScreenKind::ImageViewer => "unknown",
    }
}

/// The same pack with every app resource-id alternative removed: only the fallbacks remain.
fn without_ids(pack: &FlowPack) -> FlowPack {
    let mut text = String::from(
        "[pack]\nname = \"stripped\"\npackage = \"com.zhiliaoapp.musically\"\nversions = \">=0\"\n[selectors]\n",
    );
    for name in pack.selector_names() {
        let alts: Vec<_> = pack
            .selector(name)
            .unwrap()
            .alternatives()
            .iter()
            .filter(|s| {
                s.resource_id
                    .as_deref()
                    .is_none_or(|id| !id.contains("musically:id/"))
            })
            .cloned()
            .collect();
        assert!(
            !alts.is_empty(),
            "selector {name} has no fallback beyond its resource-id"
        );
        let value =
            toml::Value::try_from(std::collections::BTreeMap::from([("x", Fallbacks(alts))]))
                .unwrap();
        text.push_str(&format!("{name} = {}\n", value.get("x").unwrap()));
    }
    for s in pack.screens() {
        text.push_str(&format!(
            "[[screens]]\nname = {:?}\nall = {:?}\nany = {:?}\nnone = {:?}\n",
            s.name, s.all, s.any, s.none
        ));
    }
    for w in pack.watchers() {
        text.push_str(&format!(
            "[[watchers]]\nname = {:?}\nmatch = {:?}\ndismiss = {:?}\n",
            w.name, w.matches, w.dismiss
        ));
    }
    FlowPack::from_toml_str("stripped", &text).unwrap()
}

/// Walks the app through its screens with raw commands and checks each identification.
async fn walk(device: &ModelDevice, packs: &[&FlowPack]) -> Vec<String> {
    let ui = ui(device);
    let mut seen = Vec::new();
    let check = |seen: &mut Vec<String>, tree: &phonefarm_flows::UiTree| {
        let kind = device.phone().screen();
        for pack in packs {
            let got = pack.identify(tree).label();
            assert_eq!(got, expected(kind), "pack {} on {kind:?}", pack.name());
        }
        // Wherever an id finds a view, the fallbacks alone find the same view.
        let (full, stripped) = (packs[0], packs[packs.len() - 1]);
        for name in full.selector_names() {
            if let Some(m) = full.find(tree, name).filter(|m| m.fallback == 0) {
                let alt = stripped.find(tree, name).map(|m| m.node);
                assert_eq!(
                    alt,
                    Some(m.node),
                    "{name} on {kind:?}: fallbacks find another view"
                );
            }
        }
        seen.push(expected(kind).to_string());
    };
    let pack = packs[0];
    let tap = |name: &'static str| {
        let ui = &ui;
        async move {
            let tree = ui.dump().await.unwrap();
            ui.tap_in(&tree, pack.selector(name).unwrap(), name)
                .await
                .unwrap();
        }
    };

    check(&mut seen, &ui.dump().await.unwrap()); // launcher
    ui.launch("com.zhiliaoapp.musically").await.unwrap();
    check(&mut seen, &ui.dump().await.unwrap()); // feed
    tap("comment_button").await;
    check(&mut seen, &ui.dump().await.unwrap()); // comments over the feed
    ui.back().await.unwrap();
    tap("search_icon").await;
    check(&mut seen, &ui.dump().await.unwrap()); // search
    ui.type_text("cooking").await.unwrap();
    ui.keyevent(keycode::ENTER).await.unwrap();
    check(&mut seen, &ui.dump().await.unwrap()); // results
    tap("result_tile").await;
    check(&mut seen, &ui.dump().await.unwrap()); // player
    tap("comment_button").await;
    check(&mut seen, &ui.dump().await.unwrap()); // comments over the player
    for _ in 0..4 {
        ui.back().await.unwrap();
    }
    check(&mut seen, &ui.dump().await.unwrap()); // feed again
    tap("tab_profile").await;
    check(&mut seen, &ui.dump().await.unwrap());
    tap("profile_edit").await;
    check(&mut seen, &ui.dump().await.unwrap());
    ui.back().await.unwrap();
    tap("tab_create").await;
    check(&mut seen, &ui.dump().await.unwrap()); // gallery (empty)
    device
        .phone()
        .inject_popup(Popup::UpdatePrompt, PopupTrigger::Now);
    check(&mut seen, &ui.dump().await.unwrap());
    tap("update_dismiss").await;
    check(&mut seen, &ui.dump().await.unwrap()); // gallery again
    device
        .phone()
        .inject_popup(Popup::PermissionDialog, PopupTrigger::Now);
    check(&mut seen, &ui.dump().await.unwrap());
    tap("permission_allow").await;
    for outcome in [
        AccountState::LoggedOut,
        AccountState::Banned,
        AccountState::Captcha,
        AccountState::VerificationRequired,
        AccountState::SessionExpired,
        AccountState::Suspended,
        AccountState::RateLimited,
    ] {
        device.phone().config_mut().account = outcome;
        check(&mut seen, &ui.dump().await.unwrap());
    }
    device.phone().config_mut().account = AccountState::Active;
    // System dialogs and the lock screen.
    for (fault, dismiss) in [
        (Fault::NotResponding { returns: 0 }, "anr_wait"),
        (Fault::LowBattery, "low_battery_cancel"),
        (Fault::KeepsStopping, "crash_close"),
    ] {
        device.phone().inject_fault(fault, FaultTrigger::Now);
        check(&mut seen, &ui.dump().await.unwrap());
        tap(dismiss).await;
    }
    device.phone().config_mut().behaviour.lock_screen = true;
    device.phone().set_screen_on(false);
    ui.keyevent(keycode::WAKEUP).await.unwrap();
    check(&mut seen, &ui.dump().await.unwrap());
    seen
}

#[tokio::test]
async fn packs_identify_every_screen_in_both_variants() {
    for variant in VARIANTS {
        let device = ModelDevice::variant(variant);
        let pack = pack_for(&device).await;
        let stripped = without_ids(&pack);
        let seen = walk(&device, &[&pack, &stripped]).await;
        for screen in [
            "launcher",
            "feed",
            "comments",
            "search",
            "search_results",
            "video",
            "profile",
            "edit_profile",
            "upload_gallery",
            "popup:update_prompt",
            "popup:media_permission",
            "logged_out",
            "banned",
            "captcha",
            "verification_required",
            "session_expired",
            "suspended",
            "rate_limited",
            "popup:not_responding",
            "popup:low_battery",
            "popup:keeps_stopping",
            "popup:keyguard",
        ] {
            assert!(
                seen.iter().any(|s| s == screen),
                "{variant:?} never saw {screen}: {seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_wrong_variants_pack_still_works_through_fallbacks() {
    // A 33.x phone driven with the 32.x pack: every id misses, the fallbacks carry it.
    let device = ModelDevice::variant(phonefarm_phonemodel::UiVariant::B);
    let set = phonefarm_flows::PackSet::load_path(&crate::packs::packs_dir()).unwrap();
    let old = set
        .select(crate::packs::APP, &"32.5.3".parse().unwrap())
        .unwrap();
    let ui = ui(&device);
    ui.launch("com.zhiliaoapp.musically").await.unwrap();
    let tree = ui.dump().await.unwrap();
    assert!(matches!(old.identify(&tree), Identified::Screen(s) if s.name == "feed"));
    let like = old.find(&tree, "like_button").unwrap();
    assert!(
        like.fallback > 0,
        "the id alternative cannot match on variant B"
    );
}

#[tokio::test(start_paused = true)]
async fn profile_post_captions_are_found_with_ids_and_on_fallbacks() {
    use phonefarm_flows::flows::{FlowCtx, FlowOptions, NoopSink, PostVideoInputs, post_video};
    for variant in VARIANTS {
        let device = ModelDevice::variant(variant);
        let pack = pack_for(&device).await;
        let stripped = without_ids(&pack);
        let ui = ui(&device);
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = FlowCtx {
            ui: &ui,
            pack: &pack,
            sink: &NoopSink,
            cancel: &cancel,
            options: FlowOptions::default(),
        };
        for (i, caption) in ["First clip", "Second clip"].into_iter().enumerate() {
            let inputs = PostVideoInputs {
                file_name: format!("clip-{i}.mp4"),
                video: b"fake video".to_vec(),
                caption: caption.into(),
                hashtags: vec!["tag".into()],
                marker: Some(format!("m-{i}")),
            };
            post_video(&ctx, &inputs).await.unwrap();
        }
        // post_video ends on the profile, where it found the new post.
        let tree = ui.dump().await.unwrap();
        assert_eq!(device.phone().screen(), ScreenKind::Profile);
        for p in [&*pack, &stripped] {
            let texts: Vec<_> = p
                .find_all(&tree, "profile_post_caption")
                .into_iter()
                .map(|i| tree.get(i).unwrap().text.clone())
                .collect();
            assert_eq!(
                texts,
                ["Second clip #tag m-1", "First clip #tag m-0"],
                "{variant:?} {}",
                p.name()
            );
            assert_eq!(p.find_all(&tree, "profile_post").len(), 2);
            assert!(p.find(&tree, "profile_empty").is_none());
        }
    }
}

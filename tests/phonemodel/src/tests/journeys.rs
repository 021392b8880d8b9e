//! The main journeys, driven by shell commands only, in both UI variants.

use super::{dump, find, find_all, launched, phone, sh, tap_id, tap_label};
use crate::{AccountState, Action, Popup, PopupTrigger, ProfileField, ScreenKind, UiVariant};

const VARIANTS: [UiVariant; 2] = [UiVariant::A, UiVariant::B];

#[test]
fn search_watch_like_comment_and_back() {
    for variant in VARIANTS {
        let mut p = launched(variant);
        assert_eq!(p.screen(), ScreenKind::Feed);
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "top_foryou").map(|n| n.get("text")),
            Some("For You")
        );

        tap_id(&mut p, "search_icon");
        assert_eq!(p.screen(), ScreenKind::SearchInput);
        let nodes = dump(&mut p);
        let input = find(&nodes, &p, "search_input").expect("search input");
        assert!(input.flag("focused"));
        assert_eq!(input.get("text"), "Search videos");

        sh(&mut p, "input text 'home%scooking'");
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "search_input").map(|n| n.get("text")),
            Some("home cooking")
        );
        sh(&mut p, "input keyevent KEYCODE_ENTER");
        assert_eq!(p.screen(), ScreenKind::SearchResults);
        assert!(p.actions().contains(&Action::Searched {
            query: "home cooking".into()
        }));

        let nodes = dump(&mut p);
        let captions: Vec<String> = find_all(&nodes, &p, "result_caption")
            .iter()
            .map(|n| n.get("text").to_string())
            .collect();
        assert_eq!(captions.len(), 6, "{captions:?}");
        assert!(captions.iter().all(|c| {
            let c = c.to_lowercase();
            c.contains("cooking") || c.contains("home")
        }));

        // Open the second result and like it.
        let tiles = find_all(&nodes, &p, "result_tile");
        let (x, y) = tiles[1].bounds().center();
        let tile_caption = tiles[1].get("content-desc").to_string();
        sh(&mut p, &format!("input tap {x} {y}"));
        assert_eq!(p.screen(), ScreenKind::Player);
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "video_caption").map(|n| n.get("text")),
            Some(tile_caption.as_str())
        );
        let video_id = p.current_video().expect("video").id;

        tap_id(&mut p, "like_button");
        let nodes = dump(&mut p);
        assert!(
            find(&nodes, &p, "like_button")
                .expect("like")
                .flag("selected")
        );
        assert!(p.actions().contains(&Action::Liked {
            video_id: video_id.clone()
        }));

        // Comment.
        tap_id(&mut p, "comment_button");
        assert_eq!(p.screen(), ScreenKind::CommentSheet);
        let nodes = dump(&mut p);
        assert!(
            !find(&nodes, &p, "comment_post")
                .expect("post")
                .flag("enabled")
        );
        tap_id(&mut p, "comment_input");
        sh(&mut p, r#"input text "So%suseful,%sthanks!""#);
        tap_id(&mut p, "comment_post");
        assert!(p.actions().contains(&Action::Commented {
            video_id: video_id.clone(),
            text: "So useful, thanks!".into()
        }));
        let nodes = dump(&mut p);
        let texts: Vec<_> = find_all(&nodes, &p, "comment_text")
            .iter()
            .map(|n| n.get("text").to_string())
            .collect();
        assert_eq!(
            texts.first().map(String::as_str),
            Some("So useful, thanks!")
        );
        assert_eq!(
            find(&nodes, &p, "comment_input").map(|n| n.get("text")),
            Some("Add comment...")
        );

        // Back out: sheet, player, results, search input, feed.
        sh(&mut p, "input keyevent 4");
        assert_eq!(p.screen(), ScreenKind::Player);
        tap_id(&mut p, "back_button");
        assert_eq!(p.screen(), ScreenKind::SearchResults);
        sh(&mut p, "input keyevent KEYCODE_BACK");
        assert_eq!(p.screen(), ScreenKind::SearchInput);
        sh(&mut p, "input keyevent BACK");
        assert_eq!(p.screen(), ScreenKind::Feed);
        assert_eq!(p.liked_videos(), vec![video_id.clone()]);
        assert_eq!(
            p.comments_on(&video_id),
            vec!["So useful, thanks!".to_string()]
        );
    }
}

#[test]
fn variant_b_is_reachable_by_labels_only() {
    let mut p = launched(UiVariant::B);
    let nodes = dump(&mut p);
    assert!(
        nodes
            .iter()
            .all(|n| !n.get("resource-id").ends_with("/search_icon"))
    );
    assert!(
        nodes
            .iter()
            .any(|n| n.get("resource-id") == "com.zhiliaoapp.musically:id/gsq")
    );
    tap_label(&mut p, "Search");
    assert_eq!(p.screen(), ScreenKind::SearchInput);
    sh(&mut p, "input text travel && input keyevent 66");
    assert_eq!(p.screen(), ScreenKind::SearchResults);
    tap_label(&mut p, "Back");
    assert_eq!(p.screen(), ScreenKind::SearchInput);
    assert_eq!(p.config().variant, UiVariant::B);
    assert_eq!(
        sh(&mut p, "dumpsys package com.zhiliaoapp.musically")
            .lines()
            .find(|l| l.contains("versionName")),
        Some("    versionName=33.1.0")
    );
}

#[test]
fn feed_swipes_move_through_the_catalogue() {
    let mut p = launched(UiVariant::A);
    let first = p.current_video().expect("video");
    let caption = |p: &mut crate::Phone| {
        let nodes = dump(p);
        find(&nodes, p, "video_caption")
            .expect("caption")
            .get("text")
            .to_string()
    };
    assert_eq!(caption(&mut p), first.caption);
    sh(&mut p, "input swipe 540 1800 540 600 250");
    let second = p.current_video().expect("video");
    assert_eq!(second.id, "vid-000001");
    assert_eq!(caption(&mut p), second.caption);
    assert!(p.actions().contains(&Action::VideoShown {
        video_id: "vid-000001".into()
    }));
    // A short drag does nothing; swiping down goes back.
    sh(&mut p, "input swipe 540 1800 540 1700");
    assert_eq!(p.current_video().expect("video").id, "vid-000001");
    sh(&mut p, "input swipe 540 600 540 1800");
    assert_eq!(p.current_video().expect("video").id, "vid-000000");
    sh(&mut p, "input swipe 540 600 540 1800");
    assert_eq!(p.current_video().expect("video").id, "vid-000000");
}

#[test]
fn follow_records_and_hides_the_button() {
    let mut p = launched(UiVariant::A);
    let author = p.current_video().expect("video").author;
    tap_id(&mut p, "follow_button");
    assert!(p.actions().contains(&Action::Followed { author }));
    let nodes = dump(&mut p);
    assert!(find(&nodes, &p, "follow_button").is_none());
    assert_eq!(p.profile().following, 13);
}

fn open_edit_profile(p: &mut crate::Phone) {
    tap_id(p, "tab_profile");
    assert_eq!(p.screen(), ScreenKind::Profile);
    tap_id(p, "profile_edit");
    assert_eq!(p.screen(), ScreenKind::EditProfile);
}

fn replace_field(p: &mut crate::Phone, field: &str, value: &str) {
    tap_id(p, field);
    let nodes = dump(p);
    if find(&nodes, p, &format!("{field}_clear")).is_some() {
        tap_id(p, &format!("{field}_clear"));
    }
    sh(p, &format!("input text '{}'", value.replace(' ', "%s")));
}

#[test]
fn edit_profile_sets_fields_and_profile_shows_them() {
    for variant in VARIANTS {
        let mut p = launched(variant);
        open_edit_profile(&mut p);
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "edit_username").map(|n| n.get("text")),
            Some("sim.user01")
        );
        replace_field(&mut p, "edit_name", "Jo Runner");
        replace_field(&mut p, "edit_username", "jo.runs_42");
        replace_field(&mut p, "edit_bio", "Morning miles & coffee <3");
        tap_id(&mut p, "edit_save");
        assert_eq!(p.screen(), ScreenKind::Profile);
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "profile_display_name").map(|n| n.get("text")),
            Some("Jo Runner")
        );
        assert_eq!(
            find(&nodes, &p, "profile_username").map(|n| n.get("text")),
            Some("@jo.runs_42")
        );
        assert_eq!(
            find(&nodes, &p, "profile_bio").map(|n| n.get("text")),
            Some("Morning miles & coffee <3")
        );
        for (field, value) in [
            (ProfileField::DisplayName, "Jo Runner"),
            (ProfileField::Username, "jo.runs_42"),
            (ProfileField::Bio, "Morning miles & coffee <3"),
        ] {
            assert!(
                p.actions().contains(&Action::ProfileFieldSet {
                    field,
                    value: value.into()
                }),
                "{field:?}"
            );
        }
    }
}

#[test]
fn edit_with_del_keys_and_back_discards() {
    let mut p = launched(UiVariant::A);
    open_edit_profile(&mut p);
    tap_id(&mut p, "edit_name");
    sh(&mut p, "input keyevent 67 67 67 KEYCODE_DEL");
    sh(&mut p, "input keyevent KEYCODE_X");
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "edit_name").map(|n| n.get("text")),
        Some("Sim x")
    );
    sh(&mut p, "input keyevent KEYCODE_BACK");
    assert_eq!(p.screen(), ScreenKind::Profile);
    assert_eq!(p.profile().display_name, "Sim User");
    assert!(
        !p.actions()
            .iter()
            .any(|a| matches!(a, Action::ProfileFieldSet { .. }))
    );
}

#[test]
fn taken_username_is_rejected_with_an_error() {
    let mut p = launched(UiVariant::B);
    p.config_mut().taken_usernames.insert("popular.name".into());
    open_edit_profile(&mut p);
    replace_field(&mut p, "edit_username", "popular.name");
    tap_id(&mut p, "edit_save");
    assert_eq!(p.screen(), ScreenKind::EditProfile);
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "edit_error").map(|n| n.get("text")),
        Some("This username isn't available. Try another one.")
    );
    assert_eq!(p.profile().username, "sim.user01");
    assert!(p.actions().contains(&Action::ProfileSaveRejected {
        error: "This username isn't available. Try another one.".into()
    }));
    // Invalid characters are rejected too; a free name then saves.
    replace_field(&mut p, "edit_username", "Bad Name");
    tap_id(&mut p, "edit_save");
    assert_eq!(p.screen(), ScreenKind::EditProfile);
    replace_field(&mut p, "edit_username", "free.name");
    tap_id(&mut p, "edit_save");
    assert_eq!(p.screen(), ScreenKind::Profile);
    assert_eq!(p.profile().username, "free.name");
}

#[test]
fn upload_needs_media_scan_and_shows_on_profile() {
    for variant in VARIANTS {
        let mut p = launched(variant);
        p.write(
            "/sdcard/DCIM/Camera/old.mp4",
            vec![1; 100],
            0o100644,
            1_700_000_000,
        )
        .unwrap();
        p.write(
            "/sdcard/DCIM/Camera/new.mp4",
            vec![2; 100],
            0o100644,
            1_700_000_100,
        )
        .unwrap();
        tap_id(&mut p, "tab_create");
        assert_eq!(p.screen(), ScreenKind::Gallery);
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "gallery_empty").map(|n| n.get("text")),
            Some("No videos")
        );
        assert!(
            !find(&nodes, &p, "gallery_next")
                .expect("next")
                .flag("enabled")
        );
        tap_id(&mut p, "gallery_close");
        assert_eq!(p.screen(), ScreenKind::Feed);

        let out = sh(
            &mut p,
            "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d file:///sdcard/DCIM/Camera/old.mp4 && \
             am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d file:///storage/emulated/0/DCIM/Camera/new.mp4",
        );
        assert!(out.contains("Broadcast completed: result=0"), "{out}");
        tap_id(&mut p, "tab_create");
        let nodes = dump(&mut p);
        let items: Vec<_> = find_all(&nodes, &p, "gallery_item")
            .iter()
            .map(|n| n.get("content-desc").to_string())
            .collect();
        // Thumbnails with durations, never file names; the newest scan first.
        assert_eq!(items, vec!["Video, 0:15", "Video, 0:15"]);
        assert_eq!(
            p.gallery(),
            ["/sdcard/DCIM/Camera/new.mp4", "/sdcard/DCIM/Camera/old.mp4"]
        );
        tap_id(&mut p, "gallery_item");
        let nodes = dump(&mut p);
        assert!(
            find(&nodes, &p, "gallery_item")
                .expect("item")
                .flag("checked")
        );
        tap_id(&mut p, "gallery_next");
        assert_eq!(p.screen(), ScreenKind::PostScreen);
        tap_id(&mut p, "post_caption");
        sh(&mut p, "input text 'Sunday%slong%srun%s#running%s#fitness'");
        tap_id(&mut p, "post_publish");
        assert_eq!(p.screen(), ScreenKind::Feed);
        let caption = "Sunday long run #running #fitness";
        assert!(p.actions().contains(&Action::VideoPosted {
            video_id: "own-1".into(),
            file: "/sdcard/DCIM/Camera/new.mp4".into(),
            caption: caption.into()
        }));
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "upload_status").map(|n| n.get("text")),
            Some("Uploading 45%")
        );
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "upload_status").map(|n| n.get("text")),
            Some("Your video has been posted.")
        );

        tap_id(&mut p, "tab_profile");
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "profile_post_caption").map(|n| n.get("text")),
            Some(caption)
        );
        assert!(find(&nodes, &p, "profile_empty").is_none());
        assert_eq!(p.posts().len(), 1);
        // Opening the post plays it.
        tap_id(&mut p, "profile_post");
        assert_eq!(p.screen(), ScreenKind::Player);
        assert_eq!(
            p.current_video().map(|v| v.caption),
            Some(caption.to_string())
        );
    }
}

#[test]
fn deleted_media_leaves_the_gallery_and_directory_scan_works() {
    let mut p = launched(UiVariant::A);
    p.write("/sdcard/DCIM/Camera/a.mp4", vec![0; 10], 0o644, 1)
        .unwrap();
    p.write("/sdcard/DCIM/Camera/b.MOV", vec![0; 10], 0o644, 1)
        .unwrap();
    p.write("/sdcard/DCIM/Camera/note.txt", vec![0; 10], 0o644, 1)
        .unwrap();
    sh(
        &mut p,
        "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d file:///sdcard/DCIM/Camera",
    );
    assert_eq!(p.gallery().len(), 2);
    sh(&mut p, "rm /sdcard/DCIM/Camera/a.mp4");
    assert_eq!(p.gallery(), vec!["/sdcard/DCIM/Camera/b.MOV".to_string()]);
}

#[test]
fn update_prompt_after_dumps_and_not_now_dismisses() {
    for variant in VARIANTS {
        let mut p = launched(variant);
        p.inject_popup(Popup::UpdatePrompt, PopupTrigger::AfterDumps(1));
        let nodes = dump(&mut p);
        assert!(find(&nodes, &p, "update_dialog").is_none());
        let nodes = dump(&mut p);
        assert!(find(&nodes, &p, "update_dialog").is_some());
        assert_eq!(p.screen(), ScreenKind::UpdatePrompt);
        // The feed is still dumped but cannot be hit under the modal.
        let like = find(&nodes, &p, "like_button").expect("like under modal");
        let (x, y) = like.bounds().center();
        sh(&mut p, &format!("input tap {x} {y}"));
        assert!(
            !p.actions()
                .iter()
                .any(|a| matches!(a, Action::Liked { .. }))
        );
        tap_label(&mut p, "Not now");
        assert_eq!(p.screen(), ScreenKind::Feed);
        assert!(p.actions().contains(&Action::PopupAnswered {
            popup: Popup::UpdatePrompt,
            accepted: false
        }));
        let nodes = dump(&mut p);
        assert!(find(&nodes, &p, "update_dialog").is_none());
    }
}

#[test]
fn update_prompt_at_next_launch_and_update_leaves_app() {
    let mut p = launched(UiVariant::A);
    p.inject_popup(Popup::UpdatePrompt, PopupTrigger::NextLaunch);
    assert_eq!(p.screen(), ScreenKind::Feed);
    sh(&mut p, "am force-stop com.zhiliaoapp.musically");
    assert_eq!(p.screen(), ScreenKind::Launcher);
    sh(
        &mut p,
        "am start -n com.zhiliaoapp.musically/com.ss.android.ugc.aweme.splash.SplashActivity",
    );
    assert_eq!(p.screen(), ScreenKind::UpdatePrompt);
    tap_id(&mut p, "update_confirm");
    assert_eq!(p.screen(), ScreenKind::PlayStore);
    assert!(
        sh(&mut p, "dumpsys window")
            .contains("mCurrentFocus=Window{8f3a2c1 u0 com.android.vending/")
    );
    sh(&mut p, "input keyevent KEYCODE_HOME");
    assert_eq!(p.screen(), ScreenKind::Launcher);
}

#[test]
fn permission_dialog_on_gallery_allow_and_deny() {
    let mut p = launched(UiVariant::B);
    p.config_mut().media_permission = false;
    tap_id(&mut p, "tab_create");
    assert_eq!(p.screen(), ScreenKind::PermissionDialog);
    let nodes = dump(&mut p);
    assert!(
        nodes
            .iter()
            .all(|n| n.get("package") == "com.google.android.permissioncontroller")
    );
    tap_label(&mut p, "Don't allow");
    assert_eq!(p.screen(), ScreenKind::Feed);
    tap_id(&mut p, "tab_create");
    let nodes = dump(&mut p);
    let allow = nodes
        .iter()
        .find(|n| {
            n.get("resource-id") == "com.android.permissioncontroller:id/permission_allow_button"
        })
        .expect("allow button");
    assert_eq!(allow.get("text"), "Allow");
    tap_label(&mut p, "Allow");
    assert_eq!(p.screen(), ScreenKind::Gallery);
    assert!(p.config().media_permission);
    assert!(p.actions().contains(&Action::PopupAnswered {
        popup: Popup::PermissionDialog,
        accepted: true
    }));
    // Granted: the gallery opens straight away next time.
    sh(&mut p, "input keyevent 4");
    tap_id(&mut p, "tab_create");
    assert_eq!(p.screen(), ScreenKind::Gallery);
}

#[test]
fn pm_grant_and_injected_permission_dialog() {
    let mut p = launched(UiVariant::A);
    p.config_mut().media_permission = false;
    sh(
        &mut p,
        "pm grant com.zhiliaoapp.musically android.permission.READ_MEDIA_VIDEO",
    );
    assert!(p.config().media_permission);
    p.inject_popup(Popup::PermissionDialog, PopupTrigger::Now);
    assert_eq!(p.screen(), ScreenKind::PermissionDialog);
    sh(&mut p, "input keyevent KEYCODE_BACK");
    assert_eq!(p.screen(), ScreenKind::Feed);
    assert!(p.actions().contains(&Action::PopupAnswered {
        popup: Popup::PermissionDialog,
        accepted: false
    }));
}

#[test]
fn account_outcomes_replace_the_app() {
    let cases = [
        (
            AccountState::LoggedOut,
            ScreenKind::LoggedOut,
            "login_title",
            "Log in to TikTok",
        ),
        (
            AccountState::Banned,
            ScreenKind::Banned,
            "ban_title",
            "Your account was permanently banned",
        ),
        (
            AccountState::Captcha,
            ScreenKind::Captcha,
            "captcha_title",
            "Verify to continue",
        ),
        (
            AccountState::VerificationRequired,
            ScreenKind::VerificationRequired,
            "verify_title",
            "Verify it's you",
        ),
    ];
    for variant in VARIANTS {
        for (state, kind, id, text) in cases {
            let mut p = phone(variant);
            p.config_mut().account = state;
            sh(&mut p, "monkey -p com.zhiliaoapp.musically 1");
            assert_eq!(p.screen(), kind);
            let nodes = dump(&mut p);
            assert_eq!(
                find(&nodes, &p, id).map(|n| n.get("text")),
                Some(text),
                "{state:?}"
            );
            assert!(find(&nodes, &p, "feed_pager").is_none());
            sh(&mut p, "input keyevent KEYCODE_BACK");
            assert_eq!(p.screen(), ScreenKind::Launcher);
        }
    }
    // Banned → Log out → logged out.
    let mut p = launched(UiVariant::A);
    p.config_mut().account = AccountState::Banned;
    tap_id(&mut p, "ban_logout");
    assert_eq!(p.screen(), ScreenKind::LoggedOut);
}

#[test]
fn home_and_launcher_resume_the_same_screen() {
    let mut p = launched(UiVariant::A);
    tap_id(&mut p, "tab_profile");
    sh(&mut p, "input keyevent KEYCODE_HOME");
    assert_eq!(p.screen(), ScreenKind::Launcher);
    let nodes = dump(&mut p);
    assert!(
        nodes
            .iter()
            .all(|n| n.get("package") == "com.google.android.apps.nexuslauncher")
    );
    tap_label(&mut p, "TikTok");
    assert_eq!(p.screen(), ScreenKind::Profile);
    assert!(p.actions().contains(&Action::AppLaunched { cold: false }));
    // BACK from the profile goes to the feed, BACK from the feed leaves the app.
    sh(&mut p, "input keyevent 4; input keyevent 4");
    assert_eq!(p.screen(), ScreenKind::Launcher);
    assert!(p.app_running());
}

#[test]
fn placeholder_screens_stand_for_unknown_screens() {
    let mut p = launched(UiVariant::A);
    tap_id(&mut p, "tab_inbox");
    assert_eq!(p.screen(), ScreenKind::Placeholder);
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "placeholder_title").map(|n| n.get("text")),
        Some("Inbox")
    );
    sh(&mut p, "input keyevent 4");
    let author = p.current_video().expect("video").author;
    tap_id(&mut p, "author_name");
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "placeholder_title").map(|n| n.get("text").to_string()),
        Some(format!("@{author}"))
    );
}

#[test]
fn screen_off_blocks_input_and_dump() {
    let mut p = launched(UiVariant::A);
    sh(&mut p, "input keyevent KEYCODE_POWER");
    assert!(!p.screen_on());
    assert!(sh(&mut p, "dumpsys power").contains("mWakefulness=Asleep"));
    let o = p.shell("uiautomator dump");
    assert_eq!(o.exit, 1);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "ERROR: null root node returned by UiTestAutomationBridge.\n"
    );
    sh(&mut p, "input tap 1008 1388");
    assert!(p.liked_videos().is_empty());
    assert!(p.actions().contains(&Action::InputIgnored {
        reason: "screen off".into()
    }));
    sh(&mut p, "input keyevent KEYCODE_WAKEUP");
    assert!(sh(&mut p, "dumpsys power").contains("mWakefulness=Awake"));
    sh(&mut p, "input tap 1008 1388");
    assert_eq!(p.liked_videos().len(), 1);
}

#[test]
fn reboot_resets_the_app_and_delays_boot_completed() {
    let mut p = launched(UiVariant::A);
    p.config_mut().boot_delay_polls = 2;
    p.write("/data/local/tmp/keep", b"x".to_vec(), 0o644, 5)
        .unwrap();
    let o = p.shell("reboot");
    assert_eq!(o.exit, 0);
    assert!(p.take_reboot_request());
    assert!(!p.take_reboot_request());
    assert!(!p.app_running());
    assert_eq!(p.screen(), ScreenKind::Launcher);
    assert_eq!(sh(&mut p, "getprop sys.boot_completed"), "\n");
    assert_eq!(sh(&mut p, "getprop sys.boot_completed"), "\n");
    assert_eq!(sh(&mut p, "getprop sys.boot_completed"), "1\n");
    assert_eq!(p.read("/data/local/tmp/keep"), Some(b"x".to_vec()));
    assert!(p.actions().contains(&Action::Rebooted));
}

#[test]
fn action_log_serializes_to_tagged_json() {
    let mut p = launched(UiVariant::A);
    sh(&mut p, "input tap 1008 1388");
    let json = serde_json::to_value(p.actions()).expect("json");
    let kinds: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a.get("kind").and_then(|k| k.as_str()))
        .collect();
    assert_eq!(kinds, vec!["app_launched", "video_shown", "tap", "liked"]);
    assert_eq!(json[3]["video_id"], "vid-000000");
    assert_eq!(
        json[2]["node"]["resource_id"],
        "com.zhiliaoapp.musically:id/like_button"
    );
    assert_eq!(json[2]["node"]["bounds"]["left"], 960);
}

#[test]
fn huge_inputs_are_bounded() {
    let mut p = launched(UiVariant::A);
    tap_id(&mut p, "search_icon");
    let long = "a".repeat(200_000);
    sh(&mut p, &format!("input text {long}"));
    sh(&mut p, &format!("input text {long}"));
    let nodes = dump(&mut p);
    let text = find(&nodes, &p, "search_input")
        .expect("input")
        .get("text")
        .to_string();
    assert_eq!(text.len(), 4096);
    for _ in 0..50 {
        sh(&mut p, "input tap 60 156; input tap 980 144");
    }
    assert_eq!(p.screen(), ScreenKind::SearchInput);
}

#[test]
fn keyboard_knob_covers_the_bottom_and_back_hides_it_first() {
    let mut p = launched(UiVariant::A);
    p.config_mut().keyboard = true;
    assert!(sh(&mut p, "dumpsys input_method").contains("mInputShown=false"));
    tap_id(&mut p, "comment_button");
    tap_id(&mut p, "comment_input");
    assert!(p.keyboard_shown());
    assert!(sh(&mut p, "dumpsys input_method").contains("mInputShown=true"));
    // The input bar moved above the keyboard.
    let nodes = dump(&mut p);
    let post = find(&nodes, &p, "comment_post").expect("post").bounds();
    assert_eq!((post.top, post.bottom), (1388, 1500));
    sh(&mut p, "input text nice");
    // A tap where the bar used to be hits the keyboard, not the app.
    sh(&mut p, "input tap 976 2304");
    assert!(
        !p.actions()
            .iter()
            .any(|a| matches!(a, Action::Commented { .. }))
    );
    tap_id(&mut p, "comment_post");
    assert!(
        p.actions()
            .iter()
            .any(|a| matches!(a, Action::Commented { .. }))
    );
    // Posting unfocused the field: the keyboard is down. Focus again, then BACK twice.
    tap_id(&mut p, "comment_input");
    sh(&mut p, "input keyevent KEYCODE_BACK");
    assert!(!p.keyboard_shown());
    assert_eq!(p.screen(), ScreenKind::CommentSheet);
    sh(&mut p, "input keyevent KEYCODE_BACK");
    assert_eq!(p.screen(), ScreenKind::Feed);
    // The search screen focuses its field on arrival, so the keyboard comes up with it; the
    // on-screen back button navigates at once.
    tap_id(&mut p, "search_icon");
    assert!(p.keyboard_shown());
    tap_id(&mut p, "search_back");
    assert_eq!(p.screen(), ScreenKind::Feed);
    tap_id(&mut p, "search_icon");
    sh(&mut p, "input keyevent 4");
    assert_eq!(p.screen(), ScreenKind::SearchInput);
    sh(&mut p, "input keyevent 4");
    assert_eq!(p.screen(), ScreenKind::Feed);
}

#[test]
fn ads_knob_puts_sponsored_videos_in_the_feed() {
    for variant in VARIANTS {
        let mut p = launched(variant);
        let nodes = dump(&mut p);
        assert!(find(&nodes, &p, "ad_label").is_none());
        p.config_mut().ad_every = 3;
        sh(
            &mut p,
            "input swipe 540 1800 540 600; input swipe 540 1800 540 600",
        );
        let v = p.current_video().expect("video");
        assert!(v.sponsored && v.id == "ad-000002", "{v:?}");
        let nodes = dump(&mut p);
        assert_eq!(
            find(&nodes, &p, "ad_label").map(|n| n.get("text")),
            Some("Sponsored")
        );
        assert!(
            find(&nodes, &p, "video_caption")
                .expect("caption")
                .get("text")
                .ends_with("#ad")
        );
        sh(&mut p, "input swipe 540 1800 540 600");
        assert!(!p.current_video().expect("video").sponsored);
    }
}

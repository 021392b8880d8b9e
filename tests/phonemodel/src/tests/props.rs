//! Property tests: no input makes the model panic, and the dump stays well-formed.

use proptest::prelude::*;

use super::{launched, parse_xml};
use crate::{AccountState, Popup, PopupTrigger, ScreenKind, UiVariant, app_resource_id};

/// Words the shell knows, to steer generated command lines into real code paths.
const WORDS: &[&str] = &[
    "input",
    "tap",
    "swipe",
    "text",
    "keyevent",
    "uiautomator",
    "dump",
    "/dev/tty",
    "am",
    "start",
    "-n",
    "com.zhiliaoapp.musically/com.ss.android.ugc.aweme.splash.SplashActivity",
    "force-stop",
    "com.zhiliaoapp.musically",
    "broadcast",
    "-a",
    "android.intent.action.MEDIA_SCANNER_SCAN_FILE",
    "-d",
    "file:///sdcard/DCIM/Camera",
    "monkey",
    "-p",
    "getprop",
    "dumpsys",
    "battery",
    "package",
    "window",
    "power",
    "settings",
    "get",
    "put",
    "global",
    "pm",
    "list",
    "packages",
    "path",
    "grant",
    "ls",
    "-l",
    "cat",
    "rm",
    "-rf",
    "mkdir",
    "-p",
    "/sdcard/x",
    "/",
    "df",
    "echo",
    "exit",
    "sh",
    "-c",
    "screencap",
    "wm",
    "size",
    "reboot",
    "KEYCODE_BACK",
    "KEYCODE_ENTER",
    "4",
    "66",
    "67",
    "3",
    "26",
    "540",
    "1200",
    "1008",
    "1388",
    "2316",
    "&&",
    "||",
    ";",
    "'",
    "\"",
    "\\",
    ">",
    "2>&1",
    "%s",
    "#",
    "|",
    "&",
    "(",
    "x\u{0}y",
    "héllo",
    "<&>",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
        1 => (-5000i64..5000).prop_map(|n| n.to_string()),
    ]
}

fn command_line() -> impl Strategy<Value = String> {
    proptest::collection::vec(word(), 0..12).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(cmd in any::<String>()) {
        let mut p = launched(UiVariant::A);
        let _ = p.shell(&cmd);
    }

    #[test]
    fn command_sequences_never_panic_and_dumps_stay_well_formed(
        cmds in proptest::collection::vec(command_line(), 1..8),
        variant in prop_oneof![Just(UiVariant::A), Just(UiVariant::B)],
    ) {
        let mut p = launched(variant);
        for c in &cmds {
            let o = p.shell(c);
            if o.exit == 127 && !c.contains('>') {
                let mut all = o.stdout.clone();
                all.extend_from_slice(&o.stderr);
                let err = String::from_utf8_lossy(&all);
                prop_assert!(err.contains("inaccessible or not found") || err.contains("/system/bin/sh: "), "{err}");
            }
        }
        if let Some(xml) = p.ui_xml() {
            let nodes = parse_xml(&xml);
            prop_assert!(!nodes.is_empty());
        }
    }
}

/// One structured input, for the random-walk property.
#[derive(Debug, Clone)]
enum Step {
    Tap(i32, i32),
    Swipe(i32, i32, i32, i32),
    Key(&'static str),
    Text(String),
    Launch,
    ForceStop,
    Scan,
    Popup(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0i32..1080, 0i32..2400).prop_map(|(x, y)| Step::Tap(x, y)),
        2 => (0i32..1080, 0i32..2400, 0i32..1080, 0i32..2400).prop_map(|(a, b, c, d)| Step::Swipe(a, b, c, d)),
        2 => proptest::sample::select(&["KEYCODE_BACK", "KEYCODE_ENTER", "KEYCODE_DEL", "KEYCODE_HOME", "KEYCODE_POWER", "KEYCODE_A", "KEYCODE_SPACE"][..]).prop_map(Step::Key),
        1 => "[a-z%s.#]{1,12}".prop_map(Step::Text),
        1 => Just(Step::Launch),
        1 => Just(Step::ForceStop),
        1 => Just(Step::Scan),
        1 => any::<bool>().prop_map(Step::Popup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random walks through the app, with random knobs: every dump parses, and the screen the
    /// model reports carries its signature in the dump.
    #[test]
    fn random_walks_keep_screen_and_dump_consistent(
        steps in proptest::collection::vec(step(), 1..40),
        variant in prop_oneof![Just(UiVariant::A), Just(UiVariant::B)],
        keyboard in any::<bool>(),
        ads in 0u32..4,
        permission in any::<bool>(),
        account in 0usize..5,
    ) {
        let mut p = launched(variant);
        p.write("/sdcard/DCIM/Camera/clip.mp4", vec![0; 8], 0o644, 1).map_err(TestCaseError::fail)?;
        {
            let c = p.config_mut();
            c.keyboard = keyboard;
            c.ad_every = ads;
            c.media_permission = permission;
            c.account = [
                AccountState::Active,
                AccountState::Active,
                AccountState::LoggedOut,
                AccountState::Captcha,
                AccountState::Banned,
            ][account];
        }
        for s in &steps {
            let cmd = match s {
                Step::Tap(x, y) => format!("input tap {x} {y}"),
                Step::Swipe(a, b, c, d) => format!("input swipe {a} {b} {c} {d} 200"),
                Step::Key(k) => format!("input keyevent {k}"),
                Step::Text(t) => format!("input text '{t}'"),
                Step::Launch => "monkey -p com.zhiliaoapp.musically 1".into(),
                Step::ForceStop => "am force-stop com.zhiliaoapp.musically".into(),
                Step::Scan => "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d file:///sdcard/DCIM".into(),
                Step::Popup(update) => {
                    let popup = if *update { Popup::UpdatePrompt } else { Popup::PermissionDialog };
                    p.inject_popup(popup, PopupTrigger::AfterDumps(1));
                    continue;
                }
            };
            let o = p.shell(&cmd);
            prop_assert_eq!(o.exit, 0, "{}: {}", cmd, String::from_utf8_lossy(&o.stderr));
            let kind = p.screen();
            let Some(xml) = p.ui_xml() else {
                prop_assert_eq!(kind, ScreenKind::ScreenOff);
                continue;
            };
            let nodes = parse_xml(&xml);
            let has = |id: &str| nodes.iter().any(|n| n.get("resource-id") == app_resource_id(id, variant));
            let ok = match kind {
                ScreenKind::Feed => has("top_foryou") && has("feed_pager"),
                ScreenKind::SearchInput => has("search_input") && has("search_submit"),
                ScreenKind::SearchResults => has("results_grid"),
                ScreenKind::Player => has("back_button") && has("feed_pager"),
                ScreenKind::CommentSheet => has("comment_sheet"),
                ScreenKind::Profile => has("profile_edit"),
                ScreenKind::EditProfile => has("edit_save"),
                ScreenKind::Gallery => has("gallery_next"),
                ScreenKind::PostScreen => has("post_publish"),
                ScreenKind::Placeholder => has("placeholder_title"),
                ScreenKind::UpdatePrompt => has("update_dialog"),
                ScreenKind::LoggedOut => has("login_title"),
                ScreenKind::Banned => has("ban_title"),
                ScreenKind::Captcha => has("captcha_title"),
                ScreenKind::VerificationRequired => has("verify_title"),
                ScreenKind::PermissionDialog => nodes.iter().any(|n| n.get("text") == "Allow"),
                ScreenKind::Launcher => nodes.iter().all(|n| n.get("package") == "com.google.android.apps.nexuslauncher"),
                ScreenKind::PlayStore => nodes.iter().all(|n| n.get("package") == "com.android.vending"),
                ScreenKind::SessionExpired => has("session_title"),
                ScreenKind::Suspended => has("suspend_title"),
                ScreenKind::RateLimited => has("rate_title"),
                ScreenKind::NotResponding | ScreenKind::KeepsStopping | ScreenKind::LowBattery => {
                    nodes.iter().any(|n| n.get("resource-id") == "android:id/alertTitle")
                }
                ScreenKind::Keyguard => nodes.iter().all(|n| n.get("package") == "com.android.systemui"),
                ScreenKind::ImageViewer => nodes.iter().all(|n| n.get("package") == "com.google.android.apps.photos"),
                ScreenKind::ScreenOff => false,
            };
            prop_assert!(ok, "{:?} not shown by its dump after `{}`", kind, cmd);
        }
    }
}

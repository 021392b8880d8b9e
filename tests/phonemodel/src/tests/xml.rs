//! Every screen in both variants: well-formed XML, the documented signature nodes, and variants
//! that differ only in resource-ids.

use super::{XNode, dump, find, launched, phone, sh, tap_id};
use crate::{AccountState, Phone, Popup, PopupTrigger, ScreenKind, UiVariant};

/// Drives a fresh phone of `variant` to each screen, returning the phone there.
fn reach(variant: UiVariant, kind: ScreenKind) -> Phone {
    let mut p = launched(variant);
    match kind {
        ScreenKind::Feed => {}
        ScreenKind::ScreenOff | ScreenKind::Launcher => {
            sh(&mut p, "input keyevent KEYCODE_HOME");
        }
        ScreenKind::PlayStore => {
            p.inject_popup(Popup::UpdatePrompt, PopupTrigger::Now);
            tap_id(&mut p, "update_confirm");
        }
        ScreenKind::SearchInput => tap_id(&mut p, "search_icon"),
        ScreenKind::SearchResults => {
            tap_id(&mut p, "search_icon");
            sh(
                &mut p,
                "input text \"fish & chips <\\\"quoted\\\">\" && input keyevent 66",
            );
        }
        ScreenKind::Player => {
            p = reach(variant, ScreenKind::SearchResults);
            tap_id(&mut p, "result_tile");
        }
        ScreenKind::CommentSheet => {
            tap_id(&mut p, "comment_button");
            tap_id(&mut p, "comment_input");
            sh(&mut p, "input text 'a%s&%s\"b\"'");
        }
        ScreenKind::Profile => tap_id(&mut p, "tab_profile"),
        ScreenKind::EditProfile => {
            tap_id(&mut p, "tab_profile");
            tap_id(&mut p, "profile_edit");
            tap_id(&mut p, "edit_bio");
            sh(&mut p, "input text \"it's <b>\"");
        }
        ScreenKind::Gallery => {
            p.write("/sdcard/DCIM/Camera/v&1.mp4", vec![0; 4], 0o644, 1)
                .expect("write");
            sh(
                &mut p,
                "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d 'file:///sdcard/DCIM/Camera/v%261.mp4'",
            );
            tap_id(&mut p, "tab_create");
        }
        ScreenKind::PostScreen => {
            p = reach(variant, ScreenKind::Gallery);
            tap_id(&mut p, "gallery_item");
            tap_id(&mut p, "gallery_next");
        }
        ScreenKind::Placeholder => tap_id(&mut p, "tab_friends"),
        ScreenKind::UpdatePrompt => p.inject_popup(Popup::UpdatePrompt, PopupTrigger::Now),
        ScreenKind::PermissionDialog => p.inject_popup(Popup::PermissionDialog, PopupTrigger::Now),
        ScreenKind::LoggedOut => p.config_mut().account = AccountState::LoggedOut,
        ScreenKind::Banned => p.config_mut().account = AccountState::Banned,
        ScreenKind::Captcha => p.config_mut().account = AccountState::Captcha,
        ScreenKind::SessionExpired => p.config_mut().account = AccountState::SessionExpired,
        ScreenKind::Suspended => p.config_mut().account = AccountState::Suspended,
        ScreenKind::RateLimited => p.config_mut().account = AccountState::RateLimited,
        ScreenKind::NotResponding => p.inject_fault(
            crate::Fault::NotResponding { returns: 0 },
            crate::FaultTrigger::Now,
        ),
        ScreenKind::KeepsStopping => {
            p.inject_fault(crate::Fault::KeepsStopping, crate::FaultTrigger::Now)
        }
        ScreenKind::LowBattery => {
            p.inject_fault(crate::Fault::LowBattery, crate::FaultTrigger::Now)
        }
        ScreenKind::Keyguard => {
            p.config_mut().behaviour.lock_screen = true;
            p.set_screen_on(false);
            sh(&mut p, "input keyevent 224");
        }
        ScreenKind::VerificationRequired => {
            p.config_mut().account = AccountState::VerificationRequired
        }
        ScreenKind::ImageViewer => {
            sh(
                &mut p,
                "am start -a android.intent.action.VIEW -d file:///sdcard/x.png -t image/png",
            );
        }
    }
    p
}

/// Signature ids per screen (from SCREENS.md).
fn signature(kind: ScreenKind) -> &'static [&'static str] {
    match kind {
        ScreenKind::Feed => &["top_foryou", "feed_pager", "nav_bar"],
        ScreenKind::SearchInput => &["search_input", "search_submit"],
        ScreenKind::SearchResults => &["results_grid", "result_tile", "result_caption"],
        ScreenKind::Player => &["back_button", "feed_pager", "video_caption", "like_button"],
        ScreenKind::CommentSheet => &["comment_sheet", "comment_input", "comment_post"],
        ScreenKind::Profile => &[
            "profile_edit",
            "profile_username",
            "profile_bio",
            "profile_grid",
        ],
        ScreenKind::EditProfile => &[
            "edit_title",
            "edit_name",
            "edit_username",
            "edit_bio",
            "edit_save",
        ],
        ScreenKind::Gallery => &["gallery_title", "gallery_next", "gallery_item"],
        ScreenKind::PostScreen => &["post_publish", "post_caption"],
        ScreenKind::Placeholder => &["placeholder_title"],
        ScreenKind::UpdatePrompt => &["update_dialog", "update_dismiss", "update_confirm"],
        ScreenKind::LoggedOut => &["login_title"],
        ScreenKind::Banned => &["ban_title", "ban_logout"],
        ScreenKind::Captcha => &["captcha_title", "captcha_slider"],
        ScreenKind::VerificationRequired => &["verify_title", "verify_code"],
        ScreenKind::SessionExpired => &["session_title", "session_ok"],
        ScreenKind::Suspended => &["suspend_title", "suspend_appeal"],
        ScreenKind::RateLimited => &["rate_dialog", "rate_title", "rate_ok"],
        ScreenKind::ScreenOff
        | ScreenKind::Launcher
        | ScreenKind::PlayStore
        | ScreenKind::PermissionDialog
        | ScreenKind::NotResponding
        | ScreenKind::KeepsStopping
        | ScreenKind::LowBattery
        | ScreenKind::Keyguard
        | ScreenKind::ImageViewer => &[],
    }
}

const ALL: [ScreenKind; 26] = [
    ScreenKind::Launcher,
    ScreenKind::PlayStore,
    ScreenKind::Feed,
    ScreenKind::SearchInput,
    ScreenKind::SearchResults,
    ScreenKind::Player,
    ScreenKind::CommentSheet,
    ScreenKind::Profile,
    ScreenKind::EditProfile,
    ScreenKind::Gallery,
    ScreenKind::PostScreen,
    ScreenKind::Placeholder,
    ScreenKind::UpdatePrompt,
    ScreenKind::PermissionDialog,
    ScreenKind::LoggedOut,
    ScreenKind::Banned,
    ScreenKind::Captcha,
    ScreenKind::VerificationRequired,
    ScreenKind::SessionExpired,
    ScreenKind::Suspended,
    ScreenKind::RateLimited,
    ScreenKind::NotResponding,
    ScreenKind::KeepsStopping,
    ScreenKind::LowBattery,
    ScreenKind::Keyguard,
    ScreenKind::ImageViewer,
];

/// Signatures must not match any other screen, or flows could not tell screens apart.
#[test]
fn every_screen_is_well_formed_and_has_its_signature() {
    for variant in [UiVariant::A, UiVariant::B] {
        for kind in ALL {
            let mut p = reach(variant, kind);
            assert_eq!(p.screen(), kind, "{variant:?}");
            let nodes = dump(&mut p);
            assert!(!nodes.is_empty());
            let root = &nodes[0];
            assert_eq!(root.get("bounds"), "[0,0][1080,2400]");
            assert_eq!(root.depth, 1);
            for id in signature(kind) {
                assert!(
                    find(&nodes, &p, id).is_some(),
                    "{kind:?}/{variant:?} lacks {id}"
                );
            }
            for other in ALL.iter().filter(|o| **o != kind) {
                let sig = signature(*other);
                if !sig.is_empty()
                    && kind != ScreenKind::CommentSheet
                    && kind != ScreenKind::UpdatePrompt
                    && kind != ScreenKind::RateLimited
                {
                    assert!(
                        !sig.iter().all(|id| find(&nodes, &p, id).is_some()),
                        "{kind:?} also matches {other:?}"
                    );
                }
            }
            // Bounds are sane and within the screen; indexes count siblings.
            for n in &nodes {
                let b = n.bounds();
                assert!(
                    b.left >= 0 && b.top >= 0 && b.right <= 1080 && b.bottom <= 2400,
                    "{b:?}"
                );
                assert!(b.left <= b.right && b.top <= b.bottom);
                assert!(n.get("index").parse::<usize>().is_ok());
            }
            let app = nodes
                .iter()
                .all(|n| n.get("package") == "com.zhiliaoapp.musically");
            let system = matches!(
                kind,
                ScreenKind::Launcher
                    | ScreenKind::PlayStore
                    | ScreenKind::PermissionDialog
                    | ScreenKind::NotResponding
                    | ScreenKind::KeepsStopping
                    | ScreenKind::LowBattery
                    | ScreenKind::Keyguard
                    | ScreenKind::ImageViewer
            );
            assert_eq!(app, !system, "{kind:?} package");
        }
    }
}

fn without_ids(nodes: &[XNode]) -> Vec<Vec<(String, String)>> {
    nodes
        .iter()
        .map(|n| {
            n.attrs
                .iter()
                .filter(|(k, _)| *k != "resource-id")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn variants_differ_only_in_resource_ids() {
    for kind in ALL {
        let mut a = reach(UiVariant::A, kind);
        let mut b = reach(UiVariant::B, kind);
        let (na, nb) = (dump(&mut a), dump(&mut b));
        assert_eq!(without_ids(&na), without_ids(&nb), "{kind:?}");
        let app_ids = |nodes: &[XNode]| -> Vec<String> {
            nodes
                .iter()
                .map(|n| n.get("resource-id").to_string())
                .filter(|id| id.starts_with("com.zhiliaoapp.musically:id/"))
                .collect()
        };
        let (ia, ib) = (app_ids(&na), app_ids(&nb));
        assert_eq!(ia.len(), ib.len());
        if !ia.is_empty() {
            assert!(
                ia.iter().zip(&ib).all(|(x, y)| x != y),
                "{kind:?}: ids must be renamed in B"
            );
        }
    }
}

#[test]
fn attribute_values_are_escaped_and_round_trip() {
    let mut p = reach(UiVariant::A, ScreenKind::SearchResults);
    let raw = sh(&mut p, "uiautomator dump /dev/tty");
    assert!(
        raw.contains("fish &amp; chips &lt;&quot;quoted&quot;&gt;"),
        "{raw}"
    );
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "search_input").map(|n| n.get("text")),
        Some("fish & chips <\"quoted\">")
    );
    let mut e = reach(UiVariant::A, ScreenKind::EditProfile);
    let nodes = dump(&mut e);
    assert_eq!(
        find(&nodes, &e, "edit_bio").map(|n| n.get("text")),
        Some("it's <b>")
    );
    let mut g = reach(UiVariant::B, ScreenKind::Gallery);
    let nodes = dump(&mut g);
    assert_eq!(
        find(&nodes, &g, "gallery_item").map(|n| n.get("content-desc")),
        Some("Video, 0:15")
    );
}

#[test]
fn newlines_and_control_characters_stay_well_formed() {
    let mut p = launched(UiVariant::A);
    tap_id(&mut p, "comment_button");
    tap_id(&mut p, "comment_input");
    sh(&mut p, "input text 'line1\nline2\u{1}\t<end>'");
    let nodes = dump(&mut p);
    assert_eq!(
        find(&nodes, &p, "comment_input").map(|n| n.get("text")),
        Some("line1\nline2\t<end>")
    );
}

#[test]
fn default_dump_goes_to_the_sdcard_file() {
    let mut p = phone(UiVariant::A);
    let o = sh(&mut p, "uiautomator dump");
    assert_eq!(o, "UI hierchary dumped to: /sdcard/window_dump.xml\n");
    let xml =
        String::from_utf8(p.read("/sdcard/window_dump.xml").expect("dump file")).expect("utf8");
    let nodes = super::parse_xml(&xml);
    assert!(nodes.iter().any(|n| n.get("text") == "TikTok"));
    assert_eq!(sh(&mut p, "cat /sdcard/window_dump.xml"), xml);
    assert_eq!(
        sh(
            &mut p,
            "uiautomator dump --compressed /data/local/tmp/d.xml"
        ),
        "UI hierchary dumped to: /data/local/tmp/d.xml\n"
    );
    assert!(p.stat("/data/local/tmp/d.xml").is_some());
    assert_eq!(p.ui_xml().as_deref(), Some(xml.as_str()));
}

#[test]
fn dump_starts_exactly_like_android() {
    let mut p = launched(UiVariant::A);
    let raw = sh(&mut p, "uiautomator dump /dev/tty");
    let expected = "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">\
        <node index=\"0\" text=\"\" resource-id=\"\" class=\"android.widget.FrameLayout\" \
        package=\"com.zhiliaoapp.musically\" content-desc=\"\" checkable=\"false\" checked=\"false\" \
        clickable=\"false\" enabled=\"true\" focusable=\"false\" focused=\"false\" scrollable=\"false\" \
        long-clickable=\"false\" password=\"false\" selected=\"false\" bounds=\"[0,0][1080,2400]\">";
    assert!(raw.starts_with(expected), "{}", &raw[..raw.len().min(600)]);
    assert!(raw.ends_with("</node></hierarchy>UI hierchary dumped to: /dev/tty\n"));
}

//! The `post_video` executor against the phone model: pushing, scanning, captions, posting
//! once across retries and interruptions, and the markers that tell posts apart.

use phonefarm_flows::PackSet;
use phonefarm_flows::flows::*;
use phonefarm_phonemodel::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::flows::*;
use crate::model::*;
use crate::packs::*;

pub(crate) fn post_inputs() -> PostVideoInputs {
    PostVideoInputs {
        file_name: "content-42.mp4".into(),
        video: b"\x00\x00\x00\x18ftypmp42 fake video".to_vec(),
        caption: "Sunday pasta, 100% homemade".into(),
        hashtags: vec!["cooking".into(), "#pasta".into()],
        marker: None,
    }
}

/// What a run did that posting leaves behind: pushes are not actions, so count scans, taps on
/// Post (a `VideoPosted`) and the posts themselves.
fn posted_captions(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::VideoPosted { caption, .. } => Some(caption.clone()),
            _ => None,
        })
        .collect()
}

fn scanned(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::MediaScanned { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn post_video_pushes_scans_picks_captions_and_posts() {
    for (variant, permission) in [(UiVariant::A, true), (UiVariant::B, false)] {
        let h = Harness::new(PhoneConfig {
            variant,
            media_permission: permission,
            ..PhoneConfig::default()
        });
        let inputs = post_inputs();
        let result = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
            .await
            .unwrap();
        let caption = "Sunday pasta, 100% homemade #cooking #pasta";
        assert_eq!(
            result,
            json!({"posted": true, "already_posted": false, "publish_tapped": true,
                   "file": "content-42.mp4", "caption": caption})
        );
        assert_eq!(
            h.started_steps(),
            [
                "check_profile",
                "push_media",
                "open_gallery",
                "select_media",
                "caption",
                "publish",
                "confirm_posted"
            ]
        );
        let phone = h.device.phone();
        assert_eq!(phone.posts().len(), 1, "{variant:?}");
        assert_eq!(phone.posts()[0].caption, caption);
        assert!(phone.read("/sdcard/DCIM/Camera/content-42.mp4").is_some());
        if !permission {
            assert!(phone.actions().contains(&Action::PopupAnswered {
                popup: Popup::PermissionDialog,
                accepted: true
            }));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn post_video_run_twice_posts_once() {
    for variant in VARIANTS {
        let h = Harness::variant(variant);
        let inputs = post_inputs();
        let first = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
            .await
            .unwrap();
        assert_eq!(first["already_posted"], false);
        let actions = h.device.phone().take_actions();
        assert_eq!(posted_captions(&actions).len(), 1, "{variant:?}");

        let second = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
            .await
            .unwrap();
        assert_eq!(
            second,
            json!({"posted": true, "already_posted": true, "publish_tapped": false,
                   "file": "content-42.mp4",
                   "caption": "Sunday pasta, 100% homemade #cooking #pasta"}),
            "{variant:?}"
        );
        let actions = h.device.phone().take_actions();
        assert!(posted_captions(&actions).is_empty(), "{variant:?}");
        assert_eq!(scanned(&actions), 0, "nothing pushed or scanned again");
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                Action::UiDumped {
                    screen: ScreenKind::Gallery | ScreenKind::PostScreen
                }
            )),
            "the upload flow was not opened: {actions:?}"
        );
        assert_eq!(h.device.phone().posts().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn post_video_interrupted_after_publishing_is_not_posted_again_on_retry() {
    for variant in VARIANTS {
        let h = Harness::variant(variant);
        let mut inputs = post_inputs();
        inputs.marker = Some("pf-content-42".into());
        // The link drops the moment the post exists: the run cannot see the upload finish.
        h.device.cut_link_after_posts(Some(0));
        let err = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "device_error", "{err}");
        assert_eq!(err.step.as_deref(), Some("publish"));
        assert_eq!(err.partial["posted"], false);
        assert_eq!(err.partial["publish_tapped"], true);
        assert_eq!(h.device.phone().posts().len(), 1, "{variant:?}");

        // The retry (link back) finds the post by its marker and posts nothing.
        h.device.cut_link_after_posts(None);
        h.device.phone().take_actions();
        let retry = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
            .await
            .unwrap();
        assert_eq!(retry["posted"], true);
        assert_eq!(retry["already_posted"], true, "{variant:?}");
        let actions = h.device.phone().take_actions();
        assert!(posted_captions(&actions).is_empty(), "{actions:?}");
        assert_eq!(scanned(&actions), 0);
        let phone = h.device.phone();
        assert_eq!(phone.posts().len(), 1);
        assert_eq!(
            phone.posts()[0].caption,
            "Sunday pasta, 100% homemade #cooking #pasta pf-content-42"
        );
    }
}

/// Cancels the run when the named step starts (it fails at the next step boundary).
struct CancelAt {
    step: &'static str,
    cancel: CancellationToken,
}

impl phonefarm_flows::MilestoneSink for CancelAt {
    fn step_started(&self, step: &str) {
        if step == self.step {
            self.cancel.cancel();
        }
    }
    fn step_finished(&self, _step: &str, _ok: bool) {}
    fn progress(&self, _progress: &serde_json::Value) {}
}

#[tokio::test(start_paused = true)]
async fn post_video_interrupted_before_publishing_posts_on_retry() {
    let h = Harness::variant(UiVariant::A);
    let inputs = post_inputs();
    let ui = ui(&h.device);
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let pack = select_pack(&ui, &set, APP).await.unwrap();
    let sink = CancelAt {
        step: "caption",
        cancel: CancellationToken::new(),
    };
    let ctx = FlowCtx {
        ui: &ui,
        pack: &pack,
        sink: &sink,
        cancel: &sink.cancel,
        options: FlowOptions::default(),
    };
    let err = post_video(&ctx, &inputs).await.unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert_eq!(err.partial["publish_tapped"], false);
    assert!(h.device.phone().posts().is_empty());

    // The retry pushes the same file again and posts it, once.
    let retry = with_ctx(&h, async |ctx| post_video(ctx, &inputs).await)
        .await
        .unwrap();
    assert_eq!(retry["already_posted"], false);
    assert_eq!(posted_captions(h.device.phone().actions()).len(), 1);
    assert_eq!(h.device.phone().posts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_video_markers_tell_posts_apart() {
    let h = Harness::variant(UiVariant::B);
    let mut first = post_inputs();
    first.marker = Some("pf-421".into());
    with_ctx(&h, async |ctx| post_video(ctx, &first).await)
        .await
        .unwrap();
    // Same caption, another marker (a prefix of the first one's): a different post.
    let mut second = post_inputs();
    second.file_name = "content-42b.mp4".into();
    second.marker = Some("pf-42".into());
    let result = with_ctx(&h, async |ctx| post_video(ctx, &second).await)
        .await
        .unwrap();
    assert_eq!(result["already_posted"], false);
    // Another caption, the first marker: the first post, so nothing is posted.
    let mut third = post_inputs();
    third.caption = "Edited caption".into();
    third.marker = Some("pf-421".into());
    let result = with_ctx(&h, async |ctx| post_video(ctx, &third).await)
        .await
        .unwrap();
    assert_eq!(result["already_posted"], true);
    // Without a marker, another caption is another post.
    let mut fourth = post_inputs();
    fourth.caption = "Monday pasta".into();
    let result = with_ctx(&h, async |ctx| post_video(ctx, &fourth).await)
        .await
        .unwrap();
    assert_eq!(result["already_posted"], false);
    let captions: Vec<_> = h
        .device
        .phone()
        .posts()
        .iter()
        .map(|p| p.caption.clone())
        .collect();
    assert_eq!(
        captions,
        [
            "Monday pasta #cooking #pasta",
            "Sunday pasta, 100% homemade #cooking #pasta pf-42",
            "Sunday pasta, 100% homemade #cooking #pasta pf-421",
        ]
    );
}

#[test]
fn post_video_markers_are_checked() {
    let mut inputs = post_inputs();
    for bad in ["", "has space", "caf\u{e9}", &"x".repeat(65)] {
        inputs.marker = Some(bad.to_string());
        let err = inputs.validate().unwrap_err();
        assert_eq!(err.code(), "invalid_input:marker", "{bad:?}");
    }
    inputs.marker = Some("pf-42:ok#1".into());
    inputs.validate().unwrap();
    assert!(inputs.carries_marker("anything pf-42:ok#1"));
    assert!(!inputs.carries_marker("anything pf-42:ok#10"));
    inputs.marker = None;
    assert!(inputs.carries_marker("Sunday pasta,  100% homemade #cooking\n#pasta"));
    assert!(!inputs.carries_marker("Sunday pasta, 100% homemade #cooking"));
}

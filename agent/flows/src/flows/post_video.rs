//! `post_video`: make sure the video is not on the profile already, push it to the phone's
//! camera folder, have the media scanner index it, pick it in the app's gallery, write the
//! caption (and hashtags, and the marker if one is given) and post; done when the feed reports
//! the upload finished and the own profile shows a post carrying the marker.
//!
//! **Retry safety.** Every run first opens the own profile and looks for a post whose caption
//! carries the run's *marker* (see [`PostVideoInputs::marker`]); if one is there, the run posts
//! nothing and succeeds with `already_posted: true`. A run that died after tapping Post (the
//! link dropped, the agent restarted) can therefore be retried blindly: the retry finds the post
//! and stops. The marker is looked for among the captions the profile grid shows (the newest
//! posts, without scrolling: six on the phone model), so a retry must come before the account
//! has posted that many newer videos.
//!
//! Result: `{"posted": true, "already_posted": false, "publish_tapped": true, "file": "<name>",
//! "caption": "<caption as typed>"}`; when the post was found on the profile instead,
//! `already_posted` is `true` and `publish_tapped` `false`. On failure the partial result has the
//! same keys with `posted: false`; `publish_tapped: true` there means the Post button was tapped
//! and the video may well be online: a retry (which checks the profile first) is the way to find
//! out.

use std::time::Duration;

use serde_json::json;

use super::{FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, require, text_of, typeable};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::text::shell_quote;
use crate::ui::Screen;

/// Where pushed videos go (the gallery lists scanned videos under /sdcard).
pub const MEDIA_DIR: &str = "/sdcard/DCIM/Camera";

/// The longest marker accepted.
pub const MAX_MARKER_LEN: usize = 64;

/// What to post. The agent fetches `video_path` (API.md section 9) and hands over the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostVideoInputs {
    /// File name on the phone, e.g. `<content_id>.mp4`: `[A-Za-z0-9._-]`, a video extension.
    pub file_name: String,
    pub video: Vec<u8>,
    pub caption: String,
    pub hashtags: Vec<String>,
    /// What identifies this post on the profile, so a retry never posts twice.
    ///
    /// - `None`: the marker is the whole caption as typed ([`full_caption`](Self::full_caption)):
    ///   a post counts as this one when its caption equals it (whitespace runs compared as one
    ///   space). Two different items with the same caption and hashtags are then the same post
    ///   to this check: the second is reported `already_posted` and not posted.
    /// - `Some(marker)`: 1..=64 printable ASCII characters without whitespace (e.g.
    ///   `pf-<content_id>`), appended to the caption as ` <marker>` after the hashtags; a post
    ///   counts as this one when its caption has the marker as a whole word. Use it for long
    ///   captions (an app may shorten them on the profile) and whenever captions may repeat.
    pub marker: Option<String>,
}

impl PostVideoInputs {
    /// The caption as typed: the caption, then each hashtag as ` #tag`, then ` <marker>` if a
    /// marker is given.
    pub fn full_caption(&self) -> String {
        let mut out = self.caption.clone();
        for tag in &self.hashtags {
            out.push_str(" #");
            out.push_str(tag.trim_start_matches('#'));
        }
        if let Some(marker) = &self.marker {
            out.push(' ');
            out.push_str(marker);
        }
        out
    }

    /// Whether a caption read from the profile is this post's (see [`marker`](Self::marker)).
    pub fn carries_marker(&self, shown: &str) -> bool {
        match &self.marker {
            Some(marker) => shown.split_whitespace().any(|word| word == marker),
            None => {
                let full = self.full_caption();
                shown.split_whitespace().eq(full.split_whitespace())
            }
        }
    }

    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |what: &str, msg: &str| {
            Err(FlowError::new(
                FlowFailure::InvalidInput(what.into()),
                msg.to_string(),
            ))
        };
        let name_ok = !self.file_name.starts_with('.')
            && self.file_name.len() <= 120
            && self
                .file_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let ext_ok = [".mp4", ".mov", ".3gp", ".webm", ".mkv"]
            .iter()
            .any(|e| self.file_name.to_ascii_lowercase().ends_with(e));
        if !name_ok || !ext_ok {
            return bad(
                "file_name",
                "file name must be [A-Za-z0-9._-] with a video extension",
            );
        }
        if self.video.is_empty() {
            return bad("video", "the video is empty");
        }
        if self.caption.trim().is_empty() || self.caption.chars().count() > 4000 {
            return bad("caption", "caption must be 1..4000 characters");
        }
        if self.hashtags.len() > 30 {
            return bad("hashtags", "at most 30 hashtags");
        }
        if let Some(marker) = &self.marker {
            let ok = (1..=MAX_MARKER_LEN).contains(&marker.len())
                && marker.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return bad(
                    "marker",
                    "marker must be 1..64 printable ascii characters without spaces",
                );
            }
        }
        typeable("caption", &self.full_caption())
    }
}

const SELECTORS: &[&str] = &[
    "tab_home",
    "tab_profile",
    "tab_create",
    "profile_post",
    "profile_post_caption",
    "profile_empty",
    "gallery_item",
    "gallery_next",
    "post_caption",
    "post_publish",
    "upload_done",
];

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Posted,
    AlreadyPosted,
}

/// Posts one video, unless the profile shows it posted already.
pub async fn post_video<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &PostVideoInputs,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx);
    let remote = format!("{MEDIA_DIR}/{}", inputs.file_name);
    let caption = inputs.full_caption();
    let result = |posted: bool, already_posted: bool, publish_tapped: bool| {
        json!({
            "posted": posted,
            "already_posted": already_posted,
            "publish_tapped": publish_tapped,
            "file": inputs.file_name,
            "caption": caption,
        })
    };
    let mut publish_tapped = false;

    let steps = async {
        run.begin("check_profile")?;
        let r = async {
            open_profile(&mut run).await?;
            let what = "the profile's posts to show";
            let screen = run.expect_where(&["profile"], what, grid_loaded).await?;
            Ok(shown_captions(run.pack(), &screen)
                .iter()
                .any(|c| inputs.carries_marker(c)))
        }
        .await;
        if run.end(r)? {
            tracing::info!(file = %inputs.file_name, "the profile shows the post already");
            return Ok(Outcome::AlreadyPosted);
        }

        run.begin("push_media")?;
        let r = async {
            run.ui()
                .device()
                .push(inputs.video.clone(), &remote, 0o100_644)
                .await
                .map_err(|e| FlowError::new(FlowFailure::Device(e.to_string()), e.to_string()))?;
            let uri = shell_quote(&format!("file://{remote}"));
            run.ui()
                .run(&format!(
                    "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d {uri}"
                ))
                .await
                .map(drop)
                .map_err(|e| run.ui_error(e))
        }
        .await;
        run.end(r)?;

        run.begin("open_gallery")?;
        let r = async {
            let feed = run.ensure_feed().await?;
            run.tap(&feed, "tab_create").await?;
            run.expect(&["upload_gallery"]).await.map(drop)
        }
        .await;
        run.end(r)?;

        run.begin("select_media")?;
        let r = select_media(&mut run, &inputs.file_name).await;
        run.end(r)?;

        run.begin("caption")?;
        let r = async {
            let screen = run.expect(&["upload_caption"]).await?;
            run.tap(&screen, "post_caption").await?;
            run.type_text(&caption).await?;
            let shows = |p: &FlowPack, _: &str, s: &Screen| {
                text_of(p, &s.tree, "post_caption").is_some_and(|t| t == caption)
            };
            run.expect_where(&["upload_caption"], "the caption to show", shows)
                .await
                .map(drop)
        }
        .await;
        run.end(r)?;

        run.begin("publish")?;
        let r = async {
            let screen = run.expect(&["upload_caption"]).await?;
            // From here on the video may be online even if this run fails: say so.
            publish_tapped = true;
            run.tap(&screen, "post_publish").await?;
            run.expect(&["feed"]).await?;
            let deadline = run.ctx.options.screen_timeout.max(Duration::from_secs(60));
            let pack = run.pack();
            run.ui()
                .wait_until("the upload to finish", deadline, |s| {
                    pack.find(&s.tree, "upload_done")
                })
                .await
                .map(drop)
                .map_err(|e| run.ui_error(e))
        }
        .await;
        run.end(r)?;

        run.begin("confirm_posted")?;
        let r = async {
            open_profile(&mut run).await?;
            let on_profile = |p: &FlowPack, _: &str, s: &Screen| {
                shown_captions(p, s)
                    .iter()
                    .any(|c| inputs.carries_marker(c))
            };
            run.expect_where(
                &["profile"],
                "the new post to show on the profile",
                on_profile,
            )
            .await
            .map(drop)
        }
        .await;
        run.end(r)?;
        Ok(Outcome::Posted)
    }
    .await;
    match steps {
        Ok(Outcome::Posted) => Ok(result(true, false, true)),
        Ok(Outcome::AlreadyPosted) => Ok(result(true, true, false)),
        Err(e) => Err(run.fail(e, result(false, false, publish_tapped)).await),
    }
}

/// From wherever the app is, to the own profile.
async fn open_profile<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
) -> Result<(), FlowError> {
    let feed = run.ensure_feed().await?;
    run.tap(&feed, "tab_profile").await?;
    run.expect(&["profile"]).await.map(drop)
}

/// The profile's grid has loaded: it shows posts, or says there are none.
fn grid_loaded(pack: &FlowPack, _: &str, screen: &Screen) -> bool {
    pack.find(&screen.tree, "profile_post").is_some()
        || pack.find(&screen.tree, "profile_empty").is_some()
}

/// The captions of the posts the profile shows: each tile's caption text, and its
/// content-desc (which carries the caption too when the text is shortened or missing).
fn shown_captions<'s>(pack: &FlowPack, screen: &'s Screen) -> Vec<&'s str> {
    let tree = &screen.tree;
    let texts = pack
        .find_all(tree, "profile_post_caption")
        .into_iter()
        .filter_map(|i| tree.get(i))
        .map(|n| n.text.as_str());
    let descs = pack
        .find_all(tree, "profile_post")
        .into_iter()
        .filter_map(|i| tree.get(i))
        .map(|n| n.content_desc.as_str());
    texts
        .chain(descs)
        .filter(|t| !t.trim().is_empty())
        .collect()
}

async fn select_media<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    file_name: &str,
) -> Result<(), FlowError> {
    // Our file's tile, once the media scanner has indexed it.
    let ours = |pack: &FlowPack, screen: &Screen| {
        pack.find_all(&screen.tree, "gallery_item")
            .into_iter()
            .find(|&i| {
                screen
                    .tree
                    .get(i)
                    .is_some_and(|n| n.content_desc.ends_with(file_name))
            })
    };
    let what = format!("{file_name} to appear in the gallery");
    let screen = run
        .expect_where(&["upload_gallery"], &what, |p, _, s| ours(p, s).is_some())
        .await?;
    let pack = run.pack();
    let tile = ours(pack, &screen).and_then(|i| screen.tree.get(i));
    if let Some(node) = tile.filter(|n| !n.checked) {
        run.ui().tap_node(node).await.map_err(|e| run.ui_error(e))?;
    }
    let checked = |p: &FlowPack, _: &str, s: &Screen| {
        ours(p, s)
            .and_then(|i| s.tree.get(i))
            .is_some_and(|n| n.checked)
    };
    let what = format!("{file_name} to be selected");
    let screen = run
        .expect_where(&["upload_gallery"], &what, checked)
        .await?;
    run.tap(&screen, "gallery_next").await?;
    run.expect(&["upload_caption"]).await.map(drop)
}

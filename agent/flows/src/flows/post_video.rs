//! `post_video`: make sure the video is not on the profile already, push it to the phone's
//! camera folder, have the media scanner index it (and wait until the media store lists it, with
//! its duration), pick it in the app's gallery as a person would (the gallery shows thumbnails
//! and durations, not file names: the newest tile of the right duration), write the caption (and
//! hashtags, and the marker if one is given) and post; done when the feed reports the upload
//! finished and the own profile shows a post carrying the marker. A video held for review ends
//! the run with `account_outcome:under_review`; a push that finds the phone full, with
//! `device_error` (storage full).
//!
//! **Never twice.** A run interrupted after tapping Post (the app crashed, the phone rebooted)
//! looks at the profile for its caption before it posts again.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use super::run::step;
use super::{
    AccountOutcome, FlowCtx, FlowError, FlowFailure, HealthProblem, MilestoneSink, Run, by,
    require, text_of, typeable,
};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::text::shell_quote;
use crate::ui::{Screen, UiError};

/// Where pushed videos go (the gallery lists scanned videos under /sdcard).
pub const MEDIA_DIR: &str = "/sdcard/DCIM/Camera";

/// The longest marker accepted.
pub const MAX_MARKER_LEN: usize = 64;

/// What to post. The agent fetches `video_path` (the `post_video` request in the coordinator's OpenAPI document) and hands over the bytes.
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
    "upload_review",
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
    // The gallery needs the media permission; any other prompt is refused.
    let mut run = Run::new(ctx, &["media"]);
    let run = &mut run;
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
    let publish_tapped = AtomicBool::new(false);

    let steps = async {
        let shown = step!(run, "check_profile", { profile_shows(run, inputs).await })?;
        if shown {
            tracing::info!(file = %inputs.file_name, "the profile shows the post already");
            return Ok(Outcome::AlreadyPosted);
        }
        let duration = step!(run, "push_media", {
            push_media(run, inputs, &remote).await
        })?;
        step!(run, "open_gallery", { open_gallery(run).await.map(drop) })?;
        step!(run, "select_media", {
            select_media(run, duration).await.map(drop)
        })?;
        step!(run, "caption", {
            reach_caption(run, duration, &caption).await.map(drop)
        })?;
        step!(run, "publish", {
            // Interrupted after Post was tapped: the video may be online. Look first.
            if publish_tapped.load(Ordering::Relaxed) && profile_shows(run, inputs).await? {
                tracing::info!("the interrupted post is online: not posting again");
                return Ok(());
            }
            let screen = reach_caption(run, duration, &caption).await?;
            // From here on the video may be online even if this run fails: say so.
            publish_tapped.store(true, Ordering::Relaxed);
            publish(run, &screen).await
        })?;
        step!(run, "confirm_posted", {
            if profile_shows(run, inputs).await? {
                Ok(())
            } else {
                Err(run.flow_error("the new post does not show on the profile"))
            }
        })?;
        Ok(Outcome::Posted)
    }
    .await;
    match steps {
        Ok(Outcome::Posted) => Ok(result(true, false, true)),
        Ok(Outcome::AlreadyPosted) => Ok(result(true, true, false)),
        Err(e) => Err(run
            .fail(
                e,
                result(false, false, publish_tapped.load(Ordering::Relaxed)),
            )
            .await),
    }
}

/// Whether the own profile shows a post carrying the marker.
async fn profile_shows<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    inputs: &PostVideoInputs,
) -> Result<bool, FlowError> {
    let feed = run.ensure_feed().await?;
    let profile = run.tap_to(&feed, "tab_profile", &["profile"]).await?;
    let screen = if grid_loaded(run.pack(), "profile", &profile) {
        profile
    } else {
        let what = "the profile's posts to show";
        run.expect_where(&["profile"], what, grid_loaded).await?
    };
    Ok(shown_captions(run.pack(), &screen)
        .iter()
        .any(|c| inputs.carries_marker(c)))
}

/// Pushes the video, has the media scanner index it and waits until the media store lists it;
/// returns its duration as the store has it (milliseconds), if it says.
async fn push_media<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    inputs: &PostVideoInputs,
    remote: &str,
) -> Result<Option<u32>, FlowError> {
    let pushed = run
        .ui()
        .device()
        .push(inputs.video.clone(), remote, 0o100_644)
        .await;
    if let Err(e) = pushed {
        let message = e.to_string();
        if message.contains("No space left on device") {
            let detail = format!("storage full: pushing {remote} failed: {message}");
            return Err(FlowError::new(
                FlowFailure::Health {
                    problem: HealthProblem::StorageFull,
                    detail: detail.clone(),
                },
                detail,
            ));
        }
        return Err(run.ui_error(UiError::Device(e)));
    }
    let uri = shell_quote(&format!("file://{remote}"));
    run.ui()
        .run(&format!(
            "am broadcast -a android.intent.action.MEDIA_SCANNER_SCAN_FILE -d {uri}"
        ))
        .await
        .map_err(|e| run.ui_error(e))?;
    let data = match remote.strip_prefix("/sdcard/") {
        Some(rest) => format!("/storage/emulated/0/{rest}"),
        None => remote.to_string(),
    };
    let query = format!(
        "content query --uri content://media/external/video/media --projection _id:_data:duration --where \"_data='{data}'\""
    );
    let start = tokio::time::Instant::now();
    loop {
        let out = run.ui().run(&query).await.map_err(|e| run.ui_error(e))?;
        let text = out.stdout_lossy();
        if let Some(row) = text.lines().find(|l| l.starts_with("Row:")) {
            let duration = row
                .split(", ")
                .find_map(|f| f.trim().strip_prefix("duration="))
                .and_then(|d| d.trim().parse::<u32>().ok());
            return Ok(duration);
        }
        if start.elapsed() >= run.ctx.options.screen_timeout {
            return Err(run.flow_error(format!("the media scanner did not index {remote}")));
        }
        tokio::time::sleep(run.ui().config().poll_interval).await;
    }
}

/// From wherever the app is, to its gallery.
async fn open_gallery<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
) -> Result<Screen, FlowError> {
    let feed = run.ensure_feed().await?;
    run.tap_to(&feed, "tab_create", &["upload_gallery"]).await
}

/// `m:ss`, as galleries show durations.
fn duration_text(ms: u32) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The newest gallery tile (tiles come newest first) of the given duration (any, if unknown).
fn newest_tile(pack: &FlowPack, screen: &Screen, duration: Option<u32>) -> Option<usize> {
    let tree = &screen.tree;
    let want = duration.map(duration_text);
    pack.find_all(tree, "gallery_item").into_iter().find(|&i| {
        let Some(want) = &want else { return true };
        let Some(tile) = tree.get(i) else {
            return false;
        };
        tile.content_desc.ends_with(want.as_str())
            || tree.nodes()[i..tile.subtree_end.min(tree.nodes().len())]
                .iter()
                .any(|n| n.text == *want)
    })
}

/// From wherever the app is, to the post screen with our video picked.
async fn select_media<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    duration: Option<u32>,
) -> Result<Screen, FlowError> {
    if run.last_screen != "upload_gallery" {
        open_gallery(run).await?;
    }
    let what = "the new video to appear in the gallery";
    let has = |p: &FlowPack, _: &str, s: &Screen| newest_tile(p, s, duration).is_some();
    let screen = run.expect_where(&["upload_gallery"], what, has).await?;
    let pick = |p: &FlowPack, s: &Screen| newest_tile(p, s, duration);
    let picked = |p: &FlowPack, _: &str, s: &Screen| {
        newest_tile(p, s, duration)
            .and_then(|i| s.tree.get(i))
            .is_some_and(|n| n.checked)
    };
    let already = pick(run.pack(), &screen)
        .and_then(|i| screen.tree.get(i))
        .is_some_and(|n| n.checked);
    let screen = if already {
        screen
    } else {
        run.tap_expect(
            &screen,
            pick,
            &["upload_gallery"],
            "the video to be selected",
            picked,
        )
        .await?
    };
    run.tap_to(&screen, "gallery_next", &["upload_caption"])
        .await
}

/// The post screen with the caption typed, from wherever the app is.
async fn reach_caption<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    duration: Option<u32>,
    caption: &str,
) -> Result<Screen, FlowError> {
    let shows = |p: &FlowPack, _: &str, s: &Screen| {
        text_of(p, &s.tree, "post_caption").is_some_and(|t| t == caption)
    };
    let screen = if run.last_screen == "upload_caption" {
        run.expect(&["upload_caption"]).await?
    } else {
        select_media(run, duration).await?
    };
    if shows(run.pack(), "upload_caption", &screen) {
        return Ok(screen);
    }
    let focused = |p: &FlowPack, _: &str, s: &Screen| {
        p.find(&s.tree, "post_caption")
            .and_then(|m| s.tree.get(m.node))
            .is_some_and(|n| n.focused)
    };
    run.tap_expect(
        &screen,
        by("post_caption"),
        &["upload_caption"],
        "the caption to take focus",
        focused,
    )
    .await?;
    run.type_text(caption).await?;
    run.expect_where(&["upload_caption"], "the caption to show", shows)
        .await
}

/// Taps Post and waits for the upload to end: posted, or held for review (an account outcome).
async fn publish<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    screen: &Screen,
) -> Result<(), FlowError> {
    run.tap_to(screen, "post_publish", &["feed"]).await?;
    let deadline = run.ctx.options.screen_timeout.max(Duration::from_secs(60));
    let ended = |p: &FlowPack, _: &str, s: &Screen| {
        p.find(&s.tree, "upload_done").is_some() || p.find(&s.tree, "upload_review").is_some()
    };
    let screen = run
        .expect_within(&["feed"], "the upload to finish", deadline, ended)
        .await?;
    if run.pack().find(&screen.tree, "upload_review").is_some() {
        return Err(FlowError::new(
            FlowFailure::Account(AccountOutcome::UnderReview),
            "the posted video is under review",
        ));
    }
    Ok(())
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

//! `post_video`: push the video to the phone's camera folder, have the media scanner index it,
//! pick it in the app's gallery, write the caption (and hashtags) and post; done when the feed
//! reports the upload finished.
//!
//! Result: `{"posted": true, "file": "<name>", "caption": "<caption as typed>"}`.

use std::time::Duration;

use serde_json::json;

use super::{FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, require, text_of, typeable};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::text::shell_quote;
use crate::ui::Screen;

/// Where pushed videos go (the gallery lists scanned videos under /sdcard).
pub const MEDIA_DIR: &str = "/sdcard/DCIM/Camera";

/// What to post. The agent fetches `video_path` (API.md section 9) and hands over the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostVideoInputs {
    /// File name on the phone, e.g. `<content_id>.mp4`: `[A-Za-z0-9._-]`, a video extension.
    pub file_name: String,
    pub video: Vec<u8>,
    pub caption: String,
    pub hashtags: Vec<String>,
}

impl PostVideoInputs {
    /// The caption as typed: the caption, then each hashtag as ` #tag`.
    pub fn full_caption(&self) -> String {
        let mut out = self.caption.clone();
        for tag in &self.hashtags {
            out.push_str(" #");
            out.push_str(tag.trim_start_matches('#'));
        }
        out
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
        typeable("caption", &self.full_caption())
    }
}

const SELECTORS: &[&str] = &[
    "tab_home",
    "tab_create",
    "gallery_item",
    "gallery_next",
    "post_caption",
    "post_publish",
    "upload_done",
];

/// Posts one video.
pub async fn post_video<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &PostVideoInputs,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx);
    let remote = format!("{MEDIA_DIR}/{}", inputs.file_name);
    let caption = inputs.full_caption();
    let partial =
        |posted: bool| json!({"posted": posted, "file": inputs.file_name, "caption": caption});

    let steps = async {
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
        run.end(r)
    }
    .await;
    match steps {
        Ok(()) => Ok(partial(true)),
        Err(e) => Err(run.fail(e, partial(false)).await),
    }
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

//! `keyword_warmup`: for each keyword, search it, open the first result and watch
//! `videos_per_keyword` videos in the player (swiping up between them), liking each with
//! `like_probability`, and posting the planned comment (if any) on the first one.
//!
//! Result: `{"keywords": {"<kw>": {"videos_watched": 3, "liked": 1, "commented": false}}}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::run::step;
use super::{
    FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, WatchSeconds, by, check_probability,
    require, typeable,
};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::ui::Screen;
use crate::ui::keycode;

/// The comment to post for one keyword.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommentPlan {
    pub text: String,
}

/// `keyword_warmup.inputs` (their schema: the coordinator's OpenAPI document, `/openapi.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeywordWarmupInputs {
    pub keywords: Vec<String>,
    #[serde(default = "default_videos")]
    pub videos_per_keyword: u32,
    #[serde(default)]
    pub watch_seconds: WatchSeconds,
    #[serde(default)]
    pub like_probability: f64,
    #[serde(default)]
    pub comment_plan: Option<BTreeMap<String, CommentPlan>>,
}

fn default_videos() -> u32 {
    3
}

impl KeywordWarmupInputs {
    /// The API's rules, plus: every text must be typeable with `input text`.
    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |what: &str, msg: String| {
            Err(FlowError::new(FlowFailure::InvalidInput(what.into()), msg))
        };
        if self.keywords.is_empty() || self.keywords.len() > 20 {
            return bad("keywords", "1..20 keywords are required".into());
        }
        for (i, kw) in self.keywords.iter().enumerate() {
            if kw.trim().is_empty() || kw.chars().count() > 100 {
                return bad("keywords", format!("keyword {i} must be 1..100 characters"));
            }
            if self.keywords[..i].contains(kw) {
                return bad("keywords", format!("keyword {kw:?} is repeated"));
            }
            typeable("keyword", kw)?;
        }
        if !(1..=20).contains(&self.videos_per_keyword) {
            return bad(
                "videos_per_keyword",
                "videos_per_keyword must be 1..20".into(),
            );
        }
        self.watch_seconds.validate()?;
        check_probability(self.like_probability)?;
        if let Some(plan) = &self.comment_plan {
            let mut keys: Vec<_> = plan.keys().collect();
            let mut kws: Vec<_> = self.keywords.iter().collect();
            keys.sort();
            kws.sort();
            if keys != kws {
                return Err(FlowError::new(
                    FlowFailure::InvalidInput("needs_comment_plan".into()),
                    "comment_plan_keys_must_match_keywords",
                ));
            }
            for c in plan.values() {
                if c.text.is_empty() || c.text.chars().count() > 150 {
                    return bad(
                        "comment_plan",
                        "comment text must be 1..150 characters".into(),
                    );
                }
                typeable("comment", &c.text)?;
            }
        }
        Ok(())
    }
}

const SELECTORS: &[&str] = &[
    "tab_home",
    "search_icon",
    "search_clear",
    "search_submit",
    "result_tile",
    "feed_pager",
    "like_button",
    "comment_button",
    "comment_input",
    "comment_post",
    "search_input",
    "author_name",
    "video_caption",
];

#[derive(Debug, Default, Clone)]
struct KeywordResult {
    videos_watched: u32,
    liked: u32,
    commented: bool,
}

fn result(done: &BTreeMap<String, KeywordResult>) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = done
        .iter()
        .map(|(k, r)| {
            let v = json!({"videos_watched": r.videos_watched, "liked": r.liked, "commented": r.commented});
            (k.clone(), v)
        })
        .collect();
    json!({ "keywords": map })
}

/// Runs keyword warm-up; the result (or the partial result in the error) as documented above.
pub async fn keyword_warmup<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &KeywordWarmupInputs,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx, &[]);
    let run = &mut run;
    let mut done: BTreeMap<String, KeywordResult> = BTreeMap::new();
    for kw in &inputs.keywords {
        done.insert(kw.clone(), KeywordResult::default());
        let outcome = keyword(run, inputs, kw, &mut done).await;
        if let Err(e) = outcome {
            return Err(run.fail(e, result(&done)).await);
        }
    }
    Ok(result(&done))
}

async fn keyword<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    inputs: &KeywordWarmupInputs,
    kw: &str,
    done: &mut BTreeMap<String, KeywordResult>,
) -> Result<(), FlowError> {
    step!(run, format!("search:{kw}"), {
        search(run, kw).await.map(drop)
    })?;
    step!(run, format!("open_result:{kw}"), {
        open_result(run, kw).await.map(drop)
    })?;
    let comment = inputs
        .comment_plan
        .as_ref()
        .and_then(|p| p.get(kw))
        .map(|c| c.text.clone());
    for i in 0..inputs.videos_per_keyword {
        let comment = comment.as_deref().filter(|_| i == 0);
        // Set once this step has liked its video: an attempt after an interruption that finds
        // it liked knows the like is the run's.
        let mut liked_here = false;
        let (liked, commented) = step!(run, format!("watch:{kw}:{}", i + 1), {
            reach_player(run, kw, i).await?;
            watch_one(run, inputs, comment, &mut liked_here).await
        })?;
        let entry = done.entry(kw.to_string()).or_default();
        entry.videos_watched += 1;
        entry.liked += u32::from(liked);
        entry.commented |= commented;
        let entry = entry.clone();
        run.ctx.sink.progress(&json!({
            "keyword": kw,
            "videos_watched": entry.videos_watched,
            "liked": entry.liked,
            "commented": entry.commented,
        }));
        if i + 1 < inputs.videos_per_keyword {
            step!(run, format!("next_video:{kw}:{}", i + 2), {
                let screen = reach_player(run, kw, i).await?;
                run.swipe_next(&screen, "feed_pager", &["video"], which_video)
                    .await
                    .map(drop)
            })?;
        }
    }
    Ok(())
}

/// What tells two videos apart on screen: author and caption.
fn which_video(pack: &FlowPack, s: &Screen) -> String {
    let text = |name| super::text_of(pack, &s.tree, name).unwrap_or_default();
    format!("{}\n{}", text("author_name"), text("video_caption"))
}

/// From wherever the app is, to the results of `kw`.
async fn search<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    kw: &str,
) -> Result<Screen, FlowError> {
    let feed = run.ensure_feed().await?;
    let mut search = run.tap_to(&feed, "search_icon", &["search"]).await?;
    if run.pack().find(&search.tree, "search_clear").is_some() {
        let cleared = |p: &FlowPack, _: &str, s: &Screen| p.find(&s.tree, "search_clear").is_none();
        search = run
            .tap_expect(
                &search,
                by("search_clear"),
                &["search"],
                "the query to clear",
                cleared,
            )
            .await?;
    }
    drop(search);
    run.type_text(kw).await?;
    run.key(keycode::ENTER).await?;
    let results = run.expect(&["search_results"]).await?;
    // The results say what was searched: the text typed must be the keyword.
    let shown = super::text_of(run.pack(), &results.tree, "search_input").unwrap_or_default();
    if shown.trim() != kw.trim() {
        return Err(run.flow_error(format!("searched {shown:?} instead of {kw:?}")));
    }
    Ok(results)
}

/// From the results of `kw` (searching again if they are not on screen) to its first video.
async fn open_result<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    kw: &str,
) -> Result<Screen, FlowError> {
    let results = if run.last_screen == "search_results" {
        run.expect(&["search_results"]).await?
    } else {
        search(run, kw).await?
    };
    run.tap_to(&results, "result_tile", &["video"]).await
}

/// A video of `kw`'s results on screen: the one showing, or, after an interruption (the app
/// starts over on its feed), the one at `position` in the results, reached as a person would:
/// search again, open the first, swipe on to where the run was.
async fn reach_player<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    kw: &str,
    position: u32,
) -> Result<Screen, FlowError> {
    if run.last_screen == "video" {
        return run.expect(&["video"]).await;
    }
    let mut screen = open_result(run, kw).await?;
    for _ in 0..position {
        screen = run
            .swipe_next(&screen, "feed_pager", &["video"], which_video)
            .await?;
    }
    Ok(screen)
}

/// Watches the current video; returns (liked by this run, commented). `liked_here` says
/// whether an earlier attempt of the step liked it already.
async fn watch_one<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    inputs: &KeywordWarmupInputs,
    comment: Option<&str>,
    liked_here: &mut bool,
) -> Result<(bool, bool), FlowError> {
    run.expect(&["video"]).await?;
    let seconds = run.draw_watch(inputs.watch_seconds);
    run.dwell(seconds).await?;
    let mut liked = false;
    if run.chance(inputs.like_probability) || *liked_here {
        // A look after the dwell: the screen may have changed meanwhile.
        let screen = run.expect(&["video"]).await?;
        if run.node(&screen, "like_button")?.selected {
            // Liked already: by this step before an interruption, or by someone else.
            liked = *liked_here;
        } else {
            *liked_here = true;
            let liked_now = |pack: &FlowPack, _: &str, s: &Screen| {
                pack.find(&s.tree, "like_button")
                    .and_then(|m| s.tree.get(m.node))
                    .is_some_and(|n| n.selected)
            };
            run.tap_expect(
                &screen,
                by("like_button"),
                &["video"],
                "the like to register",
                liked_now,
            )
            .await?;
            liked = true;
        }
    }
    let commented = match comment {
        Some(text) => {
            post_comment(run, text).await?;
            true
        }
        None => false,
    };
    Ok((liked, commented))
}

/// Whether `text` is listed as a comment (not merely typed in the input).
fn listed(pack: &FlowPack, s: &Screen, text: &str) -> bool {
    let input = pack.find(&s.tree, "comment_input").map(|m| m.node);
    s.tree
        .nodes()
        .iter()
        .enumerate()
        .any(|(i, n)| n.text == text && Some(i) != input)
}

/// Posts `text` on the current video, unless it is there already (a step run again after an
/// interruption).
async fn post_comment<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    text: &str,
) -> Result<(), FlowError> {
    let screen = run.expect(&["video"]).await?;
    let sheet = run.tap_to(&screen, "comment_button", &["comments"]).await?;
    if !listed(run.pack(), &sheet, text) {
        let focused = |p: &FlowPack, _: &str, s: &Screen| {
            p.find(&s.tree, "comment_input")
                .and_then(|m| s.tree.get(m.node))
                .is_some_and(|n| n.focused)
        };
        run.tap_expect(
            &sheet,
            by("comment_input"),
            &["comments"],
            "the comment input to take focus",
            focused,
        )
        .await?;
        run.type_text(text).await?;
        let ready = |pack: &FlowPack, _: &str, s: &Screen| {
            pack.find(&s.tree, "comment_post")
                .and_then(|m| s.tree.get(m.node))
                .is_some_and(|n| n.enabled)
        };
        let sheet = run
            .expect_where(&["comments"], "the comment to reach the input", ready)
            .await?;
        // Posted: the draft is cleared and the comment is listed.
        let shows = |pack: &FlowPack, _: &str, s: &Screen| listed(pack, s, text);
        run.tap_expect(
            &sheet,
            by("comment_post"),
            &["comments"],
            "the comment to appear in the list",
            shows,
        )
        .await?;
    }
    run.key(keycode::BACK).await?;
    run.expect(&["video"]).await.map(drop)
}

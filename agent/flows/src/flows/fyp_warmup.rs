//! `fyp_warmup`: watch the For You feed for `duration_seconds`. A [`Judge`] decides from the
//! caption and hashtags on screen whether a video fits `judge_prompt`: relevant videos are
//! watched for `watch_seconds.max` and liked with `like_probability`, others are skipped after
//! `watch_seconds.min`.
//!
//! Result: `{"videos_watched": n, "relevant": r, "liked": l}`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::run::step;
use super::{
    FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, WatchSeconds, by, check_probability,
    require,
};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::ui::Screen;

/// Decides whether a video is relevant to the account's interests.
pub trait Judge: Send + Sync {
    fn relevant(&self, prompt: &str, caption: &str) -> bool;
}

/// The default judge: relevant when the caption (words and hashtags) shares a term of three or
/// more letters with the prompt, ignoring case and common words. Deterministic.
#[derive(Debug, Default, Clone, Copy)]
pub struct OverlapJudge;

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "from", "about", "videos", "video", "content",
    "like", "into", "are", "you", "your", "who", "what",
];

fn terms(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|t| t.chars().count() >= 3 && !STOPWORDS.contains(&t.as_str()))
        .collect()
}

impl Judge for OverlapJudge {
    fn relevant(&self, prompt: &str, caption: &str) -> bool {
        let wanted = terms(prompt);
        terms(caption).iter().any(|t| wanted.contains(t))
    }
}

/// `fyp_warmup.inputs` (their schema: the coordinator's OpenAPI document, `/openapi.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FypWarmupInputs {
    #[serde(default = "default_duration")]
    pub duration_seconds: u32,
    #[serde(default)]
    pub watch_seconds: WatchSeconds,
    pub judge_prompt: String,
    #[serde(default)]
    pub like_probability: f64,
}

fn default_duration() -> u32 {
    600
}

impl FypWarmupInputs {
    pub fn validate(&self) -> Result<(), FlowError> {
        if !(60..=3600).contains(&self.duration_seconds) {
            return Err(FlowError::new(
                FlowFailure::InvalidInput("duration_seconds".into()),
                "duration_seconds must be 60..3600",
            ));
        }
        let len = self.judge_prompt.chars().count();
        if self.judge_prompt.trim().is_empty() || len > 2000 {
            return Err(FlowError::new(
                FlowFailure::InvalidInput("missing_fyp_judge_prompt".into()),
                "judge_prompt must be 1..2000 characters",
            ));
        }
        self.watch_seconds.validate()?;
        check_probability(self.like_probability)
    }
}

const SELECTORS: &[&str] = &[
    "tab_home",
    "feed_pager",
    "video_caption",
    "like_button",
    "author_name",
];

/// What tells two feed videos apart: author, caption, like count.
fn which_video(pack: &FlowPack, s: &Screen) -> String {
    let text = |name| super::text_of(pack, &s.tree, name).unwrap_or_default();
    format!(
        "{}\n{}\n{}",
        text("author_name"),
        text("video_caption"),
        text("like_count")
    )
}

/// Runs FYP warm-up with the given judge.
pub async fn fyp_warmup<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &FypWarmupInputs,
    judge: &dyn Judge,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx, &[]);
    let run = &mut run;
    let (mut watched, mut relevant, mut liked) = (0u32, 0u32, 0u32);
    let result = |w: u32, r: u32, l: u32| json!({"videos_watched": w, "relevant": r, "liked": l});

    let r = step!(run, "open_feed", { run.ensure_feed().await.map(drop) });
    if let Err(e) = r {
        return Err(run.fail(e, result(watched, relevant, liked)).await);
    }
    let budget = Duration::from_secs(u64::from(inputs.duration_seconds));
    let start = tokio::time::Instant::now();
    // Dwells run `speed` times faster, and so does the budget they fill.
    let speed = ctx.options.speed.max(1e-3);
    while start.elapsed().as_secs_f64() * speed < budget.as_secs_f64() {
        let left = budget.as_secs_f64() - start.elapsed().as_secs_f64() * speed;
        let step = step!(run, format!("video:{}", watched + 1), {
            let screen = run.ensure_feed().await?;
            // A video without a caption is judged on nothing: not relevant.
            let caption =
                super::text_of(run.pack(), &screen.tree, "video_caption").unwrap_or_default();
            let fits = judge.relevant(&inputs.judge_prompt, &caption);
            let seconds = if fits {
                inputs.watch_seconds.max
            } else {
                inputs.watch_seconds.min
            };
            let seconds = seconds.min(left.ceil().max(1.0) as u32);
            run.dwell(seconds).await?;
            let mut like = false;
            let mut base = screen;
            if fits && run.chance(inputs.like_probability) {
                // A look after the dwell before liking: the screen may have changed.
                let screen = run.expect(&["feed"]).await?;
                base = screen.clone();
                if !run.node(&screen, "like_button")?.selected {
                    let liked_now = |pack: &FlowPack, _: &str, s: &Screen| {
                        pack.find(&s.tree, "like_button")
                            .and_then(|m| s.tree.get(m.node))
                            .is_some_and(|n| n.selected)
                    };
                    base = run
                        .tap_expect(
                            &screen,
                            by("like_button"),
                            &["feed"],
                            "the like to register",
                            liked_now,
                        )
                        .await?;
                    like = true;
                }
            }
            // The swipe goes where the pager was on the last read (a surprise meanwhile
            // shows on the read after it, which is also the next video's to judge).
            run.swipe_next(&base, "feed_pager", &["feed"], which_video)
                .await?;
            Ok((fits, like))
        });
        match step {
            Ok((fits, like)) => {
                watched += 1;
                relevant += u32::from(fits);
                liked += u32::from(like);
                run.ctx.sink.progress(&result(watched, relevant, liked));
            }
            Err(e) => return Err(run.fail(e, result(watched, relevant, liked)).await),
        }
    }
    Ok(result(watched, relevant, liked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_judge() {
        let j = OverlapJudge;
        assert!(j.relevant("home cooking and baking", "Easy pasta #cooking #food"));
        assert!(!j.relevant("home cooking", "Morning stretch routine #fitness #yoga"));
        assert!(
            !j.relevant("the videos", "the best videos"),
            "stop words do not count"
        );
        assert!(j.relevant("YOGA", "#yoga"));
    }
}

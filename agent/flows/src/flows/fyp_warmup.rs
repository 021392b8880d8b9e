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

use super::{
    FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, WatchSeconds, check_probability, require,
};
use crate::device::Device;

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

/// `fyp_warmup.inputs` (API.md section 4).
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

const SELECTORS: &[&str] = &["tab_home", "feed_pager", "video_caption", "like_button"];

/// Runs FYP warm-up with the given judge.
pub async fn fyp_warmup<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &FypWarmupInputs,
    judge: &dyn Judge,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx);
    let (mut watched, mut relevant, mut liked) = (0u32, 0u32, 0u32);
    let result = |w: u32, r: u32, l: u32| json!({"videos_watched": w, "relevant": r, "liked": l});

    run.begin("open_feed")?;
    let r = run.ensure_feed().await.map(drop);
    if let Err(e) = run.end(r) {
        return Err(run.fail(e, result(watched, relevant, liked)).await);
    }
    let budget = Duration::from_secs(u64::from(inputs.duration_seconds));
    let start = tokio::time::Instant::now();
    while start.elapsed() < budget {
        let left = budget.saturating_sub(start.elapsed());
        let step = async {
            run.begin(format!("video:{}", watched + 1))?;
            let r = async {
                let screen = run.expect(&["feed"]).await?;
                // A video without a caption is judged on nothing: not relevant.
                let caption = run
                    .pack()
                    .find(&screen.tree, "video_caption")
                    .and_then(|m| screen.tree.get(m.node))
                    .map(|n| n.text.clone())
                    .unwrap_or_default();
                let fits = judge.relevant(&inputs.judge_prompt, &caption);
                let seconds = if fits {
                    inputs.watch_seconds.max
                } else {
                    inputs.watch_seconds.min
                };
                let seconds = seconds.min(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX));
                run.dwell(seconds).await?;
                let mut like = false;
                if fits && run.chance(inputs.like_probability) {
                    let screen = run.expect(&["feed"]).await?;
                    if !run.node(&screen, "like_button")?.selected {
                        run.tap(&screen, "like_button").await?;
                        like = true;
                    }
                }
                let screen = run.expect(&["feed"]).await?;
                run.swipe_up_in(&screen, "feed_pager").await?;
                Ok((fits, like))
            }
            .await;
            run.end(r)
        }
        .await;
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

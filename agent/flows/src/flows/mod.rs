//! Capability executors: the flows a work order runs on a phone, built on [`Ui`] and a
//! [`FlowPack`].
//!
//! Each executor is an async function over a [`FlowCtx`] (device, pack, milestone sink,
//! cancellation token, options) and its typed inputs (API.md section 4, which these structs
//! deserialize from). A run is a sequence of named steps: before each step the cancellation token
//! is checked and the sink told, after it the sink hears how it went. Screens are read with the
//! pack's watchers applied first (update prompts, permission dialogs are dismissed wherever they
//! appear), and an account screen (logged out, banned, captcha, verification) ends the run with
//! `account_outcome:<what>`. Any other surprise ends it with `flow_error:<screen>` (the pack's
//! name for the screen it was on, or `unknown`) and evidence: the dump and a screenshot.

// A FlowError carries its evidence and partial result by value: it is built once per failed run,
// so its size costs nothing that matters, and boxing would only make the public fields awkward.
#![allow(clippy::result_large_err)]

mod edit_profile;
mod fyp_warmup;
mod keyword_warmup;
mod post_video;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::device::Device;
use crate::dump::{Node, UiTree};
use crate::pack::{ACCOUNT_OUTCOME_SCREENS, FlowPack, PackSet, read_screen};
use crate::text::input_text_commands;
use crate::ui::{Screen, Ui, UiError, keycode};

pub use edit_profile::{EditProfileParams, MaintenanceInputs, MaintenanceStep, edit_profile};
pub use fyp_warmup::{FypWarmupInputs, Judge, OverlapJudge, fyp_warmup};
pub use keyword_warmup::{CommentPlan, KeywordWarmupInputs, keyword_warmup};
pub use post_video::{PostVideoInputs, post_video};

/// Where milestones go (the agent journals and publishes them).
pub trait MilestoneSink: Send + Sync {
    fn step_started(&self, step: &str);
    fn step_finished(&self, step: &str, ok: bool);
    /// Counters so far, e.g. `{"keyword": "cooking", "videos_watched": 2}`.
    fn progress(&self, progress: &serde_json::Value);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopSink;

impl MilestoneSink for NoopSink {
    fn step_started(&self, _step: &str) {}
    fn step_finished(&self, _step: &str, _ok: bool) {}
    fn progress(&self, _progress: &serde_json::Value) {}
}

/// One milestone, as [`RecordingSink`] keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Milestone {
    StepStarted(String),
    StepFinished { step: String, ok: bool },
    Progress(serde_json::Value),
}

/// A sink that keeps every milestone in memory (tests, local runs).
#[derive(Debug, Default)]
pub struct RecordingSink {
    milestones: Mutex<Vec<Milestone>>,
}

impl RecordingSink {
    pub fn milestones(&self) -> Vec<Milestone> {
        self.milestones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn push(&self, m: Milestone) {
        self.milestones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
    }
}

impl MilestoneSink for RecordingSink {
    fn step_started(&self, step: &str) {
        self.push(Milestone::StepStarted(step.to_string()));
    }

    fn step_finished(&self, step: &str, ok: bool) {
        self.push(Milestone::StepFinished {
            step: step.to_string(),
            ok,
        });
    }

    fn progress(&self, progress: &serde_json::Value) {
        self.push(Milestone::Progress(progress.clone()));
    }
}

/// The account, not the flow, is the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOutcome {
    LoggedOut,
    Banned,
    Captcha,
    VerificationRequired,
    UsernameTaken,
}

impl AccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::Banned => "banned",
            Self::Captcha => "captcha",
            Self::VerificationRequired => "verification_required",
            Self::UsernameTaken => "username_taken",
        }
    }

    fn from_screen(name: &str) -> Option<Self> {
        Some(match name {
            "logged_out" => Self::LoggedOut,
            "banned" => Self::Banned,
            "captcha" => Self::Captcha,
            "verification_required" => Self::VerificationRequired,
            _ => return None,
        })
    }
}

/// Why a run stopped short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowFailure {
    /// The cancellation token fired (checked at step boundaries and during dwells).
    Cancelled,
    /// The phone or its transport failed.
    Device(String),
    /// The UI was not where the flow expected: `screen` is the pack's name for the screen it
    /// was on (`unknown` if none matched).
    Flow {
        screen: String,
        detail: String,
    },
    Account(AccountOutcome),
    /// The inputs cannot be run (e.g. text `input text` cannot type).
    InvalidInput(String),
    /// The app is missing, or no pack covers it, or the pack lacks what the flow needs.
    Pack(String),
}

impl FlowFailure {
    /// The machine reason: `device_error`, `flow_error:<screen>`, `account_outcome:<what>`,
    /// `invalid_input:<what>`, `flow_pack:<what>`, `cancelled`.
    pub fn code(&self) -> String {
        match self {
            Self::Cancelled => "cancelled".into(),
            Self::Device(_) => "device_error".into(),
            Self::Flow { screen, .. } => format!("flow_error:{screen}"),
            Self::Account(o) => format!("account_outcome:{}", o.as_str()),
            Self::InvalidInput(what) => format!("invalid_input:{what}"),
            Self::Pack(what) => format!("flow_pack:{what}"),
        }
    }
}

/// What the screen looked like when a run failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The pack's name for the screen (`unknown` if none).
    pub screen: String,
    /// The raw `uiautomator dump` XML, if one could be taken.
    pub dump: Option<Vec<u8>>,
    /// A PNG screenshot, if one could be taken.
    pub screenshot: Option<Vec<u8>>,
}

/// A failed run: the reason, the step it happened in, evidence, and what was done before.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} in step {}: {}", failure.code(), step.as_deref().unwrap_or("-"), message)]
pub struct FlowError {
    pub failure: FlowFailure,
    pub message: String,
    pub step: Option<String>,
    pub evidence: Option<Evidence>,
    /// The result so far (same shape as a success's result).
    pub partial: serde_json::Value,
}

impl FlowError {
    pub fn new(failure: FlowFailure, message: impl Into<String>) -> Self {
        Self {
            failure,
            message: message.into(),
            step: None,
            evidence: None,
            partial: serde_json::Value::Null,
        }
    }

    pub fn code(&self) -> String {
        self.failure.code()
    }
}

/// Knobs shared by every flow.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Seed for dwell times and like decisions (a run is reproducible from it).
    pub seed: u64,
    /// How long to wait for an expected screen.
    pub screen_timeout: Duration,
    /// Pop-ups dismissed in a row before giving up.
    pub max_popups: u32,
    /// Navigation moves (back, tab, launch) allowed when heading to the feed.
    pub max_nav_moves: u32,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            screen_timeout: Duration::from_secs(15),
            max_popups: 5,
            max_nav_moves: 10,
        }
    }
}

/// Everything a flow runs with.
pub struct FlowCtx<'a, D, S: ?Sized> {
    pub ui: &'a Ui<D>,
    pub pack: &'a FlowPack,
    pub sink: &'a S,
    pub cancel: &'a CancellationToken,
    pub options: FlowOptions,
}

/// Chooses the pack for the installed version of `package`.
pub async fn select_pack<D: Device>(
    ui: &Ui<D>,
    packs: &PackSet,
    package: &str,
) -> Result<Arc<FlowPack>, FlowError> {
    let version = ui.installed_version(package).await.map_err(|e| match e {
        UiError::Device(e) => FlowError::new(FlowFailure::Device(e.to_string()), e.to_string()),
        other => FlowError::new(
            FlowFailure::Pack("app_not_installed".into()),
            other.to_string(),
        ),
    })?;
    packs.select(package, &version).map_err(|e| {
        FlowError::new(
            FlowFailure::Pack(format!("no_pack:{version}")),
            e.to_string(),
        )
    })
}

/// Runs a capability from its work-order JSON: `keyword_warmup`, `fyp_warmup` (with `judge`)
/// or `maintenance`. Inputs that do not deserialize are `invalid_input:inputs`; an unknown
/// capability is `invalid_input:capability`. (`post_video` takes the fetched video bytes, so it
/// is called directly.)
pub async fn run_capability<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    capability: &str,
    inputs: serde_json::Value,
    judge: &dyn Judge,
) -> Result<serde_json::Value, FlowError> {
    fn parse<T: serde::de::DeserializeOwned>(inputs: serde_json::Value) -> Result<T, FlowError> {
        serde_json::from_value(inputs)
            .map_err(|e| FlowError::new(FlowFailure::InvalidInput("inputs".into()), e.to_string()))
    }
    match capability {
        "keyword_warmup" => keyword_warmup(ctx, &parse(inputs)?).await,
        "fyp_warmup" => fyp_warmup(ctx, &parse(inputs)?, judge).await,
        "maintenance" => edit_profile(ctx, &parse(inputs)?).await,
        other => Err(FlowError::new(
            FlowFailure::InvalidInput("capability".into()),
            format!("unknown capability {other:?}"),
        )),
    }
}

/// What a hard abort leaves behind: the app force-stopped and the phone on its home screen
/// (API.md section 7). Both are attempted even if the first fails.
pub async fn abort<D: Device>(ui: &Ui<D>, package: &str) -> Result<(), UiError> {
    let stopped = ui.force_stop(package).await;
    let home = ui.home().await;
    stopped.and(home)
}

/// Refuses text `input text` cannot type, naming the input.
fn typeable(what: &str, text: &str) -> Result<(), FlowError> {
    input_text_commands(text).map(drop).map_err(|e| {
        FlowError::new(
            FlowFailure::InvalidInput(format!("{what}_not_typeable")),
            e.to_string(),
        )
    })
}

/// Dwell range `{min, max}` in seconds. (Like every input struct here, unknown JSON fields are
/// ignored, as the API does.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct WatchSeconds {
    pub min: u32,
    pub max: u32,
}

impl Default for WatchSeconds {
    fn default() -> Self {
        Self { min: 8, max: 25 }
    }
}

impl WatchSeconds {
    fn validate(&self) -> Result<(), FlowError> {
        if self.min >= 1 && self.min <= self.max && self.max <= 300 {
            Ok(())
        } else {
            Err(FlowError::new(
                FlowFailure::InvalidInput("watch_seconds".into()),
                format!("watch_seconds must satisfy 1 <= min <= max <= 300, got {self:?}"),
            ))
        }
    }
}

fn check_probability(p: f64) -> Result<(), FlowError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(FlowError::new(
            FlowFailure::InvalidInput("like_probability".into()),
            format!("like_probability must be in 0..1, got {p}"),
        ))
    }
}

/// The state of one run: the context, the random source, the current step and the last screen
/// seen (for error reasons).
struct Run<'c, 'a, D, S: ?Sized> {
    ctx: &'c FlowCtx<'a, D, S>,
    rng: StdRng,
    step: Option<String>,
    last_screen: String,
}

impl<'c, 'a, D: Device, S: MilestoneSink + ?Sized> Run<'c, 'a, D, S> {
    fn new(ctx: &'c FlowCtx<'a, D, S>) -> Self {
        Self {
            ctx,
            rng: StdRng::seed_from_u64(ctx.options.seed),
            step: None,
            last_screen: "unknown".into(),
        }
    }

    fn pack(&self) -> &'a FlowPack {
        self.ctx.pack
    }

    fn ui(&self) -> &'a Ui<D> {
        self.ctx.ui
    }

    fn check_cancel(&self) -> Result<(), FlowError> {
        if self.ctx.cancel.is_cancelled() {
            return Err(FlowError::new(
                FlowFailure::Cancelled,
                "cancelled at a step boundary",
            ));
        }
        Ok(())
    }

    /// Starts a step: checks cancellation, tells the sink.
    fn begin(&mut self, step: impl Into<String>) -> Result<(), FlowError> {
        let step = step.into();
        self.check_cancel()?;
        tracing::debug!(%step, "step started");
        self.ctx.sink.step_started(&step);
        self.step = Some(step);
        Ok(())
    }

    /// Ends the current step with its outcome.
    fn end<T>(&mut self, result: Result<T, FlowError>) -> Result<T, FlowError> {
        if let Some(step) = &self.step {
            tracing::debug!(%step, ok = result.is_ok(), "step finished");
            self.ctx.sink.step_finished(step, result.is_ok());
        }
        let step = self.step.take();
        result.map_err(|mut e| {
            e.step = e.step.take().or(step);
            e
        })
    }

    fn flow_error(&self, detail: impl Into<String>) -> FlowError {
        let detail = detail.into();
        let failure = FlowFailure::Flow {
            screen: self.last_screen.clone(),
            detail: detail.clone(),
        };
        FlowError::new(failure, detail)
    }

    fn ui_error(&self, e: UiError) -> FlowError {
        match e {
            UiError::Device(e) => FlowError::new(FlowFailure::Device(e.to_string()), e.to_string()),
            UiError::CommandFailed { .. } => {
                FlowError::new(FlowFailure::Device(e.to_string()), e.to_string())
            }
            UiError::Text(t) => {
                FlowError::new(FlowFailure::InvalidInput("text".into()), t.to_string())
            }
            other => self.flow_error(other.to_string()),
        }
    }

    /// Reads the screen, dismissing pop-ups; an account screen ends the run.
    async fn settle(&mut self) -> Result<Screen, FlowError> {
        let options = &self.ctx.options;
        let read = read_screen(
            self.ui(),
            self.pack(),
            options.screen_timeout,
            options.max_popups,
        );
        let (screen, label) = match read.await {
            Ok(read) => read,
            Err(UiError::PopupStuck(name)) => {
                self.last_screen = format!("popup:{name}");
                return Err(self.flow_error(format!("pop-up {name} keeps coming back")));
            }
            Err(e) => return Err(self.ui_error(e)),
        };
        self.last_screen = label;
        if let Some(outcome) = AccountOutcome::from_screen(&self.last_screen) {
            return Err(FlowError::new(
                FlowFailure::Account(outcome),
                format!("the app shows the {} screen", self.last_screen),
            ));
        }
        Ok(screen)
    }

    /// Waits until the screen is one of `names`.
    async fn expect(&mut self, names: &[&str]) -> Result<Screen, FlowError> {
        let what = format!("expected {}", names.join(" or "));
        self.expect_where(names, &what, |_, _, _| true).await
    }

    /// Waits until the screen is one of `names` and `check(pack, label, screen)` holds: the UI
    /// may lag behind an action by a frame or two on a real phone. `what` names the awaited
    /// state in the error.
    async fn expect_where(
        &mut self,
        names: &[&str],
        what: &str,
        check: impl Fn(&FlowPack, &str, &Screen) -> bool,
    ) -> Result<Screen, FlowError> {
        let start = tokio::time::Instant::now();
        loop {
            let screen = self.settle().await?;
            if names.iter().any(|n| *n == self.last_screen)
                && check(self.pack(), &self.last_screen, &screen)
            {
                return Ok(screen);
            }
            if start.elapsed() >= self.ctx.options.screen_timeout {
                return Err(self.flow_error(what));
            }
            tokio::time::sleep(self.ui().config().poll_interval).await;
        }
    }

    /// The named view on `screen`, or a flow error.
    fn node<'s>(&self, screen: &'s Screen, selector: &str) -> Result<&'s Node, FlowError> {
        self.pack()
            .find(&screen.tree, selector)
            .and_then(|m| screen.tree.get(m.node))
            .ok_or_else(|| self.flow_error(format!("no {selector} on screen")))
    }

    async fn tap(&mut self, screen: &Screen, selector: &str) -> Result<(), FlowError> {
        let node = self.node(screen, selector)?;
        self.ui().tap_node(node).await.map_err(|e| self.ui_error(e))
    }

    async fn type_text(&mut self, text: &str) -> Result<(), FlowError> {
        self.ui()
            .type_text(text)
            .await
            .map_err(|e| self.ui_error(e))
    }

    async fn key(&mut self, code: u32) -> Result<(), FlowError> {
        self.ui().keyevent(code).await.map_err(|e| self.ui_error(e))
    }

    /// Brings the app to its feed from wherever it is.
    async fn ensure_feed(&mut self) -> Result<Screen, FlowError> {
        let package = self.pack().package().to_string();
        self.ui()
            .launch(&package)
            .await
            .map_err(|e| self.ui_error(e))?;
        for _ in 0..self.ctx.options.max_nav_moves {
            let screen = self.settle().await?;
            match self.last_screen.as_str() {
                "feed" => return Ok(screen),
                "launcher" | "play_store" => {
                    self.ui()
                        .launch(&package)
                        .await
                        .map_err(|e| self.ui_error(e))?;
                }
                _ if self.pack().find(&screen.tree, "tab_home").is_some() => {
                    self.tap(&screen, "tab_home").await?;
                }
                _ => self.key(keycode::BACK).await?,
            }
        }
        Err(self.flow_error("could not reach the feed"))
    }

    /// Waits `seconds`, or stops early if the run is cancelled.
    async fn dwell(&mut self, seconds: u32) -> Result<(), FlowError> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(u64::from(seconds))) => Ok(()),
            () = self.ctx.cancel.cancelled() => {
                Err(FlowError::new(FlowFailure::Cancelled, "cancelled while watching"))
            }
        }
    }

    fn draw_watch(&mut self, range: WatchSeconds) -> u32 {
        self.rng.random_range(range.min..=range.max)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Swipes up inside the named scrollable view (next video / next row).
    async fn swipe_up_in(&mut self, screen: &Screen, selector: &str) -> Result<(), FlowError> {
        let b = self.node(screen, selector)?.bounds;
        let x = b.x1 + b.width() / 2;
        let (from, to) = (b.y1 + b.height() * 3 / 4, b.y1 + b.height() / 4);
        self.ui()
            .swipe(x, from, x, to)
            .await
            .map_err(|e| self.ui_error(e))
    }

    /// Adds evidence (fresh dump and screenshot, best effort) and the partial result to a
    /// failure, unless it was a cancellation or bad input.
    async fn fail(&mut self, mut error: FlowError, partial: serde_json::Value) -> FlowError {
        error.partial = partial;
        if error.step.is_none() {
            error.step = self.step.clone();
        }
        let wants_evidence = !matches!(
            error.failure,
            FlowFailure::Cancelled | FlowFailure::InvalidInput(_) | FlowFailure::Pack(_)
        );
        if wants_evidence {
            let dump = self.ui().screen().await.ok();
            let screen = dump
                .as_ref()
                .map(|s| self.pack().identify(&s.tree).label())
                .unwrap_or_else(|| self.last_screen.clone());
            let screenshot = self.ui().screenshot().await.ok();
            error.evidence = Some(Evidence {
                screen,
                dump: dump.map(|s| s.xml),
                screenshot,
            });
        }
        tracing::warn!(code = %error.code(), step = ?error.step, "flow failed: {}", error.message);
        error
    }
}

/// The text of the named view, if it is on screen.
fn text_of(pack: &FlowPack, tree: &UiTree, selector: &str) -> Option<String> {
    pack.find(tree, selector)
        .and_then(|m| tree.get(m.node))
        .map(|n| n.text.clone())
}

/// Every screen name the executors navigate by; packs must define them.
pub const REQUIRED_SCREENS: &[&str] = &[
    "feed",
    "search",
    "search_results",
    "video",
    "comments",
    "profile",
    "edit_profile",
    "upload_gallery",
    "upload_caption",
    "logged_out",
    "banned",
    "captcha",
    "verification_required",
];

fn require(pack: &FlowPack, selectors: &[&str]) -> Result<(), FlowError> {
    debug_assert!(
        ACCOUNT_OUTCOME_SCREENS
            .iter()
            .all(|s| REQUIRED_SCREENS.contains(s))
    );
    pack.require(selectors, REQUIRED_SCREENS)
        .map_err(|e| FlowError::new(FlowFailure::Pack("incomplete".into()), e.to_string()))
}

//! Capability executors: the flows a work order runs on a phone, built on [`Ui`] and a
//! [`FlowPack`].
//!
//! Each executor is an async function over a [`FlowCtx`] (device, pack, milestone sink,
//! cancellation token, options) and its typed inputs (the work order's `inputs`, which these
//! structs deserialize from). A run is a sequence of named steps: before each step the
//! cancellation token is checked and the sink told, after it the sink hears how it went.
//!
//! Screens are read with the pack's watchers applied first (update prompts, permission
//! dialogs, "isn't responding", "keeps stopping", low battery, the lock screen are dealt with
//! wherever they appear), and an account screen (logged out, session expired, banned,
//! suspended, captcha, verification, rate limit; a video under review) ends the run with
//! `account_outcome:<what>` and nothing more is done on the phone. Every action is checked on
//! the next read, and a tap the app did not take (two fresh reads show the screen unchanged) is
//! repeated. When the app leaves the screen (it died, was closed, the phone rebooted, adb went
//! away) the step is started again after recovering (reconnect, relaunch), a bounded number of
//! times: each step starts by getting to where it needs to be. Any other surprise ends the run
//! with `flow_error:<screen>` (the pack's name for the screen it was on, or `unknown`) and
//! evidence: the dump, a screenshot and the pack's name and revision.

// A FlowError carries its evidence and partial result by value: it is built once per failed run,
// so its size costs nothing that matters, and boxing would only make the public fields awkward.
#![allow(clippy::result_large_err)]

mod edit_profile;
mod fyp_warmup;
mod health;
mod keyword_warmup;
mod post_video;
mod run;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::device::Device;
use crate::dump::UiTree;
use crate::pack::{ACCOUNT_OUTCOME_SCREENS, FlowPack, PackSet};
use crate::text::input_text_commands;
use crate::ui::{Ui, UiError};

pub use health::{HealthProblem, parse_battery, preflight};
use run::Run;

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
    /// The flow pack chosen for the installed app, once per run before the first step.
    fn pack_chosen(&self, _name: &str, _revision: u32) {}
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
    /// "Session expired": the app wants a new login.
    SessionExpired,
    Banned,
    /// Suspended for a while.
    Suspended,
    Captcha,
    /// "Verify it's you".
    VerificationRequired,
    /// "You're tapping too fast".
    RateLimited,
    UsernameTaken,
    /// The posted video is held for review.
    UnderReview,
}

impl AccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::SessionExpired => "session_expired",
            Self::Banned => "banned",
            Self::Suspended => "suspended",
            Self::Captcha => "captcha",
            Self::VerificationRequired => "verification_required",
            Self::RateLimited => "rate_limited",
            Self::UsernameTaken => "username_taken",
            Self::UnderReview => "under_review",
        }
    }

    fn from_screen(name: &str) -> Option<Self> {
        Some(match name {
            "logged_out" => Self::LoggedOut,
            "session_expired" => Self::SessionExpired,
            "banned" => Self::Banned,
            "suspended" => Self::Suspended,
            "captcha" => Self::Captcha,
            "verification_required" => Self::VerificationRequired,
            "rate_limited" => Self::RateLimited,
            _ => return None,
        })
    }
}

/// Why a step was cut short in a way the run recovers from (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The app is no longer on screen (it died, was closed, the phone restarted).
    AppLeft,
    /// The phone stopped answering (rebooting, adb offline, the connection dropped).
    Device(String),
    /// A pop-up (a system dialog, the lock screen) came over the app after the last action
    /// and the screen it should have led to never came: the pop-up took the action (a key or
    /// typed text), so the step starts again, as a person would do it again.
    ActionLost,
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
    /// The phone is not fit for a run (battery, temperature, storage): `device_error`, and
    /// the phone needs attention until it recovers.
    Health {
        problem: HealthProblem,
        detail: String,
    },
    /// Recovered from within the run; it ends one only when recovery failed or ran out
    /// (`flow_error:<screen>` or `device_error`).
    Interrupted(Interruption),
}

impl FlowFailure {
    /// The machine reason: `device_error`, `flow_error:<screen>`, `account_outcome:<what>`,
    /// `invalid_input:<what>`, `flow_pack:<what>`, `cancelled`.
    pub fn code(&self) -> String {
        match self {
            Self::Cancelled => "cancelled".into(),
            Self::Device(_) | Self::Health { .. } => "device_error".into(),
            Self::Interrupted(Interruption::Device(_)) => "device_error".into(),
            Self::Interrupted(Interruption::AppLeft) => "flow_error:launcher".into(),
            Self::Interrupted(Interruption::ActionLost) => "flow_error:unknown".into(),
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
    /// The flow pack the run used, and its revision.
    pub pack: String,
    pub pack_revision: u32,
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
    /// Dwell times are divided by this (demos and tests; 1 is real time).
    pub speed: f64,
    /// Interruptions (the app gone, the phone gone) a run recovers from before it gives up.
    pub max_recoveries: u32,
    /// How long to wait for the phone to come back after it went away (a reboot, adb offline);
    /// longer, and the run fails with a retryable `device_error`.
    pub reconnect_timeout: Duration,
    /// A run needs at least this much battery (percent) ...
    pub min_battery: u8,
    /// ... and at most this battery temperature (tenths of a degree Celsius).
    pub max_temperature: i32,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            screen_timeout: Duration::from_secs(15),
            max_popups: 5,
            max_nav_moves: 10,
            speed: 1.0,
            max_recoveries: 4,
            reconnect_timeout: Duration::from_secs(40),
            min_battery: 15,
            max_temperature: 420,
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

/// The node of a selector on a screen (for [`Run::tap_expect`]).
fn by(selector: &str) -> impl Fn(&FlowPack, &crate::ui::Screen) -> Option<usize> + '_ {
    move |pack, screen| pack.find(&screen.tree, selector).map(|m| m.node)
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

/// Checks a capability's work-order inputs without touching a phone: `invalid_input:inputs`
/// when they do not deserialize, the capability's own reason when they break its rules (text
/// `input text` cannot type included), `invalid_input:capability` for an unknown one.
/// (`post_video` is checked with its video, by [`post_video`].)
pub fn check_inputs(capability: &str, inputs: &serde_json::Value) -> Result<(), FlowError> {
    fn parse<T: serde::de::DeserializeOwned>(inputs: &serde_json::Value) -> Result<T, FlowError> {
        serde_json::from_value(inputs.clone())
            .map_err(|e| FlowError::new(FlowFailure::InvalidInput("inputs".into()), e.to_string()))
    }
    match capability {
        "keyword_warmup" => parse::<KeywordWarmupInputs>(inputs)?.validate(),
        "fyp_warmup" => parse::<FypWarmupInputs>(inputs)?.validate(),
        "maintenance" => parse::<MaintenanceInputs>(inputs)?.validate(),
        "post_video" => Ok(()),
        other => Err(FlowError::new(
            FlowFailure::InvalidInput("capability".into()),
            format!("unknown capability {other:?}"),
        )),
    }
}

/// What a hard abort leaves behind: the app force-stopped and the phone on its home screen.
/// Both are attempted even if the first fails.
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
    "launcher",
    "logged_out",
    "session_expired",
    "banned",
    "suspended",
    "captcha",
    "verification_required",
    "rate_limited",
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

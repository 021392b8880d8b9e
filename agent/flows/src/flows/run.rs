//! The state of one run and the moves every executor makes: steps (restarted after a
//! recovery), screen reads (pop-ups dealt with, account screens stop the run), actions checked
//! on the next read (a tap the app did not take is repeated), navigation to the feed, dwells,
//! and evidence on failure.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    AccountOutcome, Evidence, FlowCtx, FlowError, FlowFailure, HealthProblem, Interruption,
    MilestoneSink, WatchSeconds,
};
use crate::device::{Device, DeviceError};
use crate::dump::Node;
use crate::pack::{FlowPack, PopupMemory, read_screen_with};
use crate::ui::{Screen, Ui, UiError, keycode};

/// What [`Run::attempt_done`] decided. (Built once per attempt and matched at once: the size
/// of the error it may carry costs nothing that matters.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Attempt<T> {
    Done(Result<T, FlowError>),
    Again,
}

/// `step!(run, name, { body })`: one named step of a run. The body (an async block's
/// contents, using `run`) runs until it succeeds or fails; an interruption is recovered from
/// and the body runs again (see [`Run::attempt_done`]).
macro_rules! step {
    ($run:ident, $name:expr, $body:block) => {
        match $run.begin($name) {
            Err(e) => Err(e),
            Ok(()) => loop {
                let attempt = async { $body }.await;
                match $run.attempt_done(attempt).await {
                    $crate::flows::run::Attempt::Done(r) => break r,
                    $crate::flows::run::Attempt::Again => continue,
                }
            },
        }
    };
}
pub(super) use step;

/// Taps repeated when the app did not take one.
const MAX_RETAPS: u32 = 3;

/// Screens that mean the app is not in front.
const OUTSIDE_APP: &[&str] = &["launcher", "play_store"];

/// The state of one run: the context, the random source, the current step, the last screen
/// seen (for error reasons) and, while nothing was done since, the screen itself.
pub(super) struct Run<'c, 'a, D, S: ?Sized> {
    pub ctx: &'c FlowCtx<'a, D, S>,
    rng: StdRng,
    step: Option<String>,
    pub last_screen: String,
    /// The last read, while no action or dwell happened since: reused instead of a dump.
    current: Option<Screen>,
    popups: PopupMemory,
    /// [`PopupMemory::total`] at the last action: more now means a pop-up came over the app
    /// since, and may have taken the action.
    popups_at_action: u32,
    recoveries: u32,
    /// Permissions the flow needs: their prompts are allowed, any other is refused.
    needs: &'static [&'static str],
}

impl<'c, 'a, D: Device, S: MilestoneSink + ?Sized> Run<'c, 'a, D, S> {
    pub fn new(ctx: &'c FlowCtx<'a, D, S>, needs: &'static [&'static str]) -> Self {
        Self {
            ctx,
            rng: StdRng::seed_from_u64(ctx.options.seed),
            step: None,
            last_screen: "unknown".into(),
            current: None,
            popups: PopupMemory::default(),
            popups_at_action: 0,
            recoveries: 0,
            needs,
        }
    }

    pub fn pack(&self) -> &'a FlowPack {
        self.ctx.pack
    }

    pub fn ui(&self) -> &'a Ui<D> {
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
    pub fn begin(&mut self, step: impl Into<String>) -> Result<(), FlowError> {
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

    /// After one attempt of a step's body (see [`step!`]): done (the step ended, its outcome
    /// told), or start the body again. When it was interrupted (the app left the screen, the
    /// phone went away) the run recovers (reconnects if need be) and starts the body again
    /// from the top, at most `max_recoveries` times in the run: every step begins by getting
    /// to where it needs to be.
    pub async fn attempt_done<T>(&mut self, r: Result<T, FlowError>) -> Attempt<T> {
        let e = match r {
            Ok(v) => return Attempt::Done(self.end(Ok(v))),
            Err(e) => e,
        };
        let FlowFailure::Interrupted(why) = &e.failure else {
            return Attempt::Done(self.end(Err(e)));
        };
        if self.recoveries >= self.ctx.options.max_recoveries {
            let e = self.settled_error(e);
            return Attempt::Done(self.end(Err(e)));
        }
        let why = why.clone();
        if let Err(e) = self.recover(&why).await {
            return Attempt::Done(self.end(Err(e)));
        }
        if let Err(e) = self.check_cancel() {
            return Attempt::Done(self.end(Err(e)));
        }
        Attempt::Again
    }

    /// An interruption that is no longer recovered from, as the failure it is.
    fn settled_error(&self, mut e: FlowError) -> FlowError {
        if let FlowFailure::Interrupted(why) = &e.failure {
            e.failure = match why {
                Interruption::Device(d) => FlowFailure::Device(d.clone()),
                Interruption::AppLeft | Interruption::ActionLost => FlowFailure::Flow {
                    screen: self.last_screen.clone(),
                    detail: e.message.clone(),
                },
            };
        }
        e
    }

    /// Gets ready to start the interrupted step again.
    async fn recover(&mut self, why: &Interruption) -> Result<(), FlowError> {
        self.recoveries += 1;
        self.current = None;
        tracing::warn!(
            ?why,
            recoveries = self.recoveries,
            "step interrupted: recovering"
        );
        self.ctx.sink.progress(&serde_json::json!({
            "recovering": match why {
                Interruption::AppLeft => "app_left",
                Interruption::ActionLost => "action_lost",
                Interruption::Device(_) => "device",
            },
            "recoveries": self.recoveries,
        }));
        if let Interruption::Device(detail) = why {
            let within = self.ctx.options.reconnect_timeout;
            self.ui().device().reconnect(within).await.map_err(|e| {
                FlowError::new(
                    FlowFailure::Device(e.to_string()),
                    format!("the phone did not come back ({detail}): {e}"),
                )
            })?;
            // Whatever was on screen is gone: the next step starts from the launcher.
            self.last_screen = "unknown".into();
        }
        Ok(())
    }

    pub fn flow_error(&self, detail: impl Into<String>) -> FlowError {
        let detail = detail.into();
        let failure = FlowFailure::Flow {
            screen: self.last_screen.clone(),
            detail: detail.clone(),
        };
        FlowError::new(failure, detail)
    }

    fn interrupted(why: Interruption, message: impl Into<String>) -> FlowError {
        FlowError::new(FlowFailure::Interrupted(why), message)
    }

    pub fn ui_error(&self, e: UiError) -> FlowError {
        match e {
            UiError::Device(
                d @ (DeviceError::Disconnected(_)
                | DeviceError::Timeout(_)
                | DeviceError::Transport(_)),
            ) => {
                let msg = d.to_string();
                Self::interrupted(Interruption::Device(msg.clone()), msg)
            }
            UiError::CommandFailed { ref output, .. } if output.contains("No space left") => {
                Self::storage_full(&e)
            }
            UiError::Timeout {
                last_error: Some(ref last),
                ..
            } if last.contains("No space left") => Self::storage_full(&e),
            UiError::CommandFailed { .. } => {
                FlowError::new(FlowFailure::Device(e.to_string()), e.to_string())
            }
            UiError::Text(t) => {
                FlowError::new(FlowFailure::InvalidInput("text".into()), t.to_string())
            }
            other => self.flow_error(other.to_string()),
        }
    }

    /// The phone has no room left (even a dump cannot be written).
    fn storage_full(e: &UiError) -> FlowError {
        let detail = format!("storage full: {e}");
        FlowError::new(
            FlowFailure::Health {
                problem: HealthProblem::StorageFull,
                detail: detail.clone(),
            },
            detail,
        )
    }

    /// Reads the screen, dealing with pop-ups; an account screen ends the run.
    pub async fn settle(&mut self) -> Result<Screen, FlowError> {
        let options = &self.ctx.options;
        let read = read_screen_with(
            self.ui(),
            self.pack(),
            options.screen_timeout,
            options.max_popups,
            self.needs,
            &mut self.popups,
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
            self.current = None;
            return Err(FlowError::new(
                FlowFailure::Account(outcome),
                format!("the app shows the {} screen", self.last_screen),
            ));
        }
        self.current = Some(screen.clone());
        Ok(screen)
    }

    /// Something was done on the phone: the last read no longer holds.
    fn acted(&mut self) {
        self.current = None;
        self.popups_at_action = self.popups.total();
    }

    /// Waits until the screen is one of `names`.
    pub async fn expect(&mut self, names: &[&str]) -> Result<Screen, FlowError> {
        let what = format!("expected {}", names.join(" or "));
        self.expect_where(names, &what, |_, _, _| true).await
    }

    /// Waits until the screen is one of `names` and `check(pack, label, screen)` holds (the
    /// UI may lag behind an action by a frame or two). The last read is used as it is when
    /// nothing was done since. The app leaving the screen interrupts the step. `what` names
    /// the awaited state in the error.
    pub async fn expect_where(
        &mut self,
        names: &[&str],
        what: &str,
        check: impl Fn(&FlowPack, &str, &Screen) -> bool,
    ) -> Result<Screen, FlowError> {
        let timeout = self.ctx.options.screen_timeout;
        self.expect_within(names, what, timeout, check).await
    }

    /// [`Run::expect_where`] with its own deadline.
    pub async fn expect_within(
        &mut self,
        names: &[&str],
        what: &str,
        timeout: Duration,
        check: impl Fn(&FlowPack, &str, &Screen) -> bool,
    ) -> Result<Screen, FlowError> {
        if let Some(screen) = &self.current
            && names.contains(&self.last_screen.as_str())
            && check(self.pack(), &self.last_screen, screen)
        {
            return Ok(screen.clone());
        }
        let start = tokio::time::Instant::now();
        // Reads, since a pop-up was dismissed after the last action, that show another screen.
        let mut after_popup = 0;
        loop {
            let screen = self.settle().await?;
            if names.contains(&self.last_screen.as_str())
                && check(self.pack(), &self.last_screen, &screen)
            {
                return Ok(screen);
            }
            self.left_app(names)?;
            if self.popups.total() > self.popups_at_action {
                after_popup += 1;
                // Two reads: the first after the dismissal may still be its transition.
                if after_popup >= 2 {
                    return Err(Self::interrupted(
                        Interruption::ActionLost,
                        format!(
                            "a pop-up came over the app after the last action and {what} \
                             never came ({})",
                            self.last_screen
                        ),
                    ));
                }
            }
            if start.elapsed() >= timeout {
                return Err(self.flow_error(what));
            }
            tokio::time::sleep(self.ui().config().poll_interval).await;
        }
    }

    /// The app is not on screen while the step expects one of its screens.
    fn left_app(&self, names: &[&str]) -> Result<(), FlowError> {
        if OUTSIDE_APP.contains(&self.last_screen.as_str())
            && !names.iter().any(|n| OUTSIDE_APP.contains(n))
        {
            return Err(Self::interrupted(
                Interruption::AppLeft,
                format!("the app left the screen ({})", self.last_screen),
            ));
        }
        Ok(())
    }

    /// The named view on `screen`, or a flow error.
    pub fn node<'s>(&self, screen: &'s Screen, selector: &str) -> Result<&'s Node, FlowError> {
        self.pack()
            .find(&screen.tree, selector)
            .and_then(|m| screen.tree.get(m.node))
            .ok_or_else(|| self.flow_error(format!("no {selector} on screen")))
    }

    /// Taps the view `find` picks on `screen`, then waits until the screen is one of `names`
    /// and `check` holds. When two reads after the tap still show the screen it was made on
    /// (the second one well after any transition) the app did not take it, and the view is
    /// tapped again on the latest read, at most [`MAX_RETAPS`] times.
    pub async fn tap_expect(
        &mut self,
        screen: &Screen,
        find: impl Fn(&FlowPack, &Screen) -> Option<usize>,
        names: &[&str],
        what: &str,
        check: impl Fn(&FlowPack, &str, &Screen) -> bool,
    ) -> Result<Screen, FlowError> {
        let before = self.last_screen.clone();
        let mut on = screen.clone();
        for attempt in 0..=MAX_RETAPS {
            let node = find(self.pack(), &on)
                .and_then(|i| on.tree.get(i))
                .ok_or_else(|| self.flow_error(format!("nothing to tap for {what}")))?;
            let tapped = if attempt == 0 {
                self.ui().tap_node(node).await
            } else {
                self.ui().tap_node_again(node).await
            };
            tapped.map_err(|e| self.ui_error(e))?;
            self.acted();
            self.ui().pause().await;
            let start = tokio::time::Instant::now();
            let mut unchanged = 0;
            loop {
                let read = self.settle().await?;
                if names.contains(&self.last_screen.as_str())
                    && check(self.pack(), &self.last_screen, &read)
                {
                    return Ok(read);
                }
                self.left_app(names)?;
                if self.last_screen == before && find(self.pack(), &read).is_some() {
                    unchanged += 1;
                    if unchanged >= 2 && attempt < MAX_RETAPS {
                        tracing::info!(%what, "the tap did not take: tapping again");
                        on = read;
                        break;
                    }
                }
                if start.elapsed() >= self.ctx.options.screen_timeout {
                    // Still on the screen it was tapped on, the view still there: the taps did
                    // not take. The message names that view, so the evidence can show it.
                    let view = (self.last_screen == before)
                        .then(|| find(self.pack(), &read).and_then(|i| read.tree.get(i)))
                        .flatten();
                    return Err(self.flow_error(match view {
                        Some(node) => format!(
                            "{what}: {} taps on {} did not take",
                            attempt + 1,
                            crate::quoted::describe_node(node)
                        ),
                        None => what.to_string(),
                    }));
                }
                tokio::time::sleep(self.ui().config().poll_interval).await;
            }
        }
        Err(self.flow_error(what.to_string()))
    }

    /// [`Run::tap_expect`] of a named view, expecting one of `names`.
    pub async fn tap_to(
        &mut self,
        screen: &Screen,
        selector: &str,
        names: &[&str],
    ) -> Result<Screen, FlowError> {
        let what = format!("{selector} to lead to {}", names.join(" or "));
        self.tap_expect(screen, super::by(selector), names, &what, |_, _, _| true)
            .await
    }

    pub async fn type_text(&mut self, text: &str) -> Result<(), FlowError> {
        self.acted();
        self.ui()
            .type_text(text)
            .await
            .map_err(|e| self.ui_error(e))
    }

    /// Several key presses in one command (no pause: they edit a field).
    pub async fn keys(&mut self, codes: &[u32]) -> Result<(), FlowError> {
        self.acted();
        self.ui()
            .keyevents(codes)
            .await
            .map_err(|e| self.ui_error(e))
    }

    /// Presses a key and pauses for the screen to settle.
    pub async fn key(&mut self, code: u32) -> Result<(), FlowError> {
        self.acted();
        self.ui()
            .keyevent(code)
            .await
            .map_err(|e| self.ui_error(e))?;
        self.ui().pause().await;
        Ok(())
    }

    async fn launch(&mut self) -> Result<(), FlowError> {
        let package = self.pack().package().to_string();
        self.acted();
        self.ui()
            .launch(&package)
            .await
            .map_err(|e| self.ui_error(e))?;
        self.ui().pause().await;
        Ok(())
    }

    /// Brings the app to its feed from wherever it is (launching it unless the last read shows
    /// one of its screens).
    pub async fn ensure_feed(&mut self) -> Result<Screen, FlowError> {
        if self.current.is_some() && self.last_screen == "feed" {
            return self.expect(&["feed"]).await;
        }
        let known = !matches!(
            self.last_screen.as_str(),
            "unknown" | "launcher" | "play_store"
        );
        if !known {
            self.launch().await?;
        }
        for _ in 0..self.ctx.options.max_nav_moves {
            let screen = match &self.current {
                Some(s) => s.clone(),
                None => self.settle().await?,
            };
            match self.last_screen.as_str() {
                "feed" => return Ok(screen),
                "launcher" | "play_store" => self.launch().await?,
                _ if self.pack().find(&screen.tree, "tab_home").is_some() => {
                    let node = self.node(&screen, "tab_home")?;
                    self.ui()
                        .tap_node(node)
                        .await
                        .map_err(|e| self.ui_error(e))?;
                    self.acted();
                    self.ui().pause().await;
                }
                _ => self.key(keycode::BACK).await?,
            }
        }
        Err(self.flow_error("could not reach the feed"))
    }

    /// Waits `seconds` (divided by the run's speed), or stops early if the run is cancelled.
    pub async fn dwell(&mut self, seconds: u32) -> Result<(), FlowError> {
        self.acted();
        let speed = self.ctx.options.speed.max(1e-3);
        let wait = Duration::from_secs_f64(f64::from(seconds) / speed);
        self.ui().note_dwell(wait);
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.ctx.cancel.cancelled() => {
                Err(FlowError::new(FlowFailure::Cancelled, "cancelled while watching"))
            }
        }
    }

    pub fn draw_watch(&mut self, range: WatchSeconds) -> u32 {
        self.rng.random_range(range.min..=range.max)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Swipes up inside `pager` to the next video and waits until another video shows on one
    /// of `names` (told apart by `fingerprint`); a swipe that moved nothing is repeated. At the
    /// end of a list (still the same video after that) the screen is returned as it is.
    pub async fn swipe_next(
        &mut self,
        screen: &Screen,
        pager: &str,
        names: &[&str],
        fingerprint: impl Fn(&FlowPack, &Screen) -> String,
    ) -> Result<Screen, FlowError> {
        let was = fingerprint(self.pack(), screen);
        let mut on = screen.clone();
        for _ in 0..=MAX_RETAPS {
            let bounds = self.node(&on, pager)?.bounds;
            self.acted();
            self.ui()
                .swipe_up_in(bounds)
                .await
                .map_err(|e| self.ui_error(e))?;
            self.ui().pause().await;
            let mut same = 0;
            loop {
                let read = self.expect(names).await?;
                if fingerprint(self.pack(), &read) != was {
                    return Ok(read);
                }
                same += 1;
                if same >= 2 {
                    on = read;
                    break;
                }
                self.acted();
                tokio::time::sleep(self.ui().config().poll_interval).await;
            }
        }
        tracing::info!("the list does not move on: staying on this video");
        Ok(on)
    }

    /// Adds evidence (fresh dump and screenshot, best effort, and the pack) and the partial
    /// result to a failure, unless it was a cancellation or bad input.
    pub async fn fail(&mut self, error: FlowError, partial: serde_json::Value) -> FlowError {
        let mut error = self.settled_error(error);
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
                pack: self.pack().name().to_string(),
                pack_revision: self.pack().revision(),
                dump: dump.map(|s| s.xml),
                screenshot,
            });
        }
        tracing::warn!(code = %error.code(), step = ?error.step, "flow failed: {}", error.message);
        error
    }
}

//! The phone's fault model: how long its commands take and how they fail, as real phones do,
//! and the failures a test switches on at run time.
//!
//! A [`Behaviour`] (from a named profile, [`Behaviour::named`]) fixes the phone's latencies,
//! whether `uiautomator dump` fails on screens that never stop animating, and how long a
//! transition leaves stale dumps and lost taps behind. The model has no clock of its own: the
//! simulator tells it the time with [`Phone::advance`] (phone milliseconds, monotonic) and
//! delays each reply by the latency [`Phone::shell_timed`] returns, so the agent meets the
//! latencies in real time. Everything is deterministic for a given `fault_seed` and sequence of
//! commands and times.
//!
//! [`Phone::inject_fault`] schedules a [`Fault`] (an app crash, a dialog, a reboot, an adb
//! outage, an account screen, ...) for a [`FaultTrigger`]; each fired fault is logged as
//! [`Action::FaultFired`].

use serde::Serialize;

use crate::Phone;
use crate::actions::Action;
use crate::app::{AccountState, Permission};

/// A latency distribution in phone milliseconds: most samples (`typical_share` percent) fall
/// uniformly in `typical`, the rest uniformly in `min..=max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub min_ms: u32,
    pub max_ms: u32,
    pub typical: (u32, u32),
    pub typical_share: u8,
}

impl Latency {
    /// No delay.
    pub const ZERO: Latency = Latency {
        min_ms: 0,
        max_ms: 0,
        typical: (0, 0),
        typical_share: 100,
    };

    /// Uniform in `min..=max`.
    pub const fn uniform(min_ms: u32, max_ms: u32) -> Self {
        Self {
            min_ms,
            max_ms,
            typical: (min_ms, max_ms),
            typical_share: 100,
        }
    }

    /// Always `ms`.
    pub const fn fixed(ms: u32) -> Self {
        Self::uniform(ms, ms)
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let (lo, hi) = if rng.below(100) < u64::from(self.typical_share) {
            self.typical
        } else {
            (self.min_ms, self.max_ms)
        };
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        lo + rng.below(u64::from(hi - lo) + 1) as u32
    }
}

/// How a phone behaves: its latencies and the failures it shows on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Every shell command: the adb round trip and the shell itself.
    pub shell: Latency,
    /// `uiautomator dump` that succeeds.
    pub dump: Latency,
    /// `uiautomator dump` that fails with `could not get idle state.` (it waits for the idle
    /// state first).
    pub idle_timeout: Latency,
    /// Each `input` command (`tap`, `swipe`, `text`, `keyevent`).
    pub input: Latency,
    /// Starting an activity (`monkey`, `am start`).
    pub launch: Latency,
    /// `screencap`.
    pub screencap: Latency,
    /// A dump without `--compressed` of a screen that never stops animating (a playing video)
    /// fails with `ERROR: could not get idle state.`.
    pub animated_dumps_fail: bool,
    /// For this long after the screen changes, a dump returns the previous screen.
    pub stale_ms: u32,
    /// For this long after the screen changes, a tap lands on nothing.
    pub lost_tap_ms: u32,
    /// The screen turns off after this long without input (None: it stays on).
    pub screen_timeout_ms: Option<u32>,
    /// When the screen turns off it locks: waking it shows the keyguard (swipe up, no PIN).
    pub lock_screen: bool,
    /// A media scan is visible (gallery, media store) this long after the broadcast.
    pub media_scan_ms: u32,
    /// A reboot takes the phone off adb this long.
    pub boot_ms: u32,
}

impl Behaviour {
    /// Today's well-behaved phone: everything answers at once, nothing fails on its own.
    pub fn ideal() -> Self {
        Self {
            shell: Latency::ZERO,
            dump: Latency::ZERO,
            idle_timeout: Latency::ZERO,
            input: Latency::ZERO,
            launch: Latency::ZERO,
            screencap: Latency::ZERO,
            animated_dumps_fail: false,
            stale_ms: 0,
            lost_tap_ms: 0,
            screen_timeout_ms: None,
            lock_screen: false,
            media_scan_ms: 0,
            boot_ms: 0,
        }
    }

    /// What public reports of real devices measure: dumps of about 2-2.5 s (0.9-3.2 s across
    /// devices), failing on animated screens unless `--compressed`; taps of 0.25-0.33 s; a dump
    /// during a transition returns the previous screen for a few hundred ms, and a tap then
    /// lands on nothing; the screen locks when it goes off (swipe, no PIN).
    pub fn realistic() -> Self {
        Self {
            shell: Latency::uniform(15, 60),
            dump: Latency {
                min_ms: 900,
                max_ms: 3200,
                typical: (2000, 2500),
                typical_share: 80,
            },
            idle_timeout: Latency::uniform(4000, 6000),
            input: Latency::uniform(250, 330),
            launch: Latency::uniform(400, 900),
            screencap: Latency::uniform(300, 600),
            animated_dumps_fail: true,
            stale_ms: 500,
            lost_tap_ms: 300,
            screen_timeout_ms: None,
            lock_screen: true,
            media_scan_ms: 800,
            boot_ms: 30_000,
        }
    }

    /// A profile by name: `ideal` or `realistic`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "ideal" => Some(Self::ideal()),
            "realistic" => Some(Self::realistic()),
            _ => None,
        }
    }

    /// The profile names [`Behaviour::named`] knows.
    pub const PROFILES: &'static [&'static str] = &["ideal", "realistic"];
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::ideal()
    }
}

/// A failure a test switches on (see [`Phone::inject_fault`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// "TikTok isn't responding" (`Close app` / `Wait`); after `Wait` it comes back `returns`
    /// more times (at the next dump).
    NotResponding { returns: u32 },
    /// The app crashes: its process is gone and "TikTok keeps stopping" (`App info` /
    /// `Close app`) shows.
    KeepsStopping,
    /// The app's process dies without a word: the launcher shows.
    AppDied,
    /// The screen turns off, as after the screen timeout (and locks with `lock_screen`).
    ScreenOff,
    /// The system's "Battery is low" dialog (`Cancel` / `Turn on` Battery Saver).
    LowBattery,
    /// A runtime permission prompt over the app.
    Permission { permission: Permission },
    /// The phone reboots: connections drop and adb is gone for `boot_ms`.
    Reboot,
    /// adb drops every connection and answers none for `ms`.
    AdbOffline { ms: u32 },
    /// The phone forgets the hosts it allowed: connections drop and the next one shows
    /// "Allow USB debugging?" again.
    RevokeHostKeys,
    /// The account's standing changes (an account screen replaces the app's screens).
    Account { state: AccountState },
    /// The next `n` taps land on nothing, as taps during a transition do.
    LoseTaps { n: u32 },
    /// A screen no flow pack knows opens over the app (a placeholder titled `Something new`).
    StrangeScreen,
}

/// When an injected fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTrigger {
    Now,
    /// In the (N+1)th `uiautomator dump` after injection, before it renders.
    AfterDumps(u32),
    /// Right after the Nth `input` command after injection (N >= 1).
    AfterInputs(u32),
    /// When `Post` is tapped on the post screen. `committed`: the upload reached the server
    /// before the fault (the post exists), or not (it is lost).
    DuringUpload {
        committed: bool,
    },
}

/// A small deterministic generator (splitmix64): the model takes no dependency for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_f417_0000_0001)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// What kind of command a latency is charged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    Dump,
    IdleTimeout,
    Input,
    Launch,
    Screencap,
}

/// The screen before a command: its window, kind and [`Phone::screen_key`].
pub(crate) type Before = (crate::ui::Window, crate::ScreenKind, u64);

/// The fault model's state on a phone.
#[derive(Debug, Clone)]
pub(crate) struct FaultState {
    pub rng: Rng,
    /// Phone time (ms), as last told by [`Phone::advance`].
    pub now_ms: u64,
    /// Latency charged to the command running now.
    pub charged_ms: u32,
    pub pending: Vec<(Fault, FaultTrigger, u32)>,
    /// The screen last changed at this time; the dump it replaced (for stale dumps).
    pub transition_at: Option<u64>,
    pub stale: Option<(crate::ui::Window, crate::ScreenKind)>,
    pub lost_taps: u32,
    pub last_input_ms: u64,
    /// adb answers nothing until this time.
    pub adb_down_until: u64,
    /// Bumped whenever every connection must drop (reboot, adb outage, keys revoked).
    pub connection_epoch: u64,
    /// Public keys (adb_keys lines) of the hosts the phone allows.
    pub adb_keys: Vec<String>,
    /// `input` commands so far.
    pub inputs_seen: u64,
}

impl FaultState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            now_ms: 0,
            charged_ms: 0,
            pending: Vec::new(),
            transition_at: None,
            stale: None,
            lost_taps: 0,
            last_input_ms: 0,
            adb_down_until: 0,
            connection_epoch: 0,
            adb_keys: Vec::new(),
            inputs_seen: 0,
        }
    }
}

impl Phone {
    /// Tells the phone the time (milliseconds since the simulator started, never going back)
    /// and lets time-driven behaviour happen: the screen timeout.
    pub fn advance(&mut self, now_ms: u64) {
        let f = &mut self.faults;
        f.now_ms = f.now_ms.max(now_ms);
        let now = f.now_ms;
        if let Some(timeout) = self.config.behaviour.screen_timeout_ms
            && self.screen_on
            && now.saturating_sub(self.faults.last_input_ms) >= u64::from(timeout)
        {
            self.screen_off();
        }
    }

    /// The phone's time, as last told.
    pub fn now_ms(&self) -> u64 {
        self.faults.now_ms
    }

    /// Runs a command line like [`Phone::shell`] and says how long it takes on this phone
    /// (phone milliseconds): the simulator sends the reply that much later.
    pub fn shell_timed(&mut self, cmd: &str) -> (crate::ShellOutput, u32) {
        self.faults.charged_ms = 0;
        let out = self.shell(cmd);
        let base = self.config.behaviour.shell;
        let base = base.sample(&mut self.faults.rng);
        (out, base.saturating_add(self.faults.charged_ms))
    }

    pub(crate) fn charge(&mut self, cost: Cost) {
        let b = &self.config.behaviour;
        let latency = match cost {
            Cost::Dump => b.dump,
            Cost::IdleTimeout => b.idle_timeout,
            Cost::Input => b.input,
            Cost::Launch => b.launch,
            Cost::Screencap => b.screencap,
        };
        let ms = latency.sample(&mut self.faults.rng);
        self.faults.charged_ms = self.faults.charged_ms.saturating_add(ms);
    }

    /// Schedules a fault (see [`Fault`], [`FaultTrigger`]).
    pub fn inject_fault(&mut self, fault: Fault, trigger: FaultTrigger) {
        if trigger == FaultTrigger::Now {
            self.fire(fault);
        } else {
            self.faults.pending.push((fault, trigger, 0));
        }
    }

    /// Faults injected and not fired yet.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.faults
            .pending
            .iter()
            .map(|(f, _, _)| f.clone())
            .collect()
    }

    /// Drops the faults injected and not fired yet, and the taps a fired `LoseTaps` has not
    /// lost yet: what one test (or soak run) injected does not reach the next one.
    pub fn clear_pending_faults(&mut self) {
        self.faults.pending.clear();
        self.faults.lost_taps = 0;
    }

    /// Whether adb answers now (false during an outage or while rebooting).
    pub fn adb_up(&self) -> bool {
        self.faults.now_ms >= self.faults.adb_down_until
    }

    /// Changes whenever every connection to the phone must drop (reboot, adb outage, keys
    /// revoked): the simulator compares it with the value a connection started with.
    pub fn connection_epoch(&self) -> u64 {
        self.faults.connection_epoch
    }

    /// The adb_keys lines of the hosts this phone allows.
    pub fn adb_keys(&self) -> &[String] {
        &self.faults.adb_keys
    }

    /// Allows a host (what tapping "Allow" on "Allow USB debugging?" does).
    pub fn allow_adb_key(&mut self, line: &str) {
        let line = line.trim().to_string();
        if !self.faults.adb_keys.contains(&line) {
            self.faults.adb_keys.push(line);
        }
    }

    fn drop_connections(&mut self, down_ms: u32) {
        let f = &mut self.faults;
        f.connection_epoch += 1;
        f.adb_down_until = f.adb_down_until.max(f.now_ms + u64::from(down_ms));
    }

    /// Reboots as `reboot` does: the model restarts at once, every connection drops and adb
    /// is down for [`Behaviour::boot_ms`].
    pub fn power_cycle(&mut self) {
        self.reboot();
        self.reboot_requested = true;
        let boot = self.config.behaviour.boot_ms;
        self.drop_connections(boot);
    }

    /// Turns the screen off, locking it when the phone locks.
    pub(crate) fn screen_off(&mut self) {
        if self.screen_on {
            self.screen_on = false;
            self.log(Action::ScreenTurnedOff);
        }
        if self.config.behaviour.lock_screen {
            self.locked = true;
        }
    }

    pub(crate) fn fire(&mut self, fault: Fault) {
        self.log(Action::FaultFired {
            fault: fault.clone(),
        });
        match fault {
            Fault::NotResponding { returns } => {
                self.show_system(crate::app::SystemDialog::NotResponding { returns })
            }
            Fault::KeepsStopping => {
                self.kill_app();
                self.show_system(crate::app::SystemDialog::KeepsStopping);
            }
            Fault::AppDied => self.kill_app(),
            Fault::ScreenOff => self.screen_off(),
            Fault::LowBattery => self.show_system(crate::app::SystemDialog::LowBattery),
            Fault::Permission { permission } => self.ask_permission(permission),
            Fault::Reboot => self.power_cycle(),
            Fault::AdbOffline { ms } => self.drop_connections(ms),
            Fault::RevokeHostKeys => {
                self.faults.adb_keys.clear();
                self.drop_connections(0);
            }
            Fault::Account { state } => {
                self.config.account = state;
                // It replaces everything at once: no stale dump hides it.
                self.faults.transition_at = None;
            }
            Fault::StrangeScreen => self.open_strange_screen(),
            Fault::LoseTaps { n } => self.faults.lost_taps += n,
        }
    }

    /// Fires the pending faults whose trigger matches.
    fn fire_where(&mut self, mut due: impl FnMut(&mut FaultTrigger, &mut u32) -> bool) {
        let mut fired = Vec::new();
        self.faults.pending.retain_mut(|(fault, trigger, seen)| {
            if due(trigger, seen) {
                fired.push(fault.clone());
                false
            } else {
                true
            }
        });
        for f in fired {
            self.fire(f);
        }
    }

    /// Called at the start of every `uiautomator dump`.
    pub(crate) fn faults_on_dump(&mut self) {
        self.fire_where(|t, seen| match t {
            FaultTrigger::AfterDumps(n) => {
                let due = *seen >= *n;
                *seen += 1;
                due
            }
            _ => false,
        });
    }

    /// Called after every `input` command.
    pub(crate) fn faults_on_input(&mut self) {
        self.faults.inputs_seen += 1;
        self.faults.last_input_ms = self.faults.now_ms;
        self.fire_where(|t, seen| match t {
            FaultTrigger::AfterInputs(n) => {
                *seen += 1;
                *seen >= *n
            }
            _ => false,
        });
    }

    /// Called when `Post` is tapped; returns false when the post is lost to the fault.
    pub(crate) fn faults_on_publish(&mut self) -> (bool, Vec<Fault>) {
        let mut committed = true;
        let mut fired = Vec::new();
        self.faults
            .pending
            .retain(|(fault, trigger, _)| match trigger {
                FaultTrigger::DuringUpload { committed: c } => {
                    committed &= *c;
                    fired.push(fault.clone());
                    false
                }
                _ => true,
            });
        (committed, fired)
    }

    /// Whether a tap now lands on nothing (a transition, or an injected lost tap).
    pub(crate) fn tap_lost(&mut self) -> bool {
        if self.faults.lost_taps > 0 {
            self.faults.lost_taps -= 1;
            return true;
        }
        let window = u64::from(self.config.behaviour.lost_tap_ms);
        self.faults
            .transition_at
            .is_some_and(|t| window > 0 && self.faults.now_ms < t + window)
    }

    /// A dump now returns the previous screen, if a transition is this recent.
    pub(crate) fn stale_dump(&self) -> Option<(crate::ui::Window, crate::ScreenKind)> {
        let window = u64::from(self.config.behaviour.stale_ms);
        let t = self.faults.transition_at?;
        if window > 0 && self.faults.now_ms < t + window {
            self.faults.stale.clone()
        } else {
            None
        }
    }

    /// Records a transition if the screen changed since `before` (taken by [`Phone::key`]).
    pub(crate) fn note_transition(&mut self, before: Option<Before>) {
        let Some((window, kind, key)) = before else {
            return;
        };
        if self.screen_key() != key {
            self.faults.transition_at = Some(self.faults.now_ms);
            self.faults.stale = (kind != crate::ScreenKind::ScreenOff).then_some((window, kind));
        }
    }

    /// What the screen is before a command, when stale dumps or lost taps are modelled.
    pub(crate) fn before_change(&self) -> Option<Before> {
        let b = &self.config.behaviour;
        if b.stale_ms == 0 && b.lost_tap_ms == 0 {
            return None;
        }
        Some((self.window(), self.screen(), self.screen_key()))
    }

    /// A fingerprint of what is on screen: which screen, how deep, which video.
    pub(crate) fn screen_key(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |v: u64| {
            h ^= v;
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        mix(self.screen() as u64);
        mix(self.app.stack.len() as u64);
        mix(self.app.feed_index);
        if let Some(v) = self.current_video() {
            for b in v.id.bytes() {
                mix(u64::from(b));
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_follow_their_distribution_deterministically() {
        let l = Behaviour::realistic().dump;
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        let xs: Vec<u32> = (0..1000).map(|_| l.sample(&mut a)).collect();
        let ys: Vec<u32> = (0..1000).map(|_| l.sample(&mut b)).collect();
        assert_eq!(xs, ys, "same seed, same latencies");
        assert!(xs.iter().all(|x| (900..=3200).contains(x)));
        let typical = xs.iter().filter(|x| (2000..=2500).contains(*x)).count();
        assert!((750..=900).contains(&typical), "{typical} of 1000 typical");
        assert_eq!(Latency::ZERO.sample(&mut a), 0);
        assert_eq!(Latency::fixed(7).sample(&mut a), 7);
    }
}

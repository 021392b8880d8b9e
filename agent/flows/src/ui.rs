//! Acting on a phone like a person: read the screen, tap, swipe, type, press keys, start and
//! stop the app. Every call is one or a few shell commands over a [`Device`].
//!
//! [`Ui`] holds the device and the timing knobs ([`UiConfig`]). Screen reads use
//! `uiautomator dump F && cat F`; waiting for a view polls dumps at `poll_interval` on the tokio
//! clock (tests pause it), tolerating transient dump failures until the deadline.
//!
//! A failed dump is retried with backoff, as on real phones: `could not get idle state` (the
//! screen never stops animating: a playing video) switches this `Ui` to `--compressed` dumps,
//! which still work there; `null root node` (the screen is off) wakes the screen first. [`Ui`]
//! counts what it sends ([`UiStats`]: UI actions, `input` commands, dumps and their time), for
//! benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::device::{Device, DeviceError, ShellOutput};
use crate::dump::{DumpError, Node, UiTree, extract_dump_xml, parse_dump_bytes};
use crate::selector::{Fallbacks, Match};
use crate::text::{TextError, input_text_commands, shell_quote};
use crate::version::{Version, VersionError, version_from_dumpsys};

/// Android key codes used by flows.
pub mod keycode {
    pub const HOME: u32 = 3;
    pub const BACK: u32 = 4;
    pub const ENTER: u32 = 66;
    pub const DEL: u32 = 67;
    pub const POWER: u32 = 26;
    pub const SLEEP: u32 = 223;
    pub const WAKEUP: u32 = 224;
}

/// Dump attempts before a read gives up.
const DUMP_ATTEMPTS: u32 = 5;

/// The PNG file signature `screencap -p` output starts with.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Why a UI action failed.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("`{cmd}` exited with {exit}: {output}")]
    CommandFailed {
        cmd: String,
        exit: u8,
        output: String,
    },
    #[error("bad ui dump: {0}")]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("screencap did not return a png ({0} bytes)")]
    NotPng(usize),
    #[error("no view matches {what} on the current screen")]
    NotFound { what: String },
    #[error("timed out after {waited:?} waiting for {what}{}", last_error.as_ref().map(|e| format!(" (last dump error: {e})")).unwrap_or_default())]
    Timeout {
        what: String,
        waited: Duration,
        last_error: Option<String>,
    },
    #[error("cannot read the installed version of {package}: {source}")]
    Version {
        package: String,
        #[source]
        source: VersionError,
    },
    #[error("pop-up {0} keeps coming back after being dismissed")]
    PopupStuck(String),
    #[error("invalid package name {0:?}")]
    BadPackage(String),
}

/// Timing and path knobs.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Where `uiautomator dump` writes on the phone.
    pub dump_path: String,
    /// Deadline for one shell command.
    pub command_timeout: Duration,
    /// Pause between dumps while waiting for a view.
    pub poll_interval: Duration,
    /// Duration passed to `input swipe`.
    pub swipe_duration: Duration,
    /// Pause after an action that may change the screen, before reading it: a dump taken
    /// during the transition can show the previous screen.
    pub settle: Duration,
    /// First pause before retrying a failed dump (doubling each time).
    pub dump_backoff: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            dump_path: "/sdcard/window_dump.xml".into(),
            command_timeout: Duration::from_secs(20),
            poll_interval: Duration::from_millis(500),
            swipe_duration: Duration::from_millis(300),
            settle: Duration::from_millis(300),
            dump_backoff: Duration::from_millis(250),
        }
    }
}

/// What a [`Ui`] sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UiStats {
    /// Logical actions: a tap, a swipe, a typed text (however many commands it takes), a key
    /// press, a launch.
    pub actions: u64,
    /// `input` commands sent (retries of lost taps and wake-ups included).
    pub inputs: u64,
    /// `uiautomator dump` commands sent, failed ones included.
    pub dumps: u64,
    pub failed_dumps: u64,
    /// Time spent in dumps that succeeded.
    pub dump_time: Duration,
    /// Time the flow spent watching (dwells), as it asked for it.
    pub dwell: Duration,
}

impl UiStats {
    /// The mean time of a dump that succeeded.
    pub fn mean_dump(&self) -> Duration {
        let ok = self.dumps.saturating_sub(self.failed_dumps);
        if ok == 0 {
            Duration::ZERO
        } else {
            self.dump_time / u32::try_from(ok).unwrap_or(u32::MAX)
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    actions: AtomicU64,
    inputs: AtomicU64,
    dumps: AtomicU64,
    failed_dumps: AtomicU64,
    dump_micros: AtomicU64,
    dwell_micros: AtomicU64,
    /// Dump with `--compressed` (set once a dump could not get the idle state).
    compressed: AtomicBool,
}

/// A screen read: the parsed tree plus the raw XML (kept for evidence).
#[derive(Debug, Clone)]
pub struct Screen {
    pub tree: UiTree,
    pub xml: Vec<u8>,
}

/// UI actions over one device.
#[derive(Debug, Clone)]
pub struct Ui<D> {
    device: D,
    config: UiConfig,
    counters: Arc<Counters>,
}

/// Android package names: letters, digits, `_` and `.` only (so they are safe in a command).
fn check_package(package: &str) -> Result<(), UiError> {
    let ok = !package.is_empty()
        && package
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(UiError::BadPackage(package.to_string()))
    }
}

impl<D: Device> Ui<D> {
    pub fn new(device: D, config: UiConfig) -> Self {
        Self {
            device,
            config,
            counters: Arc::default(),
        }
    }

    /// What this `Ui` sent so far.
    pub fn stats(&self) -> UiStats {
        let c = &self.counters;
        UiStats {
            actions: c.actions.load(Ordering::Relaxed),
            inputs: c.inputs.load(Ordering::Relaxed),
            dumps: c.dumps.load(Ordering::Relaxed),
            failed_dumps: c.failed_dumps.load(Ordering::Relaxed),
            dump_time: Duration::from_micros(c.dump_micros.load(Ordering::Relaxed)),
            dwell: Duration::from_micros(c.dwell_micros.load(Ordering::Relaxed)),
        }
    }

    /// Counts a dwell (the flow watching) in [`UiStats::dwell`].
    pub fn note_dwell(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counters.dwell_micros.fetch_add(us, Ordering::Relaxed);
    }

    /// Whether dumps use `--compressed` (after one could not get the idle state).
    pub fn compressed(&self) -> bool {
        self.counters.compressed.load(Ordering::Relaxed)
    }

    fn action(&self) {
        self.counters.actions.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits [`UiConfig::settle`]: after an action, before reading the screen.
    pub async fn pause(&self) {
        tokio::time::sleep(self.config.settle).await;
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn config(&self) -> &UiConfig {
        &self.config
    }

    /// Runs a command; a non-zero exit is [`UiError::CommandFailed`].
    pub async fn run(&self, cmd: &str) -> Result<ShellOutput, UiError> {
        if cmd.starts_with("input ") {
            self.counters.inputs.fetch_add(1, Ordering::Relaxed);
        }
        let out = self.device.shell(cmd, self.config.command_timeout).await?;
        if out.exit != 0 {
            let mut output = out.stderr_lossy();
            if output.trim().is_empty() {
                output = out.stdout_lossy();
            }
            return Err(UiError::CommandFailed {
                cmd: cmd.to_string(),
                exit: out.exit,
                output: output.trim().chars().take(500).collect(),
            });
        }
        Ok(out)
    }

    /// One dump, as it comes.
    async fn dump_once(&self) -> Result<Screen, UiError> {
        let path = shell_quote(&self.config.dump_path);
        let flag = if self.compressed() {
            "--compressed "
        } else {
            ""
        };
        let c = &self.counters;
        c.dumps.fetch_add(1, Ordering::Relaxed);
        let start = tokio::time::Instant::now();
        let read = async {
            let out = self
                .run(&format!("uiautomator dump {flag}{path} && cat {path}"))
                .await?;
            let xml = extract_dump_xml(&out.stdout)?.to_vec();
            let tree = parse_dump_bytes(&xml)?;
            Ok(Screen { tree, xml })
        }
        .await;
        match &read {
            Ok(_) => {
                let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                c.dump_micros.fetch_add(us, Ordering::Relaxed);
            }
            Err(_) => {
                c.failed_dumps.fetch_add(1, Ordering::Relaxed);
            }
        }
        read
    }

    /// Reads the current screen, retrying a failed dump with backoff: `could not get idle
    /// state` switches to `--compressed` dumps (at once), `null root node` (screen off) wakes
    /// the screen first. A device error ends the read at once.
    pub async fn screen(&self) -> Result<Screen, UiError> {
        let mut backoff = self.config.dump_backoff;
        let mut woke = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.dump_once().await {
                Ok(screen) => return Ok(screen),
                Err(e @ UiError::Device(_)) => return Err(e),
                Err(e) => e,
            };
            if attempt >= DUMP_ATTEMPTS {
                return Err(error);
            }
            let said = |what: &str| matches!(&error, UiError::CommandFailed { output, .. } if output.contains(what));
            if said("could not get idle state") && !self.compressed() {
                tracing::debug!("the screen never idles: dumping with --compressed");
                self.counters.compressed.store(true, Ordering::Relaxed);
                continue;
            }
            if said("null root node") && !woke {
                tracing::info!("the screen is off: waking it");
                woke = true;
                self.keyevent(keycode::WAKEUP).await?;
                self.pause().await;
                continue;
            }
            tracing::debug!(%error, attempt, "dump failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    /// Reads and parses the current screen.
    pub async fn dump(&self) -> Result<UiTree, UiError> {
        Ok(self.screen().await?.tree)
    }

    /// A PNG of the screen (`screencap -p`). Output mangled by an old pty (`\n` → `\r\n`) is
    /// repaired.
    pub async fn screenshot(&self) -> Result<Vec<u8>, UiError> {
        let out = self.run("screencap -p").await?;
        let png = out.stdout;
        if png.starts_with(PNG_MAGIC) {
            return Ok(png);
        }
        if png.starts_with(b"\x89PNG\r\r\n") {
            let mut fixed = Vec::with_capacity(png.len());
            let mut i = 0;
            while i < png.len() {
                if png[i] == b'\r' && png.get(i + 1) == Some(&b'\n') {
                    i += 1;
                    continue;
                }
                fixed.push(png[i]);
                i += 1;
            }
            if fixed.starts_with(PNG_MAGIC) {
                return Ok(fixed);
            }
        }
        Err(UiError::NotPng(png.len()))
    }

    pub async fn tap(&self, x: i32, y: i32) -> Result<(), UiError> {
        self.action();
        self.run(&format!("input tap {x} {y}")).await.map(drop)
    }

    /// Taps the centre of a node.
    pub async fn tap_node(&self, node: &Node) -> Result<(), UiError> {
        let (x, y) = node.bounds.center();
        self.tap(x, y).await
    }

    /// Taps the centre of a node again, for an action already counted (the app did not take
    /// the first tap): an `input` command, not another UI action.
    pub async fn tap_node_again(&self, node: &Node) -> Result<(), UiError> {
        let (x, y) = node.bounds.center();
        self.run(&format!("input tap {x} {y}")).await.map(drop)
    }

    /// Finds `what` in `tree` and taps it; `name` is used in the error.
    pub async fn tap_in(
        &self,
        tree: &UiTree,
        what: &Fallbacks,
        name: &str,
    ) -> Result<Match, UiError> {
        let m = what.find(tree).ok_or_else(|| UiError::NotFound {
            what: name.to_string(),
        })?;
        if let Some(node) = tree.get(m.node) {
            self.tap_node(node).await?;
        }
        Ok(m)
    }

    pub async fn swipe(&self, x1: i32, y1: i32, x2: i32, y2: i32) -> Result<(), UiError> {
        self.action();
        let ms = self.config.swipe_duration.as_millis();
        self.run(&format!("input swipe {x1} {y1} {x2} {y2} {ms}"))
            .await
            .map(drop)
    }

    /// Types printable ASCII on the focused field; anything else is refused before sending
    /// (see [`crate::text`]).
    pub async fn type_text(&self, text: &str) -> Result<(), UiError> {
        let cmds = input_text_commands(text)?;
        self.action();
        for cmd in cmds {
            self.run(&cmd).await?;
        }
        Ok(())
    }

    pub async fn keyevent(&self, code: u32) -> Result<(), UiError> {
        self.action();
        self.run(&format!("input keyevent {code}")).await.map(drop)
    }

    /// Swipes up from the lower to the upper part of `bounds` (next video, next row, the lock
    /// screen).
    pub async fn swipe_up_in(&self, b: crate::dump::Bounds) -> Result<(), UiError> {
        let x = b.x1 + b.width() / 2;
        let (from, to) = (b.y1 + b.height() * 3 / 4, b.y1 + b.height() / 4);
        self.swipe(x, from, x, to).await
    }

    /// Several key presses in one command (`input keyevent A B C`).
    pub async fn keyevents(&self, codes: &[u32]) -> Result<(), UiError> {
        if codes.is_empty() {
            return Ok(());
        }
        self.action();
        let codes: Vec<String> = codes.iter().map(u32::to_string).collect();
        self.run(&format!("input keyevent {}", codes.join(" ")))
            .await
            .map(drop)
    }

    /// Starts the app through its launcher activity, as tapping its icon would.
    pub async fn launch(&self, package: &str) -> Result<(), UiError> {
        check_package(package)?;
        self.action();
        self.run(&format!(
            "monkey -p {package} -c android.intent.category.LAUNCHER 1"
        ))
        .await
        .map(drop)
    }

    pub async fn force_stop(&self, package: &str) -> Result<(), UiError> {
        check_package(package)?;
        self.run(&format!("am force-stop {package}"))
            .await
            .map(drop)
    }

    pub async fn home(&self) -> Result<(), UiError> {
        self.keyevent(keycode::HOME).await
    }

    pub async fn back(&self) -> Result<(), UiError> {
        self.keyevent(keycode::BACK).await
    }

    /// The installed `versionName` of a package (`dumpsys package PKG`).
    pub async fn installed_version(&self, package: &str) -> Result<Version, UiError> {
        check_package(package)?;
        let out = self.run(&format!("dumpsys package {package}")).await?;
        version_from_dumpsys(&out.stdout_lossy()).map_err(|source| UiError::Version {
            package: package.to_string(),
            source,
        })
    }

    /// Polls dumps until `check` returns Some, or `deadline` passes. A dump that fails to parse
    /// (the screen is changing, uiautomator is busy) counts as "not yet"; a device error ends
    /// the wait at once.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut(&Screen) -> Option<T>,
    ) -> Result<(Screen, T), UiError> {
        let start = tokio::time::Instant::now();
        loop {
            let last_error = match self.screen().await {
                Ok(screen) => match check(&screen) {
                    Some(found) => return Ok((screen, found)),
                    None => None,
                },
                Err(UiError::Device(e)) => return Err(UiError::Device(e)),
                Err(e) => Some(e.to_string()),
            };
            let waited = start.elapsed();
            if waited + self.config.poll_interval > deadline {
                return Err(UiError::Timeout {
                    what: what.to_string(),
                    waited,
                    last_error,
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Waits until `selector` matches a node on the screen.
    pub async fn wait_for(
        &self,
        selector: &Fallbacks,
        deadline: Duration,
    ) -> Result<(Screen, Match), UiError> {
        self.wait_until(&selector.to_string(), deadline, |s| selector.find(&s.tree))
            .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::selector::Selector;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A device that records commands and answers dumps from a script.
    #[derive(Default)]
    pub(crate) struct FakeDevice {
        pub(crate) log: Mutex<Vec<String>>,
        pub(crate) dumps: Mutex<VecDeque<ShellOutput>>,
        pub(crate) other: Mutex<Option<ShellOutput>>,
    }

    impl FakeDevice {
        pub(crate) fn push_dump(&self, xml: &str) {
            let stdout = format!("UI hierchary dumped to: /sdcard/window_dump.xml\n{xml}");
            self.dumps.lock().unwrap().push_back(ShellOutput {
                stdout: stdout.into_bytes(),
                ..ShellOutput::default()
            });
        }

        pub(crate) fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Device for FakeDevice {
        async fn shell(&self, cmd: &str, _deadline: Duration) -> Result<ShellOutput, DeviceError> {
            self.log.lock().unwrap().push(cmd.to_string());
            if cmd.starts_with("uiautomator dump") {
                let mut dumps = self.dumps.lock().unwrap();
                let next = if dumps.len() > 1 {
                    dumps.pop_front()
                } else {
                    dumps.front().cloned()
                };
                return next.ok_or_else(|| DeviceError::Disconnected("no dump scripted".into()));
            }
            Ok(self.other.lock().unwrap().clone().unwrap_or_default())
        }

        async fn push(&self, _data: Vec<u8>, remote: &str, _mode: u32) -> Result<(), DeviceError> {
            self.log.lock().unwrap().push(format!("push {remote}"));
            Ok(())
        }
    }

    const EMPTY: &str = r#"<hierarchy><node class="F" bounds="[0,0][1080,2400]"/></hierarchy>"#;
    const WITH_LIKE: &str = r#"<hierarchy><node class="F" bounds="[0,0][1080,2400]"><node content-desc="Like" clickable="true" bounds="[960,1340][1056,1436]"/></node></hierarchy>"#;

    fn fast() -> UiConfig {
        UiConfig {
            poll_interval: Duration::from_millis(100),
            ..UiConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_polls_until_the_view_appears_then_taps_its_centre() {
        let dev = FakeDevice::default();
        dev.push_dump(EMPTY);
        dev.push_dump("<hierarchy><node"); // a dump cut short: not yet
        dev.push_dump(WITH_LIKE);
        let ui = Ui::new(&dev, fast());
        let like = Fallbacks(vec![
            Selector::resource_id("x:id/like"),
            Selector::content_desc("Like"),
        ]);
        let (screen, m) = ui.wait_for(&like, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            m,
            Match {
                node: 1,
                fallback: 1
            }
        );
        ui.tap_in(&screen.tree, &like, "like").await.unwrap();
        let log = dev.log();
        assert_eq!(
            log.iter()
                .filter(|c| c.starts_with("uiautomator dump"))
                .count(),
            3
        );
        assert_eq!(log.last().unwrap(), "input tap 1008 1388");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_times_out_with_the_selector_named() {
        let dev = FakeDevice::default();
        dev.push_dump(EMPTY);
        let ui = Ui::new(&dev, fast());
        let like = Fallbacks(vec![Selector::content_desc("Like")]);
        let err = ui
            .wait_for(&like, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, UiError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("Like"), "{err}");
        let dumps = dev
            .log()
            .iter()
            .filter(|c| c.starts_with("uiautomator"))
            .count();
        assert!((9..=11).contains(&dumps), "{dumps} dumps in 1 s at 100 ms");
    }

    #[tokio::test]
    async fn commands_are_what_android_expects() {
        let dev = FakeDevice::default();
        let ui = Ui::new(&dev, UiConfig::default());
        ui.launch("com.zhiliaoapp.musically").await.unwrap();
        ui.force_stop("com.zhiliaoapp.musically").await.unwrap();
        ui.home().await.unwrap();
        ui.swipe(540, 1800, 540, 600).await.unwrap();
        ui.type_text("hi there").await.unwrap();
        assert!(matches!(ui.type_text("naïve").await, Err(UiError::Text(_))));
        assert!(matches!(
            ui.launch("x; reboot").await,
            Err(UiError::BadPackage(_))
        ));
        assert_eq!(
            dev.log(),
            vec![
                "monkey -p com.zhiliaoapp.musically -c android.intent.category.LAUNCHER 1",
                "am force-stop com.zhiliaoapp.musically",
                "input keyevent 3",
                "input swipe 540 1800 540 600 300",
                "input text 'hi%sthere'",
            ]
        );
    }

    #[tokio::test]
    async fn failed_commands_and_screenshots() {
        let dev = FakeDevice::default();
        dev.dumps.lock().unwrap().push_back(ShellOutput {
            stdout: b"ERROR: null root node returned by UiTestAutomationBridge.\n".to_vec(),
            exit: 1,
            ..ShellOutput::default()
        });
        let ui = Ui::new(&dev, UiConfig::default());
        let err = ui.dump().await.unwrap_err();
        assert!(err.to_string().contains("null root node"), "{err}");
        *dev.other.lock().unwrap() = Some(ShellOutput {
            stdout: b"\x89PNG\r\r\n\x1a\r\nDATA".to_vec(),
            ..Default::default()
        });
        assert_eq!(ui.screenshot().await.unwrap(), b"\x89PNG\r\n\x1a\nDATA");
        *dev.other.lock().unwrap() = Some(ShellOutput {
            stdout: b"nope".to_vec(),
            ..Default::default()
        });
        assert!(matches!(ui.screenshot().await, Err(UiError::NotPng(4))));
        *dev.other.lock().unwrap() = Some(ShellOutput {
            stdout: b"    versionName=33.1.0\n".to_vec(),
            ..Default::default()
        });
        assert_eq!(
            ui.installed_version("com.zhiliaoapp.musically")
                .await
                .unwrap(),
            "33.1.0".parse().unwrap()
        );
    }
}

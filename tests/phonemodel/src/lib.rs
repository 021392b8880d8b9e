//! The model of one simulated Android phone, with no I/O: its shell, an in-memory filesystem for
//! sync, and the app's screens. The ADB peer in `phonefarm-phonesim` calls into it for every shell
//! command and sync request; this crate fixes the interface between the two.
//!
//! - [`Phone::shell`] runs a command line as `/system/bin/sh -c` would (see [`shell`] for the
//!   supported syntax and commands): `getprop`, `dumpsys`, `input`, `am`, `monkey`,
//!   `uiautomator dump`, `screencap`, `pm`, `df`, `settings`, file commands and more.
//! - The app (`com.zhiliaoapp.musically`) is a state machine rendered as uiautomator XML; its
//!   screens, node ids per UI variant and transitions are documented in `SCREENS.md`.
//! - Knobs ([`PhoneConfig`], [`Phone::inject_popup`], [`Phone::set_screen_on`], …) let tests set
//!   up the situations a real fleet meets, and [`Phone::actions`] is the typed log of what
//!   happened, for assertions.
//!
//! Nothing here panics on any input, and everything is deterministic: the same commands on the
//! same configuration give the same outputs.

mod actions;
mod app;
mod catalogue;
pub mod faults;
mod fs;
mod media;
mod png;
pub mod shell;
mod ui;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use actions::Action;
pub use app::{
    AccountState, Permission, Popup, PopupTrigger, Post, Profile, ProfileField, ScreenKind,
};
pub use catalogue::{Video, ad_video, feed_video, search as search_catalogue};
pub use faults::{Behaviour, Fault, FaultTrigger, Latency};
pub use media::mp4_duration_ms;
pub use ui::{
    APP_LAUNCH_ACTIVITY, APP_PACKAGE, NodeRef, Rect, SCREEN_HEIGHT, SCREEN_WIDTH, ScreenSize,
    UiVariant, app_resource_id,
};

/// What one shell command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: u8,
}

/// File metadata as the sync protocol reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Unix mode bits including the file type (0o100644 for a regular file, 0o040755 for a dir).
    pub mode: u32,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u32,
}

/// Identity a phone shows in its CNXN banner and `getprop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub serial: String,
    pub product: String,
    pub model: String,
    pub device: String,
    pub android_version: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            serial: "SIM0001".into(),
            product: "phonesim".into(),
            model: "Phonesim_One".into(),
            device: "phonesim".into(),
            android_version: "13".into(),
        }
    }
}

/// The knobs of one phone. Tests build one (`PhoneConfig { battery_level: 5,
/// ..Default::default() }`) for [`Phone::with_config`], or change a live phone through
/// [`Phone::config_mut`]; every knob takes effect at the next command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneConfig {
    /// Which UI build the app runs (ids differ; see SCREENS.md).
    pub variant: UiVariant,
    /// The app's `versionName`; None means the variant's default (`32.5.3` / `33.1.0`).
    pub app_version: Option<String>,
    /// False: the app is absent from `pm`, the launcher and `am start` fails.
    pub app_installed: bool,
    /// The account's standing; anything but `Active` replaces every app screen.
    pub account: AccountState,
    /// Usernames the edit-profile save rejects as taken.
    pub taken_usernames: BTreeSet<String>,
    /// `ro.product.manufacturer`.
    pub manufacturer: String,
    /// Battery percentage, 0..=100.
    pub battery_level: u8,
    /// Battery temperature in tenths of a degree Celsius (`dumpsys battery` reports it so).
    pub battery_temperature: i32,
    /// Plugged in over USB.
    pub charging: bool,
    /// Size of /data in bytes.
    pub storage_total: u64,
    /// Free bytes on /data before any file the model stores (writes use it up).
    pub storage_free: u64,
    /// Whether the app may read photos and videos; false makes the permission dialog appear
    /// when the gallery opens.
    pub media_permission: bool,
    /// Seed of the video catalogue.
    pub feed_seed: u64,
    /// The phone's clock (seconds since the Unix epoch): file times, `date`.
    pub clock: u32,
    /// After a reboot, how many `getprop sys.boot_completed` polls answer empty before `1`.
    pub boot_delay_polls: u32,
    /// How many of the next `uiautomator dump`s fail with `ERROR: could not get idle state.`
    /// (exit 1), as dumps do on real phones while the UI animates. Counts down.
    pub failing_dumps: u32,
    /// Model the on-screen keyboard: while a text field has focus it covers y >= 1500 (taps
    /// there hit the keyboard, which is not in the app's dump, as on Android) and the first
    /// BACK only hides it. Off by default.
    pub keyboard: bool,
    /// Every Nth feed video is an ad (`Sponsored` label, id `ad-…`); 0 means no ads.
    pub ad_every: u32,
    /// Latencies and the failures the phone shows on its own (a profile: `ideal`, the
    /// default, or `realistic`; see [`Behaviour`]).
    pub behaviour: Behaviour,
    /// Seed of the latency draws.
    pub fault_seed: u64,
    /// The display: 1080x2400 unless set (also 720x1280, 1440x3200). Screens are laid out on
    /// 1080x2400 and scaled to it.
    pub screen: ScreenSize,
    /// Posted videos go under review (the upload ends with "Your video is under review.").
    pub review_posts: bool,
    /// Bytes of incompressible filler `screencap` adds to its PNG (a private ancillary chunk
    /// decoders skip), so a test gets the size of a real phone's capture (1-3 MB at
    /// 1080x2400) rather than the model's 16 KiB black image. 0 by default.
    pub screencap_padding: usize,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        Self {
            variant: UiVariant::A,
            app_version: None,
            app_installed: true,
            account: AccountState::Active,
            taken_usernames: BTreeSet::new(),
            manufacturer: "Phonesim".into(),
            battery_level: 85,
            battery_temperature: 287,
            charging: true,
            storage_total: 64 * 1024 * 1024 * 1024,
            storage_free: 40 * 1024 * 1024 * 1024,
            media_permission: true,
            feed_seed: 0,
            clock: 1_795_000_000,
            boot_delay_polls: 0,
            failing_dumps: 0,
            keyboard: false,
            ad_every: 0,
            behaviour: Behaviour::ideal(),
            fault_seed: 0,
            screen: ScreenSize::FHD_PLUS,
            review_posts: false,
            screencap_padding: 0,
        }
    }
}

/// One simulated phone. The peer wraps it in `Arc<Mutex<Phone>>`; every method is quick and
/// never blocks.
#[derive(Debug)]
pub struct Phone {
    identity: Identity,
    pub(crate) config: PhoneConfig,
    pub(crate) fs: fs::Fs,
    pub(crate) app: app::App,
    pub(crate) actions: Vec<Action>,
    pub(crate) screen_on: bool,
    pub(crate) settings: BTreeMap<String, String>,
    pub(crate) reboot_requested: bool,
    pub(crate) boot_polls_left: u32,
    pub(crate) faults: faults::FaultState,
    /// The keyguard is up (shown whenever the screen is on).
    pub(crate) locked: bool,
    /// The image last opened in the viewer (shown while the viewer is in the foreground).
    pub(crate) viewing: Option<Viewed>,
}

/// An image the system viewer shows full screen (`am start -a android.intent.action.VIEW -d
/// file://…`), as the console's locate action opens it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Viewed {
    pub path: String,
    /// The colour of its first pixel when it is an 8-bit RGB PNG the model can read (stored
    /// deflate blocks, as the agent writes it); None for anything else or a missing file.
    pub colour: Option<[u8; 3]>,
}

impl Default for Phone {
    fn default() -> Self {
        Self::new(Identity::default())
    }
}

fn default_settings() -> BTreeMap<String, String> {
    [
        ("global/adb_enabled", "1"),
        ("global/adb_allowed_connection_time", "604800000"),
        ("global/stay_on_while_plugged_in", "0"),
        ("global/airplane_mode_on", "0"),
        ("global/package_verifier_enable", "1"),
        ("secure/android_id", "5f3a9c2e7b1d4a60"),
        ("secure/location_mode", "0"),
        ("system/screen_off_timeout", "60000"),
        ("system/screen_brightness", "128"),
        ("system/accelerometer_rotation", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Phone {
    pub fn new(identity: Identity) -> Self {
        Self::with_config(identity, PhoneConfig::default())
    }

    /// A phone with the given knobs.
    pub fn with_config(identity: Identity, config: PhoneConfig) -> Self {
        Self {
            identity,
            fs: fs::Fs::new(config.clock),
            faults: faults::FaultState::new(config.fault_seed),
            locked: false,
            config,
            app: app::App::default(),
            actions: Vec::new(),
            screen_on: true,
            settings: default_settings(),
            reboot_requested: false,
            boot_polls_left: 0,
            viewing: None,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn config(&self) -> &PhoneConfig {
        &self.config
    }

    /// The knobs, to change on a live phone.
    pub fn config_mut(&mut self) -> &mut PhoneConfig {
        &mut self.config
    }

    /// The app's `versionName`.
    pub fn app_version(&self) -> &str {
        self.config
            .app_version
            .as_deref()
            .unwrap_or_else(|| self.config.variant.default_version())
    }

    pub fn screen_on(&self) -> bool {
        self.screen_on
    }

    /// Turns the display on or off (as the power key does; off locks it when the phone
    /// locks, see [`Behaviour::lock_screen`]).
    pub fn set_screen_on(&mut self, on: bool) {
        if on {
            self.screen_on = true;
        } else {
            self.screen_off();
        }
    }

    /// The image the viewer shows now: Some only while it is on screen (screen on, unlocked,
    /// the viewer in the foreground).
    pub fn viewing(&self) -> Option<&Viewed> {
        (self.screen() == ScreenKind::ImageViewer)
            .then_some(self.viewing.as_ref())
            .flatten()
    }

    /// Whether the keyguard is up.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Queues a pop-up to appear over the app (see [`PopupTrigger`]).
    pub fn inject_popup(&mut self, popup: Popup, trigger: PopupTrigger) {
        self.inject(popup, trigger);
    }

    /// The account's current profile (what the profile screen shows).
    pub fn profile(&self) -> &Profile {
        &self.app.profile
    }

    /// Replaces the account's profile.
    pub fn set_profile(&mut self, profile: Profile) {
        self.app.profile = profile;
    }

    /// Videos the account posted, newest first.
    pub fn posts(&self) -> &[Post] {
        &self.app.posts
    }

    /// Ids of the videos the account currently likes.
    pub fn liked_videos(&self) -> Vec<String> {
        self.app.liked.iter().cloned().collect()
    }

    /// Comments the account posted on a video, oldest first.
    pub fn comments_on(&self, video_id: &str) -> Vec<String> {
        self.app.comments.get(video_id).cloned().unwrap_or_default()
    }

    /// Whether the app's process is running (in the foreground or not).
    pub fn app_running(&self) -> bool {
        self.app.running
    }

    /// Everything that happened on the phone, oldest first.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Drains the action log.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The current screen as uiautomator XML (what `uiautomator dump` would write), without
    /// counting as a dump. None while the screen is off.
    pub fn ui_xml(&self) -> Option<String> {
        self.screen_on.then(|| {
            self.window()
                .to_xml(self.config.variant, self.config.screen)
        })
    }

    /// True once after the shell ran `reboot`: the peer should drop its connections, as a real
    /// phone does (the model has already rebooted).
    pub fn take_reboot_request(&mut self) -> bool {
        std::mem::take(&mut self.reboot_requested)
    }

    pub fn stat(&self, path: &str) -> Option<FileStat> {
        self.fs.stat(path)
    }

    /// Entries of a directory (names only, not paths), or None if it is not a directory.
    pub fn list(&self, path: &str) -> Option<Vec<(String, FileStat)>> {
        self.fs.list(path)
    }

    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.fs.read(path).ok().map(<[u8]>::to_vec)
    }

    /// Stores a pushed file. `mode` is the full mode from the sync SEND request (permission
    /// bits alone are taken as a regular file). Missing parent directories are created. As for
    /// the shell user, only paths below `/sdcard` (alias `/storage/emulated/0`) and
    /// `/data/local/tmp` are writable. Errors are the strerror text for the sync FAIL reply:
    /// `Permission denied` (elsewhere under /data), `Read-only file system`, `Is a directory`,
    /// `Not a directory`, `No space left on device`, `Invalid argument`.
    pub fn write(
        &mut self,
        path: &str,
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
    ) -> Result<(), String> {
        let free = self.storage_free();
        self.fs
            .write(path, data, mode, mtime, free)
            .map_err(|e| e.to_string())
    }

    /// Free bytes on /data (and /sdcard, which lives on it).
    pub fn storage_free(&self) -> u64 {
        self.config
            .storage_free
            .saturating_sub(self.fs.used_bytes())
    }

    /// The phone reboots (state resets as after a real reboot): the app stops, the screen
    /// turns on at the launcher, pop-ups on screen go away. Files, settings, the account's
    /// data and the media store survive.
    pub fn reboot(&mut self) {
        self.app.running = false;
        self.app.stack.clear();
        self.app.update_prompt = false;
        self.app.permission = None;
        self.app.system = None;
        self.app.upload_status = None;
        self.app.foreground = app::Foreground::Launcher;
        self.screen_on = true;
        self.locked = self.config.behaviour.lock_screen;
        self.boot_polls_left = self.config.boot_delay_polls;
        self.actions.push(Action::Rebooted);
    }
}

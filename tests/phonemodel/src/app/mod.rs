//! The app as a state machine: its screen stack, what each screen renders (see SCREENS.md), and
//! what taps, swipes, keys and typed text do. `render` turns the state into a view tree,
//! `input` applies taps, swipes, keys and text; this module holds the state and the lifecycle.

mod input;
mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Phone;
use crate::actions::Action;
use crate::catalogue::{self, Video};
use crate::ui::{Rect, SCREEN_HEIGHT, SCREEN_WIDTH};

/// The account's standing, which the app shows instead of its normal screens when not active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    #[default]
    Active,
    LoggedOut,
    Banned,
    Captcha,
    VerificationRequired,
}

/// A pop-up that can appear over any app screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Popup {
    /// The in-app "Update available" prompt (`Update` / `Not now`).
    UpdatePrompt,
    /// The system media permission dialog (`Allow` / `Don't allow`).
    PermissionDialog,
}

/// When an injected pop-up appears (it waits while the app is not in the foreground).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopupTrigger {
    /// Right away (or as soon as the app is in the foreground).
    Now,
    /// When the app is next launched.
    NextLaunch,
    /// In the (N+1)th `uiautomator dump` after injection: `AfterDumps(2)` lets two dumps
    /// through and shows in the third.
    AfterDumps(u32),
}

/// The account's own profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub display_name: String,
    /// Without `@`.
    pub username: String,
    pub bio: String,
    pub following: u32,
    pub followers: u32,
    pub likes: u32,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            display_name: "Sim User".into(),
            username: "sim.user01".into(),
            bio: String::new(),
            following: 12,
            followers: 3,
            likes: 0,
        }
    }
}

/// A profile field the edit screen sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileField {
    DisplayName,
    Username,
    Bio,
}

/// A video the account posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Post {
    pub video_id: String,
    /// The gallery file it was made from.
    pub file: String,
    pub caption: String,
}

/// What is on the screen, by name (tests and the action log use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenKind {
    ScreenOff,
    Launcher,
    PlayStore,
    Feed,
    SearchInput,
    SearchResults,
    Player,
    CommentSheet,
    Profile,
    EditProfile,
    Gallery,
    PostScreen,
    Placeholder,
    UpdatePrompt,
    PermissionDialog,
    LoggedOut,
    Banned,
    Captcha,
    VerificationRequired,
}

/// A text field that can hold focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Search,
    Comment,
    EditName,
    EditUsername,
    EditBio,
    Caption,
    VerifyCode,
}

impl Field {
    fn id(self) -> &'static str {
        match self {
            Self::Search => "search_input",
            Self::Comment => "comment_input",
            Self::EditName => "edit_name",
            Self::EditUsername => "edit_username",
            Self::EditBio => "edit_bio",
            Self::Caption => "post_caption",
            Self::VerifyCode => "verify_code",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Home,
    Friends,
    Create,
    Inbox,
    Profile,
}

/// What tapping a node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tap {
    Tab(Tab),
    OpenSearch,
    Like,
    OpenComments,
    Follow,
    AuthorProfile,
    Back,
    Focus(Field),
    Clear(Field),
    SubmitSearch,
    Suggestion(usize),
    EditQuery,
    OpenResult(usize),
    CloseComments,
    PostComment,
    OpenEditProfile,
    SaveProfile,
    GalleryToggle(String),
    GalleryNext,
    Publish,
    OpenOwnPost(usize),
    UpdateConfirm,
    UpdateDismiss,
    PermissionAllow,
    PermissionDeny,
    BanLogout,
    LaunchApp,
    /// Clickable, but nothing happens (logged).
    Nothing,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommentSheet {
    draft: String,
    focused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditDraft {
    name: String,
    username: String,
    bio: String,
    focus: Option<Field>,
    error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Screen {
    Feed {
        sheet: Option<CommentSheet>,
    },
    Search {
        query: String,
    },
    Results {
        query: String,
        results: Vec<Video>,
        scroll_rows: usize,
    },
    Player {
        list: Vec<Video>,
        index: usize,
        sheet: Option<CommentSheet>,
    },
    Profile,
    EditProfile(EditDraft),
    Gallery {
        selected: Option<String>,
    },
    Post {
        file: String,
        caption: String,
        focused: bool,
    },
    Placeholder {
        title: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Foreground {
    Launcher,
    App,
    PlayStore,
}

/// Why the permission dialog is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermissionReason {
    Gallery,
    Injected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadStatus {
    /// Posted; no dump has shown it yet: the next dump shows `Uploading 45%`.
    Uploading,
    /// Later dumps show `Your video has been posted.`
    Posted,
}

/// Longest text a field keeps (bounds memory under arbitrary input).
const MAX_FIELD_CHARS: usize = 4096;
/// Deepest screen stack kept (older screens above the root are dropped).
const MAX_STACK: usize = 24;
const SWIPE_MIN: i32 = 200;

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub running: bool,
    pub foreground: Foreground,
    pub stack: Vec<Screen>,
    pub update_prompt: bool,
    pub permission: Option<PermissionReason>,
    pub feed_index: u64,
    pub liked: BTreeSet<String>,
    pub follows: BTreeSet<String>,
    /// Own comments per video id, oldest first.
    pub comments: BTreeMap<String, Vec<String>>,
    pub profile: Profile,
    /// Newest first.
    pub posts: Vec<Post>,
    /// Scanned media: path → scan sequence number.
    pub media: BTreeMap<String, u64>,
    pub media_seq: u64,
    pub upload_status: Option<UploadStatus>,
    pub pending_popups: Vec<(Popup, PopupTrigger, u32)>,
    pub verify_code: String,
    pub verify_focused: bool,
    /// BACK hid the on-screen keyboard; focusing a field or changing screen shows it again.
    pub keyboard_dismissed: bool,
}

impl Default for App {
    fn default() -> Self {
        Self {
            running: false,
            foreground: Foreground::Launcher,
            stack: Vec::new(),
            update_prompt: false,
            permission: None,
            feed_index: 0,
            liked: BTreeSet::new(),
            follows: BTreeSet::new(),
            comments: BTreeMap::new(),
            profile: Profile::default(),
            posts: Vec::new(),
            media: BTreeMap::new(),
            media_seq: 0,
            upload_status: None,
            pending_popups: Vec::new(),
            verify_code: String::new(),
            verify_focused: false,
            keyboard_dismissed: false,
        }
    }
}

fn is_video_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".mp4", ".mov", ".3gp", ".webm", ".mkv"]
        .iter()
        .any(|e| lower.ends_with(e))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn push_capped(s: &mut String, text: &str) {
    let room = MAX_FIELD_CHARS.saturating_sub(s.chars().count());
    s.extend(text.chars().take(room));
}

/// Generic comments every video already has (shown after the account's own).
const FILLER_COMMENTS: &[(&str, &str)] = &[
    ("maya.k", "This is so good"),
    ("jonny_b", "Need part 2!"),
    ("lil.zee", "Saving this for later"),
];

fn r(l: i32, t: i32, rr: i32, b: i32) -> Rect {
    Rect::new(l, t, rr, b)
}

fn full() -> Rect {
    r(0, 0, SCREEN_WIDTH, SCREEN_HEIGHT)
}

impl Phone {
    fn log(&mut self, a: Action) {
        self.actions.push(a);
    }

    fn log_current_video(&mut self) {
        if let Some(v) = self.current_video() {
            self.log(Action::VideoShown { video_id: v.id });
        }
    }

    // ---------------------------------------------------------------- state queries

    pub(crate) fn app_in_foreground(&self) -> bool {
        self.app.foreground == Foreground::App
            && self.app.running
            && self.config.app_installed
            && self.screen_on
    }

    fn top(&self) -> Option<&Screen> {
        self.app.stack.last()
    }

    fn top_mut(&mut self) -> Option<&mut Screen> {
        self.app.stack.last_mut()
    }

    /// What is on the screen now.
    pub fn screen(&self) -> ScreenKind {
        if !self.screen_on {
            return ScreenKind::ScreenOff;
        }
        match self.app.foreground {
            Foreground::Launcher => return ScreenKind::Launcher,
            Foreground::PlayStore => return ScreenKind::PlayStore,
            Foreground::App if !self.app.running || !self.config.app_installed => {
                return ScreenKind::Launcher;
            }
            Foreground::App => {}
        }
        if self.app.permission.is_some() {
            return ScreenKind::PermissionDialog;
        }
        if self.app.update_prompt {
            return ScreenKind::UpdatePrompt;
        }
        match self.config.account {
            AccountState::Active => {}
            AccountState::LoggedOut => return ScreenKind::LoggedOut,
            AccountState::Banned => return ScreenKind::Banned,
            AccountState::Captcha => return ScreenKind::Captcha,
            AccountState::VerificationRequired => return ScreenKind::VerificationRequired,
        }
        match self.top() {
            None => ScreenKind::Launcher,
            Some(Screen::Feed { sheet: Some(_) } | Screen::Player { sheet: Some(_), .. }) => {
                ScreenKind::CommentSheet
            }
            Some(Screen::Feed { .. }) => ScreenKind::Feed,
            Some(Screen::Search { .. }) => ScreenKind::SearchInput,
            Some(Screen::Results { .. }) => ScreenKind::SearchResults,
            Some(Screen::Player { .. }) => ScreenKind::Player,
            Some(Screen::Profile) => ScreenKind::Profile,
            Some(Screen::EditProfile(_)) => ScreenKind::EditProfile,
            Some(Screen::Gallery { .. }) => ScreenKind::Gallery,
            Some(Screen::Post { .. }) => ScreenKind::PostScreen,
            Some(Screen::Placeholder { .. }) => ScreenKind::Placeholder,
        }
    }

    /// The feed's video at `index`: the catalogue's, or an ad where the ads knob puts one.
    pub(crate) fn feed_item(&self, index: u64) -> Video {
        let every = u64::from(self.config.ad_every);
        if every > 0 && (index + 1).is_multiple_of(every) {
            catalogue::ad_video(index)
        } else {
            catalogue::feed_video(self.config.feed_seed, index)
        }
    }

    /// The video on screen (feed or player), if any.
    pub fn current_video(&self) -> Option<Video> {
        match self.top()? {
            Screen::Feed { .. } => Some(self.feed_item(self.app.feed_index)),
            Screen::Player { list, index, .. } => list.get(*index).cloned(),
            _ => None,
        }
    }

    /// Gallery items: scanned video files that still exist, most recently scanned first.
    pub fn gallery(&self) -> Vec<String> {
        let mut items: Vec<(&String, &u64)> = self
            .app
            .media
            .iter()
            .filter(|(p, _)| self.fs.read(p).is_ok() && is_video_file(p))
            .collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        items.into_iter().map(|(p, _)| p.clone()).collect()
    }

    // ---------------------------------------------------------------- lifecycle

    /// Starts or resumes the app. False when it is not installed.
    pub(crate) fn launch_app(&mut self) -> bool {
        if !self.config.app_installed {
            return false;
        }
        let cold = !self.app.running || self.app.stack.is_empty();
        if cold {
            self.app.running = true;
            self.app.stack = vec![Screen::Feed { sheet: None }];
            self.app.update_prompt = false;
            self.app.permission = None;
            self.app.upload_status = None;
        }
        self.app.foreground = Foreground::App;
        self.log(Action::AppLaunched { cold });
        for p in &mut self.app.pending_popups {
            if p.1 == PopupTrigger::NextLaunch {
                p.1 = PopupTrigger::Now;
            }
        }
        if cold {
            self.log_current_video();
        }
        self.settle_popups();
        true
    }

    pub(crate) fn force_stop_app(&mut self) {
        if self.app.running {
            self.log(Action::AppForceStopped);
        }
        self.app.running = false;
        self.app.stack.clear();
        self.app.update_prompt = false;
        self.app.permission = None;
        self.app.upload_status = None;
        if self.app.foreground == Foreground::App {
            self.app.foreground = Foreground::Launcher;
        }
    }

    pub(crate) fn inject(&mut self, popup: Popup, trigger: PopupTrigger) {
        self.app.pending_popups.push((popup, trigger, 0));
        self.settle_popups();
    }

    /// Shows pending pop-ups whose trigger has come, if the app is in the foreground.
    pub(crate) fn settle_popups(&mut self) {
        if !self.app_in_foreground() {
            return;
        }
        let mut shown = Vec::new();
        self.app.pending_popups.retain(|(popup, trigger, seen)| {
            let ready = match trigger {
                PopupTrigger::Now => true,
                PopupTrigger::NextLaunch => false,
                PopupTrigger::AfterDumps(n) => seen >= n,
            };
            if ready {
                shown.push(*popup);
            }
            !ready
        });
        for popup in shown {
            match popup {
                Popup::UpdatePrompt => self.app.update_prompt = true,
                Popup::PermissionDialog => {
                    if self.app.permission.is_none() {
                        self.app.permission = Some(PermissionReason::Injected);
                    }
                }
            }
            self.log(Action::PopupShown { popup });
        }
    }

    /// Called for every `uiautomator dump`: counts it for pop-up triggers, renders, and moves
    /// the upload banner along.
    pub(crate) fn dump_window(&mut self) -> Option<String> {
        // `AfterDumps(n)` is due once n dumps have passed, so it shows in dump n+1.
        self.settle_popups();
        for p in &mut self.app.pending_popups {
            if let PopupTrigger::AfterDumps(_) = p.1 {
                p.2 = p.2.saturating_add(1);
            }
        }
        if !self.screen_on {
            return None;
        }
        let kind = self.screen();
        let xml = self.window().to_xml(self.config.variant);
        self.log(Action::UiDumped { screen: kind });
        if kind == ScreenKind::Feed && self.app.upload_status == Some(UploadStatus::Uploading) {
            self.app.upload_status = Some(UploadStatus::Posted);
        }
        Some(xml)
    }

    pub(crate) fn media_scan(&mut self, path: &str) {
        for file in self.fs.files_under(path) {
            if file.starts_with("/sdcard/") && is_video_file(&file) {
                self.app.media_seq += 1;
                self.app.media.insert(file.clone(), self.app.media_seq);
                self.log(Action::MediaScanned { path: file });
            }
        }
    }
}

//! The app as a state machine: its screen stack, what each screen renders (see SCREENS.md), and
//! what taps, swipes, keys and typed text do. `render` turns the state into a view tree,
//! `input` applies taps, swipes, keys and text; this module holds the state and the lifecycle.

mod input;
mod render;
mod system;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Phone;
use crate::actions::Action;
use crate::catalogue::{self, Video};
use crate::media::MediaEntry;
use crate::ui::{Rect, SCREEN_HEIGHT, SCREEN_WIDTH};

pub(crate) use system::SystemDialog;

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
    /// "Session expired": the app asks to log in again.
    SessionExpired,
    /// The account is suspended for a while.
    Suspended,
    /// "You're tapping too fast": the app refuses actions for a while.
    RateLimited,
}

/// A runtime permission the app can ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Photos and videos (the gallery needs it).
    #[default]
    Media,
    Contacts,
    Microphone,
    Notifications,
    Location,
}

impl Permission {
    /// The prompt's question.
    pub fn message(self) -> &'static str {
        match self {
            Self::Media => "Allow TikTok to access photos and videos on this device?",
            Self::Contacts => "Allow TikTok to access your contacts?",
            Self::Microphone => "Allow TikTok to record audio?",
            Self::Notifications => "Allow TikTok to send you notifications?",
            Self::Location => "Allow TikTok to access this device's location?",
        }
    }
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
    /// Held for review (knob `review_posts`): the profile tile says `Under review`.
    pub under_review: bool,
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
    SessionExpired,
    Suspended,
    RateLimited,
    /// "TikTok isn't responding" (system dialog).
    NotResponding,
    /// "TikTok keeps stopping" (system dialog).
    KeepsStopping,
    /// "Battery is low" (system dialog).
    LowBattery,
    /// The lock screen (swipe up to unlock).
    Keyguard,
    /// The system's image viewer, full screen (the console's locate colour).
    ImageViewer,
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
    SessionOk,
    RateOk,
    AnrWait,
    AnrClose,
    CrashClose,
    BatteryCancel,
    BatteryTurnOn,
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
    /// An image opened with `am start -a android.intent.action.VIEW -d file://…` (the
    /// console's locate screen): [`crate::Phone::viewing`].
    Viewer,
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
    /// Later dumps show `Your video is under review.` (knob `review_posts`).
    UnderReview,
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
    /// What the permission dialog asks for.
    pub permission_kind: Permission,
    /// A system dialog over whatever is on screen.
    pub system: Option<SystemDialog>,
    pub feed_index: u64,
    pub liked: BTreeSet<String>,
    pub follows: BTreeSet<String>,
    /// Own comments per video id, oldest first.
    pub comments: BTreeMap<String, Vec<String>>,
    pub profile: Profile,
    /// Newest first.
    pub posts: Vec<Post>,
    /// Scanned media by path.
    pub media: BTreeMap<String, MediaEntry>,
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
            permission_kind: Permission::Media,
            system: None,
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
    pub(crate) fn log(&mut self, a: Action) {
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
        if self.locked {
            return ScreenKind::Keyguard;
        }
        if let Some(d) = self.app.system {
            return d.kind();
        }
        match self.app.foreground {
            Foreground::Launcher => return ScreenKind::Launcher,
            Foreground::PlayStore => return ScreenKind::PlayStore,
            Foreground::Viewer => return ScreenKind::ImageViewer,
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
            AccountState::SessionExpired => return ScreenKind::SessionExpired,
            AccountState::Suspended => return ScreenKind::Suspended,
            AccountState::RateLimited => return ScreenKind::RateLimited,
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

    // ---------------------------------------------------------------- lifecycle

    /// Starts or resumes the app. False when it is not installed.
    pub(crate) fn launch_app(&mut self) -> bool {
        if !self.config.app_installed {
            return false;
        }
        let cold = !self.app.running || self.app.stack.is_empty();
        if self.app.system == Some(SystemDialog::KeepsStopping) {
            self.app.system = None;
        }
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
        self.end_app();
    }

    /// The app's process dies on its own (a crash, the system killing it).
    pub(crate) fn kill_app(&mut self) {
        if self.app.running {
            self.log(Action::AppDied);
        }
        self.end_app();
    }

    fn end_app(&mut self) {
        if matches!(self.app.system, Some(SystemDialog::NotResponding { .. })) {
            self.app.system = None;
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

    /// Called for every `uiautomator dump`: fires the faults and pop-ups due, renders (the
    /// previous screen while a transition is recent), and moves the upload banner along.
    pub(crate) fn dump_window(&mut self, compressed: bool) -> Option<String> {
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
        let (window, kind) = match self.stale_dump() {
            Some((window, kind)) => {
                self.log(Action::StaleDump { shown: kind });
                (window, kind)
            }
            None => (self.window(), self.screen()),
        };
        let xml = window.to_xml_with(self.config.variant, self.config.screen, compressed);
        self.log(Action::UiDumped { screen: kind });
        if self.screen() == ScreenKind::Feed
            && self.app.upload_status == Some(UploadStatus::Uploading)
        {
            let reviewed = self.app.posts.first().is_some_and(|p| p.under_review);
            self.app.upload_status = Some(if reviewed {
                UploadStatus::UnderReview
            } else {
                UploadStatus::Posted
            });
        }
        Some(xml)
    }

    /// Opens a screen no flow pack knows over the app (fault `StrangeScreen`).
    pub(crate) fn open_strange_screen(&mut self) {
        if self.app.running {
            self.app.stack.push(Screen::Placeholder {
                title: "Something new".into(),
            });
        }
    }

    /// Whether the screen never stops animating (a video plays), so that uiautomator never
    /// sees it idle.
    pub(crate) fn animated(&self) -> bool {
        matches!(
            self.screen(),
            ScreenKind::Feed | ScreenKind::Player | ScreenKind::CommentSheet
        )
    }
}

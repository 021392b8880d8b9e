//! The app as a state machine: its screen stack, what each screen renders (see SCREENS.md), and
//! what taps, swipes, keys and typed text do.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Phone;
use crate::actions::Action;
use crate::catalogue::{self, SUGGESTIONS, Video, short_count};
use crate::ui::Node;
use crate::ui::{
    APP_PACKAGE, BUTTON, EDIT, FRAME, IMAGE, LAUNCHER_PACKAGE, LINEAR, NodeRef, PAGER,
    PERMISSION_PACKAGE, PLAY_STORE_PACKAGE, RECYCLER, Rect, SCREEN_HEIGHT, SCREEN_WIDTH, SEEKBAR,
    TEXT, Window,
};

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

    /// The video on screen (feed or player), if any.
    pub fn current_video(&self) -> Option<Video> {
        match self.top()? {
            Screen::Feed { .. } => Some(catalogue::feed_video(
                self.config.feed_seed,
                self.app.feed_index,
            )),
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

    // ---------------------------------------------------------------- rendering

    pub(crate) fn window(&self) -> Window {
        let kind = self.screen();
        match kind {
            ScreenKind::ScreenOff | ScreenKind::Launcher => return self.launcher_window(),
            ScreenKind::PlayStore => {
                return Window {
                    package: PLAY_STORE_PACKAGE,
                    root: Node::new(FRAME, full())
                        .child(Node::new(TEXT, r(96, 300, 984, 400)).text("TikTok")),
                };
            }
            ScreenKind::PermissionDialog => return permission_window(),
            _ => {}
        }
        let mut children: Vec<Node> = match self.config.account {
            AccountState::Active => self.stack_nodes(),
            other => account_nodes(other, &self.app),
        };
        if self.app.update_prompt {
            children = children.into_iter().map(Node::under_modal).collect();
            children.push(update_dialog());
        }
        Window {
            package: APP_PACKAGE,
            root: Node::new(FRAME, full()).children(children),
        }
    }

    fn launcher_window(&self) -> Window {
        let mut root = Node::new(FRAME, full())
            .child(Node::new(TEXT, r(96, 180, 984, 300)).text(self.clock_text()));
        if self.config.app_installed {
            root = root.child(
                Node::new(TEXT, r(432, 1600, 648, 1800))
                    .text("TikTok")
                    .desc("TikTok")
                    .on_tap(Tap::LaunchApp)
                    .long_clickable(),
            );
        }
        Window {
            package: LAUNCHER_PACKAGE,
            root,
        }
    }

    fn clock_text(&self) -> String {
        let secs = self.config.clock % 86_400;
        format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
    }

    fn stack_nodes(&self) -> Vec<Node> {
        let Some(top) = self.top() else {
            return Vec::new();
        };
        match top {
            Screen::Feed { sheet } => {
                let v = catalogue::feed_video(self.config.feed_seed, self.app.feed_index);
                let mut nodes = vec![
                    self.video_pager(&v, 2232),
                    Node::new(TEXT, r(300, 96, 520, 192))
                        .id("top_following")
                        .text("Following")
                        .on_tap(Tap::Nothing),
                    Node::new(TEXT, r(560, 96, 780, 192))
                        .id("top_foryou")
                        .text("For You")
                        .selected(true)
                        .on_tap(Tap::Nothing),
                    Node::new(IMAGE, r(960, 96, 1056, 192))
                        .id("search_icon")
                        .desc("Search")
                        .on_tap(Tap::OpenSearch),
                ];
                if let Some(status) = self.app.upload_status {
                    let text = match status {
                        UploadStatus::Uploading => "Uploading 45%",
                        UploadStatus::Posted => "Your video has been posted.",
                    };
                    nodes.push(
                        Node::new(TEXT, r(120, 260, 960, 340))
                            .id("upload_status")
                            .text(text),
                    );
                }
                nodes.push(nav_bar(Tab::Home));
                self.with_sheet(nodes, sheet.as_ref(), &v)
            }
            Screen::Player { list, index, sheet } => {
                let Some(v) = list.get(*index) else {
                    return Vec::new();
                };
                let nodes = vec![
                    self.video_pager(v, SCREEN_HEIGHT),
                    Node::new(IMAGE, r(24, 96, 144, 216))
                        .id("back_button")
                        .desc("Back")
                        .on_tap(Tap::Back),
                ];
                self.with_sheet(nodes, sheet.as_ref(), v)
            }
            Screen::Search { query } => {
                let mut nodes = vec![
                    Node::new(IMAGE, r(0, 96, 120, 216))
                        .id("search_back")
                        .desc("Back")
                        .on_tap(Tap::Back),
                    edit_text(
                        r(140, 96, 900, 216),
                        "search_input",
                        query,
                        "Search videos",
                        true,
                        Field::Search,
                    ),
                ];
                if !query.is_empty() {
                    nodes.push(
                        Node::new(IMAGE, r(820, 120, 890, 190))
                            .id("search_clear")
                            .desc("Clear")
                            .on_tap(Tap::Clear(Field::Search)),
                    );
                }
                nodes.push(
                    Node::new(TEXT, r(920, 96, 1064, 216))
                        .id("search_submit")
                        .text("Search")
                        .on_tap(Tap::SubmitSearch),
                );
                for (i, s) in SUGGESTIONS.iter().enumerate() {
                    let top = 260 + 120 * i as i32;
                    nodes.push(
                        Node::new(TEXT, r(0, top, 1080, top + 120))
                            .id("search_suggestion")
                            .text(*s)
                            .on_tap(Tap::Suggestion(i)),
                    );
                }
                nodes
            }
            Screen::Results {
                query,
                results,
                scroll_rows,
            } => {
                let mut tiles = Vec::new();
                for row in 0..3usize {
                    for col in 0..2usize {
                        let k = (scroll_rows + row) * 2 + col;
                        let Some(v) = results.get(k) else { continue };
                        let (x, y) = (540 * col as i32, 360 + 680 * row as i32);
                        tiles.push(
                            Node::new(FRAME, r(x, y, x + 540, y + 680))
                                .id("result_tile")
                                .desc(v.caption.clone())
                                .on_tap(Tap::OpenResult(k))
                                .child(
                                    Node::new(TEXT, r(x + 16, y + 540, x + 524, y + 620))
                                        .id("result_caption")
                                        .text(v.caption.clone()),
                                )
                                .child(
                                    Node::new(TEXT, r(x + 16, y + 620, x + 524, y + 672))
                                        .id("result_author")
                                        .text(format!("@{}", v.author)),
                                ),
                        );
                    }
                }
                vec![
                    Node::new(IMAGE, r(0, 96, 120, 216))
                        .id("search_back")
                        .desc("Back")
                        .on_tap(Tap::Back),
                    edit_text(
                        r(140, 96, 900, 216),
                        "search_input",
                        query,
                        "Search videos",
                        false,
                        Field::Search,
                    )
                    .on_tap(Tap::EditQuery),
                    Node::new(TEXT, r(0, 240, 270, 336))
                        .id("results_tab_videos")
                        .text("Videos")
                        .selected(true)
                        .on_tap(Tap::Nothing),
                    Node::new(TEXT, r(270, 240, 540, 336))
                        .id("results_tab_users")
                        .text("Users")
                        .on_tap(Tap::Nothing),
                    Node::new(RECYCLER, r(0, 360, 1080, 2400))
                        .id("results_grid")
                        .scrollable()
                        .children(tiles),
                ]
            }
            Screen::Profile => self.profile_nodes(),
            Screen::EditProfile(d) => edit_profile_nodes(d),
            Screen::Gallery { selected } => {
                let items = self.gallery();
                let mut nodes = vec![
                    Node::new(IMAGE, r(24, 96, 144, 216))
                        .id("gallery_close")
                        .desc("Close")
                        .on_tap(Tap::Back),
                    Node::new(TEXT, r(340, 96, 740, 216))
                        .id("gallery_title")
                        .text("Recents"),
                ];
                let mut tiles = Vec::new();
                for (k, path) in items.iter().take(15).enumerate() {
                    let (c, rw) = ((k % 3) as i32, (k / 3) as i32);
                    let (x, y) = (360 * c, 300 + 360 * rw);
                    tiles.push(
                        Node::new(FRAME, r(x, y, x + 360, y + 360))
                            .id("gallery_item")
                            .desc(format!("Video, {}", file_name(path)))
                            .checkable(selected.as_deref() == Some(path.as_str()))
                            .on_tap(Tap::GalleryToggle(path.clone()))
                            .child(
                                Node::new(TEXT, r(x + 220, y + 300, x + 350, y + 350))
                                    .id("gallery_duration")
                                    .text("0:15"),
                            ),
                    );
                }
                nodes.push(
                    Node::new(RECYCLER, r(0, 300, 1080, 2200))
                        .id("gallery_grid")
                        .scrollable()
                        .children(tiles),
                );
                if items.is_empty() {
                    nodes.push(
                        Node::new(TEXT, r(240, 1100, 840, 1180))
                            .id("gallery_empty")
                            .text("No videos"),
                    );
                }
                nodes.push(
                    Node::new(BUTTON, r(780, 2240, 1048, 2360))
                        .id("gallery_next")
                        .text("Next")
                        .on_tap(Tap::GalleryNext)
                        .enabled(selected.is_some()),
                );
                nodes
            }
            Screen::Post {
                caption, focused, ..
            } => vec![
                Node::new(IMAGE, r(24, 96, 144, 216))
                    .id("post_back")
                    .desc("Back")
                    .on_tap(Tap::Back),
                edit_text(
                    r(48, 240, 760, 640),
                    "post_caption",
                    caption,
                    "Add description...",
                    *focused,
                    Field::Caption,
                ),
                Node::new(IMAGE, r(800, 240, 1032, 560))
                    .id("post_cover")
                    .desc("Cover")
                    .on_tap(Tap::Nothing),
                Node::new(BUTTON, r(552, 2240, 1048, 2360))
                    .id("post_publish")
                    .text("Post")
                    .on_tap(Tap::Publish),
            ],
            Screen::Placeholder { title } => {
                vec![
                    Node::new(TEXT, r(240, 96, 840, 216))
                        .id("placeholder_title")
                        .text(title.clone()),
                ]
            }
        }
    }

    fn video_pager(&self, v: &Video, bottom: i32) -> Node {
        let liked = self.app.liked.contains(&v.id);
        let own = self.app.comments.get(&v.id).map_or(0, Vec::len) as u64;
        let mut container = Node::new(FRAME, r(0, 0, 1080, bottom))
            .id("video_container")
            .desc("Video")
            .children([Node::new(IMAGE, r(960, 1180, 1056, 1276))
                .id("author_avatar")
                .desc(format!("{} profile", v.author))
                .on_tap(Tap::AuthorProfile)]);
        if !self.app.follows.contains(&v.author) && v.author != self.app.profile.username {
            container = container.child(
                Node::new(IMAGE, r(984, 1256, 1032, 1304))
                    .id("follow_button")
                    .desc(format!("Follow {}", v.author))
                    .on_tap(Tap::Follow),
            );
        }
        container = container.children([
            Node::new(IMAGE, r(960, 1340, 1056, 1436))
                .id("like_button")
                .desc("Like")
                .selected(liked)
                .on_tap(Tap::Like),
            Node::new(TEXT, r(960, 1436, 1056, 1484))
                .id("like_count")
                .text(short_count(v.likes + u64::from(liked))),
            Node::new(IMAGE, r(960, 1520, 1056, 1616))
                .id("comment_button")
                .desc("Comment")
                .on_tap(Tap::OpenComments),
            Node::new(TEXT, r(960, 1616, 1056, 1664))
                .id("comment_count")
                .text(short_count(u64::from(v.comments) + own)),
            Node::new(IMAGE, r(960, 1700, 1056, 1796))
                .id("share_button")
                .desc("Share")
                .on_tap(Tap::Nothing),
            Node::new(TEXT, r(48, 1900, 700, 1960))
                .id("author_name")
                .text(format!("@{}", v.author))
                .on_tap(Tap::AuthorProfile),
            Node::new(TEXT, r(48, 1972, 900, 2160))
                .id("video_caption")
                .text(v.caption.clone()),
            Node::new(TEXT, r(48, 2168, 700, 2216))
                .id("music_title")
                .text(format!("♬ original sound - {}", v.author)),
        ]);
        let mut pager = Node::new(PAGER, r(0, 0, 1080, bottom))
            .id("feed_pager")
            .scrollable();
        pager.children.push(container);
        pager
    }

    fn with_sheet(&self, nodes: Vec<Node>, sheet: Option<&CommentSheet>, v: &Video) -> Vec<Node> {
        let Some(sheet) = sheet else { return nodes };
        let mut out: Vec<Node> = nodes.into_iter().map(Node::under_modal).collect();
        let own = self.app.comments.get(&v.id).cloned().unwrap_or_default();
        let total = u64::from(v.comments) + own.len() as u64;
        let mut rows: Vec<(String, String)> = own
            .iter()
            .rev()
            .map(|t| (self.app.profile.username.clone(), t.clone()))
            .collect();
        rows.extend(
            FILLER_COMMENTS
                .iter()
                .map(|(a, t)| ((*a).to_string(), (*t).to_string())),
        );
        let mut list = Node::new(RECYCLER, r(0, 940, 1080, 2220))
            .id("comment_list")
            .scrollable();
        for (i, (author, text)) in rows.iter().take(8).enumerate() {
            let y = 950 + 160 * i as i32;
            list = list.child(
                Node::new(LINEAR, r(0, y, 1080, y + 150))
                    .child(
                        Node::new(TEXT, r(48, y, 1032, y + 50))
                            .id("comment_author")
                            .text(author.clone()),
                    )
                    .child(
                        Node::new(TEXT, r(48, y + 50, 1032, y + 140))
                            .id("comment_text")
                            .text(text.clone()),
                    ),
            );
        }
        out.push(
            Node::new(FRAME, r(0, 800, 1080, 2400))
                .id("comment_sheet")
                .children([
                    Node::new(TEXT, r(340, 830, 740, 900))
                        .id("comment_title")
                        .text(format!("{} comments", short_count(total))),
                    Node::new(IMAGE, r(960, 820, 1056, 916))
                        .id("comment_close")
                        .desc("Close")
                        .on_tap(Tap::CloseComments),
                    list,
                    edit_text(
                        r(32, 2248, 880, 2360),
                        "comment_input",
                        &sheet.draft,
                        "Add comment...",
                        sheet.focused,
                        Field::Comment,
                    ),
                    Node::new(IMAGE, r(904, 2248, 1048, 2360))
                        .id("comment_post")
                        .desc("Post comment")
                        .on_tap(Tap::PostComment)
                        .enabled(!sheet.draft.is_empty()),
                ]),
        );
        out
    }

    fn profile_nodes(&self) -> Vec<Node> {
        let p = &self.app.profile;
        let mut nodes = vec![
            Node::new(TEXT, r(240, 96, 840, 192))
                .id("profile_display_name")
                .text(p.display_name.clone()),
            Node::new(IMAGE, r(440, 240, 640, 440))
                .id("profile_avatar")
                .desc("Profile photo")
                .on_tap(Tap::Nothing),
            Node::new(TEXT, r(240, 460, 840, 520))
                .id("profile_username")
                .text(format!("@{}", p.username)),
            Node::new(TEXT, r(120, 560, 360, 620))
                .id("profile_following_count")
                .text(p.following.to_string()),
            Node::new(TEXT, r(420, 560, 660, 620))
                .id("profile_followers_count")
                .text(p.followers.to_string()),
            Node::new(TEXT, r(720, 560, 960, 620))
                .id("profile_likes_count")
                .text(p.likes.to_string()),
            Node::new(TEXT, r(120, 620, 360, 680)).text("Following"),
            Node::new(TEXT, r(420, 620, 660, 680)).text("Followers"),
            Node::new(TEXT, r(720, 620, 960, 680)).text("Likes"),
            Node::new(BUTTON, r(300, 740, 780, 850))
                .id("profile_edit")
                .text("Edit profile")
                .on_tap(Tap::OpenEditProfile),
            Node::new(TEXT, r(96, 880, 984, 1000))
                .id("profile_bio")
                .text(p.bio.clone()),
        ];
        let mut grid = Node::new(RECYCLER, r(0, 1100, 1080, 2232))
            .id("profile_grid")
            .scrollable();
        for (k, post) in self.app.posts.iter().take(6).enumerate() {
            let (c, rw) = ((k % 3) as i32, (k / 3) as i32);
            let (x, y) = (360 * c, 1100 + 480 * rw);
            grid = grid.child(
                Node::new(FRAME, r(x, y, x + 360, y + 480))
                    .id("profile_post")
                    .desc(post.caption.clone())
                    .on_tap(Tap::OpenOwnPost(k))
                    .child(
                        Node::new(TEXT, r(x + 12, y + 380, x + 348, y + 470))
                            .id("profile_post_caption")
                            .text(post.caption.clone()),
                    ),
            );
        }
        nodes.push(grid);
        if self.app.posts.is_empty() {
            nodes.push(
                Node::new(TEXT, r(240, 1400, 840, 1480))
                    .id("profile_empty")
                    .text("Share your first video"),
            );
        }
        nodes.push(nav_bar(Tab::Profile));
        nodes
    }

    // ---------------------------------------------------------------- input

    fn log(&mut self, a: Action) {
        self.actions.push(a);
    }

    fn input_allowed(&mut self) -> bool {
        if self.screen_on {
            true
        } else {
            self.log(Action::InputIgnored {
                reason: "screen off".into(),
            });
            false
        }
    }

    pub(crate) fn tap(&mut self, x: i32, y: i32) {
        if !self.input_allowed() {
            return;
        }
        let variant = self.config.variant;
        let window = self.window();
        let hit = window.hit(x, y);
        let node = hit.map(|n| NodeRef::of(n, variant));
        let effect = hit.filter(|n| n.enabled).and_then(|n| n.tap.clone());
        self.log(Action::Tap { x, y, node });
        self.app.upload_status = None;
        if let Some(t) = effect {
            self.apply(t);
        }
        self.settle_popups();
    }

    pub(crate) fn swipe(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, duration_ms: u32) {
        if !self.input_allowed() {
            return;
        }
        if (x1 - x2).abs() <= 10 && (y1 - y2).abs() <= 10 && duration_ms < 500 {
            // A swipe that does not move is a tap.
            self.tap(x1, y1);
            return;
        }
        self.log(Action::Swipe {
            x1,
            y1,
            x2,
            y2,
            duration_ms,
        });
        self.app.upload_status = None;
        let dir = if y1 - y2 >= SWIPE_MIN {
            1i64
        } else if y2 - y1 >= SWIPE_MIN {
            -1
        } else {
            return;
        };
        let kind = self.screen();
        match kind {
            ScreenKind::Feed if r(0, 0, 1080, 2232).contains(x1, y1) => {
                if dir > 0 {
                    self.app.feed_index = self.app.feed_index.saturating_add(1);
                } else if self.app.feed_index > 0 {
                    self.app.feed_index -= 1;
                } else {
                    return;
                }
                self.log_current_video();
            }
            ScreenKind::Player => {
                let moved = match self.top_mut() {
                    Some(Screen::Player { list, index, .. }) => {
                        if dir > 0 && *index + 1 < list.len() {
                            *index += 1;
                            true
                        } else if dir < 0 && *index > 0 {
                            *index -= 1;
                            true
                        } else {
                            false
                        }
                    }
                    _ => false,
                };
                if moved {
                    self.log_current_video();
                }
            }
            ScreenKind::SearchResults if r(0, 360, 1080, 2400).contains(x1, y1) => {
                if let Some(Screen::Results {
                    results,
                    scroll_rows,
                    ..
                }) = self.top_mut()
                {
                    let rows = results.len().div_ceil(2);
                    if dir > 0 && *scroll_rows + 3 < rows {
                        *scroll_rows += 1;
                    } else if dir < 0 && *scroll_rows > 0 {
                        *scroll_rows -= 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn log_current_video(&mut self) {
        if let Some(v) = self.current_video() {
            self.log(Action::VideoShown { video_id: v.id });
        }
    }

    /// The focused field on the current screen.
    fn focused_field(&self) -> Option<Field> {
        match self.screen() {
            ScreenKind::VerificationRequired => {
                self.app.verify_focused.then_some(Field::VerifyCode)
            }
            ScreenKind::SearchInput => Some(Field::Search),
            ScreenKind::CommentSheet => match self.top()? {
                Screen::Feed { sheet: Some(s) } | Screen::Player { sheet: Some(s), .. } => {
                    s.focused.then_some(Field::Comment)
                }
                _ => None,
            },
            ScreenKind::EditProfile => match self.top()? {
                Screen::EditProfile(d) => d.focus,
                _ => None,
            },
            ScreenKind::PostScreen => match self.top()? {
                Screen::Post { focused, .. } => focused.then_some(Field::Caption),
                _ => None,
            },
            _ => None,
        }
    }

    fn field_mut(&mut self, field: Field) -> Option<&mut String> {
        if field == Field::VerifyCode {
            return Some(&mut self.app.verify_code);
        }
        match (self.app.stack.last_mut()?, field) {
            (Screen::Search { query }, Field::Search) => Some(query),
            (
                Screen::Feed { sheet: Some(s) } | Screen::Player { sheet: Some(s), .. },
                Field::Comment,
            ) => Some(&mut s.draft),
            (Screen::EditProfile(d), Field::EditName) => Some(&mut d.name),
            (Screen::EditProfile(d), Field::EditUsername) => Some(&mut d.username),
            (Screen::EditProfile(d), Field::EditBio) => Some(&mut d.bio),
            (Screen::Post { caption, .. }, Field::Caption) => Some(caption),
            _ => None,
        }
    }

    pub(crate) fn type_text(&mut self, text: &str) {
        if !self.input_allowed() {
            return;
        }
        self.app.upload_status = None;
        let field = self.focused_field();
        self.log(Action::TextTyped {
            text: text.to_string(),
            field: field.map(|f| f.id().to_string()),
        });
        if let Some(s) = field.and_then(|f| self.field_mut(f)) {
            push_capped(s, text);
        }
    }

    pub(crate) fn key(&mut self, code: u32) {
        match code {
            26 => {
                self.log(Action::Key { code });
                self.screen_on = !self.screen_on;
                return;
            }
            224 => {
                self.log(Action::Key { code });
                self.screen_on = true;
                return;
            }
            223 => {
                self.log(Action::Key { code });
                self.screen_on = false;
                return;
            }
            _ => {}
        }
        if !self.input_allowed() {
            return;
        }
        self.log(Action::Key { code });
        self.app.upload_status = None;
        match code {
            3 => self.go_home(),
            4 => self.back(),
            66 if self.screen() == ScreenKind::SearchInput => self.apply(Tap::SubmitSearch),
            67 => {
                if let Some(s) = self.focused_field().and_then(|f| self.field_mut(f)) {
                    s.pop();
                }
            }
            62 => self.type_char(' '),
            7..=16 => self.type_char(char::from(b'0' + (code - 7) as u8)),
            29..=54 => self.type_char(char::from(b'a' + (code - 29) as u8)),
            _ => {}
        }
        self.settle_popups();
    }

    fn type_char(&mut self, c: char) {
        let field = self.focused_field();
        if let Some(s) = field.and_then(|f| self.field_mut(f)) {
            push_capped(s, &c.to_string());
            self.log(Action::TextTyped {
                text: c.to_string(),
                field: field.map(|f| f.id().to_string()),
            });
        }
    }

    fn go_home(&mut self) {
        if self.app.foreground == Foreground::App && self.app.running {
            self.log(Action::AppLeft);
        }
        self.app.foreground = Foreground::Launcher;
    }

    fn back(&mut self) {
        match self.screen() {
            ScreenKind::ScreenOff | ScreenKind::Launcher => {}
            ScreenKind::PlayStore => self.app.foreground = Foreground::Launcher,
            ScreenKind::PermissionDialog => self.apply(Tap::PermissionDeny),
            ScreenKind::UpdatePrompt => self.apply(Tap::UpdateDismiss),
            ScreenKind::LoggedOut
            | ScreenKind::Banned
            | ScreenKind::Captcha
            | ScreenKind::VerificationRequired => self.go_home(),
            ScreenKind::CommentSheet => self.apply(Tap::CloseComments),
            _ => {
                if self.app.stack.len() > 1 {
                    self.app.stack.pop();
                } else {
                    self.go_home();
                }
            }
        }
    }

    fn push(&mut self, s: Screen) {
        self.app.stack.push(s);
        if self.app.stack.len() > MAX_STACK {
            self.app.stack.remove(1);
        }
    }

    fn apply(&mut self, tap: Tap) {
        match tap {
            Tap::Nothing => {}
            Tap::LaunchApp => {
                self.launch_app();
            }
            Tap::Back => self.back(),
            Tap::Tab(tab) => match tab {
                Tab::Home => {
                    self.app.stack = vec![Screen::Feed { sheet: None }];
                    self.log_current_video();
                }
                Tab::Profile => {
                    self.app.stack = vec![Screen::Feed { sheet: None }, Screen::Profile]
                }
                Tab::Create => {
                    self.push(Screen::Gallery { selected: None });
                    if !self.config.media_permission {
                        self.app.permission = Some(PermissionReason::Gallery);
                        self.log(Action::PopupShown {
                            popup: Popup::PermissionDialog,
                        });
                    }
                }
                Tab::Friends | Tab::Inbox => {
                    let title = if tab == Tab::Friends {
                        "Friends"
                    } else {
                        "Inbox"
                    };
                    if matches!(self.top(), Some(Screen::Placeholder { .. })) {
                        self.app.stack.pop();
                    }
                    self.push(Screen::Placeholder {
                        title: title.into(),
                    });
                }
            },
            Tap::OpenSearch => self.push(Screen::Search {
                query: String::new(),
            }),
            Tap::AuthorProfile => {
                if let Some(v) = self.current_video() {
                    self.push(Screen::Placeholder {
                        title: format!("@{}", v.author),
                    });
                }
            }
            Tap::Like => {
                if let Some(v) = self.current_video() {
                    if self.app.liked.remove(&v.id) {
                        self.log(Action::Unliked { video_id: v.id });
                    } else {
                        self.app.liked.insert(v.id.clone());
                        self.log(Action::Liked { video_id: v.id });
                    }
                }
            }
            Tap::Follow => {
                if let Some(v) = self.current_video()
                    && self.app.follows.insert(v.author.clone())
                {
                    self.app.profile.following = self.app.profile.following.saturating_add(1);
                    self.log(Action::Followed { author: v.author });
                }
            }
            Tap::OpenComments => {
                if let Some(Screen::Feed { sheet } | Screen::Player { sheet, .. }) = self.top_mut()
                {
                    *sheet = Some(CommentSheet::default());
                }
            }
            Tap::CloseComments => {
                if let Some(Screen::Feed { sheet } | Screen::Player { sheet, .. }) = self.top_mut()
                {
                    *sheet = None;
                }
            }
            Tap::PostComment => {
                let video = self.current_video();
                let text = match self.top_mut() {
                    Some(
                        Screen::Feed { sheet: Some(s) } | Screen::Player { sheet: Some(s), .. },
                    ) if !s.draft.is_empty() => {
                        s.focused = false;
                        std::mem::take(&mut s.draft)
                    }
                    _ => return,
                };
                if let Some(v) = video {
                    self.app
                        .comments
                        .entry(v.id.clone())
                        .or_default()
                        .push(text.clone());
                    self.log(Action::Commented {
                        video_id: v.id,
                        text,
                    });
                }
            }
            Tap::Focus(field) => self.focus(field),
            Tap::Clear(field) => {
                if let Some(s) = self.field_mut(field) {
                    s.clear();
                }
            }
            Tap::SubmitSearch => {
                let query = match self.top() {
                    Some(Screen::Search { query }) => query.trim().to_string(),
                    _ => return,
                };
                self.search(query);
            }
            Tap::Suggestion(i) => {
                if let Some(s) = SUGGESTIONS.get(i) {
                    if let Some(Screen::Search { query }) = self.top_mut() {
                        *query = (*s).to_string();
                    }
                    self.search((*s).to_string());
                }
            }
            Tap::EditQuery => {
                if let Some(Screen::Results { query, .. }) = self.top().cloned() {
                    self.app.stack.pop();
                    match self.top_mut() {
                        Some(Screen::Search { query: q }) => *q = query,
                        _ => self.push(Screen::Search { query }),
                    }
                }
            }
            Tap::OpenResult(k) => {
                if let Some(Screen::Results { results, .. }) = self.top() {
                    let list = results.clone();
                    if k < list.len() {
                        self.push(Screen::Player {
                            list,
                            index: k,
                            sheet: None,
                        });
                        self.log_current_video();
                    }
                }
            }
            Tap::OpenOwnPost(k) => {
                let username = self.app.profile.username.clone();
                let list: Vec<Video> = self
                    .app
                    .posts
                    .iter()
                    .map(|p| Video {
                        id: p.video_id.clone(),
                        author: username.clone(),
                        caption: p.caption.clone(),
                        hashtags: p
                            .caption
                            .split_whitespace()
                            .filter_map(|w| w.strip_prefix('#'))
                            .map(str::to_string)
                            .collect(),
                        topic: "own".into(),
                        likes: 0,
                        comments: 0,
                    })
                    .collect();
                if k < list.len() {
                    self.push(Screen::Player {
                        list,
                        index: k,
                        sheet: None,
                    });
                    self.log_current_video();
                }
            }
            Tap::OpenEditProfile => {
                let p = &self.app.profile;
                let draft = EditDraft {
                    name: p.display_name.clone(),
                    username: p.username.clone(),
                    bio: p.bio.clone(),
                    focus: None,
                    error: None,
                };
                self.push(Screen::EditProfile(draft));
            }
            Tap::SaveProfile => self.save_profile(),
            Tap::GalleryToggle(path) => {
                if let Some(Screen::Gallery { selected }) = self.top_mut() {
                    if selected.as_deref() == Some(path.as_str()) {
                        *selected = None;
                    } else {
                        *selected = Some(path);
                    }
                }
            }
            Tap::GalleryNext => {
                if let Some(Screen::Gallery {
                    selected: Some(file),
                }) = self.top().cloned()
                {
                    self.push(Screen::Post {
                        file,
                        caption: String::new(),
                        focused: false,
                    });
                }
            }
            Tap::Publish => {
                if let Some(Screen::Post { file, caption, .. }) = self.top().cloned() {
                    let video_id = format!("own-{}", self.app.posts.len() + 1);
                    self.app.posts.insert(
                        0,
                        Post {
                            video_id: video_id.clone(),
                            file: file.clone(),
                            caption: caption.clone(),
                        },
                    );
                    self.log(Action::VideoPosted {
                        video_id,
                        file,
                        caption,
                    });
                    self.app.stack = vec![Screen::Feed { sheet: None }];
                    self.app.upload_status = Some(UploadStatus::Uploading);
                }
            }
            Tap::UpdateConfirm => {
                self.app.update_prompt = false;
                self.log(Action::PopupAnswered {
                    popup: Popup::UpdatePrompt,
                    accepted: true,
                });
                self.log(Action::AppLeft);
                self.app.foreground = Foreground::PlayStore;
            }
            Tap::UpdateDismiss => {
                self.app.update_prompt = false;
                self.log(Action::PopupAnswered {
                    popup: Popup::UpdatePrompt,
                    accepted: false,
                });
            }
            Tap::PermissionAllow => {
                self.app.permission = None;
                self.config.media_permission = true;
                self.log(Action::PopupAnswered {
                    popup: Popup::PermissionDialog,
                    accepted: true,
                });
            }
            Tap::PermissionDeny => {
                if self.app.permission.take() == Some(PermissionReason::Gallery)
                    && matches!(self.top(), Some(Screen::Gallery { .. }))
                {
                    self.app.stack.pop();
                }
                self.log(Action::PopupAnswered {
                    popup: Popup::PermissionDialog,
                    accepted: false,
                });
            }
            Tap::BanLogout => self.config.account = AccountState::LoggedOut,
        }
    }

    fn focus(&mut self, field: Field) {
        if field == Field::VerifyCode {
            self.app.verify_focused = true;
            return;
        }
        match (self.app.stack.last_mut(), field) {
            (
                Some(Screen::Feed { sheet: Some(s) } | Screen::Player { sheet: Some(s), .. }),
                Field::Comment,
            ) => {
                s.focused = true;
            }
            (Some(Screen::EditProfile(d)), f) => d.focus = Some(f),
            (Some(Screen::Post { focused, .. }), Field::Caption) => *focused = true,
            _ => {}
        }
    }

    fn search(&mut self, query: String) {
        if query.is_empty() {
            return;
        }
        let results = catalogue::search(self.config.feed_seed, &query);
        self.log(Action::Searched {
            query: query.clone(),
        });
        self.push(Screen::Results {
            query,
            results,
            scroll_rows: 0,
        });
    }

    fn save_profile(&mut self) {
        let Some(Screen::EditProfile(d)) = self.top().cloned() else {
            return;
        };
        let p = self.app.profile.clone();
        let name_len = d.name.chars().count();
        let user_len = d.username.chars().count();
        let error = if !(1..=30).contains(&name_len) {
            Some("Name must be 1-30 characters.")
        } else if !(2..=24).contains(&user_len)
            || !d
                .username
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        {
            Some("Usernames can only contain lowercase letters, numbers, underscores and periods.")
        } else if d.username != p.username && self.config.taken_usernames.contains(&d.username) {
            Some("This username isn't available. Try another one.")
        } else if d.bio.chars().count() > 80 {
            Some("Bio must be 80 characters or fewer.")
        } else {
            None
        };
        if let Some(e) = error {
            if let Some(Screen::EditProfile(draft)) = self.top_mut() {
                draft.error = Some(e.to_string());
            }
            self.log(Action::ProfileSaveRejected {
                error: e.to_string(),
            });
            return;
        }
        let changes = [
            (
                ProfileField::DisplayName,
                p.display_name != d.name,
                d.name.clone(),
            ),
            (
                ProfileField::Username,
                p.username != d.username,
                d.username.clone(),
            ),
            (ProfileField::Bio, p.bio != d.bio, d.bio.clone()),
        ];
        self.app.profile.display_name = d.name;
        self.app.profile.username = d.username;
        self.app.profile.bio = d.bio;
        for (field, changed, value) in changes {
            if changed {
                self.log(Action::ProfileFieldSet { field, value });
            }
        }
        self.app.stack.pop();
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

fn edit_text(
    bounds: Rect,
    id: &'static str,
    value: &str,
    hint: &str,
    focused: bool,
    field: Field,
) -> Node {
    let text = if value.is_empty() {
        hint.to_string()
    } else {
        value.to_string()
    };
    Node::new(EDIT, bounds)
        .id(id)
        .text(text)
        .on_tap(Tap::Focus(field))
        .focused(focused)
        .long_clickable()
}

fn nav_bar(current: Tab) -> Node {
    let tabs = [
        (Tab::Home, "tab_home", "Home", "Home"),
        (Tab::Friends, "tab_friends", "Friends", "Friends"),
        (Tab::Create, "tab_create", "", "Create"),
        (Tab::Inbox, "tab_inbox", "Inbox", "Inbox"),
        (Tab::Profile, "tab_profile", "Profile", "Profile"),
    ];
    Node::new(LINEAR, r(0, 2232, 1080, 2400))
        .id("nav_bar")
        .children(tabs.iter().enumerate().map(|(i, (tab, id, text, desc))| {
            let left = 216 * i as i32;
            Node::new(FRAME, r(left, 2232, left + 216, 2400))
                .id(id)
                .text(*text)
                .desc(*desc)
                .selected(*tab == current)
                .on_tap(Tap::Tab(*tab))
        }))
}

fn edit_profile_nodes(d: &EditDraft) -> Vec<Node> {
    let mut nodes = vec![
        Node::new(IMAGE, r(24, 96, 144, 216))
            .id("edit_back")
            .desc("Back")
            .on_tap(Tap::Back),
        Node::new(TEXT, r(300, 96, 780, 216))
            .id("edit_title")
            .text("Edit profile"),
    ];
    let fields = [
        (
            "Name",
            320,
            Field::EditName,
            "edit_name",
            "edit_name_clear",
            &d.name,
            "Name",
            500,
        ),
        (
            "Username",
            560,
            Field::EditUsername,
            "edit_username",
            "edit_username_clear",
            &d.username,
            "Username",
            740,
        ),
        (
            "Bio",
            800,
            Field::EditBio,
            "edit_bio",
            "edit_bio_clear",
            &d.bio,
            "Add a bio",
            1100,
        ),
    ];
    for (label, top, field, id, clear_id, value, hint, bottom) in fields {
        let focused = d.focus == Some(field);
        nodes.push(Node::new(TEXT, r(48, top, 600, top + 60)).text(label));
        nodes.push(edit_text(
            r(48, top + 60, 1032, bottom),
            id,
            value,
            hint,
            focused,
            field,
        ));
        if focused && !value.is_empty() {
            nodes.push(
                Node::new(IMAGE, r(940, top + 80, 1020, top + 160))
                    .id(clear_id)
                    .desc("Clear")
                    .on_tap(Tap::Clear(field)),
            );
        }
    }
    if let Some(e) = &d.error {
        nodes.push(
            Node::new(TEXT, r(48, 1140, 1032, 1240))
                .id("edit_error")
                .text(e.clone()),
        );
    }
    nodes.push(
        Node::new(BUTTON, r(48, 1300, 1032, 1420))
            .id("edit_save")
            .text("Save")
            .on_tap(Tap::SaveProfile),
    );
    nodes
}

fn update_dialog() -> Node {
    Node::new(FRAME, r(96, 900, 984, 1500))
        .id("update_dialog")
        .children([
            Node::new(TEXT, r(144, 940, 936, 1020))
                .id("update_title")
                .text("Update available"),
            Node::new(TEXT, r(144, 1040, 936, 1300))
                .id("update_message")
                .text("Update to the latest version of TikTok to get the newest features."),
            Node::new(BUTTON, r(144, 1360, 528, 1460))
                .id("update_confirm")
                .text("Update")
                .on_tap(Tap::UpdateConfirm),
            Node::new(BUTTON, r(552, 1360, 936, 1460))
                .id("update_dismiss")
                .text("Not now")
                .on_tap(Tap::UpdateDismiss),
        ])
}

fn permission_window() -> Window {
    Window {
        package: PERMISSION_PACKAGE,
        root: Node::new(FRAME, full()).child(
            Node::new(LINEAR, r(72, 900, 1008, 1560))
                .raw_id("com.android.permissioncontroller:id/grant_dialog")
                .children([
                    Node::new(TEXT, r(120, 960, 960, 1180))
                        .raw_id("com.android.permissioncontroller:id/permission_message")
                        .text("Allow TikTok to access photos and videos on this device?"),
                    Node::new(BUTTON, r(120, 1240, 960, 1360))
                        .raw_id("com.android.permissioncontroller:id/permission_allow_button")
                        .text("Allow")
                        .on_tap(Tap::PermissionAllow),
                    Node::new(BUTTON, r(120, 1380, 960, 1500))
                        .raw_id("com.android.permissioncontroller:id/permission_deny_button")
                        .text("Don't allow")
                        .on_tap(Tap::PermissionDeny),
                ]),
        ),
    }
}

fn account_nodes(state: AccountState, app: &App) -> Vec<Node> {
    match state {
        AccountState::Active => Vec::new(),
        AccountState::LoggedOut => vec![
            Node::new(TEXT, r(96, 600, 984, 720))
                .id("login_title")
                .text("Log in to TikTok"),
            Node::new(BUTTON, r(96, 1200, 984, 1320))
                .id("login_phone")
                .text("Use phone / email / username")
                .on_tap(Tap::Nothing),
            Node::new(BUTTON, r(96, 1360, 984, 1480))
                .id("login_google")
                .text("Continue with Google")
                .on_tap(Tap::Nothing),
        ],
        AccountState::Banned => vec![
            Node::new(TEXT, r(96, 900, 984, 1000))
                .id("ban_title")
                .text("Your account was permanently banned"),
            Node::new(TEXT, r(96, 1020, 984, 1200))
                .id("ban_message")
                .text("You violated our Community Guidelines multiple times."),
            Node::new(BUTTON, r(96, 1300, 984, 1420))
                .id("ban_logout")
                .text("Log out")
                .on_tap(Tap::BanLogout),
        ],
        AccountState::Captcha => vec![
            Node::new(IMAGE, r(960, 600, 1056, 696))
                .id("captcha_close")
                .desc("Close")
                .on_tap(Tap::Nothing),
            Node::new(TEXT, r(96, 700, 984, 800))
                .id("captcha_title")
                .text("Verify to continue"),
            Node::new(TEXT, r(96, 820, 984, 900))
                .id("captcha_message")
                .text("Drag the slider to fit the puzzle"),
            Node::new(SEEKBAR, r(96, 1500, 984, 1620))
                .id("captcha_slider")
                .desc("Slider")
                .on_tap(Tap::Nothing),
        ],
        AccountState::VerificationRequired => vec![
            Node::new(TEXT, r(96, 700, 984, 800))
                .id("verify_title")
                .text("Verify it's you"),
            edit_text(
                r(96, 900, 984, 1020),
                "verify_code",
                &app.verify_code,
                "Enter 6-digit code",
                app.verify_focused,
                Field::VerifyCode,
            ),
            Node::new(BUTTON, r(96, 1100, 984, 1220))
                .id("verify_submit")
                .text("Next")
                .on_tap(Tap::Nothing),
        ],
    }
}

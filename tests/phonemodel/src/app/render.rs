//! What each screen renders, as a view tree (SCREENS.md is the contract).

use super::system::{account_nodes_more, permission_window, rate_limit_dialog};
use super::{
    AccountState, App, CommentSheet, EditDraft, FILLER_COMMENTS, Field, Screen, ScreenKind, Tab,
    Tap, UploadStatus, full, r,
};
use crate::Phone;
use crate::catalogue::{SUGGESTIONS, Video, short_count};
use crate::media::duration_text;
use crate::ui::{
    APP_PACKAGE, BUTTON, EDIT, FRAME, IMAGE, LAUNCHER_PACKAGE, LINEAR, Node, PAGER,
    PLAY_STORE_PACKAGE, RECYCLER, Rect, SCREEN_HEIGHT, SEEKBAR, TEXT, VIEWER_PACKAGE, Window,
};

impl Phone {
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
            ScreenKind::PermissionDialog => return permission_window(self.app.permission_kind),
            ScreenKind::ImageViewer => {
                let name = self
                    .viewing
                    .as_ref()
                    .map_or("", |v| v.path.rsplit('/').next().unwrap_or(v.path.as_str()));
                return Window {
                    package: VIEWER_PACKAGE,
                    root: Node::new(FRAME, full())
                        .child(Node::new(IMAGE, full()).desc(name.to_string())),
                };
            }
            _ => {}
        }
        if let Some(w) = self.system_window(kind) {
            return w;
        }
        let mut children: Vec<Node> = match self.config.account {
            AccountState::Active | AccountState::RateLimited => self.stack_nodes(),
            other => account_nodes(other, &self.app),
        };
        if self.config.account == AccountState::RateLimited {
            children = children.into_iter().map(Node::under_modal).collect();
            children.push(rate_limit_dialog());
        } else if self.app.update_prompt {
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

    pub(crate) fn clock_text(&self) -> String {
        let secs = self.config.clock % 86_400;
        format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
    }

    fn stack_nodes(&self) -> Vec<Node> {
        let Some(top) = self.top() else {
            return Vec::new();
        };
        match top {
            Screen::Feed { sheet } => {
                let v = self.feed_item(self.app.feed_index);
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
                        UploadStatus::UnderReview => "Your video is under review.",
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
                let items = self.gallery_entries();
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
                for (k, (path, entry)) in items.iter().take(15).enumerate() {
                    let (c, rw) = ((k % 3) as i32, (k / 3) as i32);
                    let (x, y) = (360 * c, 300 + 360 * rw);
                    let duration = duration_text(entry.duration_ms);
                    tiles.push(
                        Node::new(FRAME, r(x, y, x + 360, y + 360))
                            .id("gallery_item")
                            .desc(format!("Video, {duration}"))
                            .checkable(selected.as_deref() == Some(path.as_str()))
                            .on_tap(Tap::GalleryToggle(path.clone()))
                            .child(
                                Node::new(TEXT, r(x + 220, y + 300, x + 350, y + 350))
                                    .id("gallery_duration")
                                    .text(duration),
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
        if v.sponsored {
            container = container.child(
                Node::new(TEXT, r(48, 1840, 300, 1890))
                    .id("ad_label")
                    .text("Sponsored"),
            );
        }
        let mut pager = Node::new(PAGER, r(0, 0, 1080, bottom))
            .id("feed_pager")
            .scrollable();
        pager.children.push(container);
        pager
    }

    fn with_sheet(&self, nodes: Vec<Node>, sheet: Option<&CommentSheet>, v: &Video) -> Vec<Node> {
        let Some(sheet) = sheet else { return nodes };
        // The input bar rides above the on-screen keyboard while it is up.
        let bar_top = if self.keyboard_shown() { 1388 } else { 2248 };
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
                        r(32, bar_top, 880, bar_top + 112),
                        "comment_input",
                        &sheet.draft,
                        "Add comment...",
                        sheet.focused,
                        Field::Comment,
                    ),
                    Node::new(IMAGE, r(904, bar_top, 1048, bar_top + 112))
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
            let mut tile = Node::new(FRAME, r(x, y, x + 360, y + 480))
                .id("profile_post")
                .desc(post.caption.clone())
                .on_tap(Tap::OpenOwnPost(k))
                .child(
                    Node::new(TEXT, r(x + 12, y + 380, x + 348, y + 470))
                        .id("profile_post_caption")
                        .text(post.caption.clone()),
                );
            if post.under_review {
                tile = tile.child(
                    Node::new(TEXT, r(x + 12, y + 12, x + 348, y + 72))
                        .id("profile_post_review")
                        .text("Under review"),
                );
            }
            grid = grid.child(tile);
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

fn account_nodes(state: AccountState, app: &App) -> Vec<Node> {
    if let Some(nodes) = account_nodes_more(state) {
        return nodes;
    }
    match state {
        AccountState::Active
        | AccountState::RateLimited
        | AccountState::SessionExpired
        | AccountState::Suspended => Vec::new(),
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

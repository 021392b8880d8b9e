//! What taps, swipes, keys and typed text do to the app.

use super::{
    AccountState, CommentSheet, EditDraft, Field, Foreground, MAX_STACK, Permission,
    PermissionReason, Popup, Post, ProfileField, SWIPE_MIN, Screen, ScreenKind, Tab, Tap,
    UploadStatus, push_capped, r,
};
use crate::Phone;
use crate::actions::Action;
use crate::catalogue::{self, SUGGESTIONS, Video};
use crate::ui::NodeRef;

/// The on-screen keyboard covers the screen from here down.
const KEYBOARD_TOP: i32 = 1500;

impl Phone {
    // ---------------------------------------------------------------- input

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

    /// Whether the on-screen keyboard is up (only with the `keyboard` knob): a text field has
    /// focus and BACK has not hidden it.
    pub fn keyboard_shown(&self) -> bool {
        self.config.keyboard && !self.app.keyboard_dismissed && self.focused_field().is_some()
    }

    pub(crate) fn tap(&mut self, x: i32, y: i32) {
        if !self.input_allowed() {
            return;
        }
        if self.tap_lost() {
            // During a transition the view under the finger is not there yet.
            self.log(Action::Tap { x, y, node: None });
            self.log(Action::InputIgnored {
                reason: "transition".into(),
            });
            return;
        }
        if self.keyboard_shown() && y >= KEYBOARD_TOP {
            // The keyboard window is on top there; it is not part of the app's dump.
            self.log(Action::Tap { x, y, node: None });
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
        if self.screen() == ScreenKind::Keyguard {
            self.swipe_keyguard(y1 - y2);
            return;
        }
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
                if self.screen_on {
                    self.screen_off();
                } else {
                    self.screen_on = true;
                }
                return;
            }
            224 => {
                self.log(Action::Key { code });
                self.screen_on = true;
                return;
            }
            223 => {
                self.log(Action::Key { code });
                self.screen_off();
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
            4 if self.keyboard_shown() => self.app.keyboard_dismissed = true,
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
        if self.locked || self.app.system.is_some() {
            // HOME does not dismiss the lock screen or a system dialog.
            return;
        }
        if self.app.foreground == Foreground::App && self.app.running {
            self.log(Action::AppLeft);
        }
        self.app.foreground = Foreground::Launcher;
    }

    /// Goes back one step (BACK key with no keyboard up, or an on-screen back button).
    fn back(&mut self) {
        if self.back_system() {
            return;
        }
        match self.screen() {
            ScreenKind::ScreenOff | ScreenKind::Launcher => {}
            ScreenKind::PlayStore | ScreenKind::ImageViewer => {
                self.app.foreground = Foreground::Launcher;
            }
            ScreenKind::PermissionDialog => self.apply(Tap::PermissionDeny),
            ScreenKind::UpdatePrompt => self.apply(Tap::UpdateDismiss),
            ScreenKind::LoggedOut
            | ScreenKind::Banned
            | ScreenKind::Captcha
            | ScreenKind::VerificationRequired
            | ScreenKind::SessionExpired
            | ScreenKind::Suspended
            | ScreenKind::RateLimited => self.go_home(),
            ScreenKind::CommentSheet => self.apply(Tap::CloseComments),
            _ => {
                if self.app.stack.len() > 1 {
                    self.app.stack.pop();
                    self.app.keyboard_dismissed = false;
                } else {
                    self.go_home();
                }
            }
        }
    }

    fn push(&mut self, s: Screen) {
        self.app.keyboard_dismissed = false;
        self.app.stack.push(s);
        if self.app.stack.len() > MAX_STACK {
            self.app.stack.remove(1);
        }
    }

    fn apply(&mut self, tap: Tap) {
        if self.apply_system(&tap) {
            return;
        }
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
                        self.app.permission_kind = Permission::Media;
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
                        sponsored: false,
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
                    let (committed, faults) = self.faults_on_publish();
                    if committed {
                        let video_id = format!("own-{}", self.app.posts.len() + 1);
                        self.app.posts.insert(
                            0,
                            Post {
                                video_id: video_id.clone(),
                                file: file.clone(),
                                caption: caption.clone(),
                                under_review: self.config.review_posts,
                            },
                        );
                        self.log(Action::VideoPosted {
                            video_id,
                            file,
                            caption,
                        });
                    } else {
                        self.log(Action::UploadLost { file, caption });
                    }
                    self.app.stack = vec![Screen::Feed { sheet: None }];
                    self.app.upload_status = Some(UploadStatus::Uploading);
                    for f in faults {
                        self.fire(f);
                    }
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
                let permission = self.app.permission_kind;
                if permission == Permission::Media {
                    self.config.media_permission = true;
                }
                self.log(Action::PopupAnswered {
                    popup: Popup::PermissionDialog,
                    accepted: true,
                });
                self.log(Action::PermissionAnswered {
                    permission,
                    granted: true,
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
                self.log(Action::PermissionAnswered {
                    permission: self.app.permission_kind,
                    granted: false,
                });
            }
            Tap::BanLogout => self.config.account = AccountState::LoggedOut,
            // Handled by `apply_system`.
            Tap::SessionOk
            | Tap::RateOk
            | Tap::AnrWait
            | Tap::AnrClose
            | Tap::CrashClose
            | Tap::BatteryCancel
            | Tap::BatteryTurnOn => {}
        }
    }

    fn focus(&mut self, field: Field) {
        self.app.keyboard_dismissed = false;
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
}

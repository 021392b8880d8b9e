//! The view tree the app renders, its `uiautomator dump` XML form, hit testing, and the table of
//! resource ids per UI variant (SCREENS.md documents the same table; a test keeps them equal).

use serde::Serialize;

use crate::app::Tap;

/// Which build of the app's UI the phone runs: the variants differ only in resource-ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum UiVariant {
    /// Ids like `com.zhiliaoapp.musically:id/like_button` (app 32.x).
    #[default]
    A,
    /// Renamed (obfuscated) ids like `com.zhiliaoapp.musically:id/lk9` (app 33.x).
    B,
}

impl UiVariant {
    /// The app version a phone of this variant reports unless configured otherwise.
    pub fn default_version(self) -> &'static str {
        match self {
            Self::A => "32.5.3",
            Self::B => "33.1.0",
        }
    }
}

/// The app package.
pub const APP_PACKAGE: &str = "com.zhiliaoapp.musically";
/// The activity the launcher and `monkey` start.
pub const APP_LAUNCH_ACTIVITY: &str = "com.ss.android.ugc.aweme.splash.SplashActivity";
pub(crate) const APP_MAIN_ACTIVITY: &str = "com.ss.android.ugc.aweme.main.MainActivity";
pub(crate) const LAUNCHER_PACKAGE: &str = "com.google.android.apps.nexuslauncher";
pub(crate) const PLAY_STORE_PACKAGE: &str = "com.android.vending";
/// The system image viewer (Google Photos on a stock phone).
pub(crate) const VIEWER_PACKAGE: &str = "com.google.android.apps.photos";
pub(crate) const PERMISSION_PACKAGE: &str = "com.google.android.permissioncontroller";

/// The size screens are laid out in (SCREENS.md's coordinates); a phone with another display
/// ([`ScreenSize`]) shows them scaled.
pub const SCREEN_WIDTH: i32 = 1080;
pub const SCREEN_HEIGHT: i32 = 2400;

/// A phone's display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScreenSize {
    pub width: i32,
    pub height: i32,
    /// Dots per inch (`wm density`).
    pub density: u32,
}

impl ScreenSize {
    /// 720x1280 (an older phone).
    pub const HD: Self = Self {
        width: 720,
        height: 1280,
        density: 320,
    };
    /// 1080x2400, the layout size.
    pub const FHD_PLUS: Self = Self {
        width: 1080,
        height: 2400,
        density: 420,
    };
    /// 1440x3200.
    pub const QHD_PLUS: Self = Self {
        width: 1440,
        height: 3200,
        density: 560,
    };

    /// `WxH`, one of the three sizes above.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::HD, Self::FHD_PLUS, Self::QHD_PLUS]
            .into_iter()
            .find(|z| format!("{}x{}", z.width, z.height) == s)
    }

    fn scale(v: i32, to: i32, from: i32) -> i32 {
        (i64::from(v) * i64::from(to) / i64::from(from)) as i32
    }

    /// A layout rectangle on this display.
    pub(crate) fn to_physical(self, r: Rect) -> Rect {
        Rect {
            left: Self::scale(r.left, self.width, SCREEN_WIDTH),
            top: Self::scale(r.top, self.height, SCREEN_HEIGHT),
            right: Self::scale(r.right, self.width, SCREEN_WIDTH),
            bottom: Self::scale(r.bottom, self.height, SCREEN_HEIGHT),
        }
    }

    /// A point on this display, in layout coordinates.
    pub(crate) fn to_layout(self, x: i32, y: i32) -> (i32, i32) {
        (
            Self::scale(x, SCREEN_WIDTH, self.width),
            Self::scale(y, SCREEN_HEIGHT, self.height),
        )
    }
}

/// App resource ids: (variant A name, variant B name).
pub(crate) const ID_TABLE: &[(&str, &str)] = &[
    ("nav_bar", "nb0"),
    ("tab_home", "nb1"),
    ("tab_friends", "nb2"),
    ("tab_create", "nb3"),
    ("tab_inbox", "nb4"),
    ("tab_profile", "nb5"),
    ("top_following", "f2a"),
    ("top_foryou", "f2b"),
    ("search_icon", "gsq"),
    ("feed_pager", "vpg"),
    ("video_container", "cnt"),
    ("back_button", "bk1"),
    ("author_avatar", "av0"),
    ("follow_button", "fl7"),
    ("like_button", "lk9"),
    ("like_count", "lkc"),
    ("comment_button", "cm3"),
    ("comment_count", "cmc"),
    ("share_button", "sh4"),
    ("author_name", "tt1"),
    ("video_caption", "dsc"),
    ("music_title", "mus"),
    ("upload_status", "ups"),
    ("search_back", "sbk"),
    ("search_input", "et0"),
    ("search_clear", "sxc"),
    ("search_submit", "s0b"),
    ("search_suggestion", "sgs"),
    ("results_tab_videos", "rtv"),
    ("results_tab_users", "rtu"),
    ("results_grid", "rgr"),
    ("result_tile", "rtl"),
    ("result_caption", "rcp"),
    ("result_author", "rau"),
    ("comment_sheet", "cs0"),
    ("comment_title", "cs1"),
    ("comment_close", "cs2"),
    ("comment_list", "cs3"),
    ("comment_author", "cs4"),
    ("comment_text", "cs5"),
    ("comment_input", "cs6"),
    ("comment_post", "cs7"),
    ("profile_avatar", "pf0"),
    ("profile_display_name", "pf1"),
    ("profile_username", "pf2"),
    ("profile_following_count", "pf3"),
    ("profile_followers_count", "pf4"),
    ("profile_likes_count", "pf5"),
    ("profile_edit", "pf6"),
    ("profile_bio", "pf7"),
    ("profile_grid", "pf8"),
    ("profile_post", "pf9"),
    ("profile_post_caption", "pfa"),
    ("profile_empty", "pfb"),
    ("edit_back", "ep0"),
    ("edit_title", "ep1"),
    ("edit_name", "ep2"),
    ("edit_name_clear", "ep3"),
    ("edit_username", "ep4"),
    ("edit_username_clear", "ep5"),
    ("edit_bio", "ep6"),
    ("edit_bio_clear", "ep7"),
    ("edit_error", "ep8"),
    ("edit_save", "ep9"),
    ("gallery_close", "gl0"),
    ("gallery_title", "gl1"),
    ("gallery_grid", "gl2"),
    ("gallery_item", "gl3"),
    ("gallery_duration", "gl4"),
    ("gallery_next", "gl5"),
    ("gallery_empty", "gl6"),
    ("post_back", "po0"),
    ("post_caption", "po1"),
    ("post_cover", "po2"),
    ("post_publish", "po3"),
    ("update_dialog", "ud0"),
    ("update_title", "ud1"),
    ("update_message", "ud2"),
    ("update_confirm", "ud3"),
    ("update_dismiss", "ud4"),
    ("login_title", "ac0"),
    ("login_phone", "ac1"),
    ("login_google", "ac2"),
    ("ban_title", "ac3"),
    ("ban_message", "ac4"),
    ("ban_logout", "ac5"),
    ("captcha_title", "ac6"),
    ("captcha_message", "ac7"),
    ("captcha_slider", "ac8"),
    ("captcha_close", "ac9"),
    ("verify_title", "av1"),
    ("verify_code", "av2"),
    ("verify_submit", "av3"),
    ("placeholder_title", "ph0"),
    ("ad_label", "adl"),
    ("session_title", "as0"),
    ("session_message", "as1"),
    ("session_ok", "as2"),
    ("suspend_title", "as3"),
    ("suspend_message", "as4"),
    ("suspend_appeal", "as5"),
    ("rate_dialog", "rl0"),
    ("rate_title", "rl1"),
    ("rate_message", "rl2"),
    ("rate_ok", "rl3"),
    ("profile_post_review", "pfc"),
];

/// The full resource-id of an app id (given by its variant-A name) in `variant`.
pub fn app_resource_id(a_name: &str, variant: UiVariant) -> String {
    let name = match variant {
        UiVariant::A => a_name,
        UiVariant::B => ID_TABLE
            .iter()
            .find(|(a, _)| *a == a_name)
            .map_or(a_name, |(_, b)| *b),
    };
    format!("{APP_PACKAGE}:id/{name}")
}

/// Node bounds, `[left,top][right,bottom]`; left/top inclusive, right/bottom exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

impl Rect {
    pub const fn new(left: i32, top: i32, right: i32, bottom: i32) -> Self {
        Self {
            left,
            top,
            right,
            bottom,
        }
    }

    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.left && x < self.right && y >= self.top && y < self.bottom
    }

    pub fn center(&self) -> (i32, i32) {
        ((self.left + self.right) / 2, (self.top + self.bottom) / 2)
    }

    /// Clips to the screen (rows of a grid can run past the bottom edge).
    fn clip(self, to: Rect) -> Rect {
        Rect {
            left: self.left.max(to.left),
            top: self.top.max(to.top),
            right: self.right.min(to.right),
            bottom: self.bottom.min(to.bottom),
        }
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{},{}][{},{}]",
            self.left, self.top, self.right, self.bottom
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rid {
    None,
    /// An app id by its variant-A name.
    App(&'static str),
    /// A fixed id (system windows).
    Raw(&'static str),
}

/// One view in a rendered window.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub rid: Rid,
    pub class: &'static str,
    pub text: String,
    pub desc: String,
    pub bounds: Rect,
    pub clickable: bool,
    pub enabled: bool,
    pub focusable: bool,
    pub focused: bool,
    pub scrollable: bool,
    pub checkable: bool,
    pub checked: bool,
    pub selected: bool,
    pub long_clickable: bool,
    pub password: bool,
    /// What a tap on this node does (only clickable nodes are hit).
    pub tap: Option<Tap>,
    /// False for the nodes under a modal layer: they are dumped but cannot be hit.
    pub hittable: bool,
    pub children: Vec<Node>,
}

pub(crate) const FRAME: &str = "android.widget.FrameLayout";
pub(crate) const LINEAR: &str = "android.widget.LinearLayout";
pub(crate) const TEXT: &str = "android.widget.TextView";
pub(crate) const IMAGE: &str = "android.widget.ImageView";
pub(crate) const BUTTON: &str = "android.widget.Button";
pub(crate) const EDIT: &str = "android.widget.EditText";
pub(crate) const RECYCLER: &str = "androidx.recyclerview.widget.RecyclerView";
pub(crate) const PAGER: &str = "androidx.viewpager.widget.ViewPager";
pub(crate) const SEEKBAR: &str = "android.widget.SeekBar";

impl Node {
    pub(crate) fn new(class: &'static str, bounds: Rect) -> Self {
        Self {
            rid: Rid::None,
            class,
            text: String::new(),
            desc: String::new(),
            bounds,
            clickable: false,
            enabled: true,
            focusable: false,
            focused: false,
            scrollable: false,
            checkable: false,
            checked: false,
            selected: false,
            long_clickable: false,
            password: false,
            tap: None,
            hittable: true,
            children: Vec::new(),
        }
    }

    pub(crate) fn id(mut self, a_name: &'static str) -> Self {
        self.rid = Rid::App(a_name);
        self
    }

    pub(crate) fn raw_id(mut self, id: &'static str) -> Self {
        self.rid = Rid::Raw(id);
        self
    }

    pub(crate) fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    pub(crate) fn desc(mut self, desc: impl Into<String>) -> Self {
        self.desc = desc.into();
        self
    }

    /// Makes the node clickable (and focusable) with the given effect.
    pub(crate) fn on_tap(mut self, tap: Tap) -> Self {
        self.clickable = true;
        self.focusable = true;
        self.tap = Some(tap);
        self
    }

    pub(crate) fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    pub(crate) fn focused(mut self, focused: bool) -> Self {
        self.focused = focused;
        self
    }

    pub(crate) fn scrollable(mut self) -> Self {
        self.scrollable = true;
        self.focusable = true;
        self
    }

    pub(crate) fn selected(mut self, selected: bool) -> Self {
        self.selected = selected;
        self
    }

    pub(crate) fn checkable(mut self, checked: bool) -> Self {
        self.checkable = true;
        self.checked = checked;
        self
    }

    pub(crate) fn long_clickable(mut self) -> Self {
        self.long_clickable = true;
        self
    }

    pub(crate) fn child(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    pub(crate) fn children(mut self, children: impl IntoIterator<Item = Node>) -> Self {
        self.children.extend(children);
        self
    }

    /// Marks this subtree as lying under a modal layer.
    pub(crate) fn under_modal(mut self) -> Self {
        self.set_unhittable();
        self
    }

    fn set_unhittable(&mut self) {
        self.hittable = false;
        for c in &mut self.children {
            c.set_unhittable();
        }
    }

    pub(crate) fn resource_id(&self, variant: UiVariant) -> String {
        match &self.rid {
            Rid::None => String::new(),
            Rid::App(a) => app_resource_id(a, variant),
            Rid::Raw(r) => (*r).to_string(),
        }
    }
}

/// A rendered window: what `uiautomator dump` sees.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub package: &'static str,
    pub root: Node,
}

/// The node a tap hit, as recorded in the action log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    pub resource_id: String,
    pub class: String,
    pub text: String,
    pub content_desc: String,
    pub bounds: Rect,
}

impl Window {
    /// The topmost hittable clickable node containing the point.
    pub(crate) fn hit(&self, x: i32, y: i32) -> Option<&Node> {
        fn walk<'a>(n: &'a Node, x: i32, y: i32, best: &mut Option<&'a Node>) {
            if n.clickable && n.hittable && n.bounds.contains(x, y) {
                *best = Some(n);
            }
            for c in &n.children {
                walk(c, x, y, best);
            }
        }
        let mut best = None;
        walk(&self.root, x, y, &mut best);
        best
    }

    pub(crate) fn to_xml(&self, variant: UiVariant, screen: ScreenSize) -> String {
        self.to_xml_with(variant, screen, false)
    }

    /// The dump; `compressed` leaves out the views that are not important for accessibility
    /// (layout containers with no id, text, description or action), as `--compressed` does;
    /// their children take their place.
    pub(crate) fn to_xml_with(
        &self,
        variant: UiVariant,
        screen: ScreenSize,
        compressed: bool,
    ) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(
            "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">",
        );
        let w = Writer {
            package: self.package,
            variant,
            screen,
            compressed,
        };
        w.node(&mut out, &self.root, 0);
        out.push_str("</hierarchy>");
        out
    }
}

impl NodeRef {
    pub(crate) fn of(node: &Node, variant: UiVariant) -> Self {
        Self {
            resource_id: node.resource_id(variant),
            class: node.class.to_string(),
            text: node.text.clone(),
            content_desc: node.desc.clone(),
            bounds: node.bounds,
        }
    }
}

/// Escapes an attribute value as Android's XML serializer does, dropping characters XML 1.0
/// cannot carry at all.
pub(crate) fn escape_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

struct Writer {
    package: &'static str,
    variant: UiVariant,
    screen: ScreenSize,
    compressed: bool,
}

impl Writer {
    fn unimportant(n: &Node) -> bool {
        matches!(n.rid, Rid::None)
            && n.text.is_empty()
            && n.desc.is_empty()
            && !n.clickable
            && !n.scrollable
            && !n.checkable
            && !n.focusable
    }

    /// The children a node shows: compressed dumps lift the children of unimportant ones.
    fn shown<'a>(&self, n: &'a Node, out: &mut Vec<&'a Node>) {
        for c in &n.children {
            if self.compressed && Self::unimportant(c) {
                self.shown(c, out);
            } else {
                out.push(c);
            }
        }
    }

    fn node(&self, out: &mut String, n: &Node, index: usize) {
        use std::fmt::Write as _;
        let layout = Rect::new(0, 0, SCREEN_WIDTH, SCREEN_HEIGHT);
        let _ = write!(out, "<node index=\"{index}\" text=\"");
        escape_attr(out, &n.text);
        out.push_str("\" resource-id=\"");
        escape_attr(out, &n.resource_id(self.variant));
        let _ = write!(
            out,
            "\" class=\"{}\" package=\"{}\" content-desc=\"",
            n.class, self.package
        );
        escape_attr(out, &n.desc);
        let _ = write!(
            out,
            "\" checkable=\"{}\" checked=\"{}\" clickable=\"{}\" enabled=\"{}\" focusable=\"{}\" \
             focused=\"{}\" scrollable=\"{}\" long-clickable=\"{}\" password=\"{}\" selected=\"{}\" \
             bounds=\"{}\"",
            n.checkable,
            n.checked,
            n.clickable,
            n.enabled,
            n.focusable,
            n.focused,
            n.scrollable,
            n.long_clickable,
            n.password,
            n.selected,
            self.screen.to_physical(n.bounds.clip(layout)),
        );
        let mut children = Vec::new();
        self.shown(n, &mut children);
        if children.is_empty() {
            out.push_str(" />");
        } else {
            out.push('>');
            for (i, c) in children.into_iter().enumerate() {
                self.node(out, c, i);
            }
            out.push_str("</node>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_variant() {
        let mut a: Vec<_> = ID_TABLE.iter().map(|(a, _)| *a).collect();
        let mut b: Vec<_> = ID_TABLE.iter().map(|(_, b)| *b).collect();
        a.sort_unstable();
        b.sort_unstable();
        a.dedup();
        b.dedup();
        assert_eq!(a.len(), ID_TABLE.len());
        assert_eq!(b.len(), ID_TABLE.len());
        assert_eq!(
            app_resource_id("like_button", UiVariant::B),
            "com.zhiliaoapp.musically:id/lk9"
        );
        assert_eq!(
            app_resource_id("like_button", UiVariant::A),
            "com.zhiliaoapp.musically:id/like_button"
        );
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_attr(&mut s, "a&b<c>\"d'\ne\u{1}f");
        assert_eq!(s, "a&amp;b&lt;c&gt;&quot;d&apos;&#10;ef");
    }

    /// SCREENS.md's id table must be the code's table.
    #[test]
    fn screens_md_lists_the_same_ids() {
        let doc = include_str!("../SCREENS.md");
        let section = doc
            .split("## Resource ids (A → B)")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("id section");
        let mut pairs = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .filter(|c| !c.is_empty())
                .collect();
            for pair in cells.chunks(2) {
                if let [a, b] = pair {
                    pairs.push(((*a).to_string(), (*b).to_string()));
                }
            }
        }
        let table: Vec<(String, String)> = ID_TABLE
            .iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect();
        assert_eq!(pairs, table);
    }
}

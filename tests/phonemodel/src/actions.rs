//! The typed log of what happened on the phone, for tests to assert on.

use serde::Serialize;

use crate::app::{Permission, Popup, ProfileField, ScreenKind};
use crate::faults::Fault;
use crate::ui::NodeRef;

/// One thing that happened on the phone, in order. `Phone::actions()` returns the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `input tap`, with the node it hit (None: it hit nothing clickable).
    Tap {
        x: i32,
        y: i32,
        node: Option<NodeRef>,
    },
    /// `input swipe`.
    Swipe {
        x1: i32,
        y1: i32,
        x2: i32,
        y2: i32,
        duration_ms: u32,
    },
    /// `input keyevent`, one entry per key code.
    Key {
        code: u32,
    },
    /// `input text` (or a character key); `field` is the variant-A id name of the focused
    /// field, None when nothing had focus and the text went nowhere.
    TextTyped {
        text: String,
        field: Option<String>,
    },
    /// Input that had no effect because of the phone's state (e.g. `screen off`).
    InputIgnored {
        reason: String,
    },
    /// The app came to the foreground; `cold` when its process was not running.
    AppLaunched {
        cold: bool,
    },
    AppForceStopped,
    /// The app went to the background (HOME, BACK from its root, leaving for the Play Store).
    AppLeft,
    /// A video became the current one on the feed or in the player.
    VideoShown {
        video_id: String,
    },
    Liked {
        video_id: String,
    },
    Unliked {
        video_id: String,
    },
    Commented {
        video_id: String,
        text: String,
    },
    Followed {
        author: String,
    },
    Searched {
        query: String,
    },
    /// A successful profile save changed this field.
    ProfileFieldSet {
        field: ProfileField,
        value: String,
    },
    ProfileSaveRejected {
        error: String,
    },
    VideoPosted {
        video_id: String,
        file: String,
        caption: String,
    },
    PopupShown {
        popup: Popup,
    },
    PopupAnswered {
        popup: Popup,
        accepted: bool,
    },
    MediaScanned {
        path: String,
    },
    /// A `uiautomator dump` returned this screen (the previous one when the dump was stale).
    UiDumped {
        screen: ScreenKind,
    },
    /// The dump that follows showed the previous screen: a transition was too recent.
    StaleDump {
        shown: ScreenKind,
    },
    Screenshot,
    /// The image viewer opened a file (see [`crate::Viewed`]).
    ImageViewed {
        path: String,
        colour: Option<[u8; 3]>,
    },
    Rebooted,
    /// An injected fault happened.
    FaultFired {
        fault: Fault,
    },
    /// The app's process died on its own (crash, killed).
    AppDied,
    /// Post was tapped but the upload died with the app: no post.
    UploadLost {
        file: String,
        caption: String,
    },
    /// A runtime permission prompt was answered.
    PermissionAnswered {
        permission: Permission,
        granted: bool,
    },
    /// A system dialog's button was tapped (`not_responding`/`wait`, `keeps_stopping`/
    /// `close_app`, `low_battery`/`cancel`, ...).
    SystemAnswered {
        dialog: String,
        button: String,
    },
    ScreenTurnedOff,
    /// The lock screen was swiped away.
    Unlocked,
}

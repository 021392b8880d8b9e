//! System windows over the app: "isn't responding", "keeps stopping", "Battery is low", the
//! lock screen, runtime permission prompts; and the newer account screens (session expired,
//! suspended, tapping too fast). SCREENS.md documents each.

use serde::Serialize;

use super::{AccountState, Foreground, Permission, PermissionReason, ScreenKind, Tap, full, r};
use crate::Phone;
use crate::actions::Action;
use crate::ui::{BUTTON, FRAME, LINEAR, Node, TEXT, Window};

pub(crate) const SYSTEM_PACKAGE: &str = "android";
pub(crate) const SYSTEMUI_PACKAGE: &str = "com.android.systemui";

/// A system dialog over whatever is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SystemDialog {
    /// "TikTok isn't responding"; after `Wait` it comes back this many more times.
    NotResponding { returns: u32 },
    /// "TikTok keeps stopping" (the app's process is gone).
    KeepsStopping,
    /// "Battery is low".
    LowBattery,
}

impl SystemDialog {
    pub(crate) fn kind(self) -> ScreenKind {
        match self {
            Self::NotResponding { .. } => ScreenKind::NotResponding,
            Self::KeepsStopping => ScreenKind::KeepsStopping,
            Self::LowBattery => ScreenKind::LowBattery,
        }
    }
}

fn alert(
    package: &'static str,
    title: &str,
    message: Option<String>,
    buttons: Vec<Node>,
) -> Window {
    let mut dialog = Node::new(FRAME, r(72, 880, 1008, 1520))
        .raw_id("android:id/parentPanel")
        .child(
            Node::new(TEXT, r(120, 920, 960, 1020))
                .raw_id("android:id/alertTitle")
                .text(title.to_string()),
        );
    if let Some(m) = message {
        dialog = dialog.child(
            Node::new(TEXT, r(120, 1040, 960, 1200))
                .raw_id("android:id/message")
                .text(m),
        );
    }
    dialog = dialog.child(Node::new(LINEAR, r(72, 1220, 1008, 1520)).children(buttons));
    Window {
        package,
        root: Node::new(FRAME, full()).child(dialog),
    }
}

impl Phone {
    /// The window of a system screen (None: not one).
    pub(crate) fn system_window(&self, kind: ScreenKind) -> Option<Window> {
        Some(match kind {
            ScreenKind::NotResponding => alert(
                SYSTEM_PACKAGE,
                "TikTok isn't responding",
                None,
                vec![
                    Node::new(BUTTON, r(120, 1240, 960, 1360))
                        .raw_id("android:id/aerr_close")
                        .text("Close app")
                        .on_tap(Tap::AnrClose),
                    Node::new(BUTTON, r(120, 1380, 960, 1500))
                        .raw_id("android:id/aerr_wait")
                        .text("Wait")
                        .on_tap(Tap::AnrWait),
                ],
            ),
            ScreenKind::KeepsStopping => alert(
                SYSTEM_PACKAGE,
                "TikTok keeps stopping",
                None,
                vec![
                    Node::new(BUTTON, r(120, 1240, 960, 1360))
                        .raw_id("android:id/aerr_app_info")
                        .text("App info")
                        .on_tap(Tap::Nothing),
                    Node::new(BUTTON, r(120, 1380, 960, 1500))
                        .raw_id("android:id/aerr_close")
                        .text("Close app")
                        .on_tap(Tap::CrashClose),
                ],
            ),
            ScreenKind::LowBattery => alert(
                SYSTEMUI_PACKAGE,
                "Battery is low",
                Some(format!(
                    "{}% remaining. Turn on Battery Saver?",
                    self.config.battery_level
                )),
                vec![
                    Node::new(BUTTON, r(120, 1380, 520, 1500))
                        .raw_id("android:id/button2")
                        .text("Cancel")
                        .on_tap(Tap::BatteryCancel),
                    Node::new(BUTTON, r(560, 1380, 960, 1500))
                        .raw_id("android:id/button1")
                        .text("Turn on")
                        .on_tap(Tap::BatteryTurnOn),
                ],
            ),
            ScreenKind::Keyguard => Window {
                package: SYSTEMUI_PACKAGE,
                root: Node::new(FRAME, full())
                    .raw_id("com.android.systemui:id/notification_panel")
                    .children([
                        Node::new(TEXT, r(240, 400, 840, 640))
                            .raw_id("com.android.systemui:id/keyguard_clock")
                            .text(self.clock_text()),
                        Node::new(TEXT, r(120, 2180, 960, 2260))
                            .raw_id("com.android.systemui:id/keyguard_indication_text")
                            .text("Swipe up to open"),
                    ]),
            },
            _ => return None,
        })
    }

    pub(crate) fn show_system(&mut self, dialog: SystemDialog) {
        self.app.system = Some(dialog);
    }

    /// A runtime permission prompt over the app (it waits while the app is not in front).
    pub(crate) fn ask_permission(&mut self, permission: Permission) {
        self.app.permission_kind = permission;
        if self.app.permission.is_none() {
            self.app.permission = Some(PermissionReason::Injected);
        }
        self.log(Action::PopupShown {
            popup: super::Popup::PermissionDialog,
        });
    }

    /// What a system or account-dialog button does; false if `tap` is none of theirs.
    pub(crate) fn apply_system(&mut self, tap: &Tap) -> bool {
        match tap {
            Tap::AnrWait => {
                if let Some(SystemDialog::NotResponding { returns }) = self.app.system {
                    self.app.system = None;
                    self.log(Action::SystemAnswered {
                        dialog: "not_responding".into(),
                        button: "wait".into(),
                    });
                    if returns > 0 {
                        self.inject_fault(
                            crate::Fault::NotResponding {
                                returns: returns - 1,
                            },
                            crate::FaultTrigger::AfterDumps(0),
                        );
                    }
                }
            }
            Tap::AnrClose => {
                self.log(Action::SystemAnswered {
                    dialog: "not_responding".into(),
                    button: "close_app".into(),
                });
                self.app.system = None;
                self.kill_app();
            }
            Tap::CrashClose => {
                self.log(Action::SystemAnswered {
                    dialog: "keeps_stopping".into(),
                    button: "close_app".into(),
                });
                self.app.system = None;
                if self.app.foreground == Foreground::App {
                    self.app.foreground = Foreground::Launcher;
                }
            }
            Tap::BatteryCancel => {
                self.log(Action::SystemAnswered {
                    dialog: "low_battery".into(),
                    button: "cancel".into(),
                });
                self.app.system = None;
            }
            Tap::BatteryTurnOn => {
                self.log(Action::SystemAnswered {
                    dialog: "low_battery".into(),
                    button: "turn_on".into(),
                });
                self.app.system = None;
                self.settings.insert("global/low_power".into(), "1".into());
            }
            Tap::SessionOk => self.config.account = AccountState::LoggedOut,
            Tap::RateOk => self.config.account = AccountState::Active,
            _ => return false,
        }
        true
    }

    /// BACK on a system screen; false if it is not one.
    pub(crate) fn back_system(&mut self) -> bool {
        let tap = match self.screen() {
            ScreenKind::NotResponding => Tap::AnrWait,
            ScreenKind::KeepsStopping => Tap::CrashClose,
            ScreenKind::LowBattery => Tap::BatteryCancel,
            ScreenKind::Keyguard => return true,
            _ => return false,
        };
        self.apply_system(&tap);
        true
    }

    /// A swipe up on the lock screen unlocks it (no PIN).
    pub(crate) fn swipe_keyguard(&mut self, dy_up: i32) {
        if dy_up >= 200 {
            self.locked = false;
            self.log(Action::Unlocked);
        }
    }
}

/// The permission dialog asking for `permission`.
pub(crate) fn permission_window(permission: Permission) -> Window {
    use crate::ui::PERMISSION_PACKAGE;
    Window {
        package: PERMISSION_PACKAGE,
        root: Node::new(FRAME, full()).child(
            Node::new(LINEAR, r(72, 900, 1008, 1560))
                .raw_id("com.android.permissioncontroller:id/grant_dialog")
                .children([
                    Node::new(TEXT, r(120, 960, 960, 1180))
                        .raw_id("com.android.permissioncontroller:id/permission_message")
                        .text(permission.message()),
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

/// The newer account screens' nodes (None for the others).
pub(crate) fn account_nodes_more(state: AccountState) -> Option<Vec<Node>> {
    Some(match state {
        AccountState::SessionExpired => vec![
            Node::new(TEXT, r(96, 700, 984, 800))
                .id("session_title")
                .text("Session expired"),
            Node::new(TEXT, r(96, 820, 984, 960))
                .id("session_message")
                .text("Your session has expired. Please log in again."),
            Node::new(BUTTON, r(96, 1100, 984, 1220))
                .id("session_ok")
                .text("OK")
                .on_tap(Tap::SessionOk),
        ],
        AccountState::Suspended => vec![
            Node::new(TEXT, r(96, 700, 984, 800))
                .id("suspend_title")
                .text("Your account is suspended"),
            Node::new(TEXT, r(96, 820, 984, 1000))
                .id("suspend_message")
                .text(
                    "Your account was suspended for 7 days for violating our Community Guidelines.",
                ),
            Node::new(BUTTON, r(96, 1100, 984, 1220))
                .id("suspend_appeal")
                .text("Appeal")
                .on_tap(Tap::Nothing),
        ],
        _ => return None,
    })
}

/// "You're tapping too fast": a modal over the current screen.
pub(crate) fn rate_limit_dialog() -> Node {
    Node::new(FRAME, r(96, 900, 984, 1400))
        .id("rate_dialog")
        .children([
            Node::new(TEXT, r(144, 940, 936, 1020))
                .id("rate_title")
                .text("You're tapping too fast"),
            Node::new(TEXT, r(144, 1040, 936, 1200))
                .id("rate_message")
                .text("Take a break and try again later."),
            Node::new(BUTTON, r(144, 1260, 936, 1360))
                .id("rate_ok")
                .text("OK")
                .on_tap(Tap::RateOk),
        ])
}

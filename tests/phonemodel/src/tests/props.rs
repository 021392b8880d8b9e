//! Property tests: no input makes the model panic, and the dump stays well-formed.

use proptest::prelude::*;

use super::{launched, parse_xml};
use crate::UiVariant;

/// Words the shell knows, to steer generated command lines into real code paths.
const WORDS: &[&str] = &[
    "input",
    "tap",
    "swipe",
    "text",
    "keyevent",
    "uiautomator",
    "dump",
    "/dev/tty",
    "am",
    "start",
    "-n",
    "com.zhiliaoapp.musically/com.ss.android.ugc.aweme.splash.SplashActivity",
    "force-stop",
    "com.zhiliaoapp.musically",
    "broadcast",
    "-a",
    "android.intent.action.MEDIA_SCANNER_SCAN_FILE",
    "-d",
    "file:///sdcard/DCIM/Camera",
    "monkey",
    "-p",
    "getprop",
    "dumpsys",
    "battery",
    "package",
    "window",
    "power",
    "settings",
    "get",
    "put",
    "global",
    "pm",
    "list",
    "packages",
    "path",
    "grant",
    "ls",
    "-l",
    "cat",
    "rm",
    "-rf",
    "mkdir",
    "-p",
    "/sdcard/x",
    "/",
    "df",
    "echo",
    "exit",
    "sh",
    "-c",
    "screencap",
    "wm",
    "size",
    "reboot",
    "KEYCODE_BACK",
    "KEYCODE_ENTER",
    "4",
    "66",
    "67",
    "3",
    "26",
    "540",
    "1200",
    "1008",
    "1388",
    "2316",
    "&&",
    "||",
    ";",
    "'",
    "\"",
    "\\",
    ">",
    "2>&1",
    "%s",
    "#",
    "|",
    "&",
    "(",
    "x\u{0}y",
    "héllo",
    "<&>",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
        1 => (-5000i64..5000).prop_map(|n| n.to_string()),
    ]
}

fn command_line() -> impl Strategy<Value = String> {
    proptest::collection::vec(word(), 0..12).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(cmd in any::<String>()) {
        let mut p = launched(UiVariant::A);
        let _ = p.shell(&cmd);
    }

    #[test]
    fn command_sequences_never_panic_and_dumps_stay_well_formed(
        cmds in proptest::collection::vec(command_line(), 1..8),
        variant in prop_oneof![Just(UiVariant::A), Just(UiVariant::B)],
    ) {
        let mut p = launched(variant);
        for c in &cmds {
            let o = p.shell(c);
            if o.exit == 127 && !c.contains('>') {
                let mut all = o.stdout.clone();
                all.extend_from_slice(&o.stderr);
                let err = String::from_utf8_lossy(&all);
                prop_assert!(err.contains("inaccessible or not found") || err.contains("/system/bin/sh: "), "{err}");
            }
        }
        if let Some(xml) = p.ui_xml() {
            let nodes = parse_xml(&xml);
            prop_assert!(!nodes.is_empty());
        }
    }
}

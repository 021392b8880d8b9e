//! Each shell command, the quoting rules, sequencing and redirections.

use super::{launched, phone, sh};
use crate::{Action, Identity, Phone, PhoneConfig, ScreenKind, UiVariant};

fn run(p: &mut Phone, cmd: &str) -> (String, String, u8) {
    let o = p.shell(cmd);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.exit,
    )
}

#[test]
fn unknown_command_is_127() {
    let mut p = phone(UiVariant::A);
    assert_eq!(
        run(&mut p, "frobnicate --now"),
        (
            String::new(),
            "/system/bin/sh: frobnicate: inaccessible or not found\n".into(),
            127
        )
    );
}

#[test]
fn getprop_all_and_by_key() {
    let identity = Identity {
        serial: "R58M12ABC".into(),
        product: "a52qnsxx".into(),
        model: "SM-A525F".into(),
        device: "a52q".into(),
        android_version: "12".into(),
    };
    let mut p = Phone::with_config(
        identity,
        PhoneConfig {
            manufacturer: "samsung".into(),
            ..PhoneConfig::default()
        },
    );
    assert_eq!(sh(&mut p, "getprop ro.product.model"), "SM-A525F\n");
    assert_eq!(sh(&mut p, "getprop ro.build.version.release"), "12\n");
    assert_eq!(sh(&mut p, "getprop ro.build.version.sdk"), "31\n");
    assert_eq!(sh(&mut p, "getprop ro.serialno"), "R58M12ABC\n");
    assert_eq!(sh(&mut p, "getprop ro.product.manufacturer"), "samsung\n");
    assert_eq!(sh(&mut p, "getprop sys.boot_completed"), "1\n");
    assert_eq!(sh(&mut p, "getprop no.such.prop"), "\n");
    assert_eq!(sh(&mut p, "getprop no.such.prop fallback"), "fallback\n");
    let all = sh(&mut p, "getprop");
    assert!(all.contains("[ro.product.model]: [SM-A525F]\n"), "{all}");
    assert!(all.contains("[sys.boot_completed]: [1]\n"));
    let keys: Vec<_> = all
        .lines()
        .map(|l| l.split(']').next().unwrap_or("").to_string())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "getprop lists keys sorted");
}

#[test]
fn echo_true_false_exit_and_sequencing() {
    let mut p = phone(UiVariant::A);
    assert_eq!(sh(&mut p, "echo hello   world"), "hello world\n");
    assert_eq!(sh(&mut p, "echo -n x"), "x");
    assert_eq!(sh(&mut p, "echo -e 'a\\nb'"), "a\nb\n");
    assert_eq!(run(&mut p, "true").2, 0);
    assert_eq!(run(&mut p, "false").2, 1);
    assert_eq!(run(&mut p, "exit 3"), (String::new(), String::new(), 3));
    assert_eq!(run(&mut p, "exit 300").2, 44);
    assert_eq!(
        run(&mut p, "echo a; exit 7; echo b"),
        ("a\n".into(), String::new(), 7)
    );
    assert_eq!(
        run(&mut p, "false && echo no; echo yes"),
        ("yes\n".into(), String::new(), 0)
    );
    assert_eq!(
        run(&mut p, "false || echo rescued"),
        ("rescued\n".into(), String::new(), 0)
    );
    assert_eq!(
        run(&mut p, "true || echo skipped && echo ran"),
        ("ran\n".into(), String::new(), 0)
    );
    assert_eq!(
        run(&mut p, "echo a && false"),
        ("a\n".into(), String::new(), 1)
    );
    assert_eq!(run(&mut p, "echo one\necho two").0, "one\ntwo\n");
    assert_eq!(run(&mut p, "exit nope").2, 2);
    assert_eq!(
        run(&mut p, "sh -c 'echo inner; exit 4'; echo after"),
        ("inner\nafter\n".into(), String::new(), 0)
    );
    assert_eq!(run(&mut p, "sh -c 'exit 4'").2, 4);
}

#[test]
fn quoting() {
    let mut p = phone(UiVariant::A);
    assert_eq!(
        sh(&mut p, r#"echo 'single "double" $HOME \n'"#),
        "single \"double\" $HOME \\n\n"
    );
    assert_eq!(
        sh(&mut p, r#"echo "double 'single' \"esc\" \\ \$x""#),
        "double 'single' \"esc\" \\ $x\n"
    );
    assert_eq!(sh(&mut p, r"echo a\ b\;c"), "a b;c\n");
    assert_eq!(
        sh(&mut p, "echo 'a;b' \"c&&d\" e#f # comment"),
        "a;b c&&d e#f\n"
    );
    assert_eq!(sh(&mut p, "echo ''"), "\n");
    let (_, err, code) = run(&mut p, "echo 'open");
    assert_eq!(code, 2);
    assert!(err.contains("unterminated quoted string"), "{err}");
    let (_, err, code) = run(&mut p, "getprop | grep model");
    assert_eq!(code, 2);
    assert!(err.contains("pipes (|) are not supported"), "{err}");
}

#[test]
fn redirections() {
    let mut p = phone(UiVariant::A);
    assert_eq!(
        run(&mut p, "echo hi > /data/local/tmp/x.txt"),
        (String::new(), String::new(), 0)
    );
    assert_eq!(
        sh(
            &mut p,
            "echo more >> /data/local/tmp/x.txt; cat /data/local/tmp/x.txt"
        ),
        "hi\nmore\n"
    );
    assert_eq!(
        run(&mut p, "cat /nope 2>/dev/null"),
        (String::new(), String::new(), 1)
    );
    let (out, err, _) = run(&mut p, "cat /nope 2>&1");
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("cat: /nope: No such file or directory\n", "")
    );
    let (_, err, code) = run(&mut p, "echo x > /system/x");
    assert_eq!(code, 1);
    assert!(err.contains("can't create /system/x"), "{err}");
    assert_eq!(
        run(&mut p, "echo x > /top.txt"),
        (
            String::new(),
            "/system/bin/sh: can't create /top.txt: Read-only file system\n".into(),
            1
        )
    );
    assert_eq!(
        run(&mut p, "echo x > /data/x").1,
        "/system/bin/sh: can't create /data/x: Permission denied\n"
    );
    assert_eq!(
        run(&mut p, "mkdir /data/foo").1,
        "mkdir: '/data/foo': Permission denied\n"
    );
    assert_eq!(
        run(&mut p, "rm -rf /sdcard").1,
        "rm: /sdcard: Read-only file system\n"
    );
    let (_, err, code) = run(&mut p, "echo x > /missing/dir/x");
    assert_eq!(code, 1);
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn file_commands() {
    let mut p = phone(UiVariant::A);
    sh(&mut p, "mkdir -p /sdcard/a/b/c");
    assert!(p.stat("/sdcard/a/b/c").is_some());
    let (_, err, code) = run(&mut p, "mkdir /sdcard/a");
    assert_eq!(
        (err.as_str(), code),
        ("mkdir: '/sdcard/a': File exists\n", 1)
    );
    let (_, err, code) = run(&mut p, "mkdir /sdcard/x/y");
    assert_eq!(
        (err.as_str(), code),
        ("mkdir: '/sdcard/x/y': No such file or directory\n", 1)
    );
    sh(&mut p, "mkdir -p /sdcard/a");

    p.write("/sdcard/a/f.txt", b"data".to_vec(), 0o100644, 1_700_000_000)
        .unwrap();
    assert_eq!(sh(&mut p, "cat /sdcard/a/f.txt"), "data");
    assert_eq!(sh(&mut p, "cat /storage/emulated/0/a/f.txt"), "data");
    assert_eq!(sh(&mut p, "ls /sdcard/a"), "b\nf.txt\n");
    let long = sh(&mut p, "ls -l /sdcard/a");
    assert!(long.starts_with("total "), "{long}");
    assert!(
        long.contains("-rw-r--r-- 1 root sdcard_rw        4 2023-11-14 22:13 f.txt\n"),
        "{long}"
    );
    assert!(long.contains("drwxrwx--x 2 root root"), "{long}");
    assert_eq!(sh(&mut p, "ls /sdcard/a/f.txt"), "/sdcard/a/f.txt\n");
    assert_eq!(
        run(&mut p, "ls /nope"),
        (
            String::new(),
            "ls: /nope: No such file or directory\n".into(),
            1
        )
    );
    assert_eq!(
        run(&mut p, "cat /sdcard/a").1,
        "cat: /sdcard/a: Is a directory\n"
    );

    assert_eq!(
        run(&mut p, "rm /sdcard/a").1,
        "rm: /sdcard/a: is a directory\n"
    );
    sh(&mut p, "rm /sdcard/a/f.txt");
    assert!(p.stat("/sdcard/a/f.txt").is_none());
    assert_eq!(run(&mut p, "rm /sdcard/a/f.txt").2, 1);
    assert_eq!(run(&mut p, "rm -f /sdcard/a/f.txt").2, 0);
    sh(&mut p, "rm -rf /sdcard/a");
    assert!(p.stat("/sdcard/a").is_none());
    sh(&mut p, "touch /data/local/tmp/t");
    assert_eq!(p.read("/data/local/tmp/t"), Some(Vec::new()));
}

#[test]
fn df_reports_free_storage() {
    let mut p = Phone::with_config(
        Identity::default(),
        PhoneConfig {
            storage_total: 64 << 30,
            storage_free: 2 << 30,
            ..PhoneConfig::default()
        },
    );
    let out = sh(&mut p, "df /data");
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Filesystem"));
    let cols: Vec<_> = lines[1].split_whitespace().collect();
    assert_eq!(cols[0], "/dev/block/dm-45");
    assert_eq!(cols[1], (64u64 << 20).to_string());
    assert_eq!(cols[3], (2u64 << 20).to_string());
    assert_eq!(cols[5], "/data");
    // Stored files use the space up.
    p.write("/sdcard/big.bin", vec![0; 1 << 20], 0o644, 1)
        .unwrap();
    let out = sh(&mut p, "df /sdcard");
    let cols: Vec<_> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(cols[3], ((2u64 << 20) - 1024).to_string());
    assert_eq!(cols[5], "/storage/emulated");
    assert!(sh(&mut p, "df /storage/emulated/0/DCIM").contains(" /storage/emulated\n"));
    let all = sh(&mut p, "df");
    assert!(all.lines().count() >= 5);
    assert!(sh(&mut p, "df -h /data").contains("64G"));
    assert_eq!(run(&mut p, "df /nope").2, 1);
}

#[test]
fn dumpsys_battery_package_power_window() {
    let mut p = launched(UiVariant::A);
    p.config_mut().battery_level = 42;
    p.config_mut().battery_temperature = 371;
    let b = sh(&mut p, "dumpsys battery");
    assert!(b.contains("\n  level: 42\n"), "{b}");
    assert!(b.contains("\n  temperature: 371\n"), "{b}");
    assert!(b.contains("\n  scale: 100\n"));
    let pkg = sh(&mut p, "dumpsys package com.zhiliaoapp.musically");
    assert!(pkg.lines().any(|l| l == "    versionName=32.5.3"), "{pkg}");
    p.config_mut().app_version = Some("34.0.1".into());
    assert!(
        sh(&mut p, "dumpsys package com.zhiliaoapp.musically").contains("    versionName=34.0.1\n")
    );
    assert!(sh(&mut p, "dumpsys power").contains("mWakefulness=Awake"));
    assert!(sh(&mut p, "dumpsys power").contains("Display Power: state=ON"));
    let w = sh(&mut p, "dumpsys window");
    assert!(w.contains("mCurrentFocus=Window{8f3a2c1 u0 com.zhiliaoapp.musically/com.ss.android.ugc.aweme.main.MainActivity}"), "{w}");
    assert!(w.contains("mAwake=true"));
    p.set_screen_on(false);
    assert!(sh(&mut p, "dumpsys power").contains("mWakefulness=Asleep"));
    assert!(sh(&mut p, "dumpsys window").contains("mAwake=false"));
    assert_eq!(sh(&mut p, "dumpsys nosuch"), "Can't find service: nosuch\n");
}

#[test]
fn settings_get_put() {
    let mut p = phone(UiVariant::A);
    assert_eq!(
        sh(&mut p, "settings get global adb_allowed_connection_time"),
        "604800000\n"
    );
    sh(&mut p, "settings put global adb_allowed_connection_time 0");
    assert_eq!(
        sh(&mut p, "settings get global adb_allowed_connection_time"),
        "0\n"
    );
    assert_eq!(sh(&mut p, "settings get secure nothing_here"), "null\n");
    assert_eq!(run(&mut p, "settings get bogus x").2, 255);
    assert!(sh(&mut p, "settings list system").contains("screen_off_timeout=60000\n"));
}

#[test]
fn pm_list_and_path() {
    let mut p = phone(UiVariant::A);
    let all = sh(&mut p, "pm list packages");
    assert!(
        all.lines().any(|l| l == "package:com.zhiliaoapp.musically"),
        "{all}"
    );
    assert_eq!(
        sh(&mut p, "pm list packages -3"),
        "package:com.zhiliaoapp.musically\n"
    );
    assert_eq!(
        sh(&mut p, "pm list packages musically"),
        "package:com.zhiliaoapp.musically\n"
    );
    assert!(sh(&mut p, "pm path com.zhiliaoapp.musically").starts_with("package:/data/app/"));
    assert_eq!(run(&mut p, "pm path com.nope").2, 1);
}

#[test]
fn app_not_installed() {
    let mut p = Phone::with_config(
        Identity::default(),
        PhoneConfig {
            app_installed: false,
            ..PhoneConfig::default()
        },
    );
    assert!(!sh(&mut p, "pm list packages").contains("musically"));
    assert_eq!(sh(&mut p, "pm list packages -3"), "");
    assert_eq!(
        sh(&mut p, "dumpsys package com.zhiliaoapp.musically"),
        "Unable to find package: com.zhiliaoapp.musically\n"
    );
    let (_, err, code) = run(
        &mut p,
        "am start -n com.zhiliaoapp.musically/com.ss.android.ugc.aweme.splash.SplashActivity",
    );
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let (_, err, code) = run(
        &mut p,
        "monkey -p com.zhiliaoapp.musically -c android.intent.category.LAUNCHER 1",
    );
    assert_eq!(
        (err.as_str(), code),
        ("** No activities found to run, monkey aborted.\n", 252)
    );
    assert_eq!(p.screen(), ScreenKind::Launcher);
    assert!(!sh(&mut p, "uiautomator dump /dev/tty").contains("TikTok"));
}

#[test]
fn am_start_monkey_force_stop() {
    let mut p = phone(UiVariant::A);
    let out = sh(
        &mut p,
        "am start -W -n com.zhiliaoapp.musically/com.ss.android.ugc.aweme.splash.SplashActivity",
    );
    assert!(
        out.starts_with("Starting: Intent { cmp=com.zhiliaoapp.musically/"),
        "{out}"
    );
    assert!(out.contains("LaunchState: COLD"));
    assert_eq!(p.screen(), ScreenKind::Feed);
    assert!(p.actions().contains(&Action::AppLaunched { cold: true }));
    assert_eq!(sh(&mut p, "pidof com.zhiliaoapp.musically"), "12345\n");
    sh(&mut p, "am force-stop com.zhiliaoapp.musically");
    assert_eq!(p.screen(), ScreenKind::Launcher);
    assert!(!p.app_running());
    assert!(p.actions().contains(&Action::AppForceStopped));
    assert_eq!(run(&mut p, "pidof com.zhiliaoapp.musically").2, 1);
    let out = sh(
        &mut p,
        "monkey -p com.zhiliaoapp.musically -c android.intent.category.LAUNCHER 1",
    );
    assert!(out.contains("Events injected: 1"), "{out}");
    assert_eq!(p.screen(), ScreenKind::Feed);
    assert_eq!(
        run(
            &mut p,
            "am start -n com.zhiliaoapp.musically/.NoSuchActivity"
        )
        .2,
        1
    );
    sh(
        &mut p,
        "am start -S -n com.zhiliaoapp.musically/com.ss.android.ugc.aweme.main.MainActivity",
    );
    assert_eq!(
        p.actions()
            .iter()
            .filter(|a| matches!(a, Action::AppForceStopped))
            .count(),
        2
    );
}

#[test]
fn input_commands_and_errors() {
    let mut p = launched(UiVariant::A);
    assert_eq!(run(&mut p, "input tap 10").2, 1);
    assert_eq!(run(&mut p, "input tap x y").2, 1);
    assert_eq!(run(&mut p, "input swipe 1 2 3").2, 1);
    assert_eq!(run(&mut p, "input bogus").2, 1);
    assert_eq!(run(&mut p, "input keyevent").2, 1);
    // Source prefixes and float coordinates are accepted; a tap on nothing is logged without a node.
    sh(&mut p, "input touchscreen tap 500.5 700.2");
    assert!(p.actions().contains(&Action::Tap {
        x: 500,
        y: 700,
        node: None
    }));
    sh(&mut p, "input tap 1008 1388");
    let last_tap = p.actions().iter().rev().find_map(|a| match a {
        Action::Tap { node: Some(n), .. } => Some(n.clone()),
        _ => None,
    });
    assert_eq!(
        last_tap.map(|n| n.resource_id),
        Some("com.zhiliaoapp.musically:id/like_button".into())
    );
    assert_eq!(p.liked_videos().len(), 1);
    // Text with nothing focused goes nowhere.
    sh(&mut p, "input text hello");
    assert!(p.actions().contains(&Action::TextTyped {
        text: "hello".into(),
        field: None
    }));
    sh(&mut p, "input keyevent --longpress KEYCODE_VOLUME_UP 999");
    assert!(p.actions().contains(&Action::Key { code: 24 }));
    assert!(p.actions().contains(&Action::Key { code: 999 }));
    assert_eq!(crate::shell::keycode("KEYCODE_ENTER"), 66);
    assert_eq!(crate::shell::keycode("DEL"), 67);
    assert_eq!(crate::shell::keycode("KEYCODE_A"), 29);
    assert_eq!(crate::shell::keycode("KEYCODE_NOPE"), 0);
}

#[test]
fn screencap_wm_date_id() {
    let mut p = phone(UiVariant::A);
    let o = p.shell("screencap -p");
    assert_eq!(o.exit, 0);
    assert_eq!(&o.stdout[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(run(&mut p, "screencap -p /sdcard/s.png").2, 0);
    assert_eq!(
        p.read("/sdcard/s.png").map(|d| d[..4].to_vec()),
        Some(b"\x89PNG".to_vec())
    );
    assert_eq!(
        p.actions()
            .iter()
            .filter(|a| **a == Action::Screenshot)
            .count(),
        2
    );
    assert_eq!(sh(&mut p, "wm size"), "Physical size: 1080x2400\n");
    assert_eq!(sh(&mut p, "wm density"), "Physical density: 420\n");
    p.config_mut().clock = 1_764_325_215;
    assert_eq!(sh(&mut p, "date +%s"), "1764325215\n");
    assert_eq!(sh(&mut p, "date"), "Fri Nov 28 10:20:15 UTC 2025\n");
    assert!(sh(&mut p, "id").starts_with("uid=2000(shell)"));
    assert_eq!(sh(&mut p, "/system/bin/echo path"), "path\n");
    assert_eq!(sh(&mut p, "sleep 1"), "");
}

#[test]
fn failing_dumps_knob_counts_down() {
    let mut p = launched(UiVariant::A);
    p.config_mut().failing_dumps = 2;
    for _ in 0..2 {
        assert_eq!(
            run(&mut p, "uiautomator dump"),
            (
                String::new(),
                "ERROR: could not get idle state.\n".into(),
                1
            )
        );
    }
    assert_eq!(run(&mut p, "uiautomator dump").2, 0);
    assert_eq!(p.config().failing_dumps, 0);
}

#[test]
fn huge_storage_knobs_do_not_overflow() {
    let mut p = Phone::with_config(
        Identity::default(),
        PhoneConfig {
            storage_total: u64::MAX,
            storage_free: 1,
            ..PhoneConfig::default()
        },
    );
    let out = sh(&mut p, "df /data");
    assert!(out.contains("100% /data"), "{out}");
}

#[test]
fn phone_is_send_for_the_peer() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Phone>();
    let p = std::sync::Arc::new(std::sync::Mutex::new(Phone::default()));
    let q = std::sync::Arc::clone(&p);
    let out = std::thread::spawn(move || {
        q.lock()
            .map(|mut ph| ph.shell("echo ok").stdout)
            .unwrap_or_default()
    })
    .join()
    .unwrap_or_default();
    assert_eq!(out, b"ok\n");
}

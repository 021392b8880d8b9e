//! The phone's shell: `/system/bin/sh -c` over the model.
//!
//! Syntax (see `parse`): single and double quotes, backslash escapes, `#` comments, `;`,
//! newlines, `&&`, `||`, and redirections `>`, `>>`, `2>`, `2>&1` (`/dev/null` discards). No
//! pipes, background jobs, subshells or `$` expansion: those fail with a clear message (exit 2).
//! The working directory is `/`; relative paths are taken from there.
//!
//! Commands: `getprop`, `echo`, `true`, `false`, `:`, `exit`, `cat`, `rm`, `ls`, `mkdir`,
//! `touch`, `cd`, `df`, `dumpsys` (`battery`, `package`, `power`, `window`, `activity`),
//! `settings`, `pm` (`list packages`, `path`, `grant`, `revoke`, `clear`), `am` (`start`,
//! `force-stop`, `broadcast`), `monkey`, `input` (`tap`, `swipe`, `draganddrop`, `text`,
//! `keyevent`, `press`), `uiautomator dump`, `screencap`, `wm` (`size`, `density`), `reboot`,
//! `sh`, `id`, `whoami`, `date`, `sleep` (returns at once), `pidof`. Anything else:
//! `/system/bin/sh: X: inaccessible or not found`, exit 127.

mod parse;

use crate::actions::Action;
use crate::fs::{FsError, S_IFDIR, S_IFMT, S_IFREG, normalize};
use crate::ui::{APP_LAUNCH_ACTIVITY, APP_MAIN_ACTIVITY, APP_PACKAGE, SCREEN_HEIGHT, SCREEN_WIDTH};
use crate::{Phone, ScreenKind, ShellOutput, png};
use parse::{Connector, RedirectTarget};

/// How deep `sh -c` may nest.
const MAX_DEPTH: u32 = 8;
/// `uiautomator dump` writes here unless told otherwise.
pub const DEFAULT_DUMP_PATH: &str = "/sdcard/window_dump.xml";

const SYSTEM_PACKAGES: &[&str] = &[
    "android",
    "com.android.settings",
    "com.android.shell",
    "com.android.systemui",
    "com.android.vending",
    "com.google.android.apps.nexuslauncher",
    "com.google.android.gms",
    "com.google.android.permissioncontroller",
];

fn out(stdout: impl Into<Vec<u8>>) -> ShellOutput {
    ShellOutput {
        stdout: stdout.into(),
        stderr: Vec::new(),
        exit: 0,
    }
}

fn err(stderr: impl Into<String>, exit: u8) -> ShellOutput {
    ShellOutput {
        stdout: Vec::new(),
        stderr: stderr.into().into_bytes(),
        exit,
    }
}

fn status(exit: u8) -> ShellOutput {
    ShellOutput {
        exit,
        ..ShellOutput::default()
    }
}

/// Where a command's stdout or stderr ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    Stdout,
    Stderr,
    Null,
    File { path: String, append: bool },
}

/// Civil date from Unix seconds: (year, month, day, hour, minute, second, weekday 0=Sunday).
pub(crate) fn civil(secs: u32) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = i64::from(secs);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = (days + 4).rem_euclid(7) as u32;
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
        wd,
    )
}

fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(if mode & S_IFMT == S_IFDIR { 'd' } else { '-' });
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn sdk_for(release: &str) -> &'static str {
    match release.split('.').next().unwrap_or("") {
        "15" => "35",
        "14" => "34",
        "13" => "33",
        "12" => "31",
        "11" => "30",
        "10" => "29",
        "9" => "28",
        "8" => "26",
        _ => "33",
    }
}

fn version_code(version: &str) -> u64 {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    2_000_000_000u64.saturating_add(a.min(99) * 1_000_000 + b.min(99) * 10_000 + c.min(99) * 100)
}

/// Android's `input text` escaping: `%s` is a space.
fn input_text_unescape(s: &str) -> String {
    s.replace("%s", " ")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a key code: a number, `KEYCODE_NAME` or `NAME`. Unknown names are 0
/// (`KEYCODE_UNKNOWN`), as Android's `KeyEvent.keyCodeFromString` answers.
pub fn keycode(s: &str) -> u32 {
    if let Ok(n) = s.parse::<u32>() {
        return n;
    }
    let name = s.strip_prefix("KEYCODE_").unwrap_or(s);
    let named = match name {
        "HOME" => 3,
        "BACK" => 4,
        "CALL" => 5,
        "ENDCALL" => 6,
        "DPAD_UP" => 19,
        "DPAD_DOWN" => 20,
        "DPAD_LEFT" => 21,
        "DPAD_RIGHT" => 22,
        "DPAD_CENTER" => 23,
        "VOLUME_UP" => 24,
        "VOLUME_DOWN" => 25,
        "POWER" => 26,
        "CAMERA" => 27,
        "TAB" => 61,
        "SPACE" => 62,
        "ENTER" => 66,
        "DEL" => 67,
        "MENU" => 82,
        "SEARCH" => 84,
        "ESCAPE" => 111,
        "FORWARD_DEL" => 112,
        "MOVE_HOME" => 122,
        "MOVE_END" => 123,
        "APP_SWITCH" => 187,
        "SLEEP" => 223,
        "WAKEUP" => 224,
        _ => 0,
    };
    if named != 0 {
        return named;
    }
    match name.as_bytes() {
        [c @ b'0'..=b'9'] => 7 + u32::from(c - b'0'),
        [c @ b'A'..=b'Z'] => 29 + u32::from(c - b'A'),
        _ => 0,
    }
}

fn parse_coord(s: &str) -> Option<i32> {
    let v: f64 = s.parse().ok()?;
    v.is_finite().then(|| v.clamp(-1e6, 1e6) as i32)
}

impl Phone {
    /// Runs one command line as `sh -c` would on the phone.
    pub fn shell(&mut self, cmd: &str) -> ShellOutput {
        self.run_script(cmd, 0)
    }

    fn run_script(&mut self, script: &str, depth: u32) -> ShellOutput {
        let commands = match parse::parse(script) {
            Ok(c) => c,
            Err(e) => return err(format!("/system/bin/sh: {e}\n"), 2),
        };
        let mut total = ShellOutput::default();
        let mut last = 0u8;
        for (connector, command) in commands {
            let run = match connector {
                Connector::Always => true,
                Connector::IfOk => last == 0,
                Connector::IfFailed => last != 0,
            };
            if !run {
                continue;
            }
            let (o, exit_shell) = self.run_command(&command, depth);
            total.stdout.extend_from_slice(&o.stdout);
            total.stderr.extend_from_slice(&o.stderr);
            last = o.exit;
            if exit_shell {
                break;
            }
        }
        total.exit = last;
        total
    }

    fn run_command(&mut self, command: &parse::Command, depth: u32) -> (ShellOutput, bool) {
        // Resolve redirections first, as the shell opens them before running the command.
        let mut stdout_dest = Dest::Stdout;
        let mut stderr_dest = Dest::Stderr;
        for r in &command.redirects {
            let dest = match &r.target {
                RedirectTarget::Input(path) => {
                    if self.fs.read(path).is_err() {
                        return (
                            err(
                                format!(
                                    "/system/bin/sh: can't open {path}: No such file or directory\n"
                                ),
                                1,
                            ),
                            false,
                        );
                    }
                    continue;
                }
                RedirectTarget::Fd(1) => stdout_dest.clone(),
                RedirectTarget::Fd(2) => stderr_dest.clone(),
                RedirectTarget::Fd(n) => {
                    return (
                        err(format!("/system/bin/sh: {n}: bad file descriptor\n"), 1),
                        false,
                    );
                }
                RedirectTarget::File { path, append } => match path.as_str() {
                    "/dev/null" => Dest::Null,
                    "/dev/stdout" | "/dev/tty" | "/proc/self/fd/1" => Dest::Stdout,
                    "/dev/stderr" | "/proc/self/fd/2" => Dest::Stderr,
                    p => {
                        let target = normalize(p).unwrap_or_default();
                        let parent_ok = target
                            .rfind('/')
                            .map(|i| if i == 0 { "/" } else { &target[..i] })
                            .is_some_and(|parent| self.fs.is_dir(parent));
                        let problem = if !parent_ok {
                            Some(FsError::NotFound)
                        } else if self.fs.is_dir(&target) {
                            Some(FsError::IsADirectory)
                        } else {
                            crate::fs::Fs::check_writable(&target).err()
                        };
                        if let Some(why) = problem {
                            return (
                                err(format!("/system/bin/sh: can't create {p}: {why}\n"), 1),
                                false,
                            );
                        }
                        Dest::File {
                            path: target,
                            append: *append,
                        }
                    }
                },
            };
            match r.fd {
                1 => stdout_dest = dest,
                2 => stderr_dest = dest,
                _ => {}
            }
        }
        let (result, exit_shell) = if command.argv.is_empty() {
            (ShellOutput::default(), false)
        } else {
            self.dispatch(&command.argv, depth)
        };
        let mut routed = ShellOutput {
            exit: result.exit,
            ..ShellOutput::default()
        };
        let mut files: Vec<(String, bool, Vec<u8>)> = Vec::new();
        // A redirected command with no output still creates/truncates its file.
        for d in [&stdout_dest, &stderr_dest] {
            if let Dest::File { path, append } = d
                && !files.iter().any(|(p, _, _)| p == path)
            {
                files.push((path.clone(), *append, Vec::new()));
            }
        }
        for (bytes, dest) in [(result.stdout, &stdout_dest), (result.stderr, &stderr_dest)] {
            match dest {
                Dest::Stdout => routed.stdout.extend_from_slice(&bytes),
                Dest::Stderr => routed.stderr.extend_from_slice(&bytes),
                Dest::Null => {}
                Dest::File { path, .. } => {
                    if let Some(f) = files.iter_mut().find(|(p, _, _)| p == path) {
                        f.2.extend_from_slice(&bytes);
                    }
                }
            }
        }
        for (path, append, data) in files {
            let free = self.storage_free();
            let clock = self.config.clock;
            let written = if append {
                self.fs.append(&path, &data, clock, free)
            } else {
                self.fs.write(&path, data, S_IFREG | 0o660, clock, free)
            };
            if let Err(e) = written {
                routed.stderr.extend_from_slice(
                    format!("/system/bin/sh: can't create {path}: {e}\n").as_bytes(),
                );
                routed.exit = 1;
            }
        }
        (routed, exit_shell)
    }

    /// Runs one simple command; the flag is true when the shell must stop (`exit`).
    fn dispatch(&mut self, argv: &[String], depth: u32) -> (ShellOutput, bool) {
        let name = argv[0].as_str();
        let name = ["/system/bin/", "/system/xbin/", "/vendor/bin/", "/bin/"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let o = match name {
            "exit" => {
                let code = match args.first() {
                    None => 0,
                    Some(a) => match a.parse::<i64>() {
                        Ok(n) => n.rem_euclid(256) as u8,
                        Err(_) => {
                            return (
                                err(format!("/system/bin/sh: exit: {a}: bad number\n"), 2),
                                true,
                            );
                        }
                    },
                };
                return (status(code), true);
            }
            "true" | ":" => status(0),
            "false" => status(1),
            "echo" => self.cmd_echo(&args),
            "getprop" => self.cmd_getprop(&args),
            "cat" => self.cmd_cat(&args),
            "rm" => self.cmd_rm(&args),
            "ls" => self.cmd_ls(&args),
            "mkdir" => self.cmd_mkdir(&args),
            "touch" => self.cmd_touch(&args),
            "cd" => match args.first() {
                Some(d) if !self.fs.is_dir(d) => err(
                    format!("/system/bin/sh: cd: /{d}: No such file or directory\n"),
                    2,
                ),
                _ => status(0),
            },
            "df" => self.cmd_df(&args),
            "dumpsys" => self.cmd_dumpsys(&args),
            "settings" => self.cmd_settings(&args),
            "pm" => self.cmd_pm(&args),
            "cmd" if args.first() == Some(&"package") => self.cmd_pm(&args[1..]),
            "am" => self.cmd_am(&args),
            "monkey" => self.cmd_monkey(&args),
            "input" => self.cmd_input(&args),
            "uiautomator" => self.cmd_uiautomator(&args),
            "screencap" => self.cmd_screencap(&args),
            "wm" => match args.first() {
                Some(&"size") => out(format!("Physical size: {SCREEN_WIDTH}x{SCREEN_HEIGHT}\n")),
                Some(&"density") => out("Physical density: 420\n"),
                _ => err("usage: wm [size|density]\n", 1),
            },
            "reboot" => {
                self.reboot();
                self.reboot_requested = true;
                status(0)
            }
            "sh" => match args.as_slice() {
                ["-c", script, ..] if depth < MAX_DEPTH => self.run_script(script, depth + 1),
                ["-c", ..] if depth >= MAX_DEPTH => err("/system/bin/sh: nesting too deep\n", 2),
                ["-c"] => err("/system/bin/sh: -c: option requires an argument\n", 2),
                [file, ..] if depth < MAX_DEPTH => match self.fs.read(file) {
                    Ok(bytes) => {
                        let script = String::from_utf8_lossy(bytes).into_owned();
                        self.run_script(&script, depth + 1)
                    }
                    Err(e) => err(format!("/system/bin/sh: {file}: {e}\n"), 127),
                },
                _ => status(0),
            },
            "id" => out(
                "uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),\
                 1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),3002(net_bt),3003(inet),\
                 3006(net_bw_stats) context=u:r:shell:s0\n",
            ),
            "whoami" => out("shell\n"),
            "date" => self.cmd_date(&args),
            "sleep" => match args.first().map(|a| a.parse::<f64>()) {
                Some(Ok(v)) if v >= 0.0 => status(0),
                _ => err("sleep: Not a number\n", 1),
            },
            "pidof" => {
                if args.first() == Some(&APP_PACKAGE) && self.app.running {
                    out("12345\n")
                } else {
                    status(1)
                }
            }
            _ => err(
                format!("/system/bin/sh: {}: inaccessible or not found\n", argv[0]),
                127,
            ),
        };
        (o, false)
    }

    fn cmd_echo(&mut self, args: &[&str]) -> ShellOutput {
        let mut newline = true;
        let mut escapes = false;
        let mut rest = args;
        while let Some(first) = rest.first() {
            match *first {
                "-n" => newline = false,
                "-e" => escapes = true,
                "-E" => escapes = false,
                "-ne" | "-en" => {
                    newline = false;
                    escapes = true;
                }
                _ => break,
            }
            rest = &rest[1..];
        }
        let mut s = rest.join(" ");
        if escapes {
            s = s
                .replace("\\n", "\n")
                .replace("\\t", "\t")
                .replace("\\\\", "\\");
        }
        if newline {
            s.push('\n');
        }
        out(s)
    }

    fn props(&self) -> Vec<(String, String)> {
        let id = &self.identity;
        let release = id.android_version.clone();
        let sdk = sdk_for(&release).to_string();
        let booted = if self.boot_polls_left > 0 { "" } else { "1" };
        let mut props = vec![
            ("dev.bootcomplete", booted.to_string()),
            ("persist.sys.timezone", "UTC".into()),
            ("ro.adb.secure", "1".into()),
            ("ro.boot.serialno", id.serial.clone()),
            ("ro.build.characteristics", "default".into()),
            (
                "ro.build.fingerprint",
                format!(
                    "{}/{}/{}:{release}/TQ3A.230805.001/10316531:user/release-keys",
                    self.config.manufacturer.to_lowercase(),
                    id.product,
                    id.device
                ),
            ),
            ("ro.build.id", "TQ3A.230805.001".into()),
            ("ro.build.tags", "release-keys".into()),
            ("ro.build.type", "user".into()),
            ("ro.build.version.release", release),
            ("ro.build.version.sdk", sdk),
            ("ro.debuggable", "0".into()),
            ("ro.product.brand", self.config.manufacturer.to_lowercase()),
            ("ro.product.cpu.abi", "arm64-v8a".into()),
            ("ro.product.device", id.device.clone()),
            ("ro.product.manufacturer", self.config.manufacturer.clone()),
            ("ro.product.model", id.model.clone()),
            ("ro.product.name", id.product.clone()),
            ("ro.serialno", id.serial.clone()),
            ("ro.sf.lcd_density", "420".into()),
            ("sys.boot_completed", booted.to_string()),
        ];
        props.retain(|(_, v)| !v.is_empty());
        props.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn cmd_getprop(&mut self, args: &[&str]) -> ShellOutput {
        let props = self.props();
        match args {
            [] => {
                let mut s = String::new();
                for (k, v) in &props {
                    s.push_str(&format!("[{k}]: [{v}]\n"));
                }
                out(s)
            }
            [key, rest @ ..] => {
                if *key == "sys.boot_completed" || *key == "dev.bootcomplete" {
                    self.boot_polls_left = self.boot_polls_left.saturating_sub(1);
                }
                let value = props
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .or_else(|| rest.first().map(|d| (*d).to_string()))
                    .unwrap_or_default();
                out(format!("{value}\n"))
            }
        }
    }

    fn cmd_cat(&mut self, args: &[&str]) -> ShellOutput {
        let mut o = ShellOutput::default();
        for path in args {
            match self.fs.read(path) {
                Ok(bytes) => o.stdout.extend_from_slice(bytes),
                Err(e) => {
                    o.stderr
                        .extend_from_slice(format!("cat: {path}: {e}\n").as_bytes());
                    o.exit = 1;
                }
            }
        }
        o
    }

    fn cmd_rm(&mut self, args: &[&str]) -> ShellOutput {
        let (mut force, mut recursive) = (false, false);
        let mut paths = Vec::new();
        for a in args {
            if a.starts_with('-') && a.len() > 1 {
                for c in a.chars().skip(1) {
                    match c {
                        'f' => force = true,
                        'r' | 'R' => recursive = true,
                        'v' | 'i' => {}
                        other => return err(format!("rm: Unknown option '{other}'\n"), 1),
                    }
                }
            } else {
                paths.push(*a);
            }
        }
        if paths.is_empty() {
            return if force {
                status(0)
            } else {
                err("rm: Needs 1 argument\n", 1)
            };
        }
        let mut o = ShellOutput::default();
        for p in paths {
            match self.fs.remove(p, recursive) {
                Ok(()) => {}
                Err(FsError::NotFound) if force => {}
                Err(e) => {
                    let msg = if e == FsError::IsADirectory {
                        format!("rm: {p}: is a directory\n")
                    } else {
                        format!("rm: {p}: {e}\n")
                    };
                    o.stderr.extend_from_slice(msg.as_bytes());
                    o.exit = 1;
                }
            }
        }
        o
    }

    fn ls_line(&self, name: &str, st: crate::FileStat) -> String {
        let (y, mo, d, h, mi, _, _) = civil(st.mtime);
        let group = if st.mode & S_IFMT == S_IFDIR {
            "root"
        } else {
            "sdcard_rw"
        };
        format!(
            "{} {} root {group} {:>8} {y:04}-{mo:02}-{d:02} {h:02}:{mi:02} {name}\n",
            mode_string(st.mode),
            if st.mode & S_IFMT == S_IFDIR { 2 } else { 1 },
            st.size
        )
    }

    fn cmd_ls(&mut self, args: &[&str]) -> ShellOutput {
        let (mut long, mut all) = (false, false);
        let mut paths = Vec::new();
        for a in args {
            if a.starts_with('-') && a.len() > 1 {
                for c in a.chars().skip(1) {
                    match c {
                        'l' => long = true,
                        'a' | 'A' => all = true,
                        '1' | 'h' | 'n' | 'R' | 't' | 'r' | 'd' | 'Z' | 's' => {}
                        other => return err(format!("ls: Unknown option '{other}'\n"), 1),
                    }
                }
            } else {
                paths.push(*a);
            }
        }
        if paths.is_empty() {
            paths.push(".");
        }
        let many = paths.len() > 1;
        let mut o = ShellOutput::default();
        let mut first = true;
        for p in paths {
            let Some(st) = self.fs.stat(p) else {
                o.stderr
                    .extend_from_slice(format!("ls: {p}: No such file or directory\n").as_bytes());
                o.exit = 1;
                continue;
            };
            if st.mode & S_IFMT != S_IFDIR {
                let line = if long {
                    self.ls_line(p, st)
                } else {
                    format!("{p}\n")
                };
                o.stdout.extend_from_slice(line.as_bytes());
                continue;
            }
            let mut entries = self.fs.list(p).unwrap_or_default();
            if !all {
                entries.retain(|(n, _)| !n.starts_with('.'));
            }
            let mut s = String::new();
            if many {
                if !first {
                    s.push('\n');
                }
                s.push_str(&format!("{p}:\n"));
            }
            first = false;
            if long {
                let blocks: u64 = entries
                    .iter()
                    .map(|(_, st)| st.size.div_ceil(4096) * 4)
                    .sum();
                s.push_str(&format!("total {blocks}\n"));
            }
            for (name, st) in entries {
                if long {
                    s.push_str(&self.ls_line(&name, st));
                } else {
                    s.push_str(&name);
                    s.push('\n');
                }
            }
            o.stdout.extend_from_slice(s.as_bytes());
        }
        o
    }

    fn cmd_mkdir(&mut self, args: &[&str]) -> ShellOutput {
        let mut parents = false;
        let mut paths = Vec::new();
        let mut iter = args.iter();
        while let Some(a) = iter.next() {
            match *a {
                "-p" => parents = true,
                "-m" => {
                    iter.next();
                }
                a if a.starts_with('-') && a.len() > 1 => {
                    return err(format!("mkdir: Unknown option '{}'\n", &a[1..]), 1);
                }
                a => paths.push(a),
            }
        }
        if paths.is_empty() {
            return err("mkdir: Needs 1 argument\n", 1);
        }
        let clock = self.config.clock;
        let mut o = ShellOutput::default();
        for p in paths {
            let r = if parents {
                self.fs.mkdir_p(p, clock)
            } else {
                self.fs.mkdir(p, clock)
            };
            if let Err(e) = r {
                o.stderr
                    .extend_from_slice(format!("mkdir: '{p}': {e}\n").as_bytes());
                o.exit = 1;
            }
        }
        o
    }

    fn cmd_touch(&mut self, args: &[&str]) -> ShellOutput {
        let clock = self.config.clock;
        let mut o = ShellOutput::default();
        for p in args.iter().filter(|a| !a.starts_with('-')) {
            let r = match self.fs.read(p) {
                Ok(bytes) => {
                    let data = bytes.to_vec();
                    let mode = self.fs.stat(p).map_or(S_IFREG | 0o660, |s| s.mode);
                    let free = self.storage_free();
                    self.fs.write(p, data, mode, clock, free)
                }
                Err(FsError::NotFound) => {
                    let free = self.storage_free();
                    let parent_ok = normalize(p)
                        .and_then(|n| {
                            n.rfind('/').map(|i| {
                                if i == 0 {
                                    "/".to_string()
                                } else {
                                    n[..i].to_string()
                                }
                            })
                        })
                        .is_some_and(|parent| self.fs.is_dir(&parent));
                    if parent_ok {
                        self.fs.write(p, Vec::new(), S_IFREG | 0o660, clock, free)
                    } else {
                        Err(FsError::NotFound)
                    }
                }
                Err(FsError::IsADirectory) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                o.stderr
                    .extend_from_slice(format!("touch: '{p}': {e}\n").as_bytes());
                o.exit = 1;
            }
        }
        o
    }

    fn cmd_df(&mut self, args: &[&str]) -> ShellOutput {
        let human = args.iter().any(|a| a.starts_with('-') && a.contains('h'));
        let paths: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let data_total = self.config.storage_total.max(self.config.storage_free);
        let data_free = self.storage_free();
        let mounts: [(&str, &str, u64, u64); 4] = [
            ("/dev/block/dm-3", "/", 3_145_728 * 1024, 0),
            ("tmpfs", "/dev", 2_097_152 * 1024, 2_096_000 * 1024),
            ("/dev/block/dm-45", "/data", data_total, data_free),
            ("/dev/fuse", "/storage/emulated", data_total, data_free),
        ];
        let fmt_size = |bytes: u64| -> String {
            if !human {
                return (bytes / 1024).to_string();
            }
            let units = ["", "K", "M", "G", "T"];
            let mut v = bytes as f64;
            let mut i = 0;
            while v >= 1024.0 && i < units.len() - 1 {
                v /= 1024.0;
                i += 1;
            }
            if v >= 10.0 || i == 0 {
                format!("{}{}", v.round() as u64, units[i])
            } else {
                format!("{v:.1}{}", units[i])
            }
        };
        let header = if human { "Size" } else { "1K-blocks" };
        let mut s = format!(
            "{:<17} {:>10} {:>10} {:>10} Use% Mounted on\n",
            "Filesystem", header, "Used", "Available"
        );
        let mut line = |m: &(&str, &str, u64, u64)| {
            let used = m.2.saturating_sub(m.3);
            let pct = if m.2 == 0 {
                0
            } else {
                (u128::from(used) * 100).div_ceil(u128::from(m.2))
            };
            s.push_str(&format!(
                "{:<17} {:>10} {:>10} {:>10} {:>3}% {}\n",
                m.0,
                fmt_size(m.2),
                fmt_size(used),
                fmt_size(m.3),
                pct,
                m.1
            ));
        };
        if paths.is_empty() {
            for m in &mounts {
                line(m);
            }
            return out(s);
        }
        let mut o = ShellOutput::default();
        for p in paths {
            let Some(n) = normalize(p).filter(|n| self.fs.exists(n)) else {
                o.stderr
                    .extend_from_slice(format!("df: {p}: No such file or directory\n").as_bytes());
                o.exit = 1;
                continue;
            };
            let m = if n == "/sdcard" || n.starts_with("/sdcard/") || n.starts_with("/storage") {
                &mounts[3]
            } else if n == "/data" || n.starts_with("/data/") {
                &mounts[2]
            } else if n == "/dev" || n.starts_with("/dev/") {
                &mounts[1]
            } else {
                &mounts[0]
            };
            line(m);
        }
        o.stdout = s.into_bytes();
        o
    }

    fn focus_component(&self) -> String {
        match self.screen() {
            ScreenKind::Launcher | ScreenKind::ScreenOff if !self.app_in_foreground() => {
                "com.google.android.apps.nexuslauncher/.NexusLauncherActivity".into()
            }
            ScreenKind::PlayStore => "com.android.vending/com.google.android.finsky.activities.MainActivity".into(),
            ScreenKind::PermissionDialog => {
                "com.google.android.permissioncontroller/com.android.permissioncontroller.permission.ui.GrantPermissionsActivity".into()
            }
            _ => format!("{APP_PACKAGE}/{APP_MAIN_ACTIVITY}"),
        }
    }

    fn cmd_dumpsys(&mut self, args: &[&str]) -> ShellOutput {
        let cfg = &self.config;
        match args.first().copied() {
            Some("battery") => {
                let temp = cfg.battery_temperature;
                let health = if temp >= 450 { 3 } else { 2 };
                let status = if cfg.charging {
                    if cfg.battery_level >= 100 { 5 } else { 2 }
                } else {
                    3
                };
                out(format!(
                    "Current Battery Service state:\n  AC powered: false\n  USB powered: {}\n  Wireless powered: false\n  \
                     Max charging current: 500000\n  Max charging voltage: 5000000\n  Charge counter: {}\n  status: {status}\n  \
                     health: {health}\n  present: true\n  level: {}\n  scale: 100\n  voltage: {}\n  temperature: {temp}\n  \
                     technology: Li-ion\n",
                    cfg.charging,
                    u32::from(cfg.battery_level.min(100)) * 40_000,
                    cfg.battery_level.min(100),
                    3600 + u32::from(cfg.battery_level.min(100)) * 6,
                ))
            }
            Some("package") => {
                let Some(pkg) = args.get(1).copied() else {
                    return out("Packages:\n");
                };
                if pkg == APP_PACKAGE && cfg.app_installed {
                    let v = self.app_version().to_string();
                    out(format!(
                        "Packages:\n  Package [{APP_PACKAGE}] (3b4f2a1):\n    userId=10245\n    pkg=Package{{c0ffee1 {APP_PACKAGE}}}\n    \
                         codePath=/data/app/~~Zk3xQ2==/{APP_PACKAGE}-Yb9wLq==\n    versionCode={} minSdk=21 targetSdk=33\n    \
                         versionName={v}\n    firstInstallTime=2026-01-10 09:12:44\n    lastUpdateTime=2026-11-01 08:00:00\n    \
                         enabled=0 installed=true\n",
                        version_code(&v)
                    ))
                } else if SYSTEM_PACKAGES.contains(&pkg) {
                    out(format!(
                        "Packages:\n  Package [{pkg}] (1a2b3c4):\n    userId=1000\n    versionCode=33 minSdk=33 targetSdk=33\n    \
                         versionName={}\n",
                        self.identity.android_version
                    ))
                } else {
                    out(format!("Unable to find package: {pkg}\n"))
                }
            }
            Some("power") => {
                let (w, st) = if self.screen_on {
                    ("Awake", "ON")
                } else {
                    ("Asleep", "OFF")
                };
                out(format!(
                    "POWER MANAGER (dumpsys power)\n\nPower Manager State:\n  mDirty=0x0\n  mWakefulness={w}\n  \
                     mWakefulnessChanging=false\n  mIsPowered={}\n  mPlugType={}\n  mBatteryLevel={}\n  \
                     mHoldingDisplaySuspendBlocker={}\n\nDisplay Power: state={st}\n",
                    cfg.charging,
                    if cfg.charging { 2 } else { 0 },
                    cfg.battery_level,
                    self.screen_on
                ))
            }
            Some("window") => {
                let focus = self.focus_component();
                out(format!(
                    "WINDOW MANAGER WINDOWS (dumpsys window windows)\n  mCurrentFocus=Window{{8f3a2c1 u0 {focus}}}\n  \
                     mFocusedApp=ActivityRecord{{4d2e9b7 u0 {focus} t42}}\n  mAwake={on}\n  mScreenOnEarly={on} mScreenOnFully={on}\n  \
                     mDisplayFrames w={SCREEN_WIDTH} h={SCREEN_HEIGHT}\n",
                    on = self.screen_on
                ))
            }
            Some("activity") => {
                let focus = self.focus_component();
                out(format!(
                    "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n  mResumedActivity: ActivityRecord{{4d2e9b7 u0 {focus} t42}}\n  \
                     ResumedActivity: ActivityRecord{{4d2e9b7 u0 {focus} t42}}\n"
                ))
            }
            Some(other) => out(format!("Can't find service: {other}\n")),
            None => out(
                "Currently running services:\n  activity\n  battery\n  package\n  power\n  window\n",
            ),
        }
    }

    fn cmd_settings(&mut self, args: &[&str]) -> ShellOutput {
        let ns_ok = |ns: &str| matches!(ns, "system" | "secure" | "global");
        match args {
            ["get", ns, key] if ns_ok(ns) => {
                let v = self
                    .settings
                    .get(&format!("{ns}/{key}"))
                    .cloned()
                    .unwrap_or_else(|| "null".into());
                out(format!("{v}\n"))
            }
            ["put", ns, key, value, ..] if ns_ok(ns) => {
                self.settings
                    .insert(format!("{ns}/{key}"), (*value).to_string());
                status(0)
            }
            ["delete", ns, key] if ns_ok(ns) => {
                let n = usize::from(self.settings.remove(&format!("{ns}/{key}")).is_some());
                out(format!("Deleted {n} rows\n"))
            }
            ["list", ns] if ns_ok(ns) => {
                let prefix = format!("{ns}/");
                let s: String = self
                    .settings
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| format!("{k}={v}\n")))
                    .collect();
                out(s)
            }
            [_, ns, ..] if !ns_ok(ns) => err(format!("Invalid namespace '{ns}'\n"), 255),
            _ => err(
                "usage:  settings [--user <USER_ID> | current] get namespace key\n        settings [--user <USER_ID> | current] put namespace key value\n",
                255,
            ),
        }
    }

    fn installed_packages(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = SYSTEM_PACKAGES.to_vec();
        if self.config.app_installed {
            v.push(APP_PACKAGE);
        }
        v.sort_unstable();
        v
    }

    fn cmd_pm(&mut self, args: &[&str]) -> ShellOutput {
        match args {
            ["list", "packages", rest @ ..] => {
                let third_party = rest.contains(&"-3");
                let system_only = rest.contains(&"-s");
                let filter = rest
                    .iter()
                    .find(|a| !a.starts_with('-'))
                    .copied()
                    .unwrap_or("");
                let s: String = self
                    .installed_packages()
                    .into_iter()
                    .filter(|p| !third_party || *p == APP_PACKAGE)
                    .filter(|p| !system_only || *p != APP_PACKAGE)
                    .filter(|p| p.contains(filter))
                    .map(|p| format!("package:{p}\n"))
                    .collect();
                out(s)
            }
            ["path", pkg] => {
                if *pkg == APP_PACKAGE && self.config.app_installed {
                    out(format!(
                        "package:/data/app/~~Zk3xQ2==/{APP_PACKAGE}-Yb9wLq==/base.apk\n"
                    ))
                } else if SYSTEM_PACKAGES.contains(pkg) {
                    out(format!("package:/system/priv-app/{pkg}/{pkg}.apk\n"))
                } else {
                    status(1)
                }
            }
            ["grant" | "revoke", pkg, perm] => {
                if *pkg != APP_PACKAGE || !self.config.app_installed {
                    return err(
                        format!(
                            "Exception occurred while executing 'grant':\njava.lang.IllegalArgumentException: Unknown package: {pkg}\n"
                        ),
                        255,
                    );
                }
                if perm.contains("READ_MEDIA") || perm.contains("READ_EXTERNAL_STORAGE") {
                    self.config.media_permission = args[0] == "grant";
                }
                status(0)
            }
            ["clear", pkg] => {
                if *pkg == APP_PACKAGE && self.config.app_installed {
                    self.force_stop_app();
                    out("Success\n")
                } else {
                    out("Failed\n")
                }
            }
            [cmd, ..] => err(format!("Unknown command: {cmd}\n"), 255),
            [] => err("usage: pm [list|path|grant|revoke|clear] ...\n", 255),
        }
    }

    fn cmd_am(&mut self, args: &[&str]) -> ShellOutput {
        match args.first().copied() {
            Some("start" | "start-activity") => {
                let mut component = None;
                let mut stop_first = false;
                let mut wait = false;
                let mut iter = args[1..].iter();
                while let Some(a) = iter.next() {
                    match *a {
                        "-n" => component = iter.next().copied(),
                        "-S" => stop_first = true,
                        "-W" => wait = true,
                        "-a" | "-c" | "-d" | "-t" | "-f" | "--user" | "-p" => {
                            iter.next();
                        }
                        "--es" | "--ei" | "--ez" => {
                            iter.next();
                            iter.next();
                        }
                        a if !a.starts_with('-') && a.contains('/') => component = Some(a),
                        _ => {}
                    }
                }
                let Some(component) = component else {
                    return err("Error: Activity not started, unable to resolve Intent\n", 1);
                };
                let (pkg, act) = component.split_once('/').unwrap_or((component, ""));
                let act_full = if let Some(rel) = act.strip_prefix('.') {
                    format!("{pkg}.{rel}")
                } else {
                    act.to_string()
                };
                let known = pkg == APP_PACKAGE
                    && self.config.app_installed
                    && (act_full == APP_LAUNCH_ACTIVITY || act_full == APP_MAIN_ACTIVITY);
                let mut s = format!("Starting: Intent {{ cmp={component} }}\n");
                if !known {
                    s.push_str("Error type 3\n");
                    return ShellOutput {
                        stdout: s.into_bytes(),
                        stderr: format!("Error: Activity class {{{component}}} does not exist.\n")
                            .into_bytes(),
                        exit: 1,
                    };
                }
                if stop_first {
                    self.force_stop_app();
                }
                let cold = !self.app.running;
                self.launch_app();
                if wait {
                    s.push_str(&format!(
                        "Status: ok\nLaunchState: {}\nActivity: {APP_PACKAGE}/{APP_MAIN_ACTIVITY}\nTotalTime: 812\nWaitTime: 815\nComplete\n",
                        if cold { "COLD" } else { "HOT" }
                    ));
                }
                out(s)
            }
            Some("force-stop" | "kill") => match args.get(1) {
                Some(pkg) => {
                    if *pkg == APP_PACKAGE {
                        self.force_stop_app();
                    }
                    status(0)
                }
                None => err("Error: no package specified\n", 255),
            },
            Some("broadcast") => {
                let mut action = None;
                let mut data = None;
                let mut iter = args[1..].iter();
                while let Some(a) = iter.next() {
                    match *a {
                        "-a" => action = iter.next().copied(),
                        "-d" => data = iter.next().copied(),
                        "-c" | "-n" | "-p" | "-f" | "--user" => {
                            iter.next();
                        }
                        "--es" | "--ei" | "--ez" => {
                            iter.next();
                            iter.next();
                        }
                        _ => {}
                    }
                }
                let mut desc = String::from("Broadcasting: Intent {");
                if let Some(a) = action {
                    desc.push_str(&format!(" act={a}"));
                }
                if let Some(d) = data {
                    desc.push_str(&format!(" dat={d}"));
                }
                desc.push_str(" flg=0x400000 }\nBroadcast completed: result=0\n");
                if action == Some("android.intent.action.MEDIA_SCANNER_SCAN_FILE")
                    && let Some(path) = data.and_then(|d| d.strip_prefix("file://"))
                {
                    let path = percent_decode(path);
                    self.media_scan(&path);
                }
                out(desc)
            }
            Some(other) => err(format!("Error: unknown command '{other}'\n"), 255),
            None => err("usage: am [start|force-stop|broadcast] ...\n", 255),
        }
    }

    fn cmd_monkey(&mut self, args: &[&str]) -> ShellOutput {
        let mut pkg = None;
        let mut iter = args.iter();
        while let Some(a) = iter.next() {
            if *a == "-p" {
                pkg = iter.next().copied();
            }
        }
        let mut s: String = args.iter().map(|a| format!("  bash arg: {a}\n")).collect();
        if pkg == Some(APP_PACKAGE) && self.config.app_installed {
            self.launch_app();
            s.push_str("Events injected: 1\n## Network stats: elapsed time=25ms (0ms mobile, 0ms wifi, 25ms not connected)\n");
            out(s)
        } else {
            ShellOutput {
                stdout: s.into_bytes(),
                stderr: b"** No activities found to run, monkey aborted.\n".to_vec(),
                exit: 252,
            }
        }
    }

    fn cmd_input(&mut self, args: &[&str]) -> ShellOutput {
        const SOURCES: &[&str] = &[
            "keyboard",
            "mouse",
            "touchpad",
            "touchscreen",
            "stylus",
            "trackball",
            "joystick",
            "touchnavigation",
            "gamepad",
            "dpad",
            "rotaryencoder",
        ];
        let mut args = args;
        while let Some(first) = args.first() {
            if SOURCES.contains(first) {
                args = &args[1..];
            } else if *first == "-d" {
                args = args.get(2..).unwrap_or(&[]);
            } else {
                break;
            }
        }
        let usage = |what: &str| {
            err(
                format!("Error: {what}\nUsage: input [<source>] <command> [<arg>...]\n"),
                1,
            )
        };
        match args {
            ["tap", x, y] => match (parse_coord(x), parse_coord(y)) {
                (Some(x), Some(y)) => {
                    self.tap(x, y);
                    status(0)
                }
                _ => usage("invalid arguments for command: tap"),
            },
            ["swipe" | "draganddrop", x1, y1, x2, y2, rest @ ..] => {
                let coords = [x1, y1, x2, y2].map(|c| parse_coord(c));
                let duration = match rest {
                    [] => Some(300),
                    [ms] => ms.parse::<u32>().ok(),
                    _ => None,
                };
                match (coords, duration) {
                    ([Some(a), Some(b), Some(c), Some(d)], Some(ms)) => {
                        self.swipe(a, b, c, d, ms);
                        status(0)
                    }
                    _ => usage("invalid arguments for command: swipe"),
                }
            }
            ["press"] => {
                self.tap(SCREEN_WIDTH / 2, SCREEN_HEIGHT / 2);
                status(0)
            }
            ["text", text, ..] => {
                self.type_text(&input_text_unescape(text));
                status(0)
            }
            ["keyevent", codes @ ..] => {
                let codes: Vec<&&str> = codes.iter().filter(|c| !c.starts_with("--")).collect();
                if codes.is_empty() {
                    return usage("missing keycode");
                }
                for c in codes {
                    self.key(keycode(c));
                }
                status(0)
            }
            [cmd, ..] => usage(&format!("Unknown command: {cmd}")),
            [] => usage("missing command"),
        }
    }

    fn cmd_uiautomator(&mut self, args: &[&str]) -> ShellOutput {
        let rest: Vec<&str> = match args.first() {
            Some(&"dump") => args[1..]
                .iter()
                .copied()
                .filter(|a| !a.starts_with("--"))
                .collect(),
            _ => {
                return err(
                    "Usage: uiautomator <subcommand> [options]\n\nAvailable subcommands:\n\nhelp: displays help message\n\n\
                     runtest: executes UI automation tests\n\ndump: creates an XML dump of current UI hierarchy\n\n\
                     events: prints out accessibility events until terminated\n",
                    1,
                );
            }
        };
        let path = rest.first().copied().unwrap_or(DEFAULT_DUMP_PATH);
        if self.config.failing_dumps > 0 && self.screen_on {
            self.config.failing_dumps -= 1;
            return err("ERROR: could not get idle state.\n", 1);
        }
        let Some(xml) = self.dump_window() else {
            return err(
                "ERROR: null root node returned by UiTestAutomationBridge.\n",
                1,
            );
        };
        let done = format!("UI hierchary dumped to: {path}\n");
        if matches!(path, "/dev/tty" | "/dev/stdout" | "/proc/self/fd/1") {
            let mut s = xml.into_bytes();
            s.extend_from_slice(done.as_bytes());
            return out(s);
        }
        let free = self.storage_free();
        let clock = self.config.clock;
        match self
            .fs
            .write(path, xml.into_bytes(), S_IFREG | 0o660, clock, free)
        {
            Ok(()) => out(done),
            Err(e) => err(format!("ERROR: could not write {path}: {e}\n"), 1),
        }
    }

    fn cmd_screencap(&mut self, args: &[&str]) -> ShellOutput {
        let file = args.iter().copied().find(|a| !a.starts_with('-'));
        let png = png::black_png(SCREEN_WIDTH as u32, SCREEN_HEIGHT as u32);
        self.actions.push(Action::Screenshot);
        match file {
            None => out(png),
            Some(path) => {
                let free = self.storage_free();
                let clock = self.config.clock;
                match self.fs.write(path, png, S_IFREG | 0o660, clock, free) {
                    Ok(()) => status(0),
                    Err(e) => err(format!("Error opening file: {path} ({e})\n"), 1),
                }
            }
        }
    }

    fn cmd_date(&mut self, args: &[&str]) -> ShellOutput {
        let clock = self.config.clock;
        if args.first() == Some(&"+%s") {
            return out(format!("{clock}\n"));
        }
        let (y, mo, d, h, mi, s, wd) = civil(clock);
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS
            .get(mo.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("Jan");
        let day = DAYS.get(wd as usize).copied().unwrap_or("Sun");
        out(format!(
            "{day} {month} {d:2} {h:02}:{mi:02}:{s:02} UTC {y}\n"
        ))
    }
}

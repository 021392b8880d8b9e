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
//! `force-stop`, `broadcast`), `content query` (the media store's videos), `monkey`, `input`
//! (`tap`, `swipe`, `draganddrop`, `text`,
//! `keyevent`, `press`), `uiautomator dump`, `screencap`, `wm` (`size`, `density`,
//! `dismiss-keyguard`), `reboot`,
//! `sh`, `id`, `whoami`, `date`, `sleep` (returns at once), `pidof`. Anything else:
//! `/system/bin/sh: X: inaccessible or not found`, exit 127.

mod device;
mod files;
mod parse;
mod system;

pub use device::keycode;

use crate::fs::{FsError, S_IFREG, normalize};
use crate::ui::APP_PACKAGE;
use crate::{Phone, ShellOutput};
use parse::{Connector, RedirectTarget};

/// How deep `sh -c` may nest.
const MAX_DEPTH: u32 = 8;
/// `uiautomator dump` writes here unless told otherwise.
pub const DEFAULT_DUMP_PATH: &str = "/sdcard/window_dump.xml";

pub(crate) fn out(stdout: impl Into<Vec<u8>>) -> ShellOutput {
    ShellOutput {
        stdout: stdout.into(),
        stderr: Vec::new(),
        exit: 0,
    }
}

pub(crate) fn err(stderr: impl Into<String>, exit: u8) -> ShellOutput {
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
            "content" => self.cmd_content(&args),
            "monkey" => self.cmd_monkey(&args),
            "input" => self.cmd_input(&args),
            "uiautomator" => self.cmd_uiautomator(&args),
            "screencap" => self.cmd_screencap(&args),
            "wm" => match args.first() {
                Some(&"size") => out(format!(
                    "Physical size: {}x{}\n",
                    self.config.screen.width, self.config.screen.height
                )),
                Some(&"density") => out(format!(
                    "Physical density: {}\n",
                    self.config.screen.density
                )),
                // No PIN on farm phones: the keyguard goes (while the screen is on).
                Some(&"dismiss-keyguard") => {
                    if self.locked && self.screen_on {
                        self.locked = false;
                        self.actions.push(crate::Action::Unlocked);
                    }
                    status(0)
                }
                _ => err("usage: wm [size|density|dismiss-keyguard]\n", 1),
            },
            "reboot" => {
                self.power_cycle();
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
}

//! File commands: `cat`, `rm`, `ls`, `mkdir`, `touch`, `df`.

use super::{civil, err, out, status};
use crate::fs::{FsError, S_IFDIR, S_IFMT, S_IFREG, normalize};
use crate::{FileStat, Phone, ShellOutput};

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

impl Phone {
    pub(super) fn cmd_cat(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_rm(&mut self, args: &[&str]) -> ShellOutput {
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

    fn ls_line(&self, name: &str, st: FileStat) -> String {
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

    pub(super) fn cmd_ls(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_mkdir(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_touch(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_df(&mut self, args: &[&str]) -> ShellOutput {
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
}

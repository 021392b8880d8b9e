//! System services: `getprop`, `dumpsys`, `settings`, `pm`, `am`, `monkey`, `date`.

use super::{civil, err, out, status};
use crate::faults::Cost;
use crate::ui::{APP_LAUNCH_ACTIVITY, APP_MAIN_ACTIVITY, APP_PACKAGE};
use crate::{Phone, ScreenKind, ShellOutput};

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

impl Phone {
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

    pub(super) fn cmd_getprop(&mut self, args: &[&str]) -> ShellOutput {
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

    fn focus_component(&self) -> String {
        match self.screen() {
            ScreenKind::Launcher | ScreenKind::ScreenOff if !self.app_in_foreground() => {
                "com.google.android.apps.nexuslauncher/.NexusLauncherActivity".into()
            }
            ScreenKind::PlayStore => "com.android.vending/com.google.android.finsky.activities.MainActivity".into(),
            ScreenKind::ImageViewer => "com.google.android.apps.photos/.pager.HostPhotoPagerActivity".into(),
            ScreenKind::PermissionDialog => {
                "com.google.android.permissioncontroller/com.android.permissioncontroller.permission.ui.GrantPermissionsActivity".into()
            }
            _ => format!("{APP_PACKAGE}/{APP_MAIN_ACTIVITY}"),
        }
    }

    pub(super) fn cmd_dumpsys(&mut self, args: &[&str]) -> ShellOutput {
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
                     mShowingLockscreen={locked}\n  mDisplayFrames w={w} h={h}\n",
                    on = self.screen_on,
                    locked = self.locked,
                    w = self.config.screen.width,
                    h = self.config.screen.height,
                ))
            }
            Some("activity") => {
                let focus = self.focus_component();
                out(format!(
                    "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n  mResumedActivity: ActivityRecord{{4d2e9b7 u0 {focus} t42}}\n  \
                     ResumedActivity: ActivityRecord{{4d2e9b7 u0 {focus} t42}}\n"
                ))
            }
            Some("input_method") => out(format!(
                "Current Input Method Manager state:\n  mCurMethodId=com.google.android.inputmethod.latin/\
                 com.android.inputmethod.latin.LatinIME\n  mInputShown={}\n",
                self.keyboard_shown()
            )),
            Some(other) => out(format!("Can't find service: {other}\n")),
            None => out(
                "Currently running services:\n  activity\n  battery\n  package\n  power\n  window\n",
            ),
        }
    }

    pub(super) fn cmd_settings(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_pm(&mut self, args: &[&str]) -> ShellOutput {
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

    pub(super) fn cmd_am(&mut self, args: &[&str]) -> ShellOutput {
        match args.first().copied() {
            Some("start" | "start-activity") => {
                let mut component = None;
                let mut stop_first = false;
                let mut wait = false;
                let (mut action, mut data) = (None, None);
                let mut iter = args[1..].iter();
                while let Some(a) = iter.next() {
                    match *a {
                        "-n" => component = iter.next().copied(),
                        "-S" => stop_first = true,
                        "-W" => wait = true,
                        "-a" => action = iter.next().copied(),
                        "-d" => data = iter.next().copied(),
                        "-c" | "-t" | "-f" | "--user" | "-p" => {
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
                if component.is_none()
                    && action == Some("android.intent.action.VIEW")
                    && let Some(path) = data.and_then(|d| d.strip_prefix("file://"))
                {
                    return self.view_image(path);
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
                self.charge(Cost::Launch);
                let before = self.before_change();
                if stop_first {
                    self.force_stop_app();
                }
                let cold = !self.app.running;
                self.launch_app();
                self.note_transition(before);
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

    pub(super) fn cmd_monkey(&mut self, args: &[&str]) -> ShellOutput {
        let mut pkg = None;
        let mut iter = args.iter();
        while let Some(a) = iter.next() {
            if *a == "-p" {
                pkg = iter.next().copied();
            }
        }
        let mut s: String = args.iter().map(|a| format!("  bash arg: {a}\n")).collect();
        if pkg == Some(APP_PACKAGE) && self.config.app_installed {
            self.charge(Cost::Launch);
            let before = self.before_change();
            self.launch_app();
            self.note_transition(before);
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

    pub(super) fn cmd_date(&mut self, args: &[&str]) -> ShellOutput {
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

//! The host checks: the journal directory, the flow packs, the phones.

use std::path::Path;

use tokio::time::Instant;

use super::Check;

/// Free space under which the journal check fails, and warns (events and evidence are
/// journaled while NATS is away).
pub const JOURNAL_FAIL_BYTES: u64 = 256 * 1024 * 1024;
pub const JOURNAL_WARN_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// This process's real uid, from `/proc/self/status`.
pub fn uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// The journal directory exists (or can be made), takes a synced write, and has free space.
pub fn journal(dir: &Path) -> Check {
    let fix_perm = format!(
        "give the agent's user the directory: the package's unit has StateDirectory=phonefarm-agent; by hand `install -d -o phonefarm -g phonefarm {}`",
        dir.display()
    );
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::fail(
            "journal",
            format!("cannot create {}: {e}", dir.display()),
            fix_perm,
        );
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"phonefarm doctor\n")?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        return Check::fail(
            "journal",
            format!("cannot write in {}: {e}", dir.display()),
            fix_perm,
        );
    }
    let free = match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return Check::warn(
                "journal",
                format!("{} is writable; free space unknown: {e}", dir.display()),
                "check the filesystem with `df`",
            );
        }
    };
    journal_space(dir, free)
}

pub fn journal_space(dir: &Path, free: u64) -> Check {
    let detail = format!("{} is writable, {} free", dir.display(), gib(free));
    let fix = "free space on that filesystem or move --state-dir to a larger one";
    if free < JOURNAL_FAIL_BYTES {
        Check::fail("journal", detail, fix)
    } else if free < JOURNAL_WARN_BYTES {
        Check::warn("journal", detail, fix)
    } else {
        Check::pass("journal", detail)
    }
}

/// The local flow packs load (the daemon's `--flow-packs`, else the checkout's or the
/// package's directory).
pub fn flow_packs(dir: Option<&Path>) -> Check {
    let given = dir.is_some();
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::cli::default_packs_dir);
    if !given && !dir.exists() {
        return Check::warn(
            "flow-packs",
            format!(
                "no local flow packs ({} is missing): only packs published over NATS run",
                dir.display()
            ),
            "install the phonefarm-agent package, or give --flow-packs DIR",
        );
    }
    match phonefarm_flows::PackSet::load_path(&dir) {
        Ok(set) if set.packs().is_empty() => Check::warn(
            "flow-packs",
            format!("no flow packs in {}", dir.display()),
            "install the phonefarm-agent package (/usr/share/phonefarm/flowpacks) or publish packs with `phonefarm-coordinator flowpack publish`",
        ),
        Ok(set) => {
            let names: Vec<String> = set
                .packs()
                .iter()
                .map(|p| format!("{} r{}", p.name(), p.revision()))
                .collect();
            Check::pass(
                "flow-packs",
                format!("{} load: {}", dir.display(), names.join(", ")),
            )
        }
        Err(e) => Check::fail(
            "flow-packs",
            format!("{}: {e}", dir.display()),
            "fix or remove the pack named above (`phonefarm-agent run` shows the same error)",
        ),
    }
}

/// One check per phone: authorized, battery and temperature within what a run needs.
pub async fn phones(cli: &crate::cli::Cli, app: &str) -> Vec<Check> {
    let limits = phonefarm_flows::FlowOptions::default();
    let found = match crate::cli::doctor_phones(cli).await {
        Ok(f) => f,
        Err(e) => {
            return vec![Check::fail(
                "phones",
                format!("{e:#}"),
                "check --state-dir (the host key lives there)",
            )];
        }
    };
    if found.is_empty() {
        return vec![Check::warn(
            "phones",
            "no phones found (USB or --tcp)",
            "plug phones in with USB debugging enabled",
        )];
    }
    let mut checks = Vec::new();
    for (label, phone) in found {
        let name = format!("phone {label}");
        let h = match phone {
            Ok(h) => h,
            Err((state, detail)) => {
                let fix = if state == "unauthorized" {
                    "unlock the phone and accept the USB debugging prompt (`phonefarm-agent key` shows the fingerprint)"
                } else {
                    "replug the phone; `phonefarm-agent devices` shows its state"
                };
                checks.push(Check::fail(name, format!("{state}: {detail}"), fix));
                continue;
            }
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(cli.timeout.max(1));
        let health = crate::fleet::probe::probe(&h, app, deadline).await;
        checks.push(phone_verdict(
            name,
            health.battery_level,
            health.temperature_decicelsius,
            limits.min_battery,
            limits.max_temperature,
        ));
    }
    checks
}

pub fn phone_verdict(
    name: String,
    battery: Option<u8>,
    temperature: Option<i16>,
    min_battery: u8,
    max_temperature: i32,
) -> Check {
    let b = battery.map_or("battery ?".into(), |b| format!("battery {b}%"));
    let t = temperature.map_or("temperature ?".into(), |t| {
        format!("{:.1} °C", f64::from(t) / 10.0)
    });
    let detail = format!("authorized, {b}, {t}");
    if let Some(level) = battery
        && level < min_battery
    {
        return Check::fail(
            name,
            format!("{detail}: below the {min_battery}% a run needs"),
            "charge it: check its cable and the hub's power supply",
        );
    }
    if let Some(t) = temperature
        && i32::from(t) > max_temperature
    {
        return Check::fail(
            name,
            format!(
                "{detail}: above the {:.1} °C a run allows",
                f64::from(max_temperature) / 10.0
            ),
            "let it cool: airflow in the rack, take it off the charger for a while",
        );
    }
    if battery.is_none() || temperature.is_none() {
        return Check::warn(
            name,
            format!("{detail}: dumpsys battery did not say"),
            "check the phone by hand",
        );
    }
    Check::pass(name, detail)
}

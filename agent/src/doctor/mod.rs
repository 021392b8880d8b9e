//! `phonefarm-agent doctor`: is this host ready to be a rack host? Each check answers PASS, WARN
//! or FAIL with the fix in one line; `--json` prints them for tooling; the exit status is 1 when
//! any check fails.
//!
//! Checks: libusb; the udev rule and the phones' device nodes; another adb server (port 5037,
//! interfaces claimed through usbfs); USB topology (phones per host controller, hub depth,
//! `usbfs_memory_mb`); NATS (connect with the credentials, a publish on the agent's own subject
//! stored, one on another agent's refused) and the clock against the NATS server; the journal
//! directory; the flow packs; each phone (authorized, battery, temperature).
//!
//! What needs hardware reads sysfs and devfs under `--sysfs-root` and `--dev-root` (hidden
//! flags), so tests point the checks at a fake tree.

pub mod host;
pub mod nats;
pub mod usb;

use std::path::PathBuf;

use serde::Serialize;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable name, e.g. `udev-rule`, `nats-publish`, `phone SIM0001`.
    pub check: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when it passed).
    pub fix: String,
}

impl Check {
    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// The flags of `doctor` besides the daemon's own (which it checks as the daemon would use
/// them).
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub run: crate::daemon::RunArgs,
    /// Print the checks as a JSON array of {check, status, detail, fix}.
    #[arg(long)]
    pub json: bool,
    /// Phones one USB host controller may carry: above it the check fails (it warns from
    /// 5 below).
    #[arg(long, env = "PHONEFARM_USB_BUDGET", default_value_t = 30)]
    pub usb_budget: usize,
    /// Where sysfs is (tests).
    #[arg(
        long,
        env = "PHONEFARM_SYSFS_ROOT",
        default_value = "/sys",
        hide = true
    )]
    pub sysfs_root: PathBuf,
    /// Where devfs is (tests).
    #[arg(long, env = "PHONEFARM_DEV_ROOT", default_value = "/dev", hide = true)]
    pub dev_root: PathBuf,
    /// Where udev rules are looked for (tests), comma-separated.
    #[arg(
        long,
        env = "PHONEFARM_UDEV_RULES_DIRS",
        value_delimiter = ',',
        default_value = "/etc/udev/rules.d,/run/udev/rules.d,/usr/lib/udev/rules.d,/lib/udev/rules.d",
        hide = true
    )]
    pub udev_rules_dirs: Vec<PathBuf>,
    /// The adb server's port (tests).
    #[arg(long, env = "PHONEFARM_ADB_PORT", default_value_t = 5037, hide = true)]
    pub adb_port: u16,
}

/// The report as text: one line per check, `STATUS  check  detail` and `fix: ...` under it.
pub fn render_text(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:<width$}  {}\n",
            c.status.as_str(),
            c.check,
            c.detail
        ));
        if !c.fix.is_empty() {
            out.push_str(&format!("      {:<width$}  fix: {}\n", "", c.fix));
        }
    }
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "{} checks: {} failed, {} warned\n",
        checks.len(),
        fails,
        warns
    ));
    out
}

/// The exit status: 1 when a check failed.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.status == Status::Fail))
}

/// Runs every check.
pub async fn run_checks(cli: &crate::cli::Cli, args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match crate::cli::doctor_config(cli, args) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{e:#}"),
                "correct the option in /etc/phonefarm/agent.toml, the environment or the flags",
            ));
            return checks;
        }
    };
    let sys = usb::Sysfs::scan(&args.sysfs_root);
    let want_usb = config.usb;
    if want_usb {
        checks.push(usb::libusb());
        checks.push(usb::udev_rule(&args.udev_rules_dirs));
        checks.push(usb::device_access(&sys, &args.dev_root, host::uid()));
        checks.push(usb::adb_server(args.adb_port).await);
        checks.push(usb::claimed(&sys));
        checks.push(usb::controllers(&sys, args.usb_budget));
        checks.push(usb::hub_depth(&sys));
        checks.push(usb::usbfs_memory(
            &args.sysfs_root,
            sys.adb_devices().count(),
        ));
    }
    checks.extend(nats::checks(&config).await);
    checks.push(host::journal(&config.state_dir.join("journal")));
    checks.push(host::flow_packs(config.flow_packs_dir.as_deref()));
    checks.extend(host::phones(cli, &config.app_package).await);
    checks
}

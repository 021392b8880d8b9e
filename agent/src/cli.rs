//! The `phonefarm-agent` command line for operators: list phones, run a shell command, push and
//! pull files, run one capability on one phone, show the host key. `main.rs` only parses
//! arguments and calls [`run`]. USB phones are found through the [`UsbManager`] and named by
//! port path (`1-2.3`), phone id or serial; network phones by `host:port`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use phonefarm_flows::{PackSet, UiConfig};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adb::auth::{AdbKey, KeyRing};
use crate::phone::{ConnState, PhoneHandle, PhoneOptions, PushSource};
use crate::runner::device::PhoneDevice;
use crate::usb::rusb_io::{Discovery, RusbBackend};
use crate::usb::{ManagerConfig, UsbManager, UsbPhone, UsbState};

/// How USB phones are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsbDiscovery {
    /// Hotplug when libusb supports it and udevd runs, else polling.
    Auto,
    /// libusb hotplug (with a slow rescan as a safety net).
    Hotplug,
    /// Enumerate every `--usb-poll-ms` (works without udevd).
    Poll,
    /// Ignore USB.
    Off,
}

/// Phonefarm agent: talks ADB to phones itself (no adb server).
#[derive(Debug, Parser)]
#[command(name = "phonefarm-agent", version)]
pub struct Cli {
    /// A TOML file of options (keys: the long flags with `_` for `-`, e.g. `nats_url`); default
    /// /etc/phonefarm/agent.toml when present. Precedence: flag > environment > file > default.
    #[arg(long, env = "PHONEFARM_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory holding the host key (`adbkey`, `adbkey.pub`); created on first start.
    #[arg(long, env = "PHONEFARM_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// A network phone, emulator or simulator as host:port (repeatable).
    #[arg(
        long = "tcp",
        env = "PHONEFARM_TCP",
        value_delimiter = ',',
        global = true
    )]
    pub tcp: Vec<String>,
    /// Seconds each operation may take.
    #[arg(long, env = "PHONEFARM_TIMEOUT", default_value_t = 30, global = true)]
    pub timeout: u64,
    /// USB discovery: auto, hotplug, poll or off (for `daemon` too; `off` there is `--usb
    /// false`).
    #[arg(
        long,
        env = "PHONEFARM_USB_DISCOVERY",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub usb_discovery: UsbDiscovery,
    /// Enumeration period when polling USB, in milliseconds.
    #[arg(
        long,
        env = "PHONEFARM_USB_POLL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub usb_poll_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every phone: transport, address, serial, state, model, Android version.
    Devices,
    /// Run a shell command; the phone's exit status becomes ours.
    Shell {
        /// host:port of a network phone, a usb port path (e.g. 1-2.3), or a serial.
        phone: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Push a local file: `push LOCAL PHONE:/remote/path`.
    Push { local: PathBuf, target: String },
    /// Pull a file: `pull PHONE:/remote/path LOCAL`.
    Pull { source: String, local: PathBuf },
    /// Print the public key and the fingerprint the phone shows when asking to allow it.
    Key,
    /// Run the agent: NATS uplink, phones, runner, until SIGTERM or Ctrl-C.
    Daemon(crate::daemon::RunArgs),
    /// Check this host: USB, udev, adb, NATS credentials and clock, journal, flow packs,
    /// phones. Each check says PASS, WARN or FAIL with the fix; exit status 1 on any FAIL. Run
    /// it as the agent's user (`sudo -u phonefarm phonefarm-agent doctor`) with the agent
    /// stopped, or its phones show as claimed.
    Doctor(crate::doctor::DoctorArgs),
    /// Run one capability on one phone: milestones on stderr as they happen (one line each),
    /// the result JSON on stdout.
    ///
    /// Capabilities: keyword_warmup, fyp_warmup, maintenance, post_video (its `video_path` may
    /// be a URL or a file here). The flow pack is chosen by the app version installed on the
    /// phone; a phone low on battery or too hot is refused before anything is done on it. On
    /// failure it prints a one-line cause (`<reason> in step <step>: <message>`, with the screen
    /// and pack the evidence shows) and exits with status 1.
    Run {
        /// host:port of a network phone, a usb port path (e.g. 1-2.3), a phone id or a serial.
        phone: String,
        capability: String,
        /// The capability's inputs (the work order's `inputs`): inline JSON, `@FILE`, or the
        /// path of a `.json` file.
        #[arg(long, default_value = "{}")]
        inputs: String,
        /// Divide dwell (watch) times by N, for demos and tests.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Stop the run (force-stop the app, go home) after this many seconds.
        #[arg(long, default_value_t = 1800)]
        deadline_secs: u64,
        /// Flow packs: a directory of `*.toml` or one file. Default: `./flowpacks` if it
        /// exists, else `/usr/share/phonefarm/flowpacks`.
        #[arg(long, env = "PHONEFARM_PACKS")]
        packs: Option<PathBuf>,
        /// The app the flows drive.
        #[arg(
            long,
            env = "PHONEFARM_APP",
            default_value = "com.zhiliaoapp.musically"
        )]
        app: String,
        /// Seed for dwell times and like decisions.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// `./flowpacks` when present (a checkout), else where the package installs them.
pub fn default_packs_dir() -> PathBuf {
    let local = PathBuf::from("flowpacks");
    if local.is_dir() {
        local
    } else {
        PathBuf::from("/usr/share/phonefarm/flowpacks")
    }
}

fn default_state_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/phonefarm"))
        .unwrap_or_else(|| PathBuf::from("/var/lib/phonefarm"))
}

fn load_key(cli: &Cli) -> anyhow::Result<AdbKey> {
    let dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    AdbKey::load_or_generate(&dir).with_context(|| format!("key in {}", dir.display()))
}

/// Splits `PHONE:/remote` at the first `:/` (phone addresses contain a colon themselves).
pub fn split_remote(spec: &str) -> anyhow::Result<(&str, &str)> {
    if let Some(i) = spec.find(":/") {
        return Ok((&spec[..i], &spec[i + 1..]));
    }
    match spec.rsplit_once(':') {
        Some((p, r)) if !p.is_empty() && !r.is_empty() => Ok((p, r)),
        _ => bail!("expected PHONE:/remote/path, got {spec:?}"),
    }
}

struct Ctx {
    keys: KeyRing,
    timeout: Duration,
    tcp: Vec<String>,
    usb: UsbDiscovery,
    usb_poll: Duration,
    manager: OnceCell<Option<UsbManager>>,
}

impl Ctx {
    fn new(cli: &Cli, key: AdbKey) -> Self {
        Self {
            keys: KeyRing::new(vec![key]),
            timeout: Duration::from_secs(cli.timeout.max(1)),
            tcp: cli.tcp.clone(),
            usb: cli.usb_discovery,
            usb_poll: Duration::from_millis(cli.usb_poll_ms.max(10)),
            manager: OnceCell::new(),
        }
    }

    /// The USB manager after its first enumeration (`None`: no USB here, or `--usb off`).
    async fn usb(&self) -> Option<&UsbManager> {
        self.manager
            .get_or_init(|| async {
                let discovery = match self.usb {
                    UsbDiscovery::Off => return None,
                    UsbDiscovery::Auto => Discovery::Auto,
                    UsbDiscovery::Hotplug => Discovery::Hotplug,
                    UsbDiscovery::Poll => Discovery::Poll,
                };
                let backend = tokio::task::spawn_blocking(move || RusbBackend::new(discovery))
                    .await
                    .ok()
                    .flatten()?;
                let mut config = ManagerConfig::new(self.keys.clone());
                config.poll_interval = self.usb_poll;
                // A one-shot command waits for udev at most as long as for anything else.
                config.permission.give_up_after = self.timeout;
                let m = UsbManager::spawn(backend, config);
                m.rescan().await;
                Some(m)
            })
            .await
            .as_ref()
    }

    /// The USB phone named `spec` once it is in a resting state, if there is one.
    async fn usb_phone(&self, spec: &str) -> Option<UsbPhone> {
        let m = self.usb().await?;
        m.find(spec)?;
        let named = |p: &UsbPhone| {
            p.port_path == spec || p.phone_id == spec || p.serial.as_deref() == Some(spec)
        };
        // Times out into whatever state it is in: the caller reports that.
        let _ = m
            .wait_for(self.deadline(), |ps| {
                ps.iter().any(|p| named(p) && p.state.is_settled())
            })
            .await;
        m.find(spec)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    async fn connect(&self, addr: &str) -> anyhow::Result<PhoneHandle> {
        let h = tokio::time::timeout(
            self.timeout,
            PhoneHandle::connect_tcp(addr, PhoneOptions::new(self.keys.clone())),
        )
        .await
        .with_context(|| format!("connecting to {addr} timed out"))??;
        Ok(h)
    }

    /// [`Ctx::phone`] as a device for flows: a network phone is dialled again when it goes away
    /// mid-run (reboot, adb offline).
    async fn phone_device(&self, spec: &str) -> anyhow::Result<PhoneDevice> {
        let h = self.phone(spec).await?;
        let addr = if self.tcp.iter().any(|a| a == spec) || spec.contains(':') {
            Some(spec.to_string())
        } else {
            self.tcp.iter().find(|a| **a == h.label()).cloned()
        };
        Ok(match addr {
            Some(addr) => PhoneDevice::tcp(h, &addr, PhoneOptions::new(self.keys.clone())),
            None => PhoneDevice::new(h),
        })
    }

    /// Finds a phone by address, by port path, phone id or serial on USB, or by serial among
    /// the --tcp phones.
    async fn phone(&self, spec: &str) -> anyhow::Result<PhoneHandle> {
        if self.tcp.iter().any(|a| a == spec) || spec.contains(':') {
            let h = self.connect(spec).await?;
            h.wait_online(self.deadline())
                .await
                .with_context(|| spec.to_string())?;
            return Ok(h);
        }
        if let Some(p) = self.usb_phone(spec).await {
            let Some(h) = p.handle.clone() else {
                bail!(
                    "usb phone {spec} at {} is {}: {}",
                    p.port_path,
                    p.state,
                    p.detail.as_deref().unwrap_or("no connection")
                );
            };
            h.wait_online(self.deadline())
                .await
                .with_context(|| format!("usb phone {spec} at {}", p.port_path))?;
            return Ok(h);
        }
        for addr in &self.tcp {
            let Ok(h) = self.connect(addr).await else {
                continue;
            };
            if h.wait_online(self.deadline()).await.is_err() {
                continue;
            }
            if serial(&h, self.deadline()).await.as_deref() == Some(spec) {
                return Ok(h);
            }
        }
        bail!("no phone {spec:?} on usb or among --tcp {:?}", self.tcp)
    }
}

async fn getprop(h: &PhoneHandle, prop: &str, deadline: Instant) -> Option<String> {
    let out = h.shell(&format!("getprop {prop}"), deadline).await.ok()?;
    if out.exit.is_some_and(|e| e != 0) {
        return None;
    }
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty()).then_some(v)
}

async fn serial(h: &PhoneHandle, deadline: Instant) -> Option<String> {
    getprop(h, "ro.serialno", deadline).await
}

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// The daemon's configuration from its flags and the global ones (state dir, `--tcp`, USB
/// discovery and polling period).
fn daemon_config(
    args: crate::daemon::RunArgs,
    state_dir: &Option<PathBuf>,
    tcp: &[String],
    usb: UsbDiscovery,
    usb_poll_ms: u64,
) -> anyhow::Result<crate::daemon::DaemonConfig> {
    let state_dir = state_dir.clone().unwrap_or_else(default_state_dir);
    let mut config = args.into_config(state_dir, tcp.to_vec())?;
    config.usb_discovery = match usb {
        UsbDiscovery::Off => {
            config.usb = false;
            Discovery::Auto
        }
        UsbDiscovery::Auto => Discovery::Auto,
        UsbDiscovery::Hotplug => Discovery::Hotplug,
        UsbDiscovery::Poll => Discovery::Poll,
    };
    config.usb_poll = Duration::from_millis(usb_poll_ms.max(10));
    Ok(config)
}

/// The daemon configuration `doctor` checks: the daemon's flags and the global ones.
pub(crate) fn doctor_config(
    cli: &Cli,
    args: &crate::doctor::DoctorArgs,
) -> anyhow::Result<crate::daemon::DaemonConfig> {
    daemon_config(
        args.run.clone(),
        &cli.state_dir,
        &cli.tcp,
        cli.usb_discovery,
        cli.usb_poll_ms,
    )
}

/// A phone `doctor` found: its handle once online, else its state and why.
pub(crate) type FoundPhone = (String, Result<PhoneHandle, (String, String)>);

/// Every phone (`--tcp` and USB) for `doctor`, each online or with its state.
pub(crate) async fn doctor_phones(cli: &Cli) -> anyhow::Result<Vec<FoundPhone>> {
    let ctx = Ctx::new(cli, load_key(cli)?);
    let mut found = Vec::new();
    for addr in &ctx.tcp {
        let h = match ctx.connect(addr).await {
            Ok(h) => h,
            Err(e) => {
                found.push((addr.clone(), Err(("offline".into(), format!("{e:#}")))));
                continue;
            }
        };
        found.push((addr.clone(), online(&ctx, h).await));
    }
    if let Some(m) = ctx.usb().await {
        for p in m.settled(ctx.deadline()).await.iter() {
            let label = format!("{} at {}", p.phone_id, p.port_path);
            let phone = match (&p.handle, p.state) {
                (Some(h), UsbState::Online) => online(&ctx, h.clone()).await,
                _ => Err((
                    p.state.as_str().to_string(),
                    p.detail.clone().unwrap_or_else(|| "no connection".into()),
                )),
            };
            found.push((label, phone));
        }
    }
    Ok(found)
}

async fn online(ctx: &Ctx, h: PhoneHandle) -> Result<PhoneHandle, (String, String)> {
    match h.wait_online(ctx.deadline()).await {
        Ok(_) => Ok(h),
        Err(e) => {
            let state = match h.state() {
                ConnState::Unauthorized => "unauthorized",
                _ => "offline",
            };
            Err((state.into(), e.to_string()))
        }
    }
}

/// `doctor`: every check, printed; the exit status.
async fn doctor(cli: &Cli, args: &crate::doctor::DoctorArgs) -> anyhow::Result<i32> {
    let checks = crate::doctor::run_checks(cli, args).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", crate::doctor::render_text(&checks));
    }
    Ok(crate::doctor::exit_code(&checks))
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Doctor(args) = &cli.command {
        return doctor(&cli, args).await;
    }
    let key = load_key(&cli)?;
    if let Command::Key = cli.command {
        println!("{}", key.public_key_line());
        println!("fingerprint (MD5): {}", key.fingerprint());
        return Ok(0);
    }
    if let Command::Daemon(args) = cli.command {
        let config = daemon_config(
            args,
            &cli.state_dir,
            &cli.tcp,
            cli.usb_discovery,
            cli.usb_poll_ms,
        )?;
        crate::daemon::run(config, crate::daemon::shutdown_on_signals()).await?;
        return Ok(0);
    }
    let ctx = Ctx::new(&cli, key);
    match cli.command {
        Command::Key | Command::Daemon(_) | Command::Doctor(_) => Ok(0),
        Command::Run { .. } => {
            let result = run_one(&ctx, &cli.command).await?;
            println!("{result}");
            Ok(0)
        }
        Command::Devices => devices(&ctx).await,
        Command::Shell { phone, command } => {
            let h = ctx.phone(&phone).await?;
            let out = h
                .shell(&command.join(" "), ctx.deadline())
                .await
                .context("shell")?;
            use std::io::Write as _;
            let mut so = std::io::stdout().lock();
            so.write_all(&out.stdout)?;
            so.flush()?;
            let mut se = std::io::stderr().lock();
            se.write_all(&out.stderr)?;
            se.flush()?;
            // Legacy shells report the status through a marker line the agent appends; it is
            // missing only when the command ended the shell itself (`exit N`).
            if out.exit.is_none() {
                tracing::warn!("the phone reported no exit status; exiting 0");
            }
            Ok(out.exit.map_or(0, i32::from))
        }
        Command::Push { local, target } => {
            let (phone, remote) = split_remote(&target)?;
            let h = ctx.phone(phone).await?;
            let mode = file_mode(&local)?;
            let pb = progress_bar(&format!("push {}", local.display()));
            let p2 = pb.clone();
            h.push(
                PushSource::File(local.clone()),
                remote,
                mode,
                ctx.deadline(),
                &mut move |d, t| {
                    p2.set_length(t);
                    p2.set_position(d);
                },
            )
            .await
            .with_context(|| format!("push {} to {remote}", local.display()))?;
            pb.finish();
            Ok(0)
        }
        Command::Pull { source, local } => {
            let (phone, remote) = split_remote(&source)?;
            let h = ctx.phone(phone).await?;
            let pb = progress_bar(&format!("pull {remote}"));
            let p2 = pb.clone();
            h.pull_to_file(remote, &local, ctx.deadline(), &mut move |d, t| {
                p2.set_length(t);
                p2.set_position(d);
            })
            .await
            .with_context(|| format!("pull {remote} to {}", local.display()))?;
            pb.finish();
            Ok(0)
        }
    }
}

/// `run`: one capability on one phone; the result JSON, or an error with a one-line cause.
pub async fn run_one_for(cli: &Cli) -> anyhow::Result<serde_json::Value> {
    let ctx = Ctx::new(cli, load_key(cli)?);
    run_one(&ctx, &cli.command).await
}

async fn run_one(ctx: &Ctx, command: &Command) -> anyhow::Result<serde_json::Value> {
    use crate::runner::local::{LocalOptions, StderrSink, parse_inputs, run_local};
    let Command::Run {
        phone,
        capability,
        inputs,
        speed,
        deadline_secs,
        packs,
        app,
        seed,
    } = command
    else {
        bail!("not a run command");
    };
    if !(speed.is_finite() && *speed > 0.0) {
        bail!("--speed must be a positive number, got {speed}");
    }
    let inputs = parse_inputs(inputs).map_err(anyhow::Error::msg)?;
    let packs = packs.clone().unwrap_or_else(default_packs_dir);
    let set = PackSet::load_path(&packs)
        .with_context(|| format!("flow packs from {}", packs.display()))?;
    let device = ctx.phone_device(phone).await?;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c2.cancel();
        }
    });
    let options = LocalOptions {
        app: app.clone(),
        seed: *seed,
        speed: *speed,
        deadline: Duration::from_secs((*deadline_secs).max(1)),
        ui: UiConfig::default(),
    };
    let r = run_local(
        device,
        &set,
        capability,
        inputs,
        &options,
        &StderrSink,
        &cancel,
    )
    .await;
    ctrl_c.abort();
    r.map_err(|e| anyhow::anyhow!(e.to_string()))
}

fn file_mode(p: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if !m.is_file() {
        bail!("{} is not a regular file", p.display());
    }
    Ok(m.permissions().mode() & 0o777)
}

/// One row of `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub transport: &'static str,
    /// host:port, or the usb port path.
    pub address: String,
    pub serial: String,
    /// The fleet-wide id (usb: serial, or serial@port when serials collide).
    pub phone_id: String,
    /// online, unauthorized, offline, connecting, waiting_permission, needs_attention.
    pub state: String,
    pub model: String,
    pub android: String,
    /// Why a phone is offline or needs attention.
    pub detail: String,
}

fn blank_row(transport: &'static str, address: &str) -> DeviceRow {
    DeviceRow {
        transport,
        address: address.to_string(),
        serial: "?".into(),
        phone_id: "?".into(),
        state: "offline".into(),
        model: "?".into(),
        android: "?".into(),
        detail: String::new(),
    }
}

async fn probe(ctx: &Ctx, addr: &str) -> DeviceRow {
    let row = blank_row("tcp", addr);
    let Ok(h) = ctx.connect(addr).await else {
        return row;
    };
    probe_handle(ctx, &h, row).await
}

async fn probe_handle(ctx: &Ctx, h: &PhoneHandle, mut row: DeviceRow) -> DeviceRow {
    let deadline = ctx.deadline();
    match h.wait_online(deadline).await {
        Ok(info) => {
            row.state = "online".into();
            row.detail.clear();
            if let Some(m) = info.banner.model {
                row.model = m;
            }
            if !info.banner.serial.is_empty() {
                row.serial = info.banner.serial;
            } else if row.serial == "?"
                && let Some(s) = serial(h, deadline).await
            {
                row.serial = s;
            }
            row.phone_id = row.serial.clone();
            if let Some(v) = getprop(h, "ro.build.version.release", deadline).await {
                row.android = v;
            }
        }
        Err(_) => {
            row.state = match h.state() {
                ConnState::Unauthorized => "unauthorized".into(),
                _ => "offline".into(),
            }
        }
    }
    row
}

async fn probe_usb(ctx: &Ctx, p: &UsbPhone) -> DeviceRow {
    let mut row = blank_row("usb", &p.port_path);
    if let Some(s) = &p.serial {
        row.serial = s.clone();
    }
    row.phone_id = p.phone_id.clone();
    row.state = p.state.as_str().into();
    row.detail = p.detail.clone().unwrap_or_default();
    if p.state == UsbState::Online
        && let Some(h) = &p.handle
    {
        row = probe_handle(ctx, h, row).await;
        row.phone_id = p.phone_id.clone();
    }
    row
}

/// Probes every phone (the `--tcp` ones and those on USB) for `devices`.
pub async fn device_rows(cli: &Cli) -> anyhow::Result<Vec<DeviceRow>> {
    let ctx = Ctx::new(cli, load_key(cli)?);
    Ok(rows(&ctx).await)
}

async fn rows(ctx: &Ctx) -> Vec<DeviceRow> {
    // Probe all phones at once: one slow phone must not hold up the list.
    let usb = match ctx.usb().await {
        Some(m) => m.settled(ctx.deadline()).await,
        None => Arc::new(Vec::new()),
    };
    let (mut rows, usb_rows) = futures::future::join(
        futures::future::join_all(ctx.tcp.iter().map(|a| probe(ctx, a))),
        futures::future::join_all(usb.iter().map(|p| probe_usb(ctx, p))),
    )
    .await;
    rows.extend(usb_rows);
    rows
}

async fn devices(ctx: &Ctx) -> anyhow::Result<i32> {
    let rows = rows(ctx).await;
    let rows_empty = rows.is_empty();
    println!(
        "{:<9} {:<22} {:<16} {:<20} {:<18} {:<20} {:<7} DETAIL",
        "TRANSPORT", "ADDRESS", "SERIAL", "PHONE_ID", "STATE", "MODEL", "ANDROID"
    );
    for r in rows {
        println!(
            "{:<9} {:<22} {:<16} {:<20} {:<18} {:<20} {:<7} {}",
            r.transport, r.address, r.serial, r.phone_id, r.state, r.model, r.android, r.detail
        );
    }
    if rows_empty {
        eprintln!("no phones found on usb; add network phones with --tcp host:port");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_phone_and_remote() {
        assert_eq!(
            split_remote("127.0.0.1:5555:/sdcard/a").unwrap(),
            ("127.0.0.1:5555", "/sdcard/a")
        );
        assert_eq!(split_remote("SIM0001:/x").unwrap(), ("SIM0001", "/x"));
        assert_eq!(split_remote("SIM0001:rel").unwrap(), ("SIM0001", "rel"));
        assert!(split_remote("nocolon").is_err());
    }

    #[test]
    fn parses_shell_args() {
        let c = Cli::try_parse_from([
            "pfa", "--tcp", "a:1", "--tcp", "b:2", "shell", "a:1", "--", "echo", "hi",
        ])
        .unwrap();
        assert_eq!(c.tcp, vec!["a:1", "b:2"]);
        let Command::Shell { phone, command } = c.command else {
            panic!()
        };
        assert_eq!(phone, "a:1");
        assert_eq!(command, vec!["echo", "hi"]);
    }

    fn daemon(args: &[&str]) -> crate::daemon::DaemonConfig {
        let base = ["pfa", "--state-dir", "/tmp/pf-test"];
        let tail = [
            "daemon",
            "--agent-id",
            "rack-1",
            "--nats-url",
            "nats://x:4222",
        ];
        let c = Cli::try_parse_from(base.iter().chain(args).chain(&tail)).unwrap();
        let Command::Daemon(run) = c.command else {
            panic!("daemon expected")
        };
        daemon_config(run, &c.state_dir, &c.tcp, c.usb_discovery, c.usb_poll_ms).unwrap()
    }

    #[test]
    fn the_daemon_takes_the_usb_discovery_flags() {
        let c = daemon(&[]);
        assert!(c.usb);
        assert_eq!(c.usb_discovery, Discovery::Auto);
        assert_eq!(c.usb_poll, Duration::from_secs(1));
        let c = daemon(&["--usb-discovery", "poll", "--usb-poll-ms", "250"]);
        assert!(c.usb);
        assert_eq!(c.usb_discovery, Discovery::Poll);
        assert_eq!(c.usb_poll, Duration::from_millis(250));
        let c = daemon(&["--usb-discovery", "hotplug"]);
        assert_eq!(c.usb_discovery, Discovery::Hotplug);
        assert!(!daemon(&["--usb-discovery", "off"]).usb, "off is no USB");
        assert_eq!(daemon(&["--tcp", "a:1"]).tcp, vec!["a:1"]);
    }
}

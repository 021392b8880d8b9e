//! The `phonefarm-agent` command line for operators: list phones, run a shell command, push and
//! pull files, show the host key. `main.rs` only parses arguments and calls [`run`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::time::Instant;

use crate::adb::auth::{AdbKey, KeyRing};
use crate::phone::{ConnState, PhoneHandle, PhoneOptions, PushSource};

/// Phonefarm agent: talks ADB to phones itself (no adb server).
#[derive(Debug, Parser)]
#[command(name = "phonefarm-agent", version)]
pub struct Cli {
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
}

impl Ctx {
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

    /// Finds a phone by address, or by serial among the --tcp phones.
    async fn phone(&self, spec: &str) -> anyhow::Result<PhoneHandle> {
        if self.tcp.iter().any(|a| a == spec) || spec.contains(':') {
            let h = self.connect(spec).await?;
            h.wait_online(self.deadline())
                .await
                .with_context(|| spec.to_string())?;
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

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let key = load_key(&cli)?;
    if let Command::Key = cli.command {
        println!("{}", key.public_key_line());
        println!("fingerprint (MD5): {}", key.fingerprint());
        return Ok(0);
    }
    let ctx = Ctx {
        keys: KeyRing::new(vec![key]),
        timeout: Duration::from_secs(cli.timeout.max(1)),
        tcp: cli.tcp.clone(),
    };
    match cli.command {
        Command::Key => Ok(0),
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
    pub address: String,
    pub serial: String,
    pub state: String,
    pub model: String,
    pub android: String,
}

fn blank_row(transport: &'static str, address: &str) -> DeviceRow {
    DeviceRow {
        transport,
        address: address.to_string(),
        serial: "?".into(),
        state: "offline".into(),
        model: "?".into(),
        android: "?".into(),
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

/// A USB phone opened for this command.
struct UsbPhone {
    port_path: String,
    serial: Option<String>,
    handle: Option<PhoneHandle>,
    error: Option<String>,
}

/// Opens every ADB interface on the bus (none when USB is unavailable here).
async fn usb_phones(ctx: &Ctx) -> Vec<UsbPhone> {
    let found = tokio::task::spawn_blocking(|| {
        let Some(c) = crate::usb::rusb_io::context() else {
            return Vec::new();
        };
        crate::usb::rusb_io::find_adb_interfaces(&c)
            .into_iter()
            .map(|cand| (cand.port_path.clone(), cand.open()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    found
        .into_iter()
        .map(|(port_path, opened)| match opened {
            Ok(bulk) => {
                let serial = bulk.serial.clone();
                let (sink, source) = crate::usb::spawn(bulk, crate::usb::UsbTiming::default());
                let opts = PhoneOptions::new(ctx.keys.clone());
                let handle = PhoneHandle::spawn(sink, source, &port_path, opts);
                UsbPhone {
                    port_path,
                    serial,
                    handle: Some(handle),
                    error: None,
                }
            }
            Err(e) => UsbPhone {
                port_path,
                serial: None,
                handle: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

async fn probe_usb(ctx: &Ctx, p: &UsbPhone) -> DeviceRow {
    let mut row = blank_row("usb", &p.port_path);
    if let Some(s) = &p.serial {
        row.serial = s.clone();
    }
    match &p.handle {
        Some(h) => probe_handle(ctx, h, row).await,
        None => {
            row.state = format!("offline ({})", p.error.as_deref().unwrap_or("cannot open"));
            row
        }
    }
}

/// Probes every phone (the `--tcp` ones and those on USB) for `devices`.
pub async fn device_rows(cli: &Cli) -> anyhow::Result<Vec<DeviceRow>> {
    let ctx = Ctx {
        keys: KeyRing::new(vec![load_key(cli)?]),
        timeout: Duration::from_secs(cli.timeout.max(1)),
        tcp: cli.tcp.clone(),
    };
    Ok(rows(&ctx).await)
}

async fn rows(ctx: &Ctx) -> Vec<DeviceRow> {
    // Probe all phones at once: one slow phone must not hold up the list.
    let usb = usb_phones(ctx).await;
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
        "{:<9} {:<22} {:<16} {:<13} {:<20} ANDROID",
        "TRANSPORT", "ADDRESS", "SERIAL", "STATE", "MODEL"
    );
    for r in rows {
        println!(
            "{:<9} {:<22} {:<16} {:<13} {:<20} {}",
            r.transport, r.address, r.serial, r.state, r.model, r.android
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
}

//! `phonefarm-phonesim --listen 127.0.0.1:PORT --phones N`: N simulated phones on consecutive
//! ports, serials SIM0001..., one line printed per listening address.
//!
//! `--profile NAME[,NAME…]` sets how the phones behave: `ideal` (answers at once, never fails on
//! its own) or `realistic` (real phones' latencies, idle-state errors and stale dumps); phone i
//! takes the i-th name, the last one repeating. `--time-scale F` serves every latency, timeout
//! and boot F times as long (0.1: ten times faster), keeping the profile's shape.
//!
//! `phonefarm-phonesim --functionfs DIR`: one simulated phone as a USB gadget function, on a
//! FunctionFS mounted at DIR; prints `SIM0001 functionfs ready at DIR` once the endpoints
//! exist, after which the gadget may be bound to a UDC.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use phonefarm_phonesim::functionfs::FunctionFs;
use phonefarm_phonesim::model::{Behaviour, ScreenSize};
use phonefarm_phonesim::{AuthMode, KeyOffer, SimConfig, serve};
use tokio_util::sync::CancellationToken;

/// Simulated Android phones speaking ADB over TCP.
#[derive(Debug, Parser)]
#[command(name = "phonefarm-phonesim", version)]
struct Args {
    /// Address of the first phone; phone i listens on PORT + i (port 0: any free ports).
    #[arg(long, env = "PHONESIM_LISTEN", default_value = "127.0.0.1:5555")]
    listen: SocketAddr,
    /// Number of phones.
    #[arg(long, env = "PHONESIM_PHONES", default_value_t = 1)]
    phones: u16,
    /// Serve one phone over USB instead of TCP, on the FunctionFS mounted at this directory.
    #[arg(long, env = "PHONESIM_FUNCTIONFS", conflicts_with = "phones")]
    functionfs: Option<std::path::PathBuf>,
    /// Authentication: `off`, `accept` (allow any offered key), `refuse`, `accept-after:MS`, or
    /// (with --functionfs) `accept-on-signal`: each SIGUSR1 allows the key offer then showing.
    #[arg(long, env = "PHONESIM_AUTH", default_value = "off")]
    auth: String,
    /// Model an old phone without shell protocol v2.
    #[arg(long, env = "PHONESIM_NO_SHELL_V2")]
    no_shell_v2: bool,
    /// Also advertise `delayed_ack`.
    #[arg(long, env = "PHONESIM_DELAYED_ACK")]
    delayed_ack: bool,
    /// Protocol version to advertise (e.g. 0x01000000 for checksummed messages).
    #[arg(long, env = "PHONESIM_VERSION", value_parser = parse_u32, default_value = "0x01000001")]
    protocol_version: u32,
    /// Max payload to advertise.
    #[arg(long, env = "PHONESIM_MAX_PAYLOAD", default_value_t = 1024 * 1024)]
    max_payload: u32,
    /// Fault: drop each connection after this many stream bytes.
    #[arg(long, env = "PHONESIM_DISCONNECT_AFTER_BYTES")]
    disconnect_after_bytes: Option<u64>,
    /// Fault: stop answering after this many stream bytes.
    #[arg(long, env = "PHONESIM_STALL_AFTER_BYTES")]
    stall_after_bytes: Option<u64>,
    /// Fault: send a malformed message after this many stream bytes.
    #[arg(long, env = "PHONESIM_GARBAGE_AFTER_BYTES")]
    garbage_after_bytes: Option<u64>,
    /// How the phones behave: `ideal` or `realistic`, one name for all or one per phone
    /// (comma-separated, the last repeating).
    #[arg(
        long,
        env = "PHONESIM_PROFILE",
        default_value = "ideal",
        value_delimiter = ','
    )]
    profile: Vec<String>,
    /// Real time per phone time (latencies, timeouts, boot): 1 is real scale.
    #[arg(long, env = "PHONESIM_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Display sizes, WxH (720x1280, 1080x2400, 1440x3200), one for all or one per phone.
    #[arg(
        long,
        env = "PHONESIM_SCREEN",
        default_value = "1080x2400",
        value_delimiter = ','
    )]
    screen: Vec<String>,
    /// Seed of the latency draws (phone i uses seed + i).
    #[arg(long, env = "PHONESIM_SEED", default_value_t = 0)]
    seed: u64,
}

/// The i-th of a comma list, the last one repeating.
fn nth(list: &[String], i: usize) -> &str {
    list.get(i)
        .or(list.last())
        .map(String::as_str)
        .unwrap_or_default()
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| e.to_string())
}

fn auth_mode(s: &str) -> anyhow::Result<AuthMode> {
    let on_offer = match s {
        "off" => return Ok(AuthMode::Off),
        // The FunctionFS transport holds the offer until the signal, then the session accepts.
        "accept" | "accept-on-signal" => KeyOffer::Accept,
        "refuse" => KeyOffer::Refuse,
        other => {
            let ms = other
                .strip_prefix("accept-after:")
                .and_then(|m| m.parse().ok())
                .with_context(|| format!("bad --auth {other:?}"))?;
            KeyOffer::AcceptAfter(Duration::from_millis(ms))
        }
    };
    Ok(AuthMode::Required {
        known_keys: Vec::new(),
        on_offer,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let auth = auth_mode(&args.auth)?;
    if args.auth == "accept-on-signal" && args.functionfs.is_none() {
        anyhow::bail!("--auth accept-on-signal needs --functionfs");
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!(
            "--time-scale must be a positive number, got {}",
            args.time_scale
        );
    }
    for name in &args.profile {
        if Behaviour::named(name).is_none() {
            anyhow::bail!(
                "unknown --profile {name:?}: expected one of {}",
                Behaviour::PROFILES.join(", ")
            );
        }
    }
    for size in &args.screen {
        if ScreenSize::parse(size).is_none() {
            anyhow::bail!("unknown --screen {size:?}: expected 720x1280, 1080x2400 or 1440x3200");
        }
    }
    let shutdown = CancellationToken::new();
    let phones = if args.functionfs.is_some() {
        1
    } else {
        args.phones
    };
    for i in 0..phones {
        let serial = format!("SIM{:04}", i + 1);
        let mut cfg = SimConfig::with_serial(&serial);
        cfg.auth = auth.clone();
        cfg.version = args.protocol_version;
        cfg.max_payload = args.max_payload;
        cfg.faults = phonefarm_phonesim::Faults {
            disconnect_after_bytes: args.disconnect_after_bytes,
            stall_after_bytes: args.stall_after_bytes,
            garbage_after_bytes: args.garbage_after_bytes,
        };
        if args.no_shell_v2 {
            cfg = cfg.without_feature("shell_v2");
        }
        if args.delayed_ack {
            cfg = cfg.with_feature("delayed_ack");
        }
        let i = usize::from(i);
        let profile = nth(&args.profile, i);
        cfg = cfg.with_profile(
            Behaviour::named(profile).unwrap_or_default(),
            args.time_scale,
        );
        cfg.model.screen = ScreenSize::parse(nth(&args.screen, i)).unwrap_or(ScreenSize::FHD_PLUS);
        cfg.model.fault_seed = args.seed.wrapping_add(i as u64);
        if let Some(dir) = &args.functionfs {
            let mut ffs = FunctionFs::start(dir)
                .with_context(|| format!("functionfs at {}", dir.display()))?;
            if args.auth == "accept-on-signal" {
                ffs.hold_key_offers(phonefarm_phonesim::functionfs::allow_on_sigusr1()?);
            }
            println!("{serial} functionfs ready at {}", dir.display());
            let phone = Arc::new(Mutex::new(cfg.phone()));
            tokio::spawn(ffs.serve(phone, Arc::new(cfg), shutdown.child_token()));
            continue;
        }
        // Port 0 means "any free port" for every phone.
        let port = match args.listen.port() {
            0 => 0,
            p => p
                .checked_add(u16::try_from(i).unwrap_or(u16::MAX))
                .context("port range overflows")?,
        };
        let addr = SocketAddr::new(args.listen.ip(), port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        println!("{serial} listening on {}", listener.local_addr()?);
        tracing::info!(%serial, profile, "phone profile");
        let phone = Arc::new(Mutex::new(cfg.phone()));
        tokio::spawn(serve(
            listener,
            phone,
            Arc::new(cfg),
            shutdown.child_token(),
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
    Ok(())
}

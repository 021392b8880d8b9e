//! The agent daemon: everything a rack host runs, wired together and stopped by one token.
//!
//! ```text
//! PF_WORK agent-<id> --> work handler --> runner (journal order, Accepted) --ack-->
//!                                            \--> run task per phone --> events --> journal --> publisher --> pf.evt.<id>.run
//!                                                       \--> failed run's evidence --> spool (disk) --> uploader --> object store pf_evidence_<id>
//! PF_CTL  agent-<id> --> control handler --> runner.cancel (soft / hard) ; phoneops (reboot, locate)
//! fleet (phones, probes) --> inventory reporter --> pf.evt.<id>.inventory ; presence --> KV pf_agents
//! pf.watch.<id> (core) --> screen watch --> screencap 1/s while watched --> pf.screen.<id>.<phone> (core)
//! KV pf_flows --> pack watcher (signed by a trusted key?) --> PackStore (next run) ; pack reports --> pf.evt.<id>.packs
//! ```
//!
//! Start it with [`run`]`(config, shutdown)`; cancel `shutdown` (e.g. on SIGTERM) to stop.
//! Runs in progress are dropped on shutdown; their orders stay unfinished in the journal and the
//! next process reports them `Finished{Failed, agent_restarted, retryable}`. Unpublished events
//! and evidence not yet uploaded stay journaled; the next process sends them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind};
use phonefarm_flows::{FlowOptions, PackSet, PackStore, UiConfig};
use phonefarm_shared::{Control, WorkOrder, is_subject_token, subjects};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adb::auth::{AdbKey, KeyRing};
use crate::fleet::{FleetConfig, FleetHandle};
use crate::phoneops::{OpsOptions, PhoneOps};
use crate::runner::{self, Admission, RunnerDeps, RunnerHandle, RunnerOptions};
use crate::uplink::consumer::{PullOptions, consume};
use crate::uplink::evidence::{EvidenceSpool, EvidenceStore, UploaderOptions, run_uploader};
use crate::uplink::journal::{Journal, JournalError};
use crate::uplink::op_reports::{OpReports, run_op_reports};
use crate::uplink::packs::{PackBook, PackTrust, run_pack_reports, run_pack_watcher};
use crate::uplink::presence::{PresenceInfo, run_inventory, run_presence};
use crate::uplink::publisher::{EventSink, PublisherOptions};
use crate::uplink::screen::{ScreenOptions, run_screen_watch};
use crate::uplink::{self, NatsAuth, NatsTls};
use crate::usb::rusb_io::Discovery;

/// Work orders in hand at once: pulled together and handled concurrently, so the runner admits
/// a burst together (one journal write for all of them, see `Journal::accept_orders`) instead
/// of one pull, journal write and publish ack per order. An order for a busy phone is still
/// handed back.
pub const WORK_IN_HAND: usize = 32;

/// Everything the daemon needs. Build it with [`DaemonConfig::new`] (production defaults) and
/// override fields; `phonefarm-agent run` maps its flags and environment onto it.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// This agent's id: a subject-safe token (`is_subject_token`), e.g. `rack-01`. It names
    /// the subjects (`pf.work.<id>`, `pf.evt.<id>.…`), the consumers (`agent-<id>`) and the
    /// presence key.
    pub agent_id: String,
    /// NATS server URL(s), comma-separated (`nats://host:4222`).
    pub nats_url: String,
    /// NATS credentials (user/password, nkey seed or `.creds` file).
    pub nats_auth: NatsAuth,
    /// TLS towards NATS (a CA, a client certificate).
    pub nats_tls: NatsTls,
    /// The publisher keys whose flow packs from KV `pf_flows` are applied (empty: none).
    pub pack_trust: PackTrust,
    /// Durable state: the ADB host key (`adbkey`, `adbkey.pub`) and the journal
    /// (`journal/orders`, `journal/events`, `journal/evidence`). Must survive restarts.
    pub state_dir: PathBuf,
    /// Network phones, emulators or simulators as `host:port`.
    pub tcp: Vec<String>,
    /// Open USB phones too (needs libusb and permissions; harmless without).
    pub usb: bool,
    /// How USB phones are found (hotplug where udevd runs, else enumeration), and the
    /// enumeration period when polling.
    pub usb_discovery: Discovery,
    pub usb_poll: Duration,
    /// Flow packs shipped on disk (a directory of `*.toml` or one file); KV `pf_flows` adds to
    /// and replaces them at run time. None: only packs from KV.
    pub flow_packs_dir: Option<PathBuf>,
    /// The app the flows drive.
    pub app_package: String,
    /// Presence is written this often (10 s).
    pub presence_interval: Duration,
    /// `Heartbeat` events this often while a run is going (10 s).
    pub heartbeat_interval: Duration,
    /// Phones are reconnected and probed this often (30 s).
    pub probe_interval: Duration,
    /// Deadline of one probe of one phone (10 s).
    pub probe_timeout: Duration,
    /// How long a work order waits for its `Accepted` to be stored before it is left unacked
    /// for redelivery (30 s).
    pub accept_timeout: Duration,
    /// An order for a busy phone is handed back (NAK) with this delay (5 s).
    pub busy_retry: Duration,
    /// One evidence upload attempt gives up after this long (30 s); spooled evidence is
    /// retried with the publisher's backoff until it is stored.
    pub evidence_timeout: Duration,
    /// UI timings of flows.
    pub ui: UiConfig,
    /// Flow knobs (screen timeout, pop-up limit…); the seed is set per run.
    pub flow: FlowOptions,
    /// Pull tuning of the work consumer (the control consumer takes its timings, 16 messages
    /// per pull, handled one at a time in order).
    pub pull: PullOptions,
    /// Event publisher timings.
    pub publisher: PublisherOptions,
    /// Networks asset downloads may reach besides public addresses (development and tests
    /// only; empty in production: the SSRF guard refuses loopback, private, link-local and
    /// other special ranges).
    pub asset_allow: Vec<ipnet::IpNet>,
}

impl DaemonConfig {
    /// Production defaults for an agent `agent_id` talking to `nats_url`, keeping state in
    /// `state_dir`, with no phones, no USB and no local flow packs.
    pub fn new(
        agent_id: impl Into<String>,
        nats_url: impl Into<String>,
        state_dir: PathBuf,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            nats_url: nats_url.into(),
            nats_auth: NatsAuth::None,
            nats_tls: NatsTls::default(),
            pack_trust: PackTrust::default(),
            state_dir,
            tcp: Vec::new(),
            usb: false,
            usb_discovery: Discovery::Auto,
            usb_poll: Duration::from_secs(1),
            flow_packs_dir: None,
            app_package: "com.zhiliaoapp.musically".into(),
            presence_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(10),
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            accept_timeout: Duration::from_secs(30),
            busy_retry: Duration::from_secs(5),
            evidence_timeout: Duration::from_secs(30),
            ui: UiConfig::default(),
            flow: FlowOptions::default(),
            pull: PullOptions {
                batch: WORK_IN_HAND,
                concurrency: WORK_IN_HAND,
                ..PullOptions::default()
            },
            publisher: PublisherOptions::default(),
            asset_allow: Vec::new(),
        }
    }
}

/// The flags and environment of `phonefarm-agent run` (flatten into the CLI's subcommand);
/// the CLI's global `--state-dir` and `--tcp` complete them in [`RunArgs::into_config`].
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// This agent's id: a subject-safe token (no '.', '*', '>' or spaces), e.g. rack-01.
    #[arg(long, env = "PHONEFARM_AGENT_ID")]
    pub agent_id: String,
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "PHONEFARM_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS user (with --nats-password); deploy/nats names agent users by agent id.
    #[arg(long, env = "PHONEFARM_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "PHONEFARM_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS nkey seed (instead of user/password).
    #[arg(long, env = "PHONEFARM_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// NATS .creds file (instead of user/password), from `phonefarm-coordinator agent enroll`.
    #[arg(long, env = "PHONEFARM_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM CA certificate(s) the NATS servers' certificates chain to (implies TLS).
    #[arg(long, env = "PHONEFARM_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate, for NATS servers that verify clients (with --nats-client-key).
    #[arg(long, env = "PHONEFARM_NATS_CLIENT_CERT", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, env = "PHONEFARM_NATS_CLIENT_KEY", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,
    /// Require TLS even without --nats-ca (servers with publicly trusted certificates).
    #[arg(long, env = "PHONEFARM_NATS_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub nats_tls: bool,
    /// The flow-pack publisher keys to trust, one `ed25519:<base64>` per line; packs from KV
    /// signed by any other key (or unsigned) are refused. Without it, none from KV apply.
    #[arg(long, env = "PHONEFARM_FLOWPACK_TRUST")]
    pub flowpack_trust: Option<PathBuf>,
    /// Open USB phones (true/false).
    #[arg(long, env = "PHONEFARM_USB", default_value_t = true, action = clap::ArgAction::Set)]
    pub usb: bool,
    /// Flow packs shipped on disk (a directory of *.toml or one file); KV pf_flows adds more.
    #[arg(long, env = "PHONEFARM_FLOW_PACKS")]
    pub flow_packs: Option<PathBuf>,
    /// Seconds between Heartbeat events of a run (the coordinator's lease needs one every 20 s).
    #[arg(long, env = "PHONEFARM_HEARTBEAT_SECS", default_value_t = 10)]
    pub heartbeat_secs: u64,
    /// Seconds between presence writes.
    #[arg(long, env = "PHONEFARM_PRESENCE_SECS", default_value_t = 10)]
    pub presence_secs: u64,
    /// Seconds between phone probe passes (reconnects, health).
    #[arg(long, env = "PHONEFARM_PROBE_SECS", default_value_t = 30)]
    pub probe_secs: u64,
    /// Networks asset downloads may reach although the SSRF guard refuses them (loopback,
    /// private...), comma-separated; development and tests only.
    #[arg(
        long = "asset-allow-cidr",
        env = "PHONEFARM_ASSET_ALLOW_CIDRS",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub asset_allow_cidrs: Vec<ipnet::IpNet>,
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    crate::assets::SsrfPolicy::parse_allow_list(s)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or_else(|| format!("not a CIDR or IP address: {s:?}"))
}

impl RunArgs {
    /// The daemon's configuration; invalid credentials or agent id fail here, before anything
    /// starts.
    pub fn into_config(self, state_dir: PathBuf, tcp: Vec<String>) -> anyhow::Result<DaemonConfig> {
        anyhow::ensure!(
            is_subject_token(&self.agent_id),
            "agent id {:?} is not a subject-safe token",
            self.agent_id
        );
        anyhow::ensure!(
            self.heartbeat_secs >= 1 && self.presence_secs >= 1 && self.probe_secs >= 1,
            "intervals must be at least one second"
        );
        let mut c = DaemonConfig::new(self.agent_id, self.nats_url, state_dir);
        c.nats_auth = NatsAuth::from_options(
            self.nats_user,
            self.nats_password,
            self.nats_nkey_seed,
            self.nats_creds,
        )?;
        c.nats_tls = NatsTls {
            ca: self.nats_ca,
            client_cert: self.nats_client_cert.zip(self.nats_client_key),
            required: self.nats_tls,
        };
        if let Some(path) = &self.flowpack_trust {
            c.pack_trust = PackTrust::load(path)?;
        }
        c.tcp = tcp;
        c.usb = self.usb;
        c.flow_packs_dir = self.flow_packs;
        c.heartbeat_interval = Duration::from_secs(self.heartbeat_secs);
        c.presence_interval = Duration::from_secs(self.presence_secs);
        c.probe_interval = Duration::from_secs(self.probe_secs);
        c.asset_allow = self.asset_allow_cidrs;
        Ok(c)
    }
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C): pass it to [`run`].
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        t.cancel();
    });
    token
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the agent until `shutdown` is cancelled. Fails only on bad configuration or an
/// unusable state directory, before anything is started; NATS being away is not an error
/// (the agent connects in the background and journals meanwhile).
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let agent_id = config.agent_id.clone();
    anyhow::ensure!(
        is_subject_token(&agent_id),
        "agent id {agent_id:?} is not a subject-safe token (no '.', '*', '>', spaces; 1..64 bytes)"
    );
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;
    let key = AdbKey::load_or_generate(&config.state_dir)
        .with_context(|| format!("adb key in {}", config.state_dir.display()))?;
    let local_packs = match &config.flow_packs_dir {
        Some(dir) => {
            PackSet::load_path(dir).with_context(|| format!("flow packs in {}", dir.display()))?
        }
        None => PackSet::default(),
    };
    let journal_dir = config.state_dir.join("journal");
    let journal = open_journal(&journal_dir).await?;
    let journal = Arc::new(journal);
    let spool = EvidenceSpool::open(&journal_dir)
        .with_context(|| format!("evidence spool in {}", journal_dir.display()))?;
    let started_at = uplink::now_ms();
    tracing::info!(%agent_id, nats = %phonefarm_shared::redact_url(&config.nats_url), phones = config.tcp.len(), usb = config.usb, "agent starting");

    let conn = uplink::connect(
        &config.nats_url,
        &agent_id,
        &config.nats_auth,
        &config.nats_tls,
    )
    .await?;
    let client = conn.client.clone();
    let js = uplink::jetstream(client.clone());
    let inner = shutdown.child_token();
    let mut tasks = JoinSet::new();

    let events = EventSink::spawn(
        journal.clone(),
        js.clone(),
        &agent_id,
        config.publisher.clone(),
        conn.connects.clone(),
        inner.clone(),
    );
    let orphans = runner::finish_orphans(&events)
        .await
        .context("finishing runs of the previous process")?;
    if orphans > 0 {
        tracing::warn!(%agent_id, orphans, "reported runs cut short by the last shutdown");
    }

    let fleet = FleetHandle::spawn(
        FleetConfig {
            tcp: config.tcp.clone(),
            usb: config.usb,
            usb_discovery: config.usb_discovery,
            usb_poll: config.usb_poll,
            keys: KeyRing::new(vec![key]),
            probe_interval: config.probe_interval,
            probe_timeout: config.probe_timeout,
            app_package: config.app_package.clone(),
        },
        inner.clone(),
    );

    let packs = Arc::new(PackStore::new(local_packs.clone()));
    let book = PackBook::new(&local_packs);
    let (reports, reported) = tokio::sync::watch::channel(book.report());
    tasks.spawn(run_pack_watcher(
        js.clone(),
        agent_id.clone(),
        book,
        config.pack_trust.clone(),
        packs.clone(),
        reports,
        inner.clone(),
    ));
    tasks.spawn(run_pack_reports(
        js.clone(),
        agent_id.clone(),
        started_at,
        reported,
        conn.connects.clone(),
        inner.clone(),
    ));

    tasks.spawn(run_uploader(
        spool.clone(),
        Arc::new(EvidenceStore::new(
            js.clone(),
            &agent_id,
            config.evidence_timeout,
        )),
        UploaderOptions {
            min_backoff: config.publisher.min_backoff,
            max_backoff: config.publisher.max_backoff,
        },
        inner.clone(),
    ));

    let runner = RunnerHandle::spawn(
        RunnerDeps {
            agent_id: agent_id.clone(),
            events: events.clone(),
            fleet: fleet.clone(),
            packs,
            evidence: Some(spool),
            options: RunnerOptions {
                heartbeat_interval: config.heartbeat_interval,
                app_package: config.app_package.clone(),
                ui: config.ui.clone(),
                flow: config.flow.clone(),
                abort_timeout: Duration::from_secs(30),
                asset_policy: crate::assets::SsrfPolicy::new(config.asset_allow.clone()),
            },
        },
        inner.clone(),
    );

    {
        let runner = runner.clone();
        let shutdown = inner.clone();
        let accept_timeout = config.accept_timeout;
        let busy_retry = config.busy_retry;
        let id = agent_id.clone();
        tasks.spawn(consume(
            js.clone(),
            subjects::WORK_STREAM,
            agent_id.clone(),
            config.pull.clone(),
            inner.clone(),
            move |msg| {
                let runner = runner.clone();
                let shutdown = shutdown.clone();
                let id = id.clone();
                async move {
                    on_work(&id, msg, &runner, accept_timeout, busy_retry, &shutdown).await;
                }
            },
        ));
    }
    let (op_reports, op_queue) = OpReports::new(&agent_id);
    tasks.spawn(run_op_reports(
        js.clone(),
        agent_id.clone(),
        op_queue,
        inner.clone(),
    ));
    let ops = PhoneOps {
        fleet: fleet.clone(),
        runner: runner.clone(),
        options: OpsOptions::default(),
        shutdown: inner.clone(),
        reports: op_reports,
    };
    {
        let runner = runner.clone();
        let id = agent_id.clone();
        tasks.spawn(consume(
            js.clone(),
            subjects::CTL_STREAM,
            agent_id.clone(),
            PullOptions {
                batch: 16,
                concurrency: 1,
                ..config.pull.clone()
            },
            inner.clone(),
            move |msg| {
                let runner = runner.clone();
                let ops = ops.clone();
                let id = id.clone();
                async move { on_control(&id, msg, &runner, &ops).await }
            },
        ));
    }
    tasks.spawn(run_screen_watch(
        client.clone(),
        agent_id.clone(),
        fleet.clone(),
        ScreenOptions::default(),
        inner.clone(),
    ));
    tasks.spawn(run_presence(
        js.clone(),
        PresenceInfo {
            agent_id: agent_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            host: host_name(),
            started_at_unix_ms: started_at,
        },
        config.presence_interval,
        fleet.statuses(),
        inner.clone(),
    ));
    tasks.spawn(run_inventory(
        js.clone(),
        agent_id.clone(),
        started_at,
        fleet.statuses(),
        conn.connects.clone(),
        inner.clone(),
    ));

    // systemd (Type=notify): started; then a keep-alive from a task on this runtime, so a
    // runtime that stops scheduling tasks stops the pings and WatchdogSec restarts the agent.
    if let Err(e) = phonefarm_startup::notify::ready() {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
    if let Some(every) = phonefarm_startup::notify::watchdog_interval() {
        let stop = inner.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let _ = phonefarm_startup::notify::watchdog();
                    }
                }
            }
        });
    }

    shutdown.cancelled().await;
    let _ = phonefarm_startup::notify::stopping();
    tracing::info!(%agent_id, "agent stopping");
    inner.cancel();
    let join_all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), join_all)
        .await
        .is_err()
    {
        tracing::warn!(%agent_id, "tasks did not stop in time");
    }
    // Runs still winding down can no longer write: the next process owns the journal.
    let _ = tokio::task::spawn_blocking(move || journal.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

/// How long a start waits for the previous agent process (or a stopped agent of this one,
/// still winding down) to let go of the journal.
const JOURNAL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the journal, waiting up to [`JOURNAL_LOCK_WAIT`] while another agent holds it.
async fn open_journal(dir: &std::path::Path) -> anyhow::Result<Journal> {
    let until = tokio::time::Instant::now() + JOURNAL_LOCK_WAIT;
    loop {
        let d = dir.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || Journal::open(&d))
            .await
            .context("opening the journal")?;
        match opened {
            Err(JournalError::Locked { .. }) if tokio::time::Instant::now() < until => {
                tracing::info!(dir = %dir.display(), "waiting for the previous agent to let go of the journal");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other.with_context(|| format!("journal in {}", dir.display())),
        }
    }
}

/// One work message: decode, admit, wait for `Accepted` to be stored, then ack.
async fn on_work(
    agent_id: &str,
    msg: jetstream::Message,
    runner: &RunnerHandle,
    accept_timeout: Duration,
    busy_retry: Duration,
    shutdown: &CancellationToken,
) {
    let order = match phonefarm_shared::decode::<WorkOrder>(&msg.payload) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(%agent_id, subject = %msg.subject, error = %e, "undecodable work order terminated");
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                tracing::warn!(%agent_id, error = %e, "cannot terminate a bad work order");
            }
            return;
        }
    };
    let stored = match runner.submit(order.clone()).await {
        Ok(Admission::Accepted(s)) => {
            tracing::info!(%agent_id, queue_item_id = %order.queue_item_id, attempt = order.attempt, phone_id = %order.phone_id, "work order accepted");
            s
        }
        Ok(Admission::Duplicate(s)) => {
            tracing::info!(%agent_id, queue_item_id = %order.queue_item_id, attempt = order.attempt, "work order redelivered; already accepted");
            s
        }
        Ok(Admission::Busy { running }) => {
            tracing::info!(%agent_id, queue_item_id = %order.queue_item_id, phone_id = %order.phone_id, %running, "phone busy; order handed back");
            let _ = msg.ack_with(AckKind::Nak(Some(busy_retry))).await;
            return;
        }
        Ok(Admission::Held { by }) => {
            tracing::info!(%agent_id, queue_item_id = %order.queue_item_id, phone_id = %order.phone_id, by, "phone held by an operator's action; order handed back");
            let _ = msg.ack_with(AckKind::Nak(Some(busy_retry))).await;
            return;
        }
        Err(e) => {
            tracing::error!(%agent_id, queue_item_id = %order.queue_item_id, error = %e, "cannot admit work order; handed back");
            let _ = msg.ack_with(AckKind::Nak(Some(busy_retry))).await;
            return;
        }
    };
    let waited = tokio::select! {
        () = shutdown.cancelled() => return,
        w = tokio::time::timeout(accept_timeout, stored.wait()) => w,
    };
    match waited {
        Ok(true) => {
            if let Err(e) = msg.ack().await {
                // Redelivery is harmless: the journal knows the order.
                tracing::warn!(%agent_id, queue_item_id = %order.queue_item_id, error = %e, "work ack failed");
            }
        }
        Ok(false) => {}
        Err(_) => {
            tracing::warn!(%agent_id, queue_item_id = %order.queue_item_id, "Accepted not stored in time; the order stays unacked for redelivery")
        }
    }
}

/// One control message: decode, route, ack (controls for unknown runs are acked and ignored;
/// a refused phone action is logged with its reason and acked).
async fn on_control(
    agent_id: &str,
    msg: jetstream::Message,
    runner: &RunnerHandle,
    ops: &PhoneOps,
) {
    let control = match phonefarm_shared::decode::<Control>(&msg.payload) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%agent_id, error = %e, "undecodable control terminated");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    match control {
        Control::Cancel {
            queue_item_id,
            attempt,
            mode,
        } => {
            let found = runner.cancel(queue_item_id, attempt, mode).await;
            if found {
                tracing::info!(%agent_id, %queue_item_id, attempt, ?mode, "cancel delivered");
            } else {
                tracing::info!(%agent_id, %queue_item_id, attempt, ?mode, "cancel for no running run ignored");
            }
        }
        Control::Reboot {
            phone_id,
            request_id,
        } => {
            let started = ops.reboot(&phone_id, request_id).await;
            log_action(agent_id, "reboot", &phone_id, request_id, started);
        }
        Control::Locate {
            phone_id,
            request_id,
            for_seconds,
        } => {
            let started = ops.locate(&phone_id, request_id, for_seconds).await;
            log_action(agent_id, "locate", &phone_id, request_id, started);
        }
    }
    if let Err(e) = msg.ack().await {
        tracing::warn!(%agent_id, error = %e, "control ack failed");
    }
}

fn log_action(
    agent_id: &str,
    what: &str,
    phone_id: &str,
    request_id: uuid::Uuid,
    started: Result<(), crate::phoneops::OpRefused>,
) {
    match started {
        Ok(()) => tracing::info!(%agent_id, %phone_id, %request_id, what, "phone action started"),
        Err(e) => {
            tracing::warn!(%agent_id, %phone_id, %request_id, what, reason = %e, "phone action refused")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn run_args_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--agent-id",
            "rack-01",
            "--nats-user",
            "rack-01",
            "--nats-password",
            "pw",
            "--usb",
            "false",
            "--heartbeat-secs",
            "5",
        ])
        .unwrap();
        let c = cli
            .run
            .into_config("/tmp/s".into(), vec!["127.0.0.1:5555".into()])
            .unwrap();
        assert_eq!(c.agent_id, "rack-01");
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert!(matches!(c.nats_auth, NatsAuth::UserPassword { .. }));
        assert!(!c.usb);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.tcp, ["127.0.0.1:5555"]);

        let bad = Cli::try_parse_from(["x", "--agent-id", "rack.01"]).unwrap();
        assert!(bad.run.into_config("/tmp/s".into(), vec![]).is_err());
        let half = Cli::try_parse_from(["x", "--agent-id", "r", "--nats-user", "r"]).unwrap();
        assert!(half.run.into_config("/tmp/s".into(), vec![]).is_err());

        // TLS and the flow-pack trust list.
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust");
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        std::fs::write(&trust, crate::uplink::packs::key_text(&key)).unwrap();
        let tls = Cli::try_parse_from([
            "x",
            "--agent-id",
            "rack-01",
            "--nats-creds",
            "/etc/phonefarm/agent.creds",
            "--nats-ca",
            "/etc/phonefarm/nats-ca.pem",
            "--nats-client-cert",
            "c.pem",
            "--nats-client-key",
            "k.pem",
            "--flowpack-trust",
            trust.to_str().unwrap(),
        ])
        .unwrap();
        let c = tls.run.into_config("/tmp/s".into(), vec![]).unwrap();
        assert!(matches!(c.nats_auth, NatsAuth::CredsFile(_)));
        assert_eq!(
            c.nats_tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/phonefarm/nats-ca.pem"))
        );
        assert!(c.nats_tls.client_cert.is_some());
        assert!(!c.pack_trust.is_empty());
        assert!(
            Cli::try_parse_from(["x", "--agent-id", "r", "--nats-client-cert", "c.pem"]).is_err(),
            "a client certificate needs its key"
        );
        std::fs::write(&trust, "not a key\n").unwrap();
        let bad = Cli::try_parse_from([
            "x",
            "--agent-id",
            "r",
            "--flowpack-trust",
            trust.to_str().unwrap(),
        ])
        .unwrap();
        assert!(bad.run.into_config("/tmp/s".into(), vec![]).is_err());
    }
}

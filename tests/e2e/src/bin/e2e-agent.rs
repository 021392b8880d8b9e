//! `e2e-agent`: the agent daemon as its own OS process for the end-to-end tests (which kill it
//! with SIGKILL mid-run). It is `phonefarm_agent::daemon::run` with the test timings as flags;
//! logs go to stderr (`RUST_LOG`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use phonefarm_agent::daemon::{self, DaemonConfig};
use phonefarm_agent::uplink::publisher::PublisherOptions;
use phonefarm_flows::UiConfig;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    agent_id: String,
    #[arg(long)]
    nats_url: String,
    #[arg(long)]
    state_dir: PathBuf,
    /// Simulated phones, `host:port` (repeat).
    #[arg(long)]
    tcp: Vec<String>,
    #[arg(long)]
    flow_packs: Option<PathBuf>,
    #[arg(long, default_value_t = 500)]
    presence_ms: u64,
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 500)]
    probe_ms: u64,
    #[arg(long, default_value_t = 300)]
    busy_retry_ms: u64,
    #[arg(long, default_value_t = 100)]
    ui_poll_ms: u64,
    /// Publish ack timeout and the longest retry backoff (the tests' lease is 6 s).
    #[arg(long, default_value_t = 1000)]
    publish_ack_ms: u64,
    #[arg(long, default_value_t = 1000)]
    publish_backoff_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let mut c = DaemonConfig::new(a.agent_id, a.nats_url, a.state_dir);
    c.tcp = a.tcp;
    c.flow_packs_dir = a.flow_packs;
    c.presence_interval = Duration::from_millis(a.presence_ms);
    c.heartbeat_interval = Duration::from_millis(a.heartbeat_ms);
    c.probe_interval = Duration::from_millis(a.probe_ms);
    c.busy_retry = Duration::from_millis(a.busy_retry_ms);
    c.ui = UiConfig {
        poll_interval: Duration::from_millis(a.ui_poll_ms),
        ..UiConfig::default()
    };
    c.publisher = PublisherOptions {
        ack_timeout: Duration::from_millis(a.publish_ack_ms),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(a.publish_backoff_ms),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = daemon::shutdown_on_signals();
        daemon::run(c, shutdown).await
    })
}

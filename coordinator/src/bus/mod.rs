//! The coordinator's side of NATS JetStream: dispatch to agents, ingest of their milestones,
//! leases, cancel orders and the fleet mirror.
//!
//! - [`bootstrap`]: checks the server version and creates (idempotently, at every start) the
//!   streams `PF_WORK`, `PF_CTL`, `PF_EVT`, the `coordinator` consumer on `PF_EVT`, the KV
//!   buckets (as `KV_<bucket>` streams: nats-server 2.9 rejects `create_key_value` from
//!   async-nats 0.51) and the per-agent consumers `agent-<id>` on `PF_WORK` and `PF_CTL`.
//! - [`dispatcher`]: a singleton loop (advisory lock) that releases SCHEDULED items, picks
//!   dispatchable items per routing (one run per phone, manual only on attended phones), claims
//!   them and writes their `WorkOrder`s to the outbox, all in one transaction.
//! - [`relay`]: publishes outbox rows to JetStream, pipelined, each with its deterministic
//!   `Nats-Msg-Id`, and marks them published. Rows are claimed with `FOR UPDATE SKIP LOCKED`;
//!   the work orders of this replica's dispatcher are handed over in memory at its commit
//!   ([`relay::Handoff`]) and published without a claim.
//! - [`ingester`]: the `coordinator` consumer on `PF_EVT`; one transaction per event applies it
//!   to the queue item, the process and its callbacks. Replays and stale attempts are no-ops.
//! - [`sweeper`]: a singleton loop that expires lapsed leases (RETRYABLE or DEAD_LETTER), sends
//!   the forced half of `soft_then_force` cancels and marks silent agents and their phones
//!   offline.
//! - [`fleet`]: mirrors presence (KV `pf_agents`) into Postgres, writing only on change; the
//!   latest heartbeats live in memory ([`fleet::Heartbeats`]), and the sweeper starts once they
//!   are replayed.
//! - [`screen`]: the console's live view: watches and the latest frame per watched phone, on
//!   core NATS, in memory only.
//!
//! **Invariant:** every message this module publishes to JetStream was first committed to the outbox in the
//! transaction of the state change that caused it.
//!
//! The bus has its own small Postgres pool (8 connections), so API load cannot starve dispatch
//! and ingestion. The dispatcher, the relay and each ingester lane keep one connection between
//! passes and events (`db::Held`, as the API's batch workers do): sqlx 0.9 pings every
//! connection it takes back from the pool, a round trip and a spawned task per checkout.

pub mod bootstrap;
pub mod dispatcher;
pub mod fleet;
pub mod ingester;
pub mod link;
pub mod relay;
pub mod screen;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bootstrap::BootstrapError;
pub use link::{LinkError, NatsCredentials, NatsLink, NatsTls};

/// Tuning of the bus loops. Defaults are production values; tests shorten them.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// NATS server URL(s), comma-separated; never with credentials in them.
    pub nats_url: String,
    /// The coordinator's NATS credentials and TLS settings.
    pub nats_credentials: NatsCredentials,
    pub nats_tls: NatsTls,
    /// How long an EXECUTING item's lease lasts; milestones and heartbeats renew it (at most
    /// once per quarter lease, so a run lapses after 3/4 of this without events at the
    /// earliest: keep the agents' heartbeat interval well below that).
    pub lease: Duration,
    /// How long a dispatched (CLAIMED) item may wait for the agent's `Accepted`.
    pub accept_timeout: Duration,
    /// An agent whose presence is older than this is offline, and so are its phones.
    pub offline_after: Duration,
    /// Backoff before attempt n+1 is `retry_base * 2^(n-1)`, capped at `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// The deadline written into work orders (from dispatch).
    pub run_deadline: Duration,
    /// How often the dispatcher and sweeper look even when nothing woke them.
    pub dispatch_interval: Duration,
    pub sweep_interval: Duration,
    /// Most outbox rows published in one pipelined batch.
    pub relay_batch: i64,
    /// Max age of `pf_agents` entries (the bucket expires silent agents).
    pub presence_max_age: Duration,
    /// How long (roughly: redeliveries are counted, see `ingester::order_delay`) a run event
    /// waits for its predecessor (same item and attempt, seq - 1) before it is applied without
    /// it. Longer than the event consumer's ack wait: a predecessor that was delivered to a
    /// pull request lost in a NATS outage comes back only after that.
    pub event_order_wait: Duration,
    /// Events applied at once by the ingester (each lane in order, a queue item's events on
    /// one lane). More lanes apply a burst sooner but take CPU and Postgres time from the
    /// dispatcher on a small host. Dispatch bench on 2 cores, 4 vs 2 lanes, three runs each:
    /// enqueue -> Accepted applied p50 71-88 vs 101-115 ms; enqueue -> Accepted acked p99
    /// 39-53 vs 40-42 ms.
    pub ingest_lanes: usize,
    /// Servers each stream and bucket is stored on (1 on a single server, 3 on a production
    /// cluster; at most the cluster's size).
    pub replicas: usize,
}

impl BusConfig {
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            nats_credentials: NatsCredentials::None,
            nats_tls: NatsTls::default(),
            lease: Duration::from_secs(60),
            accept_timeout: Duration::from_secs(60),
            offline_after: Duration::from_secs(30),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            run_deadline: Duration::from_secs(2 * 3600),
            dispatch_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(1),
            relay_batch: 512,
            presence_max_age: Duration::from_secs(120),
            event_order_wait: bootstrap::EVENT_ACK_WAIT + Duration::from_secs(10),
            ingest_lanes: 4,
            replicas: 1,
        }
    }

    /// The servers, credentials and TLS settings.
    pub fn link(&self) -> NatsLink {
        NatsLink {
            url: self.nats_url.clone(),
            credentials: self.nats_credentials.clone(),
            tls: self.nats_tls.clone(),
        }
    }

    /// Backoff before the attempt after `attempt` (1-based).
    pub fn backoff(&self, attempt: i32) -> Duration {
        crate::domain::retry::backoff(attempt, self.retry_base, self.retry_max)
    }
}

/// Errors of the bus loops (each loop logs and carries on; only start-up returns them).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Connect(#[from] LinkError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("database")]
    Db(#[from] sqlx::Error),
}

/// Wakes the loops after commits that gave them work.
#[derive(Debug, Default)]
pub struct Wakers {
    /// The outbox has new rows.
    pub relay: Notify,
    /// Items may have become dispatchable (new work, a phone freed, a phone appeared).
    pub dispatch: Notify,
}

/// What the HTTP layer holds of the bus: the connection (readiness) and the wakers.
#[derive(Clone)]
pub struct BusHandle {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub wakers: Arc<Wakers>,
    pub config: Arc<BusConfig>,
    /// Latest agent heartbeats seen by this replica.
    pub heartbeats: Arc<fleet::Heartbeats>,
    /// Work orders this replica's dispatcher committed, for this replica's relay.
    pub handoff: Arc<relay::Handoff>,
    /// The phones this replica's console viewers watch, and their latest frames.
    pub screens: screen::Screens,
}

impl BusHandle {
    /// Whether the NATS connection is up.
    pub fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }
}

/// Connects, checks the server, bootstraps JetStream and returns the handle. Loops are started
/// separately by [`spawn`].
pub async fn connect(config: BusConfig) -> Result<BusHandle, BusError> {
    let link = config.link();
    let opts = link
        .options()
        .await?
        .name("phonefarm-coordinator")
        .max_reconnects(None);
    let client = link.connect(opts).await?;
    tracing::info!(url = %link.display_url(), "NATS connection up");
    bootstrap::check_server_version(&client.server_info().version)?;
    let js = jetstream::new(client.clone());
    ensure_within(&js, &config, BOOTSTRAP_WINDOW).await?;
    Ok(BusHandle {
        screens: screen::Screens::new(client.clone()),
        client,
        js,
        wakers: Arc::new(Wakers::default()),
        config: Arc::new(config),
        heartbeats: Arc::new(fleet::Heartbeats::default()),
        handoff: Arc::new(relay::Handoff::default()),
    })
}

/// How long the start-up bootstrap keeps trying: a JetStream cluster answers nothing (requests
/// time out) or 503 while it elects its meta leader, as when every node starts at once.
const BOOTSTRAP_WINDOW: Duration = Duration::from_secs(60);

/// [`bootstrap::ensure`], tried again with backoff while it fails, for up to `window`; the
/// last error if it never succeeds (a real misconfiguration, e.g. more replicas than servers).
async fn ensure_within(
    js: &jetstream::Context,
    config: &BusConfig,
    window: Duration,
) -> Result<(), bootstrap::BootstrapError> {
    let until = tokio::time::Instant::now() + window;
    let mut delay = Duration::from_millis(500);
    loop {
        match bootstrap::ensure(js, config).await {
            Ok(()) => return Ok(()),
            Err(
                e @ (bootstrap::BootstrapError::Stream { .. }
                | bootstrap::BootstrapError::Consumer { .. }),
            ) if tokio::time::Instant::now() + delay < until => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), retry_in = ?delay, "jetstream not ready; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connections of the bus loops' own pool with `lanes` ingest lanes. Held for good once used:
/// the relay's, the dispatcher's, the LISTEN connection and one per lane. Taken for a moment:
/// the sweeper (its advisory-lock session and one more for each change it makes), the fleet
/// mirror, the flow-pack reports and the start-up re-enrollment, with one to spare. (A fixed 8
/// with 4 lanes left the sweeper one connection: the nemesis soak saw nearly every pass time
/// out waiting for its second, so leases lapsed late or never.)
pub fn loop_connections(lanes: usize) -> u32 {
    const HELD: usize = 3;
    const MOMENTARY: usize = 2 + 1 + 1 + 1 + 1;
    u32::try_from(HELD + lanes + MOMENTARY).unwrap_or(u32::MAX)
}

/// The bus loops get their own pool on the same database, so a burst of API requests queued
/// for the API's connections never delays a dispatch, a publish or an ingest (measured: with
/// one shared pool, 100 concurrent enqueues held the relay ~300 ms behind the dispatcher).
fn loop_pool(db: &PgPool, lanes: usize) -> PgPool {
    crate::db::pool_options()
        .max_connections(loop_connections(lanes))
        .connect_lazy_with((*db.connect_options()).clone())
}

/// Starts the relay, dispatcher, ingester, sweeper and fleet mirror until `shutdown`.
pub fn spawn(
    bus: &BusHandle,
    db: PgPool,
    callbacks: Arc<Notify>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let db = loop_pool(&db, bus.config.ingest_lanes.max(1));
    vec![
        tokio::spawn(relay::run(bus.clone(), db.clone(), shutdown.clone())),
        tokio::spawn(dispatcher::run(
            bus.clone(),
            db.clone(),
            Arc::clone(&callbacks),
            shutdown.clone(),
        )),
        tokio::spawn(listen(bus.clone(), db.clone(), shutdown.clone())),
        tokio::spawn(ingester::run(
            bus.clone(),
            db.clone(),
            Arc::clone(&callbacks),
            shutdown.clone(),
        )),
        tokio::spawn({
            let (bus, db, callbacks, shutdown) = (
                bus.clone(),
                db.clone(),
                Arc::clone(&callbacks),
                shutdown.clone(),
            );
            async move {
                // Judge silence only once the heartbeats are replayed (Postgres keeps no
                // per-heartbeat time), or after `offline_after` if the bucket cannot be read.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = bus.heartbeats.warmed(bus.config.offline_after) => {}
                }
                sweeper::run(bus, db, callbacks, shutdown).await
            }
        }),
        tokio::spawn(crate::flowpacks::run_reports(
            bus.clone(),
            db.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(fleet::run_presence(bus.clone(), db, shutdown)),
    ]
}

/// Wakes the dispatcher and relay when any replica writes work or outbox rows (Postgres
/// `NOTIFY` from triggers of migration 0003). Without it the loops still poll.
async fn listen(bus: BusHandle, db: PgPool, shutdown: CancellationToken) {
    loop {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&db).await?;
            l.listen_all(["pf_dispatch", "pf_outbox"]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => loop {
                let n = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = l.recv() => n,
                };
                match n {
                    Ok(n) if n.channel() == "pf_dispatch" => bus.wakers.dispatch.notify_one(),
                    Ok(_) => bus.wakers.relay.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "postgres listener dropped; reconnecting");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, "postgres listener unavailable"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Sleeps until `notify` fires, `every` passes, or shutdown; returns false on shutdown.
pub(crate) async fn idle(notify: &Notify, every: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = notify.notified() => true,
        _ = tokio::time::sleep(every) => true,
    }
}

/// `std::time::Duration` as a `time::Duration` for timestamp arithmetic.
pub(crate) fn td(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = BusConfig::new("nats://x");
        assert_eq!(c.backoff(1), Duration::from_secs(5));
        assert_eq!(c.backoff(2), Duration::from_secs(10));
        assert_eq!(c.backoff(3), Duration::from_secs(20));
        assert_eq!(c.backoff(30), Duration::from_secs(300));
        assert_eq!(c.backoff(0), Duration::from_secs(5));
    }
}

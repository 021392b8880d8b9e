//! Wiring: build the state from the configuration, start the background loops, serve.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use phonefarm_net::{GuardedClient, SsrfPolicy};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::bus::{self, BusHandle};
use crate::callbacks::{Deliverer, DelivererConfig};
use crate::console::session::Peer;
use crate::http::{self, AppState};

/// Everything `serve` needs besides the listener.
pub struct Settings {
    pub ingest_secret: Option<SecretString>,
    pub webhook_secret: Option<SecretString>,
    pub allow: Vec<ipnet::IpNet>,
    pub public_metrics: bool,
    /// `None` runs no callback deliverer in this process (benchmarks; or a replica that only
    /// serves the API while others deliver).
    pub deliverer: Option<DelivererConfig>,
}

/// Runs the API and the callback deliverer until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    db: PgPool,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_bus(listener, db, settings, None, shutdown).await
}

/// As [`run`], plus the NATS bus when `bus` is given (connected and bootstrapped by
/// [`bus::connect`]): runs the relay, dispatcher, ingester, sweeper and fleet mirror too.
/// `listener` is a plain TCP listener or [`crate::tls::TlsListener`] (HTTPS).
pub async fn run_with_bus<L>(
    listener: L,
    db: PgPool,
    settings: Settings,
    bus: Option<BusHandle>,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> Peer: Connected<IncomingStream<'a, L>>,
{
    let http_client = GuardedClient::builder(SsrfPolicy::new(settings.allow.clone()))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("phonefarm-coordinator/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let notify = Arc::new(Notify::new());
    let deliverer = settings.deliverer.map(|config| {
        let deliverer = Deliverer::new(
            db.clone(),
            http_client.clone(),
            settings.webhook_secret,
            Arc::clone(&notify),
        )
        .with_config(config);
        tokio::spawn(deliverer.run(shutdown.clone()))
    });
    let loops = match &bus {
        Some(handle) => bus::spawn(handle, db.clone(), Arc::clone(&notify), shutdown.clone()),
        None => Vec::new(),
    };
    let state = AppState::new(
        db,
        http_client,
        Auth::new(settings.ingest_secret),
        notify,
        settings.public_metrics,
    )
    .with_bus(bus);
    let stop = shutdown.clone();
    // With the peer's address and transport: the audit log records where actions came from.
    let app = http::router(state).into_make_service_with_connect_info::<Peer>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    shutdown.cancel();
    if let Some(d) = deliverer {
        let _ = d.await;
    }
    for l in loops {
        let _ = l.await;
    }
    served.context("serving HTTP")
}

//! The phone simulator: a device-side ADB peer (same protocol core as the agent, device role)
//! in front of `phonefarm-phonemodel`'s model of an Android phone. Tests and the local run
//! script use it in place of real phones; it is itself checked against Debian's real `adb`.
//!
//! [`spawn`] starts one simulated phone on a port-0 loopback listener for tests; [`serve`] runs
//! one on a listener the caller bound (the binary does that for `--phones N`).

pub mod functionfs;
pub mod peer;
pub mod real_adb;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phonefarm_agent::adb::banner::{
    FEATURE_CMD, FEATURE_FIXED_PUSH_MKDIR, FEATURE_SHELL_V2, FEATURE_STAT_V2,
};
use phonefarm_agent::adb::message::{MAX_PAYLOAD, VERSION_SKIP_CHECKSUM};
use phonefarm_phonemodel::{Behaviour, Identity, Phone, PhoneConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use phonefarm_phonemodel as model;

/// What the simulated user does when the host offers an unknown key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOffer {
    /// Taps "Allow" at once.
    Accept,
    /// Never allows: the host stays unauthorized.
    Refuse,
    /// Taps "Allow" after this long.
    AcceptAfter(Duration),
}

/// ADB authentication knob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No AUTH exchange (like `ro.adb.secure=0`).
    Off,
    /// AUTH required; `known_keys` are `adbkey.pub` lines already authorized.
    Required {
        known_keys: Vec<String>,
        on_offer: KeyOffer,
    },
}

/// Fault injection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop the connection once this many stream payload bytes (either direction) have passed.
    pub disconnect_after_bytes: Option<u64>,
    /// Stop answering (but keep the connection open) after this many bytes.
    pub stall_after_bytes: Option<u64>,
    /// Send one malformed message after this many bytes.
    pub garbage_after_bytes: Option<u64>,
}

/// Knobs of one simulated phone.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub identity: Identity,
    pub auth: AuthMode,
    pub version: u32,
    pub max_payload: u32,
    pub features: Vec<String>,
    pub faults: Faults,
    /// The phone model's knobs, its fault profile included (`model.behaviour`).
    pub model: PhoneConfig,
    /// Real time per phone time: 1.0 serves latencies as they are; 0.1 ten times faster
    /// (timeouts, transitions and boot times scale alike, so the profile keeps its shape).
    pub time_scale: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            auth: AuthMode::Off,
            version: VERSION_SKIP_CHECKSUM,
            max_payload: MAX_PAYLOAD,
            features: [
                FEATURE_SHELL_V2,
                FEATURE_CMD,
                FEATURE_STAT_V2,
                FEATURE_FIXED_PUSH_MKDIR,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            faults: Faults::default(),
            model: PhoneConfig::default(),
            time_scale: 1.0,
        }
    }
}

impl SimConfig {
    pub fn with_serial(serial: &str) -> Self {
        let mut c = Self::default();
        c.identity.serial = serial.to_string();
        c
    }

    /// Drops a feature (e.g. `shell_v2` to model an old phone).
    pub fn without_feature(mut self, f: &str) -> Self {
        self.features.retain(|x| x != f);
        self
    }

    /// The phone behaves as the named profile says (`ideal`, `realistic`), served `time_scale`
    /// times real time.
    pub fn with_profile(mut self, behaviour: Behaviour, time_scale: f64) -> Self {
        self.model.behaviour = behaviour;
        self.time_scale = time_scale;
        self
    }

    /// A new phone model as configured.
    pub fn phone(&self) -> Phone {
        let mut p = Phone::with_config(self.identity.clone(), self.model.clone());
        if let AuthMode::Required { known_keys, .. } = &self.auth {
            for k in known_keys {
                p.allow_adb_key(k);
            }
        }
        p
    }

    pub fn with_feature(mut self, f: &str) -> Self {
        if !self.features.iter().any(|x| x == f) {
            self.features.push(f.to_string());
        }
        self
    }
}

/// A running simulated phone.
#[derive(Debug)]
pub struct Sim {
    pub addr: SocketAddr,
    pub phone: Arc<Mutex<Phone>>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// `127.0.0.1:PORT`, as `adb connect` wants it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and drops all connections.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulated phone on `127.0.0.1:0`.
pub async fn spawn(config: SimConfig) -> std::io::Result<Sim> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(spawn_on(listener, config))
}

/// Starts a simulated phone on a listener the caller bound.
pub fn spawn_on(listener: TcpListener, config: SimConfig) -> Sim {
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let phone = Arc::new(Mutex::new(config.phone()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        phone.clone(),
        Arc::new(config),
        shutdown.clone(),
    ));
    Sim {
        addr,
        phone,
        shutdown,
        task: Some(task),
    }
}

/// Accepts connections until `shutdown`, one task per connection, all on the same phone
/// (build it with [`SimConfig::phone`] so that it knows the configured keys).
pub async fn serve(
    listener: TcpListener,
    phone: Arc<Mutex<Phone>>,
    config: Arc<SimConfig>,
    shutdown: CancellationToken,
) {
    // The phone remembers the keys its user allowed (its adb_keys) across connections.
    let clock = peer::SimClock::new(config.time_scale);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "sim connection");
                    let conn = peer::Connection::new(phone.clone(), config.clone(), clock);
                    tokio::spawn(conn.run(stream, shutdown.child_token()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Avoid a hot loop on persistent errors (e.g. EMFILE).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

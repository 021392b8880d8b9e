//! One actor per phone: a task owns the phone's ADB connection, and a cheap-to-clone
//! [`PhoneHandle`] sends it requests over a bounded channel. Calls (`shell`, `push`, `pull`,
//! `stat`, `reboot`) each open their own stream, so concurrent calls on one phone multiplex,
//! and a slow phone only ever holds up its own task. Every call takes a deadline; when it
//! passes, or when the caller drops the future (cancellation), the stream is closed with CLSE.

mod actor;
mod ops;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::adb::auth::KeyRing;
use crate::adb::session::{HostConfig, PeerInfo, Session};
use crate::adb::transport::{self, ByteSource, PacketSink, Writer};
use actor::{Actor, OpenRequest, StreamIo};

pub use ops::{PushSource, RemoteStat, ShellOutput, legacy_command, take_exit_marker};

/// Connection state as the phone's actor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    /// Every key was refused and the public key was offered: the phone shows the
    /// "Allow USB debugging?" prompt.
    Unauthorized,
    Online(PeerInfo),
    /// The connection ended; the reason.
    Offline(String),
}

impl ConnState {
    /// `online`, `unauthorized`, `connecting` or `offline`.
    pub fn label(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Unauthorized => "unauthorized",
            ConnState::Online(_) => "online",
            ConnState::Offline(_) => "offline",
        }
    }
}

/// Errors of phone calls.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("phone is unauthorized: accept the key on the phone")]
    Unauthorized,
    #[error("phone is offline: {0}")]
    Offline(String),
    #[error("deadline passed")]
    Timeout,
    #[error("phone refused service {0:?}")]
    Refused(String),
    #[error("connection lost: {0}")]
    Disconnected(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("phone reported: {0}")]
    Remote(String),
    #[error("cannot {action} {path}")]
    LocalIo {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Tunables for one phone connection.
#[derive(Debug, Clone)]
pub struct PhoneOptions {
    /// Capacity of the request channel.
    pub queue: usize,
    pub host: HostConfig,
}

impl PhoneOptions {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            queue: 32,
            host: HostConfig::new(keys),
        }
    }
}

/// Cloneable handle to one phone's actor.
#[derive(Debug, Clone)]
pub struct PhoneHandle {
    opens: mpsc::Sender<OpenRequest>,
    state: watch::Receiver<ConnState>,
    label: Arc<str>,
}

impl PhoneHandle {
    /// Starts the actor over any transport; the handshake runs in the background.
    pub fn spawn<S: PacketSink, R: ByteSource>(
        sink: S,
        source: R,
        label: &str,
        opts: PhoneOptions,
    ) -> Self {
        let (otx, orx) = mpsc::channel(opts.queue.max(1));
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (stx, srx) = watch::channel(ConnState::Connecting);
        let actor = Actor {
            session: Session::host(opts.host),
            source,
            writer: Writer::spawn(sink),
            opens: orx,
            ops_rx,
            ops_tx,
            state: stx,
        };
        tokio::spawn(actor.run());
        Self {
            opens: otx,
            state: srx,
            label: label.into(),
        }
    }

    /// Connects over TCP (a network phone, an emulator or the simulator).
    pub async fn connect_tcp(addr: &str, opts: PhoneOptions) -> Result<Self, PhoneError> {
        let (sink, source) =
            transport::tcp_connect(addr)
                .await
                .map_err(|source| PhoneError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
        Ok(Self::spawn(sink, source, addr, opts))
    }

    /// The address or port path this handle was created for.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Waits until the connection is online; fails on offline, or at the deadline (with
    /// [`PhoneError::Unauthorized`] if the phone is still waiting for the user).
    pub async fn wait_online(&self, deadline: Instant) -> Result<PeerInfo, PhoneError> {
        let mut rx = self.state.clone();
        let fut = async {
            loop {
                match rx.borrow_and_update().clone() {
                    ConnState::Online(p) => return Ok(p),
                    ConnState::Offline(why) => return Err(PhoneError::Offline(why)),
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(PhoneError::Offline("connection task ended".into()));
                }
            }
        };
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }

    fn timeout_error(&self) -> PhoneError {
        match self.state() {
            ConnState::Unauthorized => PhoneError::Unauthorized,
            ConnState::Offline(why) => PhoneError::Offline(why),
            _ => PhoneError::Timeout,
        }
    }

    fn peer(&self) -> Option<PeerInfo> {
        match &*self.state.borrow() {
            ConnState::Online(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Opens a stream to `service` (waiting for the connection to come online).
    pub(crate) async fn open(&self, service: &str) -> Result<StreamIo, PhoneError> {
        if let ConnState::Offline(why) = self.state() {
            return Err(PhoneError::Offline(why));
        }
        let (tx, rx) = oneshot::channel();
        self.opens
            .send(OpenRequest {
                service: service.to_string(),
                reply: tx,
            })
            .await
            .map_err(|_| PhoneError::Offline("connection task ended".into()))?;
        rx.await.map_err(|_| self.offline_error())?
    }

    fn offline_error(&self) -> PhoneError {
        match self.state() {
            ConnState::Offline(why) => PhoneError::Offline(why),
            _ => PhoneError::Disconnected("connection task ended".into()),
        }
    }

    /// Runs `fut` until `deadline`; on expiry the future (and its stream) is dropped, which
    /// sends CLSE.
    async fn with_deadline<T>(
        &self,
        deadline: Instant,
        fut: impl Future<Output = Result<T, PhoneError>>,
    ) -> Result<T, PhoneError> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }
}

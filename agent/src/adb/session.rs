//! The session state machine for one ADB connection, in either role, with no I/O: one state
//! machine, so one file over 800 lines (its tests are `session/tests.rs`).
//!
//! Feed it received bytes ([`Session::feed`]), take messages to send ([`Session::poll_transmit`])
//! and events ([`Session::poll_event`]). Host role: CNXN → AUTH (sign the token with each key of
//! the ring, then offer the public key and wait for the user) → online. Device role: answer CNXN,
//! challenge with AUTH tokens when auth is required, accept OPENs. Both roles share the stream
//! layer: local-id allocation, OPEN/OKAY/WRTE/CLSE, one WRTE in flight per stream (or a byte
//! window when both sides advertise `delayed_ack`), and the CLSE echo.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use rsa::PublicKey;

use super::auth::{self, KeyRing, TOKEN_SIZE};
use super::banner::{self, Banner};
use super::message::{
    MAX_PAYLOAD, Message, ParseError, Parser, VERSION_MIN, VERSION_SKIP_CHECKSUM, auth_type, cmd,
};

/// Receive window we grant per stream in delayed-ack mode.
pub const INITIAL_WINDOW: u32 = 8 * 1024 * 1024;

/// What the peer told us in its CNXN, after negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Negotiated protocol version (the lower of both).
    pub version: u32,
    /// Negotiated max payload (the lower of both).
    pub max_payload: u32,
    pub banner: Banner,
    /// True when both sides advertise `delayed_ack`.
    pub delayed_ack: bool,
}

/// Connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// CNXN sent (host) or awaited (device).
    Connecting,
    /// AUTH exchange in progress.
    Authenticating,
    /// Host: every key was refused and the public key was offered; the phone shows the
    /// "Allow USB debugging?" prompt. The same connection goes on when the user accepts.
    Unauthorized,
    Online(PeerInfo),
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Online(PeerInfo),
    /// Host: the public key was offered, waiting for the user.
    Unauthorized,
    /// Device: the host offered this public key (AUTH RSAPUBLICKEY payload); call
    /// [`Session::authorize`] to accept or refuse it.
    AuthKeyOffered(Bytes),
    /// Device: the host wants `service`; answer with [`Session::accept`] or [`Session::refuse`].
    OpenRequest {
        id: u32,
        service: String,
    },
    /// Host: the stream we opened was accepted.
    Opened {
        id: u32,
    },
    /// Host: the peer refused to open the stream.
    OpenFailed {
        id: u32,
    },
    Data {
        id: u32,
        data: Bytes,
    },
    /// The peer closed the stream (or echoed our CLSE).
    Closed {
        id: u32,
    },
}

/// Protocol violations. Each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("malformed message")]
    Parse(#[from] ParseError),
    #[error("unexpected {0} in state {1}")]
    Unexpected(&'static str, &'static str),
    #[error("peer reconnected on a live connection")]
    Reconnected,
    #[error("peer requested tls, which is not supported")]
    TlsRequested,
    #[error("no host key to authenticate with")]
    NoKeys,
    #[error("connection is not online")]
    NotOnline,
    #[error("unknown stream {0}")]
    UnknownStream(u32),
}

/// Host role settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub keys: KeyRing,
    pub features: Vec<String>,
    pub max_payload: u32,
    pub version: u32,
}

impl HostConfig {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            features: banner::HOST_FEATURES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_payload: MAX_PAYLOAD,
            version: VERSION_SKIP_CHECKSUM,
        }
    }
}

/// Device role settings.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Full CNXN banner, e.g. from [`Banner::device`].
    pub banner: String,
    pub version: u32,
    pub max_payload: u32,
    /// Challenge the host with AUTH tokens.
    pub auth_required: bool,
    /// Public keys already authorized.
    pub known_keys: Vec<PublicKey>,
}

#[derive(Debug)]
enum RoleState {
    Host {
        keys: KeyRing,
        next_key: usize,
        offered: bool,
    },
    Device {
        cfg: DeviceConfig,
        token: Option<[u8; TOKEN_SIZE]>,
        authorized: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum StreamState {
    /// Host: OPEN sent, waiting for OKAY. `abort` if the caller gave up meanwhile.
    Opening {
        abort: bool,
    },
    /// Device: OPEN received, waiting for the application to accept.
    Pending,
    Open,
    /// CLSE sent, waiting for the echo.
    Closing,
}

#[derive(Debug)]
struct Stream {
    remote: u32,
    state: StreamState,
    queue: VecDeque<Bytes>,
    queued: usize,
    in_flight: bool,
    window: i64,
    sent_total: u64,
    close_when_drained: bool,
}

impl Stream {
    fn new(remote: u32, state: StreamState) -> Self {
        Self {
            remote,
            state,
            queue: VecDeque::new(),
            queued: 0,
            in_flight: false,
            window: 0,
            sent_total: 0,
            close_when_drained: false,
        }
    }
}

/// One ADB connection's protocol state.
#[derive(Debug)]
pub struct Session {
    role: RoleState,
    state: State,
    parser: Parser,
    our_version: u32,
    our_max_payload: u32,
    our_delayed_ack: bool,
    version: u32,
    peer_max_payload: u32,
    delayed_ack: bool,
    streams: HashMap<u32, Stream>,
    next_id: u32,
    outbox: VecDeque<Message>,
    events: VecDeque<Event>,
    host_banner: Option<Bytes>,
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Connecting => "connecting",
        State::Authenticating => "authenticating",
        State::Unauthorized => "unauthorized",
        State::Online(_) => "online",
    }
}

fn okay_payload(delayed: bool, n: u32) -> Bytes {
    if delayed {
        Bytes::copy_from_slice(&n.to_le_bytes())
    } else {
        Bytes::new()
    }
}

impl Session {
    fn base(role: RoleState, version: u32, max_payload: u32, delayed_ack: bool) -> Self {
        Self {
            role,
            state: State::Connecting,
            parser: Parser::new(MAX_PAYLOAD.max(max_payload)),
            our_version: version,
            our_max_payload: max_payload,
            our_delayed_ack: delayed_ack,
            version: VERSION_MIN,
            peer_max_payload: max_payload,
            delayed_ack: false,
            streams: HashMap::new(),
            next_id: 1,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            host_banner: None,
        }
    }

    /// A host session; the CNXN is queued at once.
    pub fn host(cfg: HostConfig) -> Self {
        let banner = Banner::host(&cfg.features.iter().map(String::as_str).collect::<Vec<_>>());
        let delayed = cfg
            .features
            .iter()
            .any(|f| f == banner::FEATURE_DELAYED_ACK);
        let mut s = Self::base(
            RoleState::Host {
                keys: cfg.keys,
                next_key: 0,
                offered: false,
            },
            cfg.version,
            cfg.max_payload,
            delayed,
        );
        s.outbox.push_back(Message::new(
            cmd::CNXN,
            cfg.version,
            cfg.max_payload,
            cnxn_payload(&banner),
        ));
        s
    }

    /// A device session waiting for the host's CNXN.
    pub fn device(cfg: DeviceConfig) -> Self {
        let b = Banner::parse(cfg.banner.as_bytes());
        let delayed = b.has(banner::FEATURE_DELAYED_ACK);
        let (v, m) = (cfg.version, cfg.max_payload);
        Self::base(
            RoleState::Device {
                cfg,
                token: None,
                authorized: false,
            },
            v,
            m,
            delayed,
        )
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn is_online(&self) -> bool {
        matches!(self.state, State::Online(_))
    }

    /// Whether outgoing headers carry the legacy checksum.
    pub fn send_checksums(&self) -> bool {
        self.version < VERSION_SKIP_CHECKSUM
    }

    /// Encodes a message header for sending under the current protocol version.
    pub fn header(&self, m: &Message) -> [u8; 24] {
        m.header(self.send_checksums())
    }

    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds received bytes and handles every complete message.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.parser.feed(data);
        while let Some(m) = self.parser.next_message()? {
            self.handle(m)?;
        }
        Ok(())
    }

    /// Handles one message.
    pub fn handle(&mut self, m: Message) -> Result<(), SessionError> {
        match m.command {
            cmd::CNXN => self.on_cnxn(m),
            cmd::AUTH => self.on_auth(m),
            cmd::STLS => Err(SessionError::TlsRequested),
            cmd::OPEN => self.on_open(m),
            cmd::OKAY => self.on_okay(m),
            cmd::WRTE => self.on_wrte(m),
            cmd::CLSE => self.on_clse(m),
            // SYNC is obsolete; unknown commands are ignored as adbd does.
            _ => Ok(()),
        }
    }

    fn go_online(&mut self, peer_banner: &[u8], peer_version: u32, peer_max: u32) {
        let banner = Banner::parse(peer_banner);
        self.version = peer_version.min(self.our_version);
        self.peer_max_payload = peer_max.min(self.our_max_payload).max(1);
        self.delayed_ack = self.our_delayed_ack && banner.has(banner::FEATURE_DELAYED_ACK);
        self.parser.set_version(self.version);
        let info = PeerInfo {
            version: self.version,
            max_payload: self.peer_max_payload,
            banner,
            delayed_ack: self.delayed_ack,
        };
        self.state = State::Online(info.clone());
        self.events.push_back(Event::Online(info));
    }

    fn on_cnxn(&mut self, m: Message) -> Result<(), SessionError> {
        if self.is_online() {
            return Err(SessionError::Reconnected);
        }
        match &mut self.role {
            RoleState::Host { .. } => {
                self.go_online(&m.payload, m.arg0, m.arg1);
                Ok(())
            }
            RoleState::Device {
                cfg,
                token,
                authorized,
            } => {
                // Negotiate now: replies go out under the agreed version.
                self.version = m.arg0.min(self.our_version);
                self.peer_max_payload = m.arg1.min(self.our_max_payload).max(1);
                self.parser.set_version(self.version);
                self.host_banner = Some(m.payload.clone());
                if cfg.auth_required && !*authorized {
                    let t: [u8; TOKEN_SIZE] = rand::random();
                    *token = Some(t);
                    self.state = State::Authenticating;
                    self.outbox.push_back(Message::new(
                        cmd::AUTH,
                        auth_type::TOKEN,
                        0,
                        Bytes::copy_from_slice(&t),
                    ));
                    Ok(())
                } else {
                    self.device_connect();
                    Ok(())
                }
            }
        }
    }

    fn device_connect(&mut self) {
        let RoleState::Device {
            cfg, authorized, ..
        } = &mut self.role
        else {
            return;
        };
        *authorized = true;
        let banner = cfg.banner.clone();
        self.outbox.push_back(Message::new(
            cmd::CNXN,
            self.version,
            self.peer_max_payload,
            cnxn_payload(&banner),
        ));
        let host = self.host_banner.take().unwrap_or_default();
        let (v, p) = (self.version, self.peer_max_payload);
        self.go_online(&host, v, p);
    }

    fn on_auth(&mut self, m: Message) -> Result<(), SessionError> {
        if self.is_online() {
            return Err(SessionError::Unexpected("AUTH", "online"));
        }
        match &mut self.role {
            RoleState::Host {
                keys,
                next_key,
                offered,
                ..
            } => {
                if m.arg0 != auth_type::TOKEN {
                    return Err(SessionError::Unexpected(
                        "AUTH from device",
                        state_name(&self.state),
                    ));
                }
                if *next_key < keys.keys().len() {
                    let key = keys.keys()[*next_key].clone();
                    *next_key += 1;
                    // A signing failure only skips this key.
                    if let Ok(sig) = key.sign_token(&m.payload) {
                        self.state = State::Authenticating;
                        self.outbox.push_back(Message::new(
                            cmd::AUTH,
                            auth_type::SIGNATURE,
                            0,
                            sig,
                        ));
                        return Ok(());
                    }
                }
                if *offered {
                    return Ok(());
                }
                let Some(key) = keys.keys().first().cloned() else {
                    return Err(SessionError::NoKeys);
                };
                *offered = true;
                self.state = State::Unauthorized;
                self.outbox.push_back(Message::new(
                    cmd::AUTH,
                    auth_type::RSAPUBLICKEY,
                    0,
                    key.auth_payload(),
                ));
                self.events.push_back(Event::Unauthorized);
                Ok(())
            }
            RoleState::Device { cfg, token, .. } => match m.arg0 {
                auth_type::SIGNATURE => {
                    let ok = token
                        .map(|t| {
                            cfg.known_keys
                                .iter()
                                .any(|k| auth::verify_token(k, &t, &m.payload))
                        })
                        .unwrap_or(false);
                    if ok {
                        self.device_connect();
                    } else {
                        let t: [u8; TOKEN_SIZE] = rand::random();
                        *token = Some(t);
                        self.outbox.push_back(Message::new(
                            cmd::AUTH,
                            auth_type::TOKEN,
                            0,
                            Bytes::copy_from_slice(&t),
                        ));
                    }
                    Ok(())
                }
                auth_type::RSAPUBLICKEY => {
                    self.events.push_back(Event::AuthKeyOffered(m.payload));
                    Ok(())
                }
                _ => Err(SessionError::Unexpected(
                    "AUTH from host",
                    state_name(&self.state),
                )),
            },
        }
    }

    /// Device: the user's answer to an offered key. Accepting remembers the key and completes
    /// the connection; refusing leaves the host unauthorized.
    pub fn authorize(&mut self, offered: &[u8], accept: bool) -> Result<(), SessionError> {
        if !accept || self.is_online() {
            return Ok(());
        }
        let RoleState::Device { cfg, .. } = &mut self.role else {
            return Err(SessionError::Unexpected("authorize", "host role"));
        };
        if let Ok(k) = auth::parse_public_key_line(offered) {
            cfg.known_keys.push(k);
        }
        self.device_connect();
        Ok(())
    }

    fn alloc_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.streams.contains_key(&id) {
                return id;
            }
        }
    }

    /// Host: opens a stream to `service`. The id is ours (the local id).
    pub fn open(&mut self, service: &str) -> Result<u32, SessionError> {
        if !self.is_online() {
            return Err(SessionError::NotOnline);
        }
        let id = self.alloc_id();
        self.streams
            .insert(id, Stream::new(0, StreamState::Opening { abort: false }));
        let mut p = service.as_bytes().to_vec();
        p.push(0);
        let window = if self.delayed_ack { INITIAL_WINDOW } else { 0 };
        self.outbox
            .push_back(Message::new(cmd::OPEN, id, window, p));
        Ok(id)
    }

    fn on_open(&mut self, m: Message) -> Result<(), SessionError> {
        if !self.is_online() {
            return Err(SessionError::Unexpected("OPEN", state_name(&self.state)));
        }
        let remote = m.arg0;
        if matches!(self.role, RoleState::Host { .. }) || remote == 0 {
            // We offer no services to the phone (no reverse forwarding).
            self.outbox
                .push_back(Message::new(cmd::CLSE, 0, remote, Bytes::new()));
            return Ok(());
        }
        // As adbd does: the OPEN's window (arg1) must be present exactly when delayed ack was
        // negotiated, else the stream is refused.
        if self.delayed_ack != (m.arg1 != 0) {
            self.outbox
                .push_back(Message::new(cmd::CLSE, 0, remote, Bytes::new()));
            return Ok(());
        }
        let id = self.alloc_id();
        let mut s = Stream::new(remote, StreamState::Pending);
        if self.delayed_ack {
            s.window = i64::from(m.arg1);
        }
        self.streams.insert(id, s);
        let service = String::from_utf8_lossy(&m.payload)
            .trim_end_matches('\0')
            .to_string();
        self.events.push_back(Event::OpenRequest { id, service });
        Ok(())
    }

    /// Device: accepts a requested stream.
    pub fn accept(&mut self, id: u32) -> Result<(), SessionError> {
        let delayed = self.delayed_ack;
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(SessionError::UnknownStream(id))?;
        if s.state != StreamState::Pending {
            return Err(SessionError::Unexpected("accept", "stream not pending"));
        }
        s.state = StreamState::Open;
        let remote = s.remote;
        self.outbox.push_back(Message::new(
            cmd::OKAY,
            id,
            remote,
            okay_payload(delayed, INITIAL_WINDOW),
        ));
        self.flush(id);
        Ok(())
    }

    /// Device: refuses a requested stream.
    pub fn refuse(&mut self, id: u32) {
        if let Some(s) = self.streams.remove(&id) {
            self.outbox
                .push_back(Message::new(cmd::CLSE, 0, s.remote, Bytes::new()));
        }
    }

    fn on_okay(&mut self, m: Message) -> Result<(), SessionError> {
        let (remote, id) = (m.arg0, m.arg1);
        let delayed = self.delayed_ack;
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let acked = if delayed {
            if m.payload.len() != 4 {
                return Err(SessionError::Unexpected(
                    "OKAY without ack count",
                    "delayed ack",
                ));
            }
            // A signed delta: negative values shrink the window.
            i64::from(i32::from_le_bytes([
                m.payload[0],
                m.payload[1],
                m.payload[2],
                m.payload[3],
            ]))
        } else {
            0
        };
        match s.state {
            StreamState::Opening { abort } => {
                s.remote = remote;
                s.window = acked;
                if abort {
                    s.state = StreamState::Closing;
                    self.outbox
                        .push_back(Message::new(cmd::CLSE, id, remote, Bytes::new()));
                } else {
                    s.state = StreamState::Open;
                    self.events.push_back(Event::Opened { id });
                    self.flush(id);
                }
            }
            StreamState::Open => {
                if s.remote != remote {
                    return Ok(());
                }
                s.in_flight = false;
                s.window += acked;
                self.flush(id);
            }
            StreamState::Pending | StreamState::Closing => {}
        }
        Ok(())
    }

    fn on_wrte(&mut self, m: Message) -> Result<(), SessionError> {
        let (remote, id) = (m.arg0, m.arg1);
        let delayed = self.delayed_ack;
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if s.state != StreamState::Open || s.remote != remote {
            return Ok(());
        }
        let n = m.payload.len() as u32;
        self.outbox.push_back(Message::new(
            cmd::OKAY,
            id,
            remote,
            okay_payload(delayed, n),
        ));
        self.events.push_back(Event::Data {
            id,
            data: m.payload,
        });
        Ok(())
    }

    fn on_clse(&mut self, m: Message) -> Result<(), SessionError> {
        let (remote, id) = (m.arg0, m.arg1);
        let Some(s) = self.streams.get(&id) else {
            return Ok(());
        };
        match s.state {
            StreamState::Opening { abort } => {
                self.streams.remove(&id);
                if !abort {
                    self.events.push_back(Event::OpenFailed { id });
                }
            }
            StreamState::Open | StreamState::Pending => {
                if remote != 0 && remote != s.remote {
                    return Ok(());
                }
                let r = s.remote;
                self.streams.remove(&id);
                self.outbox
                    .push_back(Message::new(cmd::CLSE, id, r, Bytes::new()));
                self.events.push_back(Event::Closed { id });
            }
            StreamState::Closing => {
                self.streams.remove(&id);
                self.events.push_back(Event::Closed { id });
            }
        }
        Ok(())
    }

    /// Queues data on an open stream; it goes out as WRTEs of at most the negotiated max
    /// payload as flow control allows.
    pub fn write(&mut self, id: u32, mut data: Bytes) -> Result<(), SessionError> {
        let max = self.peer_max_payload as usize;
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(SessionError::UnknownStream(id))?;
        if matches!(s.state, StreamState::Closing) || s.close_when_drained {
            return Err(SessionError::Unexpected("write", "closing stream"));
        }
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(max));
            s.queued += chunk.len();
            s.queue.push_back(chunk);
        }
        self.flush(id);
        Ok(())
    }

    fn flush(&mut self, id: u32) {
        let delayed = self.delayed_ack;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.state != StreamState::Open {
            return;
        }
        loop {
            let can = if delayed { s.window > 0 } else { !s.in_flight };
            if !can {
                break;
            }
            let Some(chunk) = s.queue.pop_front() else {
                break;
            };
            s.queued -= chunk.len();
            s.sent_total += chunk.len() as u64;
            if delayed {
                s.window -= chunk.len() as i64;
            } else {
                s.in_flight = true;
            }
            self.outbox
                .push_back(Message::new(cmd::WRTE, id, s.remote, chunk));
        }
        if s.close_when_drained && s.queue.is_empty() {
            s.state = StreamState::Closing;
            let r = s.remote;
            self.outbox
                .push_back(Message::new(cmd::CLSE, id, r, Bytes::new()));
        }
    }

    /// Closes a stream after its queued data has been sent.
    pub fn close(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            match s.state {
                StreamState::Open => {
                    s.close_when_drained = true;
                    self.flush(id);
                }
                StreamState::Pending => self.refuse(id),
                StreamState::Opening { .. } => s.state = StreamState::Opening { abort: true },
                StreamState::Closing => {}
            }
        }
    }

    /// Closes a stream now, dropping queued data (timeout or cancellation).
    pub fn abort(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.queue.clear();
            s.queued = 0;
            match s.state {
                StreamState::Open => {
                    s.state = StreamState::Closing;
                    let r = s.remote;
                    self.outbox
                        .push_back(Message::new(cmd::CLSE, id, r, Bytes::new()));
                }
                StreamState::Pending => self.refuse(id),
                StreamState::Opening { .. } => s.state = StreamState::Opening { abort: true },
                StreamState::Closing => {}
            }
        }
    }

    /// Bytes of a stream handed to the transport so far.
    pub fn sent_total(&self, id: u32) -> Option<u64> {
        self.streams.get(&id).map(|s| s.sent_total)
    }

    /// Bytes of a stream still waiting for flow control.
    pub fn queued(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.queued)
    }

    /// Number of streams in any state.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn peer(&self) -> Option<&PeerInfo> {
        match &self.state {
            State::Online(p) => Some(p),
            _ => None,
        }
    }
}

/// adb and adbd send the banner without a trailing NUL (a NUL would end up in the last
/// feature name); parsing tolerates one.
fn cnxn_payload(banner: &str) -> Vec<u8> {
    banner.as_bytes().to_vec()
}

#[cfg(test)]
mod tests;

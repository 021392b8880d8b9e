//! One ADB connection, device side: drives the core's device-role [`Session`] over any
//! transport (TCP here, FunctionFS in [`crate::functionfs`]) and serves `shell` (v2 and
//! legacy), `exec`, `sync` and `reboot` from the phone model.
//!
//! Replies to shell commands go out after the latency the model charges for them (scaled by
//! the simulator's time scale), so the host meets the phone's latencies in real time; the
//! command's effects happen when it arrives. A connection drops when the model says every
//! connection must (reboot, adb outage, host keys revoked), and while adb is down none is
//! served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use phonefarm_agent::adb::auth::parse_public_key_line;
use phonefarm_agent::adb::banner::{Banner, FEATURE_SHELL_V2};
use phonefarm_agent::adb::session::{DeviceConfig, Event, Session};
use phonefarm_agent::adb::shell::{Packet, PacketId, ShellService};
use phonefarm_agent::adb::sync::{self, Dent, Request, RequestDecoder, Response, Stat2};
use phonefarm_agent::adb::transport::{ByteSource, PacketSink, Writer, tcp_split};
use phonefarm_phonemodel::{FileStat, Phone};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{AuthMode, KeyOffer, SimConfig};

const ENOENT: u32 = 2;

/// A sync stream in progress.
#[derive(Default)]
struct SyncState {
    dec: RequestDecoder,
    /// SEND in progress: path, mode, data so far.
    receiving: Option<(String, u32, Vec<u8>)>,
}

enum SyncStep {
    More,
    Quit,
    Error,
}

enum Service {
    Sync(SyncState),
    /// Output sent, waiting for the host to close.
    Done,
}

/// The simulator's clock: phone time runs `1 / scale` times as fast as real time, and a
/// latency of `ms` phone milliseconds takes `ms * scale` real ones.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start: Instant,
    scale: f64,
}

impl SimClock {
    pub fn new(scale: f64) -> Self {
        Self {
            start: Instant::now(),
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
        }
    }

    /// Phone milliseconds since the simulator started.
    pub fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 / self.scale) as u64
    }

    /// How long `ms` phone milliseconds take in real time.
    pub fn real(&self, ms: u32) -> Duration {
        Duration::from_secs_f64(f64::from(ms) * self.scale / 1000.0)
    }

    /// Tells the phone the time.
    pub fn tick(&self, phone: &mut Phone) {
        phone.advance(self.now_ms());
    }
}

/// Device side of one connection.
pub struct Connection {
    phone: Arc<Mutex<Phone>>,
    config: Arc<SimConfig>,
    clock: SimClock,
    /// The phone's connection epoch when this connection started.
    epoch: u64,
}

/// A reply held back for the command's latency.
struct Delayed {
    due: Instant,
    id: u32,
    data: Bytes,
}

/// `/system/bin/sh -c script` on the model, as parts in the order they ran. The model expands
/// no variables; the one expansion hosts rely on is `$?` in a final line, which is how they
/// learn a command's status over the legacy shell (`cmd`, newline, `echo MARKER$?`). So a
/// final line using `$?` runs after the rest with `$?` replaced by the rest's exit status, as
/// sh would do (except that an `exit` in the rest does not stop it).
fn sh_c(phone: &mut Phone, script: &str) -> (Vec<phonefarm_phonemodel::ShellOutput>, u32) {
    match script.rsplit_once('\n') {
        Some((head, last)) if last.contains("$?") => {
            let (first, ms) = phone.shell_timed(head);
            let last = phone.shell(&last.replace("$?", &first.exit.to_string()));
            (vec![first, last], ms)
        }
        _ => {
            let (out, ms) = phone.shell_timed(script);
            (vec![out], ms)
        }
    }
}

/// Hands every queued message to the writer, counting WRTE payload bytes into `passed`;
/// false once the writer has stopped.
fn transmit(session: &mut Session, writer: &Writer, passed: &mut u64) -> bool {
    while let Some(m) = session.poll_transmit() {
        if m.command == phonefarm_agent::adb::message::cmd::WRTE {
            *passed += m.payload.len() as u64;
        }
        let h = session.header(&m);
        if !writer.send(h, m.payload) {
            return false;
        }
    }
    true
}

fn lock(phone: &Mutex<Phone>) -> std::sync::MutexGuard<'_, Phone> {
    // A panic in the model must not take the whole simulator down.
    phone.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    pub fn new(phone: Arc<Mutex<Phone>>, config: Arc<SimConfig>, clock: SimClock) -> Self {
        let epoch = {
            let mut p = lock(&phone);
            clock.tick(&mut p);
            p.connection_epoch()
        };
        Self {
            phone,
            config,
            clock,
            epoch,
        }
    }

    /// Whether this connection must end: the phone dropped its connections since it started,
    /// or adb is down.
    fn cut(&self) -> bool {
        let mut p = lock(&self.phone);
        self.clock.tick(&mut p);
        p.connection_epoch() != self.epoch || !p.adb_up()
    }

    fn session(&self) -> Session {
        let (id, keys) = {
            let p = lock(&self.phone);
            (p.identity().clone(), p.adb_keys().to_vec())
        };
        let features: Vec<&str> = self.config.features.iter().map(String::as_str).collect();
        let banner = Banner::device(&id.product, &id.model, &id.device, &features);
        let auth_required = !matches!(self.config.auth, AuthMode::Off);
        let lines = keys;
        let known_keys = lines
            .iter()
            .filter_map(|l| parse_public_key_line(l.as_bytes()).ok())
            .collect();
        Session::device(DeviceConfig {
            banner,
            version: self.config.version,
            max_payload: self.config.max_payload,
            auth_required,
            known_keys,
        })
    }

    /// Serves a TCP connection until the host leaves, a fault fires, or `shutdown`.
    pub async fn run(self, stream: TcpStream, shutdown: CancellationToken) {
        let (sink, mut source) = tcp_split(stream);
        self.serve(sink, &mut source, shutdown).await;
    }

    /// Serves one ADB connection over any transport until the source ends (`Ok(0)` or an
    /// error), a fault fires, or `shutdown`. The source is borrowed so that a transport that
    /// outlives connections (a USB function: the host reconnects with a new CNXN) can serve
    /// the next one from where this one stopped.
    pub async fn serve<S: PacketSink, R: ByteSource>(
        self,
        sink: S,
        source: &mut R,
        shutdown: CancellationToken,
    ) {
        let mut writer = Writer::spawn(sink);
        if self.cut() {
            tracing::debug!("sim: adb is down, dropping the connection");
            return;
        }
        let mut session = self.session();
        let mut services: HashMap<u32, Service> = HashMap::new();
        let mut delayed: Vec<Delayed> = Vec::new();
        let mut watch = tokio::time::interval(Duration::from_millis(50));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 256 * 1024];
        let mut pending_accept: Option<(Instant, Bytes)> = None;
        let mut passed: u64 = 0;
        let mut hang_up = false;
        let mut garbage_sent = false;
        let faults = &self.config.faults;
        loop {
            // What the last bytes produced (the OKAYs acking WRTEs) goes out before their data
            // is served, as adbd acks a WRTE once the data is handed to the service.
            if !transmit(&mut session, &writer, &mut passed) {
                return;
            }
            while let Some(ev) = session.poll_event() {
                match ev {
                    Event::AuthKeyOffered(key) => {
                        tracing::info!("sim: the host offers a key the phone does not know");
                        self.on_key_offered(&mut session, key, &mut pending_accept);
                    }
                    Event::OpenRequest { id, service } => {
                        if self.open(&mut session, id, &service, &mut services, &mut delayed) {
                            hang_up = true;
                        }
                    }
                    Event::Data { id, data } => {
                        passed += data.len() as u64;
                        if let Some(Service::Sync(st)) = services.get_mut(&id) {
                            st.dec.feed(&data);
                            match self.serve_sync(&mut session, id, st) {
                                SyncStep::More => {}
                                SyncStep::Quit => {
                                    session.close(id);
                                    services.insert(id, Service::Done);
                                }
                                SyncStep::Error => {
                                    session.abort(id);
                                    services.remove(&id);
                                }
                            }
                        }
                    }
                    Event::Closed { id } => {
                        services.remove(&id);
                    }
                    Event::Online(_)
                    | Event::Unauthorized
                    | Event::Opened { .. }
                    | Event::OpenFailed { .. } => {}
                }
            }
            if !transmit(&mut session, &writer, &mut passed) {
                return;
            }
            let tripped = |limit: Option<u64>| limit.is_some_and(|l| passed >= l);
            if tripped(faults.disconnect_after_bytes) {
                tracing::debug!(passed, "fault: disconnecting mid-stream");
                return;
            }
            if tripped(faults.garbage_after_bytes) && !garbage_sent {
                tracing::debug!(passed, "fault: sending garbage");
                garbage_sent = true;
                if !writer.send([0xa5; 24], Bytes::from_static(b"garbage")) {
                    return;
                }
            }
            if tripped(faults.stall_after_bytes) {
                tracing::debug!(passed, "fault: stalling");
                // A hung adbd: swallow everything, answer nothing, until the host leaves.
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = source.recv(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                    }
                }
            }
            if hang_up {
                // Reboot: give the writer a moment to flush the OKAY/CLSE, then drop.
                tokio::task::yield_now().await;
                return;
            }
            let accept_at = pending_accept.as_ref().map(|(t, _)| *t);
            let next_reply = delayed.iter().map(|d| d.due).min();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = watch.tick() => {
                    if self.cut() {
                        tracing::debug!("sim: the phone drops its connections");
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next_reply.unwrap_or_else(Instant::now)), if next_reply.is_some() => {
                    let now = Instant::now();
                    let mut i = 0;
                    while i < delayed.len() {
                        if delayed[i].due <= now {
                            let d = delayed.swap_remove(i);
                            if !d.data.is_empty() {
                                let _ = session.write(d.id, d.data);
                            }
                            session.close(d.id);
                        } else {
                            i += 1;
                        }
                    }
                }
                r = source.recv(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if let Err(e) = session.feed(&buf[..n]) {
                            tracing::debug!(error = %e, "sim: protocol error, dropping connection");
                            return;
                        }
                    }
                },
                _ = tokio::time::sleep_until(accept_at.unwrap_or_else(Instant::now)), if accept_at.is_some() => {
                    if let Some((_, key)) = pending_accept.take() {
                        self.remember(&key);
                        let _ = session.authorize(&key, true);
                    }
                }
                _ = &mut writer.failed => return,
            }
        }
    }

    /// The user's answer to an unknown key: allow now, later, or never.
    fn on_key_offered(
        &self,
        session: &mut Session,
        key: Bytes,
        pending_accept: &mut Option<(Instant, Bytes)>,
    ) {
        match &self.config.auth {
            AuthMode::Required {
                on_offer: KeyOffer::Accept,
                ..
            } => {
                self.remember(&key);
                let _ = session.authorize(&key, true);
            }
            AuthMode::Required {
                on_offer: KeyOffer::AcceptAfter(d),
                ..
            } => {
                *pending_accept = Some((Instant::now() + *d, key));
            }
            _ => {}
        }
    }

    fn remember(&self, key: &[u8]) {
        let line = String::from_utf8_lossy(key)
            .trim_end_matches('\0')
            .to_string();
        lock(&self.phone).allow_adb_key(&line);
    }

    fn has(&self, f: &str) -> bool {
        self.config.features.iter().any(|x| x == f)
    }

    /// Runs a shell script on the model at the current time; the outputs and the latency.
    fn run_script(&self, script: &str) -> (Vec<phonefarm_phonemodel::ShellOutput>, u32) {
        let mut p = lock(&self.phone);
        self.clock.tick(&mut p);
        sh_c(&mut p, script)
    }

    /// Sends `data` on `id` and closes it, now or after `latency_ms` phone milliseconds.
    fn reply(
        &self,
        s: &mut Session,
        id: u32,
        data: Bytes,
        latency_ms: u32,
        delayed: &mut Vec<Delayed>,
    ) {
        if latency_ms == 0 {
            if !data.is_empty() {
                let _ = s.write(id, data);
            }
            s.close(id);
        } else {
            delayed.push(Delayed {
                due: Instant::now() + self.clock.real(latency_ms),
                id,
                data,
            });
        }
    }

    /// Handles an OPEN; returns true when the connection should then drop (reboot).
    fn open(
        &self,
        s: &mut Session,
        id: u32,
        service: &str,
        services: &mut HashMap<u32, Service>,
        delayed: &mut Vec<Delayed>,
    ) -> bool {
        if let Some(sh) = ShellService::parse(service) {
            if sh.v2 && !self.has(FEATURE_SHELL_V2) {
                s.refuse(id);
                return false;
            }
            let _ = s.accept(id);
            let (parts, latency) = if sh.command.is_empty() {
                (vec![phonefarm_phonemodel::ShellOutput::default()], 0)
            } else {
                self.run_script(&sh.command)
            };
            if sh.v2 {
                let mut b = BytesMut::new();
                let stdout: Vec<u8> = parts.iter().flat_map(|p| p.stdout.clone()).collect();
                let stderr: Vec<u8> = parts.iter().flat_map(|p| p.stderr.clone()).collect();
                if !stdout.is_empty() {
                    b.extend_from_slice(&Packet::new(PacketId::Stdout, stdout).encode());
                }
                if !stderr.is_empty() {
                    b.extend_from_slice(&Packet::new(PacketId::Stderr, stderr).encode());
                }
                let exit = parts.last().map_or(0, |p| p.exit);
                b.extend_from_slice(&Packet::exit(exit).encode());
                self.reply(s, id, b.freeze(), latency, delayed);
            } else {
                // One pipe for both streams, in the order the parts ran.
                let b: Vec<u8> = parts
                    .into_iter()
                    .flat_map(|p| p.stdout.into_iter().chain(p.stderr))
                    .collect();
                self.reply(s, id, Bytes::from(b), latency, delayed);
            }
            services.insert(id, Service::Done);
            return false;
        }
        if let Some(cmd) = service.strip_prefix("exec:") {
            let _ = s.accept(id);
            let (parts, latency) = self.run_script(cmd);
            let stdout: Vec<u8> = parts.into_iter().flat_map(|p| p.stdout).collect();
            self.reply(s, id, Bytes::from(stdout), latency, delayed);
            services.insert(id, Service::Done);
            return false;
        }
        if service == "sync:" {
            let _ = s.accept(id);
            services.insert(id, Service::Sync(SyncState::default()));
            return false;
        }
        if service.starts_with("reboot:") {
            let _ = s.accept(id);
            {
                let mut p = lock(&self.phone);
                self.clock.tick(&mut p);
                p.power_cycle();
            }
            s.close(id);
            return true;
        }
        s.refuse(id);
        false
    }

    /// Processes every complete sync request buffered so far.
    fn serve_sync(&self, s: &mut Session, id: u32, st: &mut SyncState) -> SyncStep {
        loop {
            let req = match st.dec.next_request() {
                Ok(Some(r)) => r,
                Ok(None) => return SyncStep::More,
                Err(e) => {
                    tracing::debug!(error = %e, "sim: bad sync request");
                    return SyncStep::Error;
                }
            };
            let mut out = BytesMut::new();
            let mut lstat = false;
            let resp: Vec<Response> = match req {
                Request::Stat(p) => {
                    let r = lock(&self.phone).stat(&p);
                    let r = r.unwrap_or(FileStat {
                        mode: 0,
                        size: 0,
                        mtime: 0,
                    });
                    vec![Response::Stat {
                        mode: r.mode,
                        size: r.size as u32,
                        mtime: r.mtime,
                    }]
                }
                Request::Stat2(p) => vec![Response::Stat2(self.stat2(&p))],
                Request::Lstat2(p) => {
                    lstat = true;
                    vec![Response::Stat2(self.stat2(&p))]
                }
                Request::List(p) => {
                    let entries = lock(&self.phone).list(&p).unwrap_or_default();
                    let mut v: Vec<Response> = entries
                        .into_iter()
                        .map(|(name, f)| {
                            Response::Dent(Dent {
                                mode: f.mode,
                                size: f.size as u32,
                                mtime: f.mtime,
                                name,
                            })
                        })
                        .collect();
                    v.push(Response::ListDone);
                    v
                }
                Request::Send { path, mode } => {
                    st.receiving = Some((path, mode, Vec::new()));
                    vec![]
                }
                Request::Data(d) => match &mut st.receiving {
                    Some((_, _, buf)) => {
                        buf.extend_from_slice(&d);
                        vec![]
                    }
                    None => return SyncStep::Error,
                },
                Request::Done { mtime } => match st.receiving.take() {
                    Some((path, mode, data)) => {
                        match lock(&self.phone).write(&path, data, mode, mtime) {
                            Ok(()) => vec![Response::Okay],
                            Err(e) => vec![Response::Fail(e)],
                        }
                    }
                    None => return SyncStep::Error,
                },
                Request::Recv(p) => match lock(&self.phone).read(&p) {
                    Some(data) => {
                        let chunks = data.len().div_ceil(sync::SYNC_DATA_MAX);
                        let mut b = BytesMut::with_capacity(data.len() + 8 * chunks + 8);
                        for c in data.chunks(sync::SYNC_DATA_MAX) {
                            b.extend_from_slice(&sync::ID_DATA);
                            b.extend_from_slice(&(c.len() as u32).to_le_bytes());
                            b.extend_from_slice(c);
                        }
                        Response::Done.encode_into(&mut b, false);
                        if s.write(id, b.freeze()).is_err() {
                            return SyncStep::Error;
                        }
                        vec![]
                    }
                    None => vec![Response::Fail("No such file or directory".into())],
                },
                Request::Quit => return SyncStep::Quit,
            };
            if resp.is_empty() {
                continue;
            }
            for r in &resp {
                r.encode_into(&mut out, lstat && matches!(r, Response::Stat2(_)));
            }
            if s.write(id, out.freeze()).is_err() {
                return SyncStep::Error;
            }
        }
    }

    fn stat2(&self, path: &str) -> Stat2 {
        match lock(&self.phone).stat(path) {
            Some(f) => Stat2 {
                mode: f.mode,
                size: f.size,
                mtime: i64::from(f.mtime),
                atime: i64::from(f.mtime),
                ctime: i64::from(f.mtime),
                nlink: 1,
                ..Default::default()
            },
            None => Stat2 {
                error: ENOENT,
                ..Default::default()
            },
        }
    }
}

//! The simulator as a USB phone: a FunctionFS transport (device role) for a configfs gadget.
//!
//! The caller mounts FunctionFS at `DIR` (`mount -t functionfs <name> DIR`) for a function
//! `ffs.<name>` linked into a gadget configuration. [`FunctionFs::start`] opens `DIR/ep0`,
//! writes the v2 descriptors (one interface of class 0xff/0x42/0x01, bulk OUT then bulk IN, in
//! full, high and super speed) and the strings, opens the endpoint files `ep1` (OUT) and `ep2` (IN) that
//! appear then, and only after that may the caller bind the gadget to a UDC. [`FunctionFs::serve`]
//! then answers ep0 events and feeds the OUT endpoint into the same device-role
//! [`Connection`](crate::peer::Connection) as over TCP, writing ADB messages to the IN endpoint
//! the way adbd does: the header and the payload as two writes, and no zero-length packet after
//! a payload that fills whole packets (hosts read payloads by their announced length).
//!
//! The function outlives connections: when the host sends a new CNXN (a new `adb` server, the
//! next `phonefarm-agent` command) or the gadget is unbound and bound again (unplug, replug),
//! the current connection ends and the next one starts on the same endpoints. Blocking file I/O
//! runs on three threads (ep0 events, OUT reader, IN writer) bridged to tokio channels. The
//! OUT reader asks the kernel for a whole payload in one read (one gadget request, as large as
//! the host's transfer), so the simulator is not what limits a push.
//!
//! [`FunctionFs::hold_key_offers`] models a user who answers the "Allow USB debugging?" prompt
//! only when told to (SIGUSR1 in the binary): the host's public key is held back from the
//! session until then, and released even when that host has gone meanwhile, so the phone's
//! CNXN is left queued on the IN endpoint for whoever opens the interface next, as on a real
//! phone.
//!
//! The byte layouts ([`descriptors`], [`strings`], [`parse_event`]) are pure functions checked
//! against `include/uapi/linux/usb/functionfs.h`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use phonefarm_agent::adb::message::HEADER_LEN;
use phonefarm_agent::adb::transport::{ByteSource, PacketSink};
use phonefarm_phonemodel::Phone;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::SimConfig;
use crate::peer::Connection;

/// `FUNCTIONFS_DESCRIPTORS_MAGIC_V2`.
pub const DESCRIPTORS_MAGIC_V2: u32 = 3;
/// `FUNCTIONFS_STRINGS_MAGIC`.
pub const STRINGS_MAGIC: u32 = 2;
/// `FUNCTIONFS_HAS_FS_DESC`.
pub const HAS_FS_DESC: u32 = 1;
/// `FUNCTIONFS_HAS_HS_DESC`.
pub const HAS_HS_DESC: u32 = 2;
/// `FUNCTIONFS_HAS_SS_DESC`.
pub const HAS_SS_DESC: u32 = 4;
/// `sizeof(struct usb_functionfs_event)`.
pub const EVENT_SIZE: usize = 12;

/// Endpoint addresses as declared; the UDC may renumber them, hosts read the real ones from
/// the descriptors.
pub const EP_OUT_ADDRESS: u8 = 0x01;
pub const EP_IN_ADDRESS: u8 = 0x82;
pub const FULL_SPEED_MAX_PACKET: u16 = 64;
pub const HIGH_SPEED_MAX_PACKET: u16 = 512;
pub const SUPER_SPEED_MAX_PACKET: u16 = 1024;
/// Packets per burst at super speed (`bMaxBurst` + 1), as adbd declares.
pub const SUPER_SPEED_MAX_BURST: u8 = 4;

/// The interface string (index 1), as adbd names it.
pub const INTERFACE_NAME: &str = "ADB Interface";
/// US English.
pub const LANG_EN_US: u16 = 0x0409;

const USB_DT_INTERFACE: u8 = 4;
const USB_DT_ENDPOINT: u8 = 5;
const USB_DT_SS_ENDPOINT_COMP: u8 = 0x30;
const USB_ENDPOINT_XFER_BULK: u8 = 2;
const USB_DIR_IN: u8 = 0x80;

/// One read from the OUT endpoint at most this long: a whole 1 MiB payload in one gadget
/// request. Halved (down to [`MIN_READ_CHUNK`]) when the kernel cannot allocate the buffer.
const READ_CHUNK: usize = 1024 * 1024;
const MIN_READ_CHUNK: usize = 16 * 1024;
/// A header announcing more than this is garbage: passed on as is for the session to reject.
const MAX_MESSAGE_PAYLOAD: usize = 16 * 1024 * 1024;

/// `struct usb_interface_descriptor` for the ADB interface (class 0xff, subclass 0x42,
/// protocol 0x01, two endpoints, string 1).
pub fn interface_descriptor() -> [u8; 9] {
    [
        9,                // bLength
        USB_DT_INTERFACE, // bDescriptorType
        0,                // bInterfaceNumber
        0,                // bAlternateSetting
        2,                // bNumEndpoints
        0xff,             // bInterfaceClass
        0x42,             // bInterfaceSubClass
        0x01,             // bInterfaceProtocol
        1,                // iInterface
    ]
}

/// `struct usb_endpoint_descriptor_no_audio` for a bulk endpoint.
pub fn bulk_endpoint_descriptor(address: u8, max_packet: u16) -> [u8; 7] {
    let mps = max_packet.to_le_bytes();
    [
        7,                      // bLength
        USB_DT_ENDPOINT,        // bDescriptorType
        address,                // bEndpointAddress
        USB_ENDPOINT_XFER_BULK, // bmAttributes
        mps[0],                 // wMaxPacketSize (LE16)
        mps[1],
        0, // bInterval
    ]
}

/// `struct usb_ss_ep_comp_descriptor` for a bulk endpoint (no streams).
pub fn ss_companion_descriptor(max_burst: u8) -> [u8; 6] {
    [
        6,                       // bLength
        USB_DT_SS_ENDPOINT_COMP, // bDescriptorType
        max_burst - 1,           // bMaxBurst (0-based)
        0,                       // bmAttributes
        0,                       // wBytesPerInterval (LE16; periodic endpoints only)
        0,
    ]
}

/// One speed's descriptors; returns how many there are.
fn speed_descriptors(out: &mut Vec<u8>, max_packet: u16, companion: Option<u8>) -> u32 {
    out.extend_from_slice(&interface_descriptor());
    for address in [EP_OUT_ADDRESS, EP_IN_ADDRESS] {
        out.extend_from_slice(&bulk_endpoint_descriptor(address, max_packet));
        if let Some(burst) = companion {
            out.extend_from_slice(&ss_companion_descriptor(burst));
        }
    }
    if companion.is_some() { 5 } else { 3 }
}

/// The descriptors block written first to ep0: `usb_functionfs_descs_head_v2` (magic, length,
/// flags), `fs_count`, `hs_count`, `ss_count`, then the full-, high- and super-speed
/// descriptors (super speed adds an endpoint companion after each endpoint).
pub fn descriptors() -> Vec<u8> {
    let mut body = Vec::new();
    let fs = speed_descriptors(&mut body, FULL_SPEED_MAX_PACKET, None);
    let hs = speed_descriptors(&mut body, HIGH_SPEED_MAX_PACKET, None);
    let ss = speed_descriptors(
        &mut body,
        SUPER_SPEED_MAX_PACKET,
        Some(SUPER_SPEED_MAX_BURST),
    );
    let len = 24 + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&DESCRIPTORS_MAGIC_V2.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&(HAS_FS_DESC | HAS_HS_DESC | HAS_SS_DESC).to_le_bytes());
    for count in [fs, hs, ss] {
        out.extend_from_slice(&count.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// The strings block written second to ep0: `usb_functionfs_strings_head` (magic, length,
/// str_count, lang_count), then one language (LE16 code) with one NUL-terminated string.
pub fn strings(interface_name: &str) -> Vec<u8> {
    let len = 16 + 2 + interface_name.len() + 1;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&STRINGS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // str_count
    out.extend_from_slice(&1u32.to_le_bytes()); // lang_count
    out.extend_from_slice(&LANG_EN_US.to_le_bytes());
    out.extend_from_slice(interface_name.as_bytes());
    out.push(0);
    out
}

/// `struct usb_ctrlrequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlRequest {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl CtrlRequest {
    /// Data stage from device to host.
    pub fn is_in(&self) -> bool {
        self.request_type & USB_DIR_IN != 0
    }
}

/// `struct usb_functionfs_event`, by `enum usb_functionfs_event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfsEvent {
    Bind,
    Unbind,
    Enable,
    Disable,
    Setup(CtrlRequest),
    Suspend,
    Resume,
    Unknown(u8),
}

/// Decodes one 12-byte event: 8 bytes of setup packet, the type, 3 bytes of padding.
pub fn parse_event(b: &[u8; EVENT_SIZE]) -> FfsEvent {
    let le16 = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    match b[8] {
        0 => FfsEvent::Bind,
        1 => FfsEvent::Unbind,
        2 => FfsEvent::Enable,
        3 => FfsEvent::Disable,
        4 => FfsEvent::Setup(CtrlRequest {
            request_type: b[0],
            request: b[1],
            value: le16(2),
            index: le16(4),
            length: le16(6),
        }),
        5 => FfsEvent::Suspend,
        6 => FfsEvent::Resume,
        other => FfsEvent::Unknown(other),
    }
}

/// Decodes the events of one ep0 read (a whole number of events; a trailing partial one is
/// ignored).
pub fn parse_events(b: &[u8]) -> Vec<FfsEvent> {
    b.chunks_exact(EVENT_SIZE)
        .map(|c| parse_event(c.try_into().expect("chunk of EVENT_SIZE")))
        .collect()
}

/// The payload length an ADB header announces (`data_length`, LE32 at offset 12).
pub fn payload_len(header: &[u8; HEADER_LEN]) -> usize {
    u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize
}

/// Whether a whole ADB message (header first) is a CNXN.
pub fn is_cnxn(message: &[u8]) -> bool {
    message.starts_with(b"CNXN")
}

/// Whether a whole ADB message is the host offering its public key (AUTH, type RSAPUBLICKEY):
/// what makes a phone show "Allow USB debugging?".
pub fn is_key_offer(message: &[u8]) -> bool {
    message.len() >= 8
        && message.starts_with(b"AUTH")
        && u32::from_le_bytes([message[4], message[5], message[6], message[7]])
            == phonefarm_agent::adb::message::auth_type::RSAPUBLICKEY
}

/// FunctionFS set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum FfsError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the {what} to ep0")]
    Ep0Write {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a functionfs thread")]
    Thread(#[source] io::Error),
}

type WriteJob = ([u8; HEADER_LEN], Bytes, oneshot::Sender<io::Result<()>>);

/// [`PacketSink`] onto the IN endpoint's writer thread.
#[derive(Debug, Clone)]
pub struct FfsSink {
    jobs: std::sync::mpsc::Sender<WriteJob>,
}

impl PacketSink for FfsSink {
    async fn send_packet(&mut self, header: &[u8; HEADER_LEN], payload: &[u8]) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((*header, Bytes::copy_from_slice(payload), tx))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "ep2 writer stopped"))?;
        rx.await.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "ep2 writer stopped",
            ))
        })
    }
}

/// Key offers held back until the simulated user allows them: each bump of the counter is one
/// tap on "Allow", which releases the offer held at that moment.
#[derive(Debug)]
struct KeyGate {
    allows: watch::Receiver<u64>,
    /// The held offer and the counter's value when it was held.
    held: Option<(Vec<u8>, u64)>,
}

/// The data phase of a transfer as the phone sees it: a run of WRTEs from the host, from the
/// first to the last, logged when the run ends (any other message) if it carried at least
/// 1 MiB. Both clients are timed the same way here, without their connection set-up.
#[derive(Debug, Default)]
struct BulkRun {
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
    messages: u64,
    /// Payload bytes after the first WRTE (the ones the first-to-last interval covers).
    bytes: u64,
}

impl BulkRun {
    fn on_message(&mut self, msg: &[u8]) {
        if msg.starts_with(b"WRTE") {
            let now = std::time::Instant::now();
            if self.first.is_none() {
                self.first = Some(now);
            } else {
                self.bytes += msg.len().saturating_sub(HEADER_LEN) as u64;
            }
            self.last = Some(now);
            self.messages += 1;
            return;
        }
        if let (Some(first), Some(last)) = (self.first, self.last)
            && self.bytes >= 1 << 20
        {
            let secs = last.duration_since(first).as_secs_f64();
            tracing::info!(
                "functionfs: bulk WRTEs: {} messages, {} bytes in {secs:.3}s ({:.1} MiB/s)",
                self.messages,
                self.bytes,
                self.bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
            );
        }
        *self = Self::default();
    }
}

/// [`ByteSource`] over the OUT endpoint's reader thread, which delivers whole ADB messages.
/// It ends the current connection (`Ok(0)`) when the host starts a new one with CNXN, and
/// keeps that CNXN for the next connection.
#[derive(Debug)]
pub struct FfsSource {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    pos: usize,
    started: bool,
    next: Option<Vec<u8>>,
    gate: Option<KeyGate>,
    bulk: BulkRun,
}

impl FfsSource {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            pending: Vec::new(),
            pos: 0,
            started: false,
            next: None,
            gate: None,
            bulk: BulkRun::default(),
        }
    }

    /// Forgets the rest of the current connection's bytes; the next message starts a new one.
    fn reset(&mut self) {
        self.pending.clear();
        self.pos = 0;
        self.started = false;
    }

    /// The next whole message: a held key offer once it is allowed, else the next from ep1.
    /// `Ok(None)`: the reader thread is gone.
    async fn next_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(m) = self.next.take() {
            return Ok(Some(m));
        }
        loop {
            let held_at = self
                .gate
                .as_ref()
                .and_then(|g| g.held.as_ref().map(|h| h.1));
            if let (Some(at), Some(gate)) = (held_at, self.gate.as_mut()) {
                let woke = tokio::select! {
                    r = gate.allows.wait_for(|n| *n > at) => Woke::Allowed(r.is_ok()),
                    m = self.rx.recv() => Woke::Message(m),
                };
                match woke {
                    Woke::Allowed(true) => {}
                    // The allow signal is gone: the prompt stays up for good.
                    Woke::Allowed(false) => {
                        if let Some(g) = &mut self.gate {
                            g.held = None;
                        }
                        continue;
                    }
                    Woke::Message(None) => return Ok(None),
                    Woke::Message(Some(Err(e))) => return Err(e),
                    Woke::Message(Some(Ok(m))) if is_cnxn(&m) => {
                        // A new connection: the prompt of the old one goes away.
                        if let Some(g) = &mut self.gate {
                            g.held = None;
                        }
                        tracing::info!(
                            "functionfs: the host reconnected; the key prompt is dismissed"
                        );
                        return Ok(Some(m));
                    }
                    // Anything else while the prompt is up is ignored, as adbd ignores
                    // messages before authorization.
                    Woke::Message(Some(Ok(_))) => continue,
                }
                if let Some((offer, _)) = self.gate.as_mut().and_then(|g| g.held.take()) {
                    tracing::info!("functionfs: the user allows the key");
                    return Ok(Some(offer));
                }
                continue;
            }
            let m = match self.rx.recv().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            };
            if let Some(g) = &mut self.gate
                && is_key_offer(&m)
            {
                // Taps from now on count: the prompt is up before anyone can read that it is.
                g.held = Some((m, *g.allows.borrow()));
                tracing::info!(
                    "functionfs: the host offers a key; the phone shows the prompt until the user allows it"
                );
                continue;
            }
            return Ok(Some(m));
        }
    }
}

enum Woke {
    Allowed(bool),
    Message(Option<io::Result<Vec<u8>>>),
}

impl ByteSource for FfsSource {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.pending.len() {
            let Some(msg) = self.next_message().await? else {
                return Ok(0);
            };
            self.bulk.on_message(&msg);
            if self.started && is_cnxn(&msg) {
                self.next = Some(msg);
                return Ok(0);
            }
            self.started = true;
            self.pending = msg;
            self.pos = 0;
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A FunctionFS instance with descriptors written and endpoints open.
#[derive(Debug)]
pub struct FunctionFs {
    dir: PathBuf,
    events: mpsc::UnboundedReceiver<FfsEvent>,
    sink: FfsSink,
    source: FfsSource,
}

fn open(path: PathBuf, write: bool) -> Result<File, FfsError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open(&path)
        .map_err(|source| FfsError::Open { path, source })
}

impl FunctionFs {
    /// Writes descriptors and strings to `dir/ep0` and opens `ep1` and `ep2`; the gadget may be
    /// bound to a UDC once this returns.
    pub fn start(dir: &Path) -> Result<Self, FfsError> {
        let mut ep0 = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("ep0"))
            .map_err(|source| FfsError::Open {
                path: dir.join("ep0"),
                source,
            })?;
        ep0.write_all(&descriptors())
            .map_err(|source| FfsError::Ep0Write {
                what: "descriptors",
                source,
            })?;
        ep0.write_all(&strings(INTERFACE_NAME))
            .map_err(|source| FfsError::Ep0Write {
                what: "strings",
                source,
            })?;
        let ep_out = open(dir.join("ep1"), false)?;
        let ep_in = open(dir.join("ep2"), true)?;

        let (etx, events) = mpsc::unbounded_channel();
        spawn_thread("ffs-ep0", move || ep0_loop(ep0, &etx))?;
        let (jobs, jrx) = std::sync::mpsc::channel::<WriteJob>();
        spawn_thread("ffs-ep-in", move || writer_loop(ep_in, &jrx))?;
        let (dtx, rx) = mpsc::channel(8);
        spawn_thread("ffs-ep-out", move || reader_loop(ep_out, &dtx))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            events,
            sink: FfsSink { jobs },
            source: FfsSource::new(rx),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Holds each public key the host offers (the phone shows "Allow USB debugging?") until
    /// `allows` counts one more tap on "Allow"; run with an auth mode that then accepts
    /// (`KeyOffer::Accept`). A held offer is released even if its host has gone; a new CNXN
    /// dismisses it.
    pub fn hold_key_offers(&mut self, allows: watch::Receiver<u64>) {
        self.source.gate = Some(KeyGate { allows, held: None });
    }

    /// Serves one connection after another on `phone` until `shutdown`. Keys the user allowed
    /// are remembered across connections, like the phone's adb_keys.
    pub async fn serve(
        self,
        phone: Arc<Mutex<Phone>>,
        config: Arc<SimConfig>,
        shutdown: CancellationToken,
    ) {
        let Self {
            mut events,
            sink,
            mut source,
            ..
        } = self;
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                tracing::info!(?ev, "functionfs event");
            }
        });
        let clock = crate::peer::SimClock::new(config.time_scale);
        while !shutdown.is_cancelled() {
            let conn = Connection::new(phone.clone(), config.clone(), clock);
            tracing::debug!("functionfs: waiting for a connection");
            conn.serve(sink.clone(), &mut source, shutdown.child_token())
                .await;
            tracing::debug!("functionfs: connection ended");
            source.reset();
            if source.rx.is_closed() && source.next.is_none() {
                tracing::warn!("functionfs: ep1 reader stopped");
                return;
            }
        }
    }
}

/// Counts SIGUSR1s (each one a tap on "Allow"), for [`FunctionFs::hold_key_offers`]. Must be
/// called inside a tokio runtime.
pub fn allow_on_sigusr1() -> io::Result<watch::Receiver<u64>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("functionfs: SIGUSR1: the user taps Allow");
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), FfsError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(FfsError::Thread)
}

/// Reads events until ep0 fails; answers SETUP requests with a stall (the ADB interface has
/// no control requests).
fn ep0_loop(mut ep0: File, tx: &mpsc::UnboundedSender<FfsEvent>) {
    let mut buf = [0u8; EVENT_SIZE * 4];
    loop {
        let n = match ep0.read(&mut buf) {
            // A real ep0 never ends; a plain file (tests) does.
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "functionfs: ep0 read failed");
                return;
            }
        };
        for ev in parse_events(&buf[..n]) {
            if let FfsEvent::Setup(req) = ev {
                // Stall: a transfer in the direction opposite to the data stage.
                let _ = if req.is_in() {
                    ep0.read(&mut []).map(|_| ())
                } else {
                    ep0.write(&[]).map(|_| ())
                };
            }
            if tx.send(ev).is_err() {
                return;
            }
        }
    }
}

fn write_full(ep: &mut File, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        match ep.write(&data[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes each message as adbd does: header, then payload, as separate transfers.
fn writer_loop(mut ep: File, jobs: &std::sync::mpsc::Receiver<WriteJob>) {
    while let Ok((header, payload, done)) = jobs.recv() {
        if is_cnxn(&header) {
            // It waits in the kernel until the host reads: maybe a host that has gone.
            tracing::info!("functionfs: CNXN to the host");
        }
        let mut r = write_full(&mut ep, &header);
        if r.is_ok() && !payload.is_empty() {
            r = write_full(&mut ep, &payload);
        }
        if let Err(e) = &r {
            tracing::debug!(error = %e, "functionfs: ep2 write failed");
        }
        let _ = done.send(r);
    }
}

/// How a payload read ended.
enum Payload {
    Complete,
    /// A transfer ended short after `len` bytes at `at`: the host sent less than the header
    /// announced, i.e. it started over (after a replug its first transfer is a CNXN header).
    Short {
        at: usize,
        len: usize,
    },
}

/// Fills `buf` in reads of at most `*chunk` bytes, skipping zero-length packets; halves
/// `*chunk` when the kernel cannot allocate a request that large. With `payload`, a read that
/// returns less than it asked for (the host's transfer ended) stops the fill.
fn read_full<R: Read>(
    ep: &mut R,
    buf: &mut [u8],
    chunk: &mut usize,
    payload: bool,
) -> io::Result<Payload> {
    let mut off = 0;
    while off < buf.len() {
        let end = buf.len().min(off + *chunk);
        match ep.read(&mut buf[off..end]) {
            Ok(0) => {}
            Ok(n) if payload && n < end - off => return Ok(Payload::Short { at: off, len: n }),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory && *chunk > MIN_READ_CHUNK => {
                *chunk /= 2;
                tracing::debug!(chunk = *chunk, "functionfs: smaller ep1 reads (ENOMEM)");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Payload::Complete)
}

fn is_header(b: &[u8]) -> bool {
    use phonefarm_agent::adb::message::{Header, MAX_PAYLOAD};
    let Ok(h) = <&[u8; HEADER_LEN]>::try_from(b) else {
        return false;
    };
    Header::decode(h)
        .validate(MAX_PAYLOAD.max(MAX_MESSAGE_PAYLOAD as u32))
        .is_ok()
}

/// Reads one whole message: a 24-byte header, then exactly its payload (as adbd does, so a
/// host that sends no zero-length packet after an aligned payload is not waited for). A
/// payload cut short by a transfer that is a header itself (a host that started over while
/// we waited for the rest of a message, e.g. across an unplug) drops the broken message and
/// goes on with that header; other short reads are part of the payload.
fn read_message<R: Read>(ep: &mut R, chunk: &mut usize) -> io::Result<Vec<u8>> {
    let mut header = [0u8; HEADER_LEN];
    read_full(ep, &mut header, chunk, false)?;
    loop {
        let len = payload_len(&header);
        let mut msg = Vec::with_capacity(HEADER_LEN + len.min(MAX_MESSAGE_PAYLOAD));
        msg.extend_from_slice(&header);
        if len > MAX_MESSAGE_PAYLOAD {
            // Garbage: passed on for the session to reject.
            return Ok(msg);
        }
        msg.resize(HEADER_LEN + len, 0);
        let mut filled = 0;
        loop {
            match read_full(ep, &mut msg[HEADER_LEN + filled..], chunk, true)? {
                Payload::Complete => return Ok(msg),
                Payload::Short { at, len } => {
                    let start = HEADER_LEN + filled + at;
                    let got = &msg[start..start + len];
                    if is_header(got) {
                        tracing::debug!(
                            "functionfs: a new message header inside a payload; the broken \
                             message is dropped"
                        );
                        header.copy_from_slice(got);
                        break;
                    }
                    // Less than asked and not a header: the rest of this payload comes in the
                    // next reads (a pipe standing in for an endpoint returns what it holds; a
                    // host may end a transfer early). A host that started over sends a header
                    // next, which the check above catches.
                    filled += at + len;
                }
            }
        }
    }
}

/// Reads whole messages ([`read_message`]). An error (the function was disabled: unplug) is
/// delivered once; the next read blocks in the kernel until the function is enabled again.
fn reader_loop(mut ep: File, tx: &mpsc::Sender<io::Result<Vec<u8>>>) {
    let mut failing = false;
    let mut chunk = READ_CHUNK;
    loop {
        match read_message(&mut ep, &mut chunk) {
            Ok(msg) => {
                failing = false;
                if tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::debug!(error = %e, "functionfs: ep1 read failed");
                    if tx.blocking_send(Err(e)).is_err() {
                        return;
                    }
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests;

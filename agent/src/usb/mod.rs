//! USB transport for ADB: finds interfaces of class 0xff/0x42/0x01, and moves ADB messages
//! over their bulk endpoints: header and payload as separate bulk transfers (the whole payload
//! in one), a zero-length packet when a payload is an exact multiple of the endpoint's max
//! packet size. Reads follow the framing as adb's usb_linux does: one max-packet read for a
//! header, then one read of the announced payload rounded up to whole max packets, so a payload
//! that fills whole packets (phones send no zero-length packet after it) completes its read
//! without waiting for the next message. The blocking transfers run on two threads per device
//! (as Google's adb does), bridged to tokio channels; the writer thread has the next message
//! queued while it sends one, behind the small [`BulkIo`] trait so the logic is tested with a
//! fake ([`fake`]) rather than hardware. Discovery and opening through rusb live in
//! [`rusb_io`]; a failing `rusb::Context::new()` means "no USB", not a crash.
//!
//! It links the system libusb (`libusb-1.0-0-dev`, found through pkg-config), not rusb's
//! vendored build, which lacks udev here. Opening drains what a previous connection left on the
//! IN endpoint ([`drain_stale_input`], framing-aware: a stale header's payload is waited for).

pub mod fake;
pub mod manager;
pub mod policy;
pub mod rusb_io;

pub use manager::{ManagerConfig, OpenError, UsbBackend, UsbEvent, UsbManager, UsbPhone, UsbState};

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::adb::message::HEADER_LEN;
use crate::adb::transport::{ByteSource, PacketSink};

/// ADB interface class, subclass and protocol.
pub const ADB_CLASS: u8 = 0xff;
pub const ADB_SUBCLASS: u8 = 0x42;
pub const ADB_PROTOCOL: u8 = 0x01;

/// Bulk transfer failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsbError {
    #[error("usb transfer timed out")]
    Timeout,
    #[error("usb endpoint stalled")]
    Stall,
    #[error("usb device is gone")]
    NoDevice,
    #[error("usb write sent {sent} of {len} bytes")]
    ShortWrite { sent: usize, len: usize },
    #[error("usb error: {0}")]
    Other(String),
}

impl From<UsbError> for io::Error {
    fn from(e: UsbError) -> Self {
        let kind = match e {
            UsbError::Timeout => io::ErrorKind::TimedOut,
            UsbError::NoDevice => io::ErrorKind::NotConnected,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Blocking bulk I/O on one ADB interface.
pub trait BulkIo: Send + Sync + 'static {
    /// Reads one transfer into `buf` (whose length is a multiple of the max packet size).
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError>;
    /// Writes one transfer; an empty `data` is a zero-length packet.
    fn write(&self, data: &[u8], timeout: Duration) -> Result<usize, UsbError>;
    fn max_packet_in(&self) -> usize;
    fn max_packet_out(&self) -> usize;
    /// Clears a stall on the IN (`true`) or OUT endpoint.
    fn clear_halt(&self, input: bool) -> Result<(), UsbError>;
}

/// Timeouts and retry limits.
#[derive(Debug, Clone, Copy)]
pub struct UsbTiming {
    /// One read attempt; an idle phone just times out and the reader tries again (and notices
    /// whether the connection was dropped). Each expiry wakes the reader thread, so this is
    /// what an idle USB phone costs in CPU.
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Stalls cleared in a row before giving up.
    pub max_stalls: u32,
}

impl Default for UsbTiming {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(5),
            max_stalls: 3,
        }
    }
}

/// Discards what a previous connection left queued on the IN endpoint, before our first CNXN.
/// A phone whose user allows a key after the host that offered it has gone sends its CNXN into
/// the void: it waits on the IN endpoint for whoever reads next. Read as the start of this
/// connection, it would be taken for the answer to our CNXN, and the phone's fresh AUTH would
/// then arrive in the online state.
///
/// Reads until the endpoint stays quiet for `quiet`. The drain follows the framing: a stale
/// header that announces a payload keeps it reading (for up to `payload_wait` per transfer)
/// until that payload has come too, since the phone writes it as a separate transfer, maybe a
/// moment later; a half message left behind would be parsed as garbage. At most 256 transfers;
/// errors end the drain (the session reports them). Returns the bytes discarded.
pub fn drain_stale_input<B: BulkIo + ?Sized>(
    b: &B,
    quiet: Duration,
    payload_wait: Duration,
) -> usize {
    use crate::adb::message::{Header, MAX_PAYLOAD};
    let mps = b.max_packet_in().max(1);
    let mut buf = vec![0u8; (64 * 1024 / mps).max(1) * mps];
    let mut owed = 0usize;
    let mut discarded = 0;
    for _ in 0..256 {
        let wait = if owed > 0 { payload_wait } else { quiet };
        match b.read(&mut buf, wait) {
            Ok(0) => {}
            Ok(n) => {
                discarded += n;
                if owed > 0 {
                    owed = owed.saturating_sub(n);
                } else if n == HEADER_LEN {
                    let mut h = [0u8; HEADER_LEN];
                    h.copy_from_slice(&buf[..HEADER_LEN]);
                    let h = Header::decode(&h);
                    if h.validate(MAX_PAYLOAD).is_ok() {
                        owed = h.data_length as usize;
                    }
                }
            }
            Err(_) => break,
        }
    }
    if discarded > 0 {
        tracing::debug!(
            bytes = discarded,
            "discarded stale input left by a previous connection"
        );
    }
    discarded
}

/// Whether a payload needs a trailing zero-length packet.
pub fn needs_zlp(payload_len: usize, max_packet: usize) -> bool {
    max_packet > 0 && payload_len > 0 && payload_len.is_multiple_of(max_packet)
}

fn write_all<B: BulkIo + ?Sized>(b: &B, data: &[u8], t: &UsbTiming) -> Result<(), UsbError> {
    let mut stalls = 0;
    loop {
        match b.write(data, t.write_timeout) {
            Ok(n) if n == data.len() => return Ok(()),
            Ok(n) => {
                return Err(UsbError::ShortWrite {
                    sent: n,
                    len: data.len(),
                });
            }
            Err(UsbError::Stall) if stalls < t.max_stalls => {
                stalls += 1;
                b.clear_halt(false)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends one ADB message as USB needs it: header transfer, payload transfer, ZLP if needed.
pub fn send_message<B: BulkIo + ?Sized>(
    b: &B,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
    t: &UsbTiming,
) -> Result<(), UsbError> {
    write_all(b, header, t)?;
    if !payload.is_empty() {
        write_all(b, payload, t)?;
        if needs_zlp(payload.len(), b.max_packet_out()) {
            write_all(b, &[], t)?;
        }
    }
    Ok(())
}

type WriteJob = ([u8; HEADER_LEN], Vec<u8>);

/// Messages handed to the writer thread and not yet sent: one being sent, one waiting, so the
/// thread starts the next transfer the moment the last one completes.
const WRITE_QUEUE: usize = 2;

/// [`PacketSink`] over a blocking writer thread. `send_packet` returns once the message is
/// queued; a failed transfer fails the next `send_packet` and reaches the reader's side too
/// (the connection ends at once, not at the next write).
#[derive(Debug)]
pub struct UsbSink {
    jobs: mpsc::Sender<WriteJob>,
    failed: Arc<std::sync::Mutex<Option<UsbError>>>,
}

/// [`ByteSource`] fed by a blocking reader thread.
#[derive(Debug)]
pub struct UsbSource {
    rx: mpsc::Receiver<Result<Vec<u8>, UsbError>>,
    pending: Vec<u8>,
    pos: usize,
}

/// Starts the writer and reader threads for one device.
pub fn spawn<B: BulkIo>(bulk: Arc<B>, timing: UsbTiming) -> (UsbSink, UsbSource) {
    let (jtx, mut jrx) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
    let (dtx, drx) = mpsc::channel(16);
    let failed = Arc::new(std::sync::Mutex::new(None));
    let wb = bulk.clone();
    let (wfailed, wdtx) = (failed.clone(), dtx.clone());
    std::thread::Builder::new()
        .name("adb-usb-write".into())
        .spawn(move || {
            while let Some((header, payload)) = jrx.blocking_recv() {
                if let Err(e) = send_message(&*wb, &header, &payload, &timing) {
                    *wfailed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    // Refuse further sends before the reader's side hears of it, so a send
                    // made after the source reported the failure always fails too.
                    jrx.close();
                    let e = match e {
                        UsbError::NoDevice => e,
                        other => UsbError::Other(format!("write failed: {other}")),
                    };
                    let _ = wdtx.blocking_send(Err(e));
                    return;
                }
            }
        })
        .ok();
    std::thread::Builder::new()
        .name("adb-usb-read".into())
        .spawn(move || read_loop(&*bulk, &dtx, &timing))
        .ok();
    (
        UsbSink { jobs: jtx, failed },
        UsbSource {
            rx: drx,
            pending: Vec::new(),
            pos: 0,
        },
    )
}

/// Where the reader is in the IN stream: how many payload bytes the last header announced
/// that have not arrived yet (0: a header comes next).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    owed: usize,
}

impl Framing {
    /// The size of the next read: a header's max packet, or the rest of the payload rounded
    /// up to whole max packets (at most `cap`, itself a multiple of `mps`).
    pub fn next_read(&self, mps: usize, cap: usize) -> usize {
        if self.owed == 0 {
            mps
        } else {
            self.owed.div_ceil(mps).saturating_mul(mps).min(cap)
        }
    }

    /// Accounts for one completed read. Bytes past a payload (a device that runs messages
    /// together) are taken as the next header; anything unparseable resets to "header next" —
    /// read sizes only, the session's parser decides what the bytes mean.
    pub fn advance(&mut self, mut data: &[u8]) {
        use crate::adb::message::{Header, MAX_PAYLOAD};
        loop {
            if self.owed > 0 {
                let n = self.owed.min(data.len());
                self.owed -= n;
                data = &data[n..];
            }
            if data.len() < HEADER_LEN {
                return;
            }
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&data[..HEADER_LEN]);
            let h = Header::decode(&h);
            if h.validate(MAX_PAYLOAD).is_err() {
                self.owed = 0;
                return;
            }
            self.owed = h.data_length as usize;
            data = &data[HEADER_LEN..];
        }
    }
}

fn read_loop<B: BulkIo + ?Sized>(
    b: &B,
    tx: &mpsc::Sender<Result<Vec<u8>, UsbError>>,
    t: &UsbTiming,
) {
    let mps = b.max_packet_in().max(1);
    // A whole 1 MiB payload in one transfer, as adb's usb_linux reads it.
    let cap = (crate::adb::message::MAX_PAYLOAD as usize).div_ceil(mps) * mps;
    let mut framing = Framing::default();
    let mut stalls = 0;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut buf = vec![0u8; framing.next_read(mps, cap)];
        match b.read(&mut buf, t.read_timeout) {
            Ok(0) => continue, // zero-length packet: nothing to deliver
            Ok(n) => {
                stalls = 0;
                buf.truncate(n);
                framing.advance(&buf);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(UsbError::Timeout) => continue,
            Err(UsbError::Stall) if stalls < t.max_stalls => {
                stalls += 1;
                if let Err(e) = b.clear_halt(true) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

impl PacketSink for UsbSink {
    async fn send_packet(&mut self, header: &[u8; HEADER_LEN], payload: &[u8]) -> io::Result<()> {
        let failed = || {
            let e = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            io::Error::from(e.unwrap_or(UsbError::NoDevice))
        };
        if self.jobs.is_closed() {
            return Err(failed());
        }
        self.jobs
            .send((*header, payload.to_vec()))
            .await
            .map_err(|_| failed())
    }
}

impl ByteSource for UsbSource {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.pending.len() {
            match self.rx.recv().await {
                Some(Ok(chunk)) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

//! USB transport for ADB: finds interfaces of class 0xff/0x42/0x01, and moves ADB messages
//! over their bulk endpoints: header and payload as separate bulk transfers, a zero-length
//! packet when a payload is an exact multiple of the endpoint's max packet size, and reads sized
//! to whole max packets. The blocking transfers run on two threads per device (as Google's adb
//! does), bridged to tokio channels, behind the small [`BulkIo`] trait so the logic is tested
//! with a fake ([`fake`]) rather than hardware. Discovery and opening through rusb live in
//! [`rusb_io`]; a failing `rusb::Context::new()` means "no USB", not a crash.

pub mod fake;
pub mod manager;
pub mod policy;
pub mod rusb_io;

pub use manager::{ManagerConfig, OpenError, UsbBackend, UsbEvent, UsbManager, UsbPhone, UsbState};

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

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

type WriteJob = (Vec<u8>, Vec<u8>, oneshot::Sender<Result<(), UsbError>>);

/// [`PacketSink`] over a blocking writer thread.
#[derive(Debug)]
pub struct UsbSink {
    jobs: std::sync::mpsc::Sender<WriteJob>,
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
    let (jtx, jrx) = std::sync::mpsc::channel::<WriteJob>();
    let wb = bulk.clone();
    std::thread::Builder::new()
        .name("adb-usb-write".into())
        .spawn(move || {
            while let Ok((h, p, done)) = jrx.recv() {
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&h[..HEADER_LEN.min(h.len())]);
                let r = send_message(&*wb, &header, &p, &timing);
                let failed = r.is_err();
                let _ = done.send(r);
                if failed {
                    return;
                }
            }
        })
        .ok();
    let (dtx, drx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("adb-usb-read".into())
        .spawn(move || read_loop(&*bulk, &dtx, &timing))
        .ok();
    (
        UsbSink { jobs: jtx },
        UsbSource {
            rx: drx,
            pending: Vec::new(),
            pos: 0,
        },
    )
}

fn read_loop<B: BulkIo + ?Sized>(
    b: &B,
    tx: &mpsc::Sender<Result<Vec<u8>, UsbError>>,
    t: &UsbTiming,
) {
    let mps = b.max_packet_in().max(1);
    // A whole number of max packets, large enough for a 1 MiB payload in a few transfers.
    let len = (64 * 1024 / mps).max(1) * mps;
    let mut buf = vec![0u8; len];
    let mut stalls = 0;
    loop {
        if tx.is_closed() {
            return;
        }
        match b.read(&mut buf, t.read_timeout) {
            Ok(0) => continue, // zero-length packet: nothing to deliver
            Ok(n) => {
                stalls = 0;
                if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
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
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((header.to_vec(), payload.to_vec(), tx))
            .map_err(|_| io::Error::from(UsbError::NoDevice))?;
        match rx.await {
            Ok(r) => r.map_err(io::Error::from),
            Err(_) => Err(UsbError::NoDevice.into()),
        }
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

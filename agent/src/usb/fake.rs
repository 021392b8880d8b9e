//! Fakes for tests and benchmarks: a scripted [`BulkIo`] ([`FakeBulk`]: reads come from a
//! script of data, zero-length packets, timeouts, stalls and disconnects; writes are recorded
//! transfer by transfer), a [`BulkIo`] over a TCP stream ([`StreamBulk`], so a simulated phone
//! can stand behind the USB code), and a fake bus ([`FakeUsb`]) for the manager: plug, unplug,
//! EACCES on open, and a log of opens and resets.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::manager::{OpenError, Opened, UsbBackend};
use super::policy::Listed;
use super::{BulkIo, UsbError};

/// One scripted read result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    Data(Vec<u8>),
    Zlp,
    Timeout,
    Stall,
    Gone,
}

/// The fake device.
#[derive(Debug, Default)]
pub struct FakeBulk {
    pub mps_in: usize,
    pub mps_out: usize,
    reads: Mutex<VecDeque<ReadStep>>,
    ready: Condvar,
    writes: Mutex<Vec<Vec<u8>>>,
    /// Scripted write failures, consumed one per write.
    write_errors: Mutex<VecDeque<UsbError>>,
    halts_cleared: Mutex<Vec<bool>>,
}

impl FakeBulk {
    pub fn new(mps_in: usize, mps_out: usize) -> Self {
        Self {
            mps_in,
            mps_out,
            ..Default::default()
        }
    }

    pub fn push_read(&self, step: ReadStep) {
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(step);
        self.ready.notify_all();
    }

    pub fn fail_next_write(&self, e: UsbError) {
        self.write_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(e);
    }

    /// Every write transfer so far (an empty one is a ZLP).
    pub fn writes(&self) -> Vec<Vec<u8>> {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `true` for each cleared IN halt, `false` for OUT.
    pub fn halts_cleared(&self) -> Vec<bool> {
        self.halts_cleared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl BulkIo for FakeBulk {
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        assert!(
            buf.len().is_multiple_of(self.mps_in),
            "reads must be sized to max packets"
        );
        let mut q = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            q = self
                .ready
                .wait_timeout(q, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match q.pop_front() {
            None | Some(ReadStep::Timeout) => Err(UsbError::Timeout),
            Some(ReadStep::Zlp) => Ok(0),
            Some(ReadStep::Stall) => Err(UsbError::Stall),
            Some(ReadStep::Gone) => {
                q.push_front(ReadStep::Gone);
                Err(UsbError::NoDevice)
            }
            Some(ReadStep::Data(mut d)) => {
                if d.len() > buf.len() {
                    let rest = d.split_off(buf.len());
                    q.push_front(ReadStep::Data(rest));
                }
                buf[..d.len()].copy_from_slice(&d);
                Ok(d.len())
            }
        }
    }

    fn write(&self, data: &[u8], _timeout: Duration) -> Result<usize, UsbError> {
        if let Some(e) = self
            .write_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return Err(e);
        }
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(data.to_vec());
        Ok(data.len())
    }

    fn max_packet_in(&self) -> usize {
        self.mps_in
    }

    fn max_packet_out(&self) -> usize {
        self.mps_out
    }

    fn clear_halt(&self, input: bool) -> Result<(), UsbError> {
        self.halts_cleared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input);
        Ok(())
    }
}

impl BulkIo for Box<dyn BulkIo> {
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).read(buf, timeout)
    }

    fn write(&self, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).write(data, timeout)
    }

    fn max_packet_in(&self) -> usize {
        (**self).max_packet_in()
    }

    fn max_packet_out(&self) -> usize {
        (**self).max_packet_out()
    }

    fn clear_halt(&self, input: bool) -> Result<(), UsbError> {
        (**self).clear_halt(input)
    }
}

/// Faults shared between a test and the [`StreamBulk`]s it creates.
#[derive(Debug, Default)]
pub struct BulkFaults {
    /// Every transfer fails (a wedged endpoint) while set.
    pub broken: AtomicBool,
    pub halts_cleared: AtomicU32,
}

/// [`BulkIo`] over a TCP connection to a device-side ADB peer (the simulator): the bytes are
/// the same as over USB, zero-length packets are dropped.
#[derive(Debug)]
pub struct StreamBulk {
    stream: TcpStream,
    mps: usize,
    faults: Arc<BulkFaults>,
}

impl StreamBulk {
    pub fn connect(addr: &str, faults: Arc<BulkFaults>) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            mps: 512,
            faults,
        })
    }

    fn broken(&self) -> bool {
        self.faults.broken.load(Ordering::Relaxed)
    }
}

impl BulkIo for StreamBulk {
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        if self.broken() {
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return Err(UsbError::Other("injected transfer error".into()));
        }
        let _ = self
            .stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        match (&self.stream).read(buf) {
            Ok(0) => Err(UsbError::NoDevice),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(UsbError::Timeout)
            }
            Err(_) => Err(UsbError::NoDevice),
        }
    }

    fn write(&self, data: &[u8], _timeout: Duration) -> Result<usize, UsbError> {
        if self.broken() {
            return Err(UsbError::Other("injected transfer error".into()));
        }
        (&self.stream)
            .write_all(data)
            .map(|()| data.len())
            .map_err(|_| UsbError::NoDevice)
    }

    fn max_packet_in(&self) -> usize {
        self.mps
    }

    fn max_packet_out(&self) -> usize {
        self.mps
    }

    fn clear_halt(&self, _input: bool) -> Result<(), UsbError> {
        self.faults.halts_cleared.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

type Connect = Arc<dyn Fn() -> Result<Box<dyn BulkIo>, OpenError> + Send + Sync>;

struct FakeDevice {
    listed: Listed,
    serial: Option<String>,
    connect: Connect,
    /// Opens still to refuse with EACCES.
    deny: u32,
}

#[derive(Default)]
struct FakeBus {
    devices: BTreeMap<String, FakeDevice>,
    next_address: u8,
    log: Vec<String>,
}

/// A fake USB bus for the manager.
#[derive(Default)]
pub struct FakeUsb {
    hotplug: bool,
    bus: Mutex<FakeBus>,
    wake: Mutex<Option<Arc<Notify>>>,
}

impl std::fmt::Debug for FakeUsb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUsb")
            .field("hotplug", &self.hotplug)
            .finish()
    }
}

impl FakeUsb {
    /// A bus with (`true`) or without hotplug notifications.
    pub fn new(hotplug: bool) -> Arc<Self> {
        Arc::new(Self {
            hotplug,
            ..Default::default()
        })
    }

    fn bus(&self) -> std::sync::MutexGuard<'_, FakeBus> {
        self.bus.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        if let Some(w) = &*self.wake.lock().unwrap_or_else(|p| p.into_inner()) {
            w.notify_one();
        }
    }

    /// Plugs a phone in at `port_path`; every open calls `connect` for a fresh interface.
    pub fn plug(
        &self,
        port_path: &str,
        serial: Option<&str>,
        connect: impl Fn() -> Result<Box<dyn BulkIo>, OpenError> + Send + Sync + 'static,
    ) {
        {
            let mut bus = self.bus();
            bus.next_address = bus.next_address.wrapping_add(1).max(1);
            let address = bus.next_address;
            bus.devices.insert(
                port_path.to_string(),
                FakeDevice {
                    listed: Listed {
                        port_path: port_path.to_string(),
                        address,
                        vendor_id: 0x18d1,
                        product_id: 0x4ee7,
                    },
                    serial: serial.map(str::to_string),
                    connect: Arc::new(connect),
                    deny: 0,
                },
            );
        }
        self.notify();
    }

    pub fn unplug(&self, port_path: &str) {
        self.bus().devices.remove(port_path);
        self.notify();
    }

    /// The next `n` opens of `port_path` fail with EACCES (`u32::MAX`: all of them).
    pub fn deny_opens(&self, port_path: &str, n: u32) {
        if let Some(d) = self.bus().devices.get_mut(port_path) {
            d.deny = n;
        }
    }

    /// `open <port>`, `denied <port>`, `reset <port>`, in order.
    pub fn log(&self) -> Vec<String> {
        self.bus().log.clone()
    }
}

impl UsbBackend for FakeUsb {
    type Bulk = Box<dyn BulkIo>;

    fn watch(&self, wake: Arc<Notify>) -> bool {
        if self.hotplug {
            *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = Some(wake);
        }
        self.hotplug
    }

    fn list(&self) -> Result<Vec<Listed>, UsbError> {
        Ok(self
            .bus()
            .devices
            .values()
            .map(|d| d.listed.clone())
            .collect())
    }

    fn open(&self, port_path: &str) -> Result<Opened<Self::Bulk>, OpenError> {
        let (connect, serial) = {
            let mut bus = self.bus();
            let Some(d) = bus.devices.get_mut(port_path) else {
                return Err(OpenError::Gone);
            };
            if d.deny > 0 {
                d.deny = d.deny.saturating_sub(u32::from(d.deny != u32::MAX));
                bus.log.push(format!("denied {port_path}"));
                return Err(OpenError::Permission);
            }
            let r = (d.connect.clone(), d.serial.clone());
            bus.log.push(format!("open {port_path}"));
            r
        };
        Ok(Opened {
            bulk: Arc::new(connect()?),
            serial,
        })
    }

    fn reset(&self, port_path: &str) -> Result<(), OpenError> {
        let mut bus = self.bus();
        if !bus.devices.contains_key(port_path) {
            return Err(OpenError::Gone);
        }
        bus.log.push(format!("reset {port_path}"));
        Ok(())
    }
}

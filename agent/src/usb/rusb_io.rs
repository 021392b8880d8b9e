//! Finding and opening ADB interfaces through rusb (the system libusb), and [`RusbBackend`],
//! the manager's backend over it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext as _};
use tokio::sync::Notify;

use super::manager::{OpenError, Opened, UsbBackend};
use super::policy::Listed;
use super::{ADB_CLASS, ADB_PROTOCOL, ADB_SUBCLASS, BulkIo, UsbError};

/// An ADB interface found on the bus.
#[derive(Debug, Clone)]
pub struct UsbCandidate {
    /// Physical location, e.g. `1-2.3` (bus, then port numbers): the phone's slot.
    pub port_path: String,
    /// Address on the bus (changes when the device re-enumerates).
    pub address: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    pub interface: u8,
    pub ep_in: u8,
    pub ep_out: u8,
    pub mps_in: usize,
    pub mps_out: usize,
    device: Device<Context>,
}

impl From<rusb::Error> for UsbError {
    fn from(e: rusb::Error) -> Self {
        match e {
            rusb::Error::Timeout => UsbError::Timeout,
            rusb::Error::Pipe => UsbError::Stall,
            rusb::Error::NoDevice => UsbError::NoDevice,
            other => UsbError::Other(other.to_string()),
        }
    }
}

/// The libusb context, or `None` when USB is unavailable here (no permission, no udev, a
/// container): that is "no USB phones", never a crash.
pub fn context() -> Option<Context> {
    match Context::new() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!(error = %e, "usb unavailable");
            None
        }
    }
}

fn port_path(d: &Device<Context>) -> String {
    super::policy::port_path(d.bus_number(), &d.port_numbers().unwrap_or_default())
}

/// Every ADB interface on the bus.
pub fn find_adb_interfaces(ctx: &Context) -> Vec<UsbCandidate> {
    let Ok(list) = ctx.devices() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for device in list.iter() {
        let Ok(dd) = device.device_descriptor() else {
            continue;
        };
        let Ok(cfg) = device.active_config_descriptor() else {
            continue;
        };
        for iface in cfg.interfaces() {
            for alt in iface.descriptors() {
                if (alt.class_code(), alt.sub_class_code(), alt.protocol_code())
                    != (ADB_CLASS, ADB_SUBCLASS, ADB_PROTOCOL)
                {
                    continue;
                }
                let mut ep_in = None;
                let mut ep_out = None;
                for ep in alt.endpoint_descriptors() {
                    if ep.transfer_type() != TransferType::Bulk {
                        continue;
                    }
                    let e = (ep.address(), usize::from(ep.max_packet_size()));
                    match ep.direction() {
                        Direction::In => ep_in = Some(e),
                        Direction::Out => ep_out = Some(e),
                    }
                }
                if let (Some((ei, mi)), Some((eo, mo))) = (ep_in, ep_out) {
                    out.push(UsbCandidate {
                        port_path: port_path(&device),
                        address: device.address(),
                        vendor_id: dd.vendor_id(),
                        product_id: dd.product_id(),
                        interface: alt.interface_number(),
                        ep_in: ei,
                        ep_out: eo,
                        mps_in: mi,
                        mps_out: mo,
                        device: device.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The IN endpoint must stay quiet this long before the first CNXN (see
/// [`super::drain_stale_input`]).
const STALE_QUIET: Duration = Duration::from_millis(50);
/// How long a stale header's payload may take to follow it.
const STALE_PAYLOAD_WAIT: Duration = Duration::from_secs(1);

/// An opened, claimed ADB interface.
#[derive(Debug)]
pub struct RusbBulk {
    handle: DeviceHandle<Context>,
    ep_in: u8,
    ep_out: u8,
    mps_in: usize,
    mps_out: usize,
    pub serial: Option<String>,
}

impl UsbCandidate {
    /// Opens the device and claims its ADB interface.
    pub fn open(&self) -> Result<Arc<RusbBulk>, UsbError> {
        Ok(self.open_raw()?)
    }

    fn open_raw(&self) -> Result<Arc<RusbBulk>, rusb::Error> {
        let handle = self.device.open()?;
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle.claim_interface(self.interface)?;
        let serial = self
            .device
            .device_descriptor()
            .ok()
            .and_then(|dd| handle.read_serial_number_string_ascii(&dd).ok());
        let bulk = RusbBulk {
            handle,
            ep_in: self.ep_in,
            ep_out: self.ep_out,
            mps_in: self.mps_in.max(1),
            mps_out: self.mps_out.max(1),
            serial,
        };
        super::drain_stale_input(&bulk, STALE_QUIET, STALE_PAYLOAD_WAIT);
        Ok(Arc::new(bulk))
    }
}

impl BulkIo for RusbBulk {
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        Ok(self.handle.read_bulk(self.ep_in, buf, timeout)?)
    }

    fn write(&self, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        Ok(self.handle.write_bulk(self.ep_out, data, timeout)?)
    }

    fn max_packet_in(&self) -> usize {
        self.mps_in
    }

    fn max_packet_out(&self) -> usize {
        self.mps_out
    }

    fn clear_halt(&self, input: bool) -> Result<(), UsbError> {
        Ok(self
            .handle
            .clear_halt(if input { self.ep_in } else { self.ep_out })?)
    }
}

/// How the manager learns about devices through libusb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Hotplug when libusb supports it and udevd runs (its control socket exists), else poll.
    Auto,
    Hotplug,
    /// Enumerate on a fresh libusb context each time. Needed without udevd: libusb's udev
    /// backend keeps its device list up to date only from udevd's events, so one long-lived
    /// context would never see a phone plugged in after it started.
    Poll,
}

fn udevd_running() -> bool {
    std::path::Path::new("/run/udev/control").exists()
}

/// [`UsbBackend`] over libusb.
pub struct RusbBackend {
    ctx: Context,
    hotplug: bool,
    registration: Mutex<Option<rusb::Registration<Context>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for RusbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RusbBackend")
            .field("hotplug", &self.hotplug)
            .finish()
    }
}

impl RusbBackend {
    /// `None` when USB is unavailable here ("no USB phones").
    pub fn new(discovery: Discovery) -> Option<Arc<Self>> {
        let ctx = context()?;
        let hotplug = match discovery {
            Discovery::Auto => rusb::has_hotplug() && udevd_running(),
            Discovery::Hotplug => rusb::has_hotplug(),
            Discovery::Poll => false,
        };
        Some(Arc::new(Self {
            ctx,
            hotplug,
            registration: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// The context to enumerate on: the long-lived one with hotplug, a fresh one when polling.
    fn scan_context(&self) -> Result<Context, UsbError> {
        if self.hotplug {
            Ok(self.ctx.clone())
        } else {
            Context::new().map_err(UsbError::from)
        }
    }

    fn candidate(&self, port_path: &str) -> Result<UsbCandidate, OpenError> {
        let ctx = self.scan_context().map_err(OpenError::Usb)?;
        find_adb_interfaces(&ctx)
            .into_iter()
            .find(|c| c.port_path == port_path)
            .ok_or(OpenError::Gone)
    }
}

impl Drop for RusbBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn open_error(e: rusb::Error) -> OpenError {
    match e {
        rusb::Error::Access => OpenError::Permission,
        rusb::Error::Busy => OpenError::Busy,
        rusb::Error::NoDevice | rusb::Error::NotFound => OpenError::Gone,
        other => OpenError::Usb(other.into()),
    }
}

struct Wake(Arc<Notify>);

impl rusb::Hotplug<Context> for Wake {
    fn device_arrived(&mut self, _device: Device<Context>) {
        self.0.notify_one();
    }

    fn device_left(&mut self, _device: Device<Context>) {
        self.0.notify_one();
    }
}

impl UsbBackend for RusbBackend {
    type Bulk = RusbBulk;

    fn watch(&self, wake: Arc<Notify>) -> bool {
        if !self.hotplug {
            return false;
        }
        let reg = match rusb::HotplugBuilder::new()
            .enumerate(false)
            .register(&self.ctx, Box::new(Wake(wake)))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "usb hotplug unavailable; polling");
                return false;
            }
        };
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = Some(reg);
        let (ctx, stop) = (self.ctx.clone(), self.stop.clone());
        let spawned = std::thread::Builder::new()
            .name("usb-hotplug".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = ctx.handle_events(Some(Duration::from_secs(2)));
                }
            });
        spawned.is_ok()
    }

    fn list(&self) -> Result<Vec<Listed>, UsbError> {
        let ctx = self.scan_context()?;
        Ok(find_adb_interfaces(&ctx)
            .into_iter()
            .map(|c| Listed {
                port_path: c.port_path,
                address: c.address,
                vendor_id: c.vendor_id,
                product_id: c.product_id,
            })
            .collect())
    }

    fn open(&self, port_path: &str) -> Result<Opened<RusbBulk>, OpenError> {
        let bulk = self.candidate(port_path)?.open_raw().map_err(open_error)?;
        let serial = bulk.serial.clone();
        Ok(Opened { bulk, serial })
    }

    fn reset(&self, port_path: &str) -> Result<(), OpenError> {
        let c = self.candidate(port_path)?;
        let handle = c.device.open().map_err(open_error)?;
        handle.reset().map_err(open_error)
    }
}

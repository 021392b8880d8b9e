//! Finding and opening ADB interfaces through rusb (the system libusb).

use std::sync::Arc;
use std::time::Duration;

use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext as _};

use super::{ADB_CLASS, ADB_PROTOCOL, ADB_SUBCLASS, BulkIo, UsbError};

/// An ADB interface found on the bus.
#[derive(Debug, Clone)]
pub struct UsbCandidate {
    /// Physical location, e.g. `1-2.3` (bus, then port numbers): the phone's slot.
    pub port_path: String,
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
    let ports = d.port_numbers().unwrap_or_default();
    let ports: Vec<String> = ports.iter().map(u8::to_string).collect();
    format!("{}-{}", d.bus_number(), ports.join("."))
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
        let handle = self.device.open()?;
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle.claim_interface(self.interface)?;
        let serial = self
            .device
            .device_descriptor()
            .ok()
            .and_then(|dd| handle.read_serial_number_string_ascii(&dd).ok());
        Ok(Arc::new(RusbBulk {
            handle,
            ep_in: self.ep_in,
            ep_out: self.ep_out,
            mps_in: self.mps_in.max(1),
            mps_out: self.mps_out.max(1),
            serial,
        }))
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

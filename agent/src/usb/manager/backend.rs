//! The manager's view of device access: [`UsbBackend`] (libusb in `rusb_io`, a fake in the
//! tests) and what opening a device gives or why it failed.

use std::sync::Arc;

use tokio::sync::Notify;

use super::super::policy::Listed;
use super::super::{BulkIo, UsbError};

/// Why opening a device failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// EACCES: the node's mode is not (yet) right for us.
    #[error("permission denied")]
    Permission,
    /// The interface is claimed (another program, or our previous connection still closing).
    #[error("device or interface busy")]
    Busy,
    #[error("device is gone")]
    Gone,
    #[error(transparent)]
    Usb(UsbError),
}

/// An opened, claimed ADB interface.
#[derive(Debug)]
pub struct Opened<B> {
    pub bulk: Arc<B>,
    /// The serial from the device descriptor, if the device has one.
    pub serial: Option<String>,
}

/// Device access the manager needs. Methods block (the manager calls them on the blocking
/// pool).
pub trait UsbBackend: Send + Sync + 'static {
    type Bulk: BulkIo;
    /// Starts hotplug notifications: `wake` is notified on every arrival and departure.
    /// Returns `false` when hotplug is unsupported here (the manager then polls).
    fn watch(&self, wake: Arc<Notify>) -> bool;
    /// Every ADB interface on the bus.
    fn list(&self) -> Result<Vec<Listed>, UsbError>;
    /// Opens the device at `port_path` and claims its ADB interface.
    fn open(&self, port_path: &str) -> Result<Opened<Self::Bulk>, OpenError>;
    /// Resets the device at `port_path` (a USB port reset; it may re-enumerate).
    fn reset(&self, port_path: &str) -> Result<(), OpenError>;
}

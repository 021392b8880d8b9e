//! usb (work in progress)

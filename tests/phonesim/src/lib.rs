//! The phone simulator: a device-side ADB peer (same protocol core as the agent, device role)
//! in front of a model of an Android phone: its shell, an in-memory filesystem for sync, and the
//! app's screens rendered as uiautomator XML. Tests and the local run script use it in place of
//! real phones; it is itself checked against Debian's real `adb` client.

pub mod model;
pub mod peer;

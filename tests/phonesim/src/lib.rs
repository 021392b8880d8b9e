//! The phone simulator: a device-side ADB peer (same protocol core as the agent, device role)
//! in front of `phonefarm-phonemodel`'s model of an Android phone. Tests and the local run
//! script use it in place of real phones; it is itself checked against Debian's real `adb`.

pub mod peer;

//! The Phonefarm agent: one per rack host. It speaks the ADB protocol itself (raw USB through
//! rusb, or TCP for network phones, emulators and the simulator), keeps one actor per phone,
//! drives apps through the UI layer (`phonefarm-flows`) with flows described by versioned flow
//! packs, and reports to the coordinator over NATS JetStream.

pub mod adb;
pub mod assets;
pub mod cli;
pub mod daemon;
pub mod doctor;
pub mod fleet;
pub mod phone;
pub mod phoneops;
pub mod runner;
pub mod uplink;
pub mod usb;

//! The wire contract between the coordinator and its agents: message types, subjects and the
//! versioned postcard envelope. This crate does no I/O and depends on serde, postcard, uuid and
//! time only, so both sides agree on bytes without sharing any runtime.

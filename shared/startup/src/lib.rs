//! What both binaries do when they start and while they run under systemd:
//! [`config`] reads a TOML configuration file into a `clap` parser (precedence flag >
//! environment > file > default) and [`notify`] speaks systemd's `sd_notify` protocol
//! (`READY=1`, `WATCHDOG=1`) over `$NOTIFY_SOCKET`.

pub mod config;
pub mod notify;

pub use config::{ConfigError, parse, parse_from};

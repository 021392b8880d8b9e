//! The ADB protocol core, sans-IO: the 24-byte message codec, CNXN banners and features, RSA
//! authentication, the session state machine (host and device roles) with stream flow control,
//! and the shell v2 and sync codecs. Nothing here touches sockets: it takes bytes and returns
//! messages and events. [`transport`] moves those bytes over TCP or an in-memory duplex.

pub mod auth;
pub mod banner;
#[cfg(any(test, fuzzing))]
pub mod checks;
pub mod message;
pub mod session;
pub mod shell;
pub mod sync;
pub mod transport;

pub use message::{Message, ParseError, Parser};
pub use session::{Event, PeerInfo, Session, SessionError, State};

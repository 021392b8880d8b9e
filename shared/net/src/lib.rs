//! Outbound HTTP to URLs a caller gave us, behind the SSRF guard: the coordinator's signed
//! callbacks and asset checks, and the agent's asset downloads, go through [`GuardedClient`]
//! and nothing else.
//!
//! The guard works on the addresses actually dialled, in three places:
//!
//! - host names are resolved by a [`Lookup`] (the system resolver in production) whose answers
//!   pass through the [`SsrfPolicy`] before reqwest sees them ([`GuardedResolver`]): a refused
//!   address is never dialled, and a resolver that answers a public address now and a private
//!   one at connect time (DNS rebinding) gains nothing, since each connect resolves afresh
//!   through the filter;
//! - IP-literal hosts (`http://127.0.0.1/`, `http://[::ffff:10.0.0.1]/`), which reqwest dials
//!   without resolving, are checked before the request is sent;
//! - every established connection's peer address is checked again before a byte of the request
//!   is written ([`peer`]), so nothing that bypasses the resolver can reach a refused address.
//!
//! Redirects are never followed by reqwest: [`GuardedClient::fetch`] follows them itself, each
//! hop parsed, scheme-checked and dialled through the same guard, up to a limit; the other
//! methods return a 3xx as it is. Proxies from the environment are ignored, every request has a
//! timeout, and downloads have a size cap and an accepted content-type list.
//!
//! Errors never carry the URL (a presigned URL's query is a credential).

mod client;
mod fetch;
pub mod peer;
mod policy;
mod resolve;
pub mod testing;

use std::error::Error as StdError;
use std::net::IpAddr;

pub use client::{AssetError, BuildError, GuardedClient, GuardedClientBuilder, SendError};
pub use fetch::{FetchError, FetchLimits, Fetched};
pub use policy::{Refusal, SsrfPolicy};
pub use resolve::{GuardedResolver, Lookup, Lookups, SystemLookup};

/// A URL or address refused by the SSRF guard, or a URL that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// The address is not a public unicast address and not in the allow-list.
    #[error("address {ip} is not allowed ({reason})")]
    Refused {
        /// The refused address.
        ip: IpAddr,
        /// The range it falls in.
        reason: Refusal,
    },
    /// The host name resolved, but only to refused addresses.
    #[error("host {host} resolves only to refused addresses (first: {ip}, {reason})")]
    NoAllowedAddress {
        /// The host name.
        host: String,
        /// The first refused address.
        ip: IpAddr,
        /// Why it was refused.
        reason: Refusal,
    },
    /// The host name did not resolve.
    #[error("cannot resolve host {host}: {message}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's message.
        message: String,
    },
    /// The string is not an absolute URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// Only `http` and `https` are allowed.
    #[error("unsupported url scheme {0:?}: only http and https are allowed")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("url has no host")]
    MissingHost,
    /// An allow-list entry that is neither a network nor an address.
    #[error("invalid allow-list entry {0:?}: expected an address or a network like 10.0.0.0/8")]
    InvalidAllowEntry(String),
    /// A connection was established but its peer address is unknown, so it cannot be checked.
    #[error("the connected address is unknown; refused")]
    UnknownPeer,
}

impl SsrfError {
    /// The range a refused address falls in, for a refusal of an address (by literal, by every
    /// answer of a name, or by the connected peer); `None` for unusable URLs.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            SsrfError::Refused { reason, .. } | SsrfError::NoAllowedAddress { reason, .. } => {
                Some(*reason)
            }
            _ => None,
        }
    }
}

/// `outer: inner: innermost`, skipping repeated messages.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(source) = current {
        let message = source.to_string();
        if !out.ends_with(&message) {
            out.push_str(": ");
            out.push_str(&message);
        }
        current = source.source();
    }
    out
}

/// The first error of type `T` in `err`'s source chain (`err` included).
pub(crate) fn find_source<'a, T: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

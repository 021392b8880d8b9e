//! Name resolution behind the policy: a [`Lookup`] answers (the system resolver in production,
//! scripted answers in tests) and [`GuardedResolver`] keeps only the addresses the policy
//! allows before reqwest dials any of them.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{SsrfError, SsrfPolicy};

/// What a [`Lookup`] returns: every address the name has now, in the resolver's order.
pub type Lookups = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves a host name to addresses. The guard calls it for every connection it opens (and for
/// [`GuardedClient::check_url`](crate::GuardedClient::check_url)); it never caches.
pub trait Lookup: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `host` (a name, never an IP literal).
    fn lookup(&self, host: &str) -> Lookups;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Lookups {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

/// A `reqwest::dns::Resolve` that asks its [`Lookup`] and keeps only the addresses the policy
/// allows; with none left, resolution fails with [`SsrfError::NoAllowedAddress`] (found as the
/// source of reqwest's connect error).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<SsrfPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    /// A resolver asking `lookup` and enforcing `policy`.
    pub fn new(policy: Arc<SsrfPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// The allowed addresses of `host`, in the resolver's order.
    pub async fn resolve_allowed(&self, host: &str) -> Result<Vec<IpAddr>, SsrfError> {
        let addrs = lookup(self.lookup.as_ref(), host).await?;
        filter_allowed(&self.policy, host, addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let allowed = this.resolve_allowed(name.as_str()).await?;
            let addrs = allowed.into_iter().map(|ip| SocketAddr::new(ip, 0));
            Ok(Box::new(addrs.collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}

/// Asks `lookup` for `host`, a failure as [`SsrfError::Resolve`].
pub(crate) async fn lookup(lookup: &dyn Lookup, host: &str) -> Result<Vec<IpAddr>, SsrfError> {
    lookup.lookup(host).await.map_err(|err| SsrfError::Resolve {
        host: host.to_owned(),
        message: err.to_string(),
    })
}

/// Keeps the allowed addresses; fails when none is allowed (or none was found).
pub(crate) fn filter_allowed(
    policy: &SsrfPolicy,
    host: &str,
    addrs: Vec<IpAddr>,
) -> Result<Vec<IpAddr>, SsrfError> {
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(addrs.len());
    for ip in addrs {
        match policy.check_ip(ip) {
            Ok(()) => allowed.push(ip),
            Err(SsrfError::Refused { ip, reason }) => {
                first_refusal.get_or_insert((ip, reason));
            }
            Err(other) => return Err(other),
        }
    }
    if allowed.is_empty() {
        return Err(match first_refusal {
            Some((ip, reason)) => SsrfError::NoAllowedAddress {
                host: host.to_owned(),
                ip,
                reason,
            },
            None => SsrfError::Resolve {
                host: host.to_owned(),
                message: "no addresses found".to_owned(),
            },
        });
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Refusal;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().expect("test ip")).collect()
    }

    #[test]
    fn a_mixed_answer_keeps_only_the_allowed_addresses_in_order() {
        let policy = SsrfPolicy::default();
        let answer = ips(&[
            "10.0.0.1",
            "93.184.216.34",
            "169.254.169.254",
            "2606:4700::1",
        ]);
        assert_eq!(
            filter_allowed(&policy, "cdn.test", answer),
            Ok(ips(&["93.184.216.34", "2606:4700::1"]))
        );
    }

    #[test]
    fn an_answer_of_refused_addresses_names_the_first() {
        let policy = SsrfPolicy::default();
        assert_eq!(
            filter_allowed(&policy, "cdn.test", ips(&["127.0.0.1", "10.0.0.1"])),
            Err(SsrfError::NoAllowedAddress {
                host: "cdn.test".into(),
                ip: "127.0.0.1".parse().expect("ip"),
                reason: Refusal::Loopback,
            })
        );
        assert!(matches!(
            filter_allowed(&policy, "cdn.test", vec![]),
            Err(SsrfError::Resolve { .. })
        ));
    }
}

//! Outbound HTTP with the SSRF guard.
//!
//! Every request the coordinator makes to a caller-supplied URL (signed callbacks, the HEAD
//! check of ingest asset URLs) goes through [`GuardedClient`]. The guard works on the addresses
//! actually dialled:
//!
//! - host names are resolved by [`GuardedResolver`], a `reqwest::dns::Resolve` that drops every
//!   address the [`SsrfPolicy`] refuses, so a name that resolves to loopback is refused at
//!   connect time and there is no check-then-use window (DNS rebinding);
//! - reqwest never consults the resolver for IP-literal hosts, so [`GuardedClient`] checks
//!   literal hosts (`http://127.0.0.1/`, `http://[::ffff:127.0.0.1]/`) before sending;
//! - redirects are never followed (a 3xx is returned as it is), proxies from the environment
//!   are ignored, and every request has a timeout.
//!
//! [`GuardedClient::check_url`] is the early, request-time check the API uses to reject URLs
//! that resolve only to refused addresses; it is advisory, the connect-time guard is the
//! enforcement.

mod policy;

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use url_host::HostKind;

pub use policy::{Refusal, SsrfPolicy};

/// How much of a response body is read (and discarded) to keep the connection reusable.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long reading it may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest [`GuardedClient::check_url`] waits for name resolution.
const CHECK_URL_DNS_TIMEOUT: Duration = Duration::from_secs(3);

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
}

/// Building the client failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the http client")]
pub struct BuildError(#[source] reqwest::Error);

/// A guarded request failed before a response status arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The URL or the address it resolves to was refused.
    #[error("refused by the ssrf guard: {0}")]
    Ssrf(#[from] SsrfError),
    /// No response within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be established (refused, unreachable, TLS failure).
    #[error("connect failed: {0}")]
    Connect(String),
    /// Any other transport failure.
    #[error("request failed: {0}")]
    Request(String),
}

impl SendError {
    /// Whether retrying cannot help: the URL is unusable, or its host is an IP literal the
    /// policy refuses. A name that resolved only to refused addresses is not permanent (DNS
    /// may change).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::Ssrf(
                SsrfError::Refused { .. }
                    | SsrfError::InvalidUrl(_)
                    | SsrfError::UnsupportedScheme(_)
                    | SsrfError::MissingHost
            )
        )
    }
}

/// Why an asset URL failed its HEAD check.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The request did not produce a response.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The server answered with a non-2xx status (redirects included: they are not followed).
    #[error("asset answered with status {0}")]
    Status(u16),
}

impl From<SsrfError> for AssetError {
    fn from(err: SsrfError) -> Self {
        AssetError::Send(SendError::Ssrf(err))
    }
}

/// A `reqwest::dns::Resolve` that resolves with the system resolver and keeps only the addresses
/// the policy allows; with none left, resolution fails with [`SsrfError::NoAllowedAddress`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<SsrfPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<SsrfPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookup(&host, 0).await?;
            let allowed = filter_allowed(&policy, &host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, SsrfError> {
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|err| SsrfError::Resolve {
            host: host.to_owned(),
            message: err.to_string(),
        })
}

/// Keeps the allowed addresses; fails when none is allowed (or none was found).
fn filter_allowed(
    policy: &SsrfPolicy,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match policy.check_ip(addr.ip()) {
            Ok(()) => allowed.push(addr),
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

/// The HTTP client for caller-supplied URLs: SSRF-guarded, no redirects, no proxies, with a
/// timeout on every request. Cheap to clone (shares one connection pool).
#[derive(Clone, Debug)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: Arc<SsrfPolicy>,
    timeout: Duration,
}

impl GuardedClient {
    /// Builds the client. `timeout` bounds each whole request (connect, send, response head);
    /// the connect phase alone is bounded by `min(timeout, 5 s)`.
    pub fn new(policy: SsrfPolicy, timeout: Duration) -> Result<Self, BuildError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(GuardedResolver::new(Arc::clone(&policy)))
            .user_agent(concat!("phonefarm-coordinator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError)?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// The underlying client. Requests made with it directly still go through the guarded
    /// resolver, but IP-literal hosts are NOT checked: prefer the methods of this type, or call
    /// [`GuardedClient::check_literal`] first.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The address policy.
    pub fn policy(&self) -> &SsrfPolicy {
        &self.policy
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Parses `url`, requires `http`/`https` and a host, and checks an IP-literal host against
    /// the policy (names are left to the resolver at connect time).
    pub fn check_literal(&self, url: &str) -> Result<Url, SsrfError> {
        let parsed = parse_http_url(url)?;
        if let HostKind::Ip(ip) = url_host::kind(&parsed)? {
            self.policy.check_ip(ip)?;
        }
        Ok(parsed)
    }

    /// Request-time check of a URL: scheme `http`/`https`, and the host is an allowed address or
    /// a name resolving only to allowed addresses. Used by the API to reject callback and asset
    /// URLs early. A name that does not resolve (now) is an error too; callers that want to
    /// accept unresolvable names can match [`SsrfError::Resolve`]. Name resolution is bounded by
    /// `min(timeout, 3 s)` so a slow resolver cannot hold an API request for long.
    pub async fn check_url(&self, url: &str) -> Result<(), SsrfError> {
        let parsed = parse_http_url(url)?;
        match url_host::kind(&parsed)? {
            HostKind::Ip(ip) => self.policy.check_ip(ip),
            HostKind::Name(host) => {
                let port = parsed.port_or_known_default().unwrap_or(80);
                let dns_timeout = self.timeout.min(CHECK_URL_DNS_TIMEOUT);
                let addrs = match tokio::time::timeout(dns_timeout, lookup(&host, port)).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(SsrfError::Resolve {
                            host,
                            message: "timed out".to_owned(),
                        });
                    }
                };
                if addrs.is_empty() {
                    return Err(SsrfError::Resolve {
                        host,
                        message: "no addresses found".to_owned(),
                    });
                }
                for addr in addrs {
                    if let Err(SsrfError::Refused { ip, reason }) = self.policy.check_ip(addr.ip())
                    {
                        return Err(SsrfError::NoAllowedAddress { host, ip, reason });
                    }
                }
                Ok(())
            }
        }
    }

    /// `HEAD url` through the guard; `Ok` on a 2xx answer. Redirects are not followed, so a 3xx
    /// is an error ([`AssetError::Status`]).
    pub async fn head_ok(&self, url: &str) -> Result<(), AssetError> {
        let parsed = self.check_literal(url)?;
        let response = self
            .client
            .head(parsed)
            .send()
            .await
            .map_err(classify_reqwest)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AssetError::Status(status.as_u16()))
        }
    }

    /// `POST url` with `Content-Type: application/json`, the given extra headers and the body
    /// bytes exactly as given, through the guard. Returns the response status (any status,
    /// including 3xx: redirects are not followed). Up to 64 KiB of the response body is read
    /// and discarded (for at most 1 s) so the connection can be reused.
    pub async fn post_json_bytes(
        &self,
        url: &str,
        headers: HeaderMap,
        body: impl Into<reqwest::Body>,
    ) -> Result<StatusCode, SendError> {
        let parsed = self.check_literal(url)?;
        let response = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(classify_reqwest)?;
        let status = response.status();
        drain(response).await;
        Ok(status)
    }
}

/// Reads and discards a small response body so the connection can go back to the pool; a
/// large or slow body is abandoned (the connection is then closed). The status has already
/// decided the outcome.
async fn drain(mut response: reqwest::Response) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut read = 0usize;
        while let Ok(Some(chunk)) = response.chunk().await {
            read = read.saturating_add(chunk.len());
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

fn parse_http_url(url: &str) -> Result<Url, SsrfError> {
    let parsed = Url::parse(url).map_err(|err| SsrfError::InvalidUrl(err.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(SsrfError::UnsupportedScheme(other.to_owned())),
    }
}

/// Turns a reqwest error into a [`SendError`], surfacing an SSRF refusal from the resolver and
/// never carrying the URL (it may hold credentials or tokens).
fn classify_reqwest(err: reqwest::Error) -> SendError {
    let err = err.without_url();
    if let Some(ssrf) = find_source::<SsrfError>(&err) {
        return SendError::Ssrf(ssrf.clone());
    }
    let message = error_chain(&err);
    if err.is_timeout() {
        SendError::Timeout
    } else if err.is_connect() {
        SendError::Connect(message)
    } else {
        SendError::Request(message)
    }
}

fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// `outer: inner: innermost`, skipping repeated messages.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
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

/// How the host of a parsed URL must be checked.
mod url_host {
    use std::net::IpAddr;

    use reqwest::Url;

    use super::SsrfError;

    pub(super) enum HostKind {
        /// An IP literal: reqwest dials it without resolving, so it is checked up front.
        Ip(IpAddr),
        /// A name: checked by the guarded resolver at connect time.
        Name(String),
    }

    pub(super) fn kind(url: &Url) -> Result<HostKind, SsrfError> {
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or(SsrfError::MissingHost)?;
        // IPv6 literals come bracketed. The URL parser already turns IPv4 forms like `127.1`
        // or `0x7f.0.0.1` into dotted quads; the trailing-dot trim is a second line of defence
        // in case a literal slips through as a name.
        let bare = host
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or_else(|| host.trim_end_matches('.'));
        match bare.parse::<IpAddr>() {
            Ok(ip) => Ok(HostKind::Ip(ip)),
            Err(_) => Ok(HostKind::Name(host.to_owned())),
        }
    }
}

//! [`GuardedClient`]: the one HTTP client for caller-supplied URLs (see the crate docs).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use crate::peer::PeerCheckLayer;
use crate::resolve::{GuardedResolver, Lookup, SystemLookup, lookup};
use crate::{SsrfError, SsrfPolicy, find_source};
use url_host::HostKind;

/// How much of a response body is read (and discarded) to keep the connection reusable.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long reading it may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest [`GuardedClient::check_url`] waits for name resolution.
const CHECK_URL_DNS_TIMEOUT: Duration = Duration::from_secs(3);

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

/// The HTTP client for caller-supplied URLs: SSRF-guarded (resolver, literal hosts, connected
/// peers), no redirects, no proxies, with a timeout on every request. Cheap to clone (shares
/// one connection pool).
#[derive(Clone, Debug)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: Arc<SsrfPolicy>,
    lookup: Arc<dyn Lookup>,
    timeout: Duration,
}

/// Builds a [`GuardedClient`]: [`GuardedClient::builder`].
#[derive(Debug)]
pub struct GuardedClientBuilder {
    policy: SsrfPolicy,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    user_agent: String,
    lookup: Arc<dyn Lookup>,
}

impl GuardedClientBuilder {
    /// Bounds each whole request (connect, send, response head and body); 10 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bounds the connect phase alone; `min(timeout, 5 s)` by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The `User-Agent` header; `phonefarm/<version>` by default.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Resolves names with `lookup` instead of the system resolver (tests script answers with
    /// it). Its answers go through the policy like the system resolver's.
    pub fn lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// The client.
    pub fn build(self) -> Result<GuardedClient, BuildError> {
        let policy = Arc::new(self.policy);
        let connect_timeout = self
            .connect_timeout
            .unwrap_or_else(|| self.timeout.min(Duration::from_secs(5)));
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(GuardedResolver::new(
                Arc::clone(&policy),
                Arc::clone(&self.lookup),
            ))
            .connector_layer(PeerCheckLayer::new(Arc::clone(&policy)))
            .user_agent(self.user_agent)
            .build()
            .map_err(BuildError)?;
        Ok(GuardedClient {
            client,
            policy,
            lookup: self.lookup,
            timeout: self.timeout,
        })
    }
}

impl GuardedClient {
    /// A builder enforcing `policy`, with the defaults listed on its methods.
    pub fn builder(policy: SsrfPolicy) -> GuardedClientBuilder {
        GuardedClientBuilder {
            policy,
            timeout: Duration::from_secs(10),
            connect_timeout: None,
            user_agent: concat!("phonefarm/", env!("CARGO_PKG_VERSION")).to_owned(),
            lookup: Arc::new(SystemLookup),
        }
    }

    /// The client with the defaults but `timeout` (see [`GuardedClientBuilder::timeout`]).
    pub fn new(policy: SsrfPolicy, timeout: Duration) -> Result<Self, BuildError> {
        Self::builder(policy).timeout(timeout).build()
    }

    /// The address policy.
    pub fn policy(&self) -> &SsrfPolicy {
        &self.policy
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The underlying client, for this crate's request paths (which check literal hosts
    /// first); the resolver and the peer check guard it whatever the path.
    pub(crate) fn inner(&self) -> &reqwest::Client {
        &self.client
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
                let dns_timeout = self.timeout.min(CHECK_URL_DNS_TIMEOUT);
                let resolved = lookup(self.lookup.as_ref(), &host);
                let addrs = match tokio::time::timeout(dns_timeout, resolved).await {
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
                for ip in addrs {
                    if let Err(SsrfError::Refused { ip, reason }) = self.policy.check_ip(ip) {
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

pub(crate) fn parse_http_url(url: &str) -> Result<Url, SsrfError> {
    let parsed = Url::parse(url).map_err(|err| SsrfError::InvalidUrl(err.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(SsrfError::UnsupportedScheme(other.to_owned())),
    }
}

/// Turns a reqwest error into a [`SendError`], surfacing an SSRF refusal from the resolver and
/// never carrying the URL (it may hold credentials or tokens).
pub(crate) fn classify_reqwest(err: reqwest::Error) -> SendError {
    let err = err.without_url();
    if let Some(ssrf) = find_source::<SsrfError>(&err) {
        return SendError::Ssrf(ssrf.clone());
    }
    let message = crate::error_chain(&err);
    if err.is_timeout() {
        SendError::Timeout
    } else if err.is_connect() {
        SendError::Connect(message)
    } else {
        SendError::Request(message)
    }
}

/// How the host of a parsed URL must be checked.
pub(crate) mod url_host {
    use std::net::IpAddr;

    use reqwest::Url;

    use super::SsrfError;

    pub(crate) enum HostKind {
        /// An IP literal: reqwest dials it without resolving, so it is checked up front.
        Ip(IpAddr),
        /// A name: checked by the guarded resolver at connect time.
        Name(String),
    }

    pub(crate) fn kind(url: &Url) -> Result<HostKind, SsrfError> {
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

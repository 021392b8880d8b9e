//! Fetching a work order's media over HTTP(S): the `video_path` of a `post_video` item before
//! it is pushed to the phone.
//!
//! The download goes through the SSRF guard the coordinator's callbacks use
//! ([`phonefarm_net::GuardedClient`]): every address dialled, the first and each redirect hop's,
//! resolved or literal, and the peer of every connection, must pass the agent's
//! [`SsrfPolicy`] (public unicast only, unless an allow-list says otherwise), so a URL or a
//! redirect aimed at the metadata service, loopback or the rack's LAN is refused from the rack.
//! Proxy environment variables are ignored.
//!
//! [`fetch`] follows at most [`FetchLimits::max_redirects`] redirects, accepts only the content
//! types in [`FetchLimits::content_types`] (video by default), streams the body into memory
//! with a hard size cap (refused up front when the `Content-Length` says too much, aborted
//! mid-stream when the body grows past the cap), bounds the whole exchange by a total timeout,
//! and checks an expected SHA-256 if one is given. Build the client with [`client`] (once, and
//! share it: it pools connections).

use std::time::Duration;

use phonefarm_net::{GuardedClient, GuardedClientBuilder, Refusal, SendError, SsrfError};
use reqwest::Url;
use sha2::{Digest, Sha256};

pub use phonefarm_net::SsrfPolicy;

/// The content types a video may be served as by default: any `video/*`, and the generic
/// binary types object stores answer for files uploaded without one.
pub const VIDEO_TYPES: &[&str] = &["video/*", "application/octet-stream", "binary/octet-stream"];

/// How much, how long and what to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// The body's expected SHA-256, 64 hex digits (either case); `None` accepts any body.
    pub expected_sha256: Option<String>,
    /// For establishing a connection (used by [`client`]).
    pub connect_timeout: Duration,
    /// For the whole fetch: connecting, redirects, headers and body.
    pub total_timeout: Duration,
    /// Redirects followed before giving up; each hop is checked like the first.
    pub max_redirects: usize,
    /// Accepted media types (`video/*` matches any subtype); empty accepts anything.
    pub content_types: Vec<String>,
}

impl Default for FetchLimits {
    /// 512 MiB, no checksum, 10 s to connect, 10 min in all, 3 redirects, [`VIDEO_TYPES`].
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            expected_sha256: None,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(600),
            max_redirects: 3,
            content_types: VIDEO_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// A fetched asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lower-case hex.
    pub sha256_hex: String,
    /// The response's `Content-Type`, if it had a readable one.
    pub content_type: Option<String>,
}

/// Why a fetch failed. No variant carries the URL (a presigned URL's query is a credential).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad url: {0}")]
    BadUrl(String),
    #[error("unsupported url scheme {0:?}: only http and https are fetched")]
    Scheme(String),
    #[error("bad expected sha-256 {0:?}: want 64 hex digits")]
    BadExpectedChecksum(String),
    /// The URL, a redirect target, or an address one of them resolved or connected to is not
    /// allowed (`reason`: the range, e.g. `loopback`, `link_local`, `private`).
    #[error("asset {message}")]
    Refused {
        reason: Option<Refusal>,
        message: String,
    },
    #[error("http status {0}")]
    Status(u16),
    #[error("asset too large: content-length {length} exceeds the limit of {limit} bytes")]
    TooLargeDeclared { length: u64, limit: u64 },
    #[error("asset too large: more than the limit of {limit} bytes received")]
    TooLarge { limit: u64 },
    #[error("asset {0}")]
    ContentType(String),
    #[error("checksum mismatch: expected sha-256 {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("asset fetch timed out after {0:?}")]
    Timeout(Duration),
    #[error("asset redirect failed: {0}")]
    Redirect(String),
    #[error("could not connect to the asset host: {0}")]
    Connect(String),
    #[error("asset request failed: {0}")]
    Request(String),
    #[error("could not build the http client")]
    Client(#[source] phonefarm_net::BuildError),
}

impl FetchError {
    /// A short machine reason for the work order's failure: `asset_bad_url`,
    /// `asset_url_not_allowed:<range>`, `asset_http_status:404`, `asset_too_large`,
    /// `asset_content_type`, `asset_checksum_mismatch`, `asset_timeout`, `asset_unreachable`.
    pub fn code(&self) -> String {
        match self {
            Self::BadUrl(_) | Self::Scheme(_) | Self::BadExpectedChecksum(_) => {
                "asset_bad_url".into()
            }
            Self::Refused { reason, .. } => format!(
                "asset_url_not_allowed:{}",
                reason.map_or("unknown_peer", Refusal::as_str)
            ),
            Self::Status(status) => format!("asset_http_status:{status}"),
            Self::TooLargeDeclared { .. } | Self::TooLarge { .. } => "asset_too_large".into(),
            Self::ContentType(_) => "asset_content_type".into(),
            Self::ChecksumMismatch { .. } => "asset_checksum_mismatch".into(),
            Self::Timeout(_) => "asset_timeout".into(),
            Self::Redirect(_) | Self::Connect(_) | Self::Request(_) | Self::Client(_) => {
                "asset_unreachable".into()
            }
        }
    }

    fn from_net(err: phonefarm_net::FetchError, limits: &FetchLimits) -> Self {
        use phonefarm_net::FetchError as N;
        match err {
            N::Refused { redirects, error } => match error {
                SsrfError::InvalidUrl(m) if redirects == 0 => Self::BadUrl(m),
                SsrfError::MissingHost if redirects == 0 => Self::BadUrl(error.to_string()),
                SsrfError::UnsupportedScheme(s) if redirects == 0 => Self::Scheme(s),
                SsrfError::InvalidUrl(_)
                | SsrfError::MissingHost
                | SsrfError::UnsupportedScheme(_) => Self::Redirect(error.to_string()),
                SsrfError::Resolve { .. } => Self::Connect(error.to_string()),
                error => {
                    let reason = error.refusal();
                    let message = N::Refused { redirects, error }.to_string();
                    Self::Refused { reason, message }
                }
            },
            N::Send(SendError::Timeout) | N::Timeout(_) => Self::Timeout(limits.total_timeout),
            N::Send(SendError::Connect(m)) => Self::Connect(m),
            N::Send(SendError::Request(m)) => Self::Request(m),
            N::Send(SendError::Ssrf(error)) => Self::Refused {
                reason: error.refusal(),
                message: format!("refused by the ssrf guard: {error}"),
            },
            N::Status(status) => Self::Status(status),
            err @ (N::TooManyRedirects { .. } | N::BadRedirect(_)) => {
                Self::Redirect(err.to_string())
            }
            N::TooLargeDeclared { length, limit } => Self::TooLargeDeclared { length, limit },
            N::TooLarge { limit } => Self::TooLarge { limit },
            err @ N::ContentType { .. } => Self::ContentType(err.to_string()),
        }
    }
}

/// The guarded client for [`fetch`], to be completed (tests give it a scripted resolver):
/// `policy` decides which addresses may be dialled; `limits.connect_timeout` and
/// `limits.total_timeout` bound each connect and each request.
pub fn client_builder(limits: &FetchLimits, policy: SsrfPolicy) -> GuardedClientBuilder {
    GuardedClient::builder(policy)
        .timeout(limits.total_timeout)
        .connect_timeout(limits.connect_timeout)
        .user_agent(concat!("phonefarm-agent/", env!("CARGO_PKG_VERSION")))
}

/// The guarded client for [`fetch`] (see [`client_builder`]).
pub fn client(limits: &FetchLimits, policy: SsrfPolicy) -> Result<GuardedClient, FetchError> {
    client_builder(limits, policy)
        .build()
        .map_err(FetchError::Client)
}

/// Fetches `url` (http or https) within `limits`; see the module docs. Only the URL's host is
/// logged.
#[tracing::instrument(skip_all, fields(host = tracing::field::Empty))]
pub async fn fetch(
    client: &GuardedClient,
    url: &str,
    limits: &FetchLimits,
) -> Result<Asset, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    tracing::Span::current().record("host", parsed.host_str().unwrap_or(""));
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(parsed.scheme().to_string()));
    }
    let expected = limits
        .expected_sha256
        .as_deref()
        .map(|hex| {
            let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| hex.to_ascii_lowercase())
                .ok_or_else(|| FetchError::BadExpectedChecksum(hex.to_string()))
        })
        .transpose()?;
    let net_limits = phonefarm_net::FetchLimits {
        max_bytes: limits.max_bytes,
        total_timeout: limits.total_timeout,
        max_redirects: limits.max_redirects,
        content_types: limits.content_types.clone(),
    };
    let fetched = client
        .fetch(parsed.as_str(), &net_limits)
        .await
        .map_err(|e| FetchError::from_net(e, limits))?;
    let sha256_hex = hex::encode(Sha256::digest(&fetched.bytes));
    if let Some(expected) = expected
        && expected != sha256_hex
    {
        return Err(FetchError::ChecksumMismatch {
            expected,
            actual: sha256_hex,
        });
    }
    tracing::debug!(bytes = fetched.bytes.len(), sha256 = %sha256_hex, redirects = fetched.redirects, "asset fetched");
    Ok(Asset {
        bytes: fetched.bytes,
        sha256_hex,
        content_type: fetched.content_type,
    })
}

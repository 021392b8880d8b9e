//! Fetching a work order's media over HTTP(S): the `video_path` of a `post_video` item (API.md
//! section 9) before it is pushed to the phone.
//!
//! [`fetch`] streams the body into memory with a hard size cap (refused up front when the
//! `Content-Length` says too much, aborted mid-stream when a body without one grows past the
//! cap), hashes it with SHA-256 on the way and checks an expected digest if one is given, and
//! bounds the whole exchange, redirects and body included, by a total timeout. Only `http` and
//! `https` URLs are fetched, and redirects only to such URLs.
//!
//! The connect timeout and the redirect limit live in the [`reqwest::Client`]: build it with
//! [`client`] (once, and share it: it pools connections). The coordinator guards the URL against
//! SSRF when it accepts the item; the agent does not repeat that.

use std::time::Duration;

use reqwest::Url;
use sha2::{Digest, Sha256};

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
    /// Redirects followed before giving up (used by [`client`]).
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    /// 512 MiB, no checksum, 10 s to connect, 10 min in all, 3 redirects.
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            expected_sha256: None,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(600),
            max_redirects: 3,
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

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad url: {0}")]
    BadUrl(String),
    #[error("unsupported url scheme {0:?}: only http and https are fetched")]
    Scheme(String),
    #[error("bad expected sha-256 {0:?}: want 64 hex digits")]
    BadExpectedChecksum(String),
    #[error("http status {0}")]
    Status(u16),
    #[error("asset too large: content-length {length} exceeds the limit of {limit} bytes")]
    TooLargeDeclared { length: u64, limit: u64 },
    #[error("asset too large: more than the limit of {limit} bytes received")]
    TooLarge { limit: u64 },
    #[error("checksum mismatch: expected sha-256 {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("asset fetch timed out after {0:?}")]
    Timeout(Duration),
    #[error("too many redirects, or a redirect to a non-http(s) url")]
    Redirect(#[source] reqwest::Error),
    #[error("could not connect to the asset host")]
    Connect(#[source] reqwest::Error),
    #[error("asset request failed")]
    Request(#[source] reqwest::Error),
    #[error("could not build the http client")]
    Client(#[source] reqwest::Error),
}

impl FetchError {
    /// A short machine reason for the work order's failure: `asset_bad_url`,
    /// `asset_http_status:404`, `asset_too_large`, `asset_checksum_mismatch`, `asset_timeout`,
    /// `asset_unreachable`.
    pub fn code(&self) -> String {
        match self {
            Self::BadUrl(_) | Self::Scheme(_) | Self::BadExpectedChecksum(_) => {
                "asset_bad_url".into()
            }
            Self::Status(status) => format!("asset_http_status:{status}"),
            Self::TooLargeDeclared { .. } | Self::TooLarge { .. } => "asset_too_large".into(),
            Self::ChecksumMismatch { .. } => "asset_checksum_mismatch".into(),
            Self::Timeout(_) => "asset_timeout".into(),
            Self::Redirect(_) | Self::Connect(_) | Self::Request(_) | Self::Client(_) => {
                "asset_unreachable".into()
            }
        }
    }
}

/// A client for [`fetch`]: `limits.connect_timeout`, at most `limits.max_redirects` redirects,
/// each to an http(s) URL.
pub fn client(limits: &FetchLimits) -> Result<reqwest::Client, FetchError> {
    let max_redirects = limits.max_redirects;
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` holds the original URL and every earlier hop.
        if attempt.previous().len() > max_redirects {
            attempt.error("too many redirects")
        } else if !is_http(attempt.url()) {
            attempt.error("redirect to a non-http(s) url")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .redirect(policy)
        .build()
        .map_err(FetchError::Client)
}

/// Fetches `url` (http or https) within `limits`; see the module docs.
///
/// Neither the errors nor the logs carry the URL (a presigned URL's query is a credential):
/// only its host is logged.
#[tracing::instrument(skip_all, fields(host = tracing::field::Empty))]
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    limits: &FetchLimits,
) -> Result<Asset, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    tracing::Span::current().record("host", parsed.host_str().unwrap_or(""));
    if !is_http(&parsed) {
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
    let asset = tokio::time::timeout(limits.total_timeout, download(client, parsed, limits))
        .await
        .map_err(|_| FetchError::Timeout(limits.total_timeout))??;
    if let Some(expected) = expected
        && expected != asset.sha256_hex
    {
        return Err(FetchError::ChecksumMismatch {
            expected,
            actual: asset.sha256_hex,
        });
    }
    tracing::debug!(bytes = asset.bytes.len(), sha256 = %asset.sha256_hex, "asset fetched");
    Ok(asset)
}

async fn download(
    client: &reqwest::Client,
    url: Url,
    limits: &FetchLimits,
) -> Result<Asset, FetchError> {
    let mut response = client
        .get(url)
        .timeout(limits.total_timeout)
        .send()
        .await
        .map_err(|e| request_error(e, limits))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let limit = limits.max_bytes;
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(FetchError::TooLargeDeclared { length, limit });
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Trust a declared length for the first allocation only up to a modest size.
    let initial = response.content_length().unwrap_or(0).min(16 * 1024 * 1024);
    let mut bytes = Vec::with_capacity(usize::try_from(initial).unwrap_or(0));
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(e, limits))?
    {
        if (bytes.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(FetchError::TooLarge { limit });
        }
        hasher.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    Ok(Asset {
        bytes,
        sha256_hex: hex::encode(hasher.finalize()),
        content_type,
    })
}

fn request_error(e: reqwest::Error, limits: &FetchLimits) -> FetchError {
    let e = e.without_url();
    if e.is_redirect() {
        FetchError::Redirect(e)
    } else if e.is_connect() {
        // A connect timeout too: the source says so.
        FetchError::Connect(e)
    } else if e.is_timeout() {
        FetchError::Timeout(limits.total_timeout)
    } else {
        FetchError::Request(e)
    }
}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

//! [`GuardedClient::fetch`]: a guarded download of a caller-supplied URL (the agent's video
//! assets), with the limits in [`FetchLimits`]: redirects followed by this code, each hop
//! checked like the first; a size cap checked against `Content-Length` up front and against
//! the bytes received; an accepted content-type list; one timeout over the whole exchange.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};

use crate::client::{GuardedClient, SendError, classify_reqwest};
use crate::{Refusal, SsrfError};

/// What a download may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// For the whole fetch: every hop's connect, request and headers, and the body.
    pub total_timeout: Duration,
    /// Redirects followed before giving up (0: a redirect is an error).
    pub max_redirects: usize,
    /// Accepted media types, compared without parameters and case-insensitively; `video/*`
    /// accepts any subtype. Empty accepts any response, with a `Content-Type` or without.
    pub content_types: Vec<String>,
}

/// A downloaded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The response's `Content-Type`, if it had a readable one.
    pub content_type: Option<String>,
    /// Redirects followed to get it.
    pub redirects: usize,
}

/// Why a download failed. No variant carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL, a redirect target or an address one of them resolved or connected to was
    /// refused (or the URL is unusable: scheme, syntax).
    #[error("refused by the ssrf guard{}: {error}", after(.redirects))]
    Refused {
        /// Redirects followed before the refused hop.
        redirects: usize,
        #[source]
        error: SsrfError,
    },
    /// The request failed before a response arrived, or while the body was read.
    #[error(transparent)]
    Send(SendError),
    /// The final answer was not a 2xx.
    #[error("http status {0}")]
    Status(u16),
    /// More redirects than [`FetchLimits::max_redirects`].
    #[error("more than {limit} redirects")]
    TooManyRedirects { limit: usize },
    /// A redirect without a usable `Location`.
    #[error("redirect without a usable location ({0})")]
    BadRedirect(&'static str),
    /// The declared `Content-Length` is over the cap (nothing of the body was read).
    #[error("too large: content-length {length} exceeds the limit of {limit} bytes")]
    TooLargeDeclared { length: u64, limit: u64 },
    /// The body grew over the cap (reading stopped there).
    #[error("too large: more than the limit of {limit} bytes received")]
    TooLarge { limit: u64 },
    /// The `Content-Type` is not in [`FetchLimits::content_types`] (nothing of the body was
    /// read).
    #[error("content type {} is not accepted (accepted: {})", .got.as_deref().unwrap_or("(none)"), .accepted.join(", "))]
    ContentType {
        got: Option<String>,
        accepted: Vec<String>,
    },
    /// [`FetchLimits::total_timeout`] passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

fn after(redirects: &usize) -> String {
    match *redirects {
        0 => String::new(),
        1 => " after 1 redirect".to_owned(),
        n => format!(" after {n} redirects"),
    }
}

impl FetchError {
    /// The range of a refused address, when the guard refused one.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            FetchError::Refused { error, .. } => error.refusal(),
            _ => None,
        }
    }

    fn at_hop(err: SendError, redirects: usize) -> Self {
        match err {
            SendError::Ssrf(error) => FetchError::Refused { redirects, error },
            other => FetchError::Send(other),
        }
    }
}

impl GuardedClient {
    /// `GET url` through the guard within `limits` (see the module docs); the body in memory.
    pub async fn fetch(&self, url: &str, limits: &FetchLimits) -> Result<Fetched, FetchError> {
        tokio::time::timeout(limits.total_timeout, self.fetch_within(url, limits))
            .await
            .map_err(|_| FetchError::Timeout(limits.total_timeout))?
    }

    async fn fetch_within(&self, url: &str, limits: &FetchLimits) -> Result<Fetched, FetchError> {
        let mut redirects = 0;
        let mut target = self
            .check_literal(url)
            .map_err(|error| FetchError::Refused { redirects, error })?;
        let mut response = loop {
            let response = self
                .inner()
                .get(target.clone())
                .send()
                .await
                .map_err(|e| FetchError::at_hop(classify_reqwest(e), redirects))?;
            if !is_redirect(response.status()) {
                break response;
            }
            if redirects >= limits.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    limit: limits.max_redirects,
                });
            }
            let location = response
                .headers()
                .get(LOCATION)
                .ok_or(FetchError::BadRedirect("no location header"))?
                .to_str()
                .map_err(|_| FetchError::BadRedirect("location is not text"))?;
            let next = target
                .join(location)
                .map_err(|_| FetchError::BadRedirect("location is not a url"))?;
            redirects += 1;
            // The next hop is checked like the first: scheme, literal host; a name goes through
            // the guarded resolver and the peer check when it is dialled.
            target = self
                .check_literal(next.as_str())
                .map_err(|error| FetchError::Refused { redirects, error })?;
            tracing::debug!(
                host = target.host_str().unwrap_or(""),
                redirects,
                "following a redirect"
            );
        };
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !accepts(&limits.content_types, content_type.as_deref()) {
            return Err(FetchError::ContentType {
                got: content_type,
                accepted: limits.content_types.clone(),
            });
        }
        let limit = limits.max_bytes;
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(FetchError::TooLargeDeclared { length, limit });
        }
        // Trust a declared length for the first allocation only up to a modest size.
        let initial = response.content_length().unwrap_or(0).min(16 * 1024 * 1024);
        let mut bytes = Vec::with_capacity(usize::try_from(initial).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::at_hop(classify_reqwest(e), redirects))?
        {
            if (bytes.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(FetchError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            content_type,
            redirects,
        })
    }
}

/// The statuses that redirect a GET (304 Not Modified does not).
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 300 | 301 | 302 | 303 | 307 | 308)
}

/// Whether a response with this `Content-Type` is accepted by `accepted` (see
/// [`FetchLimits::content_types`]).
fn accepts(accepted: &[String], content_type: Option<&str>) -> bool {
    if accepted.is_empty() {
        return true;
    }
    let Some(value) = content_type else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = media.split_once('/') else {
        return false;
    };
    if top.is_empty() || sub.is_empty() {
        return false;
    }
    accepted.iter().any(|want| {
        let want = want.trim().to_ascii_lowercase();
        match want.strip_suffix("/*") {
            Some(want_top) => want_top == top,
            None => want == media,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_match_without_parameters_and_case() {
        let accepted = vec!["video/*".to_owned(), "application/octet-stream".to_owned()];
        for ok in [
            "video/mp4",
            "Video/MP4",
            "video/webm; codecs=vp9",
            "application/octet-stream",
            " application/octet-stream ;charset=binary",
        ] {
            assert!(accepts(&accepted, Some(ok)), "{ok}");
        }
        for refused in [
            "text/html",
            "text/html; charset=utf-8",
            "application/json",
            "video",
            "video/",
            "/mp4",
            "videos/mp4",
            "",
        ] {
            assert!(!accepts(&accepted, Some(refused)), "{refused}");
        }
        assert!(!accepts(&accepted, None), "no content type");
        assert!(accepts(&[], None) && accepts(&[], Some("text/html")));
    }

    #[test]
    fn refusals_say_after_how_many_redirects() {
        let error = SsrfError::Refused {
            ip: "169.254.169.254".parse().expect("ip"),
            reason: Refusal::LinkLocal,
        };
        let err = FetchError::Refused {
            redirects: 2,
            error: error.clone(),
        };
        assert_eq!(
            err.to_string(),
            "refused by the ssrf guard after 2 redirects: address 169.254.169.254 is not allowed (link_local)"
        );
        assert_eq!(err.refusal(), Some(Refusal::LinkLocal));
        let first = FetchError::Refused {
            redirects: 0,
            error,
        };
        assert_eq!(
            first.to_string(),
            "refused by the ssrf guard: address 169.254.169.254 is not allowed (link_local)"
        );
    }
}

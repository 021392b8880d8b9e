//! The last check before a request leaves: a connector layer that reads the peer address of
//! every connection reqwest established (plain or TLS) and drops the connection, before any
//! request byte is written on it, when the policy refuses that address.
//!
//! With the guarded resolver and the literal check in front of it, this layer refuses nothing
//! in normal operation; it is what makes "only allowed addresses are ever talked to" hold
//! whatever path produced the address. A connection whose peer address cannot be read is
//! refused too ([`SsrfError::UnknownPeer`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use tower::{Layer, Service};

use crate::{SsrfError, SsrfPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps reqwest's connector in [`PeerCheck`] (`ClientBuilder::connector_layer`).
#[derive(Debug, Clone)]
pub struct PeerCheckLayer {
    policy: Arc<SsrfPolicy>,
}

impl PeerCheckLayer {
    /// A layer enforcing `policy` on connected peers.
    pub fn new(policy: Arc<SsrfPolicy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> PeerCheck<S> {
        PeerCheck {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// A connector that checks the peer address of each connection its inner connector returns.
#[derive(Debug, Clone)]
pub struct PeerCheck<S> {
    inner: S,
    policy: Arc<SsrfPolicy>,
}

impl<S, R> Service<R> for PeerCheck<S>
where
    S: Service<R, Error = BoxError>,
    S::Response: Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let connecting = self.inner.call(request);
        Box::pin(async move {
            let conn = connecting.await?;
            let peer = connected_peer(&conn).ok_or(SsrfError::UnknownPeer)?;
            if let Err(err) = policy.check_ip(peer.ip()) {
                tracing::warn!(peer = %peer, error = %err, "connected to a refused address; dropped before sending");
                return Err(err.into());
            }
            Ok(conn)
        })
    }
}

/// The remote address of an established connection, as the transport reports it.
pub fn connected_peer(conn: &impl Connection) -> Option<SocketAddr> {
    let mut extras = http::Extensions::new();
    conn.connected().get_extras(&mut extras);
    extras.get::<HttpInfo>().map(HttpInfo::remote_addr)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use reqwest::dns::{Addrs, Name, Resolve, Resolving};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::Refusal;

    /// A resolver with no guard at all: every name is 127.0.0.1.
    struct Unguarded;

    impl Resolve for Unguarded {
        fn resolve(&self, _: Name) -> Resolving {
            let addrs = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    /// Counts what reaches a loopback listener that answers each request `204`.
    #[derive(Default)]
    struct Seen {
        accepted: AtomicUsize,
        bytes: AtomicUsize,
        closed: AtomicUsize,
    }

    async fn listener() -> (SocketAddr, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let counts = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        counts.bytes.fetch_add(n, Ordering::SeqCst);
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            let reply = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
                            let _ = socket.write_all(reply).await;
                            break;
                        }
                    }
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, seen)
    }

    fn client(policy: SsrfPolicy) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Unguarded)
            .connector_layer(PeerCheckLayer::new(Arc::new(policy)))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }

    /// Even with a resolver that lets anything through, the layer drops a connection to a
    /// refused peer before the request is written.
    #[tokio::test]
    async fn a_connection_to_a_refused_peer_is_dropped_before_the_request() {
        let (addr, seen) = listener().await;
        let err = client(SsrfPolicy::default())
            .post(format!("http://anywhere.test:{}/", addr.port()))
            .body("secret payload")
            .send()
            .await
            .expect_err("refused");
        let ssrf = crate::find_source::<SsrfError>(&err).cloned();
        assert_eq!(
            ssrf,
            Some(SsrfError::Refused {
                ip: IpAddr::from([127, 0, 0, 1]),
                reason: Refusal::Loopback,
            }),
            "{err:?}"
        );
        // The connect happened; the connection was closed with nothing written on it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.closed.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the connection stays open"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(
            seen.bytes.load(Ordering::SeqCst),
            0,
            "no request byte was sent"
        );
    }

    #[tokio::test]
    async fn an_allowed_peer_is_kept() {
        let (addr, seen) = listener().await;
        let allow = SsrfPolicy::parse_allow_list("127.0.0.1").expect("allow-list");
        let response = client(SsrfPolicy::new(allow))
            .get(format!("http://anywhere.test:{}/", addr.port()))
            .send()
            .await
            .expect("allowed");
        assert_eq!(response.status(), 204);
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
        assert!(seen.bytes.load(Ordering::SeqCst) > 0);
    }
}

//! Real HTTP receivers on loopback for the guard's tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// `302 Found` with this `Location`.
    Redirect(String),
    /// `200` with this content type and body.
    Body(&'static str, &'static [u8]),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// An axum server on a loopback port that records requests and answers from a script, then
/// 200. A path `/status/<code>` always answers `<code>`. Every answer closes the connection,
/// so each request dials (and resolves) afresh.
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        Self::start_on("127.0.0.1:0", script)
            .await
            .expect("bind 127.0.0.1")
    }

    /// Binds `addr` (e.g. `[::1]:0`); `None` when the address family is unavailable.
    pub async fn start_on(addr: &str, script: Vec<Reply>) -> Option<Receiver> {
        let listener = TcpListener::bind(addr).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            ..Inner::default()
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Some(Receiver { addr, inner, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.inner.received.lock().expect("lock").len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    inner.received.lock().expect("lock").push(Received {
        method,
        path: path.clone(),
        headers,
    });
    let reply = if let Some(code) = path.strip_prefix("/status/") {
        Reply::Status(code.parse().unwrap_or(500))
    } else {
        let next = inner.script.lock().expect("lock").pop_front();
        next.unwrap_or(Reply::Status(200))
    };
    let close = [(header::CONNECTION, "close")];
    match reply {
        Reply::Status(code) => (
            close,
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
            .into_response(),
        Reply::Redirect(location) => {
            let headers = [
                (header::CONNECTION, "close".to_owned()),
                (header::LOCATION, location),
            ];
            (StatusCode::FOUND, headers).into_response()
        }
        Reply::Body(content_type, body) => {
            (close, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
    }
}

/// Counts the connections made to an address (and never answers): for "nothing connected".
pub struct Connections {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Connections {
    pub async fn start_on(addr: &str) -> Connections {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Connections {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address nobody listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

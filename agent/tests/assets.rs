//! `assets::fetch` against real HTTP servers on loopback (axum on 127.0.0.1:0), through the
//! SSRF guard: limits, checksum, redirects, and the addresses a fetch may never reach.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use phonefarm_agent::assets::{self, FetchError, FetchLimits, SsrfPolicy};
use phonefarm_net::testing::ScriptedLookup;
use sha2::{Digest, Sha256};

const VIDEO: &[u8] = b"\x00\x00\x00\x18ftypmp42 a small fake video for the fetch tests";

/// Serves the routes the tests fetch; dropped with the runtime at the end of the test.
async fn spawn_server() -> SocketAddr {
    async fn chunked(Path(chunks): Path<usize>) -> Response {
        // 1 KiB chunks with no Content-Length: the size is only known by reading.
        let stream = futures::stream::iter(
            (0..chunks).map(|_| Ok::<_, Infallible>(Bytes::from(vec![7u8; 1024]))),
        );
        (
            [(header::CONTENT_TYPE, "video/mp4")],
            Body::from_stream(stream),
        )
            .into_response()
    }
    async fn stall() -> Response {
        let first = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"x")) });
        let never = futures::stream::pending::<Result<Bytes, Infallible>>();
        let body = Body::from_stream(futures::StreamExt::chain(first, never));
        ([(header::CONTENT_TYPE, "video/mp4")], body).into_response()
    }
    async fn hops(Path(n): Path<u32>) -> Response {
        if n == 0 {
            VIDEO.into_response()
        } else {
            Redirect::temporary(&format!("/hops/{}", n - 1)).into_response()
        }
    }
    let app = Router::new()
        .route(
            "/video.mp4",
            get(|| async { ([(header::CONTENT_TYPE, "video/mp4")], VIDEO) }),
        )
        .route("/big", get(|| async { vec![0u8; 4096] }))
        .route("/chunked/{chunks}", get(chunked))
        .route("/stall", get(stall))
        .route("/hops/{n}", get(hops))
        .route(
            "/page.html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html>",
                )
            }),
        )
        .route("/untyped", get(|| async { Body::from(VIDEO) }))
        .route("/go", get(go))
        .route(
            "/to-ftp",
            get(|| async { Redirect::temporary("ftp://127.0.0.1/video.mp4") }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND });
    serve_on("127.0.0.1:0", app).await
}

/// `/go?to=URL` redirects to URL.
async fn go(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    Redirect::temporary(&q["to"]).into_response()
}

async fn serve_on(addr: &str, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 2048,
        expected_sha256: None,
        connect_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(10),
        max_redirects: 3,
        content_types: assets::VIDEO_TYPES.iter().map(|t| t.to_string()).collect(),
    }
}

/// The tests' servers are on loopback: allowed here, except where a test says otherwise.
fn loopback() -> SsrfPolicy {
    SsrfPolicy::new(SsrfPolicy::parse_allow_list("127.0.0.0/8").unwrap())
}

async fn fetch(
    addr: SocketAddr,
    path: &str,
    limits: &FetchLimits,
) -> Result<assets::Asset, FetchError> {
    let client = assets::client(limits, loopback()).unwrap();
    assets::fetch(&client, &format!("http://{addr}{path}"), limits).await
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn fetches_the_body_with_its_digest_and_type() {
    let addr = spawn_server().await;
    let mut limits = limits();
    // The expected digest is compared case-insensitively.
    limits.expected_sha256 = Some(sha256_hex(VIDEO).to_ascii_uppercase());
    let asset = fetch(addr, "/video.mp4", &limits).await.unwrap();
    assert_eq!(asset.bytes, VIDEO);
    assert_eq!(asset.sha256_hex, sha256_hex(VIDEO));
    assert_eq!(asset.content_type.as_deref(), Some("video/mp4"));
    // Chunked, within the limit.
    let asset = fetch(addr, "/chunked/2", &FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(asset.bytes.len(), 2048);
}

#[tokio::test]
async fn a_404_is_an_http_status_error() {
    let addr = spawn_server().await;
    let err = fetch(addr, "/missing.mp4", &limits()).await.unwrap_err();
    assert!(matches!(err, FetchError::Status(404)), "{err:?}");
    assert_eq!(err.to_string(), "http status 404");
    assert_eq!(err.code(), "asset_http_status:404");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let addr = spawn_server().await;
    let err = fetch(addr, "/big", &limits()).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLargeDeclared {
                length: 4096,
                limit: 2048
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "asset too large: content-length 4096 exceeds the limit of 2048 bytes"
    );
    assert_eq!(err.code(), "asset_too_large");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_aborted_mid_stream() {
    let addr = spawn_server().await;
    // 3 KiB in 1 KiB chunks against a 2 KiB limit, and a body far larger than any limit: both
    // stop at the limit instead of reading on.
    for path in ["/chunked/3", "/chunked/1000000"] {
        let err = fetch(addr, path, &limits()).await.unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 2048 }),
            "{path}: {err:?}"
        );
        assert!(err.to_string().starts_with("asset too large: "), "{err}");
    }
}

#[tokio::test]
async fn a_checksum_mismatch_is_reported_with_both_digests() {
    let addr = spawn_server().await;
    let mut limits = limits();
    let wrong = sha256_hex(b"another video");
    limits.expected_sha256 = Some(wrong.clone());
    let err = fetch(addr, "/video.mp4", &limits).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checksum mismatch: expected sha-256 {wrong}, got {}",
            sha256_hex(VIDEO)
        )
    );
    assert_eq!(err.code(), "asset_checksum_mismatch");
    limits.expected_sha256 = Some("abc".into());
    let err = fetch(addr, "/video.mp4", &limits).await.unwrap_err();
    assert!(matches!(err, FetchError::BadExpectedChecksum(_)), "{err:?}");
}

#[tokio::test]
async fn only_http_and_https_urls_are_fetched() {
    let client = assets::client(&limits(), loopback()).unwrap();
    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/video.mp4",
        "data:video/mp4;base64,AAAA",
    ] {
        let err = assets::fetch(&client, url, &limits()).await.unwrap_err();
        assert!(matches!(err, FetchError::Scheme(_)), "{url}: {err:?}");
        assert_eq!(err.code(), "asset_bad_url");
    }
    let err = assets::fetch(&client, "not a url", &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::BadUrl(_)), "{err:?}");
    // Nor followed by a redirect.
    let addr = spawn_server().await;
    let err = fetch(addr, "/to-ftp", &limits()).await.unwrap_err();
    assert!(matches!(err, FetchError::Redirect(_)), "{err:?}");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let addr = spawn_server().await;
    let asset = fetch(addr, "/hops/3", &limits()).await.unwrap();
    assert_eq!(asset.bytes, VIDEO);
    let err = fetch(addr, "/hops/4", &limits()).await.unwrap_err();
    assert!(matches!(err, FetchError::Redirect(_)), "{err:?}");
    assert_eq!(err.code(), "asset_unreachable");
}

#[tokio::test]
async fn a_stalled_body_hits_the_total_timeout() {
    let addr = spawn_server().await;
    let mut limits = limits();
    limits.total_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = fetch(addr, "/stall", &limits).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    // Bind and drop: nothing listens there any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = fetch(addr, "/video.mp4?token=secret", &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    assert_eq!(err.code(), "asset_unreachable");
    // A presigned URL's query is a credential: no message in the chain carries the URL.
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        assert!(!e.to_string().contains("secret"), "{e}");
        source = e.source();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Counts the connections made to an address (an internal service that must never be reached).
struct Internal {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Internal {
    async fn start_on(addr: &str) -> Internal {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Internal { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The agent's production policy (public unicast only) except 127.0.0.2, which stands in for
/// a public CDN; `cdn.example.test` resolves to it, `internal.test` to 127.0.0.1.
fn cdn_client(lookup: ScriptedLookup) -> phonefarm_net::GuardedClient {
    let policy = SsrfPolicy::new(SsrfPolicy::parse_allow_list("127.0.0.2/32").unwrap());
    assets::client_builder(&limits(), policy)
        .lookup(Arc::new(lookup))
        .build()
        .unwrap()
}

#[tokio::test]
async fn redirects_to_loopback_metadata_and_private_addresses_are_refused() {
    let internal = Internal::start_on("127.0.0.1:0").await;
    let port = internal.addr.port();
    let cdn = serve_on(
        "127.0.0.2:0",
        Router::new().route("/go", get(go)).route(
            "/video.mp4",
            get(|| async { ([(header::CONTENT_TYPE, "video/mp4")], VIDEO) }),
        ),
    )
    .await;
    let lookup = || {
        ScriptedLookup::new()
            .with("cdn.example.test", &[&[ip("127.0.0.2")]])
            .with("internal.test", &[&[ip("127.0.0.1")]])
    };
    let base = format!("http://cdn.example.test:{}", cdn.port());
    // The CDN itself is fine.
    let asset = assets::fetch(
        &cdn_client(lookup()),
        &format!("{base}/video.mp4"),
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(asset.bytes, VIDEO);
    for (target, code) in [
        (format!("http://127.0.0.1:{port}/video.mp4"), "loopback"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/video.mp4"),
            "loopback",
        ),
        (format!("http://internal.test:{port}/video.mp4"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/iam/".into(),
            "link_local",
        ),
        ("http://10.0.0.7/video.mp4".into(), "private"),
        ("http://172.16.5.4/video.mp4".into(), "private"),
        ("http://192.168.1.20/video.mp4".into(), "private"),
    ] {
        let url = reqwest::Url::parse_with_params(&format!("{base}/go"), [("to", &target)])
            .unwrap()
            .to_string();
        let err = assets::fetch(&cdn_client(lookup()), &url, &limits())
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            format!("asset_url_not_allowed:{code}"),
            "{target}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("asset refused by the ssrf guard after 1 redirect: "),
            "{target}: {message}"
        );
        assert!(message.contains(code), "{target}: {message}");
    }
    // And the same addresses as the URL itself.
    let err = assets::fetch(
        &cdn_client(lookup()),
        "http://169.254.169.254/latest/meta-data/",
        &limits(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "asset_url_not_allowed:link_local");
    assert_eq!(
        internal.accepted(),
        0,
        "nothing connected to the internal service"
    );
}

/// DNS rebinding against the agent: the CDN's name answers a public address, then loopback.
/// The second fetch resolves again and is refused; and an answer holding both never falls back
/// to the refused one.
#[tokio::test]
async fn a_name_answering_public_then_private_never_reaches_the_private_address() {
    let internal = Internal::start_on("127.0.0.1:0").await;
    let port = internal.addr.port();
    // The "public" server on the same port at 127.0.0.2; each answer closes its connection, so
    // the next fetch dials (and resolves) again.
    serve_on(
        &format!("127.0.0.2:{port}"),
        Router::new().route(
            "/video.mp4",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "video/mp4"),
                        (header::CONNECTION, "close"),
                    ],
                    VIDEO,
                )
            }),
        ),
    )
    .await;
    let lookup =
        Arc::new(ScriptedLookup::new().with("cdn.test", &[&[ip("127.0.0.2")], &[ip("127.0.0.1")]]));
    let policy = SsrfPolicy::new(SsrfPolicy::parse_allow_list("127.0.0.2/32").unwrap());
    let client = assets::client_builder(&limits(), policy)
        .lookup(lookup.clone())
        .build()
        .unwrap();
    let url = format!("http://cdn.test:{port}/video.mp4");
    assert_eq!(
        assets::fetch(&client, &url, &limits()).await.unwrap().bytes,
        VIDEO
    );
    let err = assets::fetch(&client, &url, &limits()).await.unwrap_err();
    assert_eq!(err.code(), "asset_url_not_allowed:loopback", "{err}");
    assert_eq!(lookup.lookups("cdn.test"), 2);

    // One answer, the allowed address first (nothing listens there on this port), the private
    // one next.
    let internal2 = Internal::start_on("127.0.0.1:0").await;
    let mixed = ScriptedLookup::new().with("mixed.test", &[&[ip("127.0.0.2"), ip("127.0.0.1")]]);
    let url = format!("http://mixed.test:{}/video.mp4", internal2.addr.port());
    let err = assets::fetch(&cdn_client(mixed), &url, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    assert_eq!(
        internal.accepted(),
        0,
        "nothing connected to the private address"
    );
    assert_eq!(internal2.accepted(), 0, "the refused address was not tried");
}

#[tokio::test]
async fn a_body_of_the_wrong_type_is_refused_with_its_type() {
    let addr = spawn_server().await;
    let err = fetch(addr, "/page.html", &limits()).await.unwrap_err();
    assert_eq!(err.code(), "asset_content_type");
    assert_eq!(
        err.to_string(),
        "asset content type text/html; charset=utf-8 is not accepted \
         (accepted: video/*, application/octet-stream, binary/octet-stream)"
    );
    let err = fetch(addr, "/untyped", &limits()).await.unwrap_err();
    assert_eq!(err.code(), "asset_content_type");
    assert!(err.to_string().contains("content type (none)"), "{err}");
}

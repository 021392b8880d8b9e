//! `assets::fetch` against a real HTTP server on loopback (axum on 127.0.0.1:0).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use phonefarm_agent::assets::{self, FetchError, FetchLimits};
use sha2::{Digest, Sha256};

const VIDEO: &[u8] = b"\x00\x00\x00\x18ftypmp42 a small fake video for the fetch tests";

/// Serves the routes the tests fetch; dropped with the runtime at the end of the test.
async fn spawn_server() -> SocketAddr {
    async fn chunked(Path(chunks): Path<usize>) -> Response {
        // 1 KiB chunks with no Content-Length: the size is only known by reading.
        let stream = futures::stream::iter(
            (0..chunks).map(|_| Ok::<_, Infallible>(Bytes::from(vec![7u8; 1024]))),
        );
        Body::from_stream(stream).into_response()
    }
    async fn stall() -> Response {
        let first = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"x")) });
        let never = futures::stream::pending::<Result<Bytes, Infallible>>();
        Body::from_stream(futures::StreamExt::chain(first, never)).into_response()
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
            "/to-ftp",
            get(|| async { Redirect::temporary("ftp://127.0.0.1/video.mp4") }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
    }
}

async fn fetch(
    addr: SocketAddr,
    path: &str,
    limits: &FetchLimits,
) -> Result<assets::Asset, FetchError> {
    let client = assets::client(limits).unwrap();
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
    let client = assets::client(&limits()).unwrap();
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

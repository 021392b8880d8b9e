//! `GuardedClient::fetch`: redirects followed with every hop checked, the hop limit, the
//! content-type list, the size cap.

mod support;

use std::time::Duration;

use phonefarm_net::{FetchError, FetchLimits, GuardedClient, Refusal, SsrfError, SsrfPolicy};
use support::{Receiver, Reply};

const VIDEO: &[u8] = b"\x00\x00\x00\x18ftypmp42 a small fake video";

/// 127.0.0.2 is allowed (it stands in for a public host); the rest of loopback is not.
fn client() -> GuardedClient {
    let allow = SsrfPolicy::parse_allow_list("127.0.0.2/32").expect("allow-list");
    GuardedClient::new(SsrfPolicy::new(allow), Duration::from_secs(5)).expect("client")
}

fn limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 1024,
        total_timeout: Duration::from_secs(10),
        max_redirects: 2,
        content_types: vec!["video/*".into(), "application/octet-stream".into()],
    }
}

async fn public(script: Vec<Reply>) -> Receiver {
    Receiver::start_on("127.0.0.2:0", script)
        .await
        .expect("bind 127.0.0.2")
}

fn chain() -> Vec<Reply> {
    vec![
        Reply::Redirect("/b".into()),
        Reply::Redirect("/c".into()),
        Reply::Body("video/mp4", VIDEO),
    ]
}

#[tokio::test]
async fn redirects_are_followed_within_the_limit() {
    let server = public(chain()).await;
    let fetched = client()
        .fetch(&server.url("/a"), &limits())
        .await
        .expect("fetched");
    assert_eq!(fetched.bytes, VIDEO);
    assert_eq!(fetched.redirects, 2);
    assert_eq!(fetched.content_type.as_deref(), Some("video/mp4"));
    let paths: Vec<_> = server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    // One more than the limit.
    let server = public(chain()).await;
    let one = FetchLimits {
        max_redirects: 1,
        ..limits()
    };
    let err = client()
        .fetch(&server.url("/a"), &one)
        .await
        .expect_err("too many");
    assert!(
        matches!(err, FetchError::TooManyRedirects { limit: 1 }),
        "{err:?}"
    );
    assert_eq!(server.count(), 2, "the third hop was not requested");
}

/// A redirect from an allowed host to a refused address is refused before it is dialled.
#[tokio::test]
async fn every_redirect_target_is_checked() {
    let private = Receiver::start(vec![]).await;
    let port = private.addr.port();
    for (location, reason) in [
        (
            format!("http://127.0.0.1:{port}/video.mp4"),
            Refusal::Loopback,
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            Refusal::Loopback,
        ),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            Refusal::LinkLocal,
        ),
        ("http://10.1.2.3/video.mp4".into(), Refusal::Private),
        (
            format!("http://localhost:{port}/video.mp4"),
            Refusal::Loopback,
        ),
    ] {
        let redirecting = public(vec![Reply::Redirect(location.clone())]).await;
        let err = client()
            .fetch(&redirecting.url("/video.mp4"), &limits())
            .await
            .expect_err("refused");
        assert_eq!(err.refusal(), Some(reason), "{location}: {err:?}");
        assert!(
            matches!(err, FetchError::Refused { redirects: 1, .. }),
            "{location}: {err:?}"
        );
    }
    let redirecting = public(vec![Reply::Redirect("ftp://127.0.0.2/video.mp4".into())]).await;
    let err = client()
        .fetch(&redirecting.url("/"), &limits())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            FetchError::Refused { error: SsrfError::UnsupportedScheme(s), .. } if s == "ftp"
        ),
        "{err:?}"
    );
    assert_eq!(private.count(), 0, "no refused target was contacted");
}

#[tokio::test]
async fn the_content_type_and_size_are_checked() {
    let server = public(vec![
        Reply::Body("text/html; charset=utf-8", b"<html>sign in</html>"),
        Reply::Status(200),
        Reply::Body("application/octet-stream", &[0u8; 2048]),
        Reply::Body("Video/WebM; codecs=vp9", VIDEO),
    ])
    .await;
    let err = client()
        .fetch(&server.url("/v"), &limits())
        .await
        .expect_err("html");
    assert_eq!(
        err.to_string(),
        "content type text/html; charset=utf-8 is not accepted (accepted: video/*, application/octet-stream)"
    );
    let err = client()
        .fetch(&server.url("/v"), &limits())
        .await
        .expect_err("no type");
    assert!(
        matches!(err, FetchError::ContentType { got: None, .. }),
        "{err:?}"
    );
    let err = client()
        .fetch(&server.url("/v"), &limits())
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            FetchError::TooLargeDeclared {
                length: 2048,
                limit: 1024
            }
        ),
        "{err:?}"
    );
    let fetched = client()
        .fetch(&server.url("/v"), &limits())
        .await
        .expect("webm");
    assert_eq!(fetched.bytes, VIDEO);
}

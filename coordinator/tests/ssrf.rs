//! The SSRF-guarded client: refused URLs never reach a socket, allowed ones do, `head_ok`.
//!
//! Only loopback receivers are ever contacted: every other address in these tests must be
//! refused before connecting.

#[path = "support/cb_receiver.rs"]
#[allow(dead_code)]
mod cb_receiver;

use std::time::Duration;

use axum::http::HeaderMap;
use cb_receiver::{Receiver, Reply};
use phonefarm_coordinator::net::{
    AssetError, GuardedClient, Refusal, SendError, SsrfError, SsrfPolicy,
};

fn client(allow: &str) -> GuardedClient {
    let allow = SsrfPolicy::parse_allow_list(allow).expect("valid allow-list");
    GuardedClient::new(SsrfPolicy::new(allow), Duration::from_secs(5)).expect("client")
}

fn is_refusal(err: &SsrfError) -> bool {
    matches!(
        err,
        SsrfError::Refused { .. } | SsrfError::NoAllowedAddress { .. }
    )
}

/// Without an allow-list, every special address is refused both by the request-time check and
/// by the sending path, and nothing reaches the loopback receiver.
#[tokio::test]
async fn refused_without_allow_list() {
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let guarded = client("");
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        "http://[fe80::1]/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://192.168.0.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://224.0.0.1/".to_owned(),
        "http://255.255.255.255/".to_owned(),
        "http://[64:ff9b::7f00:1]/".to_owned(),
    ];
    for url in &urls {
        let checked = guarded.check_url(url).await;
        assert!(
            matches!(&checked, Err(err) if is_refusal(err)),
            "check_url({url}) = {checked:?}"
        );
        let sent = guarded
            .post_json_bytes(url, HeaderMap::new(), "{}".to_owned())
            .await;
        assert!(
            matches!(&sent, Err(SendError::Ssrf(err)) if is_refusal(err)),
            "post({url}) = {sent:?}"
        );
        let head = guarded.head_ok(url).await;
        assert!(
            matches!(&head, Err(AssetError::Send(SendError::Ssrf(_)))),
            "head_ok({url}) = {head:?}"
        );
    }
    assert_eq!(
        receiver.count(),
        0,
        "no refused request reached the receiver"
    );
}

#[tokio::test]
async fn refusal_names_the_reason() {
    let guarded = client("");
    assert_eq!(
        guarded.check_url("http://169.254.169.254/").await,
        Err(SsrfError::Refused {
            ip: "169.254.169.254".parse().expect("ip"),
            reason: Refusal::LinkLocal,
        })
    );
    assert_eq!(
        guarded.check_url("http://[::ffff:127.0.0.1]/").await,
        Err(SsrfError::Refused {
            ip: "::ffff:127.0.0.1".parse().expect("ip"),
            reason: Refusal::Loopback,
        })
    );
    let localhost = guarded.check_url("http://localhost/").await;
    assert!(
        matches!(
            &localhost,
            Err(SsrfError::NoAllowedAddress { host, reason: Refusal::Loopback, .. }) if host == "localhost"
        ),
        "{localhost:?}"
    );
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    let guarded = client("127.0.0.0/8");
    for url in [
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
    ] {
        assert!(
            matches!(
                guarded.check_url(url).await,
                Err(SsrfError::UnsupportedScheme(_))
            ),
            "{url}"
        );
        assert!(
            matches!(
                guarded
                    .post_json_bytes(url, HeaderMap::new(), "{}".to_owned())
                    .await,
                Err(SendError::Ssrf(SsrfError::UnsupportedScheme(_)))
            ),
            "{url}"
        );
    }
    for url in ["not a url", "/relative/path", "http://"] {
        assert!(guarded.check_url(url).await.is_err(), "{url}");
    }
}

/// With 127.0.0.0/8 and ::1 allowed, loopback works by literal, by mapped literal and by name;
/// other private ranges stay refused.
#[tokio::test]
async fn allowed_with_allow_list() {
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let guarded = client("127.0.0.0/8, ::1/128");

    for url in [
        format!("http://127.0.0.1:{port}/a"),
        format!("http://localhost:{port}/b"),
        format!("http://[::ffff:127.0.0.1]:{port}/c"),
    ] {
        guarded.check_url(&url).await.expect("check_url allowed");
        let status = guarded
            .post_json_bytes(&url, HeaderMap::new(), r#"{"ok":true}"#.to_owned())
            .await
            .expect("post allowed");
        assert_eq!(status.as_u16(), 200, "{url}");
    }
    assert_eq!(receiver.count(), 3);
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert!(receiver.received().iter().all(|r| {
        r.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json")
    }));

    guarded
        .check_url("http://[::1]/")
        .await
        .expect("::1 allowed");
    if let Some(v6) = Receiver::start_on("[::1]:0", vec![]).await {
        let url = format!("http://[::1]:{}/v6", v6.addr.port());
        let status = guarded
            .post_json_bytes(&url, HeaderMap::new(), "{}".to_owned())
            .await
            .expect("post to ::1");
        assert_eq!(status.as_u16(), 200);
        assert_eq!(v6.count(), 1);
    }

    for url in [
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[fe80::1]/",
    ] {
        assert!(
            matches!(guarded.check_url(url).await, Err(SsrfError::Refused { .. })),
            "{url}"
        );
    }
}

#[tokio::test]
async fn head_ok_statuses() {
    let receiver = Receiver::start(vec![]).await;
    let guarded = client("127.0.0.0/8");

    guarded
        .head_ok(&receiver.url("/video.mp4"))
        .await
        .expect("200 is ok");
    assert!(matches!(
        guarded.head_ok(&receiver.url("/status/404")).await,
        Err(AssetError::Status(404))
    ));
    assert!(matches!(
        guarded.head_ok(&receiver.url("/status/500")).await,
        Err(AssetError::Status(500))
    ));
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.method == axum::http::Method::HEAD)
    );

    // A redirect is not followed, even to an allowed address.
    let redirecting = Receiver::start(vec![Reply::Redirect(receiver.url("/video.mp4"))]).await;
    assert!(matches!(
        guarded.head_ok(&redirecting.url("/moved")).await,
        Err(AssetError::Status(302))
    ));
    assert_eq!(receiver.count(), 3, "the redirect target was not contacted");

    // Refused address: no request at all.
    let strict = client("");
    assert!(matches!(
        strict.head_ok(&receiver.url("/video.mp4")).await,
        Err(AssetError::Send(SendError::Ssrf(SsrfError::Refused {
            reason: Refusal::Loopback,
            ..
        })))
    ));
    assert_eq!(receiver.count(), 3);

    // Nobody listening: a connect error, not a hang.
    let dead = cb_receiver::dead_addr().await;
    let result = guarded.head_ok(&format!("http://{dead}/x")).await;
    assert!(
        matches!(result, Err(AssetError::Send(SendError::Connect(_)))),
        "{result:?}"
    );
}

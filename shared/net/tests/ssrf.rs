//! The SSRF-guarded client: refused URLs never reach a socket, allowed ones do, `head_ok`;
//! a resolver that changes its answer cannot steer a request to a refused address.
//!
//! Only loopback receivers are ever contacted: every other address in these tests must be
//! refused before connecting.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use phonefarm_net::testing::ScriptedLookup;
use phonefarm_net::{AssetError, GuardedClient, Refusal, SendError, SsrfError, SsrfPolicy};
use reqwest::header::HeaderMap;
use support::{Connections, Receiver, Reply};

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
    assert!(received.iter().all(|r| r.method == reqwest::Method::HEAD));

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
    let dead = support::dead_addr().await;
    let result = guarded.head_ok(&format!("http://{dead}/x")).await;
    assert!(
        matches!(result, Err(AssetError::Send(SendError::Connect(_)))),
        "{result:?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// DNS rebinding: the name answers a public address to the request-time check and loopback to
/// the connect; the guard resolves again when it dials and refuses, and nothing connects.
#[tokio::test]
async fn a_name_answering_public_then_private_cannot_reach_the_private_address() {
    let private = Connections::start_on("127.0.0.1:0").await;
    let lookup = Arc::new(
        ScriptedLookup::new().with("hooks.test", &[&[ip("93.184.216.34")], &[ip("127.0.0.1")]]),
    );
    let guarded = GuardedClient::builder(SsrfPolicy::default())
        .timeout(Duration::from_secs(5))
        .lookup(lookup.clone())
        .build()
        .expect("client");
    let url = format!("http://hooks.test:{}/cb", private.addr.port());
    guarded
        .check_url(&url)
        .await
        .expect("a public answer passes the early check");
    let sent = guarded
        .post_json_bytes(&url, HeaderMap::new(), "{}".to_owned())
        .await;
    assert!(
        matches!(
            &sent,
            Err(SendError::Ssrf(SsrfError::NoAllowedAddress { host, reason: Refusal::Loopback, .. }))
                if host == "hooks.test"
        ),
        "{sent:?}"
    );
    assert_eq!(lookup.lookups("hooks.test"), 2, "resolved again to connect");
    assert_eq!(
        private.accepted(),
        0,
        "nothing connected to the private address"
    );
}

/// One answer holding an allowed address and a refused one: only the allowed one is dialled,
/// and when it does not answer, the refused one is not tried instead.
#[tokio::test]
async fn a_mixed_answer_never_falls_back_to_the_refused_address() {
    let private = Connections::start_on("127.0.0.1:0").await;
    // 127.0.0.2 stands in for a public address; nothing listens on it at this port.
    let allow = SsrfPolicy::parse_allow_list("127.0.0.2/32").expect("allow-list");
    let lookup =
        Arc::new(ScriptedLookup::new().with("cdn.test", &[&[ip("127.0.0.2"), ip("127.0.0.1")]]));
    let guarded = GuardedClient::builder(SsrfPolicy::new(allow))
        .timeout(Duration::from_secs(5))
        .lookup(lookup)
        .build()
        .expect("client");
    let url = format!("http://cdn.test:{}/cb", private.addr.port());
    let sent = guarded
        .post_json_bytes(&url, HeaderMap::new(), "{}".to_owned())
        .await;
    assert!(matches!(&sent, Err(SendError::Connect(_))), "{sent:?}");
    assert_eq!(private.accepted(), 0, "the refused address was not tried");
}

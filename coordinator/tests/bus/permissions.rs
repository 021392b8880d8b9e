//! The production permissions (the user JWTs `agent enroll` issues) on a real nats-server in
//! operator mode over TLS: agent A cannot publish B's events or presence, pull or even look up
//! B's work, read, write or delete B's evidence, or create or delete B's flow-pack watcher; it
//! can do all of that for itself.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use phonefarm_coordinator::bus::bootstrap;
use phonefarm_coordinator::fleet_auth::{self, EnrollOptions};
use phonefarm_shared::{EventKind, subjects};

use crate::operator::OperatorNats;
use phonefarm_testkit::coordinator::bus::*;
use phonefarm_testkit::wait_for;

/// How long an answer that is allowed may take on a loaded machine; a refusal is waited out
/// for as long.
const ANSWER: Duration = Duration::from_secs(3);

fn short(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(ANSWER)
        .build(client)
}

/// A JetStream publish the server refused (no ack ever comes) or failed.
async fn refused(js: &jetstream::Context, subject: String, payload: &'static [u8]) -> bool {
    match js.publish(subject, payload.into()).await {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    }
}

/// A request that got no answer (denied requests are dropped by the server).
async fn unanswered(client: &async_nats::Client, subject: String) -> bool {
    let r = tokio::time::timeout(ANSWER, client.request(subject, "{}".into())).await;
    !matches!(r, Ok(Ok(ref m)) if !m.payload.is_empty())
}

/// The first message `sub` receives while `from` publishes `sends` (in order, then a flush)
/// again every 2 s: core NATS delivers at most once, so one publish proves nothing by its
/// absence. Fails after 30 s.
async fn heard(
    what: &str,
    from: &async_nats::Client,
    sends: &[(String, &'static str)],
    sub: &mut async_nats::Subscriber,
) -> async_nats::Message {
    wait_for(what, Duration::from_secs(30), async || {
        for (subject, payload) in sends {
            from.publish(subject.clone(), payload.as_bytes().into())
                .await
                .unwrap();
        }
        from.flush().await.ok()?;
        tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .ok()
            .flatten()
    })
    .await
}

fn watcher(name: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        name: Some(name.into()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::None,
        inactive_threshold: Duration::from_secs(60),
        ..Default::default()
    }
}

#[tokio::test]
async fn enrolled_agents_are_confined_to_their_own_subjects_consumers_and_evidence() {
    let op = OperatorNats::start().await;
    let db = AppDb::new().await;
    let mut creds = std::collections::HashMap::new();
    for a in ["rack-a", "rack-b"] {
        let e = fleet_auth::enroll(&db.pool, &op.authority, a, &EnrollOptions::default())
            .await
            .expect("enroll");
        creds.insert(a, e.issued.creds());
    }
    // Anonymous clients and foreign credentials are refused.
    assert!(
        async_nats::ConnectOptions::new()
            .add_root_certificates(op.ca.ca.clone())
            .require_tls(true)
            .connect(op.url())
            .await
            .is_err(),
        "an anonymous client connected"
    );

    // The coordinator bootstraps and enrolls both agents on the bus, queues one order each,
    // and stores a piece of B's evidence.
    let coord = op.connect_coordinator().await;
    let cjs = jetstream::new(coord.clone());
    bootstrap::ensure(&cjs, &test_config(op.url()))
        .await
        .expect("bootstrap");
    for a in ["rack-a", "rack-b"] {
        bootstrap::enroll_agent(&cjs, a, 1).await.expect("enroll");
        cjs.publish(subjects::work(a), format!("order for {a}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let b_evidence = cjs
        .get_object_store(subjects::evidence_bucket("rack-b"))
        .await
        .expect("B's evidence bucket exists");
    let mut shot: &[u8] = b"B's screenshot";
    b_evidence
        .put("rack-b/item/1/screen.png", &mut shot)
        .await
        .unwrap();

    let a_client = op
        .connect_agent(&creds["rack-a"], "rack-a")
        .await
        .expect("A connects");
    let a = short(a_client.clone());

    // Own events: stored. B's: refused, and nothing is stored under B's subject.
    let ev = phonefarm_shared::AgentEvent {
        queue_item_id: uuid::Uuid::now_v7(),
        attempt: 1,
        seq: 1,
        at_unix_ms: 0,
        kind: EventKind::Accepted,
    };
    let bytes: &'static [u8] = Box::leak(phonefarm_shared::encode(&ev).into_boxed_slice());
    assert!(!refused(&a, subjects::run_events("rack-a"), bytes).await);
    assert!(
        refused(&a, subjects::run_events("rack-b"), bytes).await,
        "agent A published B's events"
    );
    assert!(refused(&a, subjects::inventory("rack-b"), b"x").await);
    let evt = cjs.get_stream(subjects::EVT_STREAM).await.unwrap();
    assert!(
        evt.get_last_raw_message_by_subject(&subjects::run_events("rack-b"))
            .await
            .is_err(),
        "B's subject holds a forged event"
    );
    // Presence: own key yes, B's key no.
    assert!(!refused(&a, "$KV.pf_agents.rack-a".into(), b"p").await);
    assert!(
        refused(&a, "$KV.pf_agents.rack-b".into(), b"p").await,
        "agent A wrote B's presence"
    );

    // B's consumer: A cannot look it up, nor ask it for messages directly.
    assert!(
        a.get_consumer_from_stream::<consumer::pull::Config, _, _>(
            "agent-rack-b",
            subjects::WORK_STREAM
        )
        .await
        .is_err()
    );
    assert!(
        unanswered(
            &a_client,
            "$JS.API.CONSUMER.MSG.NEXT.PF_WORK.agent-rack-b".into()
        )
        .await,
        "agent A pulled B's work"
    );
    assert!(
        unanswered(
            &a_client,
            "$JS.API.CONSUMER.DELETE.PF_WORK.agent-rack-b".into()
        )
        .await
    );
    let mut b_consumer = cjs
        .get_consumer_from_stream::<consumer::pull::Config, _, _>(
            "agent-rack-b",
            subjects::WORK_STREAM,
        )
        .await
        .expect("B's consumer is still there");
    assert_eq!(b_consumer.info().await.unwrap().num_pending, 1);

    // A's own consumer: pull and ack its order.
    let mine = a
        .get_consumer_from_stream::<consumer::pull::Config, _, _>(
            "agent-rack-a",
            subjects::WORK_STREAM,
        )
        .await
        .expect("own consumer");
    let mut batch = mine
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let m = batch.next().await.expect("a message").expect("no error");
    assert_eq!(&m.payload[..], b"order for rack-a");
    m.double_ack().await.expect("ack own work");

    // Flow packs: A watches through its own consumer; B's watcher is out of its reach.
    let flows = cjs.get_key_value(subjects::FLOWS_BUCKET).await.unwrap();
    flows.put("tiktok", "pack = 1".into()).await.unwrap();
    let flows_stream = subjects::kv_stream(subjects::FLOWS_BUCKET);
    let b_watch = subjects::flows_watcher("rack-b");
    cjs.create_consumer_on_stream(watcher(&b_watch), &flows_stream)
        .await
        .expect("B's watcher");
    let own = a
        .create_consumer_on_stream(watcher(&subjects::flows_watcher("rack-a")), &flows_stream)
        .await
        .expect("A creates its own watcher");
    let mut entries = own
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let entry = entries.next().await.expect("a pack").unwrap();
    assert_eq!(&entry.payload[..], b"pack = 1");
    assert!(
        a.create_consumer_on_stream(watcher(&b_watch), &flows_stream)
            .await
            .is_err(),
        "agent A created a consumer under B's name"
    );
    assert!(
        a.delete_consumer_from_stream(&b_watch, &flows_stream)
            .await
            .is_err(),
        "agent A deleted B's watcher"
    );
    assert!(
        unanswered(&a_client, format!("$JS.API.CONSUMER.CREATE.{flows_stream}")).await,
        "agent A created an unnamed consumer"
    );
    cjs.get_consumer_from_stream::<consumer::pull::Config, _, _>(&b_watch, &flows_stream)
        .await
        .expect("B's watcher survives");
    a.delete_consumer_from_stream(subjects::flows_watcher("rack-a"), &flows_stream)
        .await
        .expect("A deletes its own watcher");

    // Evidence: A's own bucket yes; B's can be neither opened, read, written nor purged.
    let own = a
        .get_object_store(subjects::evidence_bucket("rack-a"))
        .await
        .expect("A opens its bucket");
    let mut shot: &[u8] = b"png bytes";
    own.put("rack-a/item/1/screen.png", &mut shot)
        .await
        .expect("A stores its evidence");
    let mut again: &[u8] = b"png bytes, again";
    own.put("rack-a/item/1/screen.png", &mut again)
        .await
        .expect("A replaces its own object");
    assert!(
        a.get_object_store(subjects::evidence_bucket("rack-b"))
            .await
            .is_err()
    );
    let b_stream = subjects::object_stream(&subjects::evidence_bucket("rack-b"));
    assert!(
        unanswered(&a_client, format!("$JS.API.STREAM.MSG.GET.{b_stream}")).await,
        "agent A read B's evidence"
    );
    assert!(
        unanswered(
            &a_client,
            format!("$JS.API.DIRECT.GET.{b_stream}.$O.pf_evidence_rack-b.M.x")
        )
        .await
    );
    assert!(unanswered(&a_client, format!("$JS.API.STREAM.PURGE.{b_stream}")).await);
    assert!(unanswered(&a_client, format!("$JS.API.STREAM.MSG.DELETE.{b_stream}")).await);
    assert!(refused(&a, "$O.pf_evidence_rack-b.C.forged".into(), b"x").await);
    assert!(refused(&a, "$O.pf_evidence_rack-b.M.forged".into(), b"x").await);
    assert!(
        refused(&a, "$O.pf_evidence.M.shared".into(), b"x").await,
        "agent A wrote the legacy shared bucket"
    );
    let mut kept = b_evidence
        .get("rack-b/item/1/screen.png")
        .await
        .expect("B's object is intact");
    let mut body = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut kept, &mut body)
        .await
        .unwrap();
    assert_eq!(body, b"B's screenshot");
    let b_info = cjs
        .get_stream(&b_stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(b_info.state.messages, 2, "one chunk and one meta of B's");

    // Screen frames (core NATS, at most once: each try publishes again until one arrives): A's
    // own phones' subject reaches the coordinator, B's is dropped by the server. The forged
    // frame goes first each time: had it passed, it would arrive first.
    let mut frames = coord.subscribe("pf.screen.>").await.unwrap();
    coord.flush().await.unwrap();
    let first = heard(
        "A's own frame arrives",
        &a_client,
        &[
            (subjects::screen("rack-b", "P1"), "forged"),
            (subjects::screen("rack-a", "P1"), "own"),
        ],
        &mut frames,
    )
    .await;
    assert_eq!(
        first.subject.as_str(),
        "pf.screen.rack-a.P1",
        "agent A published B's screen"
    );
    assert_eq!(&first.payload[..], b"own");
    // Watches: A hears its own, never B's (B's is published first each time, on one
    // connection, so it would be in hand by the time A's own arrives).
    let mut b_watches = a_client
        .subscribe(subjects::screen_watch("rack-b"))
        .await
        .unwrap();
    let mut a_watches = a_client
        .subscribe(subjects::screen_watch("rack-a"))
        .await
        .unwrap();
    a_client.flush().await.unwrap();
    let own = heard(
        "A hears its own watch",
        &coord,
        &[
            (subjects::screen_watch("rack-b"), "b"),
            (subjects::screen_watch("rack-a"), "a"),
        ],
        &mut a_watches,
    )
    .await;
    assert_eq!(&own.payload[..], b"a");
    assert!(
        !matches!(
            futures::FutureExt::now_or_never(b_watches.next()),
            Some(Some(_))
        ),
        "agent A heard B's watches"
    );

    // The same rules hold for agent B against A.
    let b = short(
        op.connect_agent(&creds["rack-b"], "rack-b")
            .await
            .expect("B connects"),
    );
    assert!(refused(&b, subjects::run_events("rack-a"), b"x").await);
    assert!(!refused(&b, subjects::run_events("rack-b"), bytes).await);
}

#[test]
fn the_user_password_script_grants_what_the_jwts_grant() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/agent-user.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .args(["rack-07", "\"pw\""])
        .output()
        .expect("agent-user.sh runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let quoted = |s: &str| format!("\"{s}\"");
    let listed: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
        .collect();
    let publish = fleet_auth::permissions::agent_publish("rack-07").allow;
    let want: Vec<String> = publish.iter().map(|s| quoted(s)).collect();
    let got: Vec<String> = listed
        .iter()
        .map(|l| l.trim_end_matches(',').to_string())
        .collect();
    assert_eq!(got, want);
    assert!(text.contains("subscribe: { allow: [\"_INBOX_rack-07.>\", \"pf.watch.rack-07\"] }"));
    let bad = std::process::Command::new("sh")
        .arg(&script)
        .args(["rack.07", "pw"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

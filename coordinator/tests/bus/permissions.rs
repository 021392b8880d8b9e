//! deploy/nats/nats-server.conf: agent A cannot publish B's events nor pull B's work, and can
//! do both for itself.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use phonefarm_coordinator::bus::bootstrap;
use phonefarm_shared::{EventKind, subjects};

use crate::support::*;

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf")
}

async fn connect(url: &str, user: &str, pass: &str, inbox: Option<&str>) -> async_nats::Client {
    let mut opts = async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into());
    if let Some(p) = inbox {
        opts = opts.custom_inbox_prefix(p);
    }
    opts.connect(url).await.expect("connect")
}

fn short(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

#[tokio::test]
async fn agents_are_confined_to_their_own_subjects_and_consumers() {
    let env = vec![
        (
            "NATS_COORDINATOR_PASSWORD".to_string(),
            "coord-secret".to_string(),
        ),
        ("NATS_RACK_A_PASSWORD".to_string(), "a-secret".to_string()),
        ("NATS_RACK_B_PASSWORD".to_string(), "b-secret".to_string()),
    ];
    let nats = NatsServer::start_with_env(Some(config()), env).await;
    let url = nats.url();
    // Anonymous or wrong passwords are refused.
    assert!(
        async_nats::ConnectOptions::with_user_and_password("rack-a".into(), "nope".into())
            .connect(url.as_str())
            .await
            .is_err()
    );

    // The coordinator bootstraps and enrolls both agents, then queues one order for each.
    let coord = connect(&url, "coordinator", "coord-secret", None).await;
    let cjs = jetstream::new(coord.clone());
    bootstrap::ensure(&cjs, &test_config(url.clone()))
        .await
        .expect("bootstrap");
    for a in ["rack-a", "rack-b"] {
        bootstrap::enroll_agent(&cjs, a).await.expect("enroll");
        cjs.publish(subjects::work(a), format!("order for {a}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let a_client = connect(&url, "rack-a", "a-secret", Some("_INBOX_rack-a")).await;
    let a = short(a_client.clone());

    // Own events: stored.
    let ev = phonefarm_shared::AgentEvent {
        queue_item_id: uuid::Uuid::now_v7(),
        attempt: 1,
        seq: 1,
        at_unix_ms: 0,
        kind: EventKind::Accepted,
    };
    a.publish(
        subjects::run_events("rack-a"),
        phonefarm_shared::encode(&ev).into(),
    )
    .await
    .expect("own publish")
    .await
    .expect("own event stored");
    // B's events: refused (no ack ever comes), and nothing is stored under B's subject.
    let forged = match a
        .publish(
            subjects::run_events("rack-b"),
            phonefarm_shared::encode(&ev).into(),
        )
        .await
    {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(forged, "agent A published B's events");
    let evt = cjs.get_stream(subjects::EVT_STREAM).await.unwrap();
    assert!(
        evt.get_last_raw_message_by_subject(&subjects::run_events("rack-b"))
            .await
            .is_err(),
        "B's subject holds a forged event"
    );
    assert!(
        evt.get_last_raw_message_by_subject(&subjects::run_events("rack-a"))
            .await
            .is_ok()
    );
    // Presence: own key yes, B's key no.
    a.publish("$KV.pf_agents.rack-a", "p".into())
        .await
        .unwrap()
        .await
        .expect("own presence");
    let other = match a.publish("$KV.pf_agents.rack-b", "p".into()).await {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(other, "agent A wrote B's presence");

    // B's consumer: A cannot even look it up, nor ask it for messages directly.
    assert!(
        a.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
            "agent-rack-b",
            subjects::WORK_STREAM
        )
        .await
        .is_err()
    );
    let pull = tokio::time::timeout(
        Duration::from_secs(2),
        a_client.request(
            "$JS.API.CONSUMER.MSG.NEXT.PF_WORK.agent-rack-b",
            "{\"batch\":1}".into(),
        ),
    )
    .await;
    assert!(
        !matches!(pull, Ok(Ok(ref m)) if !m.payload.is_empty()),
        "agent A pulled B's work"
    );
    // B's order is still waiting for B.
    let mut b_consumer = cjs
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
            "agent-rack-b",
            subjects::WORK_STREAM,
        )
        .await
        .unwrap();
    assert_eq!(b_consumer.info().await.unwrap().num_pending, 1);

    // A's own consumer: pull and ack its order.
    let mine = a
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
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
    let mut a_consumer = cjs
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
            "agent-rack-a",
            subjects::WORK_STREAM,
        )
        .await
        .unwrap();
    assert_eq!(a_consumer.info().await.unwrap().num_ack_pending, 0);

    // What the agent needs besides work: watch the flow packs, store evidence.
    let flows = cjs.get_key_value(subjects::FLOWS_BUCKET).await.unwrap();
    flows.put("tiktok", "pack = 1".into()).await.unwrap();
    let kv = a
        .get_key_value(subjects::FLOWS_BUCKET)
        .await
        .expect("agent opens pf_flows");
    let mut watch = kv
        .watch_with_history(">")
        .await
        .expect("agent watches pf_flows");
    let entry = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a pack within 5 s")
        .expect("an entry")
        .expect("no error");
    assert_eq!(&entry.value[..], b"pack = 1");
    let evidence = a
        .get_object_store(subjects::EVIDENCE_BUCKET)
        .await
        .expect("agent opens pf_evidence");
    let mut shot: &[u8] = b"png bytes";
    evidence
        .put("rack-a/item/1/screen.png", &mut shot)
        .await
        .expect("agent stores evidence");

    // The same rules hold for agent B against A.
    let b = short(connect(&url, "rack-b", "b-secret", Some("_INBOX_rack-b")).await);
    let forged = match b.publish(subjects::run_events("rack-a"), "x".into()).await {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(forged, "agent B published A's events");
}

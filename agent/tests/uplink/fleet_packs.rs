//! Presence and inventory, signed flow packs, one run per phone and the consumer bound again.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_inventory_report_the_phones_and_their_changes() {
    let agent = "rack-f";
    let mut env = env(agent, true).await;
    let (p1, p2) = (sim("SIMF1").await, sim("SIMF2").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p1, &p2]));
    let kv = env.js.get_key_value(subjects::AGENTS_BUCKET).await.unwrap();
    let presence: Presence = wait_for("presence", Duration::from_secs(20), async || {
        let v = kv.get(agent).await.ok()??;
        let p: Presence = phonefarm_shared::decode(&v).ok()?;
        (p.phones == 2).then_some(p)
    })
    .await;
    assert_eq!(presence.agent_id, agent);

    let inventories = async || -> Option<Vec<Inventory>> {
        let raw = stored(&env.js, &subjects::inventory(agent)).await?;
        Some(
            raw.iter()
                .map(|(_, p)| phonefarm_shared::decode::<Inventory>(p).expect("inventory decodes"))
                .collect(),
        )
    };
    let first = wait_for(
        "an inventory with both phones probed",
        Duration::from_secs(20),
        async || {
            inventories().await?.into_iter().rev().find(|i| {
                i.phones.len() == 2
                    && i.phones
                        .iter()
                        .all(|p| p.battery_level.is_some() && p.app_version.is_some())
            })
        },
    )
    .await;
    let f1 = first
        .phones
        .iter()
        .find(|p| p.phone_id == "SIMF1")
        .expect("SIMF1 listed");
    assert_eq!(f1.serial, "SIMF1");
    assert_eq!(f1.transport, "tcp");
    assert_eq!(f1.location, p1.address());
    assert_eq!(f1.state, phonefarm_shared::PhoneState::Online);
    assert_eq!(f1.battery_level, Some(85));
    assert_eq!(f1.temperature_decicelsius, Some(287));
    assert_eq!(f1.storage_free_bytes, Some(40 * 1024 * 1024 * 1024));
    assert_eq!(f1.screen_on, Some(true));
    assert_eq!(f1.app_version.as_deref(), Some("32.5.3"));
    assert_eq!(f1.model.as_deref(), Some("Phonesim_One"));

    p2.phone.lock().unwrap().config_mut().battery_level = 42;
    let later = wait_for(
        "an inventory with the new battery level",
        Duration::from_secs(20),
        async || {
            inventories().await?.into_iter().find(|i| {
                i.phones
                    .iter()
                    .any(|p| p.phone_id == "SIMF2" && p.battery_level == Some(42))
            })
        },
    )
    .await;
    assert!(later.seq > first.seq, "a new report, not a rewrite");

    // Nothing changes on the phones, but the connection comes back: the report is sent again.
    let cut = now_ms();
    env.nats.restart_async().await;
    let after = wait_for(
        "an inventory after the reconnect",
        Duration::from_secs(30),
        async || {
            inventories()
                .await?
                .into_iter()
                .find(|i| i.at_unix_ms > cut)
        },
    )
    .await;
    assert_eq!(after.phones.len(), 2);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_flow_packs_apply_and_refused_ones_are_reported() {
    let agent = "rack-g";
    let env = env(agent, true).await;
    let phone = sim("SIMG1").await;
    let mut cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    cfg.flow_packs_dir = None;
    cfg.pack_trust = trusting_publisher();
    let daemon = Agent::start(cfg);
    let kv = env.js.get_key_value(subjects::FLOWS_BUCKET).await.unwrap();
    let v1 = std::fs::read_to_string(packs_dir().join("tiktok-32.toml")).unwrap();
    assert!(v1.contains("revision = 1"));
    let rev = |n: u32| v1.replace("revision = 1", &format!("revision = {n}"));

    // Unsigned: refused and reported; with no pack for the app the run fails for want of one.
    kv.put("tiktok-32", v1.clone().into()).await.unwrap();
    let r = pack_report(&env.js, agent, "the unsigned pack reported", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "unsigned")
    })
    .await;
    assert!(r.running.is_empty(), "{r:?}");
    let first = order("SIMG1", short_warmup());
    publish_order(&env.js, agent, &first).await;
    let events = wait_finished(&env.js, agent, first.queue_item_id, Duration::from_secs(60)).await;
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let code = error.unwrap().code;
    assert!(code.starts_with("flow_pack:no_pack"), "{code}");

    // Signed by the trusted key: applied at the next run.
    kv.put("tiktok-32", signed(&publisher(), "tiktok-32", &rev(2)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "revision 2 running", |r| {
        runs(r, "tiktok-32", 2) && r.rejected.is_empty()
    })
    .await;
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);

    // Signed by another key, or unsigned: refused with who signed and why; revision 2 stays.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    kv.put("tiktok-32", signed(&stranger, "tiktok-32", &rev(3)))
        .await
        .unwrap();
    let r = pack_report(&env.js, agent, "the stranger's pack refused", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "untrusted_signer")
    })
    .await;
    assert!(runs(&r, "tiktok-32", 2), "the current pack is kept: {r:?}");
    let who = &r.rejected[0].signer;
    assert_eq!(
        who.as_deref(),
        Some(phonefarm_agent::uplink::packs::key_text(&stranger.verifying_key()).as_str())
    );
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);

    // A good signature of another key's text does not verify for this key.
    kv.put("tiktok-32", signed(&publisher(), "tiktok-33", &rev(4)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "the misplaced signature refused", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "bad_signature")
            && runs(r, "tiktok-32", 2)
    })
    .await;

    kv.put("tiktok-32", signed(&publisher(), "tiktok-32", &rev(5)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "revision 5 running", |r| {
        runs(r, "tiktok-32", 5) && r.rejected.is_empty()
    })
    .await;
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_phone_and_the_consumer_is_bound_again_after_deletion() {
    let agent = "rack-h";
    let env = env(agent, true).await;
    let phone = sim("SIMH1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let first = order("SIMH1", short_warmup());
    let second = order("SIMH1", short_warmup());
    publish_order(&env.js, agent, &first).await;
    publish_order(&env.js, agent, &second).await;
    let a = wait_finished(&env.js, agent, first.queue_item_id, Duration::from_secs(60)).await;
    let b = wait_finished(
        &env.js,
        agent,
        second.queue_item_id,
        Duration::from_secs(60),
    )
    .await;
    assert_complete_sequence(&a);
    assert_complete_sequence(&b);
    // The second order was accepted only once the first run had finished.
    let all = run_events(&env.js, agent).await.unwrap();
    let pos = |qid: Uuid, pred: &dyn Fn(&EventKind) -> bool| {
        all.iter()
            .position(|e| e.queue_item_id == qid && pred(&e.kind))
            .unwrap()
    };
    let first_done = pos(first.queue_item_id, &|k| {
        matches!(k, EventKind::Finished { .. })
    });
    let second_accepted = pos(second.queue_item_id, &|k| *k == EventKind::Accepted);
    assert!(first_done < second_accepted, "runs on one phone overlapped");

    // The coordinator deletes and recreates the agent's work consumer: the agent binds again.
    let work = env.js.get_stream(subjects::WORK_STREAM).await.unwrap();
    work.delete_consumer(&subjects::agent_consumer(agent))
        .await
        .unwrap();
    work.create_consumer(consumer::pull::Config {
        durable_name: Some(subjects::agent_consumer(agent)),
        filter_subject: subjects::work(agent),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    })
    .await
    .unwrap();
    let third = order("SIMH1", short_warmup());
    publish_order(&env.js, agent, &third).await;
    let c = wait_finished(&env.js, agent, third.queue_item_id, Duration::from_secs(60)).await;
    assert_eq!(finished(&c).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

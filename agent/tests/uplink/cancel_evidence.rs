//! Cancels, and the evidence of failed runs: written durably, uploaded when NATS is reachable.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_and_hard_cancel_end_runs_as_cancelled() {
    let agent = "rack-d";
    let env = env(agent, true).await;
    let (p1, p2) = (sim("SIMD1").await, sim("SIMD2").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p1, &p2]));
    // A control for no known run is acked and ignored.
    publish_control(
        &env.js,
        agent,
        &Control::Cancel {
            queue_item_id: Uuid::new_v4(),
            attempt: 1,
            mode: CancelMode::Hard,
        },
    )
    .await;
    // A cancel that overtakes its order: the order is accepted and finished unrun.
    let early = order("SIMD1", long_warmup());
    publish_control(
        &env.js,
        agent,
        &Control::Cancel {
            queue_item_id: early.queue_item_id,
            attempt: early.attempt,
            mode: CancelMode::Soft,
        },
    )
    .await;
    wait_for(
        "the early cancel consumed",
        Duration::from_secs(20),
        async || (stream_messages(&env.js, subjects::CTL_STREAM).await? == 0).then_some(()),
    )
    .await;
    publish_order(&env.js, agent, &early).await;
    let events = wait_finished(&env.js, agent, early.queue_item_id, Duration::from_secs(20)).await;
    assert_complete_sequence(&events);
    assert_eq!(
        events.len(),
        2,
        "Accepted then Finished, nothing run: {events:?}"
    );
    assert_eq!(finished(&events).unwrap().0, Outcome::Cancelled);

    let soft = order("SIMD1", long_warmup());
    let hard = order("SIMD2", long_warmup());
    publish_order(&env.js, agent, &soft).await;
    publish_order(&env.js, agent, &hard).await;
    for o in [&soft, &hard] {
        // Watching a video (a 30 s dwell) and heartbeating meanwhile.
        wait_for(
            "a run watching videos",
            Duration::from_secs(60),
            async || {
                let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
                let watching = evs.iter().position(
                |e| matches!(&e.kind, EventKind::StepStarted { step } if step.starts_with("watch")),
            )?;
                evs[watching..]
                    .iter()
                    .any(|e| e.kind == EventKind::Heartbeat)
                    .then_some(())
            },
        )
        .await;
    }
    let t0 = Instant::now();
    for (o, mode) in [(&soft, CancelMode::Soft), (&hard, CancelMode::Hard)] {
        publish_control(
            &env.js,
            agent,
            &Control::Cancel {
                queue_item_id: o.queue_item_id,
                attempt: o.attempt,
                mode,
            },
        )
        .await;
    }
    for o in [&soft, &hard] {
        let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(20)).await;
        assert_complete_sequence(&events);
        assert_eq!(finished(&events).unwrap().0, Outcome::Cancelled);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "cancels did not wait for 30 s dwells"
    );
    assert_eq!(
        stream_messages(&env.js, subjects::CTL_STREAM).await,
        Some(0),
        "every control acked"
    );
    {
        let hard_phone = p2.phone.lock().unwrap();
        assert!(
            hard_phone
                .actions()
                .iter()
                .any(|a| matches!(a, phonefarm_phonemodel::Action::AppForceStopped)),
            "hard cancel force-stopped the app"
        );
        assert!(!hard_phone.app_running());
    }
    daemon.stop().await;
}

/// The bytes of an evidence object, once it is stored.
async fn read_object(store: &jetstream::object_store::ObjectStore, object: &str) -> Vec<u8> {
    wait_for(
        "the evidence uploaded",
        Duration::from_secs(30),
        async || {
            let mut obj = store.get(object).await.ok()?;
            let mut data = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut data)
                .await
                .ok()?;
            Some(data)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_account_fails_non_retryably_with_evidence() {
    let agent = "rack-e";
    let env = env(agent, true).await;
    let phone = sim("SIME1").await;
    phone.phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let o = order("SIME1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let error = error.expect("a failure has an error");
    assert_eq!(error.code, "account_outcome:banned");
    assert!(!error.retryable, "an account outcome is not retryable");
    let objects: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Evidence { object, kind } => Some((object.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    let kinds: HashSet<&str> = objects.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        kinds.contains("ui_dump") && kinds.contains("screenshot"),
        "{objects:?}"
    );
    let store = env
        .js
        .get_object_store(subjects::evidence_bucket(agent))
        .await
        .expect("evidence store");
    for (object, kind) in &objects {
        assert!(
            object.starts_with(&format!("{agent}/{}/{}/", o.queue_item_id, o.attempt)),
            "{object}"
        );
        // Uploaded from the agent's evidence spool, right after it was announced.
        let data = read_object(&store, object).await;
        match kind.as_str() {
            "screenshot" => assert!(data.starts_with(b"\x89PNG"), "a PNG"),
            _ => assert!(
                String::from_utf8_lossy(&data).contains("<hierarchy"),
                "a UI dump"
            ),
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_a_failure_during_a_nats_outage_is_kept_and_uploaded_when_nats_is_back() {
    let agent = "rack-ev";
    let mut env = env(agent, true).await;
    let phone = sim("SIMEV1").await;
    let cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    let daemon = Agent::start(cfg.clone());
    let o = order(
        "SIMEV1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 5, "watch_seconds": {"min": 2, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("a run watching videos", Duration::from_secs(60), async || {
        let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::StepStarted { step } if step.starts_with("watch")))
            .then_some(())
    })
    .await;

    // NATS goes away, then the account is banned: the run fails (with evidence) offline.
    env.nats.kill();
    phone.phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let journal_dir = env.state.join("journal");
    wait_for(
        "the run failed into the journal",
        Duration::from_secs(60),
        async || {
            let journal = JournalView::read(&journal_dir).ok()?;
            journal
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(drop)
        },
    )
    .await;
    let spool = EvidenceSpool::open(&journal_dir).unwrap();
    assert_eq!(
        spool.pending_count(),
        2,
        "the dump and the screenshot are kept on disk"
    );
    // The agent restarts before NATS is back: the next process uploads what the last one kept.
    daemon.stop().await;
    env.nats.restart_async().await;
    let daemon = Agent::start(cfg);

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(error.unwrap().code, "account_outcome:banned");
    let objects: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Evidence { object, kind } => Some((object.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    let kinds: HashSet<&str> = objects.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        HashSet::from(["ui_dump", "screenshot"]),
        "{objects:?}"
    );
    let store = env
        .js
        .get_object_store(subjects::evidence_bucket(agent))
        .await
        .expect("evidence store");
    for (object, kind) in &objects {
        let data = read_object(&store, object).await;
        match kind.as_str() {
            "screenshot" => assert!(data.starts_with(b"\x89PNG"), "a PNG"),
            _ => assert!(
                String::from_utf8_lossy(&data).contains("<hierarchy"),
                "a UI dump"
            ),
        }
    }
    wait_for("the spool drained", Duration::from_secs(20), async || {
        (spool.pending_count() == 0).then_some(())
    })
    .await;
    daemon.stop().await;
}

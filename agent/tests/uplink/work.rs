//! Work orders: acked once `Accepted` is stored, run to completion, and their events kept through NATS outages and agent restarts.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_order_is_acked_after_accepted_is_stored_and_runs_to_completion() {
    let agent = "rack-a";
    // No event stream yet: Accepted cannot be stored, so the order must stay unacked.
    let env = env(agent, false).await;
    let phone = sim("SIMA1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));

    // A bad message first: terminated, never crash-looping, and the next order still runs.
    env.js
        .publish(subjects::work(agent), vec![1u8, 0xff, 0xff].into())
        .await
        .unwrap()
        .await
        .unwrap();
    let o = order("SIMA1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    wait_for("the order journaled", Duration::from_secs(20), async || {
        (JournalView::read(&env.state.join("journal")).ok()?.orders() > 0).then_some(())
    })
    .await;
    // Accepted stays journaled and the order unacked (past the agent's accept timeout and
    // the consumer's ack wait: a redelivery must not start a second run).
    wait_for(
        "the order redelivered",
        Duration::from_secs(20),
        async || {
            let mut c: jetstream::consumer::PullConsumer = env
                .js
                .get_consumer_from_stream(subjects::agent_consumer(agent), subjects::WORK_STREAM)
                .await
                .ok()?;
            (c.info().await.ok()?.num_redelivered >= 1).then_some(())
        },
    )
    .await;
    assert_eq!(
        stream_messages(&env.js, subjects::WORK_STREAM).await,
        Some(1),
        "order acked before Accepted was stored"
    );

    create_event_stream(&env.js).await;
    wait_for("the order acked", Duration::from_secs(20), async || {
        (stream_messages(&env.js, subjects::WORK_STREAM).await? == 0).then_some(())
    })
    .await;
    let accepted = run_events(&env.js, agent).await.unwrap();
    assert!(
        of(&accepted, o.queue_item_id)
            .iter()
            .any(|e| e.kind == EventKind::Accepted),
        "Accepted is stored by the time the order is acked"
    );

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, result, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Completed, "{error:?}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(
        result["keywords"]["cooking"]["videos_watched"], 1,
        "{result}"
    );
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { step } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert!(!steps.is_empty(), "steps were reported");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepFinished { .. })),
        "step ends were reported"
    );
    let accepted_runs = events
        .iter()
        .filter(|e| e.kind == EventKind::Accepted)
        .count();
    assert_eq!(accepted_runs, 1, "the redelivered order did not run twice");
    let searched = phone
        .phone
        .lock()
        .unwrap()
        .actions()
        .iter()
        .filter(|a| matches!(a, phonefarm_phonemodel::Action::Searched { .. }))
        .count();
    assert_eq!(searched, 1, "one run on the phone");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_mid_run_loses_and_duplicates_nothing() {
    let agent = "rack-b";
    let mut env = env(agent, true).await;
    let phone = sim("SIMB1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let o = order(
        "SIMB1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 2, "watch_seconds": {"min": 1, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("the first step", Duration::from_secs(30), async || {
        let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
        evs.iter()
            .any(|e| matches!(e.kind, EventKind::StepStarted { .. }))
            .then_some(())
    })
    .await;

    env.nats.kill();
    // The run goes on while the server is away: its events pile up in the journal.
    let journal_dir = env.state.join("journal");
    let pending = || {
        JournalView::read(&journal_dir)
            .ok()
            .map(|v| v.pending_count())
    };
    wait_for(
        "events journaled during the outage",
        Duration::from_secs(30),
        async || (pending()? >= 3).then_some(()),
    )
    .await;
    env.nats.restart_async().await;

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(90)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    wait_for("the journal drained", Duration::from_secs(20), async || {
        (pending()? == 0).then_some(())
    })
    .await;
    // The work consumer rode out the outage by itself: a new order still runs.
    let next = order("SIMB1", short_warmup());
    publish_order(&env.js, agent, &next).await;
    let events = wait_finished(&env.js, agent, next.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_goes_again_when_nats_is_back_not_when_its_backoff_ends() {
    let agent = "rack-w";
    let mut env = env(agent, true).await;
    let phone = sim("SIMW1").await;
    let mut c = config(agent, &env.nats.url(), &env.state, &[&phone]);
    // A failed publish backs off far longer than this test waits for the events.
    c.publisher.min_backoff = Duration::from_secs(300);
    c.publisher.max_backoff = Duration::from_secs(300);
    let daemon = Agent::start(c);
    // A run of several seconds, so it finishes offline well past the 1 s publish ack timeout.
    let o = order(
        "SIMW1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 2, "watch_seconds": {"min": 1, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("Accepted", Duration::from_secs(30), async || {
        (!of(&run_events(&env.js, agent).await?, o.queue_item_id).is_empty()).then_some(())
    })
    .await;
    env.nats.kill();
    // The run finishes offline: the publishes of its events have failed and the publisher is
    // backing off.
    let journal_dir = env.state.join("journal");
    wait_for(
        "the run finished into the journal",
        Duration::from_secs(60),
        async || {
            JournalView::read(&journal_dir)
                .ok()?
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(drop)
        },
    )
    .await;
    env.nats.restart_async().await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_events_are_published_by_the_next_agent_process() {
    let agent = "rack-c";
    let mut env = env(agent, true).await;
    let phone = sim("SIMC1").await;
    let cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    let daemon = Agent::start(cfg.clone());
    let o = order("SIMC1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    wait_for("Accepted", Duration::from_secs(30), async || {
        (!of(&run_events(&env.js, agent).await?, o.queue_item_id).is_empty()).then_some(())
    })
    .await;
    env.nats.kill();
    // The run finishes offline: everything after Accepted is only in the journal.
    let state = env.state.clone();
    let pending = wait_for(
        "the run finished into the journal",
        Duration::from_secs(60),
        async || {
            let journal = JournalView::read(&state.join("journal")).ok()?;
            journal
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(|_| journal.pending_count())
        },
    )
    .await;
    assert!(
        pending >= 2,
        "unpublished events stay journaled ({pending})"
    );
    daemon.stop().await;

    env.nats.restart_async().await;
    let daemon = Agent::start(cfg);
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

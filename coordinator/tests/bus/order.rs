//! The events of one run are applied in their seq order, whatever order the event stream
//! delivers them in (replicas sharing the consumer, redeliveries after a NATS outage), and an
//! event whose predecessor never comes is applied after a bounded wait.

use phonefarm_shared::EventKind;
use std::time::{Duration, Instant};

use phonefarm_testkit::coordinator::bus::*;

#[tokio::test]
async fn events_delivered_out_of_seq_order_are_applied_in_seq_order() {
    let app = BusApp::spawn().await;
    let rx = Receiver::start(|_| 200).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app.enqueue_queued("o1", "acc-1", &rx.url).await;
    let o = agent.expect_order().await;
    let (qid, attempt) = (o.queue_item_id, o.attempt);
    // The stream holds the run's events backwards: Finished (3), a step (2), then Accepted
    // (1); each reaches the ingester before the next is even published.
    let third = agent
        .event_stored(qid, attempt, 3, finished_ok(r#"{"n":1}"#))
        .await;
    app.wait_delivered(third).await;
    let second = agent
        .event_stored(
            qid,
            attempt,
            2,
            EventKind::StepStarted {
                step: "search".into(),
            },
        )
        .await;
    app.wait_delivered(second).await;
    agent
        .event_stored(qid, attempt, 1, EventKind::Accepted)
        .await;

    let p = app.wait_status(pid, "completed").await;
    wait_until("all three applied", Duration::from_secs(20), || async {
        app.applied_seqs(qid).await.len() == 3
    })
    .await;
    let a = attempt as i32;
    assert_eq!(
        app.applied_seqs(qid).await,
        [(a, 1), (a, 2), (a, 3)],
        "applied in seq order"
    );
    assert!(p["timestamps"]["executing_at"].is_string(), "{p}");
    assert_eq!(p["result"]["n"], 1);
    // Accepted applied after Finished would have looked like a stale run starting: no cancel.
    let (cancels,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox WHERE subject LIKE 'pf.ctl.%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(cancels, 0, "no fencing cancel for the run's own Accepted");
    let bodies = rx.wait_bodies(3).await;
    assert_eq!(milestones(&bodies), ["accepted", "executing", "completed"]);
}

#[tokio::test]
async fn an_event_whose_predecessor_never_comes_is_applied_after_a_bounded_wait() {
    let wait = Duration::from_secs(1);
    let app = BusApp::spawn_with(|c| c.event_order_wait = wait).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app
        .enqueue_queued("o2", "acc-1", "http://127.0.0.1:9/cb")
        .await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    app.wait_status(pid, "executing").await;
    // Seq 2 is lost for good (say the agent had to set its journal entry aside).
    let published = Instant::now();
    agent.event(&o, 3, finished_ok(r#"{"n":3}"#)).await;
    let p = app.wait_status(pid, "completed").await;
    assert!(
        published.elapsed() >= wait,
        "applied only after waiting for seq 2 ({:?})",
        published.elapsed()
    );
    assert_eq!(p["result"]["n"], 3);
    let a = o.attempt as i32;
    assert_eq!(app.applied_seqs(o.queue_item_id).await, [(a, 1), (a, 3)]);
    // Seq 2 turning up late after all is recorded, and changes nothing.
    agent.event(&o, 2, EventKind::Heartbeat).await;
    wait_until("late seq 2 recorded", Duration::from_secs(20), || async {
        app.applied_seqs(o.queue_item_id).await.len() == 3
    })
    .await;
    assert_eq!(app.item_state(o.queue_item_id).await, "DONE");
    assert_eq!(app.status(pid).await, "completed");
}

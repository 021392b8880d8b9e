use std::collections::HashSet;
use std::time::Duration;

use phonefarm_shared::EventKind;
use serde_json::json;

use phonefarm_testkit::coordinator::bus::*;

/// nats-server killed and restarted (same port and store) with work in flight: every order
/// reaches the agent exactly once per attempt and the relay resumes by itself.
#[tokio::test]
async fn a_nats_outage_loses_nothing() {
    // Leases and the offline threshold longer than the outage: this test is about the relay.
    let mut app = BusApp::spawn_with(|c| {
        c.lease = Duration::from_secs(60);
        c.accept_timeout = Duration::from_secs(60);
        c.offline_after = Duration::from_secs(60);
    })
    .await;
    let phones: Vec<String> = (1..=6).map(|i| format!("P{i}")).collect();
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &refs).await;
    for (i, p) in phones.iter().enumerate() {
        app.account(&format!("acc-{i}"), p).await;
    }
    let mut pids = Vec::new();
    for i in 0..3 {
        pids.push(
            app.enqueue(&keyword(
                &format!("o{i}"),
                json!({"routing": "queue", "account_id": format!("acc-{i}")}),
                "unattended",
                "http://127.0.0.1:9/cb",
            ))
            .await,
        );
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(agent.expect_order().await);
    }
    // Outage with one run accepted just before, and new work enqueued during it.
    agent.event(&got[0], 1, EventKind::Accepted).await;
    app.nats.kill();
    for i in 3..6 {
        pids.push(
            app.enqueue(&keyword(
                &format!("o{i}"),
                json!({"routing": "queue", "account_id": format!("acc-{i}")}),
                "unattended",
                "http://127.0.0.1:9/cb",
            ))
            .await,
        );
    }
    wait_until(
        "orders claimed while NATS is down",
        Duration::from_secs(10),
        || async {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&app.db.pool)
                    .await
                    .unwrap();
            n >= 1
        },
    )
    .await;
    app.nats.restart_async().await;
    wait_until("outbox drained", Duration::from_secs(30), || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        n == 0
    })
    .await;
    let agent = SimAgent::connect(&app.nats.url(), "rack-1").await;
    while got.len() < 6 {
        got.push(agent.expect_order().await);
    }
    let distinct: HashSet<_> = got.iter().map(|o| (o.queue_item_id, o.attempt)).collect();
    assert_eq!(distinct.len(), 6, "duplicated or lost orders");
    assert!(
        agent.next_order(Duration::from_millis(800)).await.is_none(),
        "an order arrived twice"
    );
    // The run accepted before the outage finishes after it.
    agent.event(&got[0], 2, finished_ok("{}")).await;
    let done = got[0].process_id.unwrap();
    app.wait_status(done, "completed").await;
    app.stop().await;
}

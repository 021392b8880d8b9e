use std::time::{Duration, Instant};

use phonefarm_shared::{CancelMode, Control, EventKind, Outcome, WorkOrder};
use serde_json::json;
use uuid::Uuid;

use phonefarm_testkit::coordinator::bus::*;

async fn running(app: &BusApp, agent: &SimAgent, request: &str) -> (Uuid, WorkOrder) {
    let pid = app
        .enqueue_queued(request, "acc-1", "http://127.0.0.1:9/cb")
        .await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    app.wait_status(pid, "executing").await;
    (pid, o)
}

async fn cancel(app: &BusApp, pid: Uuid, body: serde_json::Value) -> serde_json::Value {
    let (s, b) = app.post(&format!("/processes/{pid}/cancel"), &body).await;
    assert_eq!(s, 200, "{b}");
    b
}

fn cancelled() -> EventKind {
    EventKind::Finished {
        outcome: Outcome::Cancelled,
        result_json: "{}".into(),
        error: None,
    }
}

#[tokio::test]
async fn soft_and_hard_cancels_reach_the_agent() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    for (strategy, mode, status) in [
        ("soft", CancelMode::Soft, "requested"),
        ("hard", CancelMode::Hard, "issued"),
    ] {
        let (pid, o) = running(&app, &agent, strategy).await;
        let b = cancel(&app, pid, json!({"reason": "stop", "requested_by": {"system": "ugc-tracker"}, "strategy": strategy})).await;
        assert_eq!(b["termination"]["status"], status, "{b}");
        assert_eq!(b["termination"]["terminate_issued"], status == "issued");
        assert_eq!(b["termination"]["container"]["agent_id"], "rack-1");
        assert_eq!(b["termination"]["container"]["phone_id"], "P1");
        assert_eq!(b["active_queue_item_ids"], json!([o.queue_item_id]));
        let ctl = agent
            .next_control(Duration::from_secs(10))
            .await
            .expect("a cancel order");
        assert_eq!(
            ctl,
            Control::Cancel {
                queue_item_id: o.queue_item_id,
                attempt: o.attempt,
                mode
            }
        );
        agent.event(&o, 2, cancelled()).await;
        app.wait_status(pid, "cancelled").await;
    }
}

#[tokio::test]
async fn soft_then_force_sends_hard_after_the_delay_if_still_running() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let (pid, o) = running(&app, &agent, "stf").await;
    let asked = Instant::now();
    let b = cancel(&app, pid, json!({"reason": "stop", "requested_by": {"system": "ugc-tracker"}, "strategy": "soft_then_force", "force_after_seconds": 1})).await;
    assert_eq!(b["termination"]["status"], "scheduled");
    assert_eq!(b["termination"]["terminate_issued"], false);
    let soft = agent
        .next_control(Duration::from_secs(10))
        .await
        .expect("soft");
    assert_eq!(
        soft,
        Control::Cancel {
            queue_item_id: o.queue_item_id,
            attempt: 1,
            mode: CancelMode::Soft
        }
    );
    // The run ignores the soft stop but stays alive.
    agent.event(&o, 2, EventKind::Heartbeat).await;
    let hard = agent
        .next_control(Duration::from_secs(10))
        .await
        .expect("hard");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "forced too early"
    );
    assert_eq!(
        hard,
        Control::Cancel {
            queue_item_id: o.queue_item_id,
            attempt: 1,
            mode: CancelMode::Hard
        }
    );
    agent.event(&o, 3, cancelled()).await;
    let p = app.wait_status(pid, "cancelled").await;
    assert!(p["timestamps"]["cancel_requested_at"].is_string());

    // A run that stops at the soft request gets no hard order.
    let (pid, o) = running(&app, &agent, "stf2").await;
    cancel(&app, pid, json!({"reason": "stop", "requested_by": {"system": "ugc-tracker"}, "strategy": "soft_then_force", "force_after_seconds": 1})).await;
    assert!(matches!(
        agent.next_control(Duration::from_secs(10)).await,
        Some(Control::Cancel {
            mode: CancelMode::Soft,
            ..
        })
    ));
    agent.event(&o, 2, cancelled()).await;
    app.wait_status(pid, "cancelled").await;
    assert!(
        agent
            .next_control(Duration::from_millis(2000))
            .await
            .is_none(),
        "hard sent to a stopped run"
    );
}

#[tokio::test]
async fn cancel_of_queued_work_needs_no_agent() {
    let app = BusApp::spawn().await;
    app.account("acc-1", "P9").await; // no agent has P9: the work waits
    let pid = app
        .enqueue_queued("q", "acc-1", "http://127.0.0.1:9/cb")
        .await;
    let b = cancel(
        &app,
        pid,
        json!({"reason": "stop", "requested_by": {"system": "ugc-tracker"}, "strategy": "hard"}),
    )
    .await;
    assert_eq!(b["termination"]["status"], "not_needed");
    assert_eq!(b["process"]["status"], "cancelled");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE subject LIKE 'pf.ctl.%'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

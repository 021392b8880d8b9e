use std::time::Duration;

use phonefarm_shared::{Capability, EventKind};
use serde_json::json;

use phonefarm_testkit::coordinator::bus::*;

#[tokio::test]
async fn enqueued_work_reaches_the_agent_and_completes() {
    let app = BusApp::spawn().await;
    let rx = Receiver::start(|_| 200).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app.enqueue_queued("r1", "acc-1", &rx.url).await;
    let order = agent.expect_order().await;
    assert_eq!(order.process_id, Some(pid));
    assert_eq!(order.phone_id, "P1");
    assert_eq!(order.account_id, "acc-1");
    assert_eq!(order.capability, Capability::KeywordWarmup);
    assert_eq!(order.attempt, 1);
    let inputs: serde_json::Value = serde_json::from_str(&order.inputs_json).unwrap();
    assert_eq!(inputs["keywords"], json!(["fitness"]));
    assert!(order.deadline_unix_ms > 0);
    // The outbox row and the history row the claim statement built for this order.
    let (subject, msg_id, payload): (String, String, Vec<u8>) =
        sqlx::query_as("SELECT subject, msg_id, payload FROM outbox WHERE msg_id LIKE 'work:%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(subject, phonefarm_shared::subjects::work("rack-1"));
    assert_eq!(
        msg_id,
        phonefarm_coordinator::db::dispatch::work_msg_id(order.queue_item_id, 1)
    );
    assert_eq!(
        phonefarm_shared::decode::<phonefarm_shared::WorkOrder>(&payload).unwrap(),
        order
    );
    let (dispatched,): (serde_json::Value,) = sqlx::query_as(
        "SELECT payload FROM queue_item_events WHERE queue_item_id = $1 AND kind = 'dispatched'",
    )
    .bind(order.queue_item_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        dispatched,
        json!({"attempt": 1, "agent_id": "rack-1", "phone_id": "P1", "run_id": order.run_id})
    );

    agent.event(&order, 1, EventKind::Accepted).await;
    let p = app.wait_status(pid, "executing").await;
    assert!(p["timestamps"]["executing_at"].is_string());
    agent
        .event(
            &order,
            2,
            EventKind::StepStarted {
                step: "search".into(),
            },
        )
        .await;
    agent
        .event(
            &order,
            3,
            EventKind::Progress {
                counters_json: r#"{"videos_watched":1}"#.into(),
            },
        )
        .await;
    agent
        .event(
            &order,
            4,
            EventKind::Evidence {
                object: "rack-1/run/1/screen.png".into(),
                kind: "screenshot".into(),
            },
        )
        .await;
    agent
        .event(
            &order,
            5,
            finished_ok(
                r#"{"keywords":{"fitness":{"videos_watched":2,"liked":0,"commented":false}}}"#,
            ),
        )
        .await;
    let p = app.wait_status(pid, "completed").await;
    assert_eq!(p["result"]["keywords"]["fitness"]["videos_watched"], 2);
    assert_eq!(p["result"]["phone_id"], "P1");
    assert_eq!(p["result"]["account_id"], "acc-1");
    assert!(p["timestamps"]["finished_at"].is_string());
    assert_eq!(
        p["linked_ids"]["completed_queue_item_ids"],
        json!([order.queue_item_id])
    );

    // Callbacks: accepted, executing, completed, with strictly increasing sequences.
    let bodies = rx.wait_bodies(3).await;
    assert_eq!(milestones(&bodies), ["accepted", "executing", "completed"]);
    let seqs: Vec<i64> = bodies
        .iter()
        .map(|b| b["sequence"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // The internal view has the history and the attempt.
    let (s, item) = app
        .get(&format!("/queue-items/{}", order.queue_item_id))
        .await;
    assert_eq!(s, 200, "{item}");
    assert_eq!(item["state"], "DONE");
    assert_eq!(item["agent_id"], "rack-1");
    assert_eq!(item["attempts"][0]["attempt"], 1);
    assert_eq!(item["attempts"][0]["outcome"], "completed");
    let kinds: Vec<&str> = item["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.starts_with(&[
            "dispatched",
            "accepted",
            "step_started",
            "progress",
            "evidence",
            "finished"
        ]),
        "{kinds:?}"
    );
    assert_eq!(item["evidence"][0]["object"], "rack-1/run/1/screen.png");
    assert_eq!(item["evidence"][0]["bucket"], "pf_evidence_rack-1");
    assert!(item["attempts"][0]["dispatched_at"].is_string());
    assert_eq!(item["attempts"][0]["phone_id"], "P1");
    let (s, _) = app
        .get(&format!("/queue-items/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn one_run_per_phone_at_a_time() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let target = json!({"routing": "queue", "account_id": "acc-1"});
    let first = app
        .enqueue(&keyword(
            "r1",
            target.clone(),
            "unattended",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    let second = app
        .enqueue(&keyword(
            "r2",
            target,
            "unattended",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    let o1 = agent.expect_order().await;
    assert_eq!(o1.process_id, Some(first));
    agent.event(&o1, 1, EventKind::Accepted).await;
    app.wait_status(first, "executing").await;
    // While the phone runs the first, the second is not dispatched.
    assert!(
        agent
            .next_order(Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert_eq!(app.status(second).await, "queued");
    let (_, ph) = app.get("/phones/P1").await;
    assert_eq!(ph["state"], "busy");
    assert_eq!(ph["current_queue_item_id"], json!(o1.queue_item_id));
    agent.event(&o1, 2, finished_ok("{}")).await;
    let o2 = agent.expect_order().await;
    assert_eq!(o2.process_id, Some(second));
}

#[tokio::test]
async fn manual_work_waits_for_an_attended_phone() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app
        .enqueue(&keyword(
            "m1",
            json!({"routing": "direct", "account_id": "acc-1", "phone_id": "P1"}),
            "manual",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    assert!(
        agent
            .next_order(Duration::from_millis(1500))
            .await
            .is_none(),
        "manual work went to an unattended phone"
    );
    let (s, ph) = app
        .put("/phones/P1", &json!({"attended": true, "label": "bench-3"}))
        .await;
    assert_eq!(s, 200, "{ph}");
    assert_eq!(ph["attended"], true);
    let order = agent.expect_order().await;
    assert_eq!(order.process_id, Some(pid));
}

#[tokio::test]
async fn scheduled_items_are_released_at_their_time() {
    let app = BusApp::spawn().await;
    let assets = Receiver::start(|_| 200).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let hint = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (s, b) = app
        .post(
            "/ingest",
            &json!({"content_id": "c-1", "account_id": "acc-1", "video_path": assets.url, "caption": "hi",
                    "scheduling_hint": hint}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["queue_status"], "SCHEDULED");
    let order = agent.expect_order().await;
    let received = time::OffsetDateTime::now_utc();
    assert_eq!(order.capability, Capability::PostVideo);
    assert!(received >= at, "released {} early", at - received);
    assert!(
        received - at < time::Duration::seconds(5),
        "released late: {}",
        received - at
    );
}

#[tokio::test]
async fn disabled_or_offline_phones_get_no_work() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    app.account("acc-2", "P2").await; // pre-provisioned: no agent reports P2
    let (s, _) = app.put("/phones/P1", &json!({"enabled": false})).await;
    assert_eq!(s, 200);
    app.enqueue_queued("d1", "acc-1", "http://127.0.0.1:9/cb")
        .await;
    app.enqueue_queued("d2", "acc-2", "http://127.0.0.1:9/cb")
        .await;
    assert!(
        agent
            .next_order(Duration::from_millis(1500))
            .await
            .is_none()
    );
    let (_, p2) = app.get("/phones/P2").await;
    assert_eq!(p2["state"], "offline");
    app.put("/phones/P1", &json!({"enabled": true})).await;
    let o = agent.expect_order().await;
    assert_eq!(o.phone_id, "P1");
}

#[tokio::test]
async fn phones_that_need_attention_get_no_work_until_they_recover() {
    use phonefarm_shared::{PhoneState, PhoneStatus};
    let app = BusApp::spawn().await;
    let mut agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2", "P3"]).await;
    for (account, phone_id) in [("acc-1", "P1"), ("acc-2", "P2"), ("acc-3", "P3")] {
        app.account(account, phone_id).await;
    }
    // P1 low on battery, P2 too hot, P3 flagged by its agent.
    let low = PhoneStatus {
        battery_level: Some(12),
        ..phone("P1")
    };
    let hot = PhoneStatus {
        temperature_decicelsius: Some(455),
        ..phone("P2")
    };
    let flagged = PhoneStatus {
        state: PhoneState::NeedsAttention,
        ..phone("P3")
    };
    agent
        .inventory(vec![low, hot.clone(), flagged.clone()])
        .await;
    let mirrored = "SELECT count(*) FROM phones WHERE agent_id = $1 AND (battery_level < 15 \
                    OR temperature_c > 42 OR state = 'needs_attention')";
    wait_until(
        "the inventory mirrored",
        Duration::from_secs(10),
        || async { app.scalar::<i64, _>(mirrored, "rack-1").await == 3 },
    )
    .await;
    for (request, account) in [("a1", "acc-1"), ("a2", "acc-2"), ("a3", "acc-3")] {
        app.enqueue_queued(request, account, "http://127.0.0.1:9/cb")
            .await;
    }
    assert!(
        agent
            .next_order(Duration::from_millis(1500))
            .await
            .is_none(),
        "a phone that needs attention got work"
    );
    // Each gets its item once it recovers, and only then.
    let reports = [
        ("P1", vec![phone("P1"), hot.clone(), flagged.clone()]),
        ("P3", vec![phone("P1"), hot, phone("P3")]),
        ("P2", vec![phone("P1"), phone("P2"), phone("P3")]),
    ];
    for (recovered, report) in reports {
        agent.inventory(report).await;
        let order = agent.expect_order().await;
        assert_eq!(order.phone_id, recovered);
        assert!(
            agent.next_order(Duration::from_millis(700)).await.is_none(),
            "only {recovered}, which recovered, got work"
        );
    }
}

//! POST /processes/{id}/cancel and its callbacks.

use serde_json::{Value, json};

use phonefarm_testkit::coordinator::app::*;

#[tokio::test]
async fn cancelling_queued_work_is_immediate_and_emits_callbacks_in_sequence() {
    let app = spawn_with(Options {
        webhook_secret: Some("whsec_dGVzdC1zZWNyZXQ=".into()),
        ..Options::default()
    })
    .await;
    let rx = Receiver::start(|_| 200).await;
    app.account("acc-1", "phone-1").await;
    let r = app.enqueue(&keyword_request("c1", "acc-1", &rx.url)).await;
    let id = r.body["process_id"].as_str().unwrap().to_string();
    let item =
        app.get(&format!("/processes/{id}")).await.body["linked_ids"]["queue_item_ids"][0].clone();

    let bad = app
        .post(
            &format!("/processes/{id}/cancel"),
            &json!({"reason": "", "requested_by": {"system": "s"}, "strategy": "later"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body["errors"],
        json!([
            "out_of_range:reason:length_1_to_500",
            "invalid_value:strategy:expected_one_of_soft|hard|soft_then_force"
        ])
    );

    let r = app
        .post(
            &format!("/processes/{id}/cancel"),
            &json!({"reason": "campaign stopped", "requested_by": {"system": "ugc-tracker"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({
            "status": "cancel_requested",
            "cancelled_queue_item_ids": [item],
            "active_queue_item_ids": [],
            "active_target": {"process_id": id, "phone_id": null, "account_id": "acc-1", "queue_item_id": null, "capability_request_id": "c1"},
            "termination": {"process_id": id, "status": "not_needed", "terminate_issued": false, "container": null},
            "process": {"process_id": id, "status": "cancelled"}
        })
    );
    let p = app.get(&format!("/processes/{id}")).await;
    assert_eq!(p.body["status"], "cancelled");
    assert_eq!(
        p.body["linked_ids"]["cancelled_queue_item_ids"],
        json!([item])
    );
    let ts = &p.body["timestamps"];
    assert!(ts["cancel_requested_at"].is_string() && ts["finished_at"].is_string());
    assert!(ts["finished_at"].as_str() >= ts["created_at"].as_str());

    // Terminal: ignored.
    let again = app
        .post(
            &format!("/processes/{id}/cancel"),
            &json!({"reason": "again", "requested_by": {"system": "ugc-tracker"}}),
        )
        .await;
    assert_eq!(
        again.body,
        json!({"status": "ignored_terminal", "process": {"process_id": id, "status": "cancelled"}})
    );

    let mut bodies = rx.wait_bodies(3).await;
    bodies.sort_by_key(|b| b["sequence"].as_i64());
    assert_eq!(
        milestones(&bodies),
        ["accepted", "cancel_requested", "cancelled"]
    );
    let seqs: Vec<i64> = bodies
        .iter()
        .map(|b| b["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(bodies[2]["process"]["status"], "cancelled");
    let ids: std::collections::HashSet<&Value> = bodies.iter().map(|b| &b["event_id"]).collect();
    assert_eq!(ids.len(), 3);
    // All three recorded as delivered, each after one attempt.
    let pool = app.db.pool.clone();
    wait_until("deliveries recorded", std::time::Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM callback_deliveries WHERE state = 'delivered' AND attempts = 1")
                .fetch_one(&pool)
                .await
                .unwrap();
            n == 3
        }
    })
    .await;
    assert_eq!(rx.count(), 3);
}

#[tokio::test]
async fn executing_items_record_the_request_and_strategy() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    app.account("acc-2", "phone-2").await;
    let mut body = keyword_request("g1", "acc-1", "http://127.0.0.1:9/cb");
    body["target"] = json!({"routing": "group", "account_ids": ["acc-1", "acc-2"]});
    let id = app.enqueue(&body).await.body["process_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = uuid::Uuid::parse_str(&id).unwrap();
    // One item is running on an agent (as the dispatcher would have marked it).
    let (running,): (uuid::Uuid,) = sqlx::query_as(
        "UPDATE queue_items SET state = 'EXECUTING', agent_id = 'rack-1', run_id = gen_random_uuid() \
         WHERE queue_item_id = (SELECT queue_item_id FROM queue_items WHERE process_id = $1 ORDER BY queue_item_id LIMIT 1) \
         RETURNING queue_item_id",
    )
    .bind(pid)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE processes SET status = 'executing' WHERE process_id = $1")
        .bind(pid)
        .execute(&app.db.pool)
        .await
        .unwrap();

    let r = app
        .post(&format!("/processes/{id}/cancel"), &json!({"reason": "stop", "requested_by": {"system": "ugc-tracker"}, "strategy": "soft_then_force", "force_after_seconds": 30}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["active_queue_item_ids"], json!([running]));
    assert_eq!(
        r.body["cancelled_queue_item_ids"].as_array().unwrap().len(),
        1
    );
    assert_eq!(r.body["termination"]["status"], "scheduled");
    assert_eq!(r.body["termination"]["terminate_issued"], false);
    assert_eq!(r.body["termination"]["container"]["agent_id"], "rack-1");
    assert_eq!(r.body["active_target"]["queue_item_id"], json!(running));
    assert_eq!(r.body["process"]["status"], "executing");
    let (strategy, force_at): (Option<String>, Option<time::OffsetDateTime>) = sqlx::query_as(
        "SELECT cancel_strategy, cancel_force_at FROM processes WHERE process_id = $1",
    )
    .bind(pid)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(strategy.as_deref(), Some("soft_then_force"));
    assert!(force_at.is_some());

    let hard = app.post(&format!("/processes/{id}/cancel"), &json!({"reason": "now", "requested_by": {"system": "ugc-tracker"}, "strategy": "hard"})).await;
    assert_eq!(hard.body["termination"]["status"], "issued");
    assert_eq!(hard.body["termination"]["terminate_issued"], true);
    // cancel_requested is emitted once per process.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM callback_deliveries WHERE body LIKE '%\"milestone\":\"cancel_requested\"%'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

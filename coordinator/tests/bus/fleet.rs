use std::time::Duration;

use serde_json::json;

use crate::support::*;

async fn updated_at(app: &BusApp, phone: &str) -> time::OffsetDateTime {
    app.scalar("SELECT updated_at FROM phones WHERE phone_id = $1", phone)
        .await
}

async fn agent_updated_at(app: &BusApp, agent: &str) -> time::OffsetDateTime {
    app.scalar("SELECT updated_at FROM agents WHERE agent_id = $1", agent)
        .await
}

#[tokio::test]
async fn presence_and_inventory_make_the_fleet_view() {
    let app = BusApp::spawn().await;
    let mut agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2"]).await;
    wait_until("agent online", Duration::from_secs(10), || async {
        let (_, b) = app.get("/agents").await;
        b["agents"][0]["online"] == true
    })
    .await;
    let (_, b) = app.get("/agents").await;
    let a = &b["agents"][0];
    assert_eq!(a["agent_id"], "rack-1");
    assert_eq!(a["version"], "0.1.0");
    assert_eq!(a["host"], "rack-host");
    assert_eq!(a["phone_count"], 1);
    assert!(a["last_heartbeat_at"].is_string());
    wait_until("phones", Duration::from_secs(10), || async {
        app.get("/phones").await.1["phones"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    })
    .await;
    let (s, p1) = app.get("/phones/P1").await;
    assert_eq!(s, 200);
    assert_eq!(p1["state"], "online");
    assert_eq!(p1["agent_id"], "rack-1");
    assert_eq!(p1["model"], "Pixel 6");
    assert_eq!(p1["battery_level"], 80);
    assert_eq!(p1["temperature_c"], 31.2);
    assert_eq!(p1["screen_state"], "on");
    assert_eq!(p1["label"], "P1");
    assert_eq!(app.get("/phones/nope").await.0, 404);

    // Operators' fields.
    let (s, p) = app
        .put(
            "/phones/P1",
            &json!({"label": "top-left", "attended": true, "enabled": false}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (
            p["label"].as_str(),
            p["attended"].as_bool(),
            p["enabled"].as_bool()
        ),
        (Some("top-left"), Some(true), Some(false))
    );
    assert_eq!(
        app.put("/phones/P1", &json!({"attended": "yes"})).await.0,
        422
    );
    assert_eq!(
        app.put("/phones/nope", &json!({"attended": true})).await.0,
        404
    );

    // An unchanged inventory writes nothing; a changed one writes only the changed phone.
    let before = (updated_at(&app, "P1").await, updated_at(&app, "P2").await);
    let agent_before = agent_updated_at(&app, "rack-1").await;
    agent.inventory(vec![phone("P1"), phone("P2")]).await;
    let mut p2 = phone("P2");
    p2.battery_level = Some(41);
    agent.inventory(vec![phone("P1"), p2]).await;
    wait_until("battery 41", Duration::from_secs(10), || async {
        app.get("/phones/P2").await.1["battery_level"] == 41
    })
    .await;
    assert_eq!(
        updated_at(&app, "P1").await,
        before.0,
        "an unchanged phone was rewritten"
    );
    assert!(updated_at(&app, "P2").await > before.1);
    // Heartbeats (every 300 ms here) do not rewrite the agent row.
    assert_eq!(agent_updated_at(&app, "rack-1").await, agent_before);

    // A phone missing from the report is offline.
    agent.inventory(vec![phone("P1")]).await;
    wait_until("P2 offline", Duration::from_secs(10), || async {
        app.get("/phones/P2").await.1["state"] == "offline"
    })
    .await;

    // One statement upserts a whole report: a new phone with unknown fields (NULLs) goes in
    // beside known ones, and a phone named twice counts with its last entry.
    let mut first = phone("P3");
    first.battery_level = Some(10);
    let mut last = phone("P3");
    last.battery_level = None;
    last.model = None;
    last.current_queue_item_id = Some(uuid::Uuid::nil());
    agent.inventory(vec![phone("P1"), first, last]).await;
    wait_until("P3 mirrored", Duration::from_secs(10), || async {
        app.get("/phones/P3").await.0 == 200
    })
    .await;
    let p3 = app.get("/phones/P3").await.1;
    assert!(p3["battery_level"].is_null(), "{p3}");
    assert!(p3["model"].is_null(), "{p3}");
    assert_eq!(p3["temperature_c"], 31.2, "{p3}");
    assert_eq!(p3["agent_id"], "rack-1", "{p3}");
    assert_eq!(app.get("/phones/P2").await.1["state"], "offline");

    // Silence: the agent and its phones go offline (3 s threshold in tests).
    agent.go_silent();
    wait_until("agent offline", Duration::from_secs(10), || async {
        app.get("/agents").await.1["agents"][0]["online"] == false
    })
    .await;
    assert_eq!(app.get("/phones/P1").await.1["state"], "offline");
    // And back.
    agent.keep_alive(Duration::from_millis(300));
    wait_until("agent online again", Duration::from_secs(10), || async {
        app.get("/agents").await.1["agents"][0]["online"] == true
    })
    .await;
    assert_eq!(app.get("/phones/P1").await.1["state"], "online");
}

#[tokio::test]
async fn bad_messages_are_dropped_without_stopping_the_ingester() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    // Garbage on every kind of subject, and an inventory naming another agent.
    for subject in [
        "pf.evt.rack-1.run",
        "pf.evt.rack-1.inventory",
        "pf.evt.rack-1.weird",
    ] {
        agent
            .js
            .publish(subject, vec![0xff, 0x00, 0x13].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let foreign = phonefarm_shared::Inventory {
        agent_id: "rack-2".into(),
        seq: 1,
        at_unix_ms: 1,
        phones: vec![phone("PX")],
    };
    agent
        .js
        .publish(
            "pf.evt.rack-1.inventory",
            phonefarm_shared::encode(&foreign).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // Then good work still flows.
    app.account("acc-1", "P1").await;
    let pid = app
        .enqueue_queued("b1", "acc-1", "http://127.0.0.1:9/cb")
        .await;
    let o = agent.expect_order().await;
    agent
        .event(&o, 1, phonefarm_shared::EventKind::Accepted)
        .await;
    app.wait_status(pid, "executing").await;
    assert_eq!(app.get("/phones/PX").await.0, 404);
    // Nothing waits for redelivery on the coordinator consumer.
    wait_until("consumer drained", Duration::from_secs(10), || async {
        let mut c = app
            .bus
            .js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                "coordinator",
                "PF_EVT",
            )
            .await
            .unwrap();
        let info = c.info().await.unwrap();
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
}

/// `(xmin, xmax)` of a row: a write changes xmin, a row lock sets xmax.
async fn row_version(app: &BusApp, table: &str, key: &str, id: &str) -> (String, String) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT xmin::text, xmax::text FROM {table} WHERE {key} = $1"
    )))
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn steady_heartbeats_and_unchanged_reports_neither_write_nor_lock_rows() {
    let app = BusApp::spawn().await;
    let mut agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2"]).await;
    wait_until("phones mirrored", Duration::from_secs(10), || async {
        app.get("/phones").await.1["phones"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    })
    .await;
    let phone_rows = (
        row_version(&app, "phones", "phone_id", "P1").await,
        row_version(&app, "phones", "phone_id", "P2").await,
    );
    // An unchanged inventory: only the agent's ordering guard (inventory_seq) moves.
    agent.inventory(vec![phone("P1"), phone("P2")]).await;
    wait_until(
        "second inventory applied",
        Duration::from_secs(10),
        || async {
            let (seq,): (Option<i64>,) =
                sqlx::query_as("SELECT inventory_seq FROM agents WHERE agent_id = 'rack-1'")
                    .fetch_one(&app.db.pool)
                    .await
                    .unwrap();
            seq == Some(2)
        },
    )
    .await;
    assert_eq!(
        (
            row_version(&app, "phones", "phone_id", "P1").await,
            row_version(&app, "phones", "phone_id", "P2").await,
        ),
        phone_rows,
        "an unchanged inventory wrote or locked a phone row"
    );
    // Heartbeats every 300 ms for longer than the offline threshold (3 s here, so the
    // periodic online check runs too).
    let agent_row = row_version(&app, "agents", "agent_id", "rack-1").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        row_version(&app, "agents", "agent_id", "rack-1").await,
        agent_row,
        "a heartbeat that changed nothing wrote or locked the agent row"
    );
    // A change writes that phone only.
    let mut p2 = phone("P2");
    p2.battery_level = Some(12);
    agent.inventory(vec![phone("P1"), p2]).await;
    wait_until("battery 12", Duration::from_secs(10), || async {
        app.get("/phones/P2").await.1["battery_level"] == 12
    })
    .await;
    assert_eq!(
        row_version(&app, "phones", "phone_id", "P1").await,
        phone_rows.0
    );
    assert_ne!(
        row_version(&app, "phones", "phone_id", "P2").await,
        phone_rows.1
    );
}

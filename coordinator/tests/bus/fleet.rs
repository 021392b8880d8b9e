use std::time::Duration;

use serde_json::json;

use phonefarm_testkit::coordinator::bus::*;

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
    // Garbage on every kind of subject, and an inventory and a phone action report naming
    // another agent.
    for subject in [
        "pf.evt.rack-1.run",
        "pf.evt.rack-1.inventory",
        "pf.evt.rack-1.ops",
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
    let action = uuid::Uuid::new_v4();
    phonefarm_coordinator::db::phone_actions::insert(
        &app.db.pool,
        &phonefarm_coordinator::db::phone_actions::NewAction {
            request_id: action,
            phone_id: "P1",
            agent_id: "rack-1",
            action: "reboot",
            requested_by: "ops",
            at: time::OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    let report = |agent: &str, outcome| phonefarm_shared::PhoneOpReport {
        agent_id: agent.into(),
        phone_id: "P1".into(),
        request_id: action,
        action: "reboot".into(),
        at_unix_ms: 1,
        outcome,
    };
    for r in [
        report("rack-2", phonefarm_shared::OpOutcome::Done),
        report("rack-1", phonefarm_shared::OpOutcome::Started),
    ] {
        agent
            .js
            .publish("pf.evt.rack-1.ops", phonefarm_shared::encode(&r).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
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
    // The report naming rack-2 was dropped; rack-1's own moved the action on.
    let rows = phonefarm_coordinator::db::phone_actions::of_phone(&app.db.pool, "P1", 5)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "started", "{rows:?}");
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

async fn holder(app: &BusApp, phone: &str) -> Option<String> {
    app.scalar("SELECT agent_id FROM phones WHERE phone_id = $1", phone)
        .await
}

async fn inventory_seq(app: &BusApp, agent: &str) -> i64 {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT inventory_seq FROM agents WHERE agent_id = $1")
            .bind(agent)
            .fetch_optional(&app.db.pool)
            .await
            .unwrap()
            .flatten();
    seq.unwrap_or(0)
}

/// Waits until the coordinator applied `agent`'s inventory report number `seq`.
async fn applied(app: &BusApp, agent: &str, seq: i64) {
    wait_until("inventory applied", Duration::from_secs(10), || async {
        inventory_seq(app, agent).await >= seq
    })
    .await;
}

/// Waits until `agent` is online (its presence mirrored).
async fn online(app: &BusApp, agent: &str) {
    wait_until("agent online", Duration::from_secs(10), || async {
        let (_, b) = app.get("/agents").await;
        b["agents"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["agent_id"] == agent && a["online"] == true)
        })
    })
    .await;
}

/// `(from, to, reason, moved_by)` of a phone's moves, newest first, through the API.
async fn moves(app: &BusApp, phone: &str) -> Vec<(Option<String>, String, String, String)> {
    let (s, b) = app.get(&format!("/phones/{phone}/moves")).await;
    assert_eq!(s, 200, "{b}");
    b["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from_agent_id"].as_str().map(String::from),
                m["to_agent_id"].as_str().unwrap().to_string(),
                m["reason"].as_str().unwrap().to_string(),
                m["moved_by"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn first_seen(agent: &str) -> (Option<String>, String, String, String) {
    (None, agent.into(), "first_seen".into(), "inventory".into())
}

#[tokio::test]
async fn a_second_agent_reporting_a_held_phone_does_not_move_it() {
    let app = BusApp::spawn().await;
    let _a = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    applied(&app, "rack-1", 1).await;
    online(&app, "rack-1").await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));
    let before = app.get("/phones/P1").await.1;

    // rack-2 reports P1 (with other readings) while rack-1 holds and reports it.
    let mut b = SimAgent::connect(&app.nats.url(), "rack-2").await;
    b.keep_alive(Duration::from_millis(300));
    let mut claimed = phone("P1");
    claimed.battery_level = Some(5);
    b.inventory(vec![claimed.clone()]).await;
    applied(&app, "rack-2", 1).await;
    let after = app.get("/phones/P1").await.1;
    assert_eq!(after, before, "the claim changed nothing of the phone");
    let claims: i64 = app
        .scalar(
            "SELECT count(*) FROM phone_claims WHERE phone_id = $1 AND agent_id = 'rack-2'",
            "P1",
        )
        .await;
    assert_eq!(claims, 1, "the refused claim is kept");

    // Past the offline window, with rack-1 still reporting P1, rack-2's claim still loses,
    // both at its next report and at its periodic checks (heartbeats every 300 ms).
    tokio::time::sleep(Duration::from_secs(4)).await;
    claimed.battery_level = Some(6);
    b.inventory(vec![claimed]).await;
    applied(&app, "rack-2", 2).await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));
    assert_eq!(app.get("/phones/P1").await.1["battery_level"], 80);
    assert_eq!(moves(&app, "P1").await, vec![first_seen("rack-1")]);
}

#[tokio::test]
async fn an_operator_move_moves_the_phone_and_is_recorded() {
    let app = BusApp::spawn().await;
    let mut a = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    applied(&app, "rack-1", 1).await;
    online(&app, "rack-1").await;
    let mut b = SimAgent::connect(&app.nats.url(), "rack-2").await;
    b.keep_alive(Duration::from_millis(300));
    let mut claimed = phone("P1");
    claimed.battery_level = Some(55);
    b.inventory(vec![claimed]).await;
    applied(&app, "rack-2", 1).await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));

    // Bad requests change nothing.
    for (body, status, error) in [
        (json!({}), 422, "missing:agent_id"),
        (json!({"agent_id": 7}), 422, "invalid_type:agent_id:string"),
        (
            json!({"agent_id": "rack.2"}),
            422,
            "invalid_format:agent_id:subject_token",
        ),
        (json!({"agent_id": "rack-9"}), 422, "agent_not_found:rack-9"),
        (
            json!({"agent_id": "rack-2", "note": 1}),
            422,
            "invalid_type:note:string",
        ),
    ] {
        let (s, p) = app.post("/phones/P1/move", &body).await;
        assert_eq!(
            (s, p["errors"][0].as_str()),
            (status, Some(error)),
            "{body}: {p}"
        );
    }
    assert_eq!(
        app.post("/phones/nope/move", &json!({"agent_id": "rack-2"}))
            .await
            .0,
        404
    );
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));

    let (s, p) = app
        .post(
            "/phones/P1/move",
            &json!({"agent_id": "rack-2", "note": "moved to rack 2, slot 4"}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["agent_id"], "rack-2");
    // It takes what rack-2 reported of it.
    assert_eq!(p["battery_level"], 55);
    assert_eq!(p["state"], "online");
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-2"));
    let (_, listed) = app.get("/phones/P1/moves").await;
    assert_eq!(listed["moves"][0]["note"], "moved to rack 2, slot 4");
    assert_eq!(
        moves(&app, "P1").await,
        vec![
            (
                Some("rack-1".into()),
                "rack-2".into(),
                "operator".into(),
                "bus-admin".into()
            ),
            first_seen("rack-1"),
        ]
    );
    // Moving it where it is changes nothing and records nothing.
    assert_eq!(
        app.post("/phones/P1/move", &json!({"agent_id": "rack-2"}))
            .await
            .0,
        200
    );
    assert_eq!(moves(&app, "P1").await.len(), 2);

    // The previous holder still reporting it does not take it back.
    let mut p1 = phone("P1");
    p1.battery_level = Some(81);
    a.inventory(vec![p1]).await;
    applied(&app, "rack-1", 2).await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-2"));
    assert_eq!(app.get("/phones/P1").await.1["battery_level"], 55);
}

#[tokio::test]
async fn a_phone_really_moved_goes_to_its_new_agent() {
    let app = BusApp::spawn().await;
    let mut a = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2"]).await;
    applied(&app, "rack-1", 1).await;
    online(&app, "rack-1").await;
    let mut b = SimAgent::connect(&app.nats.url(), "rack-2").await;
    b.keep_alive(Duration::from_millis(300));
    let mut claimed = phone("P1");
    claimed.battery_level = Some(42);
    b.inventory(vec![claimed.clone(), phone("P2")]).await;
    applied(&app, "rack-2", 1).await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));

    // P1 is unplugged from rack-1: its report no longer names it. Not moved yet (within the
    // 3 s offline window of these tests)...
    a.inventory(vec![phone("P2")]).await;
    applied(&app, "rack-1", 2).await;
    assert_eq!(holder(&app, "P1").await.as_deref(), Some("rack-1"));
    // ... but once rack-1 has not named it for the window, rack-2's periodic check takes it,
    // with what rack-2 reported.
    wait_until("P1 moved to rack-2", Duration::from_secs(15), || async {
        holder(&app, "P1").await.as_deref() == Some("rack-2")
    })
    .await;
    let p1 = app.get("/phones/P1").await.1;
    assert_eq!(
        (p1["battery_level"].as_i64(), p1["state"].as_str()),
        (Some(42), Some("online"))
    );
    assert_eq!(
        moves(&app, "P1").await,
        vec![
            (
                Some("rack-1".into()),
                "rack-2".into(),
                "holder_gone".into(),
                "inventory".into()
            ),
            first_seen("rack-1"),
        ]
    );
    assert_eq!(holder(&app, "P2").await.as_deref(), Some("rack-1"));

    // rack-1 goes silent: once it is offline, rack-2, which still reports P2, gets it.
    a.go_silent();
    wait_until("P2 moved to rack-2", Duration::from_secs(20), || async {
        holder(&app, "P2").await.as_deref() == Some("rack-2")
    })
    .await;
    assert_eq!(moves(&app, "P2").await[0].2, "holder_offline");
    // A later report by rack-2 keeps both, and writes its new readings.
    claimed.battery_level = Some(43);
    b.inventory(vec![claimed, phone("P2")]).await;
    applied(&app, "rack-2", 2).await;
    assert_eq!(app.get("/phones/P1").await.1["battery_level"], 43);
}

/// A phone an account was bound to before any agent reported it has no agent: the first agent
/// that reports it gets it, recorded as its first sighting.
#[tokio::test]
async fn a_phone_known_before_any_report_goes_to_the_first_agent_reporting_it() {
    let app = BusApp::spawn().await;
    app.account("acc-1", "P9").await;
    assert_eq!(holder(&app, "P9").await, None);
    let _a = SimAgent::online(&app.nats.url(), "rack-1", &["P9"]).await;
    applied(&app, "rack-1", 1).await;
    assert_eq!(holder(&app, "P9").await.as_deref(), Some("rack-1"));
    assert_eq!(moves(&app, "P9").await, vec![first_seen("rack-1")]);
}

//! `POST /phones/{phone_id}/reboot` and `/locate`: operators only, 202 with the order, which is
//! in the outbox for the phone's agent as a `Control` (with the audit row); 409 problems while
//! a run holds the phone or it is offline, 404 for an unknown phone, nothing written then.

use phonefarm_shared::{Control, subjects};
use reqwest::Method;
use serde_json::{Value, json};

use phonefarm_testkit::coordinator::app::*;

async fn seed(app: &TestApp) {
    for sql in [
        "INSERT INTO agents (agent_id, version, host, online, last_seen_at, phone_count) \
         VALUES ('rack-1', '0.1.0', 'host-1', true, now(), 2)",
        "INSERT INTO phones (phone_id, agent_id, state, last_seen_at) \
         VALUES ('ph-1', 'rack-1', 'online', now()), ('ph-off', 'rack-1', 'offline', now())",
    ] {
        sqlx::query(sql).execute(&app.db.pool).await.unwrap();
    }
}

async fn orders(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    sqlx::query_as("SELECT subject, payload FROM outbox ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn reboot_and_locate_are_ordered_from_the_phones_agent() {
    let app = spawn_app().await;
    seed(&app).await;
    let operator = app.key("ops", "operator", None).await;
    let integrator = app.key("int", "integrator", Some("ugc-tracker")).await;

    let r = app
        .call(Method::POST, "/phones/ph-1/reboot", Some(&integrator), None)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = app
        .call(Method::POST, "/phones/ph-1/reboot", None, None)
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .call(Method::POST, "/phones/nope/locate", Some(&operator), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["errors"], json!(["phone_not_found:nope"]));
    let r = app
        .call(Method::POST, "/phones/ph-off/reboot", Some(&operator), None)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["errors"], json!(["phone_offline:ph-off"]));
    assert!(orders(&app).await.is_empty(), "refusals order nothing");

    let r = app
        .call(Method::POST, "/phones/ph-1/reboot", Some(&operator), None)
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["action"], "reboot");
    assert_eq!(r.body["status"], "ordered");
    let reboot_id: uuid::Uuid = r.body["request_id"].as_str().unwrap().parse().unwrap();
    let r = app
        .call(Method::POST, "/phones/ph-1/locate", Some(&operator), None)
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    let sent = orders(&app).await;
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(s, _)| *s == subjects::control("rack-1")));
    assert_eq!(
        phonefarm_shared::decode::<Control>(&sent[0].1).unwrap(),
        Control::Reboot {
            phone_id: "ph-1".into(),
            request_id: reboot_id,
        }
    );
    assert!(matches!(
        phonefarm_shared::decode::<Control>(&sent[1].1).unwrap(),
        Control::Locate { ref phone_id, for_seconds: 60, .. } if phone_id == "ph-1"
    ));

    // Audited once each, by the caller's key name, via the API.
    let log = app.get("/audit").await.body;
    let mine: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "ph-1")
        .collect();
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["phone.locate", "phone.reboot"], "{log}");
    assert!(
        mine.iter()
            .all(|e| e["actor"] == "ops" && e["via"] == "api")
    );

    // A run on the phone: refused, with the item named.
    let item = uuid::Uuid::now_v7();
    sqlx::query("UPDATE phones SET current_queue_item_id = $1 WHERE phone_id = 'ph-1'")
        .bind(item)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let r = app
        .call(Method::POST, "/phones/ph-1/reboot", Some(&operator), None)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["errors"], json!([format!("phone_busy:{item}")]));
    assert_eq!(orders(&app).await.len(), 2);
}

/// What the phone's agent reports on an order moves its `phone_actions` row forward only:
/// sent → started → done, a late or redelivered `started` and a report from another agent
/// change nothing, and a refusal keeps its reason (the console's phone page lists them).
#[tokio::test]
async fn the_agents_reports_move_an_action_forward_only() {
    use phonefarm_coordinator::db;
    use phonefarm_coordinator::lifecycle::fleet::phone_action_report;
    use phonefarm_shared::{OpOutcome, PhoneOpReport};

    let app = spawn_app().await;
    seed(&app).await;
    let operator = app.key("ops", "operator", None).await;
    let mut ids = Vec::new();
    for action in ["reboot", "locate"] {
        let r = app
            .call(
                Method::POST,
                &format!("/phones/ph-1/{action}"),
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(
            r.body["request_id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    let (reboot, locate) = (ids[0], ids[1]);
    let state = async |id: uuid::Uuid| -> (String, Option<String>, String) {
        let rows = db::phone_actions::of_phone(&app.db.pool, "ph-1", 10)
            .await
            .unwrap();
        let r = rows.into_iter().find(|r| r.request_id == id).unwrap();
        (r.state, r.reason, r.requested_by)
    };
    assert_eq!(state(reboot).await, ("sent".into(), None, "ops".into()));

    let report = |id, agent: &str, action: &str, outcome| PhoneOpReport {
        agent_id: agent.into(),
        phone_id: "ph-1".into(),
        request_id: id,
        action: action.into(),
        at_unix_ms: 1_790_000_000_000,
        outcome,
    };
    let mut conn = app.db.pool.acquire().await.unwrap();
    let apply = async |conn: &mut sqlx::PgConnection, agent: &str, r: PhoneOpReport| {
        phone_action_report(conn, agent, &r).await.unwrap()
    };
    // Another agent's word on it changes nothing.
    let other = report(reboot, "rack-2", "reboot", OpOutcome::Done);
    assert!(!apply(&mut conn, "rack-2", other).await);
    assert_eq!(state(reboot).await.0, "sent");
    let started = report(reboot, "rack-1", "reboot", OpOutcome::Started);
    assert!(apply(&mut conn, "rack-1", started.clone()).await);
    assert_eq!(state(reboot).await.0, "started");
    let done = report(reboot, "rack-1", "reboot", OpOutcome::Done);
    assert!(apply(&mut conn, "rack-1", done).await);
    assert!(!apply(&mut conn, "rack-1", started).await, "a late started");
    let failed = OpOutcome::Failed { reason: "x".into() };
    assert!(
        !apply(
            &mut conn,
            "rack-1",
            report(reboot, "rack-1", "reboot", failed)
        )
        .await
    );
    assert_eq!(state(reboot).await.0, "done");

    let why = "a run is executing on the phone (queue item 1)";
    let refused = OpOutcome::Refused { reason: why.into() };
    assert!(
        apply(
            &mut conn,
            "rack-1",
            report(locate, "rack-1", "locate", refused)
        )
        .await
    );
    assert_eq!(
        state(locate).await,
        ("refused".into(), Some(why.into()), "ops".into())
    );
}

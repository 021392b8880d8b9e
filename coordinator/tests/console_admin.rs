//! The console's admin actions against a real coordinator with its bus (a real nats-server and
//! Postgres, a simulated agent speaking the wire contract): retrying a dead-lettered item over
//! the API and from the process page (decision 0005), with its refusals, callbacks and audit.

use phonefarm_coordinator::{auth, db};
use phonefarm_shared::{EventKind, WorkOrder};
use phonefarm_testkit::coordinator::bus::{
    BusApp, Receiver, SimAgent, finished_err, finished_ok, keyword, milestones,
};
use phonefarm_testkit::coordinator::console::Browser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// An API key of `role` on the bus app.
async fn key(app: &BusApp, name: &str, role: &str) -> String {
    let key = auth::generate_key();
    db::api_keys::insert(&app.db.pool, name, &auth::hash_key(&key), "pf_", role, None)
        .await
        .unwrap();
    key
}

async fn call_as(app: &BusApp, key: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
    (status, r.json().await.unwrap())
}

async fn retry(app: &BusApp, key: &str, item: Uuid) -> (u16, Value) {
    call_as(
        app,
        key,
        reqwest::Method::POST,
        &format!("/queue-items/{item}/retry"),
    )
    .await
}

/// (state, attempt, max_attempts) of an item.
async fn item(app: &BusApp, id: Uuid) -> (String, i32, i32) {
    sqlx::query_as("SELECT state, attempt, max_attempts FROM queue_items WHERE queue_item_id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// A group process over two phones of one agent whose first run dead-letters (a flow error is
/// never retried) while the second is still executing: (agent, process, dead, running).
async fn open_group_with_a_dead_letter(
    app: &BusApp,
    callback: &str,
) -> (SimAgent, Uuid, WorkOrder, WorkOrder) {
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2"]).await;
    app.account("acc-1", "P1").await;
    app.account("acc-2", "P2").await;
    let pid = app
        .enqueue(&keyword(
            "g-retry",
            json!({"routing": "group", "account_ids": ["acc-1", "acc-2"]}),
            "unattended",
            callback,
        ))
        .await;
    let mut orders = vec![agent.expect_order().await, agent.expect_order().await];
    orders.sort_by(|a, b| a.phone_id.cmp(&b.phone_id));
    let running = orders.pop().unwrap();
    let dead = orders.pop().unwrap();
    agent.event(&dead, 1, EventKind::Accepted).await;
    agent.event(&running, 1, EventKind::Accepted).await;
    agent
        .event(&dead, 2, finished_err("flow_error:unknown_screen", true))
        .await;
    app.wait_item_state(dead.queue_item_id, "DEAD_LETTER").await;
    app.wait_item_state(running.queue_item_id, "EXECUTING")
        .await;
    assert_eq!(app.status(pid).await, "executing", "the process is open");
    (agent, pid, dead, running)
}

#[tokio::test]
async fn an_admin_retries_a_dead_letter_of_an_open_group_once_more() {
    let app = BusApp::spawn().await;
    let receiver = Receiver::start(|_| 200).await;
    let (agent, pid, dead, running) = open_group_with_a_dead_letter(&app, &receiver.url).await;
    let operator = key(&app, "op", "operator").await;

    let (status, body) = retry(&app, &operator, dead.queue_item_id).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"], json!(["insufficient_role"]));
    let (status, body) = retry(&app, &app.key, running.queue_item_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"], json!(["not_dead_lettered:EXECUTING"]));
    let (status, body) = retry(&app, &app.key, Uuid::now_v7()).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        item(&app, dead.queue_item_id).await,
        ("DEAD_LETTER".into(), 1, 3),
        "refusals change nothing"
    );

    let (status, body) = retry(&app, &app.key, dead.queue_item_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "requeued", "queue_item_id": dead.queue_item_id, "process_id": pid,
               "queue_status": "RETRYABLE", "next_attempt": 2, "max_attempts": 2,
               "process_status": "executing"})
    );
    // The dispatcher sends attempt 2 to the same phone; it completes, and so does the other run.
    let again = agent.expect_order().await;
    assert_eq!(
        (again.queue_item_id, again.attempt, again.phone_id.as_str()),
        (dead.queue_item_id, 2, "P1")
    );
    agent.event(&again, 1, EventKind::Accepted).await;
    agent.event(&again, 2, finished_ok(r#"{"ok":1}"#)).await;
    agent.event(&running, 2, finished_ok(r#"{"ok":2}"#)).await;
    let p = app.wait_status(pid, "completed").await;
    assert!(p["timestamps"]["retrying_at"].is_string(), "{p}");
    assert_eq!(item(&app, dead.queue_item_id).await, ("DONE".into(), 2, 2));

    let bodies = receiver.wait_bodies(4).await;
    assert_eq!(
        milestones(&bodies),
        ["accepted", "executing", "retrying", "completed"]
    );
    let seqs: Vec<i64> = bodies
        .iter()
        .map(|b| b["sequence"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(bodies[2]["process"]["status"], "executing");

    let history: Vec<(String, Value)> = sqlx::query_as(
        "SELECT kind, payload FROM queue_item_events WHERE queue_item_id = $1 AND attempt = 0 \
         AND kind = 'retry_requested'",
    )
    .bind(dead.queue_item_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].1["by"], "bus-admin");

    let audit: Vec<(String, String, Option<String>, String)> =
        sqlx::query_as("SELECT actor, action, target, via FROM audit_log ORDER BY id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let retries: Vec<_> = audit
        .iter()
        .filter(|a| a.1.contains("retry"))
        .cloned()
        .collect();
    assert_eq!(
        retries,
        [(
            "bus-admin".to_string(),
            "POST /queue-items/{queue_item_id}/retry".to_string(),
            Some(dead.queue_item_id.to_string()),
            "api".to_string()
        )],
        "only the retry that happened is audited"
    );

    // Done now: a second retry is refused.
    let (status, body) = retry(&app, &app.key, dead.queue_item_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"], json!(["not_dead_lettered:DONE"]));
}

#[tokio::test]
async fn a_dead_letter_of_a_terminal_process_is_final() {
    let app = BusApp::spawn().await;
    let receiver = Receiver::start(|_| 200).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app
        .enqueue(&keyword(
            "single",
            json!({"routing": "queue", "account_id": "acc-1"}),
            "unattended",
            &receiver.url,
        ))
        .await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    agent
        .event(&o, 2, finished_err("account_outcome:banned", false))
        .await;
    app.wait_status(pid, "failed_terminal").await;
    let callbacks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM callback_deliveries WHERE process_id = $1",
        )
        .bind(pid)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let before = callbacks().await;

    let (status, body) = retry(&app, &app.key, o.queue_item_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"], json!(["process_terminal:failed_terminal"]));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("terminal status is final"),
        "{body}"
    );

    // The console says so instead of offering the button, and refuses a forged post.
    let admin = Browser::sign_in(&app.base, &app.key).await;
    let (status, page) = admin.get(&format!("/ui/processes/{pid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("final: the process is failed_terminal"),
        "{page}"
    );
    assert!(!page.contains("Retry (one more attempt)"));
    let csrf = admin.csrf().await;
    let (status, _, page) = admin
        .post(
            &format!("/ui/queue-items/{}/retry", o.queue_item_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("terminal status is final") && page.contains("process_terminal"));
    assert!(
        page.contains(&format!("href=\"/ui/processes/{pid}\"")),
        "back to the process: {page}"
    );

    assert_eq!(app.status(pid).await, "failed_terminal");
    assert_eq!(
        item(&app, o.queue_item_id).await,
        ("DEAD_LETTER".into(), 1, 3)
    );
    assert_eq!(callbacks().await, before, "no callback for a refused retry");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE '%retry%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(audited, 0);
}

#[tokio::test]
async fn the_process_page_retries_for_admins_and_refuses_operators() {
    let app = BusApp::spawn().await;
    let receiver = Receiver::start(|_| 200).await;
    let (agent, pid, dead, _running) = open_group_with_a_dead_letter(&app, &receiver.url).await;
    let path = format!("/ui/processes/{pid}");
    let action = format!("/ui/queue-items/{}/retry", dead.queue_item_id);

    let operator = Browser::sign_in(&app.base, &key(&app, "op", "operator").await).await;
    let (status, page) = operator.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("an admin can retry it"));
    assert!(!page.contains("Retry (one more attempt)"));
    let csrf = operator.csrf().await;
    let (status, _, page) = operator.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("needs an admin key"), "{page}");

    let admin = Browser::sign_in(&app.base, &app.key).await;
    let (_, page) = admin.get(&path).await;
    assert!(page.contains(&format!("action=\"{action}\"")), "{page}");
    assert!(page.contains("Retry (one more attempt)"));
    let (status, _, _) = admin.post(&action, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(item(&app, dead.queue_item_id).await.0, "DEAD_LETTER");

    let csrf = admin.csrf().await;
    let (status, location, _) = admin.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert_eq!(location, format!("{path}?retried={}", dead.queue_item_id));
    let (_, page) = admin.get(&location).await;
    assert!(
        page.contains(&format!("data-retried=\"{}\"", dead.queue_item_id))
            && page.contains("re-queued for one more attempt"),
        "{page}"
    );
    let again = agent.expect_order().await;
    assert_eq!(
        (again.queue_item_id, again.attempt),
        (dead.queue_item_id, 2)
    );
    assert_eq!(
        item(&app, dead.queue_item_id).await.2,
        2,
        "one more attempt"
    );

    let bodies = receiver.wait_bodies(3).await;
    assert_eq!(milestones(&bodies), ["accepted", "executing", "retrying"]);
    let audit: Vec<(String, String, Option<String>, String, Value)> = sqlx::query_as(
        "SELECT actor, action, target, via, detail FROM audit_log WHERE action LIKE '%retry%'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let (actor, action, target, via, detail) = &audit[0];
    assert_eq!(
        (actor.as_str(), action.as_str(), via.as_str()),
        ("bus-admin", "item.retry", "console")
    );
    assert_eq!(
        target.as_deref(),
        Some(dead.queue_item_id.to_string().as_str())
    );
    assert_eq!(detail["next_attempt"], 2);
    assert_eq!(detail["process_id"], json!(pid));
}

#[tokio::test]
async fn a_dead_lettered_post_video_item_is_retried_with_its_item_callback() {
    let app = BusApp::spawn().await;
    let assets = Receiver::start(|_| 200).await;
    let callbacks = Receiver::start(|_| 200).await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let (s, b) = app
        .post(
            "/ingest",
            &json!({"content_id": "c-1", "account_id": "acc-1", "video_path": assets.url,
                    "caption": "hi", "callback_url": callbacks.url}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    agent
        .event(&o, 2, finished_err("flow_error:unknown_screen", false))
        .await;
    app.wait_item_state(o.queue_item_id, "DEAD_LETTER").await;

    let (status, body) = retry(&app, &app.key, o.queue_item_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["process_id"], Value::Null);
    assert_eq!(body["process_status"], Value::Null);
    assert_eq!(body["next_attempt"], 2);
    let again = agent.expect_order().await;
    assert_eq!((again.queue_item_id, again.attempt), (o.queue_item_id, 2));
    let states: Vec<String> = callbacks
        .wait_bodies(4)
        .await
        .iter()
        .map(|b| b["queue_status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states[..4],
        ["QUEUED", "EXECUTING", "DEAD_LETTER", "RETRYABLE"]
    );
}

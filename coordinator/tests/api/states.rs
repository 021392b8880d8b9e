//! Stored states are decoded strictly: a queue item whose state this build does not know (a
//! row written by a newer version) is an error that is logged and answered as a 500 problem,
//! never shown as `queued`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use phonefarm_testkit::coordinator::app::*;

/// Log lines of the test's thread (the app runs on the test's current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn an_unknown_item_state_is_a_logged_500_problem_not_queued() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let rx = Receiver::start(|_| 200).await;
    app.account("acc-s", "phone-s").await;
    let r = app
        .enqueue(&keyword_request("req-s", "acc-s", &rx.url))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let pid = r.body["process_id"].as_str().unwrap().to_owned();
    let before = app.get(&format!("/processes/{pid}")).await;
    assert_eq!(before.status, 200, "{:?}", before.body);
    assert_eq!(before.body["status"], "queued");

    // This build's CHECK constraint would refuse the row a newer version might write.
    sqlx::query("ALTER TABLE queue_items DROP CONSTRAINT queue_items_state_check")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE queue_items SET state = 'PAUSED' WHERE process_id = $1::uuid")
        .bind(&pid)
        .execute(&app.db.pool)
        .await
        .unwrap();

    for path in [format!("/processes/{pid}"), "/processes".to_owned()] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 500, "{path}: {:?}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert_eq!(r.body["errors"], serde_json::json!(["internal_error"]));
        assert_ne!(r.body["status"], Value::from("queued"));
    }
    let logged = logs.text();
    assert!(
        logged.contains("database error") && logged.contains("PAUSED"),
        "no log line names the unknown state: {logged}"
    );
}

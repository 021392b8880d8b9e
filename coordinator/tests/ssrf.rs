//! The coordinator's side of the SSRF guard (the guard itself is tested in `phonefarm-net`):
//! a callback host that answers a public address when the API checks the URL and a private one
//! when the deliverer dials is never connected to.

use std::sync::Arc;
use std::time::Duration;

use phonefarm_coordinator::callbacks::{
    self, Backoff, Deliverer, DelivererConfig, NewCallback, PROCESS_UPDATED,
};
use phonefarm_net::testing::ScriptedLookup;
use phonefarm_net::{GuardedClient, SsrfPolicy};
use phonefarm_testkit::coordinator::app::AppDb;
use phonefarm_testkit::coordinator::receivers::Hanging;
use phonefarm_testkit::eventually;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn a_callback_host_rebinding_to_a_private_address_is_never_dialled() {
    let db = AppDb::new().await;
    // A private service on loopback; the host name is scripted: public for the API's check,
    // then this address for every delivery.
    let private = Hanging::start().await;
    let lookup = Arc::new(ScriptedLookup::new().with(
        "hooks.example.test",
        &[
            &["93.184.216.34".parse().unwrap()],
            &["127.0.0.1".parse().unwrap()],
        ],
    ));
    let http = GuardedClient::builder(SsrfPolicy::default())
        .timeout(Duration::from_secs(5))
        .lookup(lookup.clone())
        .build()
        .expect("client");
    let url = format!("http://hooks.example.test:{}/hook", private.addr.port());
    // What the API runs before it accepts a callback URL.
    http.check_url(&url)
        .await
        .expect("the public answer passes the request-time check");

    let event_id = Uuid::now_v7();
    let body = json!({"event_type": "process.updated", "event_id": event_id.to_string()});
    let mut tx = db.pool.begin().await.expect("begin");
    callbacks::enqueue(
        &mut tx,
        NewCallback {
            event_id,
            event_type: PROCESS_UPDATED,
            process_id: None,
            queue_item_id: None,
            sequence: None,
            url: &url,
            body: &body,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");

    let notify = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let config = DelivererConfig {
        poll_interval: Duration::from_millis(100),
        backoff: Backoff {
            steps: vec![Duration::from_millis(100)],
            then: Duration::from_millis(100),
            give_up_after: Duration::from_secs(600),
            jitter: 0.0,
        },
        ..DelivererConfig::default()
    };
    let deliverer =
        Deliverer::new(db.pool.clone(), http, None, Arc::clone(&notify)).with_config(config);
    let task = tokio::spawn(deliverer.run(shutdown.clone()));
    notify.notify_one();

    // Two delivery attempts, each resolving afresh and refused by the guard.
    let errors = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT a.error FROM callback_attempts a \
             JOIN callback_deliveries d ON d.id = a.delivery_id WHERE d.event_id = $1 \
             ORDER BY a.id",
        )
        .bind(event_id)
        .fetch_all(&db.pool)
        .await
        .expect("attempts")
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            errors().await.len() >= 2
        })
        .await,
        "two attempts recorded"
    );
    for error in errors().await {
        let error = error.unwrap_or_default();
        assert!(
            error.contains("ssrf") && error.contains("loopback"),
            "{error}"
        );
    }
    assert!(lookup.lookups("hooks.example.test") >= 3);
    assert_eq!(
        private.accepted(),
        0,
        "nothing connected to the private address"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

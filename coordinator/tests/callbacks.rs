//! Callback delivery end to end: real Postgres (one database per test), real HTTP receivers on
//! loopback, the real deliverer loop with a short backoff.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use phonefarm_coordinator::callbacks::{
    self, Backoff, Deliverer, DelivererConfig, NewCallback, PROCESS_UPDATED, QUEUE_ITEM_UPDATED,
};
use phonefarm_net::{GuardedClient, SsrfPolicy};
use phonefarm_testkit::coordinator::app::AppDb;
use phonefarm_testkit::coordinator::receivers::{Hanging, Received, Receiver, Reply};
use phonefarm_testkit::eventually;
use secrecy::SecretString;
use serde_json::json;
use sha2::Sha256;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn fast_config() -> DelivererConfig {
    DelivererConfig {
        concurrency: 8,
        attempt_timeout: Duration::from_secs(2),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        backoff: Backoff {
            steps: vec![Duration::from_millis(100), Duration::from_millis(200)],
            then: Duration::from_millis(200),
            give_up_after: Duration::from_secs(600),
            jitter: 0.0,
        },
        shutdown_grace: Duration::from_secs(1),
    }
}

fn loopback_client() -> GuardedClient {
    let allow = SsrfPolicy::parse_allow_list("127.0.0.0/8,::1").expect("allow-list");
    GuardedClient::new(SsrfPolicy::new(allow), Duration::from_secs(10)).expect("client")
}

/// A running deliverer; stopped on `stop()` (or aborted when dropped).
struct Running {
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(
        pool: &PgPool,
        http: GuardedClient,
        secret: Option<&str>,
        config: DelivererConfig,
    ) -> Running {
        let notify = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let deliverer = Deliverer::new(
            pool.clone(),
            http,
            secret.map(SecretString::from),
            Arc::clone(&notify),
        )
        .with_config(config);
        let task = tokio::spawn(deliverer.run(shutdown.clone()));
        Running {
            notify,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let task = self.task;
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("deliverer stops")
            .expect("deliverer task did not panic");
    }
}

/// Enqueues in a committed transaction, like the API does, then wakes the deliverer.
async fn enqueue(
    pool: &PgPool,
    notify: Option<&Notify>,
    url: &str,
    body: &serde_json::Value,
) -> Uuid {
    let event_id = body["event_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(Uuid::now_v7);
    let process_id = body["process"]["process_id"]
        .as_str()
        .and_then(|id| id.parse().ok());
    let sequence = body["sequence"].as_i64();
    let mut tx = pool.begin().await.expect("begin");
    callbacks::enqueue(
        &mut tx,
        NewCallback {
            event_id,
            event_type: PROCESS_UPDATED,
            process_id,
            queue_item_id: None,
            sequence,
            url,
            body,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    if let Some(notify) = notify {
        notify.notify_one();
    }
    event_id
}

fn process_body(sequence: i64) -> serde_json::Value {
    let event_id = Uuid::now_v7();
    json!({
        "event_type": "process.updated",
        "milestone": "accepted",
        "emitted_at": "2026-03-22T08:30:00.000Z",
        "event_id": event_id.to_string(),
        "sequence": sequence,
        "process": {
            "process_id": Uuid::now_v7().to_string(),
            "process_type": "keyword_warmup",
            "request_id": "req-1",
            "status": "queued",
            "callback_metadata": {"note": "ünïcödé ✓", "n": 1}
        }
    })
}

#[derive(Debug, sqlx::FromRow)]
struct DeliveryRow {
    state: String,
    attempts: i32,
    sequence: Option<i64>,
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<time::OffsetDateTime>,
}

async fn delivery(pool: &PgPool, event_id: Uuid) -> DeliveryRow {
    sqlx::query_as::<_, DeliveryRow>(
        "SELECT state, attempts, sequence, last_status, last_error, delivered_at \
         FROM callback_deliveries WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await
    .expect("delivery row")
}

#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    status_code: Option<i32>,
    error: Option<String>,
    duration_ms: i32,
}

async fn attempts(pool: &PgPool, event_id: Uuid) -> Vec<AttemptRow> {
    sqlx::query_as::<_, AttemptRow>(
        "SELECT a.attempt, a.status_code, a.error, a.duration_ms \
         FROM callback_attempts a JOIN callback_deliveries d ON d.id = a.delivery_id \
         WHERE d.event_id = $1 ORDER BY a.id",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await
    .expect("attempt rows")
}

async fn state_is(pool: &PgPool, event_id: Uuid, state: &str) -> bool {
    delivery(pool, event_id).await.state == state
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Verifies both signature schemes the way receivers do: from the raw body and the headers.
fn verify_signatures(received: &Received, legacy_key: &[u8], standard_key: &[u8]) {
    let ts = header(received, "x-phonefarm-timestamp");
    let ts_num: i64 = ts.parse().expect("unix seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - ts_num).abs() < 120, "timestamp is current");
    let mut signed = Vec::from(format!("{ts}.").as_bytes());
    signed.extend_from_slice(&received.body);
    assert_eq!(
        header(received, "x-phonefarm-signature"),
        hex::encode(hmac(legacy_key, &signed)),
        "documented scheme: hex hmac-sha256 of \"{{timestamp}}.{{raw body}}\""
    );

    let id = header(received, "webhook-id");
    let wts = header(received, "webhook-timestamp");
    assert_eq!(wts, ts);
    let mut signed = Vec::from(format!("{id}.{wts}.").as_bytes());
    signed.extend_from_slice(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac(standard_key, &signed)));
    let sigs = header(received, "webhook-signature");
    assert!(
        sigs.split(' ').any(|sig| sig == expected),
        "standard webhooks signature {sigs} != {expected}"
    );
}

#[tokio::test]
async fn signed_delivery_verifies_with_the_documented_algorithm() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let secret = "s3cr3t-not-whsec";
    let running = Running::start(&db.pool, loopback_client(), Some(secret), fast_config());

    let body = process_body(7);
    let event_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &receiver.url("/hook"),
        &body,
    )
    .await;
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "delivered")).await);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.method, axum::http::Method::POST);
    assert_eq!(got.path, "/hook");
    assert_eq!(header(got, "content-type"), "application/json");
    assert_eq!(header(got, "user-agent"), "phonefarm-callback/1.0");
    assert_eq!(header(got, "webhook-id"), event_id.to_string());
    let parsed: serde_json::Value = serde_json::from_slice(&got.body).expect("json body");
    assert_eq!(parsed, body, "the body is sent as given");
    verify_signatures(got, secret.as_bytes(), secret.as_bytes());

    let row = delivery(&db.pool, event_id).await;
    assert_eq!(row.sequence, Some(7), "sequence stored as given");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(200));
    assert!(row.delivered_at.is_some());
    let tries = attempts(&db.pool, event_id).await;
    assert_eq!(tries.len(), 1);
    assert_eq!((tries[0].attempt, tries[0].status_code), (1, Some(200)));
    assert!(tries[0].error.is_none());
    assert!(tries[0].duration_ms >= 0);

    running.stop().await;
}

#[tokio::test]
async fn whsec_secret_keys_standard_webhooks_with_the_decoded_bytes() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let secret = format!("whsec_{}", STANDARD.encode(&key));
    let running = Running::start(&db.pool, loopback_client(), Some(&secret), fast_config());

    let event_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &receiver.url("/"),
        &process_body(1),
    )
    .await;
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "delivered")).await);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    // The documented scheme keys with the secret as written; Standard Webhooks with the
    // decoded bytes.
    verify_signatures(&received[0], secret.as_bytes(), &key);
    running.stop().await;
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let running = Running::start(&db.pool, loopback_client(), None, fast_config());

    let event_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &receiver.url("/"),
        &process_body(1),
    )
    .await;
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "delivered")).await);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    for name in [
        "x-phonefarm-signature",
        "x-phonefarm-timestamp",
        "webhook-signature",
        "webhook-id",
    ] {
        assert!(received[0].headers.get(name).is_none(), "{name}");
    }
    assert_eq!(header(&received[0], "user-agent"), "phonefarm-callback/1.0");
    running.stop().await;
}

#[tokio::test]
async fn server_error_then_success_is_retried_with_identical_bytes() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(200)]).await;
    let secret = "retry-secret";
    let running = Running::start(&db.pool, loopback_client(), Some(secret), fast_config());

    let event_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &receiver.url("/hook"),
        &process_body(2),
    )
    .await;
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "delivered")).await);

    let received = receiver.received();
    assert_eq!(received.len(), 2, "one failure, one success, nothing more");
    assert_eq!(
        received[0].body, received[1].body,
        "identical bytes on every attempt"
    );
    for got in &received {
        assert_eq!(header(got, "webhook-id"), event_id.to_string());
        let parsed: serde_json::Value = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(parsed["event_id"], event_id.to_string());
        verify_signatures(got, secret.as_bytes(), secret.as_bytes());
    }

    let tries = attempts(&db.pool, event_id).await;
    let summary: Vec<(i32, Option<i32>, bool)> = tries
        .iter()
        .map(|t| (t.attempt, t.status_code, t.error.is_some()))
        .collect();
    assert_eq!(summary, [(1, Some(500), true), (2, Some(200), false)]);
    let row = delivery(&db.pool, event_id).await;
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_status, Some(200));
    assert_eq!(row.last_error, None);

    // Delivered once: nothing further arrives.
    assert!(
        !eventually(Duration::from_millis(500), || async {
            receiver.count() > 2
        })
        .await
    );
    running.stop().await;
}

/// A hanging receiver and a dead one each hold a slot; a healthy receiver enqueued after them is
/// still delivered at once, while the hanging attempt is in flight. Both broken ones are retried.
#[tokio::test]
async fn slow_and_dead_receivers_do_not_hold_up_others() {
    let db = AppDb::new().await;
    let hanging = Hanging::start().await;
    let dead = phonefarm_testkit::coordinator::receivers::dead_addr().await;
    let healthy = Receiver::start(vec![]).await;
    let mut config = fast_config();
    // Long enough that the healthy delivery below clearly happens while it is in flight.
    config.attempt_timeout = Duration::from_secs(6);
    let running = Running::start(&db.pool, loopback_client(), Some("k"), config);

    let hang_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &hanging.url(),
        &process_body(1),
    )
    .await;
    let dead_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &format!("http://{dead}/hook"),
        &process_body(1),
    )
    .await;
    assert!(eventually(WAIT, || async { hanging.accepted() >= 1 }).await);

    let healthy_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &healthy.url("/ok"),
        &process_body(1),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(4), || state_is(
            &db.pool,
            healthy_id,
            "delivered"
        ))
        .await,
        "the healthy receiver is served while the hanging one is in flight"
    );
    assert!(
        attempts(&db.pool, hang_id).await.is_empty(),
        "the hanging attempt was still in flight when the healthy one was delivered"
    );

    // The dead receiver is retried (connection refused each time).
    assert!(
        eventually(WAIT, || async {
            attempts(&db.pool, dead_id).await.len() >= 2
        })
        .await
    );
    for attempt in attempts(&db.pool, dead_id).await {
        assert_eq!(attempt.status_code, None);
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("connect"), "{error}");
    }
    assert!(state_is(&db.pool, dead_id, "pending").await);

    // The hanging one times out, is recorded and retried on a new connection.
    assert!(eventually(WAIT, || async { hanging.accepted() >= 2 }).await);
    let hang_attempts = attempts(&db.pool, hang_id).await;
    assert!(!hang_attempts.is_empty());
    assert_eq!(hang_attempts[0].error.as_deref(), Some("timed out"));
    assert!(
        hang_attempts[0].duration_ms >= 5900,
        "{}",
        hang_attempts[0].duration_ms
    );

    assert_eq!(healthy.count(), 1);
    running.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let db = AppDb::new().await;
    // An allowed target the redirect points at: it must never be contacted.
    let target = Receiver::start(vec![]).await;
    let to_private = Receiver::start(vec![]).await;
    to_private.set_fallback(Reply::Redirect("http://10.0.0.1/steal".to_owned()));
    let to_loopback = Receiver::start(vec![]).await;
    to_loopback.set_fallback(Reply::Redirect(target.url("/redirected")));
    let mut config = fast_config();
    // Give up at the first failure so the final state is visible.
    config.backoff.give_up_after = Duration::ZERO;
    let running = Running::start(&db.pool, loopback_client(), None, config);

    let private_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &to_private.url("/"),
        &process_body(1),
    )
    .await;
    let loopback_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &to_loopback.url("/"),
        &process_body(1),
    )
    .await;
    for id in [private_id, loopback_id] {
        assert!(eventually(WAIT, || state_is(&db.pool, id, "failed")).await);
        let tries = attempts(&db.pool, id).await;
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].status_code, Some(302));
        assert_eq!(tries[0].error.as_deref(), Some("redirect not followed"));
        let row = delivery(&db.pool, id).await;
        assert_eq!(row.last_status, Some(302));
        assert!(row.delivered_at.is_none());
    }
    assert_eq!(to_private.count(), 1);
    assert_eq!(to_loopback.count(), 1);
    assert_eq!(target.count(), 0, "the redirect was not followed");
    running.stop().await;
}

#[tokio::test]
async fn gives_up_after_the_window_and_records_every_attempt() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    receiver.set_fallback(Reply::Status(503));
    let mut config = fast_config();
    config.backoff = Backoff {
        steps: vec![Duration::from_millis(50)],
        then: Duration::from_millis(100),
        give_up_after: Duration::from_millis(700),
        jitter: 0.2,
    };
    let running = Running::start(&db.pool, loopback_client(), None, config);

    let event_id = enqueue(
        &db.pool,
        Some(&running.notify),
        &receiver.url("/"),
        &process_body(1),
    )
    .await;
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "failed")).await);
    let row = delivery(&db.pool, event_id).await;
    let tries = attempts(&db.pool, event_id).await;
    assert!(tries.len() >= 3, "{} attempts", tries.len());
    assert_eq!(tries.len(), usize::try_from(row.attempts).expect("count"));
    assert_eq!(tries.len(), receiver.count());
    assert!(tries.iter().all(|t| t.status_code == Some(503)));
    let numbers: Vec<i32> = tries.iter().map(|t| t.attempt).collect();
    let expected: Vec<i32> = (1..=row.attempts).collect();
    assert_eq!(numbers, expected);
    assert_eq!(row.last_status, Some(503));
    assert_eq!(row.last_error.as_deref(), Some("non-2xx status"));

    // Failed is final.
    let count = receiver.count();
    assert!(
        !eventually(Duration::from_millis(500), || async {
            receiver.count() > count
        })
        .await
    );
    running.stop().await;
}

#[tokio::test]
async fn ssrf_guard_applies_at_delivery_time() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let strict =
        GuardedClient::new(SsrfPolicy::new(vec![]), Duration::from_secs(10)).expect("client");
    let mut config = fast_config();
    config.backoff.give_up_after = Duration::ZERO;
    let running = Running::start(&db.pool, strict, None, config);

    let ids = [
        enqueue(
            &db.pool,
            Some(&running.notify),
            &format!("http://127.0.0.1:{port}/"),
            &process_body(1),
        )
        .await,
        enqueue(
            &db.pool,
            Some(&running.notify),
            &format!("http://localhost:{port}/"),
            &process_body(1),
        )
        .await,
        enqueue(
            &db.pool,
            Some(&running.notify),
            "http://169.254.169.254/latest/meta-data/",
            &process_body(1),
        )
        .await,
        enqueue(
            &db.pool,
            Some(&running.notify),
            "http://[::ffff:127.0.0.1]/",
            &process_body(1),
        )
        .await,
    ];
    for id in ids {
        assert!(eventually(WAIT, || state_is(&db.pool, id, "failed")).await);
        let tries = attempts(&db.pool, id).await;
        assert_eq!(tries.len(), 1);
        let error = tries[0].error.clone().unwrap_or_default();
        assert!(error.contains("ssrf"), "{error}");
        assert_eq!(tries[0].status_code, None);
    }
    assert_eq!(receiver.count(), 0);
    running.stop().await;
}

/// URLs that can never work fail at once; a name resolving to a refused address is retried
/// (DNS may change).
#[tokio::test]
async fn permanent_errors_fail_at_the_first_attempt() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let strict =
        GuardedClient::new(SsrfPolicy::new(vec![]), Duration::from_secs(10)).expect("client");
    let running = Running::start(&db.pool, strict, None, fast_config());

    let mut permanent = Vec::new();
    for url in [
        "ftp://example.invalid/hook".to_owned(),
        "not a url".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        format!("http://127.0.0.1:{port}/"),
    ] {
        permanent.push(enqueue(&db.pool, Some(&running.notify), &url, &process_body(1)).await);
    }
    let by_name = enqueue(
        &db.pool,
        Some(&running.notify),
        &format!("http://localhost:{port}/"),
        &process_body(1),
    )
    .await;
    for id in permanent {
        assert!(eventually(WAIT, || state_is(&db.pool, id, "failed")).await);
        assert_eq!(attempts(&db.pool, id).await.len(), 1);
    }
    assert!(
        eventually(WAIT, || async {
            attempts(&db.pool, by_name).await.len() >= 2
        })
        .await
    );
    assert!(state_is(&db.pool, by_name, "pending").await);
    assert_eq!(receiver.count(), 0);
    running.stop().await;
}

/// Two deliverers (two coordinator replicas) on one database deliver each event exactly once in
/// the normal case.
#[tokio::test]
async fn replicas_share_the_outbox_without_duplicates() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let a = Running::start(&db.pool, loopback_client(), None, fast_config());
    let b = Running::start(&db.pool, loopback_client(), None, fast_config());

    let mut ids = Vec::new();
    for n in 0..40 {
        let notify = if n % 2 == 0 { &a.notify } else { &b.notify };
        ids.push(
            enqueue(
                &db.pool,
                Some(notify),
                &receiver.url("/bulk"),
                &process_body(n),
            )
            .await,
        );
    }
    let pool = db.pool.clone();
    assert!(
        eventually(WAIT, || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM callback_deliveries WHERE state = 'delivered'",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
                    == 40
            }
        })
        .await
    );
    let received = receiver.received();
    assert_eq!(received.len(), 40);
    let mut seen: Vec<String> = received
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40, "every event exactly once");
    a.stop().await;
    b.stop().await;
}

/// A row leased by a deliverer that died comes back when its lease runs out.
#[tokio::test]
async fn expired_lease_is_picked_up_again() {
    let db = AppDb::new().await;
    let receiver = Receiver::start(vec![]).await;
    let event_id = enqueue(&db.pool, None, &receiver.url("/"), &process_body(1)).await;
    // What a claim by a crashed replica leaves behind: a lease far enough in the future that a
    // loaded machine cannot outrun it during the check below.
    sqlx::query(
        "UPDATE callback_deliveries SET attempts = 1, \
         next_attempt_at = now() + interval '30 seconds' WHERE event_id = $1",
    )
    .bind(event_id)
    .execute(&db.pool)
    .await
    .expect("lease");

    let running = Running::start(&db.pool, loopback_client(), None, fast_config());
    running.notify.notify_one();
    assert!(
        !eventually(Duration::from_millis(500), || async {
            receiver.count() > 0
        })
        .await,
        "not delivered while leased"
    );
    // The lease runs out (moved to now rather than waited for).
    sqlx::query("UPDATE callback_deliveries SET next_attempt_at = now() WHERE event_id = $1")
        .bind(event_id)
        .execute(&db.pool)
        .await
        .expect("expire the lease");
    running.notify.notify_one();
    assert!(eventually(WAIT, || state_is(&db.pool, event_id, "delivered")).await);
    assert_eq!(receiver.count(), 1);
    let tries = attempts(&db.pool, event_id).await;
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].attempt, 2, "the lost attempt still counts");
    running.stop().await;
}

/// The outbox row exists only if the caller's transaction commits; replays are no-ops.
#[tokio::test]
async fn enqueue_is_transactional_and_idempotent() {
    let db = AppDb::new().await;
    let body = process_body(3);
    let event_id = Uuid::now_v7();
    let queue_item_id = Uuid::now_v7();
    let new = NewCallback {
        event_id,
        event_type: QUEUE_ITEM_UPDATED,
        process_id: None,
        queue_item_id: Some(queue_item_id),
        sequence: None,
        url: "http://example.invalid/hook",
        body: &body,
    };

    let mut tx = db.pool.begin().await.expect("begin");
    callbacks::enqueue(&mut tx, new).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM callback_deliveries")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);

    for _ in 0..2 {
        let mut tx = db.pool.begin().await.expect("begin");
        callbacks::enqueue(&mut tx, new).await.expect("enqueue");
        tx.commit().await.expect("commit");
    }
    let rows = callbacks::deliveries_for_queue_item(&db.pool, queue_item_id)
        .await
        .expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, event_id);
    assert_eq!(rows[0].event_type, "queue_item.updated");
    assert_eq!(rows[0].state, "pending");
    let stored: String =
        sqlx::query_scalar("SELECT body FROM callback_deliveries WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&db.pool)
            .await
            .expect("body");
    assert_eq!(stored, serde_json::to_string(&body).expect("serialize"));
    assert!(
        callbacks::attempts(&db.pool, rows[0].id)
            .await
            .expect("attempts")
            .is_empty()
    );
}

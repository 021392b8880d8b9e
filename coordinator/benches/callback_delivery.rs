//! Callback delivery throughput: enqueue N callbacks (in transactions of 100), then deliver them
//! to a loopback receiver with the production deliverer settings; reports both rates.
//!
//! `cargo bench -p phonefarm-coordinator --bench callback_delivery` (needs the test Postgres,
//! `DATABASE_URL` defaulting to postgres://postgres@127.0.0.1:5432/postgres). `CALLBACK_BENCH_N`
//! sets the number of callbacks (default 5000), `CALLBACK_BENCH_DELAY_MS` makes the receiver
//! slow (default 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use phonefarm_coordinator::callbacks::{
    self, Deliverer, DelivererConfig, NewCallback, PROCESS_UPDATED,
};
use phonefarm_net::{GuardedClient, SsrfPolicy};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_number("CALLBACK_BENCH_N", 5000);
    let delay = Duration::from_millis(env_number("CALLBACK_BENCH_DELAY_MS", 0));

    let db = phonefarm_testkit::coordinator::app::AppDb::new().await;
    let received = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .fallback(
            |State((count, delay)): State<(Arc<AtomicUsize>, Duration)>| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                count.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            },
        )
        .with_state((Arc::clone(&received), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let allow = SsrfPolicy::parse_allow_list("127.0.0.0/8")?;
    let http = GuardedClient::new(SsrfPolicy::new(allow), Duration::from_secs(10))?;
    let notify = Arc::new(Notify::new());
    let started = Instant::now();
    let process_id = Uuid::now_v7();
    let mut sequence = 0i64;
    while sequence < i64::try_from(n)? {
        let mut tx = db.pool.begin().await?;
        for _ in 0..100 {
            if sequence >= i64::try_from(n)? {
                break;
            }
            sequence += 1;
            let event_id = Uuid::now_v7();
            let body = serde_json::json!({
                "event_type": PROCESS_UPDATED, "milestone": "executing",
                "emitted_at": "2026-03-22T08:30:00.000Z",
                "event_id": event_id, "sequence": sequence,
                "process": {"process_id": process_id, "process_type": "keyword_warmup",
                            "request_id": "bench", "status": "executing"}
            });
            callbacks::enqueue(
                &mut tx,
                NewCallback {
                    event_id,
                    event_type: PROCESS_UPDATED,
                    process_id: Some(process_id),
                    queue_item_id: None,
                    sequence: Some(sequence),
                    url: &url,
                    body: &body,
                },
            )
            .await?;
        }
        tx.commit().await?;
        notify.notify_one();
    }
    let enqueued = started.elapsed();

    // Deliver what was enqueued: the deliverer starts only now, so the two rates are separate.
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let deliverer = Deliverer::new(
        db.pool.clone(),
        http,
        Some(SecretString::from("bench-secret")),
        Arc::clone(&notify),
    )
    .with_config(DelivererConfig::default());
    let task = tokio::spawn(deliverer.run(shutdown.clone()));

    let n_usize = usize::try_from(n)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM callback_deliveries WHERE state = 'delivered'",
        )
        .fetch_one(&db.pool)
        .await?;
        if usize::try_from(delivered)? >= n_usize || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    shutdown.cancel();
    let _ = task.await;

    let (avg_ms, p99_ms): (f64, f64) = sqlx::query_as(
        "SELECT avg(duration_ms)::float8, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)::float8 \
         FROM callback_attempts",
    )
    .fetch_one(&db.pool)
    .await?;
    let got = received.load(Ordering::Relaxed);
    println!(
        "callbacks: {n}, receiver delay {delay:?}, received {got}\n\
         enqueue: {enqueued:.2?} ({:.0}/s, 100 per transaction)\n\
         delivery (signed, attempt recorded): {total:.2?} ({:.0}/s)\n\
         http attempt duration: avg {avg_ms:.1} ms, p99 {p99_ms:.1} ms",
        n as f64 / enqueued.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
    );
    Ok(())
}

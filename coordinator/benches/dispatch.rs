//! Dispatch latency: enqueue (HTTP) → the simulated agent receives the work order, and →
//! the agent's `Accepted` is acked by JetStream, at 100 concurrent processes on 100 phones,
//! beside a plain NATS request round trip measured in the same run on the same server.
//!
//! `cargo bench -p phonefarm-coordinator --bench dispatch` (env: `PF_BENCH_ROUNDS`, default 5,
//! after `PF_BENCH_WARMUP` untimed rounds, default 1, whose figure is printed apart;
//! `PF_BENCH_CONCURRENCY`, default 100; `PF_BENCH_LANES`, the ingester's lanes, default the
//! coordinator's; `DATABASE_URL`, an admin URL, default the local
//! postgres). It starts a private nats-server (`/usr/sbin/nats-server`, temp store), a scratch
//! database and the coordinator in-process with its bus, then runs rounds of N concurrent
//! enqueues; the simulated agent acks each order, publishes `Accepted` and then `Finished` so
//! the phones are free for the next round.
//!
//! The simulated agent answers at once: this measures the coordinator, NATS and the wire. The
//! real agent journals each order (synced) before its `Accepted`; the same burst to real agent
//! processes is `cargo bench -p phonefarm-e2e --bench dispatch`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use phonefarm_coordinator::bus::{self, BusConfig};
use phonefarm_coordinator::{app, auth, db};
use phonefarm_testkit::NatsServer;
use phonefarm_testkit::bench::{cpu_budget_line, host_busy_s, nats_request_rtt, summary};

/// The coordinator binary's allocator, since the coordinator runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use phonefarm_shared::{
    AgentEvent, EventKind, Inventory, Outcome, PhoneState, PhoneStatus, Presence, WorkOrder,
    subjects,
};
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Wall-clock milliseconds (fractional) of an `Instant`, so the bench's own timestamps line up
/// with the ones the coordinator stores (same host, same clock).
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    wall_ms: f64,
}

impl Clock {
    fn new() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            instant: Instant::now(),
            wall_ms: wall.as_secs_f64() * 1e3,
        }
    }

    fn wall(&self, t: Instant) -> f64 {
        if t >= self.instant {
            self.wall_ms + t.duration_since(self.instant).as_secs_f64() * 1e3
        } else {
            self.wall_ms - self.instant.duration_since(t).as_secs_f64() * 1e3
        }
    }
}

fn ts_ms(t: time::OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e6
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn scratch_db(admin: &str) -> anyhow::Result<(String, PgPool)> {
    let name = format!("pf_bench_dispatch_{}", Uuid::new_v4().simple());
    let admin_pool = PgPool::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await?;
    admin_pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    let pool = db::connect(&format!("{base}/{name}")).await?;
    db::MIGRATOR.run(&pool).await?;
    Ok((name, pool))
}

async fn drop_db(admin: &str, name: &str) {
    if let Ok(pool) = PgPool::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&pool)
        .await;
    }
}

/// When each order reached the agent, and when its Accepted was acked.
type Seen = Arc<Mutex<HashMap<Uuid, (Instant, Option<Instant>)>>>;

async fn publish_event(
    js: &jetstream::Context,
    agent: &str,
    ev: &AgentEvent,
) -> anyhow::Result<()> {
    let publish = jetstream::message::PublishMessage::build()
        .payload(phonefarm_shared::encode(ev).into())
        .message_id(ev.msg_id());
    js.send_publish(subjects::run_events(agent), publish)
        .await?
        .await?;
    Ok(())
}

/// The simulated agent: pulls orders, acks, publishes Accepted (timed), then Finished.
async fn agent_loop(js: jetstream::Context, agent: String, seen: Seen, stop: CancellationToken) {
    let consumer = loop {
        match js
            .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                subjects::agent_consumer(&agent),
                subjects::WORK_STREAM,
            )
            .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let Ok(mut messages) = consumer.messages().await else {
        return;
    };
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            n = messages.next() => n,
        };
        let Some(Ok(m)) = next else { continue };
        let received = Instant::now();
        let Ok(order) = phonefarm_shared::decode::<WorkOrder>(&m.payload) else {
            continue;
        };
        let js = js.clone();
        let agent = agent.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let _ = m.ack().await;
            let pid = order.process_id.unwrap_or(order.queue_item_id);
            if let Ok(mut s) = seen.lock() {
                s.insert(pid, (received, None));
            }
            let mut ev = AgentEvent {
                queue_item_id: order.queue_item_id,
                attempt: order.attempt,
                seq: 1,
                at_unix_ms: now_ms(),
                kind: EventKind::Accepted,
            };
            if publish_event(&js, &agent, &ev).await.is_ok()
                && let Ok(mut s) = seen.lock()
                && let Some(e) = s.get_mut(&pid)
            {
                e.1 = Some(Instant::now());
            }
            ev.seq = 2;
            ev.at_unix_ms = now_ms();
            ev.kind = EventKind::Finished {
                outcome: Outcome::Completed,
                result_json: "{}".into(),
                error: None,
            };
            let _ = publish_event(&js, &agent, &ev).await;
        });
    }
}

fn phone(id: String) -> PhoneStatus {
    PhoneStatus {
        serial: id.clone(),
        phone_id: id,
        transport: "usb".into(),
        location: "1-1".into(),
        state: PhoneState::Online,
        model: None,
        android_version: None,
        battery_level: None,
        temperature_decicelsius: None,
        storage_free_bytes: None,
        screen_on: None,
        app_version: None,
        current_queue_item_id: None,
    }
}

async fn run() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("PF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // Untimed rounds first: the first burst also opens the client's and the pool's connections
    // and fills the auth cache; its figures are printed apart.
    let warmup: usize = std::env::var("PF_BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let n: usize = std::env::var("PF_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats = NatsServer::start();
    let (dbname, pool) = scratch_db(&admin).await?;
    let key = auth::generate_key();
    db::api_keys::insert(&pool, "bench", &auth::hash_key(&key), "pf_", "admin", None).await?;

    let mut config = BusConfig::new(nats.url());
    config.offline_after = Duration::from_secs(60);
    // Polling is only the fallback: a NOTIFY wakes the dispatcher at each enqueue.
    config.dispatch_interval = Duration::from_secs(5);
    if let Some(lanes) = std::env::var("PF_BENCH_LANES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.ingest_lanes = lanes;
    }
    println!("ingester lanes: {}", config.ingest_lanes);
    let handle = bus::connect(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let settings = app::Settings {
        ingest_secret: None,
        webhook_secret: None,
        // The callback URL is on loopback (nothing is delivered: no deliverer runs).
        allow: vec!["127.0.0.0/8".parse()?],
        public_metrics: true,
        deliverer: None,
    };
    let server = tokio::spawn(app::run_with_bus(
        listener,
        pool.clone(),
        settings,
        Some(handle),
        shutdown.clone(),
    ));

    // The agent: presence, 100 phones, 100 accounts.
    let agent_id = "bench-rack".to_string();
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    let presence = Presence {
        agent_id: agent_id.clone(),
        version: "bench".into(),
        host: "localhost".into(),
        started_at_unix_ms: now_ms(),
        phones: n as u32,
    };
    js.publish(
        format!("$KV.{}.{agent_id}", subjects::AGENTS_BUCKET),
        phonefarm_shared::encode(&presence).into(),
    )
    .await?
    .await?;
    let inv = Inventory {
        agent_id: agent_id.clone(),
        seq: 1,
        at_unix_ms: now_ms(),
        phones: (0..n).map(|i| phone(format!("BP{i:04}"))).collect(),
    };
    js.publish(
        subjects::inventory(&agent_id),
        phonefarm_shared::encode(&inv).into(),
    )
    .await?
    .await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    for i in 0..n {
        let r = http
            .put(format!("{base}/accounts/bacc-{i}"))
            .bearer_auth(&key)
            .json(&json!({"phone_id": format!("BP{i:04}")}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "account setup: {}", r.status());
    }
    // Wait until the fleet mirror made every phone dispatchable.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (k,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM phones p JOIN agents a ON a.agent_id = p.agent_id \
             WHERE a.online AND p.state = 'online'",
        )
        .fetch_one(&pool)
        .await?;
        if k as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "fleet never came online ({k} phones)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(agent_loop(
        js.clone(),
        agent_id.clone(),
        Arc::clone(&seen),
        stop.clone(),
    ));

    let clock = Clock::new();
    let mut to_order = Vec::new();
    let mut to_accepted = Vec::new();
    let mut to_response = Vec::new();
    let mut from_response = Vec::new();
    let mut to_ingested = Vec::new();
    // Where the time goes, per process (wall-clock differences, ms; Postgres stamps are ms).
    let mut ph_answered = Vec::new(); // HTTP 202 received → the dispatch pass that claims it starts
    let mut ph_created = Vec::new(); // request sent → the handler's transaction starts
    let mut ph_dispatch = Vec::new(); // → the dispatch pass that claims it starts
    let mut ph_deliver = Vec::new(); // → the agent has the order
    let mut ph_marked = Vec::new(); // dispatch pass → its outbox row is marked published
    let mut ph_accept = Vec::new(); // → the agent's Accepted is stored by JetStream
    let mut ph_ingest = Vec::new(); // → the coordinator applied Accepted (item EXECUTING)
    // Host CPU seconds from each timed round's first enqueue to its last Accepted.
    let mut round_cpu = Vec::new();
    for round in 0..warmup + rounds {
        let started: Arc<Mutex<HashMap<Uuid, (Instant, Instant)>>> = Arc::default();
        let cpu_at_start = host_busy_s();
        let mut tasks = Vec::new();
        for i in 0..n {
            let http = http.clone();
            let base = base.clone();
            let key = key.clone();
            let started = Arc::clone(&started);
            tasks.push(tokio::spawn(async move {
                let body = json!({
                    "request_id": format!("bench-{round}-{i}"),
                    "capability": "keyword_warmup",
                    "mode": "unattended",
                    "target": {"routing": "queue", "account_id": format!("bacc-{i}")},
                    "inputs": {"keywords": ["bench"]},
                    "callback": {"url": "http://127.0.0.1:9/cb"},
                    "requested_by": {"system": "bench"}
                });
                let t0 = Instant::now();
                let r = http
                    .post(format!("{base}/capability-requests/enqueue"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                if !r.status().is_success() {
                    eprintln!(
                        "enqueue: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    return None;
                }
                let v: serde_json::Value = r.json().await.ok()?;
                let pid = Uuid::parse_str(v["process_id"].as_str()?).ok()?;
                started.lock().ok()?.insert(pid, (t0, Instant::now()));
                Some(())
            }));
        }
        for t in tasks {
            t.await?;
        }
        let started = started.lock().map(|s| s.clone()).unwrap_or_default();
        anyhow::ensure!(
            started.len() == n,
            "only {} of {n} enqueues succeeded",
            started.len()
        );
        // Wait for every Accepted of this round (and the phones to be free again).
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let done = seen
                .lock()
                .map(|s| {
                    started
                        .keys()
                        .filter(|p| s.get(p).is_some_and(|e| e.1.is_some()))
                        .count()
                })
                .unwrap_or(0);
            if done == n {
                if round >= warmup
                    && let (Some(a), Some(b)) = (cpu_at_start, host_busy_s())
                {
                    round_cpu.push(b - a);
                }
                break;
            }
            anyhow::ensure!(
                Instant::now() < until,
                "round {round}: only {done} of {n} accepted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen_now = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let before = to_accepted.len();
        for (pid, (t0, answered)) in &started {
            to_response.push(answered.duration_since(*t0).as_secs_f64() * 1e3);
            if let Some((recv, Some(acc))) = seen_now.get(pid) {
                to_order.push(recv.duration_since(*t0).as_secs_f64() * 1e3);
                to_accepted.push(acc.duration_since(*t0).as_secs_f64() * 1e3);
                from_response.push(clock.wall(*acc) - clock.wall(*answered));
            }
        }
        // Each round's slowest, so one bad round is visible behind the p99.
        let round_max = to_accepted[before..].iter().copied().fold(0.0, f64::max);
        let round_202 = to_response[before..].iter().copied().fold(0.0, f64::max);
        eprintln!(
            "round {round}: slowest enqueue -> Accepted acked {round_max:.1} ms, slowest 202 {round_202:.1} ms"
        );
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let (busy,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM queue_items WHERE state NOT IN ('DONE', 'DEAD_LETTER', 'CANCELLED')",
            )
            .fetch_one(&pool)
            .await?;
            if busy == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < until,
                "round {round}: {busy} items never finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The coordinator's own stamps of each step.
        let pids: Vec<Uuid> = started.keys().copied().collect();
        let steps: Vec<(Uuid, OffsetDateTime, OffsetDateTime, OffsetDateTime, OffsetDateTime)> =
            sqlx::query_as(
                "SELECT qi.process_id, p.created_at, d.at, o.published_at, qi.started_at \
                 FROM queue_items qi JOIN processes p ON p.process_id = qi.process_id \
                 JOIN queue_item_events d ON d.queue_item_id = qi.queue_item_id AND d.kind = 'dispatched' \
                 JOIN outbox o ON o.msg_id = 'work:' || qi.queue_item_id::text || ':' || qi.attempt::text \
                 WHERE qi.process_id = ANY($1) AND o.published_at IS NOT NULL AND qi.started_at IS NOT NULL",
            )
            .bind(&pids)
            .fetch_all(&pool)
            .await?;
        for (pid, created, dispatched, published, ingested) in steps {
            let (Some((t0, answered)), Some((recv, Some(acc)))) =
                (started.get(&pid), seen_now.get(&pid))
            else {
                continue;
            };
            let (t0, answered, recv, acc) = (
                clock.wall(*t0),
                clock.wall(*answered),
                clock.wall(*recv),
                clock.wall(*acc),
            );
            let (created, dispatched, published, ingested) = (
                ts_ms(created),
                ts_ms(dispatched),
                ts_ms(published),
                ts_ms(ingested),
            );
            ph_answered.push(dispatched - answered);
            ph_created.push(created - t0);
            ph_dispatch.push(dispatched - created);
            ph_deliver.push(recv - dispatched);
            ph_marked.push(published - dispatched);
            ph_accept.push(acc - recv);
            ph_ingest.push(ingested - acc);
            to_ingested.push(ingested - t0);
        }
        if round < warmup {
            summary(
                &format!("warm-up round {round}: enqueue -> Accepted acked"),
                std::mem::take(&mut to_accepted),
            );
            for v in [
                &mut to_order,
                &mut to_response,
                &mut from_response,
                &mut to_ingested,
                &mut ph_answered,
                &mut ph_created,
                &mut ph_dispatch,
                &mut ph_deliver,
                &mut ph_marked,
                &mut ph_accept,
                &mut ph_ingest,
            ] {
                v.clear();
            }
        }
    }

    // A plain NATS request round trip on the same server.
    let rtt = nats_request_rtt(&client, 1000)
        .await
        .map_err(|e| anyhow::anyhow!("NATS round trips: {e}"))?;

    println!("dispatch latency, {rounds} rounds x {n} concurrent processes on {n} phones:");
    summary("enqueue -> HTTP 202 (the API under this load)", to_response);
    summary("enqueue -> agent receives the work order", to_order);
    summary(
        "enqueue -> agent's Accepted acked by JetStream",
        to_accepted,
    );
    summary("HTTP 202 -> agent's Accepted acked", from_response);
    summary("enqueue -> coordinator applied Accepted", to_ingested);
    summary("NATS request round trip (same server)", rtt);
    if !round_cpu.is_empty() {
        // Polled every 10 ms: the window may run up to 10 ms past the last Accepted.
        let mean = round_cpu.iter().sum::<f64>() / round_cpu.len() as f64;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!("{} (mean of rounds)", cpu_budget_line(mean, n, cores, 50.0));
    }
    println!("where the time goes (per process, consecutive steps):");
    summary("  request -> handler transaction starts", ph_created);
    summary("  -> dispatch pass claims it", ph_dispatch);
    summary("  -> agent has the order", ph_deliver);
    summary("  -> agent's Accepted stored by JetStream", ph_accept);
    summary("  -> coordinator applied Accepted", ph_ingest);
    summary("HTTP 202 -> dispatch pass claims it", ph_answered);
    summary("dispatch pass -> its order marked published", ph_marked);

    stop.cancel();
    let _ = agent.await;
    shutdown.cancel();
    let _ = server.await;
    pool.close().await;
    drop_db(&admin, &dbname).await;
    Ok(())
}

fn main() {
    // RUST_LOG=warn (or finer) shows what the coordinator logs during the run.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

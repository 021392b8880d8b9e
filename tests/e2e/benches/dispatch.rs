//! Dispatch latency with the real agent: enqueue (HTTP) → the agent's `Accepted` stored by
//! JetStream, p50 / p99, at 100 concurrent processes, beside a NATS request round trip
//! measured in the same run. Issue #5's target: p99 < 50 ms on loopback.
//!
//! The whole system of the end-to-end tests (`tests/system/harness.rs`): a real nats-server,
//! Postgres, the coordinator on loopback, and real agent daemons (`e2e-agent`, each its own OS
//! process, with its on-disk journal) driving simulated phones over ADB/TCP. Unlike
//! `cargo bench -p phonefarm-coordinator --bench dispatch`, whose simulated agent answers at
//! once, an order here is admitted by the agent (journaled and synced) before its `Accepted`
//! is published, while the runs admitted just before it start on the same cores.
//!
//! `cargo bench -p phonefarm-e2e --bench dispatch`. Knobs: `PF_BENCH_PHONES` (100: processes
//! per burst, one per phone), `PF_BENCH_AGENTS` (4: the phones split over that many agents; a
//! rack host serves 32), `PF_BENCH_ROUNDS` (5 timed bursts after one warm-up burst),
//! `PF_BENCH_IN_PROCESS=1` (agents as tasks of this process instead). Every run of a burst
//! completes before the next burst, so every phone is free.
//!
//! The agents run with their production timings (a health probe of each phone every 30 s, not
//! the tests' 500 ms). Times: the enqueue is stamped before its request is sent; `Accepted` with the stream's
//! stored time of the message (same host, same wall clock); `dispatched` with the
//! coordinator's history stamp.

#[allow(dead_code)]
#[path = "../tests/system/harness.rs"]
mod harness;

// The coordinator runs in this process: the allocator of its production binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use harness::{Options, System, warmup};
use phonefarm_testkit::bench::{
    cpu_budget_line, host_busy_s, nats_request_rtt, process_cpu_s, summary,
};
use phonefarm_testkit::wait_until;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e6
}

fn stamp_ms(v: &Value) -> Option<f64> {
    let t = OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e6)
}

/// When each `Accepted` of the event stream was journaled by its agent (the event's stamp) and
/// stored by JetStream (the stream's stamp), Unix ms, by queue item: the stream read once from
/// `since` up to its last message.
async fn accepted_stored(
    js: &async_nats::jetstream::Context,
    since: OffsetDateTime,
) -> anyhow::Result<HashMap<uuid::Uuid, (f64, f64)>> {
    let stream = js
        .get_stream(phonefarm_shared::subjects::EVT_STREAM)
        .await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartTime {
                start_time: since,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut stored = HashMap::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
        let m = m?;
        let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let at = info.published.unix_timestamp_nanos() as f64 / 1e6;
        let last = info.pending == 0;
        if let Ok(ev) = phonefarm_shared::decode::<phonefarm_shared::AgentEvent>(&m.payload)
            && ev.kind == phonefarm_shared::EventKind::Accepted
        {
            stored.insert(ev.queue_item_id, (ev.at_unix_ms as f64, at));
        }
        if last {
            break;
        }
    }
    Ok(stored)
}

/// One burst: its per-process figures (ms), and when it started and its last `Accepted` was
/// stored (wall ms).
#[derive(Default)]
struct Burst {
    to_202: Vec<f64>,
    to_dispatched: Vec<f64>,
    to_accepted: Vec<f64>,
    dispatched_to_accepted: Vec<f64>,
    dispatched_to_journaled: Vec<f64>,
    dispatched_to_marked: Vec<f64>,
    journaled_to_stored: Vec<f64>,
    window: (f64, f64),
}

/// CPU time sampled every 25 ms: the whole host (`/proc/stat`), this process (coordinator,
/// phone simulators, the bench's client) and the agent processes (`/proc/<pid>/stat`, one read
/// per process, exited threads included), in ticks of 10 ms. The rest is Postgres and
/// nats-server.
struct CpuSampler {
    samples: Arc<Mutex<Vec<CpuSample>>>,
    stop: Arc<AtomicBool>,
}

/// CPU of one burst's window: its length, and cores busy on average.
#[derive(Clone, Copy)]
struct Cpu {
    window_s: f64,
    host: f64,
    this: f64,
    agents: f64,
}

#[derive(Clone, Copy)]
struct CpuSample {
    at: f64,
    host_busy_s: f64,
    this_s: f64,
    agents_s: f64,
}

impl CpuSampler {
    fn start(agents: Vec<u32>) -> Self {
        let samples: Arc<Mutex<Vec<CpuSample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (out, done) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let me = std::process::id();
            while !done.load(Ordering::Relaxed) {
                let sample = CpuSample {
                    at: wall_ms(),
                    host_busy_s: host_busy_s().unwrap_or(0.0),
                    this_s: process_cpu_s(me).unwrap_or(0.0),
                    agents_s: agents.iter().filter_map(|&p| process_cpu_s(p)).sum(),
                };
                out.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Self { samples, stop }
    }

    /// CPU of the window `(from, to)` (wall ms), from the samples around it: cores busy on
    /// average for the host, this process and the agents. The host's CPU over the window is
    /// its cores busy times the window's length, not the samples' span (up to 25 ms more on
    /// each side).
    fn cores(&self, (from, to): (f64, f64)) -> Option<Cpu> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let a = samples.iter().rev().find(|s| s.at <= from)?;
        let b = samples.iter().find(|s| s.at >= to)?;
        let secs = (b.at - a.at) / 1e3;
        Some(Cpu {
            window_s: (to - from) / 1e3,
            host: (b.host_busy_s - a.host_busy_s) / secs,
            this: (b.this_s - a.this_s) / secs,
            agents: (b.agents_s - a.agents_s) / secs,
        })
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The bench's own connections to the system's NATS and Postgres, kept for the whole run.
struct Observer {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    pool: sqlx::PgPool,
}

/// Waits until the previous burst's tail is over, so a burst is timed on its own and not beside
/// the last one's callback deliveries and inventory reports: no callback pending, every phone
/// idle and online in the fleet view, every event applied and acked by the coordinator.
async fn quiesce(obs: &Observer) -> anyhow::Result<()> {
    let consumer: async_nats::jetstream::consumer::PullConsumer = obs
        .js
        .get_consumer_from_stream(
            phonefarm_shared::subjects::COORDINATOR_CONSUMER,
            phonefarm_shared::subjects::EVT_STREAM,
        )
        .await?;
    let quiet = async || -> anyhow::Result<bool> {
        let (busy,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM callback_deliveries WHERE state = 'pending') \
                  + (SELECT count(*) FROM phones \
                     WHERE current_queue_item_id IS NOT NULL OR state <> 'online')",
        )
        .fetch_one(&obs.pool)
        .await?;
        let info = consumer.clone().info().await?.clone();
        Ok(busy == 0 && info.num_pending == 0 && info.num_ack_pending == 0)
    };
    wait_until(
        "the previous burst's tail (callbacks, phones, events)",
        Duration::from_secs(120),
        || async { quiet().await.unwrap_or(false) },
    )
    .await;
    Ok(())
}

async fn burst(sys: &System, obs: &Observer, round: usize, n: usize) -> anyhow::Result<Burst> {
    let inputs = json!({"keywords": ["bench"], "videos_per_keyword": 1,
                        "watch_seconds": {"min": 1, "max": 1}});
    let enqueues = (1..=n).map(|i| {
        let body = warmup(
            sys,
            &format!("bench-{round}-{i}"),
            &format!("acc-{i}"),
            inputs.clone(),
        );
        async move {
            let t0 = wall_ms();
            let id = sys.enqueue(body).await;
            (id, t0, wall_ms())
        }
    });
    quiesce(obs).await?;
    let since = OffsetDateTime::now_utc();
    let started = wall_ms();
    let answered = futures::future::join_all(enqueues).await;
    // Every run completes before the next burst: the phones are free again.
    let mut items = Vec::with_capacity(n);
    for (id, _, _) in &answered {
        sys.wait_status(id, "completed", Duration::from_secs(180))
            .await;
        let item_id = sys.item_of(id).await;
        let item = sys.item(&item_id).await;
        items.push((item_id, item));
    }
    let stored = accepted_stored(&obs.js, since).await?;
    let marked: HashMap<uuid::Uuid, f64> = sqlx::query_as::<_, (uuid::Uuid, OffsetDateTime)>(
        "SELECT qi.queue_item_id, o.published_at FROM queue_items qi \
         JOIN outbox o ON o.msg_id = 'work:' || qi.queue_item_id::text || ':' || qi.attempt::text \
         WHERE o.published_at IS NOT NULL AND o.created_at >= $1",
    )
    .bind(since)
    .fetch_all(&obs.pool)
    .await?
    .into_iter()
    .map(|(id, at)| (id, at.unix_timestamp_nanos() as f64 / 1e6))
    .collect();
    let mut b = Burst {
        window: (started, started),
        ..Burst::default()
    };
    for ((_, t0, t202), (item_id, item)) in answered.iter().zip(&items) {
        let qid: uuid::Uuid = item_id.parse()?;
        let dispatched = item["history"]
            .as_array()
            .and_then(|h| h.iter().find(|e| e["kind"] == "dispatched"))
            .and_then(|e| stamp_ms(&e["at"]))
            .ok_or_else(|| anyhow::anyhow!("no dispatched stamp in {item}"))?;
        let (journaled, accepted) = *stored
            .get(&qid)
            .ok_or_else(|| anyhow::anyhow!("no Accepted of {qid} in the event stream"))?;
        b.to_202.push(t202 - t0);
        b.to_dispatched.push(dispatched - t0);
        b.to_accepted.push(accepted - t0);
        b.window.1 = b.window.1.max(accepted);
        b.dispatched_to_accepted.push(accepted - dispatched);
        b.dispatched_to_journaled.push(journaled - dispatched);
        if let Some(m) = marked.get(&qid) {
            b.dispatched_to_marked.push(m - dispatched);
        }
        b.journaled_to_stored.push(accepted - journaled);
    }
    Ok(b)
}

async fn run() -> anyhow::Result<()> {
    let n = env_or("PF_BENCH_PHONES", 100);
    let agents = env_or("PF_BENCH_AGENTS", 4).max(1);
    let rounds = env_or("PF_BENCH_ROUNDS", 5).max(1);
    let in_process = env_or("PF_BENCH_IN_PROCESS", 0) == 1;
    let sys = System::start(Options {
        agents,
        agent_process: !in_process,
        production_timings: true,
        // The coordinator's production lease, to go with the agents' production heartbeat.
        lease: Duration::from_secs(60),
        ..Options::phones(n)
    })
    .await;
    println!(
        "{n} simulated phones over {agents} real agent(s) ({}), {rounds} bursts of {n} processes after one warm-up burst",
        if in_process {
            "tasks of this process"
        } else {
            "one OS process each"
        }
    );
    let client = async_nats::connect(sys.nats.url()).await?;
    let obs = Observer {
        js: async_nats::jetstream::new(client.clone()),
        client,
        pool: sqlx::PgPool::connect(sys.db_url()).await?,
    };
    let cpu = CpuSampler::start(sys.agent_pids());
    let mut all = Burst::default();
    let mut busy = Vec::new();
    for round in 0..=rounds {
        let b = burst(&sys, &obs, round, n).await?;
        let slowest = b.to_accepted.iter().copied().fold(f64::NAN, f64::max);
        let cores = cpu.cores(b.window);
        eprintln!("burst {round}: slowest enqueue -> Accepted stored {slowest:.1} ms");
        if let Some(c) = cores {
            eprintln!(
                "  cores busy until then: host {:.2} = this process {:.2} + agents {:.2} + the rest {:.2}",
                c.host,
                c.this,
                c.agents,
                c.host - c.this - c.agents
            );
        }
        if round == 0 {
            // The agents bind their consumers and warm their connections: not timed.
            continue;
        }
        busy.extend(cores);
        all.to_202.extend(b.to_202);
        all.to_dispatched.extend(b.to_dispatched);
        all.to_accepted.extend(b.to_accepted);
        all.dispatched_to_accepted.extend(b.dispatched_to_accepted);
        all.dispatched_to_journaled
            .extend(b.dispatched_to_journaled);
        all.journaled_to_stored.extend(b.journaled_to_stored);
        all.dispatched_to_marked.extend(b.dispatched_to_marked);
    }

    // A plain NATS request round trip on the same server, in the same run.
    let rtt = nats_request_rtt(&obs.client, 1000)
        .await
        .map_err(|e| anyhow::anyhow!("NATS round trips: {e}"))?;

    println!("dispatch latency, {rounds} bursts x {n} concurrent processes, real agents:");
    let (_, p99) = summary(
        "enqueue -> agent's Accepted stored by JetStream",
        all.to_accepted,
    );
    summary("enqueue -> HTTP 202 (the API under this load)", all.to_202);
    summary(
        "enqueue -> dispatched (coordinator's stamp)",
        all.to_dispatched,
    );
    summary(
        "dispatched -> Accepted stored (agent admission)",
        all.dispatched_to_accepted,
    );
    summary(
        "  dispatched -> agent journals Accepted",
        all.dispatched_to_journaled,
    );
    summary(
        "  dispatched -> relay marks the order published",
        all.dispatched_to_marked,
    );
    summary(
        "  agent journals -> stored (sync, publish)",
        all.journaled_to_stored,
    );
    let (_, rtt_p99) = summary("NATS request round trip (same server)", rtt);
    if !busy.is_empty() {
        let k = busy.len() as f64;
        let mean = |f: fn(&Cpu) -> f64| busy.iter().map(f).sum::<f64>() / k;
        let (host, this, agents) = (mean(|c| c.host), mean(|c| c.this), mean(|c| c.agents));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!(
            "cores busy from burst start to its last Accepted (mean of bursts, {cores} cores): host {host:.2} = this process (coordinator, phone simulators, client) {this:.2} + agents {agents:.2} + Postgres, nats-server and the rest {:.2}",
            host - this - agents
        );
        // Whatever runs while a burst is admitted has to fit the target's window.
        println!(
            "{} (mean of bursts)",
            cpu_budget_line(mean(|c| c.host * c.window_s), n, cores, 50.0)
        );
    }
    println!(
        "p99 enqueue -> Accepted: {p99:.2} ms (target < 50 ms); {:.0}x the NATS round trip's p99",
        p99 / rtt_p99
    );
    Ok(())
}

fn main() {
    // RUST_LOG=warn (or finer) shows what the coordinator and in-process agents log.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

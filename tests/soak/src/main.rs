//! The nemesis soak (`deploy/local/soak --minutes 3 --seed 1`): the cluster topology of
//! `deploy/local/cluster` (see [`topology`]) under a steady mixed workload ([`workload`])
//! while a seeded nemesis injects one fault at a time at random intervals; then, once the
//! system is quiet, the [`checker`] verifies every promise over the whole history. Exits 1
//! on a violated promise, printing the seed and the history around it.

mod checker;
mod figures;
mod topology;
mod workload;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use phonefarm_testkit::proxy::Mode;

use crate::checker::{Callback, History, Item, TERMINAL};
use crate::topology::{AGENTS, COORDINATORS, PHONES, System, now_ms};
use crate::workload::{Api, Record};

/// A small seeded generator (SplitMix64): the same seed, the same faults in the same order.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

#[derive(Debug, Parser)]
#[command(name = "phonefarm-soak", about = "Nemesis soak of the local cluster")]
struct Args {
    /// Minutes of workload under the nemesis.
    #[arg(long, default_value_t = 3)]
    minutes: u64,
    /// Seed of the nemesis and the workload (printed; give it again to replay the choices).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the system may go without progress (a process or queue item finishing)
    /// after the workload before it counts as stuck (seconds). Phones work through their
    /// backlog one run at a time, so quiet may take longer while items keep finishing.
    #[arg(long, default_value_t = 300)]
    quiet_secs: u64,
    /// How long the system may take to become quiet at most, progressing or not (seconds).
    #[arg(long, default_value_t = 900)]
    quiet_max_secs: u64,
    /// The benchmark: minutes of the same workload without the nemesis before the nemesis
    /// starts; then both phases' completed processes per minute and enqueue -> completed
    /// p50/p99 are printed side by side.
    #[arg(long, default_value_t = 0)]
    calm_minutes: u64,
}

const KINDS: [&str; 7] = [
    "kill_agent",
    "kill_coordinator",
    "kill_nats_node",
    "cut_agent_off",
    "restart_postgres",
    "receiver_down",
    "unplug_phone",
];

/// One injected fault: kind, what it hit, when (ms) it started, and when the system was whole
/// again after it was undone (both coordinators answer, every phone online).
struct Fault {
    kind: &'static str,
    target: String,
    at: i64,
    recovered: Option<i64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match soak(&args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#} (seed {})", args.seed);
            std::process::exit(2);
        }
    }
}

/// Injects a fault of `kind`, waits its duration, undoes it.
async fn inject(sys: &mut System, rng: &mut Rng, kind: &'static str) -> anyhow::Result<Fault> {
    let at = now_ms();
    let target;
    match kind {
        "kill_agent" => {
            let i = rng.below(AGENTS as u64) as usize;
            target = sys.agents[i].name.clone();
            sys.agents[i].kill();
            tokio::time::sleep(rng.between_ms(1000, 5000)).await;
            sys.agents[i].start()?;
        }
        "kill_coordinator" => {
            let i = rng.below(COORDINATORS as u64) as usize;
            target = sys.coordinators[i].name.clone();
            sys.coordinators[i].kill();
            tokio::time::sleep(rng.between_ms(2000, 8000)).await;
            sys.coordinators[i].start()?;
        }
        "kill_nats_node" => {
            // Half the time the leader of the work stream, else any node.
            let leader = if rng.below(2) == 0 {
                stream_leader(sys).await
            } else {
                None
            };
            let i = leader.unwrap_or_else(|| rng.below(3) as usize);
            target = format!(
                "nats-{}{}",
                i + 1,
                if leader.is_some() {
                    " (PF_WORK leader)"
                } else {
                    ""
                }
            );
            sys.nats.nodes[i].kill();
            tokio::time::sleep(rng.between_ms(3000, 10000)).await;
            sys.nats.nodes[i].restart();
        }
        "cut_agent_off" => {
            let i = rng.below(AGENTS as u64) as usize;
            let mode = if rng.below(2) == 0 {
                Mode::Drop
            } else {
                Mode::Stall
            };
            target = format!("agent-{} ({mode:?})", i + 1);
            for p in &sys.proxies[i] {
                p.set(mode);
            }
            tokio::time::sleep(rng.between_ms(5000, 30000)).await;
            for p in &sys.proxies[i] {
                p.set(Mode::Pass);
            }
        }
        "restart_postgres" => {
            target = "postgres".into();
            let pg = &sys.pg;
            tokio::task::block_in_place(|| pg.restart())?;
        }
        "receiver_down" => {
            target = "callback receiver".into();
            sys.receiver.down().await;
            tokio::time::sleep(rng.between_ms(5000, 20000)).await;
            sys.receiver.up().await?;
        }
        _ => {
            let i = rng.below(PHONES as u64) as usize;
            target = sys.phones[i].serial.clone();
            sys.phones[i].unplug().await;
            tokio::time::sleep(rng.between_ms(3000, 15000)).await;
            sys.phones[i].plug().await?;
        }
    }
    Ok(Fault {
        kind,
        target,
        at,
        recovered: None,
    })
}

/// Which node leads `PF_WORK` (by its server name nats-N), if the cluster says.
async fn stream_leader(sys: &System) -> Option<usize> {
    let client = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::connect(sys.nats.urls().split(',').collect::<Vec<_>>()),
    )
    .await
    .ok()?
    .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream("PF_WORK").await.ok()?;
    let info = s.info().await.ok()?;
    let leader = info.cluster.as_ref()?.leader.clone()?;
    leader
        .strip_prefix("nats-")?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

async fn soak(args: &Args) -> anyhow::Result<bool> {
    println!(
        "soak: seed {}, {} minutes of workload under the nemesis",
        args.seed, args.minutes
    );
    let started = now_ms();
    let mut sys = System::start(args.seed)
        .await
        .context("starting the system")?;
    println!(
        "soak: system up in {:.1} s (3 nats-servers, {COORDINATORS} coordinators, {AGENTS} agents, {PHONES} phones); logs in {}",
        (now_ms() - started) as f64 / 1000.0,
        sys.dir().display()
    );
    let api = Api {
        http: sys.http.clone(),
        bases: sys.bases.clone(),
        key: sys.key.clone(),
        callback_url: sys.receiver.url(),
        video_url: sys.video_url.clone(),
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(workload::run(
        api.clone(),
        args.seed,
        Arc::clone(&record),
        stop.clone(),
    ));

    let calm_from = now_ms();
    if args.calm_minutes > 0 {
        println!(
            "soak: {} minutes of the workload without the nemesis (the benchmark's baseline)",
            args.calm_minutes
        );
        tokio::time::sleep(Duration::from_secs(args.calm_minutes * 60)).await;
    }
    let nemesis_from = now_ms();
    let mut rng = Rng::new(args.seed);
    let mut faults: Vec<Fault> = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(args.minutes * 60);
    // Every kind once in a seeded order, then seeded draws.
    let mut order: Vec<&'static str> = KINDS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut crash = None;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(rng.between_ms(3000, 10000)).await;
        if tokio::time::Instant::now() >= end {
            break;
        }
        let kind = if faults.len() < order.len() {
            order[faults.len()]
        } else {
            KINDS[rng.below(KINDS.len() as u64) as usize]
        };
        let mut f = inject(&mut sys, &mut rng, kind).await?;
        println!(
            "  {:>6.1} s  {:<17} {}",
            (f.at - started) as f64 / 1000.0,
            f.kind,
            f.target
        );
        // Whole again: both coordinators answer and every phone is online.
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let why = sys.unhealthy().await;
            if why.is_none() {
                f.recovered = Some(now_ms());
                break;
            }
            if tokio::time::Instant::now() > until {
                println!(
                    "           not whole 120 s after it: {}",
                    why.unwrap_or_default()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        faults.push(f);
        if let Some(c) = sys.crashed() {
            crash = Some(c);
            break;
        }
    }
    let nemesis_to = now_ms();
    stop.cancel();
    let _ = load.await;
    if let Some(c) = crash {
        anyhow::bail!("a component died on its own: {c}");
    }
    println!("soak: workload over; waiting for the system to be quiet");

    let quiet_from = now_ms();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&sys.pg.url())
        .await?;
    let ids: Vec<String> = {
        let r = record.lock().unwrap_or_else(|e| e.into_inner());
        r.requests
            .iter()
            .filter_map(|q| q.process_id.clone())
            .collect()
    };
    let waited_from = tokio::time::Instant::now();
    let cap = waited_from + Duration::from_secs(args.quiet_max_secs);
    let mut stalled_until = waited_from + Duration::from_secs(args.quiet_secs);
    let mut least_open = (i64::MAX, usize::MAX);
    let mut processes: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for id in &ids {
            if processes
                .get(id)
                .is_some_and(|s| TERMINAL.contains(&s.as_str()))
            {
                continue;
            }
            if let Some(p) = api.get(&format!("/processes/{id}")).await {
                processes.insert(id.clone(), p["status"].as_str().unwrap_or("").to_string());
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_items WHERE state NOT IN ('DONE','PARTIAL','DEAD_LETTER','CANCELLED')",
        )
        .fetch_one(&pool)
        .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) + \
             (SELECT count(*) FROM callback_deliveries WHERE state = 'pending')",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        let all_terminal = ids.iter().all(|id| {
            processes
                .get(id)
                .is_some_and(|s| TERMINAL.contains(&s.as_str()))
        });
        if all_terminal && open == 0 && pending == 0 {
            break;
        }
        let waiting = ids
            .iter()
            .filter(|id| {
                !processes
                    .get(*id)
                    .is_some_and(|s| TERMINAL.contains(&s.as_str()))
            })
            .count();
        let now = tokio::time::Instant::now();
        if open < least_open.0 || waiting < least_open.1 {
            // Progress: the stall window starts again.
            least_open = (open.min(least_open.0), waiting.min(least_open.1));
            stalled_until = now + Duration::from_secs(args.quiet_secs);
        }
        if now > stalled_until || now > cap {
            println!(
                "soak: not quiet after {:.0} s ({}): {waiting} processes not terminal, {open} queue items open, {pending} outbox rows or callbacks pending",
                (now - waited_from).as_secs_f64(),
                if now > cap {
                    format!("the cap, {} s", args.quiet_max_secs)
                } else {
                    format!("no progress for {} s", args.quiet_secs)
                }
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "soak: quiet after {:.1} s",
        (now_ms() - quiet_from) as f64 / 1000.0
    );

    let mut h = History::default();
    {
        let r = record.lock().unwrap_or_else(|e| e.into_inner());
        h.requests = r.requests.clone();
        h.posts = r.posts.clone();
    }
    h.processes = processes;
    for (at, v) in sys
        .receiver
        .got
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        if let Some(p) = v["process"]["process_id"].as_str() {
            h.callbacks.push(Callback {
                process_id: p.to_string(),
                event_id: v["event_id"].as_str().unwrap_or("").to_string(),
                emitted_at: v["emitted_at"].as_str().unwrap_or("").to_string(),
                sequence: v["sequence"].as_i64().unwrap_or(-1),
                status: v["process"]["status"].as_str().unwrap_or("").to_string(),
                received_ms: *at,
            });
        }
    }
    for p in &mut h.posts {
        if let Some(q) = &p.queue_item_id
            && let Ok(id) = q.parse::<uuid::Uuid>()
        {
            p.final_state =
                sqlx::query_scalar("SELECT state FROM queue_items WHERE queue_item_id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await?
                    .unwrap_or_default();
        }
    }
    h.posted_captions = sys
        .phones
        .iter()
        .flat_map(|p| p.posted_captions())
        .collect();
    let rows: Vec<(uuid::Uuid, String, i64, bool, i32)> = sqlx::query_as(
        "SELECT q.queue_item_id, q.state, \
           (SELECT count(*) FROM queue_item_events e WHERE e.queue_item_id = q.queue_item_id \
              AND e.kind = 'finished' AND e.payload->>'outcome' = 'completed'), \
           q.state IN ('CLAIMED','EXECUTING') AND (q.lease_expires_at IS NULL OR q.lease_expires_at < now()), \
           q.attempt \
         FROM queue_items q",
    )
    .fetch_all(&pool)
    .await?;
    let retries: i64 = rows.iter().map(|r| i64::from((r.4 - 1).max(0))).sum();
    h.items = rows
        .iter()
        .map(|(id, state, completions, stale, _)| Item {
            queue_item_id: id.to_string(),
            state: state.clone(),
            completions: *completions,
            executing_without_lease: *stale,
        })
        .collect();
    h.outbox_unpublished =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await?;

    report(&h, &faults, retries);
    if args.calm_minutes > 0 {
        bench_table(&[
            (
                "without nemesis",
                figures::phase(&h.requests, &h.callbacks, calm_from, nemesis_from),
            ),
            (
                "with nemesis",
                figures::phase(&h.requests, &h.callbacks, nemesis_from, nemesis_to),
            ),
        ]);
    }
    let violations = checker::check(&h);
    if violations.is_empty() {
        println!("soak: every promise held (seed {})", args.seed);
        return Ok(true);
    }
    println!(
        "\nsoak: {} violated promise(s), seed {}:",
        violations.len(),
        args.seed
    );
    for v in &violations {
        println!("  {v}");
        let sent = h
            .requests
            .iter()
            .filter(|r| {
                r.process_id.as_deref() == Some(v.subject.as_str()) || r.request_id == v.subject
            })
            .map(|r| r.sent_ms)
            .min();
        if let Some(t) = sent {
            println!(
                "    sent at {:.1} s; faults within 60 s of it:",
                (t - started) as f64 / 1000.0
            );
            for f in faults.iter().filter(|f| (f.at - t).abs() < 60_000) {
                println!(
                    "      {:>6.1} s {} {}",
                    (f.at - started) as f64 / 1000.0,
                    f.kind,
                    f.target
                );
            }
        }
        for c in h.callbacks.iter().filter(|c| c.process_id == v.subject) {
            println!(
                "    callback #{} {} at {:.1} s",
                c.sequence,
                c.status,
                (c.received_ms - started) as f64 / 1000.0
            );
        }
    }
    println!(
        "reproduce: deploy/local/soak --minutes {} --seed {} (logs: {})",
        args.minutes,
        args.seed,
        sys.dir().display()
    );
    // Keep the logs of a failing run.
    let kept = sys.dir.keep();
    println!("logs kept in {}", kept.display());
    Ok(false)
}

/// The benchmark's figures, a phase per line.
fn bench_table(phases: &[(&str, figures::Phase)]) {
    let ms = |v: Option<i64>| v.map_or("-".to_string(), |v| format!("{:.1} s", v as f64 / 1000.0));
    println!("\nbenchmark (by the requests sent in each phase)");
    println!("  phase              created  completed  completed/min  p50 enqueue->completed  p99");
    for (name, p) in phases {
        println!(
            "  {name:<18} {:>7}  {:>9}  {:>13.1}  {:>22}  {}",
            p.created,
            p.completed,
            p.per_minute,
            ms(p.p50_ms),
            ms(p.p99_ms)
        );
    }
}

fn report(h: &History, faults: &[Fault], retries: i64) {
    println!("\nfaults injected            count  longest fault -> recovery");
    for k in KINDS {
        let of: Vec<&Fault> = faults.iter().filter(|f| f.kind == k).collect();
        let longest = of
            .iter()
            .map(|f| f.recovered.map(|r| (r - f.at) as f64 / 1000.0))
            .try_fold(0.0f64, |a, b| b.map(|b| a.max(b)));
        let longest = match (of.is_empty(), longest) {
            (true, _) => "-".to_string(),
            (false, Some(s)) => format!("{s:.1} s"),
            (false, None) => "not recovered in 120 s".to_string(),
        };
        println!("  {k:<24} {:>5}  {longest}", of.len());
    }
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in h.processes.values() {
        *outcomes.entry(s.as_str()).or_default() += 1;
    }
    println!("processes by outcome");
    for (s, n) in &outcomes {
        println!("  {s:<24} {n:>5}");
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &h.requests {
        *kinds.entry(r.kind.as_str()).or_default() += 1;
    }
    println!("requests by kind");
    for (k, n) in &kinds {
        println!("  {k:<24} {n:>5}");
    }
    let done = h.posts.iter().filter(|p| p.final_state == "DONE").count();
    println!(
        "  post_video (ingest)      {:>5}  ({done} DONE)",
        h.posts.len()
    );
    println!("retries (attempts after the first): {retries}");
    println!("callbacks received: {}", h.callbacks.len());
}

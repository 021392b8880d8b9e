//! Fleet mirror load: a simulated fleet of agents (default 200 × 32 phones) putting presence
//! every 10 s and inventory on change, against the real coordinator binary (a child process,
//! `serve`), a private nats-server and a scratch Postgres database. Prints the coordinator's CPU
//! (utime + stime of the child from `/proc/<pid>/stat`, over wall time) and the Postgres writes
//! (`pg_stat_user_tables` of `agents` and `phones`, `pg_stat_database` of the scratch database)
//! in three phases:
//!
//! 1. steady: presence only, nothing changes (expected: no row written);
//! 2. one change: one phone's battery level changes once (expected: that phone's row, plus the
//!    agent's inventory ordering guard `agents.inventory_seq`);
//! 3. churn: every agent reports one battery change every `PF_FLEET_CHURN_S` seconds.
//!
//! `cargo bench -p phonefarm-coordinator --bench fleet` (env: `PF_FLEET_AGENTS` 200,
//! `PF_FLEET_PHONES` 32, `PF_FLEET_PRESENCE_MS` 10000 (the agents' real interval; lower it to
//! compress time), `PF_FLEET_WINDOW_S` 60, `PF_FLEET_CHURN_S` 60 (0 skips phase 3),
//! `DATABASE_URL`, an admin URL, default the local postgres).
//!
//! Postgres publishes a backend's table statistics up to ~10 s after the fact, so each phase's
//! window ends with an 11 s tail in which the same load goes on, and the figures cover the
//! whole window including the tail.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use phonefarm_shared::{Inventory, PhoneState, PhoneStatus, Presence, subjects};
use phonefarm_testkit::bench::process_cpu_s;
use phonefarm_testkit::{NatsServer, free_port};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const STATS_TAIL: Duration = Duration::from_secs(11);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    process_cpu_s(pid).ok_or_else(|| anyhow::anyhow!("no CPU time of process {pid}"))
}

fn phone(agent: usize, i: usize, battery: u8) -> PhoneStatus {
    let id = format!("F{agent:03}P{i:02}");
    PhoneStatus {
        serial: id.clone(),
        phone_id: id,
        transport: "usb".into(),
        location: format!("1-{}", i + 1),
        state: PhoneState::Online,
        model: Some("Pixel 6".into()),
        android_version: Some("14".into()),
        battery_level: Some(battery),
        temperature_decicelsius: Some(312),
        storage_free_bytes: Some(10_000_000_000),
        screen_on: Some(true),
        app_version: Some("34.1.2".into()),
        current_queue_item_id: None,
    }
}

/// One simulated agent: its connection, its phones' batteries and its inventory sequence.
struct Agent {
    id: String,
    index: usize,
    js: jetstream::Context,
    batteries: Vec<u8>,
    seq: u64,
    started_at: i64,
}

impl Agent {
    async fn inventory(&mut self) -> anyhow::Result<()> {
        self.seq += 1;
        let inv = Inventory {
            agent_id: self.id.clone(),
            seq: self.seq,
            at_unix_ms: now_ms(),
            phones: self
                .batteries
                .iter()
                .enumerate()
                .map(|(i, b)| phone(self.index, i, *b))
                .collect(),
        };
        let publish = jetstream::message::PublishMessage::build()
            .payload(phonefarm_shared::encode(&inv).into())
            .message_id(format!(
                "inventory:{}:{}:{}",
                self.id, self.started_at, self.seq
            ));
        self.js
            .send_publish(subjects::inventory(&self.id), publish)
            .await?
            .await?;
        Ok(())
    }
}

/// Puts presence every `every` (first put after `offset`) until `stop`; counts the puts.
fn keep_presence(
    agent: &Agent,
    phones: usize,
    every: Duration,
    offset: Duration,
    puts: Arc<AtomicU64>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let js = agent.js.clone();
    let subject = format!("$KV.{}.{}", subjects::AGENTS_BUCKET, agent.id);
    let body: bytes::Bytes = phonefarm_shared::encode(&Presence {
        agent_id: agent.id.clone(),
        version: "bench".into(),
        host: format!("host-{}", agent.id),
        started_at_unix_ms: agent.started_at,
        phones: phones as u32,
    })
    .into();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(offset) => {}
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Ok(ack) = js.publish(subject.clone(), body.clone()).await
                && ack.await.is_ok()
            {
                puts.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// Counters read at the start and end of a phase.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    coordinator_cpu: f64,
    nats_cpu: f64,
    agents: [i64; 3], // n_tup_ins, n_tup_upd, n_tup_del
    phones: [i64; 3], // n_tup_ins, n_tup_upd, n_tup_del
    db: [i64; 4],     // xact_commit, tup_inserted, tup_updated, tup_deleted
    presence_puts: u64,
    inventories: u64,
}

async fn snapshot(
    pool: &PgPool,
    bench_db: &PgPool,
    dbname: &str,
    coordinator: u32,
    nats: u32,
    presence_puts: &AtomicU64,
    inventories: u64,
) -> anyhow::Result<Snapshot> {
    let tables: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
         WHERE relname IN ('agents', 'phones')",
    )
    .fetch_all(bench_db)
    .await?;
    let mut s = Snapshot {
        at: Some(Instant::now()),
        coordinator_cpu: cpu_seconds(coordinator)?,
        nats_cpu: cpu_seconds(nats)?,
        presence_puts: presence_puts.load(Ordering::Relaxed),
        inventories,
        ..Snapshot::default()
    };
    for (name, i, u, d) in tables {
        let slot = if name == "agents" {
            &mut s.agents
        } else {
            &mut s.phones
        };
        *slot = [i, u, d];
    }
    let (xact, ins, upd, del): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database \
         WHERE datname = $1",
    )
    .bind(dbname)
    .fetch_one(pool)
    .await?;
    s.db = [xact, ins, upd, del];
    Ok(s)
}

fn report(phase: &str, a: &Snapshot, b: &Snapshot) {
    let wall = match (a.at, b.at) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64(),
        _ => f64::NAN,
    };
    let d3 = |x: [i64; 3], y: [i64; 3]| [y[0] - x[0], y[1] - x[1], y[2] - x[2]];
    let ag = d3(a.agents, b.agents);
    let ph = d3(a.phones, b.phones);
    let db: Vec<i64> = (0..4).map(|i| b.db[i] - a.db[i]).collect();
    println!("{phase} ({wall:.1} s wall):");
    println!(
        "  load: {} presence puts ({:.1}/s), {} inventories",
        b.presence_puts - a.presence_puts,
        (b.presence_puts - a.presence_puts) as f64 / wall,
        b.inventories - a.inventories
    );
    println!(
        "  coordinator CPU: {:.2} s = {:.3} cores   (nats-server: {:.3} cores)",
        b.coordinator_cpu - a.coordinator_cpu,
        (b.coordinator_cpu - a.coordinator_cpu) / wall,
        (b.nats_cpu - a.nats_cpu) / wall
    );
    println!(
        "  row writes: agents ins/upd/del {}/{}/{}   phones ins/upd/del {}/{}/{}",
        ag[0], ag[1], ag[2], ph[0], ph[1], ph[2]
    );
    println!(
        "  database: {} commits ({:.1}/s, reads included), tuples ins/upd/del {}/{}/{}",
        db[0],
        db[0] as f64 / wall,
        db[1],
        db[2],
        db[3]
    );
}

async fn run() -> anyhow::Result<()> {
    let n_agents: usize = env_or("PF_FLEET_AGENTS", 200);
    let n_phones: usize = env_or("PF_FLEET_PHONES", 32);
    let every = Duration::from_millis(env_or("PF_FLEET_PRESENCE_MS", 10_000));
    let window = Duration::from_secs(env_or("PF_FLEET_WINDOW_S", 60));
    let churn_s: u64 = env_or("PF_FLEET_CHURN_S", 60);
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());

    let nats = NatsServer::start();
    let nats_url = nats.url();
    let dbname = format!("pf_bench_fleet_{}", Uuid::new_v4().simple());
    let pool = PgPool::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {dbname}")))
        .execute(&pool)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let db_url = format!("{base}/{dbname}");
    let result = fleet(
        &pool, &dbname, &db_url, &nats, &nats_url, n_agents, n_phones, every, window, churn_s,
    )
    .await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn fleet(
    admin: &PgPool,
    dbname: &str,
    db_url: &str,
    nats: &NatsServer,
    nats_url: &str,
    n_agents: usize,
    n_phones: usize,
    every: Duration,
    window: Duration,
    churn_s: u64,
) -> anyhow::Result<()> {
    // The coordinator, as deployed: its own process (it migrates, bootstraps JetStream, serves).
    let log = tempfile::NamedTempFile::new()?;
    let port = free_port();
    let coordinator = Proc(
        Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("NATS_URL", nats_url)
            .env("PHONEFARM_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?,
    );
    let pid = coordinator.0.id();
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < until,
            "the coordinator did not start (log: {})",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = PgPool::connect(db_url).await?;

    // The fleet: one connection per agent, as deployed.
    let stop = CancellationToken::new();
    let puts = Arc::new(AtomicU64::new(0));
    let mut agents = Vec::with_capacity(n_agents);
    let mut tasks = Vec::with_capacity(n_agents);
    for a in 0..n_agents {
        let client = async_nats::ConnectOptions::new().connect(nats_url).await?;
        let agent = Agent {
            id: format!("fleet-{a:03}"),
            index: a,
            js: jetstream::new(client),
            batteries: vec![80; n_phones],
            seq: 0,
            started_at: now_ms(),
        };
        // Spread the puts over the interval, as independent agents do.
        let offset = every.mul_f64(a as f64 / n_agents as f64);
        tasks.push(keep_presence(
            &agent,
            n_phones,
            every,
            offset,
            Arc::clone(&puts),
            stop.clone(),
        ));
        agents.push(agent);
    }
    let mut inventories = 0u64;
    for agent in &mut agents {
        agent.inventory().await?;
        inventories += 1;
    }
    let t_enroll = Instant::now();
    let until = Instant::now() + Duration::from_secs(120) + every;
    loop {
        let (online,): (i64,) = sqlx::query_as("SELECT count(*) FROM agents WHERE online")
            .fetch_one(&db)
            .await?;
        let (phones,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM phones WHERE state = 'online'")
                .fetch_one(&db)
                .await?;
        if online as usize == n_agents && phones as usize == n_agents * n_phones {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "fleet never mirrored: {online} agents, {phones} phones online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "fleet: {n_agents} agents x {n_phones} phones, presence every {} ms, mirrored in {:.1} s \
         (coordinator pid {pid}, {} on 2 cores shared)",
        every.as_millis(),
        t_enroll.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!(
                "load average {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ))
            .unwrap_or_default()
    );
    // Let every presence after enrollment come through and the set-up's statistics land.
    tokio::time::sleep(every + STATS_TAIL).await;
    let nats_pid = nats
        .pid()
        .ok_or_else(|| anyhow::anyhow!("nats-server is not running"))?;

    // 1. Steady presence.
    let s0 = snapshot(admin, &db, dbname, pid, nats_pid, &puts, inventories).await?;
    tokio::time::sleep(window + STATS_TAIL).await;
    let s1 = snapshot(admin, &db, dbname, pid, nats_pid, &puts, inventories).await?;
    report("1. steady presence, nothing changes", &s0, &s1);

    // 2. One phone's battery changes once.
    agents[0].batteries[0] = 79;
    agents[0].inventory().await?;
    inventories += 1;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (b,): (Option<i32>,) =
            sqlx::query_as("SELECT battery_level FROM phones WHERE phone_id = $1")
                .bind(phone(0, 0, 0).phone_id)
                .fetch_one(&db)
                .await?;
        if b == Some(79) {
            break;
        }
        anyhow::ensure!(Instant::now() < until, "the battery change never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(STATS_TAIL).await;
    let s2 = snapshot(admin, &db, dbname, pid, nats_pid, &puts, inventories).await?;
    report("2. one phone's battery level changes once", &s1, &s2);

    // 3. Churn: every agent reports one battery change every `churn_s` seconds.
    if churn_s > 0 {
        let per_agent = Duration::from_secs(churn_s);
        let started = Instant::now();
        let mut next: Vec<Instant> = (0..n_agents)
            .map(|a| started + per_agent.mul_f64(a as f64 / n_agents as f64))
            .collect();
        let mut changes = 0u64;
        while started.elapsed() < window {
            let now = Instant::now();
            for (a, agent) in agents.iter_mut().enumerate() {
                if next[a] <= now {
                    let p = (changes as usize) % n_phones;
                    agent.batteries[p] = agent.batteries[p].wrapping_sub(1).max(1);
                    agent.inventory().await?;
                    inventories += 1;
                    changes += 1;
                    next[a] += per_agent;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(STATS_TAIL).await;
        let s3 = snapshot(admin, &db, dbname, pid, nats_pid, &puts, inventories).await?;
        report(
            &format!(
                "3. churn: each agent reports a battery change every {churn_s} s ({changes} changes)"
            ),
            &s2,
            &s3,
        );
    }

    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    db.close().await;
    drop(coordinator);
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

//! API throughput against pgbench running the same SQL, side by side in one run.
//!
//! `cargo bench -p phonefarm-coordinator --bench api` (env: `PF_BENCH_SECONDS`, default 10;
//! `PF_BENCH_CONNECTIONS`, default 16; `DATABASE_URL`, an admin URL, default the local
//! postgres). It creates a scratch database, starts the coordinator in-process on loopback
//! (no callback deliverer, so only the handler's work is measured), drives
//! `POST /capability-requests/enqueue` and `GET /processes/{id}` from N connections for a fixed
//! time, then runs `pgbench -M prepared` with N clients on the identical statements, and prints
//! req/s, p50/p99 and the ratio ours ÷ pgbench. The coordinator batches concurrent requests
//! (one transaction / one statement per table for all requests waiting, `http::batched`);
//! pgbench runs those statements for one request per transaction, as a handler without
//! batching would. The bench prints the mean batch size seen.
//!
//! The HTTP load comes from `wrk` (Debian package `wrk`), a separate C process like pgbench,
//! so the load generator's own CPU is not charged to the coordinator's process. Without `wrk`
//! the bench falls back to an in-process reqwest driver and says so; that driver shares the
//! coordinator's runtime and cores, so its ratio understates the server.
//!
//! The pgbench scripts are built from the handlers' own statements (the `*_SQL` constants) with
//! the parameters filled in as literals. JSON literals keep a space after every colon: pgbench
//! would read `:name` as one of its variables.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phonefarm_coordinator::{app, auth, db};
use phonefarm_testkit::bench::percentile;

/// The coordinator binary's allocator, since the app runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn figures(mut lat_ms: Vec<f64>, elapsed: Duration, errors: u64) -> Figures {
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Figures {
        rate: lat_ms.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&lat_ms, 0.5),
        p99_ms: percentile(&lat_ms, 0.99),
        errors,
    }
}

async fn drive<F, Fut>(conns: usize, dur: Duration, make: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let make = Arc::clone(&make);
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if make(c, n).await {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    figures(all, start.elapsed(), errors.load(Ordering::Relaxed))
}

/// Both sides reach Postgres the same way: this mode goes into the coordinator's URL and into
/// pgbench's `PGSSLMODE`. Default `prefer`, what both sqlx and libpq do unless told otherwise
/// (TLS when the server offers it, as Debian's does); `PGSSLMODE=disable` measures both in
/// plain text.
fn sslmode() -> String {
    std::env::var("PGSSLMODE").unwrap_or_else(|_| "prefer".into())
}

/// Runs a load tool to the end; its stdout, or a panic with all it printed if it failed.
fn stdout_of(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs pgbench with `scripts` (each transaction runs one of them, chosen at random).
fn pgbench(db_name: &str, scripts: &[String], conns: usize, secs: u64, dir: &Path) -> Figures {
    let mut files = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let file = dir.join(format!("script-{i}.sql"));
        std::fs::write(&file, script).expect("write the pgbench script");
        files.push(file);
    }
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut cmd = Command::new("pgbench");
    cmd.env("PGSSLMODE", sslmode())
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-c", &conns.to_string(), "-j", "2", "-T", &secs.to_string()])
        .args(
            files
                .iter()
                .flat_map(|f| [std::ffi::OsStr::new("-f"), f.as_os_str()]),
        )
        .arg("-l")
        .arg(format!(
            "--log-prefix={}",
            dir.join("pgbench_log").display()
        ))
        .arg(db_name);
    let stdout = stdout_of(cmd, "pgbench (apt-get install postgresql-contrib)");
    let failed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut lat = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            lat.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                    .map(|us| us / 1000.0),
            );
        }
    }
    figures(lat, Duration::from_secs(secs), failed)
}

/// wrk's per-thread request generators. `setup` numbers the threads so every request id is
/// unique within the run; the run prefix comes from the command line.
const WRK_ENQUEUE: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1]
  key = args[2]
  n = 0
end
function request()
  n = n + 1
  local body = '{"request_id":"w-' .. prefix .. '-' .. tid .. '-' .. n .. '","capability":"keyword_warmup","mode":"unattended","target":{"routing":"queue","account_id":"bench-acc"},"inputs":{"keywords":["fitness","cooking"],"videos_per_keyword":2},"callback":{"url":"http://127.0.0.1:9/cb"},"requested_by":{"system":"bench"}}'
  return wrk.format("POST", "/capability-requests/enqueue",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end
"#;

/// Reads of `ids` in turn, each wrk thread starting at its own offset.
fn wrk_get(ids: &[uuid::Uuid]) -> String {
    let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!(
        r#"
local ids = {{{}}}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  key = args[1]
  n = tid * 37
end
function request()
  n = n + 1
  return wrk.format("GET", "/processes/" .. ids[(n % #ids) + 1], {{["Authorization"] = "Bearer " .. key}})
end
"#,
        list.join(",")
    )
}

fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wrk") || o.status.success())
        .unwrap_or(false)
}

/// `"1.23ms"` → 1.23; wrk prints us, ms, s and m.
fn wrk_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

/// Runs wrk against `base` with `script` and parses its summary.
fn wrk(base: &str, script: &str, args: &[&str], conns: usize, secs: u64, dir: &Path) -> Figures {
    let file = dir.join("driver.lua");
    std::fs::write(&file, script).expect("write the wrk script");
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        "2",
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
    ])
    .arg("--latency")
    .arg("-s")
    .arg(&file)
    .arg(base)
    .arg("--")
    .args(args);
    let stdout = stdout_of(cmd, "wrk");
    let field = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rate = field("Requests/sec:")
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0u64)
        + field("Socket errors:")
            .map(|s| {
                s.split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
    Figures {
        rate,
        p50_ms: field("50%").and_then(wrk_ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").and_then(wrk_ms).unwrap_or(f64::NAN),
        errors,
    }
}

fn print(name: &str, ours: &Figures, base: &Figures) {
    println!(
        "{name:<8} ours {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:<4} | pgbench {:>8.0} tps  p50 {:>6.2} ms  p99 {:>6.2} ms  failed {:<4} | ratio {:.2}",
        ours.rate,
        ours.p50_ms,
        ours.p99_ms,
        ours.errors,
        base.rate,
        base.p50_ms,
        base.p99_ms,
        base.errors,
        ours.rate / base.rate
    );
}

/// `sql` with `$1`, `$2`, … replaced by SQL literals (highest number first, so `$1` does not
/// eat the start of `$12`).
fn fill(sql: &str, literals: &[&str]) -> String {
    let mut out = sql.to_owned();
    for (i, lit) in literals.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), lit);
    }
    out
}

/// The handler's transaction for one request: `db::accounts::DIRECTORY_SQL`, then
/// `db::processes::INSERT_MANY_SQL`, `db::queue_items::INSERT_MANY_SQL` and
/// `callbacks::INSERT_MANY_SQL` with one-element arrays. The coordinator runs the same statements
/// once per batch of concurrent requests (group commit).
fn enqueue_sql() -> String {
    const INPUTS: &str = r#"'{"keywords": ["fitness","cooking"],"like_probability": 0.0,"videos_per_keyword": 2,"watch_seconds": {"max": 25,"min": 8}}'::jsonb"#;
    let process = fill(
        db::processes::INSERT_MANY_SQL,
        &[
            "ARRAY[gen_random_uuid()]",
            "ARRAY['keyword_warmup']",
            "ARRAY[gen_random_uuid()::text]",
            "ARRAY['bench']",
            "ARRAY['unattended']",
            r#"ARRAY['{"routing": "queue","account_id": "bench-acc"}'::jsonb]"#,
            &format!("ARRAY[{INPUTS}]"),
            r#"ARRAY['{"metadata": {},"system": "bench","user": null}'::jsonb]"#,
            r#"ARRAY['{"metadata": {},"url": "http://127.0.0.1:9/cb"}'::jsonb]"#,
            r"ARRAY['\x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'::bytea]",
            "ARRAY['{}'::jsonb]",
            "ARRAY[now()]",
        ],
    );
    let items = fill(
        db::queue_items::INSERT_MANY_SQL,
        &[
            "ARRAY[gen_random_uuid()]",
            "ARRAY[:process_id::uuid]",
            "ARRAY['keyword_warmup']",
            "ARRAY['unattended']",
            "ARRAY['queue']",
            "ARRAY[NULL::text]",
            "ARRAY['bench-acc']",
            &format!("ARRAY[{INPUTS}]"),
            "ARRAY[now()]",
        ],
    );
    let callback = fill(
        phonefarm_coordinator::callbacks::INSERT_MANY_SQL,
        &[
            "ARRAY[gen_random_uuid()]",
            "ARRAY['process.updated']",
            "ARRAY[:process_id::uuid]",
            "ARRAY[NULL::uuid]",
            "ARRAY[1::int8]",
            "ARRAY['http://127.0.0.1:9/cb']",
            r#"ARRAY['{"emitted_at": "2026-11-28T10:35:19.725Z","event_id": "01a221b9-453d-765d-954c-7d3000000000","event_type": "process.updated","milestone": "accepted","process": {"callback_metadata": {},"process_id": "01a221b9-452d-70f4-ada1-14f589f43354","process_type": "keyword_warmup","request_id": "b-1-1","status": "queued"},"sequence": 1}']"#,
        ],
    );
    let directory = fill(
        db::accounts::DIRECTORY_SQL,
        &["ARRAY['bench-acc']", "ARRAY[]::text[]"],
    );
    // pgbench wants each statement on one line.
    let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "BEGIN;\n{};\n{} \\gset\n{};\n{};\nEND;\n",
        one_line(directory),
        one_line(process),
        one_line(items),
        one_line(callback)
    )
}

/// `db::processes::VIEWS_SQL` and `db::queue_items::STATES_MANY_SQL` for one id: what the
/// coordinator runs once per batch of concurrent reads.
fn get_sql(id: &str) -> String {
    let ids = format!("ARRAY['{id}'::uuid]");
    format!(
        "{};\n{};\n",
        fill(db::processes::VIEWS_SQL, &[&ids]),
        fill(db::queue_items::STATES_MANY_SQL, &[&ids])
    )
}

/// (batches, requests) so far of one batcher, from the coordinator's `/metrics`.
async fn batch_counts(client: &reqwest::Client, base: &str, batcher: &str) -> (f64, f64) {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let read = |metric: &str| {
        let prefix = format!("{metric}{{batcher=\"{batcher}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        read("phonefarm_batches_total"),
        read("phonefarm_batched_requests_total"),
    )
}

fn print_batches(before: (f64, f64), after: (f64, f64)) {
    let (b, r) = (after.0 - before.0, after.1 - before.1);
    if b > 0.0 {
        println!(
            "         ours: {r:.0} requests in {b:.0} batches, mean batch {:.1}",
            r / b
        );
    }
}

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("PF_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conns: usize = std::env::var("PF_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let sslmode = sslmode();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let name = format!("pf_bench_{}", uuid::Uuid::new_v4().simple());
        let admin_pool = PgPool::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin_pool)
            .await?;
        let url = format!(
            "{}/{name}?sslmode={sslmode}",
            admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin)
        );
        let pool = db::connect(&url).await?;
        db::MIGRATOR.run(&pool).await?;
        sqlx::query("INSERT INTO phones (phone_id) VALUES ('bench-phone')")
            .execute(&pool)
            .await?;
        sqlx::query(
            "INSERT INTO accounts (account_id, phone_id) VALUES ('bench-acc', 'bench-phone')",
        )
        .execute(&pool)
        .await?;
        let key = auth::generate_key();
        db::api_keys::insert(&pool, "bench", &auth::hash_key(&key), "pf_", "admin", None).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let settings = app::Settings {
            ingest_secret: None,
            webhook_secret: None,
            allow: vec!["127.0.0.0/8".parse()?],
            public_metrics: true,
            deliverer: None,
        };
        tokio::spawn(app::run(listener, pool.clone(), settings, shutdown.clone()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(conns)
            .build()?;
        let dur = Duration::from_secs(secs);
        println!(
            "# {conns} connections, {secs} s per run, database {name}, sslmode={sslmode} both sides"
        );

        let enqueue = {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            move |c: usize, n: u64| {
                let (client, base, key) = (client.clone(), base.clone(), key.clone());
                async move {
                    let body = json!({
                        "request_id": format!("b-{c}-{n}-{}", uuid::Uuid::new_v4().simple()),
                        "capability": "keyword_warmup",
                        "mode": "unattended",
                        "target": {"routing": "queue", "account_id": "bench-acc"},
                        "inputs": {"keywords": ["fitness", "cooking"], "videos_per_keyword": 2},
                        "callback": {"url": "http://127.0.0.1:9/cb"},
                        "requested_by": {"system": "bench"}
                    });
                    let r = client
                        .post(format!("{base}/capability-requests/enqueue"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    matches!(r, Ok(r) if r.status() == 202)
                }
            }
        };
        let dir = tempfile::tempdir()?;
        let use_wrk = have_wrk();
        println!(
            "# driver: {}",
            if use_wrk {
                "wrk (separate process, 2 threads)"
            } else {
                "in-process reqwest (wrk not found: apt-get install wrk; this understates ours)"
            }
        );
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let before = batch_counts(&client, &base, "enqueue").await;
        let ours = if use_wrk {
            let (base, key, dir) = (base.clone(), key.clone(), dir.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let args = [format!("warm-{run_id}"), key.clone()];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                wrk(&base, WRK_ENQUEUE, &args, conns, 1, &dir);
                let args = [run_id, key];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                wrk(&base, WRK_ENQUEUE, &args, conns, secs, &dir)
            })
            .await?
        } else {
            // Warm up connections and caches.
            drive(conns, Duration::from_secs(1), enqueue.clone()).await;
            drive(conns, dur, enqueue).await
        };
        let base_fig = tokio::task::spawn_blocking({
            let name = name.clone();
            let dir = dir.path().to_path_buf();
            move || pgbench(&name, &[enqueue_sql()], conns, secs, &dir)
        })
        .await?;
        print("enqueue", &ours, &base_fig);
        print_batches(before, batch_counts(&client, &base, "enqueue").await);

        // Reads spread over 128 processes (a batch reads distinct rows, not one row N times); 128
        // is the most scripts pgbench takes.
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT process_id FROM processes ORDER BY random() LIMIT 128")
                .fetch_all(&pool)
                .await?;
        let get = {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            let ids = Arc::new(ids.clone());
            move |c: usize, n: u64| {
                let (client, base, key) = (client.clone(), base.clone(), key.clone());
                let id = ids[(c * 37 + n as usize) % ids.len()];
                async move {
                    let r = client
                        .get(format!("{base}/processes/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            }
        };
        let before = batch_counts(&client, &base, "process_view").await;
        let ours = if use_wrk {
            let (base, key, dir) = (base.clone(), key.clone(), dir.path().to_path_buf());
            let script = wrk_get(&ids);
            tokio::task::spawn_blocking(move || {
                wrk(&base, &script, &[&key], conns, 1, &dir);
                wrk(&base, &script, &[&key], conns, secs, &dir)
            })
            .await?
        } else {
            drive(conns, Duration::from_secs(1), get.clone()).await;
            drive(conns, dur, get).await
        };
        let base_fig = tokio::task::spawn_blocking({
            let name = name.clone();
            let dir = dir.path().to_path_buf();
            let scripts: Vec<String> = ids.iter().map(|id| get_sql(&id.to_string())).collect();
            move || pgbench(&name, &scripts, conns, secs, &dir)
        })
        .await?;
        print("get", &ours, &base_fig);
        print_batches(before, batch_counts(&client, &base, "process_view").await);

        shutdown.cancel();
        pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin_pool)
        .await?;
        anyhow::Ok(())
    })
}

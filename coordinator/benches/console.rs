//! Server time per console page with a production-sized database.
//!
//! `cargo bench -p phonefarm-coordinator --bench console` (env: `PF_CONSOLE_PROCESSES` 10000,
//! `PF_CONSOLE_PHONES` 1000, `PF_CONSOLE_SAMPLED` 100 (phones with 24 h of health samples, one
//! a minute), `PF_CONSOLE_REQUESTS` 200 (per page), `PF_CONSOLE_EXPLAIN` 0 (1 prints the plan
//! of the failures page's query, `EXPLAIN (ANALYZE, BUFFERS)`), `DATABASE_URL`, an admin URL,
//! default the local postgres).
//!
//! It seeds a scratch database (testkit's `AppDb`) with SQL: 10 agents, the phones (a few
//! offline, unauthorized, hot or low), the processes over the last week (one a minute; a tenth
//! are group fan-outs of 3 items; completed, failed, cancelled, and the newest executing or
//! queued), each item's run events (dispatch, steps, heartbeats, progress, the outcome, the
//! evidence of failed runs), each process's callbacks with their delivery attempts, and 5,000
//! audit rows; then `ANALYZE`. The coordinator runs in-process on loopback without a callback
//! deliverer or bus, and one signed-in client requests each page `PF_CONSOLE_REQUESTS` times in
//! a row (after 5 warm-up requests), on one kept-alive connection. The baseline rows, measured
//! the same way in the same run, are `GET /healthz` (the HTTP floor) and the API's
//! `GET /processes/{id}`. A page PASSes when its p99 is under 100 ms (printed, not asserted).
//! The evidence page is measured without a bus, so without fetching the UI dump from the
//! agent's object store (its database part and rendering only).
//!
//! Figures (2-core VM shared with other builds, Postgres 15 on the same host, release build,
//! 200 requests a page; 10,000 processes, 12,000 items, 133,800 events, 29,700 callbacks, 1,000
//! phones, 144,900 health samples; seeding takes about 3 s):
//!
//! ```text
//! page                                      p50 ms    p99 ms    max ms     bytes
//! baseline GET /healthz                       0.10      0.15      0.16        15  baseline
//! baseline GET /processes/{id} (API)          0.44      0.69      1.77      1187  baseline
//! fleet                                       3.46      5.69     14.99    209714  PASS
//! phone (24 h of samples)                     4.12      9.66      9.87     50659  PASS
//! phone (no samples)                          2.46      3.88      8.95      7399  PASS
//! processes                                   0.91      1.78      2.13     20931  PASS
//! processes ?status&capability                1.01      1.32      2.25     22193  PASS
//! processes ?system&since&until               0.92      1.45      2.32     21201  PASS
//! processes ?q=request_id                     1.11      1.33      7.81      2710  PASS
//! processes ?q=process_id                     1.06      1.44      2.53      2781  PASS
//! processes ?status=cancelled (rare)          1.28      1.54      1.76     20971  PASS
//! process (group, failed)                     1.53      5.26     98.04     11429  PASS
//! failures (24 h)                             2.26      2.64      5.26      9104  PASS
//! evidence (no dump fetch)                    1.28      2.09      2.45      1800  PASS
//! audit                                       1.11      1.34      1.56     36672  PASS
//! sessions                                    0.66      0.90      5.28      1681  PASS
//! ```
//!
//! Every page is far under its 100 ms target; single maxima near 100 ms come and go between
//! runs (the host is shared). The failures page scanned every event ever recorded (13.3 ms for
//! its query, page p50 10.5 ms, growing with the history) until migration 0056 gave it a
//! partial index of failed runs by time (query 2.2 ms, page p50 2.3 ms). The fleet page
//! renders all 1,000 phones (210 KB).

use std::time::{Duration, Instant};

use phonefarm_coordinator::{app, auth, db};
use phonefarm_testkit::bench::percentile;
use phonefarm_testkit::coordinator::app::AppDb;
use phonefarm_testkit::coordinator::console::Browser;
use reqwest::header::COOKIE;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The coordinator binary's allocator, since the app runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A page's p99 must stay under this.
const TARGET_MS: f64 = 100.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed, one statement each, in order. `$1` processes, `$2` phones, `$3` sampled phones.
const SEED: &[(&str, &str)] = &[
    (
        "agents",
        "INSERT INTO agents (agent_id, version, host, started_at, last_seen_at, online, phone_count) \
         SELECT 'rack-' || lpad(a::text, 2, '0'), '0.1.0', 'host-' || a, now() - interval '3 days', \
                now(), true, $2 / 10 \
         FROM generate_series(0, 9) a WHERE $1::int >= 0 AND $3::int >= 0",
    ),
    (
        "phones",
        "INSERT INTO phones (phone_id, serial, agent_id, label, state, model, android_version, \
           battery_level, temperature_c, storage_free_bytes, screen_state, app_version, last_seen_at) \
         SELECT 'P' || lpad(p::text, 4, '0'), 'SER' || p, 'rack-' || lpad(((p * 10) / $2)::text, 2, '0'), \
                CASE WHEN p % 7 = 0 THEN 'shelf ' || (p / 20) END, \
                CASE WHEN p % 50 = 0 THEN 'offline' WHEN p % 50 = 1 THEN 'unauthorized' \
                     ELSE 'online' END, \
                (ARRAY['Pixel 6', 'Pixel 7', 'Galaxy A54', 'Moto G84'])[1 + p % 4], '14', \
                10 + (p * 37) % 90, 28 + ((p * 13) % 200) / 10.0, 8000000000 + p * 1000000, 'on', \
                (ARRAY['34.1.2', '34.2.0', '35.0.1'])[1 + p % 3], now() - make_interval(secs => p % 30) \
         FROM generate_series(0, $2 - 1) p WHERE $1::int >= 0 AND $3::int >= 0",
    ),
    (
        "health samples",
        "INSERT INTO phone_health_samples (phone_id, at, battery_level, temperature_c, storage_free_bytes) \
         SELECT 'P' || lpad(p::text, 4, '0'), date_trunc('minute', now()) - make_interval(mins => m), \
                20 + (p + m / 10) % 80, 30 + ((p + m) % 100) / 10.0, 8000000000 - m * 100000 \
         FROM generate_series(0, $3 - 1) p, generate_series(1, 1439) m \
         WHERE $1::int >= 0 AND $2::int >= 0 ON CONFLICT DO NOTHING",
    ),
    (
        "flow packs reports",
        "INSERT INTO agent_flow_packs (agent_id, report_at, report_seq, running, rejected) \
         SELECT agent_id, now(), 1, \
                '[{\"name\": \"tiktok\", \"revision\": 7, \"sha256\": \"00\", \"kv\": null}]', '[]' \
         FROM agents WHERE $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "processes",
        "INSERT INTO processes (process_id, process_type, request_id, system, mode, status, target, \
           inputs, requested_by, callback, fingerprint, result, error, partial_progress, created_at, \
           accepted_at, queued_at, executing_at, finished_at, version) \
         SELECT md5('p' || i)::uuid, (ARRAY['keyword_warmup', 'fyp_warmup', 'maintenance'])[1 + i % 3], \
                'req-' || i, (ARRAY['ugc-tracker', 'crm', 'ops'])[1 + (i / 7) % 3], 'unattended', st, \
                CASE WHEN i % 10 = 5 THEN '{\"routing\": \"group\", \"account_ids\": [\"a\", \"b\", \"c\"]}' \
                     ELSE jsonb_build_object('routing', 'queue', 'account_id', 'acc-' || i % $2) END, \
                '{\"keywords\": [\"fitness\", \"cooking\"], \"videos_per_keyword\": 3}', \
                '{\"system\": \"ugc-tracker\", \"user\": \"bench\", \"metadata\": {}}', \
                '{\"url\": \"https://example.com/cb\", \"metadata\": {}}', '\\x00', \
                CASE WHEN st = 'completed' THEN '{\"keywords\": {\"fitness\": {\"videos_watched\": 3, \
                     \"liked\": 1, \"commented\": false}}}'::jsonb ELSE '{}' END, \
                CASE WHEN st = 'failed_terminal' THEN jsonb_build_object('code', 'flow_error:unknown_screen', \
                     'message', 'no resource_id=\"search\" on the screen', 'queue_item_id', md5('q' || i || '-0')::uuid, \
                     'at', created) END, \
                CASE WHEN i % 10 = 5 THEN '{\"total\": 3}'::jsonb ELSE '{}' END, \
                created, created, created, CASE WHEN st <> 'queued' THEN created + interval '2 s' END, \
                CASE WHEN st IN ('completed', 'failed_terminal', 'cancelled') THEN created + interval '90 s' END, \
                3 \
         FROM (SELECT i, now() - make_interval(mins => i, secs => 30) AS created, \
                 CASE WHEN i < 1000 AND i % 10 = 0 THEN 'executing' \
                      WHEN i < 1000 AND i % 10 = 1 THEN 'queued' \
                      WHEN i % 20 IN (2, 5, 8) THEN 'failed_terminal' \
                      WHEN i % 20 = 3 THEN 'cancelled' ELSE 'completed' END AS st \
               FROM generate_series(0, $1 - 1) i) s WHERE $3::int >= 0",
    ),
    (
        "queue items",
        "INSERT INTO queue_items (queue_item_id, process_id, kind, state, mode, routing, phone_id, \
           account_id, inputs, attempt, agent_id, run_id, result, error, created_at, updated_at, \
           started_at, finished_at) \
         SELECT md5('q' || i || '-' || k)::uuid, p.process_id, p.process_type, \
                CASE WHEN k > 0 THEN 'DONE' WHEN p.status = 'executing' THEN 'EXECUTING' \
                     WHEN p.status = 'queued' THEN 'QUEUED' WHEN p.status = 'failed_terminal' THEN 'DEAD_LETTER' \
                     WHEN p.status = 'cancelled' THEN 'CANCELLED' ELSE 'DONE' END, \
                'unattended', CASE WHEN i % 10 = 5 THEN 'group' ELSE 'queue' END, \
                'P' || lpad(((i + k * 337) % $2)::text, 4, '0'), 'acc-' || (i + k) % $2, p.inputs, \
                CASE WHEN p.status = 'queued' AND k = 0 THEN 0 ELSE 1 END, \
                'rack-' || lpad(((((i + k * 337) % $2) * 10) / $2)::text, 2, '0'), gen_random_uuid(), \
                CASE WHEN p.status = 'completed' THEN p.result END, \
                CASE WHEN p.status = 'failed_terminal' AND k = 0 THEN jsonb_build_object('code', \
                     (ARRAY['flow_error:unknown_screen', 'device_error:usb_reset', 'account_outcome:banned', \
                            'timeout'])[1 + (i / 20) % 4], 'message', 'the run failed') END, \
                p.created_at, p.created_at, p.executing_at, p.finished_at \
         FROM (SELECT p.*, split_part(p.request_id, '-', 2)::int AS i FROM processes p) p, \
              generate_series(0, 2) k \
         WHERE k = 0 OR p.i % 10 = 5 AND $3::int >= 0",
    ),
    (
        "dispatch events",
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         SELECT queue_item_id, 0, 1, 'dispatched', created_at + interval '1 s', \
                jsonb_build_object('attempt', 1, 'agent_id', agent_id, 'phone_id', phone_id, 'run_id', run_id) \
         FROM queue_items WHERE attempt > 0 AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "run events",
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         SELECT qi.queue_item_id, 1, e.seq, e.kind, qi.created_at + make_interval(secs => 2 + e.seq * 5), \
                e.payload::jsonb \
         FROM queue_items qi CROSS JOIN (VALUES (1, 'accepted', '{}'), \
              (2, 'step_started', '{\"step\": \"open_app\"}'), (3, 'step_finished', '{\"step\": \"open_app\"}'), \
              (4, 'step_started', '{\"step\": \"search\"}'), (5, 'heartbeat', '{}'), \
              (6, 'progress', '{\"counters\": {\"videos_watched\": 2}}'), \
              (7, 'step_finished', '{\"step\": \"search\"}'), (8, 'step_started', '{\"step\": \"watch\"}'), \
              (9, 'heartbeat', '{}')) AS e(seq, kind, payload) \
         WHERE qi.attempt > 0 AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "evidence events",
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         SELECT qi.queue_item_id, 1, 9 + n, 'evidence', qi.created_at + interval '60 s', \
                jsonb_build_object('object', qi.agent_id || '/' || qi.queue_item_id || '/1/' || f, 'kind', k) \
         FROM queue_items qi, (VALUES (1, 'ui_dump', 'ui.xml'), (2, 'screenshot', 'screen.png')) AS e(n, k, f) \
         WHERE qi.state = 'DEAD_LETTER' AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "finished events",
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         SELECT queue_item_id, 1, 12, 'finished', finished_at, \
                jsonb_build_object('outcome', CASE state WHEN 'DONE' THEN 'completed' \
                  WHEN 'CANCELLED' THEN 'cancelled' ELSE 'failed' END, 'result', COALESCE(result, '{}'), \
                  'error', error || '{\"retryable\": false}') \
         FROM queue_items WHERE finished_at IS NOT NULL AND attempt > 0 \
           AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "callbacks",
        "INSERT INTO callback_deliveries (event_id, event_type, process_id, sequence, url, body, state, \
           attempts, next_attempt_at, last_status, created_at, delivered_at) \
         SELECT gen_random_uuid(), 'process.updated', p.process_id, m.seq, 'https://example.com/cb', \
                jsonb_build_object('event_type', 'process.updated', 'milestone', m.name, 'sequence', m.seq, \
                  'process', jsonb_build_object('process_id', p.process_id, 'status', p.status))::text, \
                'delivered', CASE WHEN abs(hashtext(p.process_id::text)) % 13 = 0 THEN 2 ELSE 1 END, p.created_at, 200, \
                p.created_at + make_interval(secs => m.seq), p.created_at + make_interval(secs => m.seq + 1) \
         FROM processes p, (VALUES (1, 'accepted'), (2, 'executing'), (3, 'final')) AS m(seq, name) \
         WHERE (m.seq = 1 OR m.seq = 2 AND p.executing_at IS NOT NULL OR m.seq = 3 AND p.finished_at IS NOT NULL) \
           AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "callback attempts",
        "INSERT INTO callback_attempts (delivery_id, attempt, at, status_code, error, duration_ms) \
         SELECT d.id, a, d.created_at + make_interval(secs => a * 5), \
                CASE WHEN a < d.attempts THEN 503 ELSE 200 END, \
                CASE WHEN a < d.attempts THEN 'status 503' END, 20 + d.id % 180 \
         FROM callback_deliveries d, generate_series(1, 2) a WHERE a <= d.attempts \
           AND $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
    (
        "audit log",
        "INSERT INTO audit_log (at, actor, action, target, address, via, detail) \
         SELECT now() - make_interval(mins => n * 2), (ARRAY['alice', 'bob', 'ops-bot'])[1 + n % 3], \
                (ARRAY['phone.disable', 'phone.label', 'process.cancel', 'PUT /phones/{phone_id}'])[1 + n % 4], \
                'P' || lpad((n % 1000)::text, 4, '0'), '10.0.0.' || n % 250, \
                CASE WHEN n % 4 = 3 THEN 'api' ELSE 'console' END, jsonb_build_object('n', n) \
         FROM generate_series(1, 5000) n WHERE $1::int >= 0 AND $2::int >= 0 AND $3::int >= 0",
    ),
];

async fn seed(pool: &PgPool, processes: i32, phones: i32, sampled: i32) -> anyhow::Result<()> {
    for (what, sql) in SEED {
        let start = Instant::now();
        let r = sqlx::query(sqlx::AssertSqlSafe(*sql))
            .bind(processes)
            .bind(phones)
            .bind(sampled)
            .execute(pool)
            .await
            .map_err(|e| anyhow::anyhow!("seeding {what}: {e}"))?;
        println!(
            "seeded {what:<20} {:>8} rows in {:>6.2} s",
            r.rows_affected(),
            start.elapsed().as_secs_f64()
        );
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// One row of the table.
struct Row {
    name: String,
    p50: f64,
    p99: f64,
    max: f64,
    bytes: usize,
    baseline: bool,
}

/// `n` requests of `path` in a row after 5 warm-up ones; every answer must be a 200.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    auth: (&str, &str),
    path: &str,
    n: usize,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n + 5 {
        let start = Instant::now();
        let r = client
            .get(format!("{base}{path}"))
            .header(auth.0, auth.1)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        let took = start.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        bytes = body.len();
        if i >= 5 {
            ms.push(took);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok((ms, bytes))
}

async fn run() -> anyhow::Result<()> {
    let processes: i32 = env_or("PF_CONSOLE_PROCESSES", 10_000);
    let phones: i32 = env_or("PF_CONSOLE_PHONES", 1_000).max(10);
    let sampled: i32 = env_or("PF_CONSOLE_SAMPLED", 100).min(phones);
    let n: usize = env_or("PF_CONSOLE_REQUESTS", 200).max(1);
    let db = AppDb::new().await;
    seed(&db.pool, processes, phones, sampled).await?;

    let key = auth::generate_key();
    db::api_keys::insert(
        &db.pool,
        "bench-admin",
        &auth::hash_key(&key),
        "pf_",
        "admin",
        None,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let settings = app::Settings {
        ingest_secret: None,
        webhook_secret: None,
        allow: vec![],
        public_metrics: true,
        deliverer: None,
    };
    let server = tokio::spawn(app::run(
        listener,
        db.pool.clone(),
        settings,
        shutdown.clone(),
    ));
    let browser = Browser::sign_in(&base, &key).await;
    let bearer = format!("Bearer {key}");

    // Ids to look at: a failed group fan-out (3 items, callbacks, evidence), a request id.
    let group: (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT p.process_id, qi.queue_item_id FROM processes p \
         JOIN queue_items qi ON qi.process_id = p.process_id AND qi.state = 'DEAD_LETTER' \
         WHERE p.partial_progress ? 'total' ORDER BY p.created_at DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await?;
    let (pid, failed_item) = group;
    let middle = processes / 2;
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let day = |t: time::OffsetDateTime| {
        format!(
            "{:04}-{:02}-{:02}T00:00",
            t.year(),
            t.month() as u8,
            t.day()
        )
    };
    // (name, path, bearer auth (else the session cookie), baseline)
    let pages: Vec<(&str, String, bool, bool)> = vec![
        ("baseline GET /healthz", "/healthz".into(), true, true),
        (
            "baseline GET /processes/{id} (API)",
            format!("/processes/{pid}"),
            true,
            true,
        ),
        ("fleet", "/ui/fleet".into(), false, false),
        (
            "phone (24 h of samples)",
            "/ui/phones/P0000".into(),
            false,
            false,
        ),
        (
            "phone (no samples)",
            format!("/ui/phones/P{:04}", phones - 1),
            false,
            false,
        ),
        ("processes", "/ui/processes".into(), false, false),
        (
            "processes ?status&capability",
            "/ui/processes?status=failed_terminal&capability=keyword_warmup".into(),
            false,
            false,
        ),
        (
            "processes ?system&since&until",
            format!(
                "/ui/processes?system=crm&since={}&until={}",
                day(since),
                day(since + time::Duration::days(1))
            ),
            false,
            false,
        ),
        (
            "processes ?q=request_id",
            format!("/ui/processes?q=req-{middle}"),
            false,
            false,
        ),
        (
            "processes ?q=process_id",
            format!("/ui/processes?q={pid}"),
            false,
            false,
        ),
        (
            "processes ?status=cancelled (rare)",
            "/ui/processes?status=cancelled&system=ops".into(),
            false,
            false,
        ),
        (
            "process (group, failed)",
            format!("/ui/processes/{pid}"),
            false,
            false,
        ),
        ("failures (24 h)", "/ui/failures".into(), false, false),
        (
            "evidence (no dump fetch)",
            format!("/ui/evidence/{failed_item}/1"),
            false,
            false,
        ),
        ("audit", "/ui/audit".into(), false, false),
        ("sessions", "/ui/sessions".into(), false, false),
        // The operators' gauges read Postgres at every scrape (1,000 phones).
        (
            "GET /metrics (with the gauges)",
            "/metrics".into(),
            true,
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (name, path, api, baseline) in &pages {
        let auth = if *api {
            ("authorization", bearer.as_str())
        } else {
            (COOKIE.as_str(), browser.cookie.as_str())
        };
        let (ms, bytes) = measure(&browser.http, &base, auth, path, n).await?;
        rows.push(Row {
            name: name.to_string(),
            p50: percentile(&ms, 0.5),
            p99: percentile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(f64::NAN),
            bytes,
            baseline: *baseline,
        });
    }
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM processes), (SELECT count(*) FROM queue_items), \
           (SELECT count(*) FROM queue_item_events), (SELECT count(*) FROM callback_deliveries), \
           (SELECT count(*) FROM phone_health_samples)",
    )
    .fetch_one(&db.pool)
    .await?;
    println!(
        "\n{} processes, {} items, {} events, {} callbacks, {phones} phones, {} health samples; \
         {n} sequential requests per page on one connection",
        counts.0, counts.1, counts.2, counts.3, counts.4
    );
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>9}  p99 < {TARGET_MS} ms",
        "page", "p50 ms", "p99 ms", "max ms", "bytes"
    );
    for r in &rows {
        let verdict = match (r.baseline, r.p99 < TARGET_MS) {
            (true, _) => "baseline",
            (false, true) => "PASS",
            (false, false) => "MISS",
        };
        println!(
            "{:<38} {:>9.2} {:>9.2} {:>9.2} {:>9}  {verdict}",
            r.name, r.p50, r.p99, r.max, r.bytes
        );
    }
    if env_or("PF_CONSOLE_EXPLAIN", 0) == 1 {
        let sql = format!(
            "EXPLAIN (ANALYZE, BUFFERS) {}",
            db::console_views::FAILURES_24H_SQL
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await?;
        println!("\nfailures page query:\n{}", plan.join("\n"));
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

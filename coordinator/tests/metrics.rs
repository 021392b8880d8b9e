//! `/metrics` is private by default: the real binary, started as an operator would, answers
//! 401 without a token and 200 with one; `--public-metrics` opens it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phonefarm_testkit::TestDb;

const SECRET: &str = "metrics-test-secret";

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The coordinator binary serving the API only, with `INGEST_SECRET` as its token; killed on
/// drop.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    async fn start(db: &str, extra: &[&str]) -> Served {
        // A free port, released for the binary to bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bind = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
            .args(["serve", "--no-nats", "true", "--bind", &bind])
            .args(extra)
            .env("DATABASE_URL", db)
            .env("INGEST_SECRET", SECRET)
            .env_remove("PHONEFARM_PUBLIC_METRICS")
            .env_remove("PHONEFARM_CALLBACK_ALLOW_CIDRS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the coordinator");
        let served = Served {
            child,
            base: format!("http://{bind}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http().get(format!("{}/healthz", served.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the coordinator did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    }

    async fn metrics(&self, token: Option<&str>) -> u16 {
        let mut request = http().get(format!("{}/metrics", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn metrics_need_a_token_unless_public_metrics_is_given() {
    let db = TestDb::create().await;
    let private = Served::start(&db.url, &[]).await;
    assert_eq!(private.metrics(None).await, 401, "private by default");
    assert_eq!(private.metrics(Some("wrong")).await, 401);
    assert_eq!(private.metrics(Some(SECRET)).await, 200);
    drop(private);

    let public = Served::start(&db.url, &["--public-metrics"]).await;
    assert_eq!(public.metrics(None).await, 200, "--public-metrics opens it");
}

/// One `/metrics` answer: its text and its samples, `name{labels}` (as served) → value.
struct Scrape {
    text: String,
    samples: std::collections::HashMap<String, f64>,
}

impl Scrape {
    async fn of(app: &phonefarm_testkit::coordinator::app::TestApp) -> Scrape {
        let r = app.get("/metrics").await;
        assert_eq!(r.status, 200);
        let text = r.body.as_str().expect("text").to_string();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of sample `key`; fails the test when it is not served.
    fn at(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not served:\n{}", self.text))
    }
}

/// What `promtool check metrics` says about a scrape (it lints names, types and help texts):
/// nothing when promtool is missing, unless `PF_REQUIRE_PROMTOOL` is set (CI sets it).
fn promtool_lint(text: &str) -> Option<String> {
    use std::io::Write as _;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("PF_REQUIRE_PROMTOOL").is_none(),
                "promtool is required (PF_REQUIRE_PROMTOOL) but cannot run: {e}"
            );
            eprintln!("promtool is missing: the scrape is not linted");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The operators' gauges count what is in Postgres at the scrape: agents up, phones by agent
/// and state (offline with their agent), what needs attention, temperatures, the queue by
/// state and its oldest due item, the callback backlog and dead letters. They follow a change
/// at the next scrape.
#[tokio::test]
async fn the_gauges_count_the_fleet_the_queue_and_the_callbacks_in_postgres() {
    let app = phonefarm_testkit::coordinator::app::spawn_app().await;
    let db = &app.db.pool;
    let run = |sql: &'static str| async move {
        sqlx::query(sql).execute(db).await.unwrap();
    };
    run("INSERT INTO agents (agent_id, online) VALUES ('rack-a', true), ('rack-b', false)").await;
    run(
        "INSERT INTO phones (phone_id, agent_id, state, enabled, battery_level, temperature_c) VALUES \
         ('P1', 'rack-a', 'online', true, 80, 47.5), \
         ('P2', 'rack-a', 'online', true, 10, 30), \
         ('P3', 'rack-a', 'unauthorized', true, NULL, NULL), \
         ('P4', 'rack-a', 'online', false, 90, 31), \
         ('P5', 'rack-b', 'online', true, 70, 50)",
    )
    .await;
    run(
        "INSERT INTO queue_items (queue_item_id, kind, state, mode, routing, phone_id, inputs, \
           created_at, scheduled_at, next_attempt_at) VALUES \
         (gen_random_uuid(), 'keyword_warmup', 'QUEUED', 'unattended', 'direct', 'P2', '{}', \
            now() - interval '120 seconds', NULL, NULL), \
         (gen_random_uuid(), 'keyword_warmup', 'QUEUED', 'unattended', 'direct', 'P2', '{}', \
            now() - interval '10 seconds', NULL, NULL), \
         (gen_random_uuid(), 'keyword_warmup', 'RETRYABLE', 'unattended', 'direct', 'P2', '{}', \
            now() - interval '1 hour', NULL, now() + interval '1 hour'), \
         (gen_random_uuid(), 'keyword_warmup', 'SCHEDULED', 'unattended', 'direct', 'P2', '{}', \
            now() - interval '2 hours', now() + interval '1 hour', NULL), \
         (gen_random_uuid(), 'keyword_warmup', 'EXECUTING', 'unattended', 'direct', 'P1', '{}', \
            now(), NULL, NULL), \
         (gen_random_uuid(), 'keyword_warmup', 'DEAD_LETTER', 'unattended', 'direct', 'P2', '{}', \
            now(), NULL, NULL), \
         (gen_random_uuid(), 'keyword_warmup', 'DONE', 'unattended', 'direct', 'P2', '{}', \
            now() - interval '3 hours', NULL, NULL)",
    )
    .await;
    run(
        "INSERT INTO callback_deliveries (event_id, event_type, url, body, state, created_at) VALUES \
         (gen_random_uuid(), 'process.updated', 'http://127.0.0.1:9/cb', '{}', 'pending', \
            now() - interval '300 seconds'), \
         (gen_random_uuid(), 'process.updated', 'http://127.0.0.1:9/cb', '{}', 'pending', now()), \
         (gen_random_uuid(), 'process.updated', 'http://127.0.0.1:9/cb', '{}', 'delivered', \
            now() - interval '1 day'), \
         (gen_random_uuid(), 'process.updated', 'http://127.0.0.1:9/cb', '{}', 'failed', \
            now() - interval '1 day')",
    )
    .await;

    let scrape = Scrape::of(&app).await;
    let at = |key: &str| scrape.at(key);
    assert_eq!(at("phonefarm_gauges_up"), 1.0);
    assert_eq!(at(r#"phonefarm_agent_up{agent_id="rack-a"}"#), 1.0);
    assert_eq!(at(r#"phonefarm_agent_up{agent_id="rack-b"}"#), 0.0);
    assert_eq!(at(r#"phonefarm_agents{state="online"}"#), 1.0);
    assert_eq!(at(r#"phonefarm_agents{state="offline"}"#), 1.0);
    // P1 runs an item; P5's agent is offline.
    for (agent, state, n) in [
        ("rack-a", "busy", 1.0),
        ("rack-a", "online", 2.0),
        ("rack-a", "unauthorized", 1.0),
        ("rack-a", "offline", 0.0),
        ("rack-b", "offline", 1.0),
        ("rack-b", "online", 0.0),
    ] {
        let key = format!(r#"phonefarm_phones{{agent_id="{agent}",state="{state}"}}"#);
        assert_eq!(at(&key), n, "{key}");
    }
    for (agent, reason, n) in [
        ("rack-a", "overheating", 1.0),
        ("rack-a", "low_battery", 1.0),
        ("rack-a", "disabled", 1.0),
        ("rack-a", "unauthorized", 1.0),
        ("rack-a", "offline", 0.0),
        ("rack-b", "offline", 1.0),
        // Its last report said 50 °C: counted as the fleet page counts it, by the last report
        // (the temperature gauge below has current readings only).
        ("rack-b", "overheating", 1.0),
    ] {
        let key = format!(
            r#"phonefarm_phones_needing_attention{{agent_id="{agent}",reason="{reason}"}}"#
        );
        assert_eq!(at(&key), n, "{key}");
    }
    assert_eq!(
        at(r#"phonefarm_phone_temperature_celsius{agent_id="rack-a",phone_id="P1"}"#),
        47.5
    );
    assert_eq!(
        at(r#"phonefarm_phone_battery_percent{agent_id="rack-a",phone_id="P2"}"#),
        10.0
    );
    assert!(
        !scrape.text.contains(r#"phone_id="P5""#),
        "a phone of an offline agent has no current temperature or battery:\n{}",
        scrape.text
    );
    assert_eq!(at("phonefarm_runs_executing"), 1.0);
    for (state, n) in [
        ("QUEUED", 2.0),
        ("RETRYABLE", 1.0),
        ("SCHEDULED", 1.0),
        ("EXECUTING", 1.0),
        ("CLAIMED", 0.0),
        ("PLANNED", 0.0),
    ] {
        let key = format!(r#"phonefarm_queue_items{{state="{state}"}}"#);
        assert_eq!(at(&key), n, "{key}");
    }
    // The oldest due item waited 120 s (the RETRYABLE and SCHEDULED ones are not due).
    let oldest = at("phonefarm_queue_oldest_age_seconds");
    assert!((120.0..3600.0).contains(&oldest), "{oldest}");
    assert_eq!(at("phonefarm_callback_backlog"), 2.0);
    let oldest_cb = at("phonefarm_callback_oldest_pending_age_seconds");
    assert!((300.0..3600.0).contains(&oldest_cb), "{oldest_cb}");
    assert_eq!(at(r#"phonefarm_dead_letters{kind="queue_item"}"#), 1.0);
    assert_eq!(at(r#"phonefarm_dead_letters{kind="callback"}"#), 1.0);
    if let Some(lint) = promtool_lint(&scrape.text) {
        let ours: Vec<&str> = lint.lines().filter(|l| l.contains("phonefarm_")).collect();
        assert!(ours.is_empty(), "promtool check metrics: {ours:?}");
    }

    // The next scrape follows the database: rack-a goes offline, the backlog is delivered,
    // the dead letter is retried.
    run("UPDATE agents SET online = false WHERE agent_id = 'rack-a'").await;
    run("UPDATE callback_deliveries SET state = 'delivered' WHERE state = 'pending'").await;
    run("UPDATE queue_items SET state = 'RETRYABLE' WHERE state = 'DEAD_LETTER'").await;
    let scrape = Scrape::of(&app).await;
    let at = |key: &str| scrape.at(key);
    assert_eq!(at(r#"phonefarm_agent_up{agent_id="rack-a"}"#), 0.0);
    assert_eq!(
        at(r#"phonefarm_phones{agent_id="rack-a",state="offline"}"#),
        4.0
    );
    assert_eq!(
        at(r#"phonefarm_phones{agent_id="rack-a",state="busy"}"#),
        0.0
    );
    assert_eq!(at("phonefarm_callback_backlog"), 0.0);
    assert_eq!(at("phonefarm_callback_oldest_pending_age_seconds"), 0.0);
    assert_eq!(at(r#"phonefarm_dead_letters{kind="queue_item"}"#), 0.0);
    assert_eq!(at(r#"phonefarm_queue_items{state="RETRYABLE"}"#), 2.0);
}

//! The whole system on one machine: Postgres, a real nats-server, the coordinator (API, bus
//! loops, callback deliverer), a real agent daemon and simulated phones over ADB/TCP. Work goes
//! in through the public HTTP API and comes back as status and signed callbacks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use phonefarm_agent::daemon::{self, DaemonConfig};
use phonefarm_coordinator::bus::{self, BusConfig};
use phonefarm_coordinator::callbacks::{Backoff, DelivererConfig};
use phonefarm_coordinator::{app, auth, db};
use phonefarm_flows::UiConfig;
use phonefarm_phonemodel::AccountState;
use phonefarm_phonesim::{Sim, SimConfig};
use phonefarm_testkit::{NatsServer, TestDb, wait_until};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn packs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../flowpacks"))
}

struct System {
    base: String,
    key: String,
    http: reqwest::Client,
    callbacks: Arc<Mutex<Vec<Value>>>,
    callback_url: String,
    sims: Vec<Sim>,
    _nats: NatsServer,
    _db: TestDb,
    _state: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = Arc::clone(&got);
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let store = Arc::clone(&store);
        async move {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                store.lock().unwrap().push(v);
            }
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/callback"), got)
}

async fn start(phones: usize) -> System {
    let nats = NatsServer::start();
    let tdb = TestDb::create().await;
    let pool = db::connect(&tdb.url).await.unwrap();
    db::MIGRATOR.run(&pool).await.unwrap();
    let key = auth::generate_key();
    db::api_keys::insert(&pool, "e2e", &auth::hash_key(&key), "pf_", "admin", None)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();

    let mut bus_config = BusConfig::new(nats.url());
    bus_config.lease = Duration::from_secs(6);
    bus_config.accept_timeout = Duration::from_secs(10);
    bus_config.offline_after = Duration::from_secs(5);
    bus_config.retry_base = Duration::from_millis(300);
    bus_config.retry_max = Duration::from_secs(2);
    bus_config.dispatch_interval = Duration::from_millis(200);
    bus_config.sweep_interval = Duration::from_millis(200);
    let bus = bus::connect(bus_config).await.expect("bus connects");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = app::Settings {
        ingest_secret: None,
        webhook_secret: Some("e2e-secret".into()),
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        public_metrics: true,
        deliverer: Some(DelivererConfig {
            poll_interval: Duration::from_millis(100),
            backoff: Backoff {
                steps: vec![],
                then: Duration::from_millis(200),
                give_up_after: Duration::from_secs(600),
                jitter: 0.0,
            },
            ..DelivererConfig::default()
        }),
    };
    tokio::spawn(app::run_with_bus(
        listener,
        pool,
        settings,
        Some(bus),
        shutdown.clone(),
    ));

    let mut sims = Vec::new();
    for i in 1..=phones {
        sims.push(
            phonefarm_phonesim::spawn(SimConfig::with_serial(&format!("SIM000{i}")))
                .await
                .unwrap(),
        );
    }
    let state = tempfile::tempdir().unwrap();
    let mut agent = DaemonConfig::new("rack-e2e", nats.url(), state.path().join("agent"));
    agent.tcp = sims.iter().map(|s| s.address()).collect();
    agent.flow_packs_dir = Some(packs_dir());
    agent.presence_interval = Duration::from_millis(500);
    agent.heartbeat_interval = Duration::from_secs(1);
    agent.probe_interval = Duration::from_millis(500);
    agent.busy_retry = Duration::from_millis(300);
    agent.ui = UiConfig {
        poll_interval: Duration::from_millis(100),
        ..UiConfig::default()
    };
    tokio::spawn(daemon::run(agent, shutdown.clone()));

    let (callback_url, callbacks) = receiver().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let sys = System {
        base,
        key,
        http,
        callbacks,
        callback_url,
        sims,
        _nats: nats,
        _db: tdb,
        _state: state,
        shutdown,
    };
    wait_until(
        "every phone online in GET /phones",
        Duration::from_secs(60),
        || async {
            let phones = sys.get("/phones").await;
            phones["phones"].as_array().is_some_and(|p| {
                p.iter().filter(|x| x["state"] == "online").count() == sys.sims.len()
            })
        },
    )
    .await;
    for i in 1..=phones {
        let r = sys
            .put(
                &format!("/accounts/acc-{i}"),
                &json!({"phone_id": format!("SIM000{i}")}),
            )
            .await;
        assert!(r.get("account_id").is_some(), "{r}");
    }
    sys
}

impl System {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap_or(Value::Null)
    }

    async fn put(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn enqueue(&self, body: Value) -> String {
        let (status, r) = self.post("/capability-requests/enqueue", &body).await;
        assert_eq!(status, 202, "{r}");
        r["process_id"].as_str().unwrap().to_string()
    }

    async fn wait_status(&self, id: &str, want: &str, deadline: Duration) -> Value {
        let mut last = Value::Null;
        let path = format!("/processes/{id}");
        let found = tokio::time::timeout(deadline, async {
            loop {
                last = self.get(&path).await;
                if last["status"] == want {
                    return;
                }
                assert!(
                    !(last["status"].as_str().is_some_and(|s| [
                        "completed",
                        "failed_terminal",
                        "cancelled"
                    ]
                    .contains(&s))),
                    "process ended {} instead of {want}: {last}",
                    last["status"]
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "process {id} never became {want}: {last}");
        last
    }

    fn milestones(&self, id: &str) -> Vec<(i64, String)> {
        let mut v: Vec<(i64, String)> = self
            .callbacks
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c["process"]["process_id"] == id)
            .map(|c| {
                (
                    c["sequence"].as_i64().unwrap_or(-1),
                    c["milestone"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn request(
    id: &str,
    capability: &str,
    mode: &str,
    target: Value,
    inputs: Value,
    callback: &str,
) -> Value {
    json!({
        "request_id": id, "capability": capability, "mode": mode, "target": target, "inputs": inputs,
        "callback": {"url": callback}, "requested_by": {"system": "e2e"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_capability_runs_to_completed_with_callbacks_in_sequence() {
    let sys = start(2).await;
    let kw = sys
        .enqueue(request(
            "kw-1",
            "keyword_warmup",
            "unattended",
            json!({"routing": "queue", "account_id": "acc-1"}),
            json!({"keywords": ["fitness"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}, "like_probability": 1.0}),
            &sys.callback_url,
        ))
        .await;
    let done = sys
        .wait_status(&kw, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(
        done["result"]["keywords"]["fitness"]["videos_watched"], 1,
        "{done}"
    );
    assert!(
        done["timestamps"]["executing_at"].is_string()
            && done["timestamps"]["finished_at"].is_string()
    );
    let liked = sys.sims[0].phone.lock().unwrap().liked_videos().len();
    assert_eq!(liked, 1, "the like happened on the phone");

    // Maintenance: edit the profile on the second phone and read it back.
    let (status, m) = sys
        .post(
            "/maintenance/requests",
            &json!({"request_id": "m-1", "account_id": "acc-2",
                    "inputs": {"steps": [{"action": "edit_profile", "params": {"display_name": "Ana Fit", "bio": "home workouts"}}]},
                    "callback": {"url": sys.callback_url}, "requested_by": {"system": "e2e"}}),
        )
        .await;
    assert_eq!(status, 202, "{m}");
    let m_id = m["process_id"].as_str().unwrap().to_string();
    sys.wait_status(&m_id, "completed", Duration::from_secs(120))
        .await;
    let profile = sys.sims[1].phone.lock().unwrap().profile().clone();
    assert_eq!(profile.display_name, "Ana Fit");

    // fyp_warmup is manual-only: it runs once the phone is attended.
    let r = sys.put("/phones/SIM0001", &json!({"attended": true})).await;
    assert_eq!(r["attended"], true, "{r}");
    let fyp = sys
        .enqueue(request(
            "fyp-1",
            "fyp_warmup",
            "manual",
            json!({"routing": "direct", "phone_id": "SIM0001", "account_id": "acc-1"}),
            json!({"duration_seconds": 60, "watch_seconds": {"min": 1, "max": 2}, "judge_prompt": "fitness workouts"}),
            &sys.callback_url,
        ))
        .await;
    sys.wait_status(&fyp, "completed", Duration::from_secs(150))
        .await;

    // Callbacks: accepted, executing, completed, with strictly increasing sequence.
    for id in [&kw, &m_id, &fyp] {
        wait_until(
            "the completed callback",
            Duration::from_secs(20),
            || async { sys.milestones(id).iter().any(|(_, m)| m == "completed") },
        )
        .await;
        let ms = sys.milestones(id);
        let names: Vec<&str> = ms.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            names,
            vec!["accepted", "executing", "completed"],
            "{id}: {ms:?}"
        );
        assert!(ms.windows(2).all(|w| w[0].0 < w[1].0), "{ms:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_fan_out_with_one_failing_phone_is_failed_terminal_with_partial_progress() {
    let sys = start(3).await;
    sys.sims[2].phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let id = sys
        .enqueue(request(
            "group-1",
            "keyword_warmup",
            "unattended",
            json!({"routing": "group", "account_ids": ["acc-1", "acc-2", "acc-3"]}),
            json!({"keywords": ["cooking"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}}),
            &sys.callback_url,
        ))
        .await;
    let p = sys
        .wait_status(&id, "failed_terminal", Duration::from_secs(150))
        .await;
    assert_eq!(
        p["partial_progress"],
        json!({"total": 3, "queued": 0, "executing": 0, "retrying": 0, "completed": 2, "failed": 1, "cancelled": 0}),
        "{p}"
    );
    assert_eq!(p["error"]["code"], "account_outcome:banned", "{p}");
    assert_eq!(
        p["linked_ids"]["completed_queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        p["linked_ids"]["failed_queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_cancel_stops_a_running_flow_on_the_phone() {
    let sys = start(1).await;
    let id = sys
        .enqueue(request(
            "long-1",
            "keyword_warmup",
            "unattended",
            json!({"routing": "queue", "account_id": "acc-1"}),
            json!({"keywords": ["travel", "food", "music"], "videos_per_keyword": 5, "watch_seconds": {"min": 20, "max": 30}}),
            &sys.callback_url,
        ))
        .await;
    sys.wait_status(&id, "executing", Duration::from_secs(60))
        .await;
    let (status, r) = sys
        .post(
            &format!("/processes/{id}/cancel"),
            &json!({"reason": "stop", "requested_by": {"system": "e2e"}, "strategy": "hard"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["termination"]["status"], "issued", "{r}");
    assert_eq!(r["termination"]["terminate_issued"], true);
    assert_eq!(r["termination"]["container"]["agent_id"], "rack-e2e", "{r}");
    let p = sys
        .wait_status(&id, "cancelled", Duration::from_secs(60))
        .await;
    assert!(p["timestamps"]["cancel_requested_at"].is_string());
    wait_until(
        "the cancelled callback",
        Duration::from_secs(20),
        || async { sys.milestones(&id).iter().any(|(_, m)| m == "cancelled") },
    )
    .await;
    let names: Vec<String> = sys.milestones(&id).into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        names,
        vec!["accepted", "executing", "cancel_requested", "cancelled"]
    );
}

//! The system under test, assembled per test: a real nats-server (testkit, free port, temp
//! store, killable and restartable), a fresh Postgres database, one or more coordinators (API,
//! bus loops, callback deliverer) on loopback, simulated phones (stoppable and restartable on
//! the same port with the same phone model), and the agent daemon, in this process or as its
//! own OS process (`e2e-agent`, killable with SIGKILL). Work goes in through the public HTTP
//! API; callbacks land in a real HTTP receiver.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use phonefarm_agent::daemon::{self, DaemonConfig};
use phonefarm_agent::uplink::publisher::PublisherOptions;
use phonefarm_coordinator::bus::{self, BusConfig};
use phonefarm_coordinator::callbacks::{Backoff, DelivererConfig};
use phonefarm_coordinator::{app, auth, db};
use phonefarm_flows::UiConfig;
use phonefarm_phonemodel::{Action, Phone};
use phonefarm_phonesim::SimConfig;
use phonefarm_testkit::{NatsServer, TestDb, wait_until};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const AGENT_ID: &str = "rack-e2e";

fn packs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../flowpacks"))
}

/// The agent's publish timings, scaled to the tests' 6 s lease as production's are to its 60 s
/// one: with the defaults (5 s ack timeout, backoff up to 5 s) the first publish after a NATS
/// outage could come ~10 s after the server is back, and the coordinator, which judges leases
/// again one lease after it hears NATS, expired healthy runs (seen in CI: a run whose journaled
/// milestones arrived after its lease lapsed).
pub fn e2e_publisher() -> PublisherOptions {
    PublisherOptions {
        ack_timeout: Duration::from_secs(1),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    }
}

/// How to build the system.
#[derive(Debug, Clone)]
pub struct Options {
    pub phones: usize,
    pub replicas: usize,
    /// Agents the phones are split over (the first is `AGENT_ID`, the others `AGENT_ID-2`,
    /// …).
    pub agents: usize,
    /// Run each agent as its own OS process (`e2e-agent`) instead of a task of this process.
    pub agent_process: bool,
    pub lease: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// The agents' production timings (presence and heartbeats every 10 s, a health probe of
    /// each phone every 30 s, UI polls every 500 ms) and the coordinator's 30 s offline
    /// horizon, instead of the tests' fast ones: for benches, where a probe of every phone
    /// every 500 ms would take much of the CPU.
    pub production_timings: bool,
}

impl Options {
    pub fn phones(phones: usize) -> Self {
        Self {
            phones,
            replicas: 1,
            agents: 1,
            agent_process: false,
            lease: Duration::from_secs(6),
            retry_base: Duration::from_millis(300),
            retry_max: Duration::from_secs(2),
            production_timings: false,
        }
    }
}

/// One coordinator replica: API on loopback plus the bus loops and the deliverer.
pub struct Coordinator {
    pub base: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Coordinator {
    /// Stops it (as a redeploy would) and waits until its loops have ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        let ended = tokio::time::timeout(Duration::from_secs(30), task).await;
        assert!(ended.is_ok(), "coordinator did not stop in time");
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A simulated phone whose ADB endpoint can go away and come back on the same port, with the
/// same phone model (its screens, logs and account).
pub struct SimPhone {
    pub addr: std::net::SocketAddr,
    pub phone: Arc<Mutex<Phone>>,
    config: Arc<SimConfig>,
    serving: Option<(CancellationToken, JoinHandle<()>)>,
}

impl SimPhone {
    async fn start(serial: &str) -> Self {
        let config = SimConfig::with_serial(serial);
        let phone = Arc::new(Mutex::new(Phone::new(config.identity.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut s = Self {
            addr: listener.local_addr().unwrap(),
            phone,
            config: Arc::new(config),
            serving: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let token = CancellationToken::new();
        let task = tokio::spawn(phonefarm_phonesim::serve(
            listener,
            self.phone.clone(),
            self.config.clone(),
            token.clone(),
        ));
        self.serving = Some((token, task));
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The phone drops off: listener closed, every ADB connection cut.
    pub async fn unplug(&mut self) {
        if let Some((token, task)) = self.serving.take() {
            token.cancel();
            let _ = task.await;
        }
    }

    /// The phone is back on the same address.
    pub async fn plug(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("the phone's port is free again");
        self.serve(listener);
    }

    pub fn actions(&self) -> Vec<Action> {
        self.phone.lock().unwrap().actions().to_vec()
    }

    /// Queries searched on this phone, in order.
    pub fn searches(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Searched { query } => Some(query),
                _ => None,
            })
            .collect()
    }

    pub fn likes(&self) -> usize {
        self.actions()
            .iter()
            .filter(|a| matches!(a, Action::Liked { .. }))
            .count()
    }
}

impl Drop for SimPhone {
    fn drop(&mut self) {
        if let Some((token, _)) = &self.serving {
            token.cancel();
        }
    }
}

/// The agent daemons, in this process or as child processes.
enum Agent {
    Task(CancellationToken),
    Processes(Vec<Child>),
}

impl Drop for Agent {
    fn drop(&mut self) {
        match self {
            Agent::Task(t) => t.cancel(),
            Agent::Processes(children) => {
                for c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

pub struct System {
    pub http: reqwest::Client,
    pub key: String,
    pub callbacks: Arc<Mutex<Vec<Value>>>,
    pub callback_url: String,
    pub coordinators: Vec<Coordinator>,
    pub sims: Vec<SimPhone>,
    pub nats: NatsServer,
    pub options: Options,
    agent: Option<Agent>,
    agent_starts: usize,
    state: tempfile::TempDir,
    db: TestDb,
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

async fn start_coordinator(db_url: &str, nats_url: String, o: &Options) -> Coordinator {
    let pool = db::connect(db_url).await.unwrap();
    let mut c = BusConfig::new(nats_url);
    c.lease = o.lease;
    c.accept_timeout = Duration::from_secs(10);
    c.offline_after = Duration::from_secs(if o.production_timings { 30 } else { 5 });
    c.retry_base = o.retry_base;
    c.retry_max = o.retry_max;
    c.dispatch_interval = Duration::from_millis(200);
    c.sweep_interval = Duration::from_millis(200);
    let bus = bus::connect(c).await.expect("bus connects");
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
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app::run_with_bus(
        listener,
        pool,
        settings,
        Some(bus),
        shutdown.clone(),
    ));
    Coordinator {
        base,
        shutdown,
        task,
    }
}

impl System {
    pub async fn start(options: Options) -> System {
        let nats = NatsServer::start();
        let tdb = TestDb::create().await;
        let pool = db::connect(&tdb.url).await.unwrap();
        db::MIGRATOR.run(&pool).await.unwrap();
        let key = auth::generate_key();
        db::api_keys::insert(&pool, "e2e", &auth::hash_key(&key), "pf_", "admin", None)
            .await
            .unwrap();
        pool.close().await;
        let mut coordinators = Vec::new();
        for _ in 0..options.replicas.max(1) {
            coordinators.push(start_coordinator(&tdb.url, nats.url(), &options).await);
        }
        let mut sims = Vec::new();
        for i in 1..=options.phones {
            sims.push(SimPhone::start(&format!("SIM000{i}")).await);
        }
        let (callback_url, callbacks) = receiver().await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut sys = System {
            http,
            key,
            callbacks,
            callback_url,
            coordinators,
            sims,
            nats,
            options,
            agent: None,
            agent_starts: 0,
            state: tempfile::tempdir().unwrap(),
            db: tdb,
        };
        sys.start_agent();
        sys.wait_phones_online().await;
        for i in 1..=sys.sims.len() {
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

    /// Starts the agent (again) on the same state directory (or the agents, see
    /// [`Options::agents`]: the first is `AGENT_ID` in `<state>/agent`, the others
    /// `AGENT_ID-2`, … in `<state>/<id>`).
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is running");
        let tcp: Vec<String> = self.sims.iter().map(SimPhone::address).collect();
        self.agent_starts += 1;
        let agents = self.options.agents.max(1);
        let per_agent = tcp.len().div_ceil(agents).max(1);
        // An agent without phones still starts (it reports an empty inventory).
        let groups: Vec<&[String]> = if tcp.is_empty() {
            vec![&[]]
        } else {
            tcp.chunks(per_agent).collect()
        };
        let ids = groups.iter().enumerate().map(|(j, _)| {
            if j == 0 {
                (AGENT_ID.to_string(), self.state.path().join("agent"))
            } else {
                let id = format!("{AGENT_ID}-{}", j + 1);
                let dir = self.state.path().join(&id);
                (id, dir)
            }
        });
        let agent = if self.options.agent_process {
            let mut children = Vec::new();
            for ((id, dir), phones) in ids.zip(&groups) {
                let log = std::fs::File::create(
                    self.state
                        .path()
                        .join(format!("{id}-{}.log", self.agent_starts)),
                )
                .unwrap();
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_e2e-agent"));
                cmd.args(["--agent-id", &id, "--nats-url", &self.nats.url()])
                    .arg("--state-dir")
                    .arg(&dir)
                    .arg("--flow-packs")
                    .arg(packs_dir())
                    .env(
                        "RUST_LOG",
                        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log));
                for t in *phones {
                    cmd.args(["--tcp", t]);
                }
                if self.options.production_timings {
                    let d = DaemonConfig::new(String::new(), String::new(), PathBuf::new());
                    for (flag, value) in [
                        ("--presence-ms", d.presence_interval),
                        ("--heartbeat-ms", d.heartbeat_interval),
                        ("--probe-ms", d.probe_interval),
                        ("--busy-retry-ms", d.busy_retry),
                        ("--ui-poll-ms", d.ui.poll_interval),
                    ] {
                        cmd.args([flag, &value.as_millis().to_string()]);
                    }
                }
                children.push(cmd.spawn().expect("e2e-agent starts"));
            }
            Agent::Processes(children)
        } else {
            let token = CancellationToken::new();
            for ((id, dir), phones) in ids.zip(&groups) {
                let mut c = DaemonConfig::new(id, self.nats.url(), dir);
                c.tcp = phones.to_vec();
                c.flow_packs_dir = Some(packs_dir());
                if !self.options.production_timings {
                    c.presence_interval = Duration::from_millis(500);
                    c.heartbeat_interval = Duration::from_secs(1);
                    c.probe_interval = Duration::from_millis(500);
                    c.busy_retry = Duration::from_millis(300);
                    c.ui = UiConfig {
                        poll_interval: Duration::from_millis(100),
                        ..UiConfig::default()
                    };
                }
                c.publisher = e2e_publisher();
                tokio::spawn(daemon::run(c, token.clone()));
            }
            Agent::Task(token)
        };
        self.agent = Some(agent);
    }

    /// The system's database (benches read timings from it).
    #[allow(dead_code, reason = "the dispatch bench's figures; no test needs it")]
    pub fn db_url(&self) -> &str {
        &self.db.url
    }

    /// The agent processes' pids (none for in-process agents).
    #[allow(
        dead_code,
        reason = "the dispatch bench's CPU figures; no test needs it"
    )]
    pub fn agent_pids(&self) -> Vec<u32> {
        match &self.agent {
            Some(Agent::Processes(children)) => children.iter().map(Child::id).collect(),
            _ => Vec::new(),
        }
    }

    /// SIGKILLs the agent processes: no shutdown, no flush, their runs die mid-step.
    pub fn kill_agent(&mut self) {
        match self.agent.take() {
            Some(Agent::Processes(ref mut children)) => {
                for c in children {
                    c.kill().expect("SIGKILL the agent");
                    let status = c.wait().unwrap();
                    assert!(!status.success(), "killed, not exited: {status}");
                }
            }
            Some(Agent::Task(_)) => {}
            None => panic!("no agent running"),
        }
    }

    /// Stops replica `i` (its API, bus loops and deliverer end), waits `gap` with no
    /// replacement, then starts a new coordinator in its place on the same database and NATS.
    pub async fn restart_coordinator(&mut self, i: usize, gap: Duration) {
        let placeholder = Coordinator {
            base: String::new(),
            shutdown: CancellationToken::new(),
            task: tokio::spawn(async { Ok(()) }),
        };
        let old = std::mem::replace(&mut self.coordinators[i], placeholder);
        old.stop().await;
        tokio::time::sleep(gap).await;
        let url = self.db.url.clone();
        self.coordinators[i] = start_coordinator(&url, self.nats.url(), &self.options).await;
    }

    pub async fn wait_phones_online(&self) {
        wait_until(
            "every phone online in GET /phones",
            Duration::from_secs(90),
            || async {
                let phones = self.get("/phones").await;
                phones["phones"].as_array().is_some_and(|p| {
                    p.iter().filter(|x| x["state"] == "online").count() == self.sims.len()
                })
            },
        )
        .await;
    }

    fn base(&self, replica: usize) -> &str {
        &self.coordinators[replica].base
    }

    pub async fn get(&self, path: &str) -> Value {
        self.get_via(0, path).await
    }

    pub async fn get_via(&self, replica: usize, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base(replica)))
            .bearer_auth(&self.key)
            .send()
            .await;
        match r {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    pub async fn put(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .put(format!("{}{path}", self.base(0)))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_via(0, path, body).await
    }

    pub async fn post_via(&self, replica: usize, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base(replica)))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn enqueue(&self, body: Value) -> String {
        self.enqueue_via(0, body).await
    }

    pub async fn enqueue_via(&self, replica: usize, body: Value) -> String {
        let (status, r) = self
            .post_via(replica, "/capability-requests/enqueue", &body)
            .await;
        assert_eq!(status, 202, "{r}");
        r["process_id"].as_str().unwrap().to_string()
    }

    /// Polls `GET /processes/{id}` until its status is `want`; panics if it ends otherwise.
    pub async fn wait_status(&self, id: &str, want: &str, deadline: Duration) -> Value {
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

    /// The (only) queue item of a process.
    pub async fn item_of(&self, process_id: &str) -> String {
        let p = self.get(&format!("/processes/{process_id}")).await;
        p["linked_ids"]["queue_item_ids"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no queue item: {p}"))
            .to_string()
    }

    pub async fn item(&self, queue_item_id: &str) -> Value {
        self.get(&format!("/queue-items/{queue_item_id}")).await
    }

    /// Waits until the item's run is watching a video (mid-run: past search, dwelling).
    pub async fn wait_watching(&self, queue_item_id: &str) {
        wait_until(
            "the run watching a video",
            Duration::from_secs(90),
            || async {
                let item = self.item(queue_item_id).await;
                item["history"].as_array().is_some_and(|h| {
                    h.iter().any(|e| {
                        e["kind"] == "step_started"
                            && e["detail"]["step"]
                                .as_str()
                                .is_some_and(|s| s.starts_with("watch"))
                    })
                })
            },
        )
        .await;
    }

    /// `(sequence, milestone)` of every callback received for a process, sorted.
    pub fn milestones(&self, id: &str) -> Vec<(i64, String)> {
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
        // Callbacks are delivered at least once: a redelivery (same sequence, same milestone,
        // e.g. a 200 that reached the relay after its timeout) is one callback. Two callbacks
        // with different sequences stay two.
        v.dedup();
        v
    }

    /// Waits for the callback `milestone`, then checks the callbacks are exactly `want`, in
    /// order, with strictly increasing sequence.
    pub async fn assert_milestones(&self, id: &str, want: &[&str]) {
        let last = *want.last().unwrap();
        wait_until(
            &format!("the {last} callback of {id}"),
            Duration::from_secs(30),
            || async { self.milestones(id).iter().any(|(_, m)| m == last) },
        )
        .await;
        let ms = self.milestones(id);
        let names: Vec<&str> = ms.iter().map(|(_, m)| m.as_str()).collect();
        if names != want {
            // What the attempts did, for whoever reads the failure.
            let item = self.item(&self.item_of(id).await).await;
            panic!(
                "{id}: milestones {ms:?}, expected {want:?}; attempts {}; history {}",
                item["attempts"], item["history"]
            );
        }
        assert!(ms.windows(2).all(|w| w[0].0 < w[1].0), "{ms:?}");
    }
}

impl Drop for System {
    /// A failing test shows the agent processes' logs (a process agent logs to a file).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.state.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                if let Ok(text) = std::fs::read_to_string(&log) {
                    let tail: Vec<&str> = text.lines().rev().take(80).collect();
                    eprintln!("--- {} (last lines) ---", log.display());
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// A capability request body.
pub fn request(
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

/// A `keyword_warmup` on `account` (queue routing).
pub fn warmup(sys: &System, id: &str, account: &str, inputs: Value) -> Value {
    request(
        id,
        "keyword_warmup",
        "unattended",
        json!({"routing": "queue", "account_id": account}),
        inputs,
        &sys.callback_url,
    )
}

/// The agent events of one attempt in the item's history: `(seq, kind)` in seq order.
pub fn attempt_events(item: &Value, attempt: i64) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = item["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["source"] == "agent" && e["attempt"] == attempt)
                .map(|e| {
                    (
                        e["seq"].as_i64().unwrap_or(-1),
                        e["kind"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl System {
    /// The item, checked with [`assert_gapless`] for `attempt` at once: the ingester applies a
    /// run's events in seq order, so once its `Finished` is applied (the item is over) every
    /// earlier event is, even when they reached the coordinator after later ones (replicas
    /// sharing the event consumer, redeliveries after a NATS outage).
    pub async fn gapless(&self, queue_item_id: &str, attempt: i64) -> Value {
        let item = self.item(queue_item_id).await;
        assert_gapless(&item, attempt);
        item
    }
}

/// Every event of the attempt is there once: seq 1..=n without a gap, `accepted` first and
/// `finished` last.
pub fn assert_gapless(item: &Value, attempt: i64) {
    let evs = attempt_events(item, attempt);
    let seqs: Vec<i64> = evs.iter().map(|(s, _)| *s).collect();
    let want: Vec<i64> = (1..=evs.len() as i64).collect();
    assert_eq!(seqs, want, "attempt {attempt}: {evs:?}");
    assert_eq!(
        evs.first().map(|e| e.1.as_str()),
        Some("accepted"),
        "{evs:?}"
    );
    assert_eq!(
        evs.last().map(|e| e.1.as_str()),
        Some("finished"),
        "{evs:?}"
    );
}

/// Now, as the API writes timestamps (RFC 3339, milliseconds, UTC: they sort as strings).
pub fn now() -> String {
    phonefarm_coordinator::domain::time::fmt(phonefarm_coordinator::domain::time::now_ms())
}

/// Kinds of the agent events of attempt `n` that the agent stamped within `[from, to]`.
pub fn events_between(item: &Value, n: i64, from: &str, to: &str) -> Vec<String> {
    item["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["source"] == "agent" && e["attempt"] == n)
                .filter(|e| e["at"].as_str().is_some_and(|at| at >= from && at <= to))
                .map(|e| e["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `attempts[]` entry of attempt `n` in `GET /queue-items/{id}`.
pub fn attempt(item: &Value, n: i64) -> Value {
    item["attempts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["attempt"] == n).cloned())
        .unwrap_or(Value::Null)
}

/// The result of the `finished` event of attempt `n`.
pub fn finished_result(item: &Value, n: i64) -> Value {
    item["history"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|e| e["source"] == "agent" && e["attempt"] == n && e["kind"] == "finished")
                .map(|e| e["detail"]["result"].clone())
        })
        .unwrap_or(Value::Null)
}

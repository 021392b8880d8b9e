//! An enrolled agent end to end, on a real nats-server in operator mode started from the
//! production configuration (TLS with a test CA, the `full` resolver): the coordinator connects
//! with its creds file and CA, the agent with the `.creds` file `agent enroll` wrote; a process
//! runs to `completed`; a signed flow pack is applied and reported, one signed by an unknown
//! key is refused and reported to the coordinator; then the agent is revoked: it is cut off,
//! cannot come back, and it and its phone go offline.

use std::path::PathBuf;
use std::time::Duration;

use phonefarm_agent::daemon::{self, DaemonConfig};
use phonefarm_agent::uplink::packs::PackTrust;
use phonefarm_agent::uplink::{NatsAuth, NatsTls as AgentTls};
use phonefarm_coordinator::bus::{self, BusConfig, NatsCredentials, NatsLink, NatsTls};
use phonefarm_coordinator::fleet_auth::{self, Authority, EnrollOptions};
use phonefarm_coordinator::{app, auth, db, flowpacks};
use phonefarm_flows::UiConfig;
use phonefarm_phonemodel::Phone;
use phonefarm_phonesim::SimConfig;
use phonefarm_testkit::{NatsServer, TestDb, wait_until};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const AGENT: &str = "rack-07";

fn packs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../flowpacks"))
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        match self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn phone_state(&self, phone: &str) -> String {
        let phones = self.get("/phones").await;
        phones["phones"]
            .as_array()
            .and_then(|p| p.iter().find(|x| x["phone_id"] == phone))
            .and_then(|p| p["state"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    async fn agent_online(&self, agent: &str) -> Option<bool> {
        let agents = self.get("/agents").await;
        agents["agents"]
            .as_array()?
            .iter()
            .find(|a| a["agent_id"] == agent)?["online"]
            .as_bool()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_agent_runs_work_and_a_revoked_one_is_cut_off() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let authority = Authority::init(
        &root.path().join("auth"),
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .unwrap();
    let (conf, ca) = phonefarm_testkit::operator::prepare(
        root.path(),
        &root.path().join("auth/server/auth.conf"),
        false,
    );
    let nats = NatsServer::start_with_config(Some(conf));
    let tls = NatsTls {
        ca: Some(ca.ca.clone()),
        client_cert: None,
        required: true,
    };

    let tdb = TestDb::create().await;
    let pool = db::connect(&tdb.url).await.unwrap();
    db::MIGRATOR.run(&pool).await.unwrap();
    let key = auth::generate_key();
    db::api_keys::insert(&pool, "e2e", &auth::hash_key(&key), "pf_", "admin", None)
        .await
        .unwrap();

    // The coordinator: its own creds file and the CA, nothing in the URL.
    let mut config = BusConfig::new(nats.url());
    config.nats_credentials = NatsCredentials::CredsFile(authority.dir.join("coordinator.creds"));
    config.nats_tls = tls.clone();
    config.offline_after = Duration::from_secs(3);
    config.dispatch_interval = Duration::from_millis(200);
    config.sweep_interval = Duration::from_millis(200);
    let bus = bus::connect(config)
        .await
        .expect("the coordinator connects over TLS");
    let js = bus.js.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: format!("http://{}", listener.local_addr().unwrap()),
        key,
    };
    let shutdown = CancellationToken::new();
    let settings = app::Settings {
        ingest_secret: None,
        webhook_secret: None,
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        public_metrics: true,
        deliverer: None,
    };
    tokio::spawn(app::run_with_bus(
        listener,
        pool.clone(),
        settings,
        Some(bus),
        shutdown.clone(),
    ));

    // Enrollment: the creds file the technician copies to the host.
    let enrolled = fleet_auth::enroll(&pool, &authority, AGENT, &EnrollOptions::default())
        .await
        .unwrap();
    let creds = root.path().join("agent.creds");
    fleet_auth::authority::write_secret(&creds, &enrolled.issued.creds()).unwrap();

    // One simulated phone and the agent, trusting one flow-pack publisher.
    let sim = SimConfig::with_serial("SIM0701");
    let phone = std::sync::Arc::new(std::sync::Mutex::new(Phone::new(sim.identity.clone())));
    let phone_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let phone_addr = phone_listener.local_addr().unwrap().to_string();
    let sims = CancellationToken::new();
    tokio::spawn(phonefarm_phonesim::serve(
        phone_listener,
        phone,
        std::sync::Arc::new(sim),
        sims.clone(),
    ));
    let publisher = flowpacks::keygen(&root.path().join("publisher.key")).unwrap();
    let trust = PackTrust::parse(&flowpacks::public_key_text(&publisher)).unwrap();
    let mut c = DaemonConfig::new(AGENT, nats.url(), root.path().join("agent"));
    c.nats_auth = NatsAuth::CredsFile(creds);
    c.nats_tls = AgentTls {
        ca: Some(ca.ca.clone()),
        client_cert: None,
        required: true,
    };
    c.pack_trust = trust;
    c.tcp = vec![phone_addr];
    c.flow_packs_dir = Some(packs_dir());
    c.presence_interval = Duration::from_millis(500);
    c.heartbeat_interval = Duration::from_secs(1);
    c.probe_interval = Duration::from_millis(500);
    c.ui = UiConfig {
        poll_interval: Duration::from_millis(100),
        ..UiConfig::default()
    };
    let agent = CancellationToken::new();
    tokio::spawn(daemon::run(c, agent.clone()));

    wait_until("the phone online", Duration::from_secs(60), || async {
        api.phone_state("SIM0701").await == "online"
    })
    .await;
    let (s, b) = api
        .send(
            reqwest::Method::PUT,
            "/accounts/acc-1",
            &json!({"phone_id": "SIM0701"}),
        )
        .await;
    assert!(s < 300, "{b}");
    let (s, b) = api
        .send(
            reqwest::Method::POST,
            "/capability-requests/enqueue",
            &json!({
                "request_id": "enrolled-1", "capability": "keyword_warmup", "mode": "unattended",
                "target": {"routing": "queue", "account_id": "acc-1"},
                "inputs": {"keywords": ["fitness"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}},
                "callback": {"url": "http://127.0.0.1:9/none"}, "requested_by": {"system": "e2e"}
            }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["process_id"].as_str().unwrap().to_string();
    wait_until(
        "the process completed",
        Duration::from_secs(120),
        || async {
            let p = api.get(&format!("/processes/{id}")).await;
            assert_ne!(p["status"], "failed_terminal", "{p}");
            p["status"] == "completed"
        },
    )
    .await;

    // Flow packs: a signed one applies, one signed by an unknown key is refused, and the
    // coordinator learns both from the agent's report.
    let pack = std::fs::read_to_string(packs_dir().join("tiktok-33.toml"))
        .unwrap()
        .replace("revision = 1", "revision = 2");
    assert!(pack.contains("revision = 2"));
    flowpacks::publish(&pool, &js, &publisher, "tiktok-33.toml", &pack)
        .await
        .expect("published");
    let stranger = flowpacks::keygen(&root.path().join("stranger.key")).unwrap();
    let forged = pack.replace("revision = 2", "revision = 3");
    flowpacks::publish(&pool, &js, &stranger, "forged", &forged)
        .await
        .expect("stored (agents judge the signer)");
    wait_until(
        "the agent's report: revision 2 runs, revision 3 refused",
        Duration::from_secs(30),
        || async {
            let rows = db::flow_packs::agents(&pool).await.unwrap_or_default();
            rows.iter().any(|r| {
                r.agent_id == AGENT
                    && r.running.as_array().is_some_and(|a| {
                        a.iter()
                            .any(|p| p["name"] == "tiktok-33" && p["revision"] == 2)
                    })
                    && r.rejected.as_array().is_some_and(|a| {
                        a.iter().any(|x| {
                            x["key"] == "tiktok-33"
                                && x["reason"] == "untrusted_signer"
                                && x["signer"] == flowpacks::public_key_text(&stranger)
                        })
                    })
            })
        },
    )
    .await;

    // Revocation: cut off within seconds, refused since; the agent and its phone go offline.
    fleet_auth::revoke(&pool, AGENT).await.unwrap();
    let link = NatsLink {
        url: nats.url(),
        credentials: NatsCredentials::None,
        tls,
    };
    fleet_auth::push_account(&pool, &authority, &link)
        .await
        .unwrap();
    wait_until("the agent offline", Duration::from_secs(30), || async {
        api.agent_online(AGENT).await == Some(false)
    })
    .await;
    wait_until("its phone offline", Duration::from_secs(30), || async {
        api.phone_state("SIM0701").await == "offline"
    })
    .await;
    // Nothing it sent after the revocation reached the bucket: its last presence is older than
    // the coordinator's offline horizon, and it stays so.
    let kv = js
        .get_key_value(phonefarm_shared::subjects::AGENTS_BUCKET)
        .await
        .unwrap();
    let last = kv.entry(AGENT).await.unwrap().map(|e| e.created);
    wait_until(
        "no presence for a while after the revocation",
        Duration::from_secs(20),
        || async {
            let now = time::OffsetDateTime::now_utc();
            let again = kv.entry(AGENT).await.unwrap().map(|e| e.created);
            assert_eq!(again, last, "a revoked agent wrote its presence");
            last.is_none_or(|t| now - t > time::Duration::seconds(4))
        },
    )
    .await;
    assert_eq!(api.phone_state("SIM0701").await, "offline");
    agent.cancel();
    sims.cancel();
    shutdown.cancel();
}

//! `spawn_app()`: a coordinator on 127.0.0.1:0 over a fresh migrated database, and a client
//! with one method per endpoint. Callback receivers are real HTTP servers on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use phonefarm_coordinator::callbacks::{Backoff, DelivererConfig};
use phonefarm_coordinator::{app, auth, db};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::wait_until;

/// A fresh database with the coordinator's migrations run, and a pool on it (dropped with
/// its connections when the value is dropped).
pub struct AppDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    _db: crate::TestDb,
}

impl AppDb {
    pub async fn new() -> AppDb {
        Self::on(&crate::admin_url()).await
    }

    /// On the server of `admin` (a private server the test may stop).
    pub async fn on(admin: &str) -> AppDb {
        let guard = crate::TestDb::create_on(admin).await;
        let pool = db::connect(&guard.url)
            .await
            .expect("connect to the test database");
        db::MIGRATOR.run(&pool).await.expect("migrate");
        AppDb {
            name: guard.name.clone(),
            url: guard.url.clone(),
            pool,
            _db: guard,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub db: AppDb,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
}

#[derive(Default, Clone)]
pub struct Options {
    pub ingest_secret: Option<String>,
    pub webhook_secret: Option<String>,
    /// No SSRF allow-list (production behaviour).
    pub no_allow_list: bool,
    /// No API key is created.
    pub no_keys: bool,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(opts: Options) -> TestApp {
    spawn_on(AppDb::new().await, opts).await
}

pub async fn spawn_on(db: AppDb, opts: Options) -> TestApp {
    let admin_key = auth::generate_key();
    if !opts.no_keys {
        db::api_keys::insert(
            &db.pool,
            "test-admin",
            &auth::hash_key(&admin_key),
            "pf_",
            "admin",
            None,
        )
        .await
        .expect("insert admin key");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let allow = if opts.no_allow_list {
        vec![]
    } else {
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    };
    let settings = app::Settings {
        ingest_secret: opts.ingest_secret.map(SecretString::from),
        webhook_secret: opts.webhook_secret.map(SecretString::from),
        allow,
        public_metrics: true,
        deliverer: Some(DelivererConfig {
            poll_interval: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(2),
            backoff: Backoff {
                steps: vec![],
                then: Duration::from_millis(200),
                give_up_after: Duration::from_secs(3600),
                jitter: 0.0,
            },
            ..DelivererConfig::default()
        }),
    };
    tokio::spawn(app::run(
        listener,
        db.pool.clone(),
        settings,
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    TestApp {
        base: format!("http://{addr}"),
        db,
        admin_key,
        client,
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call(
            reqwest::Method::POST,
            path,
            Some(&self.admin_key),
            Some(body),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(reqwest::Method::GET, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.call(
            reqwest::Method::PUT,
            path,
            Some(&self.admin_key),
            Some(body),
        )
        .await
    }

    pub async fn enqueue(&self, body: &Value) -> Resp {
        self.post("/capability-requests/enqueue", body).await
    }

    pub async fn account(&self, account: &str, phone: &str) {
        let r = self
            .put(&format!("/accounts/{account}"), &json!({"phone_id": phone}))
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }

    pub async fn key(&self, name: &str, role: &str, system: Option<&str>) -> String {
        let key = auth::generate_key();
        db::api_keys::insert(
            &self.db.pool,
            name,
            &auth::hash_key(&key),
            "pf_",
            role,
            system,
        )
        .await
        .unwrap();
        key
    }
}

/// A keyword_warmup request on queue routing for `account`.
pub fn keyword_request(request_id: &str, account: &str, callback: &str) -> Value {
    json!({
        "request_id": request_id,
        "capability": "keyword_warmup",
        "mode": "unattended",
        "target": {"routing": "queue", "account_id": account},
        "inputs": {"keywords": ["fitness", "cooking"], "videos_per_keyword": 2},
        "callback": {"url": callback, "metadata": {"campaign": "c-1"}},
        "requested_by": {"system": "ugc-tracker", "user": "ana", "metadata": {}}
    })
}

/// One received callback.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A callback receiver on loopback. `script` gives the status for the n-th request.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(script: fn(usize) -> u16) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = Arc::clone(&got);
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                let n = {
                    let mut g = store.lock().unwrap();
                    g.push(Received { headers, body });
                    g.len() - 1
                };
                StatusCode::from_u16(script(n)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/callback"),
            got,
        }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits (15 s at most) until `n` callbacks came, then returns the bodies received.
    pub async fn wait_bodies(&self, n: usize) -> Vec<Value> {
        wait_until(
            &format!("{n} callbacks"),
            Duration::from_secs(15),
            || async { self.count() >= n },
        )
        .await;
        self.bodies()
    }
}

/// The `milestone` of each callback body, in order.
pub fn milestones(bodies: &[Value]) -> Vec<&str> {
    bodies
        .iter()
        .map(|b| b["milestone"].as_str().unwrap())
        .collect()
}

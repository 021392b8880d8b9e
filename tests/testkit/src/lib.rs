//! The one test harness of the workspace: a real `nats-server` per test on a free port with a
//! temp store (killed on drop, restartable on the same port and store to simulate an outage), a
//! fresh Postgres database per test (dropped afterwards), free ports and bounded waits
//! (`wait_until`, `wait_for`); `coordinator` (feature `coordinator`): the coordinator spawned
//! over a fresh migrated database, with or without its bus, a client with one method per
//! endpoint, callback receivers and a simulated agent; `bench`: the figures the benches print;
//! `webdriver` (feature `browser`): Debian's chromium over WebDriver for the console's tests.

use std::future::Future;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

pub mod bench;
#[cfg(feature = "coordinator")]
pub mod coordinator;
pub mod operator;
pub mod proxy;
#[cfg(feature = "browser")]
pub mod webdriver;

/// A free TCP port on 127.0.0.1 (the listener is closed again before returning).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `cond` until it holds or `deadline` passes (then panics naming `what`).
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `cond` comes to hold within `deadline` (for "this does not happen" checks too).
pub async fn eventually<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it yields a value, which it returns; panics naming `what` after
/// `deadline`.
pub async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The nats-server binary (`NATS_SERVER` overrides).
pub fn nats_server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        })
        .expect("nats-server is installed (apt-get install nats-server)")
}

/// One `nats-server -js` on a free port with its own store directory.
pub struct NatsServer {
    pub port: u16,
    pub store: tempfile::TempDir,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        Self::start_with_config(None)
    }

    /// Starts with a configuration file (the command line's port and store override it).
    pub fn start_with_config(config: Option<PathBuf>) -> NatsServer {
        Self::start_with_env(config, Vec::new())
    }

    /// Starts with a configuration file and environment variables (which the file may use).
    pub fn start_with_env(config: Option<PathBuf>, env: Vec<(String, String)>) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            config,
            env,
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server process's pid while it runs (benches read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (an outage); the store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store, waiting (blocking the thread) until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.spawn();
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "nats-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Self::restart`] for async tests: waits without blocking the runtime, so the clients
    /// under test (reconnecting, re-subscribing) run meanwhile.
    pub async fn restart_async(&mut self) {
        self.spawn();
        let port = self.port;
        wait_until("nats-server to listen", Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    fn spawn(&mut self) {
        self.kill();
        let mut cmd = Command::new(nats_server_bin());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nats-servers routed into one JetStream cluster, each on its own port and store. Clients
/// get no server list from the cluster (`no_advertise`): they use the URLs they are given
/// (tests put proxies in front of some).
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    _configs: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for a cluster that survives one loss) and waits until each listens;
    /// the cluster may still be electing its leaders.
    pub fn start(n: usize) -> NatsCluster {
        let configs = tempfile::tempdir().expect("temp dir");
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let path = configs.path().join(format!("nats-{}.conf", i + 1));
                std::fs::write(
                    &path,
                    format!(
                        "server_name: nats-{n}\ncluster {{\n  name: testkit\n  listen: 127.0.0.1:{port}\n  no_advertise: true\n  routes: [ {list} ]\n}}\n",
                        n = i + 1
                    ),
                )
                .expect("write a node's config");
                NatsServer::start_with_config(Some(path))
            })
            .collect();
        NatsCluster {
            nodes,
            _configs: configs,
        }
    }

    /// Every node's URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The admin database URL (`DATABASE_URL`, default the local `postgres` database).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database, dropped (with its connections) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        Self::create_on(&admin_url()).await
    }

    /// A fresh database on the server of `admin` (an admin URL: a private server of the test).
    pub async fn create_on(admin: &str) -> TestDb {
        let admin = admin.to_owned();
        let name = format!("pf_test_{}", uuid::Uuid::new_v4().simple());
        let pool = PgPool::connect(&admin)
            .await
            .expect("connect to the admin database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create the test database");
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        TestDb { name, url, admin }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin.clone());
        // Drop cannot await: use a short-lived runtime on another thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(pool) = PgPool::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    }
                });
            }
        })
        .join();
    }
}

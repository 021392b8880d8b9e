//! The system the soak runs, the shape of `deploy/local/cluster`: its own Postgres cluster
//! (initdb/pg_ctl in a temporary directory, so it can be restarted), a 3-node nats-server
//! JetStream cluster, 2 coordinator processes (`--nats-replicas 3`), 3 agent processes, each
//! reaching every NATS node through its own TCP proxy (so it can be cut off), 12 simulated
//! phones in this process (half `realistic`; unpluggable), a callback receiver that can be
//! taken down, and an asset server for `post_video`'s videos.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::http::StatusCode;
use phonefarm_phonemodel::Phone;
use phonefarm_phonesim::SimConfig;
use phonefarm_phonesim::model::Behaviour;
use phonefarm_testkit::proxy::Proxy;
use phonefarm_testkit::{NatsCluster, free_port};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PHONES: usize = 12;
pub const AGENTS: usize = 3;
pub const COORDINATORS: usize = 2;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A binary built next to this one (`deploy/local/soak` builds them together).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("no exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build it (cargo build -p {name})",
            p.display()
        );
    }
    Ok(p)
}

/// A Postgres cluster of our own (trust auth on loopback, fsync off: a test database).
pub struct Pg {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Pg {
    fn cmd(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        // initdb and postgres refuse to run as root: run them as the postgres user.
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn start() -> anyhow::Result<Pg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("no /usr/lib/postgresql: install postgresql")?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .context("no pg_ctl under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir()?;
        let pg = Pg {
            port: free_port(),
            dir,
            bin,
        };
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(pg.dir.path()))?;
        }
        run(pg
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(pg.data()))?;
        pg.ctl("start")?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ctl(&self, action: &str) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(self
            .cmd("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("pg.log"))
            .args(["-o", &opts, action]))
    }

    /// Restarts it (fast shutdown: open connections are cut).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.ctl("restart")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.ctl("stop");
    }
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A child process with its command line kept, so it can be killed and started again.
pub struct Proc {
    pub name: String,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, cmd: Vec<String>, env: Vec<(String, String)>, log: PathBuf) -> Self {
        Self {
            name: name.into(),
            cmd,
            env,
            log,
            child: None,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Exited on its own (not killed by us)?
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated phone whose ADB endpoint can go away and come back on the same port.
pub struct SimPhone {
    pub serial: String,
    pub addr: SocketAddr,
    pub phone: Arc<Mutex<Phone>>,
    config: Arc<SimConfig>,
    serving: Option<(CancellationToken, JoinHandle<()>)>,
}

impl SimPhone {
    async fn start(i: usize, seed: u64) -> anyhow::Result<Self> {
        let serial = format!("SIM{:04}", i + 1);
        let profile = if i.is_multiple_of(2) {
            "ideal"
        } else {
            "realistic"
        };
        let mut config = SimConfig::with_serial(&serial)
            .with_profile(Behaviour::named(profile).unwrap_or_default(), 1.0);
        config.model.fault_seed = seed.wrapping_add(i as u64);
        let phone = Arc::new(Mutex::new(config.phone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut s = Self {
            serial,
            addr: listener.local_addr()?,
            phone,
            config: Arc::new(config),
            serving: None,
        };
        s.serve(listener);
        Ok(s)
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

    pub async fn unplug(&mut self) {
        if let Some((token, task)) = self.serving.take() {
            token.cancel();
            let _ = task.await;
        }
    }

    pub async fn plug(&mut self) -> anyhow::Result<()> {
        if self.serving.is_none() {
            let listener = tokio::net::TcpListener::bind(self.addr).await?;
            self.serve(listener);
        }
        Ok(())
    }

    /// Captions of the videos this phone's account posted.
    pub fn posted_captions(&self) -> Vec<String> {
        let phone = self.phone.lock().unwrap_or_else(|e| e.into_inner());
        phone
            .actions()
            .iter()
            .filter_map(|a| match a {
                phonefarm_phonemodel::Action::VideoPosted { caption, .. } => Some(caption.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The callback receiver: records every body; `down` closes its port until `up`.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<(i64, Value)>>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut r = Receiver {
            addr: listener.local_addr()?,
            got: Arc::default(),
            task: None,
        };
        r.serve(listener);
        Ok(r)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let store = Arc::clone(&self.got);
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    store
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((now_ms(), v));
                }
                StatusCode::OK
            }
        });
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/callback", self.addr)
    }

    pub async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    pub async fn up(&mut self) -> anyhow::Result<()> {
        if self.task.is_none() {
            let listener = tokio::net::TcpListener::bind(self.addr).await?;
            self.serve(listener);
        }
        Ok(())
    }
}

/// Serves a small video for `post_video` (HEAD and GET).
async fn asset_server() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "video/mp4")],
            vec![
                0u8, 0, 0, 24, b'f', b't', b'y', b'p', b'm', b'p', b'4', b'2',
            ],
        )
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/video.mp4"))
}

pub struct System {
    pub pg: Pg,
    pub nats: NatsCluster,
    pub coordinators: Vec<Proc>,
    pub bases: Vec<String>,
    pub agents: Vec<Proc>,
    /// proxies[agent][node]
    pub proxies: Vec<Vec<Proxy>>,
    pub phones: Vec<SimPhone>,
    pub receiver: Receiver,
    pub video_url: String,
    pub key: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl System {
    pub async fn start(seed: u64) -> anyhow::Result<System> {
        let dir = tempfile::tempdir()?;
        let pg = Pg::start().context("starting Postgres")?;
        let nats = NatsCluster::start(3);
        let coordinator = sibling("phonefarm-coordinator")?;
        let agent = sibling("phonefarm-agent")?;
        let db_env = vec![("DATABASE_URL".to_string(), pg.url())];
        let out = Command::new(&coordinator)
            .arg("migrate")
            .envs(db_env.iter().cloned())
            .output()?;
        if !out.status.success() {
            bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = Command::new(&coordinator)
            .args(["api-key", "create", "--name", "soak", "--role", "admin"])
            .envs(db_env.iter().cloned())
            .output()?;
        if !out.status.success() {
            bail!("api-key create: {}", String::from_utf8_lossy(&out.stderr));
        }
        let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut coordinators = Vec::new();
        let mut bases = Vec::new();
        for i in 0..COORDINATORS {
            let port = free_port();
            let c = coordinator.display().to_string();
            let args = [
                c.as_str(),
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--nats-url",
                &nats.urls(),
                "--nats-replicas",
                "3",
                "--lease-seconds",
                "20",
                "--accept-timeout-seconds",
                "10",
                "--agent-offline-seconds",
                "8",
                "--callback-allow-cidr",
                "127.0.0.0/8",
            ];
            let mut env = db_env.clone();
            env.push(("RUST_LOG".into(), "info".into()));
            let mut p = Proc::new(
                &format!("coordinator-{}", i + 1),
                args.iter().map(|s| s.to_string()).collect(),
                env,
                dir.path().join(format!("coordinator-{}.log", i + 1)),
            );
            p.start()?;
            coordinators.push(p);
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut phones = Vec::new();
        for i in 0..PHONES {
            phones.push(SimPhone::start(i, seed).await?);
        }
        let mut proxies = Vec::new();
        let mut agents = Vec::new();
        let packs = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../flowpacks"));
        for a in 0..AGENTS {
            let mut mine = Vec::new();
            for node in &nats.nodes {
                mine.push(Proxy::start(SocketAddr::from(([127, 0, 0, 1], node.port))).await?);
            }
            let urls = mine
                .iter()
                .map(|p| format!("nats://{}", p.addr()))
                .collect::<Vec<_>>()
                .join(",");
            let mut args = vec![
                agent.display().to_string(),
                "--state-dir".into(),
                dir.path()
                    .join(format!("agent-{}", a + 1))
                    .display()
                    .to_string(),
            ];
            for p in phones.iter().skip(a * 4).take(4) {
                args.extend(["--tcp".into(), p.addr.to_string()]);
            }
            args.extend(
                [
                    "daemon",
                    "--agent-id",
                    &format!("soak-{}", a + 1),
                    "--nats-url",
                    &urls,
                    "--usb",
                    "false",
                    "--flow-packs",
                    &packs.display().to_string(),
                    "--presence-secs",
                    "1",
                    "--probe-secs",
                    "2",
                    "--heartbeat-secs",
                    "2",
                    "--asset-allow-cidr",
                    "127.0.0.0/8",
                ]
                .map(String::from),
            );
            let mut p = Proc::new(
                &format!("agent-{}", a + 1),
                args,
                vec![("RUST_LOG".into(), "info".into())],
                dir.path().join(format!("agent-{}.log", a + 1)),
            );
            p.start()?;
            agents.push(p);
            proxies.push(mine);
        }
        let receiver = Receiver::start().await?;
        let video_url = asset_server().await?;
        let sys = System {
            pg,
            nats,
            coordinators,
            bases,
            agents,
            proxies,
            phones,
            receiver,
            video_url,
            key,
            http,
            dir,
        };
        sys.wait_healthy(Duration::from_secs(120)).await?;
        for (i, p) in sys.phones.iter().enumerate() {
            let body = serde_json::json!({"phone_id": p.serial});
            let r = sys
                .http
                .put(format!("{}/accounts/acc-{}", sys.bases[0], i + 1))
                .bearer_auth(&sys.key)
                .json(&body)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("PUT /accounts/acc-{}: {}", i + 1, r.status());
            }
        }
        // fyp_warmup is manual-only: SIM0001 is attended.
        let r = sys
            .http
            .put(format!("{}/phones/SIM0001", sys.bases[0]))
            .bearer_auth(&sys.key)
            .json(&serde_json::json!({"attended": true}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PUT /phones/SIM0001: {}", r.status());
        }
        Ok(sys)
    }

    /// Why the system is not whole, that is both coordinators answering and every phone online
    /// (or busy running work); None: it is whole.
    pub async fn unhealthy(&self) -> Option<String> {
        for b in &self.bases {
            let ok = self
                .http
                .get(format!("{b}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                return Some(format!("{b} is not healthy"));
            }
        }
        let phones: Value = match self
            .http
            .get(format!("{}/phones", self.bases[0]))
            .bearer_auth(&self.key)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => return Some(format!("GET /phones: {e}")),
        };
        let not_online: Vec<String> = phones["phones"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter(|x| x["state"] != "online" && x["state"] != "busy")
                    .map(|x| format!("{} {}", x["phone_id"], x["state"]))
                    .collect()
            })
            .unwrap_or_else(|| vec!["no phone list".into()]);
        let listed = phones["phones"].as_array().map_or(0, Vec::len);
        if listed < PHONES || !not_online.is_empty() {
            return Some(format!(
                "{listed} phones listed; not online: {}",
                not_online.join(", ")
            ));
        }
        None
    }

    pub async fn wait_healthy(&self, deadline: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + deadline;
        while let Some(why) = self.unhealthy().await {
            if tokio::time::Instant::now() > until {
                bail!("the system did not become whole within {deadline:?}: {why}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// A process that exited without being killed by the nemesis: its name and log tail.
    pub fn crashed(&mut self) -> Option<String> {
        for p in self.coordinators.iter_mut().chain(self.agents.iter_mut()) {
            if p.exited() {
                return Some(format!(
                    "{} exited; its log ends:\n{}",
                    p.name,
                    p.log_tail(30)
                ));
            }
        }
        None
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

//! Postgres going away: 503 problem JSON, no hang, no half-written process, and recovery by
//! itself. Uses a private Postgres instance the test starts and stops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use phonefarm_testkit::coordinator::app::*;

struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with pg_ctl")
}

fn run_as_postgres(args: &[&str]) {
    let out = Command::new("runuser")
        .arg("-u")
        .arg("postgres")
        .arg("--")
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("pf-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown the private data directory");
        let bin = pg_bin();
        let data = dir.join("data");
        run_as_postgres(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        let pg = PrivatePostgres { dir, bin, port };
        pg.up();
        pg
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let mut all = vec![
            self.bin.join("pg_ctl").to_str().unwrap().to_string(),
            "-D".into(),
            data.to_str().unwrap().into(),
        ];
        all.extend(["-o".into(), opts, "-l".into(), log.to_str().unwrap().into()]);
        all.extend(args.iter().map(|s| s.to_string()));
        run_as_postgres(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn up(&self) {
        self.ctl(&["-w", "start"]);
    }

    fn down(&self) {
        self.ctl(&["-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.dir.join("data").to_str().unwrap_or(""),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

#[tokio::test]
async fn postgres_outage_is_a_503_and_recovers_by_itself() {
    let pg = PrivatePostgres::start();
    let db = AppDb::on(&pg.url()).await;
    let app = spawn_on(db, Options::default()).await;
    app.account("acc-1", "phone-1").await;
    let r = app
        .enqueue(&keyword_request("before", "acc-1", "http://127.0.0.1:9/cb"))
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["process_id"].as_str().unwrap().to_string();

    pg.down();
    let started = Instant::now();
    let r = app
        .enqueue(&keyword_request("during", "acc-1", "http://127.0.0.1:9/cb"))
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["errors"], json!(["dependency_unavailable:postgres"]));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the request hung for {:?}",
        started.elapsed()
    );
    let r = app.get(&format!("/processes/{id}")).await;
    assert_eq!(r.status, 503);
    let r = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        app.call(reqwest::Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );

    pg.up();
    wait_until("the API to recover", Duration::from_secs(30), || async {
        app.get(&format!("/processes/{id}")).await.status == 200
    })
    .await;
    let r = app
        .enqueue(&keyword_request("during", "acc-1", "http://127.0.0.1:9/cb"))
        .await;
    assert_eq!(
        r.status, 202,
        "the request that failed during the outage is accepted once: {:?}",
        r.body
    );
    // Nothing half-written: every process has its items.
    let (orphans,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM processes p WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.process_id = p.process_id)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    app.shutdown.cancel();
}

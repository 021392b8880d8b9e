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

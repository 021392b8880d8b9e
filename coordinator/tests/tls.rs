//! `serve --tls-cert --tls-key`: the coordinator binary serves HTTPS itself (a real request over
//! loopback, certificates from a test CA made with rcgen); and its configuration file, whose
//! values lose to the environment and to flags; the console's session cookie over that HTTPS.

use std::io::Write as _;
use std::time::Duration;

use phonefarm_testkit::coordinator::console::sign_in_raw;
use phonefarm_testkit::operator::TestCa;
use phonefarm_testkit::{TestDb, free_port, wait_until};

fn bin() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"));
    c.env_remove("INGEST_SECRET")
        .env_remove("PHONEFARM_CALLBACK_ALLOW_CIDRS")
        .env_remove("PHONEFARM_CONFIG")
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_https_with_the_given_certificate() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(dir.path());
    let port = free_port();
    let notify = dir.path().join("notify");
    let notified = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    // File < environment < flag: the file's bind and database are overridden, its TLS files
    // and --no-nats apply.
    let config = dir.path().join("coordinator.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(
        f,
        "# the coordinator's file\nbind = \"127.0.0.1:1\"\ndatabase_url = \"postgres://nobody@127.0.0.1:1/file\"\n\
         tls_cert = {:?}\ntls_key = {:?}\nno_nats = true\nlease_seconds = 30",
        dir.path().join("server.pem"),
        dir.path().join("server-key.pem"),
    )
    .unwrap();
    drop(f);
    let mut server = bin()
        .arg("--config")
        .arg(&config)
        .args(["serve", "--database-url", &db.url])
        .env("PHONEFARM_BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/env")
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the coordinator starts");

    let ca_pem = std::fs::read(&ca.ca).unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/healthz");
    wait_until(
        "HTTPS /healthz answers 200",
        Duration::from_secs(60),
        || async {
            https
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        },
    )
    .await;
    assert!(server.try_wait().unwrap().is_none(), "still serving");
    // systemd heard it is ready (Type=notify); no WATCHDOG_USEC, so no pings.
    notified
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = notified.recv(&mut buf).expect("READY=1 on $NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"READY=1");
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");
    // A client that does not trust the CA refuses the server.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    server.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_cookie_is_secure_over_the_coordinators_own_tls() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(dir.path());
    let port = free_port();
    let mut server = bin()
        .args(["--config", "/dev/null", "serve", "--no-nats=true"])
        .args([
            "--database-url",
            &db.url,
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("server.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("server-key.pem"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the coordinator starts");
    let ca_pem = std::fs::read(&ca.ca).unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    wait_until(
        "HTTPS /healthz answers 200",
        Duration::from_secs(60),
        || async {
            https
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        },
    )
    .await;
    // `serve` migrated the database: an admin key can go in.
    let pool = phonefarm_coordinator::db::connect(&db.url).await.unwrap();
    let key = phonefarm_coordinator::auth::generate_key();
    let hash = phonefarm_coordinator::auth::hash_key(&key);
    phonefarm_coordinator::db::api_keys::insert(&pool, "tls-admin", &hash, "pf_", "admin", None)
        .await
        .unwrap();

    let r = sign_in_raw(&https, &base, &key).await;
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    let set = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let attributes: Vec<&str> = set.split(';').map(str::trim).skip(1).collect();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(attributes.contains(&flag), "{flag} missing: {set}");
    }
    // No proxy header said so: the coordinator knows the connection is its own TLS.
    let cookie = set.split(';').next().unwrap().to_string();
    let page = https
        .get(format!("{base}/ui/fleet"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK, "the session works");
    pool.close().await;
    server.kill().await.unwrap();
}

#[tokio::test]
async fn bad_tls_files_and_config_keys_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(dir.path());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "serve".into(),
                "--tls-cert".into(),
                dir.path().join("server.pem").display().to_string(),
                "--tls-key".into(),
                dir.path().join("absent.pem").display().to_string(),
            ],
            "cannot read the TLS key",
        ),
        (
            vec![
                "serve".into(),
                "--tls-cert".into(),
                dir.path().join("server.pem").display().to_string(),
                "--tls-key".into(),
                ca.client_key.display().to_string(),
            ],
            "do not go together",
        ),
    ];
    for (args, want) in cases {
        let out = bin()
            .args(["--config", "/dev/null"])
            .args(&args)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    for (text, want) in [
        ("lease_secondss = 30\n", "key `lease_secondss`: unknown key"),
        (
            "lease_seconds = 2\n",
            "key `lease_seconds`: invalid value \"2\"",
        ),
        ("bind = \"here\"\n", "key `bind`: invalid value \"here\""),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let out = bin()
            .arg("--config")
            .arg(&config)
            .args(["serve"])
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{text}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

//! The coordinator binary given NATS credentials as their own options connects, and nothing
//! it logs (at debug level, async-nats included) contains the secret; a URL carrying
//! credentials is refused with a one-line cause that does not contain them either.

use std::process::{Command, Stdio};
use std::time::Duration;

use phonefarm_testkit::coordinator::bus::*;

const PASSWORD: &str = "pw-5d1c0e7a-secret";

fn coordinator(db: &str, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"));
    c.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "debug")
        .env_remove("INGEST_SECRET")
        .env_remove("PHONEFARM_NATS_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[tokio::test]
async fn a_coordinator_given_nats_credentials_connects_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users: [ {{ user: coordinator, password: \"{PASSWORD}\" }} ] }}\n"
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with_config(Some(conf));
    let db = AppDb::new().await;
    let secret_file = dir.path().join("nats-password");
    std::fs::write(&secret_file, format!("{PASSWORD}\n")).unwrap();

    // Credentials in the URL: refused before anything starts, the secret not repeated.
    let in_url = format!("nats://coordinator:{PASSWORD}@127.0.0.1:{}", nats.port);
    let out = coordinator(&db.url, free_port())
        .env("NATS_URL", &in_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("carries credentials"), "{err}");
    assert!(!err.contains(PASSWORD), "the secret was printed: {err}");

    // As options: the user and a password file.
    let port = free_port();
    let mut child = coordinator(&db.url, port)
        .env("NATS_URL", nats.url())
        .env("PHONEFARM_NATS_USER", "coordinator")
        .env("PHONEFARM_NATS_PASSWORD_FILE", &secret_file)
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_until(
        "the coordinator is ready with NATS",
        Duration::from_secs(30),
        || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                http.get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.contains("NATS connection up"), "{logs}");
    assert!(
        !logs.contains(PASSWORD),
        "a log line holds the NATS password"
    );
}

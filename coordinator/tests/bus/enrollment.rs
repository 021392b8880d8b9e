//! Enrollment, revocation and expiry of agents' NATS credentials against a real nats-server
//! in operator mode (the production configuration, TLS, the `full` resolver): a revoked agent
//! is disconnected within seconds and refused afterwards (also after a server restart) without
//! restarting nats-server; an expired credential is refused, and one that expires while
//! connected is disconnected; a revocation recorded while the push failed takes effect when a
//! coordinator starts serving; the account signing key rotates and retires; TLS with client
//! certificates; the CLI enrolls, lists and revokes.

use std::process::Command;
use std::time::Duration;

use async_nats::connection::State;
use phonefarm_coordinator::bus::NatsCredentials;
use phonefarm_coordinator::fleet_auth::{self, EnrollOptions, FleetAuthError, permissions};

use crate::operator::OperatorNats;
use phonefarm_testkit::coordinator::bus::*;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn can_publish(client: &async_nats::Client, agent_id: &str) -> bool {
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    match js
        .publish(phonefarm_shared::subjects::inventory(agent_id), "x".into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_revoked_agent_is_cut_off_within_seconds_and_refused() {
    let mut op = OperatorNats::start().await;
    let db = AppDb::new().await;
    let coord = op.connect_coordinator().await;
    phonefarm_coordinator::bus::bootstrap::ensure(
        &async_nats::jetstream::new(coord.clone()),
        &test_config(op.url()),
    )
    .await
    .unwrap();
    let first = fleet_auth::enroll(
        &db.pool,
        &op.authority,
        "rack-07",
        &EnrollOptions::default(),
    )
    .await
    .unwrap();
    let creds = first.issued.creds();
    let agent = op.connect_agent(&creds, "rack-07").await.expect("connects");
    assert!(can_publish(&agent, "rack-07").await);

    // Enrolling again without --replace is refused while the credential is in force.
    assert!(matches!(
        fleet_auth::enroll(
            &db.pool,
            &op.authority,
            "rack-07",
            &EnrollOptions::default()
        )
        .await,
        Err(FleetAuthError::InForce { .. })
    ));
    assert!(matches!(
        fleet_auth::enroll(
            &db.pool,
            &op.authority,
            "rack.07",
            &EnrollOptions::default()
        )
        .await,
        Err(FleetAuthError::BadAgentId(_))
    ));

    let revoked = fleet_auth::revoke(&db.pool, "rack-07").await.unwrap();
    assert_eq!(revoked, std::slice::from_ref(&first.issued.user_key));
    let link = op.link(NatsCredentials::None);
    fleet_auth::push_account(&db.pool, &op.authority, &link)
        .await
        .expect("the resolver takes the account JWT");
    wait_until(
        "the revoked agent is disconnected",
        Duration::from_secs(10),
        || {
            let state = agent.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
    assert!(!can_publish(&agent, "rack-07").await);
    assert!(
        op.connect_agent(&creds, "rack-07").await.is_err(),
        "a revoked credential connected again"
    );
    // The coordinator is untouched; a second revoke has nothing to do.
    assert_eq!(coord.connection_state(), State::Connected);
    assert!(matches!(
        fleet_auth::revoke(&db.pool, "rack-07").await,
        Err(FleetAuthError::NothingToRevoke(_))
    ));

    // The resolver keeps the pushed JWT: still refused after a server restart.
    op.nats.restart_async().await;
    assert!(op.connect_agent(&creds, "rack-07").await.is_err());

    // Enrolled anew, the agent gets a new key that works.
    let second = fleet_auth::enroll(
        &db.pool,
        &op.authority,
        "rack-07",
        &EnrollOptions::default(),
    )
    .await
    .unwrap();
    assert_ne!(second.issued.user_key, first.issued.user_key);
    let again = op
        .connect_agent(&second.issued.creds(), "rack-07")
        .await
        .expect("the new credential connects");
    assert!(can_publish(&again, "rack-07").await);

    // --replace revokes the credential it replaces.
    let third = fleet_auth::enroll(
        &db.pool,
        &op.authority,
        "rack-07",
        &EnrollOptions {
            valid_for: None,
            replace: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        third.replaced,
        std::slice::from_ref(&second.issued.user_key)
    );
    fleet_auth::push_account(&db.pool, &op.authority, &link)
        .await
        .unwrap();
    wait_until(
        "the replaced credential is disconnected",
        Duration::from_secs(10),
        || {
            let state = again.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
}

#[tokio::test]
async fn expired_credentials_are_refused_and_cut_off() {
    let op = OperatorNats::start().await;
    let t = now();
    let issue = |iat: i64, exp: i64| {
        op.authority
            .issue(
                "rack-x",
                permissions::agent_publish("rack-x"),
                permissions::agent_subscribe("rack-x"),
                iat,
                Some(exp),
            )
            .unwrap()
            .creds()
    };
    let expired = issue(t - 100, t - 10);
    assert!(
        op.connect_agent(&expired, "rack-x").await.is_err(),
        "an expired credential connected"
    );
    // One that expires while connected: the server closes the connection then.
    let short = issue(t, t + 3);
    let client = op
        .connect_agent(&short, "rack-x")
        .await
        .expect("a valid credential connects");
    wait_until(
        "the expired connection is closed",
        Duration::from_secs(20),
        || {
            let state = client.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
    // The server closes it on a timer and checks new connections against whole seconds: a
    // connect within the second of expiry may still pass, so look until refused.
    wait_until(
        "the expired credential is refused",
        Duration::from_secs(10),
        || async { op.connect_agent(&short, "rack-x").await.is_err() },
    )
    .await;
}

fn cli(args: &[&str], db: &str, op: &OperatorNats) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("NATS_URL", op.url())
        .env("PHONEFARM_NATS_AUTH_DIR", &op.authority.dir)
        .env("PHONEFARM_NATS_CA", &op.ca.ca)
        .env("PHONEFARM_NATS_CREDS", op.coordinator_creds())
        .output()
        .expect("run the coordinator binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_cli_enrolls_lists_and_revokes_agents() {
    let op = OperatorNats::start().await;
    let db = AppDb::new().await;
    let out_dir = tempfile::tempdir().unwrap();
    let creds = out_dir.path().join("rack-07.creds");
    let c = creds.to_str().unwrap();

    let out = cli(&["agent", "enroll", "rack-07", "--out", c], &db.url, &op);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("enrolled rack-07"),
        "{}",
        text(&out.stdout)
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&creds).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let file = std::fs::read_to_string(&creds).unwrap();
    assert!(file.contains("-----BEGIN NATS USER JWT-----"));
    let (_, seed) = fleet_auth::jwt::parse_creds(&file).unwrap();
    assert!(
        !text(&out.stdout).contains(&seed) && !text(&out.stderr).contains(&seed),
        "the seed was printed"
    );
    // The file is never overwritten, and an enrolled agent is not enrolled twice.
    let again = cli(&["agent", "enroll", "rack-07", "--out", c], &db.url, &op);
    assert!(!again.status.success());
    let other = out_dir.path().join("second.creds");
    let twice = cli(
        &[
            "agent",
            "enroll",
            "rack-07",
            "--out",
            other.to_str().unwrap(),
        ],
        &db.url,
        &op,
    );
    assert!(!twice.status.success());
    assert!(
        text(&twice.stderr).contains("--replace"),
        "{}",
        text(&twice.stderr)
    );
    assert!(!other.exists());
    let bad = cli(&["agent", "enroll", "rack.07"], &db.url, &op);
    assert!(!bad.status.success());
    assert_eq!(
        text(&bad.stderr).lines().count(),
        1,
        "{}",
        text(&bad.stderr)
    );

    // The agent connects and writes its presence: `agent list` shows it seen.
    let agent = op.connect_agent(&file, "rack-07").await.expect("connects");
    let coord = op.connect_coordinator().await;
    phonefarm_coordinator::bus::bootstrap::ensure(
        &async_nats::jetstream::new(coord),
        &test_config(op.url()),
    )
    .await
    .unwrap();
    let presence = phonefarm_shared::encode(&phonefarm_shared::Presence {
        agent_id: "rack-07".into(),
        version: "1".into(),
        host: "h".into(),
        started_at_unix_ms: 1,
        phones: 0,
    });
    async_nats::jetstream::new(agent.clone())
        .publish("$KV.pf_agents.rack-07", presence.into())
        .await
        .unwrap()
        .await
        .expect("presence stored");
    let list = cli(&["agent", "list"], &db.url, &op);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    let line = listed
        .lines()
        .find(|l| l.starts_with("rack-07 "))
        .unwrap_or_else(|| panic!("rack-07 listed: {listed}"));
    assert!(line.contains("active"), "{line}");
    assert!(
        !line.trim_end().ends_with("never"),
        "last seen from presence: {line}"
    );

    let revoke = cli(&["agent", "revoke", "rack-07"], &db.url, &op);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    wait_until(
        "the revoked agent is disconnected",
        Duration::from_secs(10),
        || {
            let state = agent.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
    let list = cli(&["agent", "list"], &db.url, &op);
    assert!(
        text(&list.stdout)
            .lines()
            .any(|l| l.starts_with("rack-07 ") && l.contains("revoked")),
        "{}",
        text(&list.stdout)
    );
}

#[tokio::test]
async fn the_coordinator_connects_over_tls_with_a_client_certificate() {
    let op = OperatorNats::start_with(true).await;
    let mut config = test_config(op.url());
    config.nats_credentials = NatsCredentials::CredsFile(op.coordinator_creds());
    config.nats_tls = phonefarm_coordinator::bus::NatsTls {
        ca: Some(op.ca.ca.clone()),
        client_cert: None,
        required: false,
    };
    assert!(
        phonefarm_coordinator::bus::connect(config.clone())
            .await
            .is_err(),
        "connected without the client certificate the server asks for"
    );
    config.nats_tls.client_cert = Some((op.ca.client_cert.clone(), op.ca.client_key.clone()));
    let bus = phonefarm_coordinator::bus::connect(config)
        .await
        .expect("connects and bootstraps over TLS");
    assert!(bus.connected());
    assert!(bus.client.server_info().tls_required);
}

#[tokio::test]
async fn rotating_the_account_signing_key_keeps_old_users_until_it_is_retired() {
    let mut op = OperatorNats::start().await;
    let db = AppDb::new().await;
    phonefarm_coordinator::bus::bootstrap::ensure(
        &async_nats::jetstream::new(op.connect_coordinator().await),
        &test_config(op.url()),
    )
    .await
    .unwrap();
    let old_key = op.authority.signing_key();
    let old = fleet_auth::enroll(&db.pool, &op.authority, "rack-a", &EnrollOptions::default())
        .await
        .unwrap();
    let a = op
        .connect_agent(&old.issued.creds(), "rack-a")
        .await
        .expect("connects");
    let link = op.link(NatsCredentials::None);

    let new_key = op.authority.rotate_account_signing_key().unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(
        op.authority.public.account_signing_keys,
        [new_key.clone(), old_key.clone()]
    );
    assert!(matches!(
        op.authority.retire_account_signing_key(&new_key),
        Err(fleet_auth::AuthorityError::CurrentSigningKey(_))
    ));
    fleet_auth::push_account(&db.pool, &op.authority, &link)
        .await
        .unwrap();
    let new = fleet_auth::enroll(&db.pool, &op.authority, "rack-b", &EnrollOptions::default())
        .await
        .unwrap();
    let b = op
        .connect_agent(&new.issued.creds(), "rack-b")
        .await
        .expect("a user of the new key connects");
    // The rotation survives a reload of the directory.
    let reloaded = fleet_auth::Authority::load(&op.authority.dir).unwrap();
    assert_eq!(reloaded.signing_key(), new_key);
    assert!(can_publish(&a, "rack-a").await, "old users keep working");

    op.authority.retire_account_signing_key(&old_key).unwrap();
    fleet_auth::push_account(&db.pool, &op.authority, &link)
        .await
        .unwrap();
    wait_until(
        "the old key's user is disconnected",
        Duration::from_secs(10),
        || {
            let state = a.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
    assert!(
        op.connect_agent(&old.issued.creds(), "rack-a")
            .await
            .is_err()
    );
    assert_eq!(b.connection_state(), State::Connected);
    assert!(can_publish(&b, "rack-b").await);
}

#[tokio::test]
async fn a_revocation_recorded_while_nats_was_away_takes_effect_when_serve_starts() {
    let op = OperatorNats::start().await;
    let db = AppDb::new().await;
    let e = fleet_auth::enroll(
        &db.pool,
        &op.authority,
        "rack-07",
        &EnrollOptions::default(),
    )
    .await
    .unwrap();
    let agent = op
        .connect_agent(&e.issued.creds(), "rack-07")
        .await
        .expect("connects");
    // Recorded only (as when the push failed): the server does not know yet.
    fleet_auth::revoke(&db.pool, "rack-07").await.unwrap();
    assert_eq!(agent.connection_state(), State::Connected);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", op.url())
        .env("PHONEFARM_NATS_CREDS", op.coordinator_creds())
        .env("PHONEFARM_NATS_CA", &op.ca.ca)
        .env("PHONEFARM_NATS_AUTH_DIR", &op.authority.dir)
        .env_remove("INGEST_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the revoked agent is disconnected",
        Duration::from_secs(30),
        || {
            let state = agent.connection_state();
            async move { state != State::Connected }
        },
    )
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        op.connect_agent(&e.issued.creds(), "rack-07")
            .await
            .is_err()
    );
}

//! `phonefarm-agent doctor`'s NATS checks against a real nats-server in operator mode (the
//! production configuration, TLS with a test CA) with credentials `agent enroll` issued: a
//! healthy enrolled host passes every check (the binary, with a simulated phone); credentials
//! that may publish on another agent's subject, another agent's credentials, and revoked ones
//! each fail their check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser as _;
use phonefarm_agent::cli::{Cli, Command};
use phonefarm_agent::daemon::DaemonConfig;
use phonefarm_agent::doctor::{Check, Status, nats};
use phonefarm_agent::uplink::{NatsAuth, NatsTls as AgentTls};
use phonefarm_coordinator::bus::{self, BusConfig, NatsCredentials, NatsLink, NatsTls};
use phonefarm_coordinator::db;
use phonefarm_coordinator::fleet_auth::{self, Authority, EnrollOptions};
use phonefarm_phonesim::SimConfig;
use phonefarm_testkit::{NatsServer, TestDb};

const AGENT: &str = "rack-11";

fn config(nats: &NatsServer, agent: &str, creds: &Path, ca: &Path, state: &Path) -> DaemonConfig {
    let mut c = DaemonConfig::new(agent, nats.url(), state.to_path_buf());
    c.nats_auth = NatsAuth::CredsFile(creds.to_path_buf());
    c.nats_tls = AgentTls {
        ca: Some(ca.to_path_buf()),
        client_cert: None,
        required: true,
    };
    c
}

fn status<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no {name} in {checks:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_nats_with_enrolled_credentials() {
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
    let coordinator_creds = authority.dir.join("coordinator.creds");
    let mut bc = BusConfig::new(nats.url());
    bc.nats_credentials = NatsCredentials::CredsFile(coordinator_creds.clone());
    bc.nats_tls = tls.clone();
    let bus = bus::connect(bc).await.expect("the coordinator connects");
    // What the coordinator does when the agent first shows up: its consumers and evidence
    // bucket.
    bus::bootstrap::enroll_agent(&bus.js, AGENT, bus.config.replicas)
        .await
        .unwrap();

    let enrolled = fleet_auth::enroll(&pool, &authority, AGENT, &EnrollOptions::default())
        .await
        .unwrap();
    let creds = root.path().join("agent.creds");
    fleet_auth::authority::write_secret(&creds, &enrolled.issued.creds()).unwrap();
    let state = root.path().join("state");

    // Healthy: the whole doctor, as the technician runs it, passes.
    let sim = phonefarm_phonesim::spawn(SimConfig::with_serial("SIMDOC"))
        .await
        .unwrap();
    let packs = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../flowpacks"));
    let args: Vec<String> = [
        "phonefarm-agent",
        "--usb-discovery",
        "off",
        "--timeout",
        "20",
        "--state-dir",
        state.to_str().unwrap(),
        "--tcp",
        &sim.address(),
        "doctor",
        "--json",
        "--agent-id",
        AGENT,
        "--usb",
        "false",
        "--nats-url",
        &nats.url(),
        "--nats-creds",
        creds.to_str().unwrap(),
        "--nats-ca",
        ca.ca.to_str().unwrap(),
        "--flow-packs",
        packs.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cli = Cli::try_parse_from(&args).unwrap();
    let Command::Doctor(doctor) = &cli.command else {
        panic!("doctor expected")
    };
    let checks = phonefarm_agent::doctor::run_checks(&cli, doctor).await;
    assert_eq!(
        phonefarm_agent::doctor::exit_code(&checks),
        0,
        "{checks:#?}"
    );
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    let phone = format!("phone {}", sim.address());
    assert_eq!(
        names,
        [
            "nats-connect",
            "nats-publish-own",
            "clock",
            "nats-publish-other",
            "journal",
            "flow-packs",
            phone.as_str(),
        ]
    );
    for c in &checks {
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }
    // The probe it stored to read the server's clock is gone again.
    let evidence = bus
        .js
        .get_stream(phonefarm_shared::subjects::object_stream(
            &phonefarm_shared::subjects::evidence_bucket(AGENT),
        ))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(evidence, 0);

    // The coordinator's user may publish anywhere: not an agent's credentials.
    let c = nats::checks(&config(&nats, AGENT, &coordinator_creds, &ca.ca, &state)).await;
    let other = status(&c, "nats-publish-other");
    assert_eq!(other.status, Status::Fail, "{c:?}");
    assert!(other.fix.contains("agent enroll"), "{other:?}");

    // Another agent's credentials: its own subject is refused.
    let c = nats::checks(&config(&nats, "rack-12", &creds, &ca.ca, &state)).await;
    assert_eq!(status(&c, "nats-publish-own").status, Status::Fail, "{c:?}");

    // Revoked: refused at connect.
    fleet_auth::revoke(&pool, AGENT).await.unwrap();
    let link = NatsLink {
        url: nats.url(),
        credentials: NatsCredentials::None,
        tls,
    };
    fleet_auth::push_account(&pool, &authority, &link)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let c = nats::checks(&config(&nats, AGENT, &creds, &ca.ca, &state)).await;
        let connect = status(&c, "nats-connect");
        if connect.status == Status::Fail {
            assert!(connect.fix.contains("revoked"), "{connect:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "revoked credentials still connect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! The simulator against Debian's real `adb` client, so it cannot drift into a private dialect.

use std::time::Duration;

use phonefarm_phonesim::real_adb::{AdbServer, adb_available};
use phonefarm_phonesim::{AuthMode, KeyOffer, SimConfig, spawn};

use crate::pattern;

const WAIT: Duration = Duration::from_secs(20);

macro_rules! require_adb {
    () => {
        if !adb_available() {
            eprintln!("skipping: /usr/bin/adb not installed");
            return;
        }
    };
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_shell_push_pull_devices() {
    require_adb!();
    let sim = spawn(SimConfig::default()).await.unwrap();
    let addr = sim.address();
    let model = blocking(move || {
        let adb = AdbServer::start().unwrap();
        adb.connect(&addr, WAIT).unwrap();
        let devices = adb.run_ok(&["devices", "-l"]).unwrap();
        assert!(
            devices.contains(&addr) && devices.contains("device"),
            "{devices}"
        );

        let o = adb.run(&["-s", &addr, "shell", "echo hi"]).unwrap();
        assert!(o.status.success());
        assert_eq!(o.stdout, b"hi\n");

        let o = adb.run(&["-s", &addr, "shell", "exit 3"]).unwrap();
        assert_eq!(o.status.code(), Some(3), "shell v2 exit code reaches adb");

        let o = adb.run(&["-s", &addr, "shell", "nosuchcmd"]).unwrap();
        assert!(!o.status.success());
        assert!(!o.stderr.is_empty(), "stderr separate");

        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("up.bin");
        let back = dir.path().join("down.bin");
        let data = pattern(3 * 1024 * 1024 + 123, 42);
        std::fs::write(&src, &data).unwrap();
        adb.run_ok(&["-s", &addr, "push", src.to_str().unwrap(), "/sdcard/up.bin"])
            .unwrap();
        adb.run_ok(&[
            "-s",
            &addr,
            "pull",
            "/sdcard/up.bin",
            back.to_str().unwrap(),
        ])
        .unwrap();
        assert!(std::fs::read(&back).unwrap() == data, "pull is byte-exact");
        devices
    })
    .await;
    assert!(model.contains("model:Phonesim_One"), "{model}");
    assert_eq!(
        sim.phone
            .lock()
            .unwrap()
            .read("/sdcard/up.bin")
            .map(|d| d.len()),
        Some(3 * 1024 * 1024 + 123)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_key_is_accepted_when_known() {
    require_adb!();
    // Start adb first so it generates its key, then give the sim that key.
    let adb = blocking(|| AdbServer::start().unwrap()).await;
    let line = std::fs::read_to_string(adb.android_dir().join("adbkey.pub")).unwrap();
    let cfg = SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![line],
            on_offer: KeyOffer::Refuse,
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    let addr = sim.address();
    blocking(move || {
        adb.connect(&addr, WAIT).unwrap();
        let o = adb.run(&["-s", &addr, "shell", "echo authed"]).unwrap();
        assert_eq!(o.stdout, b"authed\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_sees_unauthorized_until_user_allows() {
    require_adb!();
    let cfg = SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![],
            on_offer: KeyOffer::AcceptAfter(Duration::from_millis(2500)),
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    let addr = sim.address();
    blocking(move || {
        let adb = AdbServer::start().unwrap();
        adb.run_ok(&["connect", &addr]).unwrap();
        adb.wait_state(&addr, "unauthorized", WAIT).unwrap();
        adb.wait_state(&addr, "device", WAIT).unwrap();
        let o = adb.run(&["-s", &addr, "shell", "echo allowed"]).unwrap();
        assert_eq!(o.stdout, b"allowed\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_legacy_shell_without_shell_v2() {
    require_adb!();
    let sim = spawn(SimConfig::default().without_feature("shell_v2"))
        .await
        .unwrap();
    let addr = sim.address();
    blocking(move || {
        let adb = AdbServer::start().unwrap();
        adb.connect(&addr, WAIT).unwrap();
        let o = adb.run(&["-s", &addr, "shell", "echo old"]).unwrap();
        assert_eq!(o.stdout, b"old\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_with_old_protocol_checksums_and_small_payload() {
    require_adb!();
    // Version 0x01000000: every message carries a byte-sum checksum, payloads up to 4 KiB.
    let mut cfg = SimConfig::default().without_feature("stat_v2");
    cfg.version = phonefarm_agent::adb::message::VERSION_MIN;
    cfg.max_payload = phonefarm_agent::adb::message::MAX_PAYLOAD_V1;
    let sim = spawn(cfg).await.unwrap();
    let addr = sim.address();
    blocking(move || {
        let adb = AdbServer::start().unwrap();
        adb.connect(&addr, WAIT).unwrap();
        assert_eq!(
            adb.run(&["-s", &addr, "shell", "echo v1"]).unwrap().stdout,
            b"v1\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let (src, back) = (dir.path().join("a"), dir.path().join("b"));
        let data = pattern(200_000, 8);
        std::fs::write(&src, &data).unwrap();
        adb.run_ok(&["-s", &addr, "push", src.to_str().unwrap(), "/sdcard/v1.bin"])
            .unwrap();
        adb.run_ok(&[
            "-s",
            &addr,
            "pull",
            "/sdcard/v1.bin",
            back.to_str().unwrap(),
        ])
        .unwrap();
        assert!(std::fs::read(&back).unwrap() == data);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_ack_stays_off_with_an_adb_that_lacks_it() {
    require_adb!();
    // The sim offers delayed_ack; adb 29 does not, so both must stay on one WRTE in flight.
    let sim = spawn(SimConfig::default().with_feature("delayed_ack"))
        .await
        .unwrap();
    let addr = sim.address();
    blocking(move || {
        let adb = AdbServer::start().unwrap();
        adb.connect(&addr, WAIT).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (src, back) = (dir.path().join("a"), dir.path().join("b"));
        let data = pattern(2 * 1024 * 1024, 9);
        std::fs::write(&src, &data).unwrap();
        adb.run_ok(&["-s", &addr, "push", src.to_str().unwrap(), "/sdcard/d.bin"])
            .unwrap();
        adb.run_ok(&["-s", &addr, "pull", "/sdcard/d.bin", back.to_str().unwrap()])
            .unwrap();
        assert!(std::fs::read(&back).unwrap() == data);
    })
    .await;
}

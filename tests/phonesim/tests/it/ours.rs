//! Our host implementation against the simulator.

use std::time::Duration;

use bytes::Bytes;
use phonefarm_agent::adb::message::{MAX_PAYLOAD_V1, VERSION_MIN};
use phonefarm_agent::phone::{ConnState, PhoneError, PushSource};
use phonefarm_phonesim::{AuthMode, Faults, KeyOffer, SimConfig, spawn};

use crate::{connect, deadline, pattern, test_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_v2_gives_streams_and_exit_code() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let info = phone.wait_online(deadline(10)).await.unwrap();
    assert_eq!(info.banner.model.as_deref(), Some("Phonesim_One"));
    let out = phone.shell("echo hi", deadline(10)).await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.exit, Some(0));
    let out = phone.shell("exit 3", deadline(10)).await.unwrap();
    assert_eq!(out.exit, Some(3));
    let out = phone.shell("no-such-command", deadline(10)).await.unwrap();
    assert_ne!(out.exit, Some(0));
    assert!(
        !out.stderr.is_empty(),
        "stderr is kept separate under shell v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_shell_without_shell_v2() {
    let sim = spawn(SimConfig::default().without_feature("shell_v2"))
        .await
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let out = phone.shell("echo legacy", deadline(10)).await.unwrap();
    assert_eq!(out.stdout, b"legacy\n", "the exit marker line is cut");
    assert_eq!(out.exit, Some(0), "the status comes from the marker line");
    assert!(out.stderr.is_empty());
    let out = phone.shell("false", deadline(10)).await.unwrap();
    assert_eq!((out.exit, out.stdout.as_slice()), (Some(1), &b""[..]));
    // stderr is merged into stdout on the legacy shell, and comes before the marker
    let out = phone.shell("no-such-command", deadline(10)).await.unwrap();
    assert_eq!(out.exit, Some(127));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not found"), "{text:?}");
    assert!(!text.contains("__pf_exit_"), "{text:?}");
    // a trailing comment cannot swallow the marker (it goes on a line of its own)
    let out = phone.shell("echo a # note", deadline(10)).await.unwrap();
    assert_eq!((out.exit, out.stdout.as_slice()), (Some(0), &b"a\n"[..]));
}

async fn push_pull_roundtrip(cfg: SimConfig, len: usize) {
    let sim = spawn(cfg).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let data = pattern(len, len as u64);
    let mut seen = Vec::new();
    phone
        .push(
            PushSource::Bytes(Bytes::from(data.clone())),
            "/sdcard/blob.bin",
            0o644,
            deadline(60),
            &mut |done, total| seen.push((done, total)),
        )
        .await
        .unwrap();
    assert_eq!(seen.last(), Some(&(len as u64, len as u64)));
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress is monotonic"
    );
    // The phone model holds exactly what we sent.
    assert_eq!(
        sim.phone
            .lock()
            .unwrap()
            .read("/sdcard/blob.bin")
            .as_deref(),
        Some(&data[..])
    );
    let st = phone
        .stat("/sdcard/blob.bin", deadline(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.size, len as u64);
    assert_eq!(st.mode & 0o777, 0o644);
    assert!(!st.is_dir());
    assert_eq!(
        phone.stat("/sdcard/missing", deadline(10)).await.unwrap(),
        None
    );
    let back = phone.pull("/sdcard/blob.bin", deadline(60)).await.unwrap();
    assert!(back == data, "pulled bytes differ");
    let err = phone
        .pull("/sdcard/missing", deadline(10))
        .await
        .unwrap_err();
    assert!(matches!(err, PhoneError::Remote(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_stat_byte_exact() {
    push_pull_roundtrip(SimConfig::default(), 3 * 1024 * 1024 + 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocol_with_checksums_and_small_payload() {
    let mut cfg = SimConfig::default().without_feature("stat_v2");
    cfg.version = VERSION_MIN;
    cfg.max_payload = MAX_PAYLOAD_V1;
    push_pull_roundtrip(cfg, 300 * 1024 + 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_ack_when_both_advertise() {
    let cfg = SimConfig::default().with_feature("delayed_ack");
    let sim = spawn(cfg.clone()).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    assert!(phone.wait_online(deadline(10)).await.unwrap().delayed_ack);
    drop(sim);
    push_pull_roundtrip(cfg, 5 * 1024 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_files() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.bin");
    let dst = dir.path().join("out.bin");
    let data = pattern(1024 * 1024 + 3, 9);
    std::fs::write(&src, &data).unwrap();
    phone
        .push(
            PushSource::File(src),
            "/data/local/tmp/f",
            0o755,
            deadline(30),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    let n = phone
        .pull_to_file("/data/local/tmp/f", &dst, deadline(30), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert!(std::fs::read(&dst).unwrap() == data);
    let missing = dir.path().join("nope");
    let err = phone
        .push(
            PushSource::File(missing),
            "/x",
            0o644,
            deadline(5),
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PhoneError::LocalIo { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_multiplex_on_one_connection() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let big = pattern(2 * 1024 * 1024, 1);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = phone.clone();
        tasks.push(tokio::spawn(async move {
            let out = p.shell(&format!("echo n{i}"), deadline(20)).await.unwrap();
            assert_eq!(out.stdout, format!("n{i}\n").into_bytes());
        }));
    }
    let p = phone.clone();
    let b2 = big.clone();
    let push = tokio::spawn(async move {
        p.push(
            PushSource::Bytes(b2.into()),
            "/sdcard/c",
            0o600,
            deadline(30),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    });
    for t in tasks {
        t.await.unwrap();
    }
    push.await.unwrap();
    assert!(phone.pull("/sdcard/c", deadline(30)).await.unwrap() == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_known_key() {
    let key = test_key();
    let cfg = SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![key.public_key_line()],
            on_offer: KeyOffer::Refuse,
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    // A ring whose first key is unknown: the second one signs.
    let other = phonefarm_agent::adb::auth::AdbKey::generate().unwrap();
    let phone = connect(&sim.address(), vec![other, key]).await;
    phone.wait_online(deadline(20)).await.unwrap();
    assert_eq!(
        phone.shell("echo ok", deadline(10)).await.unwrap().stdout,
        b"ok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_then_user_allows_on_same_connection() {
    let cfg = SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![],
            on_offer: KeyOffer::AcceptAfter(Duration::from_millis(1000)),
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let mut states = phone.watch_state();
    let mut seen_unauth = false;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match states.borrow_and_update().clone() {
                ConnState::Unauthorized => seen_unauth = true,
                ConnState::Online(_) => return,
                ConnState::Offline(w) => panic!("offline: {w}"),
                ConnState::Connecting => {}
            }
            states.changed().await.unwrap();
        }
    })
    .await;
    assert!(result.is_ok(), "never came online");
    assert!(seen_unauth, "the prompt state was visible");
    assert_eq!(
        phone.shell("echo yes", deadline(10)).await.unwrap().exit,
        Some(0)
    );
    // The allowed key is remembered: a new connection is online without a prompt.
    let again = connect(&sim.address(), vec![test_key()]).await;
    again.wait_online(deadline(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_reports_unauthorized_at_deadline() {
    let cfg = SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![],
            on_offer: KeyOffer::Refuse,
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let mut st = phone.watch_state();
    tokio::time::timeout(
        Duration::from_secs(10),
        st.wait_for(|s| *s == ConnState::Unauthorized),
    )
    .await
    .expect("reaches the prompt")
    .unwrap();
    let t = tokio::time::Instant::now() + Duration::from_millis(300);
    let err = phone.shell("echo x", t).await.unwrap_err();
    assert!(matches!(err, PhoneError::Unauthorized), "{err}");
    assert_eq!(phone.state(), ConnState::Unauthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_stream_fails_the_call_and_goes_offline() {
    let cfg = SimConfig {
        faults: Faults {
            disconnect_after_bytes: Some(200_000),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let sim = spawn(cfg).await.unwrap();
    sim.phone
        .lock()
        .unwrap()
        .write("/sdcard/big", pattern(1 << 20, 3), 0o100644, 0)
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let err = phone.pull("/sdcard/big", deadline(20)).await.unwrap_err();
    assert!(
        matches!(err, PhoneError::Disconnected(_) | PhoneError::Offline(_)),
        "{err}"
    );
    let mut st = phone.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, ConnState::Offline(_))),
    )
    .await
    .expect("goes offline")
    .unwrap();
    let err = phone.shell("echo", deadline(5)).await.unwrap_err();
    assert!(matches!(err, PhoneError::Offline(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_drops_the_connection() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    phone.reboot(deadline(10)).await.unwrap();
    let mut st = phone.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, ConnState::Offline(_))),
    )
    .await
    .expect("goes offline")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_propagates_exit_code_and_moves_files() {
    use clap::Parser as _;
    use phonefarm_agent::cli::{Cli, run};
    let sim = spawn(SimConfig::default()).await.unwrap();
    let addr = sim.address();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cli = |args: &[&str]| {
        let mut v = vec![
            "phonefarm-agent",
            "--state-dir",
            state.to_str().unwrap(),
            "--tcp",
            &addr,
        ];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    };
    assert_eq!(
        run(cli(&["shell", &addr, "--", "exit", "7"]))
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        run(cli(&["shell", "SIM0001", "--", "true"])).await.unwrap(),
        0
    );
    let src = dir.path().join("a.bin");
    let dst = dir.path().join("b.bin");
    let data = pattern(700_000, 5);
    std::fs::write(&src, &data).unwrap();
    let target = format!("{addr}:/sdcard/a.bin");
    assert_eq!(
        run(cli(&["push", src.to_str().unwrap(), &target]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run(cli(&["pull", &target, dst.to_str().unwrap()]))
            .await
            .unwrap(),
        0
    );
    assert!(std::fs::read(&dst).unwrap() == data);
    let missing = format!("{addr}:/sdcard/none");
    let err = run(cli(&[
        "pull",
        &missing,
        dir.path().join("c").to_str().unwrap(),
    ]))
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("no such file"), "{err:#}");
    assert!(
        !dir.path().join("c").exists(),
        "a failed pull leaves no partial file"
    );
    assert!(state.join("adbkey").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_phone_times_out_and_others_are_unaffected() {
    let stalled = spawn(SimConfig {
        faults: Faults {
            stall_after_bytes: Some(100_000),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    stalled
        .phone
        .lock()
        .unwrap()
        .write("/sdcard/big", pattern(1 << 20, 4), 0o100644, 0)
        .unwrap();
    let healthy = spawn(SimConfig::default()).await.unwrap();
    let a = connect(&stalled.address(), vec![test_key()]).await;
    let b = connect(&healthy.address(), vec![test_key()]).await;
    let t = tokio::time::Instant::now() + Duration::from_millis(1500);
    let slow = tokio::spawn(async move { a.pull("/sdcard/big", t).await });
    // While the stalled phone hangs, the healthy one answers promptly.
    for _ in 0..20 {
        assert_eq!(
            b.shell("echo ok", deadline(2)).await.unwrap().stdout,
            b"ok\n"
        );
    }
    let err = slow.await.unwrap().unwrap_err();
    assert!(matches!(err, PhoneError::Timeout), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_phone_fails_calls_cleanly() {
    let sim = spawn(SimConfig {
        faults: Faults {
            garbage_after_bytes: Some(1),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.phone
        .lock()
        .unwrap()
        .write("/sdcard/f", pattern(10_000, 4), 0o100644, 0)
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let err = phone.pull("/sdcard/f", deadline(10)).await.unwrap_err();
    assert!(
        matches!(err, PhoneError::Disconnected(_) | PhoneError::Offline(_)),
        "{err}"
    );
    let mut st = phone.watch_state();
    let off = tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, ConnState::Offline(w) if w.contains("protocol error"))),
    )
    .await;
    assert!(
        off.is_ok(),
        "offline with a protocol error, got {:?}",
        phone.state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_n_phones_and_prints_their_addresses() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-phonesim"))
        .args(["--listen", "127.0.0.1:0", "--phones", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let serial = format!("SIM{:04}", i + 1);
        let addr = line
            .strip_prefix(&format!("{serial} listening on "))
            .expect(line);
        let phone = connect(addr, vec![test_key()]).await;
        let out = phone
            .shell("getprop ro.serialno", deadline(10))
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), serial);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_devices_reports_online_unauthorized_and_offline() {
    use clap::Parser as _;
    use phonefarm_agent::cli::{Cli, device_rows};
    let online = spawn(SimConfig::with_serial("SIMON")).await.unwrap();
    let locked = spawn(SimConfig {
        auth: AuthMode::Required {
            known_keys: vec![],
            on_offer: KeyOffer::Refuse,
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (online.address(), locked.address());
    let cli = Cli::try_parse_from([
        "phonefarm-agent",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--timeout",
        "3",
        "--tcp",
        &a,
        "--tcp",
        &b,
        "--tcp",
        &dead,
        "devices",
    ])
    .unwrap();
    let rows = device_rows(&cli).await.unwrap();
    let tcp: Vec<_> = rows.iter().filter(|r| r.transport == "tcp").collect();
    assert_eq!(tcp.len(), 3);
    assert_eq!(tcp[0].address, a);
    assert_eq!(tcp[0].state, "online");
    assert_eq!(tcp[0].serial, "SIMON");
    assert_eq!(tcp[0].model, "Phonesim_One");
    assert_eq!(tcp[0].android, "13");
    assert_eq!(tcp[1].state, "unauthorized");
    assert_eq!(tcp[2].state, "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_and_payload_combination() {
    use phonefarm_agent::adb::message::{MAX_PAYLOAD, VERSION_SKIP_CHECKSUM};
    for version in [VERSION_MIN, VERSION_SKIP_CHECKSUM] {
        for max_payload in [MAX_PAYLOAD_V1, MAX_PAYLOAD] {
            for shell_v2 in [true, false] {
                let mut cfg = SimConfig::default();
                if !shell_v2 {
                    cfg = cfg.without_feature("shell_v2");
                }
                cfg.version = version;
                cfg.max_payload = max_payload;
                let what =
                    format!("version {version:#x}, max payload {max_payload}, shell_v2 {shell_v2}");
                let sim = spawn(cfg).await.unwrap();
                let phone = connect(&sim.address(), vec![test_key()]).await;
                let info = phone.wait_online(deadline(10)).await.unwrap();
                assert_eq!(
                    (info.version, info.max_payload),
                    (version, max_payload),
                    "{what}"
                );
                let out = phone.shell("echo hi; false", deadline(10)).await.unwrap();
                assert_eq!(
                    (out.stdout.as_slice(), out.exit),
                    (&b"hi\n"[..], Some(1)),
                    "{what}"
                );
                let data = pattern(200_000 + 7, u64::from(max_payload));
                phone
                    .push(
                        PushSource::Bytes(Bytes::from(data.clone())),
                        "/sdcard/m.bin",
                        0o644,
                        deadline(30),
                        &mut |_, _| {},
                    )
                    .await
                    .unwrap();
                let back = phone.pull("/sdcard/m.bin", deadline(30)).await.unwrap();
                assert!(back == data, "{what}: pulled bytes differ");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_with_delayed_ack() {
    let sim = spawn(SimConfig::default().with_feature("delayed_ack"))
        .await
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    assert!(phone.wait_online(deadline(10)).await.unwrap().delayed_ack);
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let p = phone.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(3 * 1024 * 1024 + i as usize, i);
            let path = format!("/sdcard/d{i}");
            p.push(
                PushSource::Bytes(Bytes::from(data.clone())),
                &path,
                0o644,
                deadline(60),
                &mut |_, _| {},
            )
            .await
            .unwrap();
            let out = p.shell(&format!("echo {i}"), deadline(20)).await.unwrap();
            assert_eq!(out.stdout, format!("{i}\n").into_bytes());
            assert!(p.pull(&path, deadline(60)).await.unwrap() == data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_phones_at_once() {
    let mut sims = Vec::new();
    for i in 0..32 {
        let mut cfg = SimConfig::with_serial(&format!("SIM{:04}", i + 1));
        // A mixed fleet: some old phones, some that need the fleet key.
        if i % 4 == 1 {
            cfg = cfg.without_feature("shell_v2");
        }
        if i % 4 == 2 {
            cfg.version = VERSION_MIN;
            cfg.max_payload = MAX_PAYLOAD_V1;
        }
        if i % 4 == 3 {
            cfg.auth = AuthMode::Required {
                known_keys: vec![test_key().public_key_line()],
                on_offer: KeyOffer::Refuse,
            };
        }
        sims.push(spawn(cfg).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, sim) in sims.iter().enumerate() {
        let addr = sim.address();
        tasks.push(tokio::spawn(async move {
            let phone = connect(&addr, vec![test_key()]).await;
            let serial = format!("SIM{:04}", i + 1);
            let out = phone
                .shell("getprop ro.serialno", deadline(60))
                .await
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), serial);
            assert_eq!(out.exit, Some(0));
            let data = pattern(100_000 + i, i as u64);
            phone
                .push(
                    PushSource::Bytes(Bytes::from(data.clone())),
                    "/sdcard/p.bin",
                    0o644,
                    deadline(60),
                    &mut |_, _| {},
                )
                .await
                .unwrap();
            assert!(phone.pull("/sdcard/p.bin", deadline(60)).await.unwrap() == data);
            phone
        }));
    }
    let mut phones = Vec::new();
    for t in tasks {
        phones.push(t.await.unwrap());
    }
    // Each phone kept its own file.
    for (i, sim) in sims.iter().enumerate() {
        assert_eq!(
            sim.phone
                .lock()
                .unwrap()
                .read("/sdcard/p.bin")
                .map(|d| d.len()),
            Some(100_000 + i)
        );
    }
    assert!(phones.iter().all(|p| p.state().label() == "online"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_vanishing_mid_push_fails_the_call_within_its_deadline() {
    let sim = spawn(SimConfig {
        faults: Faults {
            disconnect_after_bytes: Some(500_000),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let t = tokio::time::Instant::now() + Duration::from_secs(20);
    let err = phone
        .push(
            PushSource::Bytes(Bytes::from(pattern(4 << 20, 6))),
            "/sdcard/gone.bin",
            0o644,
            t,
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PhoneError::Disconnected(_) | PhoneError::Offline(_)),
        "{err}"
    );
    assert!(
        tokio::time::Instant::now() < t,
        "failed before the deadline"
    );
    assert!(sim.phone.lock().unwrap().read("/sdcard/gone.bin").is_none());
}

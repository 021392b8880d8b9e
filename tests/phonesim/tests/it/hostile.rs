//! The fault model served over ADB: replies wait out the phone's latency, and the phone drops
//! its connections (and answers none) while adb is down.

use std::time::Duration;

use phonefarm_agent::phone::{ConnState, PhoneError};
use phonefarm_phonesim::model::{Behaviour, Fault, FaultTrigger, Latency};
use phonefarm_phonesim::{SimConfig, spawn};

use crate::{connect, deadline, test_key};

/// A reply goes out only after the latency the model charges: a dump that takes 5 s does not
/// make a 1 s deadline, while a quick command on the same connection does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_wait_out_the_phones_latency() {
    let mut behaviour = Behaviour::ideal();
    behaviour.dump = Latency::fixed(5_000);
    let sim = spawn(SimConfig::default().with_profile(behaviour, 1.0))
        .await
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    let slow = phone
        .shell("uiautomator dump --compressed /dev/tty", deadline(1))
        .await;
    assert!(matches!(slow, Err(PhoneError::Timeout)), "{slow:?}");
    let quick = phone
        .shell("getprop ro.serialno", deadline(5))
        .await
        .unwrap();
    assert_eq!(quick.stdout, b"SIM0001\n");
    // The dump happened when it arrived (its effects are not delayed, only its reply).
    let dumped = sim
        .phone
        .lock()
        .unwrap()
        .actions()
        .iter()
        .any(|a| matches!(a, phonefarm_phonesim::model::Action::UiDumped { .. }));
    assert!(dumped);
}

/// adb going offline drops the connection; while it is down new connections are dropped too;
/// then the phone answers again. The outage is in phone time (scaled: 2 s at 0.5 is 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adb_outage_drops_connections_until_it_ends() {
    let sim = spawn(SimConfig::default().with_profile(Behaviour::ideal(), 0.5))
        .await
        .unwrap();
    let phone = connect(&sim.address(), vec![test_key()]).await;
    phone.wait_online(deadline(10)).await.unwrap();
    sim.phone
        .lock()
        .unwrap()
        .inject_fault(Fault::AdbOffline { ms: 2_000 }, FaultTrigger::Now);
    let mut st = phone.watch_state();
    let dropped = tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, ConnState::Offline(_))),
    )
    .await
    .map(|r| r.is_ok());
    assert_eq!(dropped, Ok(true), "the connection drops");
    let during = connect(&sim.address(), vec![test_key()]).await;
    assert!(
        during.wait_online(deadline(5)).await.is_err(),
        "refused while down"
    );
    // Waits (with a deadline) for the outage to end.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    let after = loop {
        let p = connect(&sim.address(), vec![test_key()]).await;
        if p.wait_online(deadline(5)).await.is_ok() {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the phone answers again after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = after.shell("echo back", deadline(5)).await.unwrap();
    assert_eq!(out.stdout, b"back\n");
}

/// `--profile` names one profile for all phones or one per phone; an unknown one is refused
/// with a one-line cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_profiles_per_phone_and_refuses_unknown_ones() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-phonesim"))
        .args(["--listen", "127.0.0.1:0", "--profile", "hostile"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown --profile \"hostile\": expected one of ideal, realistic"),
        "{stderr}"
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-phonesim"))
        .args(["--listen", "127.0.0.1:0", "--time-scale", "0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-scale"));
}

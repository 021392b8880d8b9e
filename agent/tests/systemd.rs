//! The daemon under systemd (`Type=notify`, `WatchdogSec`): it sends `READY=1` once started,
//! with NATS away too (it connects in the background), then `WATCHDOG=1` at half of
//! `$WATCHDOG_USEC`, to the datagram socket `$NOTIFY_SOCKET` names.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

#[test]
fn the_daemon_notifies_ready_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let rx = UnixDatagram::bind(&socket).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"))
        .args(["--config", "/dev/null", "--state-dir"])
        .arg(dir.path().join("state"))
        .args([
            "daemon",
            "--agent-id",
            "rack-sd",
            "--nats-url",
            "nats://127.0.0.1:1",
        ])
        .args(["--usb", "false"])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m| m == "READY=1")
        && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no READY=1 and two WATCHDOG=1 in time: {seen:?}"
        );
        rx.set_read_timeout(Some(left)).unwrap();
        match rx.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => panic!("{e}: {seen:?}"),
        }
    }
    assert_eq!(seen[0], "READY=1", "{seen:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

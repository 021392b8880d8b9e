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

/// Without `RUST_LOG` the daemon logs at info, for journald (here: its start line, with the
/// NATS URL's secrets redacted), in plain text off a terminal; `RUST_LOG` still overrides it.
#[test]
fn the_daemon_logs_at_info_by_default() {
    use std::io::{BufRead, BufReader};
    let run = |rust_log: Option<&str>, wait: Duration| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"));
        cmd.args(["--config", "/dev/null", "--state-dir"])
            .arg(dir.path().join("state"))
            .args(["daemon", "--agent-id", "rack-log", "--nats-url"])
            .arg("nats://127.0.0.1:1")
            .args(["--usb", "false"])
            .env_remove("NOTIFY_SOCKET")
            .stderr(std::process::Stdio::piped());
        match rust_log {
            Some(v) => cmd.env("RUST_LOG", v),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        // The first line, or none when the child is killed after a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stderr).read_line(&mut line);
            let _ = tx.send(line);
        });
        let first = rx.recv_timeout(wait).unwrap_or_default();
        child.kill().unwrap();
        child.wait().unwrap();
        first
    };
    let first = run(None, Duration::from_secs(30));
    assert!(
        first.contains("INFO") && first.contains("agent starting"),
        "{first:?}"
    );
    assert!(
        !first.contains('\u{1b}'),
        "no colour codes off a terminal: {first:?}"
    );
    let quiet = run(Some("error"), Duration::from_secs(3));
    assert!(!quiet.contains("agent starting"), "{quiet:?}");
}

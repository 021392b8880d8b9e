//! `phonefarm-agent shell` as a process against the simulator: the phone's exit status becomes
//! the process's, with shell v2 and over the legacy shell (where it comes from the marker line
//! the agent appends, which never reaches stdout).

use phonefarm_agent::adb::auth::AdbKey;
use phonefarm_phonesim::{SimConfig, spawn};

async fn agent_shell(state: &std::path::Path, addr: &str, cmd: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(["--usb-discovery", "off", "--timeout", "20", "--tcp", addr])
        .args(["shell", addr, "--"])
        .args(cmd.split(' '))
        .output()
        .await
        .expect("run phonefarm-agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_exit_status_is_the_process_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    AdbKey::generate().unwrap().save(dir.path()).unwrap();
    for v2 in [true, false] {
        let cfg = if v2 {
            SimConfig::default()
        } else {
            SimConfig::default().without_feature("shell_v2")
        };
        let sim = spawn(cfg).await.unwrap();
        let addr = sim.address();
        for (cmd, code) in [("true", 0), ("false", 1), ("no-such-command", 127)] {
            let o = agent_shell(dir.path(), &addr, cmd).await;
            assert_eq!(
                o.status.code(),
                Some(code),
                "{cmd} (shell_v2 {v2}): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                !String::from_utf8_lossy(&o.stdout).contains("__pf_exit_"),
                "marker leaked: {:?}",
                o.stdout
            );
        }
        let o = agent_shell(dir.path(), &addr, "echo hi").await;
        assert_eq!(
            (o.status.code(), o.stdout.as_slice()),
            (Some(0), &b"hi\n"[..])
        );
    }
}

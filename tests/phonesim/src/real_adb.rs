//! An isolated Debian `adb` server for checking the simulator against the real client: its own
//! `HOME` (so its own key in `$HOME/.android`), its own port (`adb -P PORT`), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Path of the adb binary (`ADB` overrides `/usr/bin/adb`).
pub fn adb_path() -> PathBuf {
    std::env::var_os("ADB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/adb"))
}

/// Whether a usable adb binary exists.
pub fn adb_available() -> bool {
    adb_path().exists()
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Errors from driving adb.
#[derive(Debug, thiserror::Error)]
pub enum AdbError {
    #[error("cannot run adb")]
    Spawn(#[source] std::io::Error),
    #[error("adb {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// A running adb server, killed on drop.
#[derive(Debug)]
pub struct AdbServer {
    pub port: u16,
    home: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl AdbServer {
    /// Starts a server with a fresh `HOME` (adb generates its key there).
    pub fn start() -> Result<Self, AdbError> {
        let dir = tempfile::tempdir().map_err(AdbError::Spawn)?;
        let home = dir.path().to_path_buf();
        let mut s = Self::start_in(&home)?;
        s._dir = Some(dir);
        Ok(s)
    }

    /// Starts a server using `home` as `HOME`.
    pub fn start_in(home: &Path) -> Result<Self, AdbError> {
        let port = free_port().map_err(AdbError::Spawn)?;
        let s = Self {
            port,
            home: home.to_path_buf(),
            _dir: None,
        };
        s.run_ok(&["start-server"])?;
        Ok(s)
    }

    /// `$HOME/.android`, where adb keeps `adbkey` and `adbkey.pub`.
    pub fn android_dir(&self) -> PathBuf {
        self.home.join(".android")
    }

    /// A command for `adb -P PORT args...` in this server's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(adb_path());
        c.arg("-P").arg(self.port.to_string()).args(args);
        c.env("HOME", &self.home)
            .env_remove("ANDROID_SERIAL")
            .env_remove("ADB_VENDOR_KEYS")
            .env_remove("ADB_SERVER_SOCKET")
            .env("ADB_MDNS", "0");
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<Output, AdbError> {
        self.command(args).output().map_err(AdbError::Spawn)
    }

    /// Runs and requires exit status 0; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> Result<String, AdbError> {
        let o = self.run(args)?;
        if !o.status.success() {
            return Err(AdbError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The state `adb devices` shows for `serial` (`device`, `unauthorized`, `offline`), if
    /// listed.
    pub fn device_state(&self, serial: &str) -> Option<String> {
        let out = self.run_ok(&["devices"]).ok()?;
        out.lines().find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(serial)).then(|| parts.next().unwrap_or_default().to_string())
        })
    }

    /// Polls `adb devices` until `serial` shows `state`.
    pub fn wait_state(&self, serial: &str, state: &str, timeout: Duration) -> Result<(), AdbError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.device_state(serial).as_deref() == Some(state) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(AdbError::Timeout(format!(
                    "{serial} to be {state} (last: {:?})",
                    self.device_state(serial)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `adb connect addr`, then waits for the device to be online.
    pub fn connect(&self, addr: &str, timeout: Duration) -> Result<(), AdbError> {
        let out = self.run_ok(&["connect", addr])?;
        if !out.contains("connected to") {
            return Err(AdbError::Failed {
                args: format!("connect {addr}"),
                stderr: out,
            });
        }
        self.wait_state(addr, "device", timeout)
    }
}

impl Drop for AdbServer {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

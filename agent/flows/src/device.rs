//! The seam between this crate and a phone: a minimal [`Device`] trait (run a shell command,
//! push a file). The agent's phone actor implements it over ADB; tests implement it over the
//! in-process phone model. Everything else in this crate (screen reads, taps, flows) is built on
//! these two calls, so the crate itself does no I/O.

use std::future::Future;
use std::time::Duration;

/// What one shell command produced on the phone (shell protocol v2 keeps the streams apart and
/// reports the exit code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: u8,
}

impl ShellOutput {
    /// stdout as text, with invalid UTF-8 replaced (for messages and line-oriented output).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a device call failed: the transport, not the command (a command that ran and failed is
/// a [`ShellOutput`] with a non-zero `exit`).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The phone went away (USB unplugged, connection closed).
    #[error("device disconnected: {0}")]
    Disconnected(String),
    /// The call did not finish within its deadline.
    #[error("device call timed out after {0:?}")]
    Timeout(Duration),
    /// Any other transport failure.
    #[error("device transport error: {0}")]
    Transport(String),
}

/// A phone that can run shell commands and receive files. Implementations must be cheap to call
/// concurrently from one task at a time (the phone actor serialises runs).
pub trait Device: Send + Sync {
    /// Runs `cmd` as `sh -c` would on the phone; gives up after `deadline`.
    fn shell(
        &self,
        cmd: &str,
        deadline: Duration,
    ) -> impl Future<Output = Result<ShellOutput, DeviceError>> + Send;

    /// Writes `data` to the phone at `remote` with the given Unix mode (e.g. `0o100644`).
    fn push(
        &self,
        data: Vec<u8>,
        remote: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send;

    /// After a [`DeviceError`]: waits (at most `within`) until the phone answers again, over a
    /// new connection if the old one is gone, and has finished booting. The default cannot.
    fn reconnect(&self, within: Duration) -> impl Future<Output = Result<(), DeviceError>> + Send {
        let _ = within;
        async {
            Err(DeviceError::Disconnected(
                "this device cannot reconnect".into(),
            ))
        }
    }
}

impl<T: Device> Device for &T {
    fn shell(
        &self,
        cmd: &str,
        deadline: Duration,
    ) -> impl Future<Output = Result<ShellOutput, DeviceError>> + Send {
        (**self).shell(cmd, deadline)
    }

    fn push(
        &self,
        data: Vec<u8>,
        remote: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send {
        (**self).push(data, remote, mode)
    }

    fn reconnect(&self, within: Duration) -> impl Future<Output = Result<(), DeviceError>> + Send {
        (**self).reconnect(within)
    }
}

impl<T: Device> Device for std::sync::Arc<T> {
    fn shell(
        &self,
        cmd: &str,
        deadline: Duration,
    ) -> impl Future<Output = Result<ShellOutput, DeviceError>> + Send {
        (**self).shell(cmd, deadline)
    }

    fn push(
        &self,
        data: Vec<u8>,
        remote: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send {
        (**self).push(data, remote, mode)
    }

    fn reconnect(&self, within: Duration) -> impl Future<Output = Result<(), DeviceError>> + Send {
        (**self).reconnect(within)
    }
}

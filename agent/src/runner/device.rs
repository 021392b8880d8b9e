//! [`phonefarm_flows::Device`] over a [`PhoneHandle`]: flows reach the phone only through it.

use std::time::Duration;

use phonefarm_flows::{Device, DeviceError, ShellOutput};
use tokio::time::Instant;

use crate::phone::{PhoneError, PhoneHandle, PushSource};

/// A phone as the flows see it.
#[derive(Debug, Clone)]
pub struct PhoneDevice {
    phone: PhoneHandle,
}

impl PhoneDevice {
    pub fn new(phone: PhoneHandle) -> Self {
        Self { phone }
    }
}

fn device_error(e: PhoneError, deadline: Duration) -> DeviceError {
    match e {
        PhoneError::Timeout => DeviceError::Timeout(deadline),
        PhoneError::Offline(why) | PhoneError::Disconnected(why) => DeviceError::Disconnected(why),
        other => DeviceError::Transport(other.to_string()),
    }
}

impl Device for PhoneDevice {
    async fn shell(&self, cmd: &str, deadline: Duration) -> Result<ShellOutput, DeviceError> {
        let out = self
            .phone
            .shell(cmd, Instant::now() + deadline)
            .await
            .map_err(|e| device_error(e, deadline))?;
        Ok(ShellOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            // The legacy shell reports no status: treat it as success, as adb does.
            exit: out.exit.unwrap_or(0),
        })
    }

    async fn push(&self, data: Vec<u8>, remote: &str, mode: u32) -> Result<(), DeviceError> {
        let deadline = Duration::from_secs(120);
        self.phone
            .push(
                PushSource::Bytes(data.into()),
                remote,
                mode,
                Instant::now() + deadline,
                &mut |_, _| {},
            )
            .await
            .map_err(|e| device_error(e, deadline))
    }
}

//! [`phonefarm_flows::Device`] over a [`PhoneHandle`]: flows reach the phone only through it.
//!
//! When the phone goes away mid-run (it rebooted, adb went offline, its host key was revoked)
//! [`Device::reconnect`] gets a new connection the way the device came: from the fleet (which
//! reconnects network phones and follows USB ones), or by dialling its `host:port` again; a
//! phone showing "Allow USB debugging?" is waited for until someone allows it or time runs
//! out. Once connected, it waits for `sys.boot_completed`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use phonefarm_flows::{Device, DeviceError, ShellOutput};
use tokio::time::Instant;

use crate::fleet::FleetHandle;
use crate::phone::{ConnState, PhoneError, PhoneHandle, PhoneOptions, PushSource};

/// Where a new connection comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Nowhere: the handle is all there is.
    Fixed,
    /// Dial this address again.
    Tcp { addr: String, options: PhoneOptions },
    /// Ask the fleet for the phone with this id.
    Fleet {
        fleet: FleetHandle,
        phone_id: String,
    },
}

/// A phone as the flows see it.
#[derive(Debug)]
pub struct PhoneDevice {
    current: Mutex<PhoneHandle>,
    source: Source,
    /// A call on the current connection timed out: it may be hung, so a reconnect dials anew.
    suspect: AtomicBool,
}

fn device_error(e: PhoneError, deadline: Duration) -> DeviceError {
    match e {
        PhoneError::Timeout => DeviceError::Timeout(deadline),
        PhoneError::Offline(why) | PhoneError::Disconnected(why) => DeviceError::Disconnected(why),
        PhoneError::Unauthorized => DeviceError::Disconnected(PhoneError::Unauthorized.to_string()),
        other => DeviceError::Transport(other.to_string()),
    }
}

/// Pause between reconnection attempts: from 250 ms, doubling, at most 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(3)))
}

impl PhoneDevice {
    /// A device that cannot reconnect.
    pub fn new(phone: PhoneHandle) -> Self {
        Self {
            current: Mutex::new(phone),
            source: Source::Fixed,
            suspect: AtomicBool::new(false),
        }
    }

    /// A network phone, dialled at `addr` again when it goes away.
    pub fn tcp(phone: PhoneHandle, addr: &str, options: PhoneOptions) -> Self {
        Self {
            current: Mutex::new(phone),
            source: Source::Tcp {
                addr: addr.to_string(),
                options,
            },
            suspect: AtomicBool::new(false),
        }
    }

    /// A fleet phone, looked up again in the fleet when it goes away.
    pub fn fleet(phone: PhoneHandle, fleet: FleetHandle, phone_id: &str) -> Self {
        Self {
            current: Mutex::new(phone),
            source: Source::Fleet {
                fleet,
                phone_id: phone_id.to_string(),
            },
            suspect: AtomicBool::new(false),
        }
    }

    fn handle(&self) -> PhoneHandle {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace(&self, h: PhoneHandle) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = h;
    }

    /// A connection that is not known to be dead: the current one, or a new one.
    async fn connection(&self, deadline: Instant) -> Result<PhoneHandle, PhoneError> {
        let current = self.handle();
        let hung = self.suspect.swap(false, Ordering::Relaxed);
        if !hung && !matches!(current.state(), ConnState::Offline(_)) {
            return Ok(current);
        }
        let fresh = match &self.source {
            Source::Fixed => return Err(PhoneError::Offline("the connection is gone".into())),
            Source::Tcp { addr, options } => {
                let connect = PhoneHandle::connect_tcp(addr, options.clone());
                match tokio::time::timeout_at(deadline, connect).await {
                    Ok(r) => r?,
                    Err(_) => return Err(PhoneError::Timeout),
                }
            }
            Source::Fleet { fleet, phone_id } => {
                fleet.probe_now().await;
                fleet
                    .phone(phone_id)
                    .filter(|h| !matches!(h.state(), ConnState::Offline(_)))
                    .ok_or_else(|| PhoneError::Offline(format!("{phone_id} is not back yet")))?
            }
        };
        self.replace(fresh.clone());
        Ok(fresh)
    }

    fn failed(&self, e: PhoneError, deadline: Duration) -> DeviceError {
        if matches!(e, PhoneError::Timeout) {
            self.suspect.store(true, Ordering::Relaxed);
        }
        device_error(e, deadline)
    }

    /// One attempt: connected, online, booted.
    async fn try_reconnect(&self, deadline: Instant) -> Result<(), PhoneError> {
        let h = self.connection(deadline).await?;
        // Waits while the phone asks its user to allow this host.
        h.wait_online(deadline).await?;
        let step = Instant::now() + Duration::from_secs(10);
        let out = h
            .shell("getprop sys.boot_completed", step.min(deadline))
            .await
            .inspect_err(|e| {
                if matches!(e, PhoneError::Timeout) {
                    self.suspect.store(true, Ordering::Relaxed);
                }
            })?;
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            Ok(())
        } else {
            Err(PhoneError::Offline("still booting".into()))
        }
    }
}

impl Device for PhoneDevice {
    async fn shell(&self, cmd: &str, deadline: Duration) -> Result<ShellOutput, DeviceError> {
        let out = self
            .handle()
            .shell(cmd, Instant::now() + deadline)
            .await
            .map_err(|e| self.failed(e, deadline))?;
        Ok(ShellOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            // The legacy shell reports no status: treat it as success, as adb does.
            exit: out.exit.unwrap_or(0),
        })
    }

    async fn push(&self, data: Vec<u8>, remote: &str, mode: u32) -> Result<(), DeviceError> {
        let deadline = Duration::from_secs(120);
        self.handle()
            .push(
                PushSource::Bytes(data.into()),
                remote,
                mode,
                Instant::now() + deadline,
                &mut |_, _| {},
            )
            .await
            .map_err(|e| self.failed(e, deadline))
    }

    async fn reconnect(&self, within: Duration) -> Result<(), DeviceError> {
        let deadline = Instant::now() + within;
        let mut attempt = 0;
        loop {
            let error = match self.try_reconnect(deadline).await {
                Ok(()) => {
                    tracing::info!(attempt, "the phone is back");
                    return Ok(());
                }
                Err(e) => e,
            };
            tracing::debug!(error = %error, attempt, "the phone is not back yet");
            let pause = backoff(attempt);
            if Instant::now() + pause >= deadline {
                return Err(match error {
                    PhoneError::Unauthorized => DeviceError::Disconnected(
                        "the phone asks to allow this host (\"Allow USB debugging?\"); nobody did"
                            .into(),
                    ),
                    other => device_error(other, within),
                });
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

//! Operators' actions on one phone, ordered from the console over `PF_CTL`
//! (`Control::Reboot`, `Control::Locate`) and carried out over ADB on a phone this agent owns.
//!
//! Both first hold the phone in the runner ([`RunnerHandle::hold`]): refused, with the reason
//! logged, while a run executes on it (the coordinator checks first and tells the operator;
//! this is the check that cannot race a run starting), and no work starts on it while held.
//!
//! - **reboot**: `reboot:` (what `adb reboot` does); the phone drops off, the fleet's probe
//!   passes (USB: the manager) reconnect it, and the hold lasts until `sys.boot_completed` is
//!   `1` again, checked each second (or [`OpsOptions::back_within`], 3 min), so no work lands
//!   on a half-booted phone. The inventory shows it offline meanwhile.
//! - **locate**: wake the screen (`input keyevent KEYCODE_WAKEUP`), dismiss the keyguard
//!   (`wm dismiss-keyguard`: farm phones have no PIN), push a solid magenta PNG shaped like
//!   the display to [`LOCATE_FILE`] and open it in the system's image viewer (`am start -a
//!   android.intent.action.VIEW -t image/png -d file://…`), which a stock phone shows full
//!   screen without an app of ours. After `for_seconds` (at most [`OpsOptions::locate_max`])
//!   HOME, and the hold ends.
//!
//! Each action runs in its own task, so the control consumer acks at once and a cancel is never
//! queued behind a locate. Each is reported (`uplink::op_reports`): started or refused at once,
//! then done or failed when it ends, so the console shows what became of it.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use phonefarm_shared::OpOutcome;

use crate::fleet::FleetHandle;
use crate::phone::{ConnState, PhoneHandle, PushSource};
use crate::runner::{HoldRefused, RunnerHandle};
use crate::uplink::op_reports::OpReports;

/// Where locate puts its image (the viewer needs shared storage to read it).
pub const LOCATE_FILE: &str = "/sdcard/Download/phonefarm-locate.png";
/// The locate colour: magenta, which hardly any app shows full screen.
pub const LOCATE_RGB: [u8; 3] = [255, 0, 255];

/// Timings of the actions.
#[derive(Debug, Clone)]
pub struct OpsOptions {
    /// A rebooted phone must be back (online and booted) within this; the hold ends then.
    pub back_within: Duration,
    /// Longest locate.
    pub locate_max: Duration,
    /// Deadline of one ADB command.
    pub command_timeout: Duration,
    /// Between checks whether a rebooted phone is back.
    pub poll: Duration,
}

impl Default for OpsOptions {
    fn default() -> Self {
        Self {
            back_within: Duration::from_secs(180),
            locate_max: Duration::from_secs(600),
            command_timeout: Duration::from_secs(20),
            poll: Duration::from_secs(1),
        }
    }
}

/// Why an action was not started.
#[derive(Debug, thiserror::Error)]
pub enum OpRefused {
    #[error("phone {0} is not one of this agent's")]
    UnknownPhone(String),
    #[error(transparent)]
    Hold(#[from] HoldRefused),
}

/// How waiting for a rebooted phone ended.
enum Back {
    Booted,
    NotInTime,
    ShutDown,
}

/// Carries out operators' actions; cloneable.
#[derive(Debug, Clone)]
pub struct PhoneOps {
    pub fleet: FleetHandle,
    pub runner: RunnerHandle,
    pub options: OpsOptions,
    pub shutdown: CancellationToken,
    /// Where the outcome of each action goes (started or refused, then done or failed).
    pub reports: OpReports,
}

impl PhoneOps {
    /// Holds the phone and reboots it in the background; refused at once (nothing done) for
    /// an unknown phone or one running work. Reported as started or refused, then done once
    /// the phone is back (failed if the command failed or it is not back in time).
    pub async fn reboot(&self, phone_id: &str, request_id: Uuid) -> Result<(), OpRefused> {
        let started = self.start_reboot(phone_id, request_id).await;
        self.report_start(phone_id, request_id, "reboot", &started);
        started
    }

    async fn start_reboot(&self, phone_id: &str, request_id: Uuid) -> Result<(), OpRefused> {
        let handle = self
            .fleet
            .phone(phone_id)
            .ok_or_else(|| OpRefused::UnknownPhone(phone_id.into()))?;
        let hold = self.runner.hold(phone_id, "reboot").await?;
        let ops = self.clone();
        let phone_id = phone_id.to_string();
        tokio::spawn(async move {
            let deadline = Instant::now() + ops.options.command_timeout;
            let end = match handle.reboot(deadline).await {
                Ok(()) => {
                    tracing::info!(%phone_id, %request_id, "phone rebooting");
                    match ops.wait_back(&handle, &phone_id).await {
                        Back::Booted => Some(OpOutcome::Done),
                        Back::NotInTime => Some(OpOutcome::Failed {
                            reason: format!(
                                "the phone was not back within {} s",
                                ops.options.back_within.as_secs()
                            ),
                        }),
                        Back::ShutDown => None,
                    }
                }
                Err(e) => {
                    tracing::warn!(%phone_id, %request_id, error = %e, "reboot failed");
                    Some(OpOutcome::Failed {
                        reason: format!("the reboot command failed: {e}"),
                    })
                }
            };
            drop(hold);
            if let Some(end) = end {
                ops.reports.send(&phone_id, request_id, "reboot", end);
            }
        });
        Ok(())
    }

    fn report_start(
        &self,
        phone_id: &str,
        request_id: Uuid,
        action: &str,
        started: &Result<(), OpRefused>,
    ) {
        let outcome = match started {
            Ok(()) => OpOutcome::Started,
            Err(e) => OpOutcome::Refused {
                reason: e.to_string(),
            },
        };
        self.reports.send(phone_id, request_id, action, outcome);
    }

    /// Waits until the phone went away and is back, booted (or the deadline passed).
    async fn wait_back(&self, old: &PhoneHandle, phone_id: &str) -> Back {
        let until = Instant::now() + self.options.back_within;
        // The old connection ends with the reboot; wait for that, so it is not taken for the
        // phone being back.
        let mut state = old.watch_state();
        let gone = tokio::time::timeout_at(
            until,
            state.wait_for(|s| !matches!(s, ConnState::Online(_))),
        );
        tokio::select! {
            () = self.shutdown.cancelled() => return Back::ShutDown,
            _ = gone => {}
        }
        // The fleet's probe passes reconnect it (every `probe_interval`); here only the cheap
        // checks, not a probe pass of every phone each second.
        loop {
            if let Some(h) = self.fleet.phone(phone_id)
                && matches!(h.state(), ConnState::Online(_))
            {
                let deadline = Instant::now() + self.options.command_timeout;
                if let Ok(o) = h.shell("getprop sys.boot_completed", deadline).await
                    && String::from_utf8_lossy(&o.stdout).trim() == "1"
                {
                    tracing::info!(%phone_id, "phone back after the reboot");
                    return Back::Booted;
                }
            }
            if Instant::now() >= until {
                tracing::warn!(%phone_id, within = ?self.options.back_within, "phone not back after the reboot; taking work again");
                return Back::NotInTime;
            }
            if !crate::uplink::pause(self.options.poll, &self.shutdown).await {
                return Back::ShutDown;
            }
        }
    }

    /// Holds the phone, wakes it and shows the locate colour for `for_seconds`, in the
    /// background; refused at once for an unknown phone or one running work.
    pub async fn locate(
        &self,
        phone_id: &str,
        request_id: Uuid,
        for_seconds: u32,
    ) -> Result<(), OpRefused> {
        let started = self.start_locate(phone_id, request_id, for_seconds).await;
        self.report_start(phone_id, request_id, "locate", &started);
        started
    }

    async fn start_locate(
        &self,
        phone_id: &str,
        request_id: Uuid,
        for_seconds: u32,
    ) -> Result<(), OpRefused> {
        let handle = self
            .fleet
            .phone(phone_id)
            .ok_or_else(|| OpRefused::UnknownPhone(phone_id.into()))?;
        let hold = self.runner.hold(phone_id, "locate").await?;
        let ops = self.clone();
        let phone_id = phone_id.to_string();
        let show = Duration::from_secs(u64::from(for_seconds)).min(self.options.locate_max);
        tokio::spawn(async move {
            let end = match ops.show_colour(&handle).await {
                Ok(()) => {
                    tracing::info!(%phone_id, %request_id, for_seconds = show.as_secs(), "locate colour shown");
                    let waited = crate::uplink::pause(show, &ops.shutdown).await;
                    let deadline = Instant::now() + ops.options.command_timeout;
                    if let Err(e) = handle.shell("input keyevent KEYCODE_HOME", deadline).await {
                        tracing::warn!(%phone_id, error = %e, "cannot leave the locate screen");
                    }
                    waited.then_some(OpOutcome::Done)
                }
                Err(e) => {
                    tracing::warn!(%phone_id, %request_id, error = %e, "locate failed");
                    Some(OpOutcome::Failed {
                        reason: format!("the colour could not be shown: {e}"),
                    })
                }
            };
            drop(hold);
            if let Some(end) = end {
                ops.reports.send(&phone_id, request_id, "locate", end);
            }
        });
        Ok(())
    }

    async fn show_colour(&self, h: &PhoneHandle) -> Result<(), crate::phone::PhoneError> {
        let deadline = Instant::now() + self.options.command_timeout;
        h.shell(
            "input keyevent KEYCODE_WAKEUP && wm dismiss-keyguard",
            deadline,
        )
        .await?;
        let size = h.shell("wm size", deadline).await?;
        let (w, ht) = parse_wm_size(&String::from_utf8_lossy(&size.stdout)).unwrap_or((1080, 2400));
        // A small image in the display's shape: the viewer scales it to fill the screen.
        let png = solid_png((w / 20).clamp(1, 256), (ht / 20).clamp(1, 256), LOCATE_RGB);
        h.push(
            PushSource::Bytes(png.into()),
            LOCATE_FILE,
            0o644,
            deadline,
            &mut |_, _| {},
        )
        .await?;
        let view =
            format!("am start -a android.intent.action.VIEW -t image/png -d file://{LOCATE_FILE}");
        let o = h.shell(&view, deadline).await?;
        if o.exit.is_some_and(|e| e != 0) {
            return Err(crate::phone::PhoneError::Remote(
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}

/// `Physical size: 1080x2400` (an `Override size:` line, when there is one, wins).
pub fn parse_wm_size(text: &str) -> Option<(u32, u32)> {
    let mut found = None;
    for line in text.lines() {
        let Some((label, size)) = line.split_once(':') else {
            continue;
        };
        let Some((w, h)) = size.trim().split_once('x') else {
            continue;
        };
        let (Ok(w), Ok(h)) = (w.parse(), h.parse()) else {
            continue;
        };
        if label.trim() == "Override size" || found.is_none() {
            found = Some((w, h));
        }
    }
    found
}

/// A `width`x`height` 8-bit RGB PNG of one colour, its rows in stored (uncompressed) deflate
/// blocks: a few KiB for the locate image, and no compressor needed.
pub fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    // Each row: filter byte 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(width as usize * 3))
        .collect();
    let raw = row.repeat(height as usize);
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(0xffff).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len())); // BFINAL, BTYPE 00
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wm_size_prefers_the_override() {
        assert_eq!(
            parse_wm_size("Physical size: 1080x2400\n"),
            Some((1080, 2400))
        );
        assert_eq!(
            parse_wm_size("Physical size: 1440x3200\nOverride size: 1080x2400\n"),
            Some((1080, 2400))
        );
        assert_eq!(parse_wm_size("usage: wm\n"), None);
    }

    #[test]
    fn the_locate_png_is_well_formed() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let png = solid_png(54, 120, LOCATE_RGB);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 54, 0, 0, 0, 120]);
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xae\x42\x60\x82");
        // The first stored block holds the first row: filter 0, then the colour.
        let idat = 8 + 25;
        assert_eq!(&png[idat + 4..idat + 8], b"IDAT");
        let z = &png[idat + 8..];
        assert_eq!(
            (z[0], z[1], z[2]),
            (0x78, 0x01, 1),
            "one final stored block"
        );
        let len = u16::from_le_bytes([z[3], z[4]]);
        assert_eq!(len as usize, 120 * (1 + 54 * 3));
        assert_eq!(u16::from_le_bytes([z[5], z[6]]), !len);
        assert_eq!(&z[7..11], &[0, 255, 0, 255]);
        // Bigger than one block: several, only the last final.
        let big = solid_png(256, 256, [1, 2, 3]);
        let z = &big[8 + 25 + 8..];
        assert_eq!(z[2], 0, "first block not final");
        assert_eq!(u16::from_le_bytes([z[3], z[4]]), 0xffff);
    }
}

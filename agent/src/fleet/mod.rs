//! The agent's view of its phones: one [`PhoneHandle`] per `--tcp` address and per USB port
//! path, (re)connected as they come and go, with health probes (battery level and temperature
//! via `dumpsys battery`, storage via `df /data`, screen via `dumpsys power`, the app's version
//! via `dumpsys package`).
//!
//! The fleet actor owns the slots; its cloneable [`FleetHandle`] looks phones up by fleet-wide
//! `phone_id` and watches the inventory ([`PhoneStatus`] list). A `phone_id` is the phone's
//! serial; when two phones on this host report the same serial (cheap devices do) each gets
//! `<serial>-<location>` and a `serial_collision` warning is logged. The location (USB port
//! path or `host:port`) is always reported.

pub mod probe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use phonefarm_shared::{PhoneState, PhoneStatus, is_subject_token};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::adb::auth::KeyRing;
use crate::phone::{ConnState, PhoneHandle, PhoneOptions};
use probe::Health;

/// How the fleet finds and watches its phones.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Network phones, emulators or simulators as `host:port`.
    pub tcp: Vec<String>,
    /// Also open every ADB interface on USB (no effect where USB is unavailable).
    pub usb: bool,
    /// Host keys offered to phones.
    pub keys: KeyRing,
    /// Time between probe passes (reconnects, health).
    pub probe_interval: Duration,
    /// Deadline of one probe pass per phone.
    pub probe_timeout: Duration,
    /// The app whose installed version is reported.
    pub app_package: String,
}

enum Command {
    SetRunning {
        phone_id: String,
        queue_item_id: Option<Uuid>,
    },
    ProbeNow(oneshot::Sender<()>),
}

/// Cloneable handle to the fleet actor.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    tx: mpsc::Sender<Command>,
    statuses: watch::Receiver<Vec<PhoneStatus>>,
    phones: watch::Receiver<Arc<HashMap<String, PhoneHandle>>>,
}

impl FleetHandle {
    /// Starts the actor; the first probe pass runs at once.
    pub fn spawn(config: FleetConfig, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let (stx, srx) = watch::channel(Vec::new());
        let (ptx, prx) = watch::channel(Arc::new(HashMap::new()));
        let slots = config
            .tcp
            .iter()
            .map(|addr| Slot::new("tcp", addr.clone()))
            .collect();
        let actor = Actor {
            config,
            slots,
            running: HashMap::new(),
            rx,
            statuses: stx,
            phones: ptx,
            shutdown,
        };
        tokio::spawn(actor.run());
        Self {
            tx,
            statuses: srx,
            phones: prx,
        }
    }

    /// The phone with this fleet-wide id, if it is known.
    pub fn phone(&self, phone_id: &str) -> Option<PhoneHandle> {
        self.phones.borrow().get(phone_id).cloned()
    }

    /// The inventory, updated on every change.
    pub fn statuses(&self) -> watch::Receiver<Vec<PhoneStatus>> {
        self.statuses.clone()
    }

    /// Records which queue item runs on a phone (reported in the inventory).
    pub async fn set_running(&self, phone_id: &str, queue_item_id: Option<Uuid>) {
        let _ = self
            .tx
            .send(Command::SetRunning {
                phone_id: phone_id.to_string(),
                queue_item_id,
            })
            .await;
    }

    /// Runs a probe pass now and waits for it.
    pub async fn probe_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::ProbeNow(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Slot {
    transport: &'static str,
    location: String,
    handle: Option<PhoneHandle>,
    health: Health,
    /// The USB serial from the descriptor (before any shell answered).
    usb_serial: Option<String>,
}

impl Slot {
    fn new(transport: &'static str, location: String) -> Self {
        Self {
            transport,
            location,
            handle: None,
            health: Health::default(),
            usb_serial: None,
        }
    }

    fn state(&self) -> PhoneState {
        match self.handle.as_ref().map(PhoneHandle::state) {
            Some(ConnState::Online(_)) => PhoneState::Online,
            Some(ConnState::Unauthorized) => PhoneState::Unauthorized,
            _ => PhoneState::Offline,
        }
    }

    fn serial(&self) -> Option<&str> {
        self.health.serial.as_deref().or(self.usb_serial.as_deref())
    }
}

/// Replaces every character a subject token may not hold with `_`.
pub fn token_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '.' | '*' | '>') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// Fleet-wide ids for `(serial, location)` pairs: the serial, or `<serial>-<location>` for
/// serials seen more than once (and the location alone when the serial is unknown).
pub fn assign_ids(phones: &[(Option<&str>, &str)]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (serial, _) in phones {
        if let Some(s) = serial {
            *counts.entry(s).or_default() += 1;
        }
    }
    phones
        .iter()
        .map(|(serial, location)| match serial {
            Some(s) if counts.get(s) == Some(&1) && is_subject_token(s) => (*s).to_string(),
            Some(s) => {
                if counts.get(s).copied().unwrap_or(0) > 1 {
                    tracing::warn!(serial = %s, location, "serial_collision: two phones report the same serial");
                }
                token_safe(&format!("{s}-{location}"))
            }
            None => token_safe(location),
        })
        .collect()
}

struct Actor {
    config: FleetConfig,
    slots: Vec<Slot>,
    running: HashMap<String, Uuid>,
    rx: mpsc::Receiver<Command>,
    statuses: watch::Sender<Vec<PhoneStatus>>,
    phones: watch::Sender<Arc<HashMap<String, PhoneHandle>>>,
    shutdown: CancellationToken,
}

impl Actor {
    async fn run(mut self) {
        let mut tick =
            tokio::time::interval(self.config.probe_interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.pass().await,
                cmd = self.rx.recv() => match cmd {
                    Some(Command::SetRunning { phone_id, queue_item_id }) => {
                        match queue_item_id {
                            Some(q) => self.running.insert(phone_id, q),
                            None => self.running.remove(&phone_id),
                        };
                        self.publish();
                    }
                    Some(Command::ProbeNow(done)) => {
                        self.pass().await;
                        let _ = done.send(());
                    }
                    None => return,
                },
            }
        }
    }

    async fn discover_usb(&mut self) {
        let known: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.transport == "usb" && s.state() != PhoneState::Offline)
            .map(|s| s.location.clone())
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            let Some(c) = crate::usb::rusb_io::context() else {
                return Vec::new();
            };
            crate::usb::rusb_io::find_adb_interfaces(&c)
                .into_iter()
                .filter(|cand| !known.contains(&cand.port_path))
                .map(|cand| (cand.port_path.clone(), cand.open()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (port_path, opened) in found {
            match opened {
                Ok(bulk) => {
                    let serial = bulk.serial.clone();
                    let (sink, source) = crate::usb::spawn(bulk, crate::usb::UsbTiming::default());
                    let handle = PhoneHandle::spawn(
                        sink,
                        source,
                        &port_path,
                        PhoneOptions::new(self.config.keys.clone()),
                    );
                    // A re-enumerated device on the same port is the same slot.
                    let slot = match self
                        .slots
                        .iter_mut()
                        .find(|s| s.transport == "usb" && s.location == port_path)
                    {
                        Some(s) => s,
                        None => {
                            self.slots.push(Slot::new("usb", port_path.clone()));
                            let last = self.slots.len() - 1;
                            &mut self.slots[last]
                        }
                    };
                    slot.handle = Some(handle);
                    slot.usb_serial = serial;
                    tracing::info!(location = %port_path, "usb phone opened");
                }
                Err(e) => {
                    tracing::warn!(location = %port_path, error = %e, "cannot open usb phone")
                }
            }
        }
    }

    async fn connect_tcp(&mut self) {
        let keys = self.config.keys.clone();
        let timeout = self.config.probe_timeout;
        for slot in self.slots.iter_mut().filter(|s| s.transport == "tcp") {
            let offline = slot
                .handle
                .as_ref()
                .is_none_or(|h| matches!(h.state(), ConnState::Offline(_)));
            if !offline {
                continue;
            }
            let connect = PhoneHandle::connect_tcp(&slot.location, PhoneOptions::new(keys.clone()));
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(h)) => {
                    tracing::info!(location = %slot.location, "tcp phone connected");
                    slot.handle = Some(h);
                }
                Ok(Err(e)) => {
                    tracing::debug!(location = %slot.location, error = %e, "tcp phone unreachable");
                    slot.handle = None;
                }
                Err(_) => {
                    tracing::debug!(location = %slot.location, "tcp connect timed out");
                    slot.handle = None;
                }
            }
        }
    }

    async fn pass(&mut self) {
        if self.config.usb {
            self.discover_usb().await;
        }
        self.connect_tcp().await;
        let deadline = Instant::now() + self.config.probe_timeout;
        let package = self.config.app_package.clone();
        let probes = self.slots.iter().map(|s| {
            let handle = s.handle.clone();
            let package = package.clone();
            async move {
                match handle {
                    Some(h)
                        if matches!(h.state(), ConnState::Online(_) | ConnState::Connecting) =>
                    {
                        Some(probe::probe(&h, &package, deadline).await)
                    }
                    _ => None,
                }
            }
        });
        let results = futures::future::join_all(probes).await;
        for (slot, health) in self.slots.iter_mut().zip(results) {
            if let Some(h) = health
                && h != Health::default()
            {
                let serial = h.serial.clone().or(slot.health.serial.take());
                slot.health = Health { serial, ..h };
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let keys: Vec<(Option<&str>, &str)> = self
            .slots
            .iter()
            .map(|s| (s.serial(), s.location.as_str()))
            .collect();
        let ids = assign_ids(&keys);
        let mut phones = HashMap::new();
        let mut statuses = Vec::new();
        for (slot, id) in self.slots.iter().zip(ids) {
            if let Some(h) = &slot.handle {
                phones.insert(id.clone(), h.clone());
            }
            let h = &slot.health;
            statuses.push(PhoneStatus {
                phone_id: id.clone(),
                serial: slot.serial().unwrap_or_default().to_string(),
                transport: slot.transport.to_string(),
                location: slot.location.clone(),
                state: slot.state(),
                model: h.model.clone(),
                android_version: h.android_version.clone(),
                battery_level: h.battery_level,
                temperature_decicelsius: h.temperature_decicelsius,
                storage_free_bytes: h.storage_free_bytes,
                screen_on: h.screen_on,
                app_version: h.app_version.clone(),
                current_queue_item_id: self.running.get(&id).copied(),
            });
        }
        self.phones.send_replace(Arc::new(phones));
        self.statuses.send_if_modified(|current| {
            if *current == statuses {
                false
            } else {
                *current = statuses;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_serials_unless_they_collide() {
        let ids = assign_ids(&[
            (Some("A1"), "1-1"),
            (Some("DUP"), "1-2"),
            (Some("DUP"), "1-3.1"),
            (None, "10.0.0.5:5555"),
        ]);
        assert_eq!(ids, ["A1", "DUP-1-2", "DUP-1-3_1", "10_0_0_5:5555"]);
        assert!(ids.iter().all(|i| is_subject_token(i)));
    }
}

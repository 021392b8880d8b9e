//! The agent's view of its phones: one [`PhoneHandle`] per `--tcp` address and per USB port
//! path, (re)connected as they come and go, with health probes (battery level and temperature
//! via `dumpsys battery`, storage via `df /data`, screen via `dumpsys power`, the app's version
//! via `dumpsys package`).
//!
//! USB phones come from the [`UsbManager`] (hotplug or enumeration, the permission wait, the
//! recovery ladder, serial collisions), the same one `phonefarm-agent devices` uses: the fleet
//! follows its list and takes its port paths, states (`needs_attention` included), phone ids
//! and connections. Network phones are the fleet's own: reconnected on each probe pass.
//!
//! A phone that needs a person is reported `needs_attention` (and so is given no work) until it
//! recovers: a battery below 15 % or hotter than 42 °C (seen by a probe, or by a run's check
//! before it starts, [`FleetHandle::flag`]) until a probe sees it charged or cooled, a full
//! storage (a push failed) until a probe sees 1 GiB free.
//!
//! The fleet actor owns the slots; its cloneable [`FleetHandle`] looks phones up by fleet-wide
//! `phone_id` and watches the inventory ([`PhoneStatus`] list). A `phone_id` is the phone's
//! serial; USB phones sharing a serial get the manager's `<serial>@<port>` ids, and a network
//! phone whose serial is already taken gets `<serial>-<host:port>` (a `serial_collision`
//! warning is logged). The location (USB port path or `host:port`) is always reported.

pub mod probe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use phonefarm_flows::flows::{FlowOptions, HealthProblem};
use phonefarm_shared::{PhoneState, PhoneStatus, is_subject_token};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::adb::auth::KeyRing;
use crate::phone::{ConnState, PhoneHandle, PhoneOptions};
use crate::usb::rusb_io::{Discovery, RusbBackend};
use crate::usb::{ManagerConfig, UsbManager, UsbPhone, UsbState};
use probe::Health;

/// How the fleet finds and watches its phones.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Network phones, emulators or simulators as `host:port`.
    pub tcp: Vec<String>,
    /// Also open every ADB interface on USB, through a [`UsbManager`] with the default
    /// discovery (hotplug where udevd runs, else enumeration); no effect where USB is
    /// unavailable. [`FleetHandle::spawn_with_usb`] takes a manager built by the caller instead.
    pub usb: bool,
    /// How that manager finds USB phones, and its enumeration period when polling.
    pub usb_discovery: Discovery,
    pub usb_poll: Duration,
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
    Flag {
        phone_id: String,
        problem: HealthProblem,
    },
}

/// Free storage under which a phone flagged for full storage stays flagged.
const STORAGE_RECOVERED: u64 = 1024 * 1024 * 1024;

/// Whether `health` shows the phone over `problem` (unknown counts as not yet).
fn recovered(problem: HealthProblem, health: &Health) -> bool {
    let limits = FlowOptions::default();
    match problem {
        HealthProblem::BatteryLow => health
            .battery_level
            .is_some_and(|b| b >= limits.min_battery),
        HealthProblem::TooHot => health
            .temperature_decicelsius
            .is_some_and(|t| i32::from(t) <= limits.max_temperature),
        HealthProblem::StorageFull => health
            .storage_free_bytes
            .is_some_and(|f| f >= STORAGE_RECOVERED),
    }
}

/// What a probe alone shows wrong with a phone.
fn unfit(health: &Health) -> Option<HealthProblem> {
    let limits = FlowOptions::default();
    if health.battery_level.is_some_and(|b| b < limits.min_battery) {
        Some(HealthProblem::BatteryLow)
    } else if health
        .temperature_decicelsius
        .is_some_and(|t| i32::from(t) > limits.max_temperature)
    {
        Some(HealthProblem::TooHot)
    } else {
        None
    }
}

/// Cloneable handle to the fleet actor.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    tx: mpsc::Sender<Command>,
    statuses: watch::Receiver<Vec<PhoneStatus>>,
    phones: watch::Receiver<Arc<HashMap<String, PhoneHandle>>>,
}

impl FleetHandle {
    /// Starts the actor; the first probe pass runs at once. With `config.usb`, USB phones come
    /// from a [`UsbManager`] over libusb started here.
    pub fn spawn(config: FleetConfig, shutdown: CancellationToken) -> Self {
        let usb = if config.usb {
            let mut manager = ManagerConfig::new(config.keys.clone());
            manager.poll_interval = config.usb_poll;
            UsbSource::Start(manager, config.usb_discovery)
        } else {
            UsbSource::None
        };
        Self::start(config, usb, shutdown)
    }

    /// Starts the actor with USB phones from `usb` (any backend: tests use a fake bus);
    /// `config.usb` is ignored.
    pub fn spawn_with_usb(
        config: FleetConfig,
        usb: UsbManager,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start(config, UsbSource::Manager(usb), shutdown)
    }

    fn start(config: FleetConfig, usb: UsbSource, shutdown: CancellationToken) -> Self {
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
            usb,
            running: HashMap::new(),
            attention: HashMap::new(),
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

    /// Marks a phone as needing attention for `problem` until a probe sees it recovered (a
    /// run found it unfit).
    pub async fn flag(&self, phone_id: &str, problem: HealthProblem) {
        let _ = self
            .tx
            .send(Command::Flag {
                phone_id: phone_id.to_string(),
                problem,
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

/// Where the fleet's USB phones come from.
enum UsbSource {
    None,
    /// A manager over libusb, started by the actor (opening libusb may block).
    Start(ManagerConfig, Discovery),
    Manager(UsbManager),
}

struct Slot {
    transport: &'static str,
    location: String,
    handle: Option<PhoneHandle>,
    health: Health,
    /// The USB serial (descriptor or banner) before any shell answered.
    usb_serial: Option<String>,
    /// USB phones: the manager's phone id and state.
    usb: Option<(String, UsbState)>,
}

impl Slot {
    fn new(transport: &'static str, location: String) -> Self {
        Self {
            transport,
            location,
            handle: None,
            health: Health::default(),
            usb_serial: None,
            usb: None,
        }
    }

    fn state(&self) -> PhoneState {
        if let Some((_, s)) = &self.usb {
            return match s {
                UsbState::Online => PhoneState::Online,
                UsbState::Unauthorized => PhoneState::Unauthorized,
                UsbState::NeedsAttention => PhoneState::NeedsAttention,
                _ => PhoneState::Offline,
            };
        }
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
    /// The `--tcp` phones first, then USB phones in the manager's (port path) order.
    slots: Vec<Slot>,
    usb: UsbSource,
    running: HashMap<String, Uuid>,
    /// Phones that need attention, by phone id.
    attention: HashMap<String, HealthProblem>,
    rx: mpsc::Receiver<Command>,
    statuses: watch::Sender<Vec<PhoneStatus>>,
    phones: watch::Sender<Arc<HashMap<String, PhoneHandle>>>,
    shutdown: CancellationToken,
}

impl Actor {
    async fn run(mut self) {
        let mut usb_rx = self.start_usb().await;
        let mut tick =
            tokio::time::interval(self.config.probe_interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.pass().await,
                changed = async { usb_rx.as_mut()?.changed().await.ok() }, if usb_rx.is_some() => {
                    match changed {
                        Some(()) => {
                            let list = usb_rx.as_mut().map(|rx| rx.borrow_and_update().clone());
                            if self.sync_usb(&list.unwrap_or_default()) {
                                // A phone just came online: learn its health now.
                                self.pass().await;
                            } else {
                                self.publish();
                            }
                        }
                        None => usb_rx = None,
                    }
                }
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
                    Some(Command::Flag { phone_id, problem }) => {
                        tracing::warn!(%phone_id, problem = problem.as_str(), "phone needs attention");
                        self.attention.insert(phone_id, problem);
                        self.publish();
                    }
                    None => return,
                },
            }
        }
    }

    /// Starts the USB manager if asked to; returns its list of phones to follow.
    async fn start_usb(&mut self) -> Option<watch::Receiver<Arc<Vec<UsbPhone>>>> {
        let manager = match std::mem::replace(&mut self.usb, UsbSource::None) {
            UsbSource::None => return None,
            UsbSource::Manager(m) => m,
            UsbSource::Start(config, discovery) => {
                let backend = tokio::task::spawn_blocking(move || RusbBackend::new(discovery))
                    .await
                    .ok()
                    .flatten()?;
                UsbManager::spawn(backend, config)
            }
        };
        let mut rx = manager.watch();
        let list = rx.borrow_and_update().clone();
        self.sync_usb(&list);
        // The actor keeps the manager alive: it stops with its last handle.
        self.usb = UsbSource::Manager(manager);
        Some(rx)
    }

    /// Mirrors the manager's list into the USB slots; returns whether a phone came online
    /// that has not been probed on this connection.
    fn sync_usb(&mut self, phones: &[UsbPhone]) -> bool {
        let mut old: HashMap<String, Slot> = HashMap::new();
        let mut kept = Vec::with_capacity(self.slots.len());
        for s in self.slots.drain(..) {
            if s.transport == "usb" {
                old.insert(s.location.clone(), s);
            } else {
                kept.push(s);
            }
        }
        let mut fresh_online = false;
        for p in phones {
            let mut slot = old
                .remove(&p.port_path)
                .unwrap_or_else(|| Slot::new("usb", p.port_path.clone()));
            let same_connection = match (&slot.handle, &p.handle) {
                (Some(a), Some(b)) => a.watch_state().same_channel(&b.watch_state()),
                (None, None) => true,
                _ => false,
            };
            if !same_connection {
                // A new connection (a replug may be another phone): forget what we learned.
                let serial = slot.health.serial.take();
                slot.health = Health::default();
                if p.serial.is_none() || p.serial == serial {
                    slot.health.serial = serial;
                }
            }
            if p.state == UsbState::Online && (!same_connection || slot.health == Health::default())
            {
                fresh_online = true;
            }
            slot.handle = p.handle.clone();
            slot.usb_serial = p.serial.clone();
            slot.usb = Some((p.phone_id.clone(), p.state));
            kept.push(slot);
        }
        self.slots = kept;
        fresh_online
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
        self.connect_tcp().await;
        let deadline = Instant::now() + self.config.probe_timeout;
        let package = self.config.app_package.clone();
        let probes = self.slots.iter().map(|s| {
            let handle = s.handle.clone();
            let package = package.clone();
            async move {
                match handle {
                    // (A connection still starting is waited for within the probe deadline.)
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
        let ids = self.ids();
        for (slot, id) in self.slots.iter().zip(ids) {
            if let Some(problem) = self.attention.get(&id).copied()
                && recovered(problem, &slot.health)
            {
                tracing::info!(phone_id = %id, problem = problem.as_str(), "phone recovered");
                self.attention.remove(&id);
            }
            if let Some(problem) = unfit(&slot.health)
                && !self.attention.contains_key(&id)
            {
                tracing::warn!(phone_id = %id, problem = problem.as_str(), "phone needs attention");
                self.attention.insert(id, problem);
            }
        }
        self.publish();
    }

    /// Fleet-wide ids: the USB manager's for USB phones; for network phones the serial, or
    /// `<serial>-<location>` when that id is taken by another phone here.
    fn ids(&self) -> Vec<String> {
        let keys: Vec<(Option<&str>, &str)> = self
            .slots
            .iter()
            .map(|s| (s.serial(), s.location.as_str()))
            .collect();
        let by_serial = assign_ids(&keys);
        let usb_ids: std::collections::HashSet<&str> = self
            .slots
            .iter()
            .filter_map(|s| s.usb.as_ref().map(|(id, _)| id.as_str()))
            .collect();
        self.slots
            .iter()
            .zip(by_serial)
            .map(|(s, id)| match (&s.usb, s.serial()) {
                (Some((usb_id, _)), _) => usb_id.clone(),
                (None, Some(serial)) if usb_ids.contains(id.as_str()) => {
                    tracing::warn!(%serial, location = %s.location, "serial_collision: a network phone reports the serial of a usb phone");
                    token_safe(&format!("{serial}-{}", s.location))
                }
                (None, _) => id,
            })
            .collect()
    }

    fn publish(&mut self) {
        let ids = self.ids();
        let mut phones = HashMap::new();
        let mut statuses = Vec::new();
        for (slot, id) in self.slots.iter().zip(ids) {
            if let Some(h) = &slot.handle {
                phones.insert(id.clone(), h.clone());
            }
            let h = &slot.health;
            let state = match slot.state() {
                PhoneState::Online if self.attention.contains_key(&id) => {
                    PhoneState::NeedsAttention
                }
                other => other,
            };
            statuses.push(PhoneStatus {
                phone_id: id.clone(),
                serial: slot.serial().unwrap_or_default().to_string(),
                transport: slot.transport.to_string(),
                location: slot.location.clone(),
                state,
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
        log_changes(&self.statuses.borrow(), &statuses);
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

/// One info line per phone whose state changed (appeared, went online, offline, unauthorized,
/// needs attention) and per phone gone: what an operator reading the journal wants to know.
fn log_changes(before: &[PhoneStatus], after: &[PhoneStatus]) {
    for now in after {
        let was = before.iter().find(|b| b.phone_id == now.phone_id);
        if was.map(|b| b.state) != Some(now.state) {
            tracing::info!(
                phone_id = %now.phone_id,
                location = %now.location,
                from = ?was.map(|b| b.state),
                to = ?now.state,
                "phone state changed"
            );
        }
    }
    for gone in before
        .iter()
        .filter(|b| !after.iter().any(|a| a.phone_id == b.phone_id))
    {
        tracing::info!(phone_id = %gone.phone_id, location = %gone.location, "phone gone");
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

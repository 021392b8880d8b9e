//! The USB manager: an actor that keeps the set of USB phones by port path and a cloneable
//! [`UsbManager`] handle to it.
//!
//! It learns about devices from libusb hotplug where the backend supports it (with a slow
//! rescan as a safety net), else by enumerating every `poll_interval`. A new ADB interface is
//! opened and gets a [`PhoneHandle`] over [`super::spawn`]; the phone's connection state is
//! followed and reported. An open refused with EACCES (the device appeared before udev fixed
//! its node's mode) is retried with backoff for a bounded time (`waiting_permission`). A
//! connection that fails while the device is still on the bus climbs the recovery ladder:
//! reconnect, clear halt, USB reset, then `needs_attention` (no more retries until the phone is
//! unplugged). Decisions live in [`super::policy`]; device access goes through [`UsbBackend`],
//! so everything here is tested with a fake backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::policy::{
    Diff, Ladder, Listed, PermissionPolicy, PermissionWait, Recovery, assign_ids, collisions, diff,
    is_port_path,
};
use super::{BulkIo, UsbError, UsbTiming};
use crate::adb::auth::KeyRing;
use crate::phone::{ConnState, PhoneHandle, PhoneOptions};

mod backend;
pub use backend::{OpenError, Opened, UsbBackend};

/// What the manager reports for one USB phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbState {
    /// Seen on the bus, not opened yet.
    Appeared,
    /// Open refused with EACCES; retrying while udev fixes the node.
    WaitingPermission,
    /// Opened; the ADB handshake is running.
    Connecting,
    Online,
    /// The phone shows the "Allow USB debugging?" prompt.
    Unauthorized,
    /// The connection failed; a recovery step is scheduled (see the detail).
    Offline,
    /// Recovery failed or permission never came: a human has to look. No more retries until
    /// the phone is unplugged.
    NeedsAttention,
    /// Left the bus (the last report for this port path).
    Gone,
}

impl UsbState {
    pub fn as_str(self) -> &'static str {
        match self {
            UsbState::Appeared => "appeared",
            UsbState::WaitingPermission => "waiting_permission",
            UsbState::Connecting => "connecting",
            UsbState::Online => "online",
            UsbState::Unauthorized => "unauthorized",
            UsbState::Offline => "offline",
            UsbState::NeedsAttention => "needs_attention",
            UsbState::Gone => "gone",
        }
    }

    /// Whether the state is a resting one (not on its way somewhere by itself).
    pub fn is_settled(self) -> bool {
        !matches!(
            self,
            UsbState::Appeared | UsbState::WaitingPermission | UsbState::Connecting
        )
    }
}

impl std::fmt::Display for UsbState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One USB phone as the manager sees it.
#[derive(Debug, Clone)]
pub struct UsbPhone {
    /// Physical location, `<bus>-<port>[.<port>…]`: the phone's slot on this host.
    pub port_path: String,
    /// Fleet-wide id: the serial, or `serial@<port>` when serials collide (see
    /// [`super::policy::assign_ids`]).
    pub phone_id: String,
    pub serial: Option<String>,
    pub vendor_id: u16,
    pub product_id: u16,
    pub state: UsbState,
    /// Why it is offline, waiting or needs attention.
    pub detail: Option<String>,
    /// The phone's actor, while a connection exists.
    pub handle: Option<PhoneHandle>,
}

/// Changes the manager broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbEvent {
    State {
        port_path: String,
        phone_id: String,
        state: UsbState,
        detail: Option<String>,
    },
    /// Several phones on this host report one serial; their ids carry the port path.
    SerialCollision {
        serial: String,
        port_paths: Vec<String>,
    },
}

/// Manager knobs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Use hotplug notifications when the backend supports them.
    pub hotplug: bool,
    /// Enumeration period without hotplug.
    pub poll_interval: Duration,
    /// Safety-net enumeration period with hotplug.
    pub hotplug_rescan: Duration,
    pub permission: PermissionPolicy,
    /// A connection online this long resets the recovery ladder.
    pub healthy_after: Duration,
    /// Pause before a recovery step (lets the old connection's threads release the device).
    pub retry_delay: Duration,
    /// Busy or vanished-while-listed opens tolerated before they count as a failure.
    pub busy_retries: u32,
    /// After a reset we issued, a new address on the port is the reset, not a replug.
    pub reset_grace: Duration,
    pub timing: UsbTiming,
    pub phone: PhoneOptions,
}

impl ManagerConfig {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            hotplug: true,
            poll_interval: Duration::from_secs(1),
            hotplug_rescan: Duration::from_secs(5),
            permission: PermissionPolicy::default(),
            healthy_after: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
            busy_retries: 6,
            reset_grace: Duration::from_secs(10),
            timing: UsbTiming::default(),
            phone: PhoneOptions::new(keys),
        }
    }
}

enum Cmd {
    Rescan(oneshot::Sender<()>),
}

/// Cloneable handle to the manager. The manager stops (and closes every phone it opened) when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct UsbManager {
    cmds: mpsc::Sender<Cmd>,
    phones: watch::Receiver<Arc<Vec<UsbPhone>>>,
    events: broadcast::Sender<UsbEvent>,
    hotplug: watch::Receiver<Option<bool>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rescan")
    }
}

impl UsbManager {
    /// Starts the manager over `backend`; the first enumeration runs at once.
    pub fn spawn<B: UsbBackend>(backend: Arc<B>, config: ManagerConfig) -> Self {
        let (cmds, cmd_rx) = mpsc::channel(8);
        let (ptx, prx) = watch::channel(Arc::new(Vec::new()));
        let (events, _) = broadcast::channel(256);
        let (htx, hrx) = watch::channel(None);
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let actor = Actor {
            backend,
            config,
            slots: BTreeMap::new(),
            cmds: cmd_rx,
            wake: Arc::new(Notify::new()),
            conn_tx,
            conn_rx,
            phones: ptx,
            events: events.clone(),
            hotplug: htx,
            reported: BTreeMap::new(),
            next_gen: 0,
            dirty: true,
            list_failed: false,
        };
        tokio::spawn(actor.run());
        Self {
            cmds,
            phones: prx,
            events,
            hotplug: hrx,
        }
    }

    /// Every phone on the bus now.
    pub fn phones(&self) -> Arc<Vec<UsbPhone>> {
        self.phones.borrow().clone()
    }

    /// A receiver that sees every new list of phones.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<UsbPhone>>> {
        self.phones.clone()
    }

    /// Every state change and warning from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UsbEvent> {
        self.events.subscribe()
    }

    /// `Some(true)` once hotplug is in use, `Some(false)` when polling, `None` before start.
    pub fn uses_hotplug(&self) -> Option<bool> {
        *self.hotplug.borrow()
    }

    /// Enumerates now and tries to open what appeared; returns once done (`false` if the
    /// manager has stopped).
    pub async fn rescan(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Rescan(tx)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// The phone at a port path, or with this phone id or serial.
    pub fn find(&self, spec: &str) -> Option<UsbPhone> {
        let phones = self.phones();
        let by = |f: &dyn Fn(&UsbPhone) -> bool| phones.iter().find(|p| f(p)).cloned();
        if is_port_path(spec) {
            return by(&|p| p.port_path == spec);
        }
        by(&|p| p.phone_id == spec).or_else(|| by(&|p| p.serial.as_deref() == Some(spec)))
    }

    /// Waits until every phone is in a resting state (see [`UsbState::is_settled`]) or the
    /// deadline passes; returns the list either way.
    pub async fn settled(&self, deadline: Instant) -> Arc<Vec<UsbPhone>> {
        let mut rx = self.phones.clone();
        loop {
            let now = rx.borrow_and_update().clone();
            if now.iter().all(|p| p.state.is_settled()) {
                return now;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.phones(),
            }
        }
    }

    /// Waits until `pred` holds for the list of phones, or the deadline passes.
    pub async fn wait_for(
        &self,
        deadline: Instant,
        mut pred: impl FnMut(&[UsbPhone]) -> bool,
    ) -> Result<Arc<Vec<UsbPhone>>, Arc<Vec<UsbPhone>>> {
        let mut rx = self.phones.clone();
        loop {
            let now = rx.borrow_and_update().clone();
            if pred(&now) {
                return Ok(now);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(self.phones()),
            }
        }
    }
}

/// A connection state change from one slot's watcher task.
struct ConnChange {
    port: String,
    generation: u64,
    state: ConnState,
}

struct Slot {
    listed: Listed,
    serial: Option<String>,
    phone_id: String,
    state: UsbState,
    detail: Option<String>,
    handle: Option<PhoneHandle>,
    watcher: Option<JoinHandle<()>>,
    /// Which connection the watcher reports on (stale reports are ignored).
    generation: u64,
    ladder: Ladder,
    permission: Option<PermissionWait>,
    busy: u32,
    /// When to open (again); `None`: nothing scheduled.
    retry_at: Option<Instant>,
    /// What the next open does first.
    step: Recovery,
    online_since: Option<Instant>,
    reset_at: Option<Instant>,
}

impl Slot {
    fn new(listed: Listed, now: Instant) -> Self {
        Self {
            listed,
            serial: None,
            phone_id: String::new(),
            state: UsbState::Appeared,
            detail: None,
            handle: None,
            watcher: None,
            generation: 0,
            ladder: Ladder::default(),
            permission: None,
            busy: 0,
            retry_at: Some(now),
            step: Recovery::Reconnect,
            online_since: None,
            reset_at: None,
        }
    }

    fn drop_connection(&mut self) {
        self.handle = None;
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.drop_connection();
    }
}

struct Actor<B: UsbBackend> {
    backend: Arc<B>,
    config: ManagerConfig,
    slots: BTreeMap<String, Slot>,
    cmds: mpsc::Receiver<Cmd>,
    wake: Arc<Notify>,
    conn_tx: mpsc::UnboundedSender<ConnChange>,
    conn_rx: mpsc::UnboundedReceiver<ConnChange>,
    phones: watch::Sender<Arc<Vec<UsbPhone>>>,
    events: broadcast::Sender<UsbEvent>,
    hotplug: watch::Sender<Option<bool>>,
    /// Collisions already warned about.
    reported: BTreeMap<String, Vec<String>>,
    next_gen: u64,
    dirty: bool,
    list_failed: bool,
}

impl<B: UsbBackend> Actor<B> {
    async fn run(mut self) {
        let hotplug = self.config.hotplug && self.backend.watch(self.wake.clone());
        let _ = self.hotplug.send(Some(hotplug));
        tracing::info!(hotplug, "usb manager started");
        let period = if hotplug {
            self.config.hotplug_rescan
        } else {
            self.config.poll_interval
        };
        let mut next_scan = Instant::now();
        loop {
            if Instant::now() >= next_scan {
                self.scan().await;
                next_scan = Instant::now() + period;
            }
            self.retry_due().await;
            self.publish();
            let wake_at = self
                .slots
                .values()
                .filter_map(|s| s.retry_at)
                .min()
                .map_or(next_scan, |r| r.min(next_scan));
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Rescan(reply)) => {
                        self.scan().await;
                        self.retry_due().await;
                        self.publish();
                        let _ = reply.send(());
                    }
                    None => break,
                },
                () = self.wake.notified() => next_scan = Instant::now(),
                Some(c) = self.conn_rx.recv() => {
                    if self.on_conn(c) {
                        next_scan = Instant::now();
                    }
                }
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
        tracing::info!("usb manager stopped");
    }

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let list: Vec<UsbPhone> = self
            .slots
            .iter()
            .map(|(port, s)| UsbPhone {
                port_path: port.clone(),
                phone_id: s.phone_id.clone(),
                serial: s.serial.clone(),
                vendor_id: s.listed.vendor_id,
                product_id: s.listed.product_id,
                state: s.state,
                detail: s.detail.clone(),
                handle: s.handle.clone(),
            })
            .collect();
        self.phones.send_replace(Arc::new(list));
    }

    /// Moves a slot to a state and reports it (only when something changed).
    fn set(&mut self, port: &str, state: UsbState, detail: Option<String>) {
        let Some(s) = self.slots.get_mut(port) else {
            return;
        };
        if s.state == state && s.detail == detail {
            return;
        }
        s.state = state;
        s.detail = detail.clone();
        self.dirty = true;
        match state {
            UsbState::NeedsAttention => tracing::warn!(
                port_path = port, phone_id = %s.phone_id, detail = detail.as_deref().unwrap_or(""),
                "usb phone needs attention"
            ),
            _ => tracing::info!(
                port_path = port, phone_id = %s.phone_id, state = state.as_str(),
                detail = detail.as_deref().unwrap_or(""), "usb phone"
            ),
        }
        let _ = self.events.send(UsbEvent::State {
            port_path: port.to_string(),
            phone_id: s.phone_id.clone(),
            state,
            detail,
        });
    }

    fn remove(&mut self, port: &str) {
        if let Some(s) = self.slots.get(port) {
            let _ = self.events.send(UsbEvent::State {
                port_path: port.to_string(),
                phone_id: s.phone_id.clone(),
                state: UsbState::Gone,
                detail: None,
            });
            tracing::info!(port_path = port, phone_id = %s.phone_id, "usb phone gone");
        }
        self.slots.remove(port);
        self.dirty = true;
    }

    async fn scan(&mut self) {
        let backend = self.backend.clone();
        let listed = match tokio::task::spawn_blocking(move || backend.list()).await {
            Ok(Ok(l)) => {
                self.list_failed = false;
                l
            }
            Ok(Err(e)) => {
                // Keep what we have: one failed enumeration is not an unplug.
                if !self.list_failed {
                    tracing::warn!(error = %e, "usb enumeration failed");
                }
                self.list_failed = true;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "usb enumeration panicked");
                return;
            }
        };
        let Diff {
            appeared,
            gone,
            reenumerated,
        } = diff(
            self.slots
                .iter()
                .map(|(p, s)| (p.as_str(), s.listed.address)),
            &listed,
        );
        let now = Instant::now();
        let changed = !(appeared.is_empty() && gone.is_empty() && reenumerated.is_empty());
        for port in gone {
            self.remove(&port);
        }
        let mut fresh = appeared;
        for l in reenumerated {
            // (Once a slot needs attention, a new address can only be a human's replug.)
            let ours = self.slots.get(&l.port_path).is_some_and(|s| {
                s.state != UsbState::NeedsAttention
                    && s.reset_at
                        .is_some_and(|t| now.saturating_duration_since(t) < self.config.reset_grace)
            });
            if ours {
                // Our own reset: same phone, same ladder.
                if let Some(s) = self.slots.get_mut(&l.port_path) {
                    s.listed = l;
                }
            } else {
                // Unplugged and plugged back between two looks: a new phone in this slot.
                self.remove(&l.port_path);
                fresh.push(l);
            }
        }
        for l in fresh {
            let port = l.port_path.clone();
            self.slots.insert(port.clone(), Slot::new(l, now));
            self.dirty = true;
            self.reassign();
            let id = self.slots[&port].phone_id.clone();
            tracing::info!(port_path = %port, phone_id = %id, "usb phone appeared");
            let _ = self.events.send(UsbEvent::State {
                port_path: port,
                phone_id: id,
                state: UsbState::Appeared,
                detail: None,
            });
        }
        if changed {
            self.reassign();
        }
    }

    /// Recomputes phone ids and warns about new serial collisions.
    fn reassign(&mut self) {
        let pairs: Vec<(String, Option<String>)> = self
            .slots
            .iter()
            .map(|(p, s)| (p.clone(), s.serial.clone()))
            .collect();
        let it = || pairs.iter().map(|(p, s)| (p.as_str(), s.as_deref()));
        for (port, id) in assign_ids(it()) {
            if let Some(s) = self.slots.get_mut(&port)
                && s.phone_id != id.phone_id
            {
                s.phone_id = id.phone_id;
                self.dirty = true;
            }
        }
        let now = collisions(it());
        for (serial, ports) in &now {
            if self.reported.get(serial) != Some(ports) {
                tracing::warn!(%serial, port_paths = ?ports, "serial_collision");
                let _ = self.events.send(UsbEvent::SerialCollision {
                    serial: serial.clone(),
                    port_paths: ports.clone(),
                });
            }
        }
        self.reported = now;
    }

    async fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for port in due {
            self.attempt(&port).await;
        }
    }

    /// Opens the device at `port`, doing the scheduled recovery step first.
    async fn attempt(&mut self, port: &str) {
        let Some(slot) = self.slots.get_mut(port) else {
            return;
        };
        slot.retry_at = None;
        slot.drop_connection();
        let step = slot.step;
        if step == Recovery::Reset {
            slot.reset_at = Some(Instant::now());
        }
        let backend = self.backend.clone();
        let p = port.to_string();
        let result = tokio::task::spawn_blocking(move || {
            if step == Recovery::Reset {
                backend.reset(&p)?;
            }
            let opened = backend.open(&p)?;
            if step == Recovery::ClearHalt {
                opened.bulk.clear_halt(true).map_err(OpenError::Usb)?;
                opened.bulk.clear_halt(false).map_err(OpenError::Usb)?;
            }
            Ok(opened)
        })
        .await
        .unwrap_or_else(|e| Err(OpenError::Usb(UsbError::Other(e.to_string()))));
        let now = Instant::now();
        match result {
            Ok(opened) => self.start(port, opened),
            Err(OpenError::Permission) => {
                let policy = self.config.permission;
                let Some(slot) = self.slots.get_mut(port) else {
                    return;
                };
                let wait = slot
                    .permission
                    .get_or_insert_with(|| PermissionWait::new(now.into_std()));
                match wait.next_retry(now.into_std(), &policy) {
                    Some(at) => {
                        slot.retry_at = Some(Instant::from_std(at));
                        self.set(
                            port,
                            UsbState::WaitingPermission,
                            Some("open refused (EACCES): waiting for udev".into()),
                        );
                    }
                    None => self.set(
                        port,
                        UsbState::NeedsAttention,
                        Some(format!(
                            "permission denied opening the phone at {port} for {:?}: check the udev rules",
                            policy.give_up_after
                        )),
                    ),
                }
            }
            Err(e @ (OpenError::Busy | OpenError::Gone)) => {
                let (retries, delay) = (self.config.busy_retries, self.config.retry_delay);
                let Some(slot) = self.slots.get_mut(port) else {
                    return;
                };
                slot.busy += 1;
                if slot.busy <= retries {
                    slot.retry_at = Some(now + delay);
                    let state = if slot.state == UsbState::Appeared {
                        UsbState::Appeared
                    } else {
                        UsbState::Offline
                    };
                    self.set(port, state, Some(format!("open: {e}; retrying")));
                    if e == OpenError::Gone {
                        self.wake.notify_one();
                    }
                } else {
                    slot.busy = 0;
                    self.failed(port, format!("open: {e}"), None);
                }
            }
            Err(OpenError::Usb(e)) => self.failed(port, format!("open: {e}"), None),
        }
    }

    /// Wires an opened interface to a new phone actor and follows its state.
    fn start(&mut self, port: &str, opened: Opened<B::Bulk>) {
        let generation = self.next_gen;
        self.next_gen += 1;
        let (timing, opts) = (self.config.timing, self.config.phone.clone());
        let Some(slot) = self.slots.get_mut(port) else {
            return;
        };
        slot.permission = None;
        slot.busy = 0;
        if opened.serial.is_some() {
            slot.serial = opened.serial;
        }
        let (sink, source) = super::spawn(opened.bulk, timing);
        let handle = PhoneHandle::spawn(sink, source, port, opts);
        let mut rx = handle.watch_state();
        let tx = self.conn_tx.clone();
        let p = port.to_string();
        slot.watcher = Some(tokio::spawn(async move {
            loop {
                let state = rx.borrow_and_update().clone();
                let end = matches!(state, ConnState::Offline(_));
                let change = ConnChange {
                    port: p.clone(),
                    generation,
                    state,
                };
                if tx.send(change).is_err() || end {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }));
        slot.handle = Some(handle);
        slot.generation = generation;
        self.dirty = true;
        self.reassign();
        self.set(port, UsbState::Connecting, None);
    }

    /// A connection state change; returns `true` when the bus should be looked at now.
    fn on_conn(&mut self, c: ConnChange) -> bool {
        let Some(slot) = self.slots.get_mut(&c.port) else {
            return false;
        };
        if slot.generation != c.generation || slot.handle.is_none() {
            return false;
        }
        match c.state {
            ConnState::Connecting => false,
            ConnState::Online(info) => {
                slot.online_since = Some(Instant::now());
                if slot.serial.is_none() && !info.banner.serial.is_empty() {
                    slot.serial = Some(info.banner.serial.clone());
                    self.reassign();
                }
                self.set(&c.port, UsbState::Online, None);
                false
            }
            ConnState::Unauthorized => {
                self.set(
                    &c.port,
                    UsbState::Unauthorized,
                    Some("accept the key on the phone".into()),
                );
                false
            }
            ConnState::Offline(why) => {
                let online_for = slot
                    .online_since
                    .take()
                    .map(|t| Instant::now().saturating_duration_since(t));
                slot.drop_connection();
                self.failed(&c.port, why, online_for);
                // The device may simply have been unplugged: look before recovering.
                true
            }
        }
    }

    /// A failure with the device still listed: the next rung of the ladder.
    fn failed(&mut self, port: &str, why: String, online_for: Option<Duration>) {
        let (healthy, delay) = (self.config.healthy_after, self.config.retry_delay);
        let Some(slot) = self.slots.get_mut(port) else {
            return;
        };
        let step = slot.ladder.on_failure(online_for, healthy);
        if step == Recovery::GiveUp {
            slot.retry_at = None;
            self.set(
                port,
                UsbState::NeedsAttention,
                Some(format!(
                    "usb phone at port {port} still failing after reconnect, clear halt and reset: {why}"
                )),
            );
        } else {
            slot.step = step;
            slot.retry_at = Some(Instant::now() + delay);
            self.set(
                port,
                UsbState::Offline,
                Some(format!("{why}; next: {}", step.as_str())),
            );
        }
    }
}

#[cfg(test)]
mod tests;

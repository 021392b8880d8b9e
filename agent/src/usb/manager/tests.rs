//! The manager over the fake bus: hotplug and polling, unplug and replug, EACCES, the recovery
//! ladder and serial collisions. Phones here never finish the handshake (nothing answers), which
//! is all these decisions need; `agent/tests/usb_manager.rs` brings simulated phones online.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::adb::auth::{AdbKey, KeyRing};
use crate::usb::fake::{FakeBulk, FakeUsb, ReadStep};
use crate::usb::policy::PermissionPolicy;

fn config(hotplug: bool) -> ManagerConfig {
    static KEY: std::sync::OnceLock<AdbKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| AdbKey::generate().expect("key")).clone();
    let mut c = ManagerConfig::new(KeyRing::new(vec![key]));
    c.hotplug = hotplug;
    c.poll_interval = Duration::from_millis(20);
    c.hotplug_rescan = Duration::from_secs(60);
    c.retry_delay = Duration::from_millis(20);
    c.busy_retries = 2;
    c.permission = PermissionPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        give_up_after: Duration::from_millis(300),
    };
    c.timing.read_timeout = Duration::from_millis(20);
    c
}

/// A device that answers nothing (stays `connecting`).
fn silent() -> Result<Box<dyn BulkIo>, OpenError> {
    Ok(Box::new(FakeBulk::new(512, 512)))
}

/// A device whose every transfer fails; counts cleared halts.
struct Broken(Arc<AtomicU32>);

impl BulkIo for Broken {
    fn read(&self, _buf: &mut [u8], _t: Duration) -> Result<usize, UsbError> {
        Err(UsbError::Other("babble".into()))
    }
    fn write(&self, _data: &[u8], _t: Duration) -> Result<usize, UsbError> {
        Err(UsbError::Other("babble".into()))
    }
    fn max_packet_in(&self) -> usize {
        512
    }
    fn max_packet_out(&self) -> usize {
        512
    }
    fn clear_halt(&self, _input: bool) -> Result<(), UsbError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

async fn state_of(m: &UsbManager, port: &str, want: UsbState) -> UsbPhone {
    let r = m
        .wait_for(soon(), |ps| {
            ps.iter().any(|p| p.port_path == port && p.state == want)
        })
        .await;
    match r {
        Ok(ps) => ps.iter().find(|p| p.port_path == port).cloned().unwrap(),
        Err(ps) => panic!("{port} never {want}: {ps:?}"),
    }
}

async fn absent(m: &UsbManager, port: &str) {
    m.wait_for(soon(), |ps| ps.iter().all(|p| p.port_path != port))
        .await
        .unwrap_or_else(|ps| panic!("{port} still listed: {ps:?}"));
}

#[tokio::test]
async fn hotplug_and_polling_see_plug_unplug_and_replug() {
    for hotplug in [true, false] {
        let bus = FakeUsb::new(hotplug);
        let m = UsbManager::spawn(bus.clone(), config(hotplug));
        let mut events = m.subscribe();
        m.rescan().await;
        assert_eq!(m.uses_hotplug(), Some(hotplug));
        assert!(m.phones().is_empty());
        bus.plug("1-2.3", Some("AAA"), silent);
        let p = state_of(&m, "1-2.3", UsbState::Connecting).await;
        assert_eq!(p.phone_id, "AAA");
        assert_eq!(p.serial.as_deref(), Some("AAA"));
        assert!(p.handle.is_some());
        assert_eq!(m.find("1-2.3").unwrap().phone_id, "AAA");
        assert_eq!(m.find("AAA").unwrap().port_path, "1-2.3");
        bus.unplug("1-2.3");
        absent(&m, "1-2.3").await;
        bus.plug("1-2.3", Some("AAA"), silent);
        state_of(&m, "1-2.3", UsbState::Connecting).await;
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let UsbEvent::State { state, .. } = e {
                seen.push(state);
            }
        }
        use UsbState::*;
        assert_eq!(
            seen,
            [Appeared, Connecting, Gone, Appeared, Connecting],
            "hotplug={hotplug}"
        );
    }
}

#[tokio::test]
async fn eacces_is_retried_until_udev_fixes_the_mode() {
    let bus = FakeUsb::new(false);
    bus.plug("1-1", Some("P1"), silent);
    bus.deny_opens("1-1", 3);
    let m = UsbManager::spawn(bus.clone(), config(false));
    let mut events = m.subscribe();
    state_of(&m, "1-1", UsbState::Connecting).await;
    assert_eq!(
        bus.log(),
        ["denied 1-1", "denied 1-1", "denied 1-1", "open 1-1"]
    );
    let mut waited = false;
    while let Ok(e) = events.try_recv() {
        waited |= matches!(
            e,
            UsbEvent::State {
                state: UsbState::WaitingPermission,
                ..
            }
        );
    }
    assert!(waited, "waiting_permission was reported");
}

#[tokio::test]
async fn eacces_that_never_clears_needs_attention() {
    let bus = FakeUsb::new(false);
    bus.plug("1-1", Some("P1"), silent);
    bus.deny_opens("1-1", u32::MAX);
    let m = UsbManager::spawn(bus.clone(), config(false));
    state_of(&m, "1-1", UsbState::WaitingPermission).await;
    let p = state_of(&m, "1-1", UsbState::NeedsAttention).await;
    assert!(p.detail.unwrap().contains("permission denied"));
    let tries = bus.log().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bus.log().len(), tries, "no retries once it needs attention");
}

#[tokio::test]
async fn failing_transfers_climb_the_ladder_to_needs_attention_until_replugged() {
    let bus = FakeUsb::new(true);
    let halts = Arc::new(AtomicU32::new(0));
    let h = halts.clone();
    bus.plug("2-1.4", Some("BAD"), move || {
        Ok(Box::new(Broken(h.clone())))
    });
    let m = UsbManager::spawn(bus.clone(), config(true));
    let p = state_of(&m, "2-1.4", UsbState::NeedsAttention).await;
    let detail = p.detail.unwrap();
    assert!(detail.contains("2-1.4"), "{detail}");
    assert!(p.handle.is_none());
    assert_eq!(
        bus.log(),
        [
            "open 2-1.4",
            "open 2-1.4",
            "open 2-1.4",
            "reset 2-1.4",
            "open 2-1.4"
        ],
        "first open, then reconnect, clear halt, reset"
    );
    assert_eq!(
        halts.load(Ordering::Relaxed),
        2,
        "both endpoints' halts cleared"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    m.rescan().await;
    assert_eq!(bus.log().len(), 5, "no retries once it needs attention");
    assert_eq!(m.find("2-1.4").unwrap().state, UsbState::NeedsAttention);
    // A replug (new address on the same port) starts over.
    bus.plug("2-1.4", Some("BAD"), silent);
    state_of(&m, "2-1.4", UsbState::Connecting).await;
}

#[tokio::test]
async fn a_connection_lost_once_is_simply_reconnected() {
    let bus = FakeUsb::new(false);
    let opens = Arc::new(AtomicU32::new(0));
    let o = opens.clone();
    bus.plug("1-3", Some("FLAKY"), move || {
        let b = FakeBulk::new(512, 512);
        if o.fetch_add(1, Ordering::Relaxed) == 0 {
            b.push_read(ReadStep::Gone);
        }
        Ok(Box::new(b))
    });
    let m = UsbManager::spawn(bus.clone(), config(false));
    m.wait_for(soon(), |_| opens.load(Ordering::Relaxed) >= 2)
        .await
        .unwrap();
    let p = state_of(&m, "1-3", UsbState::Connecting).await;
    assert!(p.handle.is_some());
    assert_eq!(bus.log(), ["open 1-3", "open 1-3"]);
}

#[tokio::test]
async fn shared_serials_get_the_port_path_and_a_warning() {
    let bus = FakeUsb::new(false);
    bus.plug("1-1", Some("0123456789ABCDEF"), silent);
    bus.plug("1-2.1", Some("0123456789ABCDEF"), silent);
    bus.plug("1-3", Some("UNIQUE"), silent);
    let m = UsbManager::spawn(bus.clone(), config(false));
    let mut events = m.subscribe();
    let ps = m
        .wait_for(soon(), |ps| {
            ps.len() == 3 && ps.iter().all(|p| p.state == UsbState::Connecting)
        })
        .await
        .unwrap();
    let ids: Vec<_> = ps.iter().map(|p| p.phone_id.as_str()).collect();
    assert_eq!(
        ids,
        ["0123456789ABCDEF@1-1", "0123456789ABCDEF@1-2_1", "UNIQUE"]
    );
    assert!(m.find("0123456789ABCDEF@1-2_1").is_some());
    // The warning went out when the second one was opened (possibly before we subscribed):
    // unplugging one ends the collision, plugging it back warns again.
    bus.unplug("1-1");
    absent(&m, "1-1").await;
    assert_eq!(m.find("1-2.1").unwrap().phone_id, "0123456789ABCDEF");
    bus.plug("1-1", Some("0123456789ABCDEF"), silent);
    state_of(&m, "1-1", UsbState::Connecting).await;
    let mut warned = None;
    while let Ok(e) = events.try_recv() {
        if let UsbEvent::SerialCollision { serial, port_paths } = e {
            warned = Some((serial, port_paths));
        }
    }
    assert_eq!(
        warned,
        Some((
            "0123456789ABCDEF".to_string(),
            vec!["1-1".to_string(), "1-2.1".to_string()]
        ))
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_manager() {
    let bus = FakeUsb::new(false);
    bus.plug("1-1", None, silent);
    let m = UsbManager::spawn(bus.clone(), config(false));
    let p = state_of(&m, "1-1", UsbState::Connecting).await;
    assert_eq!(p.phone_id, "usb-1-1");
    let mut rx = p.handle.as_ref().unwrap().watch_state();
    drop(m);
    // The manager's copy of the phone handle goes with it; ours was the last.
    drop(p);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while rx.changed().await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "the phone actor ended");
}

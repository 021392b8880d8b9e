//! The USB manager with simulated phones behind the USB code: a fake bus whose interfaces are
//! byte pipes to `phonefarm-phonesim` (the ADB bytes are the same as over USB), so phones come
//! online, run shell commands, and fail the way a wedged endpoint does; and the fleet (what the
//! daemon runs on) following the same manager.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::fleet::{FleetConfig, FleetHandle};
use phonefarm_agent::usb::fake::{BulkFaults, FakeUsb, StreamBulk};
use phonefarm_agent::usb::{BulkIo, ManagerConfig, OpenError, UsbManager, UsbState};
use phonefarm_phonesim::{SimConfig, spawn};
use phonefarm_shared::{PhoneState, PhoneStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn config() -> ManagerConfig {
    let mut c = ManagerConfig::new(KeyRing::new(vec![AdbKey::generate().unwrap()]));
    c.poll_interval = Duration::from_millis(50);
    c.retry_delay = Duration::from_millis(50);
    c.timing.read_timeout = Duration::from_millis(50);
    c
}

fn pipe(addr: String, faults: Arc<BulkFaults>) -> impl Fn() -> Result<Box<dyn BulkIo>, OpenError> {
    move || {
        StreamBulk::connect(&addr, faults.clone())
            .map(|b| Box::new(b) as Box<dyn BulkIo>)
            .map_err(|_| OpenError::Gone)
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(15)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_come_online_run_commands_and_recover_or_need_attention() {
    let a = spawn(SimConfig::with_serial("SAME")).await.unwrap();
    let b = spawn(SimConfig::with_serial("SAME")).await.unwrap();
    let bus = FakeUsb::new(false);
    let (fa, fb) = (
        Arc::new(BulkFaults::default()),
        Arc::new(BulkFaults::default()),
    );
    bus.plug("1-1", Some("SAME"), pipe(a.address(), fa.clone()));
    bus.plug("1-2.1", Some("SAME"), pipe(b.address(), fb.clone()));
    let m = UsbManager::spawn(bus.clone(), config());
    let ps = m
        .wait_for(soon(), |ps| {
            ps.len() == 2 && ps.iter().all(|p| p.state == UsbState::Online)
        })
        .await
        .unwrap_or_else(|ps| panic!("not online: {ps:?}"));
    let ids: Vec<_> = ps.iter().map(|p| p.phone_id.as_str()).collect();
    assert_eq!(ids, ["SAME@1-1", "SAME@1-2_1"]);
    let h = m.find("SAME@1-2_1").unwrap().handle.unwrap();
    let out = h
        .shell(
            "getprop ro.serialno",
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SAME");

    // A wedged endpoint on 1-1: reconnect, clear halt, reset all fail -> needs_attention.
    fa.broken.store(true, Ordering::Relaxed);
    let p = m
        .wait_for(soon(), |ps| {
            ps.iter()
                .any(|p| p.port_path == "1-1" && p.state == UsbState::NeedsAttention)
        })
        .await
        .unwrap_or_else(|ps| panic!("no needs_attention: {ps:?}"));
    let p = p.iter().find(|p| p.port_path == "1-1").unwrap();
    assert!(p.detail.as_deref().unwrap().contains("1-1"), "{p:?}");
    assert!(bus.log().contains(&"reset 1-1".to_string()));
    assert_eq!(fa.halts_cleared.load(Ordering::Relaxed), 2);
    // The other phone is untouched.
    assert_eq!(m.find("1-2.1").unwrap().state, UsbState::Online);

    // Replugging it (fixed) brings it back online.
    fa.broken.store(false, Ordering::Relaxed);
    bus.plug("1-1", Some("SAME"), pipe(a.address(), fa.clone()));
    m.wait_for(soon(), |ps| {
        ps.iter()
            .any(|p| p.port_path == "1-1" && p.state == UsbState::Online)
    })
    .await
    .unwrap_or_else(|ps| panic!("not back: {ps:?}"));

    // Unplugging 1-2.1: gone, and 1-1 keeps the plain serial as its id.
    bus.unplug("1-2.1");
    let ps = m
        .wait_for(soon(), |ps| ps.len() == 1)
        .await
        .unwrap_or_else(|ps| panic!("still listed: {ps:?}"));
    assert_eq!(ps[0].phone_id, "SAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_drops_its_connection_is_reconnected_and_online_again() {
    let a = spawn(SimConfig::with_serial("DROPPY")).await.unwrap();
    let bus = FakeUsb::new(true);
    let faults = Arc::new(BulkFaults::default());
    bus.plug("3-1", Some("DROPPY"), pipe(a.address(), faults.clone()));
    // Slow recovery steps, so the endpoint is fixed before the ladder runs out.
    let mut c = config();
    c.retry_delay = Duration::from_millis(700);
    let m = UsbManager::spawn(bus.clone(), c);
    let mut events = m.subscribe();
    m.wait_for(soon(), |ps| ps.iter().any(|p| p.state == UsbState::Online))
        .await
        .unwrap();
    // One transfer error, then the endpoint works again.
    faults.broken.store(true, Ordering::Relaxed);
    m.wait_for(soon(), |ps| ps.iter().any(|p| p.state == UsbState::Offline))
        .await
        .unwrap();
    faults.broken.store(false, Ordering::Relaxed);
    m.wait_for(soon(), |ps| ps.iter().any(|p| p.state == UsbState::Online))
        .await
        .unwrap_or_else(|ps| panic!("not back online: {ps:?}"));
    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let phonefarm_agent::usb::UsbEvent::State { state, .. } = e {
            states.push(state);
        }
    }
    assert!(
        states.ends_with(&[UsbState::Offline, UsbState::Connecting, UsbState::Online]),
        "{states:?}"
    );
}

/// Waits until the fleet's inventory satisfies `pred`.
async fn inventory(fleet: &FleetHandle, pred: impl Fn(&[PhoneStatus]) -> bool) -> Vec<PhoneStatus> {
    let mut rx = fleet.statuses();
    let deadline = soon();
    loop {
        let now = rx.borrow_and_update().clone();
        if pred(&now) {
            return now;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("inventory never matched: {:?}", rx.borrow().clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_takes_its_usb_phones_from_the_manager() {
    let a = spawn(SimConfig::with_serial("FLEET1")).await.unwrap();
    let tcp = spawn(SimConfig::with_serial("FLEET1")).await.unwrap();
    let bus = FakeUsb::new(true);
    let faults = Arc::new(BulkFaults::default());
    bus.plug("2-4", Some("FLEET1"), pipe(a.address(), faults.clone()));
    let c = config();
    let keys = c.phone.host.keys.clone();
    let m = UsbManager::spawn(bus.clone(), c);
    let shutdown = CancellationToken::new();
    let fleet = FleetHandle::spawn_with_usb(
        FleetConfig {
            tcp: vec![tcp.address()],
            usb: false,
            usb_discovery: phonefarm_agent::usb::rusb_io::Discovery::Auto,
            usb_poll: Duration::from_secs(1),
            keys,
            // Probes run when a phone comes online, not only on this period.
            probe_interval: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(5),
            app_package: "com.zhiliaoapp.musically".into(),
        },
        m.clone(),
        shutdown.clone(),
    );

    // Online with the manager's id and port path, probed; the network phone with the same
    // serial gets an id of its own.
    let inv = inventory(&fleet, |inv| {
        inv.iter()
            .any(|p| p.transport == "usb" && p.state == PhoneState::Online && p.model.is_some())
            && inv
                .iter()
                .any(|p| p.transport == "tcp" && p.state == PhoneState::Online && p.model.is_some())
    })
    .await;
    let usb = inv.iter().find(|p| p.transport == "usb").unwrap();
    assert_eq!(
        (
            usb.phone_id.as_str(),
            usb.location.as_str(),
            usb.serial.as_str()
        ),
        ("FLEET1", "2-4", "FLEET1")
    );
    let net = inv.iter().find(|p| p.transport == "tcp").unwrap();
    // (Subject-safe: dots become underscores.)
    assert_eq!(
        net.phone_id,
        format!("FLEET1-{}", tcp.address().replace('.', "_"))
    );
    let h = fleet.phone("FLEET1").expect("the usb phone by id");
    let out = h
        .shell("echo over-usb", Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-usb");

    // A wedged endpoint: the manager's recovery ladder ends in needs_attention, and so does
    // the inventory.
    faults.broken.store(true, Ordering::Relaxed);
    inventory(&fleet, |inv| {
        inv.iter()
            .any(|p| p.location == "2-4" && p.state == PhoneState::NeedsAttention)
    })
    .await;

    // Unplugged: gone from the inventory and from the lookup; the serial is free again and
    // the network phone takes it.
    bus.unplug("2-4");
    let inv = inventory(&fleet, |inv| inv.iter().all(|p| p.transport != "usb")).await;
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].phone_id, "FLEET1");
    assert_eq!(fleet.phone("FLEET1").unwrap().label(), tcp.address());
    shutdown.cancel();
}

//! The USB manager with simulated phones behind the USB code: a fake bus whose interfaces are
//! byte pipes to `phonefarm-phonesim` (the ADB bytes are the same as over USB), so phones come
//! online, run shell commands, and fail the way a wedged endpoint does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::usb::fake::{BulkFaults, FakeUsb, StreamBulk};
use phonefarm_agent::usb::{BulkIo, ManagerConfig, OpenError, UsbManager, UsbState};
use phonefarm_phonesim::{SimConfig, spawn};
use tokio::time::Instant;

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

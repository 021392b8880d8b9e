//! The fleet reports a phone that needs a person as `needs_attention` (so the coordinator gives
//! it no work) until a probe sees it recovered: low battery, too hot (seen by a probe), full
//! storage (flagged by a run whose push failed).

use std::time::Duration;

use phonefarm_agent::adb::auth::KeyRing;
use phonefarm_agent::fleet::{FleetConfig, FleetHandle};
use phonefarm_flows::flows::HealthProblem;
use phonefarm_phonesim::model::PhoneConfig;
use phonefarm_shared::PhoneState;
use tokio_util::sync::CancellationToken;

use crate::common::*;

async fn state(fleet: &FleetHandle) -> PhoneState {
    fleet.probe_now().await;
    let statuses = fleet.statuses();
    let s = statuses.borrow();
    assert_eq!(s.len(), 1);
    s[0].state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_that_need_attention_are_reported_until_they_recover() {
    let sim = sim(PhoneConfig {
        battery_level: 10,
        charging: false,
        ..PhoneConfig::default()
    })
    .await;
    let shutdown = CancellationToken::new();
    let fleet = FleetHandle::spawn(
        FleetConfig {
            tcp: vec![sim.address()],
            usb: false,
            usb_discovery: phonefarm_agent::usb::rusb_io::Discovery::Auto,
            usb_poll: Duration::from_secs(1),
            keys: KeyRing::new(vec![key()]),
            probe_interval: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(5),
            app_package: APP.into(),
        },
        shutdown.clone(),
    );
    assert_eq!(
        state(&fleet).await,
        PhoneState::NeedsAttention,
        "battery at 10 %"
    );
    sim.phone.lock().unwrap().config_mut().battery_level = 60;
    assert_eq!(state(&fleet).await, PhoneState::Online, "charged");

    sim.phone.lock().unwrap().config_mut().battery_temperature = 463;
    assert_eq!(state(&fleet).await, PhoneState::NeedsAttention, "46.3 °C");
    sim.phone.lock().unwrap().config_mut().battery_temperature = 310;
    assert_eq!(state(&fleet).await, PhoneState::Online, "cooled");

    // A run found the storage full: flagged until a probe sees room again.
    sim.phone.lock().unwrap().config_mut().storage_free = 100 * 1024 * 1024;
    fleet.flag("SIMHOSTILE", HealthProblem::StorageFull).await;
    assert_eq!(
        state(&fleet).await,
        PhoneState::NeedsAttention,
        "storage full"
    );
    assert_eq!(
        state(&fleet).await,
        PhoneState::NeedsAttention,
        "still full"
    );
    sim.phone.lock().unwrap().config_mut().storage_free = 8 * 1024 * 1024 * 1024;
    assert_eq!(state(&fleet).await, PhoneState::Online, "room again");
    shutdown.cancel();
}

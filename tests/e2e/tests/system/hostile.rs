//! A phone that needs a person through the whole system: the agent's probe sees its battery
//! low, reports it `needs_attention`, the coordinator gives it no work until it is charged, then
//! the work runs there, once.

use std::time::Duration;

use phonefarm_testkit::wait_until;
use serde_json::json;

use crate::harness::{Options, System, warmup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_low_on_battery_gets_no_work_until_it_is_charged() {
    let sys = System::start(Options::phones(1)).await;
    sys.wait_phones_online().await;
    {
        let mut p = sys.sims[0].phone.lock().unwrap();
        p.config_mut().battery_level = 9;
        p.config_mut().charging = false;
    }
    wait_until(
        "the phone needs attention in GET /phones",
        Duration::from_secs(30),
        || async { sys.get("/phones/SIM0001").await["state"] == "needs_attention" },
    )
    .await;
    let id = sys
        .enqueue(warmup(
            &sys,
            "battery-1",
            "acc-1",
            json!({"keywords": ["pets"], "videos_per_keyword": 1,
                   "watch_seconds": {"min": 1, "max": 1}}),
        ))
        .await;
    // Not dispatched while the phone needs attention: a few dispatch passes go by (a negative
    // check can only wait and look).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = sys.get(&format!("/processes/{id}")).await;
    assert_eq!(p["status"], "queued", "{p}");
    assert!(
        sys.sims[0].searches().is_empty(),
        "nothing ran on the phone"
    );

    sys.sims[0].phone.lock().unwrap().config_mut().battery_level = 70;
    let done = sys
        .wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(
        done["result"]["keywords"]["pets"]["videos_watched"], 1,
        "{done}"
    );
    let item = sys.item(&sys.item_of(&id).await).await;
    assert_eq!(
        item["attempt"], 1,
        "one attempt, on the charged phone: {item}"
    );
    assert_eq!(sys.sims[0].searches(), ["pets"]);
}

//! Fault tolerance end to end: what happens to running work when the agent process is killed,
//! NATS goes away, the coordinator restarts, two coordinators share the work, or a phone drops.

use std::collections::HashMap;
use std::time::Duration;

use phonefarm_testkit::wait_until;
use serde_json::{Value, json};

use crate::harness::{
    Options, System, attempt, attempt_events, events_between, finished_result, now, warmup,
};

/// A run of some 10-20 s on the simulator: two keywords, two videos each, 2 s dwells, every
/// video liked (so effects on the phone are countable).
fn medium(tag: &str) -> Value {
    json!({"keywords": [format!("{tag}-a"), format!("{tag}-b")], "videos_per_keyword": 2,
           "watch_seconds": {"min": 2, "max": 2}, "like_probability": 1.0})
}

/// A run of a few seconds: one keyword, one video.
fn short(keyword: &str) -> Value {
    json!({"keywords": [keyword], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}})
}

fn count<'a>(xs: impl IntoIterator<Item = &'a String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for x in xs {
        *m.entry(x.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_process_is_retried_by_the_next_one_and_its_late_events_are_ignored() {
    let mut sys = System::start(Options {
        agent_process: true,
        ..Options::phones(1)
    })
    .await;
    let id = sys
        .enqueue(warmup(&sys, "kill-1", "acc-1", medium("kill")))
        .await;
    sys.wait_status(&id, "executing", Duration::from_secs(90))
        .await;
    let qid = sys.item_of(&id).await;
    sys.wait_watching(&qid).await;

    sys.kill_agent();
    // Nobody renews the lease: it lapses, the item is retryable, the process `retrying`.
    let p = sys
        .wait_status(&id, "retrying", Duration::from_secs(60))
        .await;
    assert!(p["timestamps"]["retrying_at"].is_string(), "{p}");
    sys.assert_milestones(&id, &["accepted", "executing", "retrying"])
        .await;
    let item = sys.item(&qid).await;
    assert_eq!(item["state"], "RETRYABLE", "{item}");
    assert_eq!(item["last_error"]["code"], "lease_expired", "{item}");

    // The next agent process replays the killed run's journal: its unpublished events and a
    // `Finished{agent_restarted}` for attempt 1. They change nothing; attempt 2 runs.
    sys.start_agent();
    let done = sys
        .wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    sys.assert_milestones(&id, &["accepted", "executing", "retrying", "completed"])
        .await;
    let item = sys.item(&qid).await;
    let last = item["attempt"].as_i64().unwrap();
    assert!(last > 1, "retried: {item}");
    assert_eq!(item["state"], "DONE", "{item}");
    assert_eq!(attempt(&item, last)["outcome"], "completed", "{item}");
    sys.gapless(&qid, last).await;
    // The killed attempt's own Finished (written by the restarted agent) arrived late and was
    // not taken: that attempt ended by its lease.
    wait_until(
        "the killed attempt's late Finished",
        Duration::from_secs(30),
        || async {
            let item = sys.item(&qid).await;
            attempt_events(&item, 1)
                .iter()
                .any(|(_, k)| k == "finished")
        },
    )
    .await;
    let item = sys.item(&qid).await;
    let first = attempt(&item, 1);
    assert_eq!(first["outcome"], "failed", "{first}");
    assert_eq!(first["error"]["code"], "agent_restarted", "{first}");
    assert_eq!(item["state"], "DONE", "{item}");
    // The result is the last attempt's.
    let result = finished_result(&item, last);
    assert_eq!(item["result"], result, "{item}");
    for kw in ["kill-a", "kill-b"] {
        assert_eq!(
            done["result"]["keywords"][kw]["videos_watched"], 2,
            "{done}"
        );
        assert_eq!(
            done["result"]["keywords"][kw], result["keywords"][kw],
            "{done}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_nats_outage_mid_run_loses_and_duplicates_nothing() {
    // The outage outlasts the 6 s lease: the coordinator, which cannot hear anybody meanwhile,
    // must not give the run up while its milestones wait in the agent's journal.
    let mut sys = System::start(Options::phones(1)).await;
    assert!(sys.options.lease < Duration::from_secs(10));
    let inputs = json!({"keywords": ["out-a", "out-b", "out-c"], "videos_per_keyword": 2,
                        "watch_seconds": {"min": 2, "max": 2}, "like_probability": 1.0});
    let id = sys.enqueue(warmup(&sys, "outage-1", "acc-1", inputs)).await;
    sys.wait_status(&id, "executing", Duration::from_secs(90))
        .await;
    let qid = sys.item_of(&id).await;
    sys.wait_watching(&qid).await;

    sys.nats.kill();
    let down = now();
    // The outage itself (not a wait for a condition): the run goes on offline meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let up = now();
    sys.nats.restart();

    let done = sys
        .wait_status(&id, "completed", Duration::from_secs(150))
        .await;
    sys.assert_milestones(&id, &["accepted", "executing", "completed"])
        .await;
    // Events delivered to the coordinator around the outage can come back after later ones;
    // they are applied in seq order all the same: complete as soon as the run is.
    let item = sys.gapless(&qid, 1).await;
    assert_eq!(item["attempt"], 1, "never retried: {item}");
    // What the run did offline was journaled and came through after the outage.
    let offline = events_between(&item, 1, &down, &up);
    assert!(
        offline.iter().any(|k| k == "step_started") && offline.iter().any(|k| k == "heartbeat"),
        "milestones made during the outage were delivered: {offline:?}"
    );
    // Once on the phone: each keyword searched once, each video liked once.
    let searches = sys.sims[0].searches();
    assert_eq!(
        count(&searches),
        HashMap::from([
            ("out-a".to_string(), 1),
            ("out-b".to_string(), 1),
            ("out-c".to_string(), 1)
        ]),
        "{searches:?}"
    );
    assert_eq!(sys.sims[0].likes(), 6, "six videos liked once each");
    for kw in ["out-a", "out-b", "out-c"] {
        assert_eq!(
            done["result"]["keywords"][kw]["videos_watched"], 2,
            "{done}"
        );
    }
    // The whole system rode out the outage: new work is dispatched and runs.
    let next = sys
        .enqueue(warmup(&sys, "outage-2", "acc-1", short("after")))
        .await;
    sys.wait_status(&next, "completed", Duration::from_secs(90))
        .await;
    sys.assert_milestones(&next, &["accepted", "executing", "completed"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restart_mid_run_loses_nothing() {
    let mut sys = System::start(Options {
        lease: Duration::from_secs(20),
        ..Options::phones(1)
    })
    .await;
    let first = sys
        .enqueue(warmup(&sys, "restart-1", "acc-1", medium("rs")))
        .await;
    // Queued behind the first on the same phone: the new coordinator dispatches it.
    let second = sys
        .enqueue(warmup(&sys, "restart-2", "acc-1", short("rs-next")))
        .await;
    sys.wait_status(&first, "executing", Duration::from_secs(90))
        .await;
    let qid = sys.item_of(&first).await;
    sys.wait_watching(&qid).await;

    // Down for 3 s: the run's milestones wait in PF_EVT for the next coordinator.
    let down = now();
    sys.restart_coordinator(0, Duration::from_secs(3)).await;
    let up = now();

    for id in [&first, &second] {
        sys.wait_status(id, "completed", Duration::from_secs(120))
            .await;
        sys.assert_milestones(id, &["accepted", "executing", "completed"])
            .await;
    }
    let item = sys.gapless(&qid, 1).await;
    assert_eq!(item["attempt"], 1, "{item}");
    let unattended = events_between(&item, 1, &down, &up);
    assert!(
        !unattended.is_empty(),
        "events made while no coordinator ran were ingested by the next: {item}"
    );
    assert_eq!(
        count(&sys.sims[0].searches()),
        HashMap::from([
            ("rs-a".to_string(), 1),
            ("rs-b".to_string(), 1),
            ("rs-next".to_string(), 1)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinator_replicas_dispatch_each_process_once() {
    let sys = System::start(Options {
        replicas: 2,
        ..Options::phones(4)
    })
    .await;
    let n = 10;
    let mut procs = Vec::new();
    for i in 0..n {
        let body = warmup(
            &sys,
            &format!("replica-{i}"),
            &format!("acc-{}", i % 4 + 1),
            short(&format!("kw{i}")),
        );
        // Half the requests to each replica.
        procs.push(sys.enqueue_via(i % 2, body).await);
    }
    for (i, id) in procs.iter().enumerate() {
        let p = sys
            .wait_status(id, "completed", Duration::from_secs(180))
            .await;
        assert_eq!(
            p["result"]["keywords"][format!("kw{i}")]["videos_watched"],
            1,
            "{p}"
        );
        // Both replicas serve the same truth.
        let other = sys.get_via(1, &format!("/processes/{id}")).await;
        assert_eq!(other["status"], "completed", "{other}");
    }
    // One callback per milestone although two deliverers run.
    for id in &procs {
        sys.assert_milestones(id, &["accepted", "executing", "completed"])
            .await;
    }
    // Dispatched once: one attempt, one dispatch record, one run on the phones.
    for id in &procs {
        let item = sys.gapless(&sys.item_of(id).await, 1).await;
        assert_eq!(item["attempt"], 1, "{item}");
        let dispatched = item["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "dispatched")
            .count();
        assert_eq!(dispatched, 1, "{item}");
    }
    let all: Vec<String> = sys.sims.iter().flat_map(|s| s.searches()).collect();
    let want: HashMap<String, usize> = (0..n).map(|i| (format!("kw{i}"), 1)).collect();
    assert_eq!(count(&all), want, "each keyword searched once in the fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_dropping_mid_run_fails_the_attempt_and_it_is_retried_when_the_phone_is_back() {
    let mut sys = System::start(Options {
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(4),
        ..Options::phones(1)
    })
    .await;
    let id = sys
        .enqueue(warmup(&sys, "drop-1", "acc-1", medium("drop")))
        .await;
    sys.wait_status(&id, "executing", Duration::from_secs(90))
        .await;
    let qid = sys.item_of(&id).await;
    sys.wait_watching(&qid).await;

    sys.sims[0].unplug().await;
    let p = sys
        .wait_status(&id, "retrying", Duration::from_secs(60))
        .await;
    assert!(
        p["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("device_error")),
        "{p}"
    );
    let item = sys.item(&qid).await;
    let first = attempt(&item, 1);
    assert_eq!(first["outcome"], "failed", "{item}");
    assert!(
        first["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("device_error")),
        "{first}"
    );
    // Not dispatched to a phone that is gone: it waits until the phone is back.
    wait_until(
        "the phone offline in GET /phones",
        Duration::from_secs(30),
        || async { sys.get("/phones/SIM0001").await["state"] == "offline" },
    )
    .await;
    sys.sims[0].plug().await;
    sys.wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    sys.assert_milestones(&id, &["accepted", "executing", "retrying", "completed"])
        .await;
    let item = sys.item(&qid).await;
    let last = item["attempt"].as_i64().unwrap();
    assert!(last >= 2, "{item}");
    assert_eq!(attempt(&item, last)["outcome"], "completed", "{item}");
    sys.gapless(&qid, last).await;
}

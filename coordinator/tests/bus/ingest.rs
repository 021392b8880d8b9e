use std::time::Duration;

use phonefarm_coordinator::bus::BusConfig;
use phonefarm_shared::{CancelMode, Control, EventKind};
use serde_json::json;

use phonefarm_testkit::coordinator::bus::*;

async fn version(app: &BusApp, pid: uuid::Uuid) -> i64 {
    app.scalar("SELECT version FROM processes WHERE process_id = $1", pid)
        .await
}

async fn events(app: &BusApp, item: uuid::Uuid) -> i64 {
    app.scalar(
        "SELECT count(*) FROM queue_item_events WHERE queue_item_id = $1 AND attempt > 0",
        item,
    )
    .await
}

/// An agent `rack-1` with phone `P1` (bound to `acc-1`), a queued process for it with
/// `callback`, and the work order the agent got; the run has sent `Accepted`.
async fn accepted_run(
    app: &BusApp,
    request_id: &str,
    callback: &str,
) -> (SimAgent, uuid::Uuid, phonefarm_shared::WorkOrder) {
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let pid = app.enqueue_queued(request_id, "acc-1", callback).await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    (agent, pid, o)
}

#[tokio::test]
async fn replays_have_no_effect() {
    let app = BusApp::spawn().await;
    let (agent, pid, o) = accepted_run(&app, "r1", "http://127.0.0.1:9/cb").await;
    agent.event(&o, 2, finished_ok(r#"{"n":1}"#)).await;
    app.wait_status(pid, "completed").await;
    let v = version(&app, pid).await;
    let n = events(&app, o.queue_item_id).await;
    // The same (item, attempt, seq) again, under a fresh message id so JetStream stores it: the
    // coordinator's unique key drops it. A different result must not leak in.
    let ev = phonefarm_shared::AgentEvent {
        queue_item_id: o.queue_item_id,
        attempt: o.attempt,
        seq: 2,
        at_unix_ms: 0,
        kind: finished_ok(r#"{"n":2}"#),
    };
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(phonefarm_shared::encode(&ev).into())
        .message_id("replay-under-another-id");
    agent
        .js
        .send_publish(phonefarm_shared::subjects::run_events("rack-1"), publish)
        .await
        .unwrap()
        .await
        .unwrap();
    // A later event (seq 3) proves the replay was consumed before it.
    agent.event(&o, 3, EventKind::Heartbeat).await;
    wait_until("seq 3 recorded", Duration::from_secs(10), || async {
        events(&app, o.queue_item_id).await == n + 1
    })
    .await;
    assert_eq!(version(&app, pid).await, v);
    assert_eq!(app.process(pid).await["result"]["n"], 1);
}

#[tokio::test]
async fn device_errors_retry_with_the_next_attempt_and_stale_attempts_are_ignored() {
    let app = BusApp::spawn().await;
    let rx = Receiver::start(|_| 200).await;
    let (agent, pid, o1) = accepted_run(&app, "r1", &rx.url).await;
    agent
        .event(&o1, 2, finished_err("device_error:usb_reset", true))
        .await;
    let p = app.wait_status(pid, "retrying").await;
    assert!(p["timestamps"]["retrying_at"].is_string());
    assert_eq!(p["error"]["code"], "device_error:usb_reset");
    let o2 = agent.expect_order().await;
    assert_eq!(o2.queue_item_id, o1.queue_item_id);
    assert_eq!(o2.attempt, 2);
    assert_ne!(o2.run_id, o1.run_id);
    // A late run of attempt 1 starts: ignored, and told to stop.
    agent.event(&o1, 3, EventKind::Accepted).await;
    let ctl = agent
        .next_control(Duration::from_secs(10))
        .await
        .expect("a fencing cancel");
    assert_eq!(
        ctl,
        Control::Cancel {
            queue_item_id: o1.queue_item_id,
            attempt: 1,
            mode: CancelMode::Hard
        }
    );
    agent.event(&o1, 4, finished_ok(r#"{"stale":true}"#)).await;
    agent.event(&o2, 1, EventKind::Accepted).await;
    app.wait_status(pid, "executing").await;
    agent.event(&o2, 2, finished_ok(r#"{"fresh":true}"#)).await;
    let p = app.wait_status(pid, "completed").await;
    assert_eq!(p["result"]["fresh"], true);
    assert!(p["result"].get("stale").is_none());
    let bodies = rx.wait_bodies(4).await;
    assert_eq!(
        milestones(&bodies),
        ["accepted", "executing", "retrying", "completed"]
    );
}

#[tokio::test]
async fn flow_errors_fail_terminally_and_max_attempts_dead_letter() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    app.account("acc-1", "P1").await;
    let target = json!({"routing": "queue", "account_id": "acc-1"});
    let flow = app
        .enqueue(&keyword(
            "f1",
            target.clone(),
            "unattended",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    agent
        .event(&o, 2, finished_err("flow_error:unknown_screen", true))
        .await;
    let p = app.wait_status(flow, "failed_terminal").await;
    assert_eq!(p["error"]["code"], "flow_error:unknown_screen");
    assert_eq!(app.item_state(o.queue_item_id).await, "DEAD_LETTER");

    let dev = app
        .enqueue(&keyword(
            "f2",
            target,
            "unattended",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    for attempt in 1..=3u32 {
        let o = agent.expect_order().await;
        assert_eq!(o.process_id, Some(dev));
        assert_eq!(o.attempt, attempt);
        agent.event(&o, 1, EventKind::Accepted).await;
        agent.event(&o, 2, finished_err("device_error", true)).await;
    }
    app.wait_status(dev, "failed_terminal").await;
    let (_, item) = app.get(&format!("/processes/{dev}")).await;
    let qid = item["linked_ids"]["queue_item_ids"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(app.item_state(qid).await, "DEAD_LETTER");
    assert!(
        agent.next_order(Duration::from_millis(800)).await.is_none(),
        "no fourth attempt"
    );
}

#[tokio::test]
async fn a_lapsed_lease_retries_with_the_next_attempt() {
    let app = BusApp::spawn_with(|c| {
        c.lease = Duration::from_secs(2);
        c.accept_timeout = Duration::from_secs(2);
    })
    .await;
    let (agent, pid, o1) = accepted_run(&app, "l1", "http://127.0.0.1:9/cb").await;
    app.wait_status(pid, "executing").await;
    // The run goes silent (no milestones, no heartbeats); the lease is 2 s here.
    app.wait_item_state(o1.queue_item_id, "RETRYABLE").await;
    assert_eq!(app.status(pid).await, "retrying");
    let o2 = agent.expect_order().await;
    assert_eq!(o2.attempt, 2);
    // The silent run was told to stop.
    let ctl = agent
        .next_control(Duration::from_secs(10))
        .await
        .expect("cancel of the lapsed run");
    assert_eq!(
        ctl,
        Control::Cancel {
            queue_item_id: o1.queue_item_id,
            attempt: 1,
            mode: CancelMode::Hard
        }
    );
    // Heartbeats keep a run's lease alive beyond the lease length.
    agent.event(&o2, 1, EventKind::Accepted).await;
    for seq in 2..8 {
        tokio::time::sleep(Duration::from_millis(700)).await; // the run's own pace, not a sync
        agent.event(&o2, seq, EventKind::Heartbeat).await;
    }
    assert_eq!(app.item_state(o2.queue_item_id).await, "EXECUTING");
    agent.event(&o2, 8, finished_ok("{}")).await;
    app.wait_status(pid, "completed").await;
}

#[tokio::test]
async fn leases_lapse_while_every_ingest_lane_holds_its_connection() {
    // Many lanes, each keeping its connection once it applied an event: the sweeper must
    // still get the connections it needs (with a fixed pool of 8 it got none after 5 lanes).
    const LANES: usize = 12;
    let app = BusApp::spawn_with(|c| {
        c.lease = Duration::from_secs(2);
        c.accept_timeout = Duration::from_secs(2);
        c.ingest_lanes = LANES;
    })
    .await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1"]).await;
    // One event for an unknown item on every lane, published before the run's own events:
    // the stream delivers them first, and each lane takes its connection for good.
    let mut covered = std::collections::BTreeSet::new();
    while covered.len() < LANES {
        let id = uuid::Uuid::now_v7();
        if covered.insert(phonefarm_coordinator::bus::ingester::lane_of_item(
            id, LANES,
        )) {
            agent.event_for(id, 1, 1, EventKind::Heartbeat).await;
        }
    }
    app.account("acc-1", "P1").await;
    let pid = app
        .enqueue_queued("lanes", "acc-1", "http://127.0.0.1:9/cb")
        .await;
    let o = agent.expect_order().await;
    agent.event(&o, 1, EventKind::Accepted).await;
    app.wait_status(pid, "executing").await;
    // The run goes silent: its lease lapses and the sweeper retries it.
    app.wait_item_state(o.queue_item_id, "RETRYABLE").await;
}

/// A run whose lease lapsed (the tests' lease is 2 s) and whose retry waits an hour, so its
/// agent's late events reach the item while it is `RETRYABLE` at the same attempt.
async fn lapsed_run_awaiting_retry(
    app: &BusApp,
    request_id: &str,
) -> (SimAgent, uuid::Uuid, phonefarm_shared::WorkOrder) {
    let (agent, pid, o1) = accepted_run(app, request_id, "http://127.0.0.1:9/cb").await;
    app.wait_status(pid, "executing").await;
    app.wait_item_state(o1.queue_item_id, "RETRYABLE").await;
    let ctl = agent.next_control(Duration::from_secs(10)).await;
    assert!(
        matches!(ctl, Some(Control::Cancel { attempt: 1, .. })),
        "the lapse's cancel: {ctl:?}"
    );
    (agent, pid, o1)
}

fn lapse_waits_an_hour(c: &mut BusConfig) {
    c.lease = Duration::from_secs(2);
    c.accept_timeout = Duration::from_secs(2);
    c.retry_base = Duration::from_secs(3600);
    c.retry_max = Duration::from_secs(3600);
}

#[tokio::test]
async fn a_run_that_completes_after_its_lease_lapsed_is_done_not_run_again() {
    let app = BusApp::spawn_with(lapse_waits_an_hour).await;
    let (agent, pid, o1) = lapsed_run_awaiting_retry(&app, "late-done").await;
    // The agent was cut off, not dead: the run went on and completed; its journal delivers
    // the completion once the agent is back, before the retry was dispatched.
    agent.event(&o1, 2, finished_ok(r#"{"late":true}"#)).await;
    let p = app.wait_status(pid, "completed").await;
    assert_eq!(p["result"]["late"], true);
    assert_eq!(app.item_state(o1.queue_item_id).await, "DONE");
    let attempt: i32 = app
        .scalar(
            "SELECT attempt FROM queue_items WHERE queue_item_id = $1",
            o1.queue_item_id,
        )
        .await;
    assert_eq!(attempt, 1, "no second attempt");
    let next: Option<time::OffsetDateTime> = app
        .scalar(
            "SELECT next_attempt_at FROM queue_items WHERE queue_item_id = $1",
            o1.queue_item_id,
        )
        .await;
    assert_eq!(next, None, "the retry is still scheduled");
}

#[tokio::test]
async fn a_lapsed_run_that_answers_the_lapse_s_cancel_still_retries() {
    let app = BusApp::spawn_with(lapse_waits_an_hour).await;
    let (agent, pid, o1) = lapsed_run_awaiting_retry(&app, "late-cancel").await;
    let n = events(&app, o1.queue_item_id).await;
    // The run heard the lapse's hard cancel and stopped: that is no cancel of the process.
    agent
        .event(
            &o1,
            2,
            EventKind::Finished {
                outcome: phonefarm_shared::Outcome::Cancelled,
                result_json: "{}".into(),
                error: None,
            },
        )
        .await;
    wait_until(
        "the cancelled finish recorded",
        Duration::from_secs(10),
        || async { events(&app, o1.queue_item_id).await == n + 1 },
    )
    .await;
    assert_eq!(app.item_state(o1.queue_item_id).await, "RETRYABLE");
    assert_eq!(app.status(pid).await, "retrying");
    // A failure of the lapsed run (its hard cancel, a phone that went away) changes nothing
    // either: the lapse already decided.
    agent
        .event(&o1, 3, finished_err("flow_error:unknown_screen", false))
        .await;
    wait_until(
        "the failed finish recorded",
        Duration::from_secs(10),
        || async { events(&app, o1.queue_item_id).await == n + 2 },
    )
    .await;
    assert_eq!(app.item_state(o1.queue_item_id).await, "RETRYABLE");
}

#[tokio::test]
async fn group_fan_out_with_one_failure_is_failed_terminal_with_partial_progress() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::online(&app.nats.url(), "rack-1", &["P1", "P2", "P3"]).await;
    for i in 1..=3 {
        app.account(&format!("acc-{i}"), &format!("P{i}")).await;
    }
    let pid = app
        .enqueue(&keyword(
            "g1",
            json!({"routing": "group", "account_ids": ["acc-1", "acc-2", "acc-3"]}),
            "unattended",
            "http://127.0.0.1:9/cb",
        ))
        .await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(agent.expect_order().await);
    }
    let mut phones: Vec<&str> = orders.iter().map(|o| o.phone_id.as_str()).collect();
    phones.sort();
    assert_eq!(phones, ["P1", "P2", "P3"]);
    for o in &orders {
        agent.event(o, 1, EventKind::Accepted).await;
    }
    agent.event(&orders[0], 2, finished_ok(r#"{"ok":1}"#)).await;
    agent
        .event(&orders[1], 2, finished_err("account_outcome:banned", false))
        .await;
    let p = app.process(pid).await;
    assert_ne!(p["status"], "failed_terminal", "one run is still going");
    agent.event(&orders[2], 2, finished_ok(r#"{"ok":3}"#)).await;
    let p = app.wait_status(pid, "failed_terminal").await;
    assert_eq!(
        p["partial_progress"],
        json!({"total": 3, "queued": 0, "executing": 0, "retrying": 0, "completed": 2, "failed": 1, "cancelled": 0})
    );
    assert_eq!(
        p["linked_ids"]["failed_queue_item_ids"],
        json!([orders[1].queue_item_id])
    );
    assert_eq!(
        p["result"]["runs"][orders[0].queue_item_id.to_string()]["ok"],
        1
    );
    assert_eq!(p["error"]["code"], "account_outcome:banned");
}

async fn lease(app: &BusApp, item: uuid::Uuid) -> time::OffsetDateTime {
    app.scalar(
        "SELECT lease_expires_at FROM queue_items WHERE queue_item_id = $1",
        item,
    )
    .await
}

#[tokio::test]
async fn milestones_renew_the_lease_at_most_once_per_quarter_lease() {
    // The tests' lease is 10 s: an event renews it only once less than 7.5 s are left.
    let app = BusApp::spawn().await;
    let (agent, pid, o) = accepted_run(&app, "r1", "http://127.0.0.1:9/cb").await;
    app.wait_status(pid, "executing").await;
    let started = lease(&app, o.queue_item_id).await;
    // Heartbeats one after the other until one moves the lease.
    let seq = std::sync::atomic::AtomicU64::new(1);
    wait_until("the lease renewed", Duration::from_secs(20), || async {
        let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        agent.event(&o, n, EventKind::Heartbeat).await;
        wait_until(
            "the heartbeat recorded",
            Duration::from_secs(10),
            || async { events(&app, o.queue_item_id).await == i64::try_from(n).unwrap() },
        )
        .await;
        lease(&app, o.queue_item_id).await > started
    })
    .await;
    let moved = lease(&app, o.queue_item_id).await - started;
    assert!(
        moved >= time::Duration::milliseconds(2500),
        "renewed {moved} after the last renewal: heartbeats within a quarter lease rewrote it"
    );
    assert!(
        seq.load(std::sync::atomic::Ordering::Relaxed) > 3,
        "the first heartbeats did not renew"
    );
}

/// The one-statement path of a running item's milestones
/// (`db::item_events::record_running_milestone`), called directly on the run's item.
#[tokio::test]
async fn a_running_milestone_is_applied_in_one_statement_only_on_its_own_run() {
    use phonefarm_coordinator::db::item_events::{RunningMilestone, record_running_milestone};
    let app = BusApp::spawn().await;
    let (agent, pid, o) = accepted_run(&app, "r1", "http://127.0.0.1:9/cb").await;
    app.wait_status(pid, "executing").await;
    let item = o.queue_item_id;
    let mut conn = app.db.pool.acquire().await.unwrap();
    // Whole seconds: Postgres keeps microseconds.
    let now =
        time::OffsetDateTime::from_unix_timestamp(time::OffsetDateTime::now_utc().unix_timestamp())
            .unwrap();
    let payload = json!({"step": "search"});
    let (far, later) = (
        now + time::Duration::hours(1),
        now + time::Duration::hours(2),
    );
    let m = RunningMilestone {
        queue_item_id: item,
        attempt: o.attempt as i32,
        agent_id: "rack-1",
        seq: 2,
        kind: "step_started",
        at: now,
        payload: &payload,
        anyway: false,
        // Not due: the lease ends after `now`.
        renew_below: now,
        lease_until: later,
        progress: None,
    };
    let progress = |n: i64| json!({"videos": n});
    let result_progress = async || -> Option<serde_json::Value> {
        app.scalar(
            "SELECT result -> 'progress' FROM queue_items WHERE queue_item_id = $1",
            item,
        )
        .await
    };
    // What the statement said: (predecessor recorded, event recorded before, inserted now).
    let flags = |got: Option<phonefarm_coordinator::db::item_events::Recorded>| {
        got.map(|r| (r.predecessor, r.existed, r.inserted))
    };

    // Another agent's, or another attempt's: not this path's, and nothing changes.
    for other in [
        RunningMilestone {
            agent_id: "rack-2",
            ..m
        },
        RunningMilestone {
            attempt: m.attempt + 1,
            ..m
        },
    ] {
        let got = record_running_milestone(&mut conn, &other).await.unwrap();
        assert_eq!(got, None);
    }
    assert_eq!(events(&app, item).await, 1, "only Accepted recorded");

    // Ahead of its predecessor (seq 3 before 2): not recorded; a due lease is renewed.
    let before = lease(&app, item).await;
    let early = RunningMilestone {
        seq: 3,
        renew_below: far,
        ..m
    };
    let got = record_running_milestone(&mut conn, &early).await.unwrap();
    assert_eq!(flags(got), Some((false, false, false)));
    assert_eq!(events(&app, item).await, 1);
    assert_eq!(lease(&app, item).await, later, "due lease not renewed");
    assert!(later > before);

    // In order, with progress: recorded and merged; the lease, not due, stays.
    let counters = progress(1);
    let step = RunningMilestone {
        kind: "progress",
        progress: Some(&counters),
        lease_until: later + time::Duration::hours(1),
        ..m
    };
    let got = record_running_milestone(&mut conn, &step).await.unwrap();
    assert_eq!(flags(got), Some((true, false, true)));
    assert_eq!(events(&app, item).await, 2);
    assert_eq!(result_progress().await, Some(counters.clone()));
    assert_eq!(
        lease(&app, item).await,
        later,
        "a lease not due was renewed"
    );

    // The same seq again (other counters): a replay, nothing merged.
    let again = progress(7);
    let replay = RunningMilestone {
        progress: Some(&again),
        renew_below: far,
        lease_until: later + time::Duration::hours(1),
        ..step
    };
    let got = record_running_milestone(&mut conn, &replay).await.unwrap();
    assert_eq!(flags(got), Some((true, true, false)));
    assert_eq!(events(&app, item).await, 2);
    assert_eq!(result_progress().await, Some(counters));
    assert_eq!(lease(&app, item).await, later, "a replay renewed the lease");

    // Given up on its missing predecessor (seq 5 without 4): recorded anyway.
    let given_up = RunningMilestone {
        seq: 5,
        anyway: true,
        ..m
    };
    let got = record_running_milestone(&mut conn, &given_up)
        .await
        .unwrap();
    assert_eq!(flags(got), Some((false, false, true)));
    assert_eq!(events(&app, item).await, 3);

    // Once the run is over, no milestone goes this way.
    agent.event(&o, 6, finished_ok("{}")).await;
    app.wait_status(pid, "completed").await;
    let late = RunningMilestone { seq: 7, ..m };
    assert_eq!(
        record_running_milestone(&mut conn, &late).await.unwrap(),
        None
    );
    assert_eq!(
        events(&app, item).await,
        4,
        "Finished recorded, nothing after"
    );
}

//! The agent daemon against a real `nats-server` (2.9.10, spawned per test on a free port with
//! its own store dir, killed on drop) and simulated phones (`phonefarm_phonesim`). The test
//! plays the coordinator: it creates the streams, buckets and the agent's consumers as the
//! coordinator's bootstrap does, publishes work and controls, and reads `PF_EVT`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use phonefarm_agent::daemon::{self, DaemonConfig};
use phonefarm_agent::uplink::consumer::PullOptions;
use phonefarm_agent::uplink::evidence::EvidenceSpool;
use phonefarm_agent::uplink::journal::JournalView;
use phonefarm_agent::uplink::packs::PackTrust;
use phonefarm_agent::uplink::publisher::PublisherOptions;
use phonefarm_flows::UiConfig;
use phonefarm_phonemodel::AccountState;
use phonefarm_phonesim::{Sim, SimConfig};
use phonefarm_shared::{
    AgentEvent, CancelMode, Capability, Control, EventKind, Inventory, Outcome, PackReport,
    Presence, WorkOrder, subjects,
};
use phonefarm_testkit::{NatsServer, wait_for};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn packs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowpacks")
}

async fn js_client(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("test client connects");
    jetstream::new(client)
}

/// Streams, buckets and the agent's consumers, shaped as the coordinator's bootstrap makes them.
async fn bootstrap(js: &jetstream::Context, agent_id: &str, with_events: bool) {
    let work = stream::Config {
        name: subjects::WORK_STREAM.into(),
        subjects: vec![subjects::WORK_SUBJECTS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(900),
        ..Default::default()
    };
    let ctl = stream::Config {
        name: subjects::CTL_STREAM.into(),
        subjects: vec![subjects::CTL_SUBJECTS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    let kv = |bucket: &str, history: i64| stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let evidence = subjects::evidence_bucket(agent_id);
    let obj = stream::Config {
        name: subjects::object_stream(&evidence),
        subjects: vec![format!("$O.{evidence}.C.>"), format!("$O.{evidence}.M.>")],
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Default::default()
    };
    let work = retry(async || js.get_or_create_stream(work.clone()).await.ok()).await;
    let ctl = retry(async || js.get_or_create_stream(ctl.clone()).await.ok()).await;
    if with_events {
        create_event_stream(js).await;
    }
    for (bucket, history) in [(subjects::AGENTS_BUCKET, 1), (subjects::FLOWS_BUCKET, 5)] {
        let cfg = kv(bucket, history);
        retry(async || js.get_or_create_stream(cfg.clone()).await.ok()).await;
    }
    retry(async || js.get_or_create_stream(obj.clone()).await.ok()).await;
    for (s, filter) in [
        (&work, subjects::work(agent_id)),
        (&ctl, subjects::control(agent_id)),
    ] {
        let cfg = consumer::pull::Config {
            durable_name: Some(subjects::agent_consumer(agent_id)),
            filter_subject: filter,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(3),
            ..Default::default()
        };
        retry(async || s.create_consumer(cfg.clone()).await.ok()).await;
    }
}

async fn create_event_stream(js: &jetstream::Context) {
    let evt = stream::Config {
        name: subjects::EVT_STREAM.into(),
        subjects: vec![subjects::EVT_SUBJECTS.into()],
        duplicate_window: Duration::from_secs(900),
        ..Default::default()
    };
    retry(async || js.get_or_create_stream(evt.clone()).await.ok()).await;
}

async fn retry<T>(f: impl AsyncFnMut() -> Option<T>) -> T {
    wait_for("jetstream to answer", Duration::from_secs(15), f).await
}

/// Every message stored on `subject` in `PF_EVT`: (Nats-Msg-Id, payload), in stream order.
async fn stored(js: &jetstream::Context, subject: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let mut s = js.get_stream(subjects::EVT_STREAM).await.ok()?;
    let info = s.info().await.ok()?.state.clone();
    let mut out = Vec::new();
    if info.messages == 0 {
        return Some(out);
    }
    for seq in info.first_sequence..=info.last_sequence {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        if m.subject.as_str() != subject {
            continue;
        }
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((id, m.payload.to_vec()));
    }
    Some(out)
}

/// The run events stored so far, each checked against its msg id.
async fn run_events(js: &jetstream::Context, agent_id: &str) -> Option<Vec<AgentEvent>> {
    let raw = stored(js, &subjects::run_events(agent_id)).await?;
    Some(
        raw.into_iter()
            .map(|(id, payload)| {
                let e: AgentEvent = phonefarm_shared::decode(&payload).expect("event decodes");
                assert_eq!(id, e.msg_id(), "published with its msg id");
                e
            })
            .collect(),
    )
}

fn of(events: &[AgentEvent], qid: Uuid) -> Vec<AgentEvent> {
    events
        .iter()
        .filter(|e| e.queue_item_id == qid)
        .cloned()
        .collect()
}

fn finished(
    events: &[AgentEvent],
) -> Option<(Outcome, String, Option<phonefarm_shared::RunError>)> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::Finished {
            outcome,
            result_json,
            error,
        } => Some((*outcome, result_json.clone(), error.clone())),
        _ => None,
    })
}

/// Waits for the Finished event of `qid` and returns all of its events.
async fn wait_finished(
    js: &jetstream::Context,
    agent: &str,
    qid: Uuid,
    timeout: Duration,
) -> Vec<AgentEvent> {
    wait_for("Finished", timeout, async || {
        let evs = of(&run_events(js, agent).await?, qid);
        finished(&evs).map(|_| evs)
    })
    .await
}

/// Exactly once each, seq 1..=n without gaps, Accepted first and Finished last.
fn assert_complete_sequence(events: &[AgentEvent]) {
    let ids: HashSet<String> = events.iter().map(AgentEvent::msg_id).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "every event stored once: {events:#?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "seq strictly increasing with none lost");
    assert_eq!(events.first().map(|e| &e.kind), Some(&EventKind::Accepted));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::Finished { .. })
    ));
}

fn order(phone: &str, inputs: serde_json::Value) -> WorkOrder {
    WorkOrder {
        queue_item_id: Uuid::new_v4(),
        attempt: 1,
        run_id: Uuid::new_v4(),
        process_id: None,
        capability: Capability::KeywordWarmup,
        phone_id: phone.into(),
        account_id: "acc-1".into(),
        inputs_json: inputs.to_string(),
        flow_pack_version: None,
        deadline_unix_ms: now_ms() + 300_000,
    }
}

fn short_warmup() -> serde_json::Value {
    json!({"keywords": ["cooking"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}})
}

fn long_warmup() -> serde_json::Value {
    json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 5, "watch_seconds": {"min": 30, "max": 30}})
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn publish_order(js: &jetstream::Context, agent: &str, o: &WorkOrder) {
    js.publish(subjects::work(agent), phonefarm_shared::encode(o).into())
        .await
        .expect("publish")
        .await
        .expect("order stored");
}

async fn publish_control(js: &jetstream::Context, agent: &str, c: &Control) {
    js.publish(subjects::control(agent), phonefarm_shared::encode(c).into())
        .await
        .expect("publish")
        .await
        .expect("control stored");
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut s = js.get_stream(name).await.ok()?;
    Some(s.info().await.ok()?.state.messages)
}

/// A running daemon; `stop` cancels it and waits for it to end.
struct Agent {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    fn start(config: DaemonConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("daemon stops in time")
            .expect("daemon task does not panic");
        r.expect("daemon ends cleanly");
    }
}

fn config(agent: &str, url: &str, state: &Path, phones: &[&Sim]) -> DaemonConfig {
    let mut c = DaemonConfig::new(agent, url, state.to_path_buf());
    c.tcp = phones.iter().map(|s| s.address()).collect();
    c.flow_packs_dir = Some(packs_dir());
    c.presence_interval = Duration::from_millis(300);
    c.heartbeat_interval = Duration::from_millis(700);
    c.probe_interval = Duration::from_millis(300);
    c.probe_timeout = Duration::from_secs(5);
    c.accept_timeout = Duration::from_secs(2);
    c.busy_retry = Duration::from_millis(500);
    c.evidence_timeout = Duration::from_secs(10);
    c.ui = UiConfig {
        poll_interval: Duration::from_millis(100),
        ..UiConfig::default()
    };
    c.pull = PullOptions {
        heartbeat: Duration::from_secs(1),
        expires: Duration::from_secs(5),
        rebind_delay: Duration::from_millis(200),
        ..c.pull
    };
    c.publisher = PublisherOptions {
        ack_timeout: Duration::from_secs(1),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
    };
    // The tests' video servers are on loopback.
    c.asset_allow = vec!["127.0.0.0/8".parse().unwrap()];
    c
}

struct Env {
    _dir: tempfile::TempDir,
    state: PathBuf,
    nats: NatsServer,
    js: jetstream::Context,
}

async fn env(agent: &str, with_events: bool) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("agent");
    let nats = NatsServer::start();
    let js = js_client(&nats.url()).await;
    bootstrap(&js, agent, with_events).await;
    Env {
        _dir: dir,
        state,
        nats,
        js,
    }
}

async fn sim(serial: &str) -> Sim {
    phonefarm_phonesim::spawn(SimConfig::with_serial(serial))
        .await
        .expect("sim starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_order_is_acked_after_accepted_is_stored_and_runs_to_completion() {
    let agent = "rack-a";
    // No event stream yet: Accepted cannot be stored, so the order must stay unacked.
    let env = env(agent, false).await;
    let phone = sim("SIMA1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));

    // A bad message first: terminated, never crash-looping, and the next order still runs.
    env.js
        .publish(subjects::work(agent), vec![1u8, 0xff, 0xff].into())
        .await
        .unwrap()
        .await
        .unwrap();
    let o = order("SIMA1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    wait_for("the order journaled", Duration::from_secs(20), async || {
        (JournalView::read(&env.state.join("journal")).ok()?.orders() > 0).then_some(())
    })
    .await;
    // Accepted stays journaled and the order unacked (past the agent's accept timeout and
    // the consumer's ack wait: a redelivery must not start a second run).
    wait_for(
        "the order redelivered",
        Duration::from_secs(20),
        async || {
            let mut c: jetstream::consumer::PullConsumer = env
                .js
                .get_consumer_from_stream(subjects::agent_consumer(agent), subjects::WORK_STREAM)
                .await
                .ok()?;
            (c.info().await.ok()?.num_redelivered >= 1).then_some(())
        },
    )
    .await;
    assert_eq!(
        stream_messages(&env.js, subjects::WORK_STREAM).await,
        Some(1),
        "order acked before Accepted was stored"
    );

    create_event_stream(&env.js).await;
    wait_for("the order acked", Duration::from_secs(20), async || {
        (stream_messages(&env.js, subjects::WORK_STREAM).await? == 0).then_some(())
    })
    .await;
    let accepted = run_events(&env.js, agent).await.unwrap();
    assert!(
        of(&accepted, o.queue_item_id)
            .iter()
            .any(|e| e.kind == EventKind::Accepted),
        "Accepted is stored by the time the order is acked"
    );

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, result, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Completed, "{error:?}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(
        result["keywords"]["cooking"]["videos_watched"], 1,
        "{result}"
    );
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { step } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert!(!steps.is_empty(), "steps were reported");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepFinished { .. })),
        "step ends were reported"
    );
    let accepted_runs = events
        .iter()
        .filter(|e| e.kind == EventKind::Accepted)
        .count();
    assert_eq!(accepted_runs, 1, "the redelivered order did not run twice");
    let searched = phone
        .phone
        .lock()
        .unwrap()
        .actions()
        .iter()
        .filter(|a| matches!(a, phonefarm_phonemodel::Action::Searched { .. }))
        .count();
    assert_eq!(searched, 1, "one run on the phone");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_mid_run_loses_and_duplicates_nothing() {
    let agent = "rack-b";
    let mut env = env(agent, true).await;
    let phone = sim("SIMB1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let o = order(
        "SIMB1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 2, "watch_seconds": {"min": 1, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("the first step", Duration::from_secs(30), async || {
        let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
        evs.iter()
            .any(|e| matches!(e.kind, EventKind::StepStarted { .. }))
            .then_some(())
    })
    .await;

    env.nats.kill();
    // The run goes on while the server is away: its events pile up in the journal.
    let journal_dir = env.state.join("journal");
    let pending = || {
        JournalView::read(&journal_dir)
            .ok()
            .map(|v| v.pending_count())
    };
    wait_for(
        "events journaled during the outage",
        Duration::from_secs(30),
        async || (pending()? >= 3).then_some(()),
    )
    .await;
    env.nats.restart_async().await;

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(90)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    wait_for("the journal drained", Duration::from_secs(20), async || {
        (pending()? == 0).then_some(())
    })
    .await;
    // The work consumer rode out the outage by itself: a new order still runs.
    let next = order("SIMB1", short_warmup());
    publish_order(&env.js, agent, &next).await;
    let events = wait_finished(&env.js, agent, next.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_goes_again_when_nats_is_back_not_when_its_backoff_ends() {
    let agent = "rack-w";
    let mut env = env(agent, true).await;
    let phone = sim("SIMW1").await;
    let mut c = config(agent, &env.nats.url(), &env.state, &[&phone]);
    // A failed publish backs off far longer than this test waits for the events.
    c.publisher.min_backoff = Duration::from_secs(300);
    c.publisher.max_backoff = Duration::from_secs(300);
    let daemon = Agent::start(c);
    // A run of several seconds, so it finishes offline well past the 1 s publish ack timeout.
    let o = order(
        "SIMW1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 2, "watch_seconds": {"min": 1, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("Accepted", Duration::from_secs(30), async || {
        (!of(&run_events(&env.js, agent).await?, o.queue_item_id).is_empty()).then_some(())
    })
    .await;
    env.nats.kill();
    // The run finishes offline: the publishes of its events have failed and the publisher is
    // backing off.
    let journal_dir = env.state.join("journal");
    wait_for(
        "the run finished into the journal",
        Duration::from_secs(60),
        async || {
            JournalView::read(&journal_dir)
                .ok()?
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(drop)
        },
    )
    .await;
    env.nats.restart_async().await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_events_are_published_by_the_next_agent_process() {
    let agent = "rack-c";
    let mut env = env(agent, true).await;
    let phone = sim("SIMC1").await;
    let cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    let daemon = Agent::start(cfg.clone());
    let o = order("SIMC1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    wait_for("Accepted", Duration::from_secs(30), async || {
        (!of(&run_events(&env.js, agent).await?, o.queue_item_id).is_empty()).then_some(())
    })
    .await;
    env.nats.kill();
    // The run finishes offline: everything after Accepted is only in the journal.
    let state = env.state.clone();
    let pending = wait_for(
        "the run finished into the journal",
        Duration::from_secs(60),
        async || {
            let journal = JournalView::read(&state.join("journal")).ok()?;
            journal
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(|_| journal.pending_count())
        },
    )
    .await;
    assert!(
        pending >= 2,
        "unpublished events stay journaled ({pending})"
    );
    daemon.stop().await;

    env.nats.restart_async().await;
    let daemon = Agent::start(cfg);
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_and_hard_cancel_end_runs_as_cancelled() {
    let agent = "rack-d";
    let env = env(agent, true).await;
    let (p1, p2) = (sim("SIMD1").await, sim("SIMD2").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p1, &p2]));
    // A control for no known run is acked and ignored.
    publish_control(
        &env.js,
        agent,
        &Control::Cancel {
            queue_item_id: Uuid::new_v4(),
            attempt: 1,
            mode: CancelMode::Hard,
        },
    )
    .await;
    // A cancel that overtakes its order: the order is accepted and finished unrun.
    let early = order("SIMD1", long_warmup());
    publish_control(
        &env.js,
        agent,
        &Control::Cancel {
            queue_item_id: early.queue_item_id,
            attempt: early.attempt,
            mode: CancelMode::Soft,
        },
    )
    .await;
    wait_for(
        "the early cancel consumed",
        Duration::from_secs(20),
        async || (stream_messages(&env.js, subjects::CTL_STREAM).await? == 0).then_some(()),
    )
    .await;
    publish_order(&env.js, agent, &early).await;
    let events = wait_finished(&env.js, agent, early.queue_item_id, Duration::from_secs(20)).await;
    assert_complete_sequence(&events);
    assert_eq!(
        events.len(),
        2,
        "Accepted then Finished, nothing run: {events:?}"
    );
    assert_eq!(finished(&events).unwrap().0, Outcome::Cancelled);

    let soft = order("SIMD1", long_warmup());
    let hard = order("SIMD2", long_warmup());
    publish_order(&env.js, agent, &soft).await;
    publish_order(&env.js, agent, &hard).await;
    for o in [&soft, &hard] {
        // Watching a video (a 30 s dwell) and heartbeating meanwhile.
        wait_for(
            "a run watching videos",
            Duration::from_secs(60),
            async || {
                let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
                let watching = evs.iter().position(
                |e| matches!(&e.kind, EventKind::StepStarted { step } if step.starts_with("watch")),
            )?;
                evs[watching..]
                    .iter()
                    .any(|e| e.kind == EventKind::Heartbeat)
                    .then_some(())
            },
        )
        .await;
    }
    let t0 = Instant::now();
    for (o, mode) in [(&soft, CancelMode::Soft), (&hard, CancelMode::Hard)] {
        publish_control(
            &env.js,
            agent,
            &Control::Cancel {
                queue_item_id: o.queue_item_id,
                attempt: o.attempt,
                mode,
            },
        )
        .await;
    }
    for o in [&soft, &hard] {
        let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(20)).await;
        assert_complete_sequence(&events);
        assert_eq!(finished(&events).unwrap().0, Outcome::Cancelled);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "cancels did not wait for 30 s dwells"
    );
    assert_eq!(
        stream_messages(&env.js, subjects::CTL_STREAM).await,
        Some(0),
        "every control acked"
    );
    {
        let hard_phone = p2.phone.lock().unwrap();
        assert!(
            hard_phone
                .actions()
                .iter()
                .any(|a| matches!(a, phonefarm_phonemodel::Action::AppForceStopped)),
            "hard cancel force-stopped the app"
        );
        assert!(!hard_phone.app_running());
    }
    daemon.stop().await;
}

/// The bytes of an evidence object, once it is stored.
async fn read_object(store: &jetstream::object_store::ObjectStore, object: &str) -> Vec<u8> {
    wait_for(
        "the evidence uploaded",
        Duration::from_secs(30),
        async || {
            let mut obj = store.get(object).await.ok()?;
            let mut data = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut data)
                .await
                .ok()?;
            Some(data)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_account_fails_non_retryably_with_evidence() {
    let agent = "rack-e";
    let env = env(agent, true).await;
    let phone = sim("SIME1").await;
    phone.phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let o = order("SIME1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let error = error.expect("a failure has an error");
    assert_eq!(error.code, "account_outcome:banned");
    assert!(!error.retryable, "an account outcome is not retryable");
    let objects: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Evidence { object, kind } => Some((object.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    let kinds: HashSet<&str> = objects.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        kinds.contains("ui_dump") && kinds.contains("screenshot"),
        "{objects:?}"
    );
    let store = env
        .js
        .get_object_store(subjects::evidence_bucket(agent))
        .await
        .expect("evidence store");
    for (object, kind) in &objects {
        assert!(
            object.starts_with(&format!("{agent}/{}/{}/", o.queue_item_id, o.attempt)),
            "{object}"
        );
        // Uploaded from the agent's evidence spool, right after it was announced.
        let data = read_object(&store, object).await;
        match kind.as_str() {
            "screenshot" => assert!(data.starts_with(b"\x89PNG"), "a PNG"),
            _ => assert!(
                String::from_utf8_lossy(&data).contains("<hierarchy"),
                "a UI dump"
            ),
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_a_failure_during_a_nats_outage_is_kept_and_uploaded_when_nats_is_back() {
    let agent = "rack-ev";
    let mut env = env(agent, true).await;
    let phone = sim("SIMEV1").await;
    let cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    let daemon = Agent::start(cfg.clone());
    let o = order(
        "SIMEV1",
        json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 5, "watch_seconds": {"min": 2, "max": 2}}),
    );
    publish_order(&env.js, agent, &o).await;
    wait_for("a run watching videos", Duration::from_secs(60), async || {
        let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::StepStarted { step } if step.starts_with("watch")))
            .then_some(())
    })
    .await;

    // NATS goes away, then the account is banned: the run fails (with evidence) offline.
    env.nats.kill();
    phone.phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let journal_dir = env.state.join("journal");
    wait_for(
        "the run failed into the journal",
        Duration::from_secs(60),
        async || {
            let journal = JournalView::read(&journal_dir).ok()?;
            journal
                .order(o.queue_item_id, o.attempt)
                .filter(|r| r.finished)
                .map(drop)
        },
    )
    .await;
    let spool = EvidenceSpool::open(&journal_dir).unwrap();
    assert_eq!(
        spool.pending_count(),
        2,
        "the dump and the screenshot are kept on disk"
    );
    // The agent restarts before NATS is back: the next process uploads what the last one kept.
    daemon.stop().await;
    env.nats.restart_async().await;
    let daemon = Agent::start(cfg);

    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(error.unwrap().code, "account_outcome:banned");
    let objects: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Evidence { object, kind } => Some((object.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    let kinds: HashSet<&str> = objects.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        HashSet::from(["ui_dump", "screenshot"]),
        "{objects:?}"
    );
    let store = env
        .js
        .get_object_store(subjects::evidence_bucket(agent))
        .await
        .expect("evidence store");
    for (object, kind) in &objects {
        let data = read_object(&store, object).await;
        match kind.as_str() {
            "screenshot" => assert!(data.starts_with(b"\x89PNG"), "a PNG"),
            _ => assert!(
                String::from_utf8_lossy(&data).contains("<hierarchy"),
                "a UI dump"
            ),
        }
    }
    wait_for("the spool drained", Duration::from_secs(20), async || {
        (spool.pending_count() == 0).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_inventory_report_the_phones_and_their_changes() {
    let agent = "rack-f";
    let mut env = env(agent, true).await;
    let (p1, p2) = (sim("SIMF1").await, sim("SIMF2").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p1, &p2]));
    let kv = env.js.get_key_value(subjects::AGENTS_BUCKET).await.unwrap();
    let presence: Presence = wait_for("presence", Duration::from_secs(20), async || {
        let v = kv.get(agent).await.ok()??;
        let p: Presence = phonefarm_shared::decode(&v).ok()?;
        (p.phones == 2).then_some(p)
    })
    .await;
    assert_eq!(presence.agent_id, agent);

    let inventories = async || -> Option<Vec<Inventory>> {
        let raw = stored(&env.js, &subjects::inventory(agent)).await?;
        Some(
            raw.iter()
                .map(|(_, p)| phonefarm_shared::decode::<Inventory>(p).expect("inventory decodes"))
                .collect(),
        )
    };
    let first = wait_for(
        "an inventory with both phones probed",
        Duration::from_secs(20),
        async || {
            inventories().await?.into_iter().rev().find(|i| {
                i.phones.len() == 2
                    && i.phones
                        .iter()
                        .all(|p| p.battery_level.is_some() && p.app_version.is_some())
            })
        },
    )
    .await;
    let f1 = first
        .phones
        .iter()
        .find(|p| p.phone_id == "SIMF1")
        .expect("SIMF1 listed");
    assert_eq!(f1.serial, "SIMF1");
    assert_eq!(f1.transport, "tcp");
    assert_eq!(f1.location, p1.address());
    assert_eq!(f1.state, phonefarm_shared::PhoneState::Online);
    assert_eq!(f1.battery_level, Some(85));
    assert_eq!(f1.temperature_decicelsius, Some(287));
    assert_eq!(f1.storage_free_bytes, Some(40 * 1024 * 1024 * 1024));
    assert_eq!(f1.screen_on, Some(true));
    assert_eq!(f1.app_version.as_deref(), Some("32.5.3"));
    assert_eq!(f1.model.as_deref(), Some("Phonesim_One"));

    p2.phone.lock().unwrap().config_mut().battery_level = 42;
    let later = wait_for(
        "an inventory with the new battery level",
        Duration::from_secs(20),
        async || {
            inventories().await?.into_iter().find(|i| {
                i.phones
                    .iter()
                    .any(|p| p.phone_id == "SIMF2" && p.battery_level == Some(42))
            })
        },
    )
    .await;
    assert!(later.seq > first.seq, "a new report, not a rewrite");

    // Nothing changes on the phones, but the connection comes back: the report is sent again.
    let cut = now_ms();
    env.nats.restart_async().await;
    let after = wait_for(
        "an inventory after the reconnect",
        Duration::from_secs(30),
        async || {
            inventories()
                .await?
                .into_iter()
                .find(|i| i.at_unix_ms > cut)
        },
    )
    .await;
    assert_eq!(after.phones.len(), 2);
    daemon.stop().await;
}

/// A `SignedPack` of `toml` under `key`, signed by `signer`.
fn signed(signer: &ed25519_dalek::SigningKey, key: &str, toml: &str) -> bytes::Bytes {
    use ed25519_dalek::Signer as _;
    let sig = signer.sign(&phonefarm_shared::pack_signing_input(key, toml));
    phonefarm_shared::encode(&phonefarm_shared::SignedPack {
        toml: toml.into(),
        signer: signer.verifying_key().as_bytes().to_vec(),
        signature: sig.to_bytes().to_vec(),
    })
    .into()
}

/// The publisher key the agents of these tests trust.
fn publisher() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn trusting_publisher() -> PackTrust {
    PackTrust::new(vec![publisher().verifying_key()])
}

/// The latest pack report of `agent` that `pred` accepts.
async fn pack_report(
    js: &jetstream::Context,
    agent: &str,
    what: &str,
    pred: impl Fn(&PackReport) -> bool,
) -> PackReport {
    wait_for(what, Duration::from_secs(30), async || {
        let reports = stored(js, &subjects::pack_reports(agent)).await?;
        let (_, last) = reports.last()?;
        let r: PackReport = phonefarm_shared::decode(last).ok()?;
        pred(&r).then_some(r)
    })
    .await
}

fn runs(r: &PackReport, name: &str, revision: u32) -> bool {
    r.running
        .iter()
        .any(|p| p.name == name && p.revision == revision && p.kv.is_some())
}

/// Runs a short warm-up on `phone`: its outcome.
async fn run_once(js: &jetstream::Context, agent: &str, phone: &str) -> Outcome {
    let o = order(phone, short_warmup());
    publish_order(js, agent, &o).await;
    let events = wait_finished(js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    finished(&events).expect("finished").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_flow_packs_apply_and_refused_ones_are_reported() {
    let agent = "rack-g";
    let env = env(agent, true).await;
    let phone = sim("SIMG1").await;
    let mut cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    cfg.flow_packs_dir = None;
    cfg.pack_trust = trusting_publisher();
    let daemon = Agent::start(cfg);
    let kv = env.js.get_key_value(subjects::FLOWS_BUCKET).await.unwrap();
    let v1 = std::fs::read_to_string(packs_dir().join("tiktok-32.toml")).unwrap();
    assert!(v1.contains("revision = 1"));
    let rev = |n: u32| v1.replace("revision = 1", &format!("revision = {n}"));

    // Unsigned: refused and reported; with no pack for the app the run fails for want of one.
    kv.put("tiktok-32", v1.clone().into()).await.unwrap();
    let r = pack_report(&env.js, agent, "the unsigned pack reported", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "unsigned")
    })
    .await;
    assert!(r.running.is_empty(), "{r:?}");
    let first = order("SIMG1", short_warmup());
    publish_order(&env.js, agent, &first).await;
    let events = wait_finished(&env.js, agent, first.queue_item_id, Duration::from_secs(60)).await;
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let code = error.unwrap().code;
    assert!(code.starts_with("flow_pack:no_pack"), "{code}");

    // Signed by the trusted key: applied at the next run.
    kv.put("tiktok-32", signed(&publisher(), "tiktok-32", &rev(2)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "revision 2 running", |r| {
        runs(r, "tiktok-32", 2) && r.rejected.is_empty()
    })
    .await;
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);

    // Signed by another key, or unsigned: refused with who signed and why; revision 2 stays.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    kv.put("tiktok-32", signed(&stranger, "tiktok-32", &rev(3)))
        .await
        .unwrap();
    let r = pack_report(&env.js, agent, "the stranger's pack refused", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "untrusted_signer")
    })
    .await;
    assert!(runs(&r, "tiktok-32", 2), "the current pack is kept: {r:?}");
    let who = &r.rejected[0].signer;
    assert_eq!(
        who.as_deref(),
        Some(phonefarm_agent::uplink::packs::key_text(&stranger.verifying_key()).as_str())
    );
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);

    // A good signature of another key's text does not verify for this key.
    kv.put("tiktok-32", signed(&publisher(), "tiktok-33", &rev(4)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "the misplaced signature refused", |r| {
        r.rejected
            .iter()
            .any(|x| x.key == "tiktok-32" && x.reason == "bad_signature")
            && runs(r, "tiktok-32", 2)
    })
    .await;

    kv.put("tiktok-32", signed(&publisher(), "tiktok-32", &rev(5)))
        .await
        .unwrap();
    pack_report(&env.js, agent, "revision 5 running", |r| {
        runs(r, "tiktok-32", 5) && r.rejected.is_empty()
    })
    .await;
    assert_eq!(run_once(&env.js, agent, "SIMG1").await, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_phone_and_the_consumer_is_bound_again_after_deletion() {
    let agent = "rack-h";
    let env = env(agent, true).await;
    let phone = sim("SIMH1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let first = order("SIMH1", short_warmup());
    let second = order("SIMH1", short_warmup());
    publish_order(&env.js, agent, &first).await;
    publish_order(&env.js, agent, &second).await;
    let a = wait_finished(&env.js, agent, first.queue_item_id, Duration::from_secs(60)).await;
    let b = wait_finished(
        &env.js,
        agent,
        second.queue_item_id,
        Duration::from_secs(60),
    )
    .await;
    assert_complete_sequence(&a);
    assert_complete_sequence(&b);
    // The second order was accepted only once the first run had finished.
    let all = run_events(&env.js, agent).await.unwrap();
    let pos = |qid: Uuid, pred: &dyn Fn(&EventKind) -> bool| {
        all.iter()
            .position(|e| e.queue_item_id == qid && pred(&e.kind))
            .unwrap()
    };
    let first_done = pos(first.queue_item_id, &|k| {
        matches!(k, EventKind::Finished { .. })
    });
    let second_accepted = pos(second.queue_item_id, &|k| *k == EventKind::Accepted);
    assert!(first_done < second_accepted, "runs on one phone overlapped");

    // The coordinator deletes and recreates the agent's work consumer: the agent binds again.
    let work = env.js.get_stream(subjects::WORK_STREAM).await.unwrap();
    work.delete_consumer(&subjects::agent_consumer(agent))
        .await
        .unwrap();
    work.create_consumer(consumer::pull::Config {
        durable_name: Some(subjects::agent_consumer(agent)),
        filter_subject: subjects::work(agent),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    })
    .await
    .unwrap();
    let third = order("SIMH1", short_warmup());
    publish_order(&env.js, agent, &third).await;
    let c = wait_finished(&env.js, agent, third.queue_item_id, Duration::from_secs(60)).await;
    assert_eq!(finished(&c).unwrap().0, Outcome::Completed);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_authenticates_and_refuses_a_bad_agent_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = DaemonConfig::new("rack.1", "nats://127.0.0.1:1", dir.path().join("a"));
    bad.tcp.clear();
    let err = daemon::run(bad, CancellationToken::new())
        .await
        .expect_err("a dotted agent id is refused");
    assert!(err.to_string().contains("subject-safe"), "{err:#}");

    // A server that requires a user and password: the agent's presence arrives with them.
    let conf_path = dir.path().join("nats-auth.conf");
    std::fs::write(
        &conf_path,
        "authorization {\n  user: \"agent\"\n  password: \"s3cret\"\n}\n",
    )
    .unwrap();
    let server = NatsServer::start_with_config(Some(conf_path));
    let url = server.url();
    let client = async_nats::ConnectOptions::new()
        .user_and_password("agent".into(), "s3cret".into())
        .retry_on_initial_connect()
        .connect(&url)
        .await
        .unwrap();
    let js = jetstream::new(client);
    bootstrap(&js, "rack-i", true).await;
    let mut cfg = DaemonConfig::new("rack-i", url, dir.path().join("agent"));
    cfg.presence_interval = Duration::from_millis(300);
    cfg.nats_auth = phonefarm_agent::uplink::NatsAuth::UserPassword {
        user: "agent".into(),
        password: "s3cret".into(),
    };
    let daemon = Agent::start(cfg);
    let kv = js.get_key_value(subjects::AGENTS_BUCKET).await.unwrap();
    let presence: Presence = wait_for("presence", Duration::from_secs(20), async || {
        phonefarm_shared::decode(&kv.get("rack-i").await.ok()??).ok()
    })
    .await;
    assert_eq!(presence.agent_id, "rack-i");
    assert_eq!(presence.phones, 0);
    daemon.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_by_a_restart_is_reported_retryable() {
    let agent = "rack-j";
    let env = env(agent, true).await;
    let phone = sim("SIMJ1").await;
    let cfg = config(agent, &env.nats.url(), &env.state, &[&phone]);
    let daemon = Agent::start(cfg.clone());
    let o = order("SIMJ1", long_warmup());
    publish_order(&env.js, agent, &o).await;
    wait_for("the run under way", Duration::from_secs(60), async || {
        let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
        evs.iter()
            .any(|e| matches!(e.kind, EventKind::StepStarted { .. }))
            .then_some(())
    })
    .await;
    daemon.stop().await;

    let daemon = Agent::start(cfg);
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(30)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let error = error.unwrap();
    assert_eq!(error.code, "agent_restarted");
    assert!(error.retryable);
    daemon.stop().await;
}

/// The agent under the least-privilege user `deploy/nats/agent-user.sh` generates: presence,
/// consumers, events, flow packs from KV and evidence all work with exactly those permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_works_with_the_least_privilege_permissions() {
    let agent = "rack-k";
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/agent-user.sh");
    let entry = Command::new("sh")
        .arg(&script)
        .args([agent, "\"agent-pw\""])
        .output()
        .expect("agent-user.sh runs");
    assert!(
        entry.status.success(),
        "{}",
        String::from_utf8_lossy(&entry.stderr)
    );
    // Port and store come from the command line (testkit).
    let conf = format!(
        "authorization {{\n  users: [\n    {{ user: \"coordinator\", password: \"coord-pw\", permissions: {{ publish: {{ allow: [\">\"] }}, subscribe: {{ allow: [\">\"] }} }} }}\n{}\n  ]\n}}\n",
        String::from_utf8_lossy(&entry.stdout)
    );
    let conf_path = dir.path().join("nats.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let server = NatsServer::start_with_config(Some(conf_path));
    let client = async_nats::ConnectOptions::new()
        .user_and_password("coordinator".into(), "coord-pw".into())
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let js = jetstream::new(client);
    bootstrap(&js, agent, true).await;
    let toml = std::fs::read_to_string(packs_dir().join("tiktok-32.toml")).unwrap();
    let flows = js.get_key_value(subjects::FLOWS_BUCKET).await.unwrap();
    flows
        .put("tiktok-32", signed(&publisher(), "tiktok-32", &toml))
        .await
        .unwrap();

    let (good, banned) = (sim("SIMK1").await, sim("SIMK2").await);
    banned.phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let mut cfg = config(
        agent,
        &server.url(),
        &dir.path().join("agent"),
        &[&good, &banned],
    );
    cfg.flow_packs_dir = None;
    cfg.pack_trust = trusting_publisher();
    cfg.nats_auth = phonefarm_agent::uplink::NatsAuth::UserPassword {
        user: agent.into(),
        password: "agent-pw".into(),
    };
    let daemon = Agent::start(cfg);

    let kv = js.get_key_value(subjects::AGENTS_BUCKET).await.unwrap();
    wait_for("presence", Duration::from_secs(20), async || {
        let p: Presence = phonefarm_shared::decode(&kv.get(agent).await.ok()??).ok()?;
        (p.phones == 2).then_some(())
    })
    .await;
    wait_for("an inventory", Duration::from_secs(20), async || {
        (!stored(&js, &subjects::inventory(agent)).await?.is_empty()).then_some(())
    })
    .await;
    // The pack comes from KV (no local packs): retry until the watcher has applied it.
    wait_for(
        "a run with the KV pack",
        Duration::from_secs(90),
        async || {
            let o = order("SIMK1", short_warmup());
            publish_order(&js, agent, &o).await;
            let evs = wait_finished(&js, agent, o.queue_item_id, Duration::from_secs(60)).await;
            assert_complete_sequence(&evs);
            (finished(&evs)?.0 == Outcome::Completed).then_some(())
        },
    )
    .await;
    let o = order("SIMK2", short_warmup());
    publish_order(&js, agent, &o).await;
    let evs = wait_finished(&js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_eq!(
        finished(&evs).unwrap().2.unwrap().code,
        "account_outcome:banned"
    );
    let evidence = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Evidence { .. }))
        .count();
    assert_eq!(
        evidence, 2,
        "dump and screenshot stored under least privilege"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_sharing_a_serial_get_ids_by_location() {
    let agent = "rack-l";
    let env = env(agent, true).await;
    let (p1, p2) = (sim("DUP0").await, sim("DUP0").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p1, &p2]));
    let inv = wait_for(
        "an inventory of both phones",
        Duration::from_secs(20),
        async || {
            let raw = stored(&env.js, &subjects::inventory(agent)).await?;
            raw.iter()
                .map(|(_, p)| phonefarm_shared::decode::<Inventory>(p).expect("inventory decodes"))
                .rev()
                .find(|i| i.phones.iter().filter(|p| p.serial == "DUP0").count() == 2)
        },
    )
    .await;
    let ids: HashSet<&str> = inv.phones.iter().map(|p| p.phone_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "distinct ids: {ids:?}");
    for (p, sim) in inv.phones.iter().zip([&p1, &p2]) {
        assert_eq!(p.location, sim.address());
        assert!(p.phone_id.starts_with("DUP0-"), "{}", p.phone_id);
        assert!(phonefarm_shared::is_subject_token(&p.phone_id));
    }
    // Work addressed by such an id reaches that very phone.
    let o = order(&inv.phones[1].phone_id, short_warmup());
    publish_order(&env.js, agent, &o).await;
    let evs = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_eq!(finished(&evs).unwrap().0, Outcome::Completed);
    let searched = |sim: &Sim| {
        sim.phone
            .lock()
            .unwrap()
            .actions()
            .iter()
            .filter(|a| matches!(a, phonefarm_phonemodel::Action::Searched { .. }))
            .count()
    };
    assert_eq!((searched(&p1), searched(&p2)), (0, 1));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_aborted_and_fails() {
    let agent = "rack-m";
    let env = env(agent, true).await;
    let phone = sim("SIMM1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let mut o = order("SIMM1", long_warmup());
    o.deadline_unix_ms = now_ms() + 8_000;
    publish_order(&env.js, agent, &o).await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(30)).await;
    assert_complete_sequence(&events);
    let (outcome, _, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let error = error.unwrap();
    assert_eq!(error.code, "deadline_exceeded");
    assert!(!error.retryable);
    // The run was in a 30 s dwell (or had not launched the app yet): either way the abort
    // leaves the app stopped.
    let running = phone.phone.lock().unwrap().app_running();
    assert!(!running, "the app was force-stopped");
    daemon.stop().await;
}

/// A one-route HTTP server: `/video.mp4` answers `body`, anything else 404.
async fn serve_video(body: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let found = req.starts_with(b"GET /video.mp4 ");
                let (status, payload): (&str, &[u8]) = if found {
                    ("200 OK", body)
                } else {
                    ("404 Not Found", b"")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(payload).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// A video server that takes the request and never answers (a download that would take
/// minutes).
async fn serve_stalled() -> String {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_cancel_stops_post_video_while_the_video_downloads() {
    let agent = "rack-sv";
    let env = env(agent, true).await;
    let phone = sim("SIMSV1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let base = serve_stalled().await;
    let mut o = order(
        "SIMSV1",
        json!({"content_id": "slow-1", "video_path": format!("{base}/video.mp4"), "caption": "x"}),
    );
    o.capability = Capability::PostVideo;
    publish_order(&env.js, agent, &o).await;
    wait_for(
        "the download under way",
        Duration::from_secs(30),
        async || {
            let evs = of(&run_events(&env.js, agent).await?, o.queue_item_id);
            evs.iter()
                .any(
                    |e| matches!(&e.kind, EventKind::StepStarted { step } if step == "fetch_video"),
                )
                .then_some(())
        },
    )
    .await;
    publish_control(
        &env.js,
        agent,
        &Control::Cancel {
            queue_item_id: o.queue_item_id,
            attempt: o.attempt,
            mode: CancelMode::Soft,
        },
    )
    .await;
    // Not after the download's 10 min timeout: at once.
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(20)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Cancelled);
    {
        let phone = phone.phone.lock().unwrap();
        assert!(phone.posts().is_empty());
        assert!(
            !phone
                .actions()
                .iter()
                .any(|a| matches!(a, phonefarm_phonemodel::Action::AppLaunched { .. })),
            "the phone was not touched"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_video_fetches_the_video_and_posts_it_once() {
    let agent = "rack-n";
    let env = env(agent, true).await;
    let phone = sim("SIMN1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&phone]));
    let base = serve_video(b"\x00\x00\x00\x18ftypmp42 not really a video").await;
    let mut o = order(
        "SIMN1",
        json!({"content_id": "content-1", "video_path": format!("{base}/video.mp4"),
               "caption": "Sunday pancakes", "hashtags": ["cooking"]}),
    );
    o.capability = Capability::PostVideo;
    publish_order(&env.js, agent, &o).await;
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(90)).await;
    assert_complete_sequence(&events);
    let (outcome, result, error) = finished(&events).unwrap();
    assert_eq!(outcome, Outcome::Completed, "{error:?}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["posted"], true, "{result}");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::StepStarted { step } if step == "fetch_video"))
    );
    let posts = phone.phone.lock().unwrap().posts().to_vec();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].caption.contains("Sunday pancakes"));
    assert!(
        posts[0].caption.contains("pf-content-1"),
        "the retry marker"
    );

    // A missing video fails the run without touching the phone, and not retryably.
    let mut missing = order(
        "SIMN1",
        json!({"content_id": "content-2", "video_path": format!("{base}/gone.mp4"),
               "caption": "x"}),
    );
    missing.capability = Capability::PostVideo;
    publish_order(&env.js, agent, &missing).await;
    let events = wait_finished(
        &env.js,
        agent,
        missing.queue_item_id,
        Duration::from_secs(60),
    )
    .await;
    let error = finished(&events).unwrap().2.unwrap();
    assert_eq!(error.code, "asset_http_status:404");
    assert!(!error.retryable);
    assert_eq!(phone.phone.lock().unwrap().posts().len(), 1);
    daemon.stop().await;
}

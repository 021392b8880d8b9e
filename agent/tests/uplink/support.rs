//! The shared setup of the uplink tests: the coordinator's side of NATS as its bootstrap
//! lays it out, the daemon's test configuration, simulated phones, and readers of what the
//! agent published.

pub(crate) use std::collections::HashSet;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::Command;
pub(crate) use std::time::Duration;

pub(crate) use async_nats::jetstream::{self, consumer, stream};
pub(crate) use phonefarm_agent::daemon::{self, DaemonConfig};
pub(crate) use phonefarm_agent::uplink::consumer::PullOptions;
pub(crate) use phonefarm_agent::uplink::evidence::EvidenceSpool;
pub(crate) use phonefarm_agent::uplink::journal::JournalView;
pub(crate) use phonefarm_agent::uplink::packs::PackTrust;
pub(crate) use phonefarm_agent::uplink::publisher::PublisherOptions;
pub(crate) use phonefarm_flows::UiConfig;
pub(crate) use phonefarm_phonemodel::AccountState;
pub(crate) use phonefarm_phonesim::{Sim, SimConfig};
pub(crate) use phonefarm_shared::{
    AgentEvent, CancelMode, Capability, Control, EventKind, Inventory, Outcome, PackReport,
    Presence, WorkOrder, subjects,
};
pub(crate) use phonefarm_testkit::{NatsServer, wait_for};
pub(crate) use serde_json::json;
pub(crate) use tokio::time::Instant;
pub(crate) use tokio_util::sync::CancellationToken;
pub(crate) use uuid::Uuid;

pub(crate) fn packs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowpacks")
}

pub(crate) async fn js_client(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("test client connects");
    jetstream::new(client)
}

/// Streams, buckets and the agent's consumers, shaped as the coordinator's bootstrap makes them.
pub(crate) async fn bootstrap(js: &jetstream::Context, agent_id: &str, with_events: bool) {
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

pub(crate) async fn create_event_stream(js: &jetstream::Context) {
    let evt = stream::Config {
        name: subjects::EVT_STREAM.into(),
        subjects: vec![subjects::EVT_SUBJECTS.into()],
        duplicate_window: Duration::from_secs(900),
        ..Default::default()
    };
    retry(async || js.get_or_create_stream(evt.clone()).await.ok()).await;
}

pub(crate) async fn retry<T>(f: impl AsyncFnMut() -> Option<T>) -> T {
    wait_for("jetstream to answer", Duration::from_secs(15), f).await
}

/// Every message stored on `subject` in `PF_EVT`: (Nats-Msg-Id, payload), in stream order.
pub(crate) async fn stored(
    js: &jetstream::Context,
    subject: &str,
) -> Option<Vec<(String, Vec<u8>)>> {
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
pub(crate) async fn run_events(js: &jetstream::Context, agent_id: &str) -> Option<Vec<AgentEvent>> {
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

pub(crate) fn of(events: &[AgentEvent], qid: Uuid) -> Vec<AgentEvent> {
    events
        .iter()
        .filter(|e| e.queue_item_id == qid)
        .cloned()
        .collect()
}

pub(crate) fn finished(
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
pub(crate) async fn wait_finished(
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
pub(crate) fn assert_complete_sequence(events: &[AgentEvent]) {
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

pub(crate) fn order(phone: &str, inputs: serde_json::Value) -> WorkOrder {
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

pub(crate) fn short_warmup() -> serde_json::Value {
    json!({"keywords": ["cooking"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}})
}

pub(crate) fn long_warmup() -> serde_json::Value {
    json!({"keywords": ["cooking", "travel"], "videos_per_keyword": 5, "watch_seconds": {"min": 30, "max": 30}})
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) async fn publish_order(js: &jetstream::Context, agent: &str, o: &WorkOrder) {
    js.publish(subjects::work(agent), phonefarm_shared::encode(o).into())
        .await
        .expect("publish")
        .await
        .expect("order stored");
}

pub(crate) async fn publish_control(js: &jetstream::Context, agent: &str, c: &Control) {
    js.publish(subjects::control(agent), phonefarm_shared::encode(c).into())
        .await
        .expect("publish")
        .await
        .expect("control stored");
}

pub(crate) async fn stream_messages(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut s = js.get_stream(name).await.ok()?;
    Some(s.info().await.ok()?.state.messages)
}

/// A running daemon; `stop` cancels it and waits for it to end.
pub(crate) struct Agent {
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    pub(crate) fn start(config: DaemonConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("daemon stops in time")
            .expect("daemon task does not panic");
        r.expect("daemon ends cleanly");
    }
}

pub(crate) fn config(agent: &str, url: &str, state: &Path, phones: &[&Sim]) -> DaemonConfig {
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

pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) nats: NatsServer,
    pub(crate) js: jetstream::Context,
}

pub(crate) async fn env(agent: &str, with_events: bool) -> Env {
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

pub(crate) async fn sim(serial: &str) -> Sim {
    phonefarm_phonesim::spawn(SimConfig::with_serial(serial))
        .await
        .expect("sim starts")
}

/// A `SignedPack` of `toml` under `key`, signed by `signer`.
pub(crate) fn signed(signer: &ed25519_dalek::SigningKey, key: &str, toml: &str) -> bytes::Bytes {
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
pub(crate) fn publisher() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

pub(crate) fn trusting_publisher() -> PackTrust {
    PackTrust::new(vec![publisher().verifying_key()])
}

/// The latest pack report of `agent` that `pred` accepts.
pub(crate) async fn pack_report(
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

pub(crate) fn runs(r: &PackReport, name: &str, revision: u32) -> bool {
    r.running
        .iter()
        .any(|p| p.name == name && p.revision == revision && p.kv.is_some())
}

/// Runs a short warm-up on `phone`: its outcome.
pub(crate) async fn run_once(js: &jetstream::Context, agent: &str, phone: &str) -> Outcome {
    let o = order(phone, short_warmup());
    publish_order(js, agent, &o).await;
    let events = wait_finished(js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    finished(&events).expect("finished").0
}

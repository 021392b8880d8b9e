//! Not a timed test: an ignored probe that prints how long a burst of work takes to reach the
//! real agents' `Accepted` (their on-disk journal included), beside the coordinator bench's
//! simulated agent (`cargo bench -p phonefarm-coordinator --bench dispatch`), which answers at
//! once. It asserts only that every process got there (and completed, so the phones are free
//! for the second burst).
//!
//! `cargo test --release -p phonefarm-e2e --test system latency -- --ignored --nocapture`
//! (`PF_PROBE_PHONES`, default 32: simulated phones, one process each; `PF_PROBE_AGENTS`,
//! default 1: the phones split over that many agents). Two bursts: the first also waits for the
//! agents to bind their consumers and is printed apart. The agent's stamp of `Accepted` is
//! taken when it journals the event, before the publish; JetStream's when it stored it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::*;

fn at(v: &Value) -> f64 {
    let t = OffsetDateTime::parse(v.as_str().unwrap_or_default(), &Rfc3339)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.unix_timestamp_nanos() as f64 / 1e6
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e6
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let pick = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<46} n={:<4} p50={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms",
        ms.len(),
        pick(0.5),
        pick(0.99),
        ms[ms.len() - 1]
    );
}

/// When JetStream stored each `Accepted` in the event stream so far (the server's stamp, Unix
/// ms), by queue item: the stream read once, up to its last message.
async fn accepted_stored(js: &async_nats::jetstream::Context) -> HashMap<uuid::Uuid, f64> {
    use futures::StreamExt as _;
    let stream = js
        .get_stream(phonefarm_shared::subjects::EVT_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut stored = HashMap::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await
    {
        let info = m.info().unwrap();
        let at = info.published.unix_timestamp_nanos() as f64 / 1e6;
        let last = info.pending == 0;
        if let Ok(ev) = phonefarm_shared::decode::<phonefarm_shared::AgentEvent>(&m.payload)
            && ev.kind == phonefarm_shared::EventKind::Accepted
        {
            stored.insert(ev.queue_item_id, at);
        }
        if last {
            break;
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures"]
async fn burst_to_the_real_agents_accepted() {
    let n = env_or("PF_PROBE_PHONES", 32);
    let agents = env_or("PF_PROBE_AGENTS", 1);
    let sys = System::start(Options {
        agents,
        ..Options::phones(n)
    })
    .await;
    let js = async_nats::jetstream::new(async_nats::connect(sys.nats.url()).await.unwrap());
    let inputs = json!({"keywords": ["probe"], "videos_per_keyword": 1,
                        "watch_seconds": {"min": 1, "max": 1}});
    // The first burst also waits for the agent to bind its consumers: printed apart.
    for round in 0..2 {
        let started = wall_ms();
        let enqueues = (1..=n).map(|i| {
            let body = warmup(
                &sys,
                &format!("probe-{round}-{i}"),
                &format!("acc-{i}"),
                inputs.clone(),
            );
            let sys = &sys;
            async move { (sys.enqueue(body).await, wall_ms()) }
        });
        let answered = futures::future::join_all(enqueues).await;
        let mut ids = Vec::new();
        for (id, _) in &answered {
            ids.push(sys.item_of(id).await);
        }
        let (mut to_202, mut to_dispatch, mut to_accepted, mut dispatch_to_accepted) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut stamps = Vec::new();
        for ((_, t202), item_id) in answered.iter().zip(&ids) {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let item = loop {
                let item = sys.item(item_id).await;
                let accepted = item["history"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|e| e["kind"] == "accepted"));
                if accepted {
                    break item;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no Accepted within 60 s: {item}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let h = item["history"].as_array().cloned().unwrap_or_default();
            let stamp = |kind: &str| h.iter().find(|e| e["kind"] == kind).map(|e| at(&e["at"]));
            let (Some(d), Some(a)) = (stamp("dispatched"), stamp("accepted")) else {
                panic!("no dispatched/accepted in {item}");
            };
            to_202.push(t202 - started);
            to_dispatch.push(d - started);
            to_accepted.push(a - started);
            dispatch_to_accepted.push(a - d);
            stamps.push((uuid::Uuid::parse_str(item_id).unwrap(), d));
        }
        let label = if round == 0 { "warm-up burst" } else { "burst" };
        println!(
            "{label}: {n} processes enqueued at once, {agents} real agent(s), {n} simulated phones:"
        );
        summary("  burst start -> HTTP 202", to_202);
        summary("  burst start -> dispatched (coordinator)", to_dispatch);
        summary("  burst start -> Accepted journaled (agent)", to_accepted);
        summary("  dispatched -> Accepted journaled", dispatch_to_accepted);
        let stored = accepted_stored(&js).await;
        let to_stored = stamps
            .iter()
            .map(|(qid, d)| {
                let at = stored
                    .get(qid)
                    .unwrap_or_else(|| panic!("no Accepted of {qid} in the event stream"));
                at - d
            })
            .collect();
        summary("  dispatched -> Accepted stored by JetStream", to_stored);
        // The phones must be free for the next burst.
        for (id, _) in &answered {
            sys.wait_status(id, "completed", Duration::from_secs(120))
                .await;
        }
    }
}

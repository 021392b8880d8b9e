use std::time::Duration;

use phonefarm_coordinator::bus::{self, bootstrap};
use phonefarm_shared::subjects;

use phonefarm_testkit::coordinator::bus::*;

#[tokio::test]
async fn bootstrap_is_idempotent_across_restarts() {
    let mut app = BusApp::spawn().await;
    // Run the bootstrap again on the live server, then restart the coordinator on it.
    bootstrap::ensure(&app.bus.js, &test_config(app.nats.url()))
        .await
        .expect("second bootstrap");
    app.stop().await;
    app.bus = bus::connect(test_config(app.nats.url()))
        .await
        .expect("reconnect");
    app.start().await;
    for stream in [
        subjects::WORK_STREAM,
        subjects::CTL_STREAM,
        subjects::EVT_STREAM,
        "KV_pf_agents",
        "KV_pf_flows",
        "OBJ_pf_evidence",
    ] {
        let mut s = app
            .bus
            .js
            .get_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
        let info = s.info().await.unwrap();
        assert_eq!(info.config.name, stream);
    }
    let work = app.bus.js.get_stream(subjects::WORK_STREAM).await.unwrap();
    assert_eq!(
        work.cached_info().config.retention,
        async_nats::jetstream::stream::RetentionPolicy::WorkQueue
    );
    assert_eq!(
        work.cached_info().config.duplicate_window,
        Duration::from_secs(900)
    );
    let evt = app.bus.js.get_stream(subjects::EVT_STREAM).await.unwrap();
    evt.get_consumer::<async_nats::jetstream::consumer::pull::Config>(
        subjects::COORDINATOR_CONSUMER,
    )
    .await
    .expect("the coordinator consumer");
    // The KV bucket built as a stream works through the KV API on 2.9.
    let kv = app
        .bus
        .js
        .get_key_value(subjects::AGENTS_BUCKET)
        .await
        .expect("kv");
    kv.put("probe", "x".into()).await.expect("kv put");
    assert_eq!(kv.get("probe").await.unwrap().as_deref(), Some(&b"x"[..]));
    // The server is the 2.9 line the coordinator was written for, and the check passes it.
    let version = app.bus.client.server_info().version;
    assert!(version.starts_with("2.9."), "{version}");
    bootstrap::check_server_version(&version).expect("accepted");
    assert!(bootstrap::check_server_version("2.8.4").is_err());
    // The API still works after the restart; readiness covers NATS.
    let (s, b) = app.get("/readyz").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["checks"]["nats"], true);
}

#[tokio::test]
async fn readiness_reports_nats_down() {
    let mut app = BusApp::spawn().await;
    app.nats.kill();
    wait_until("readyz 503", Duration::from_secs(15), || async {
        let (s, b) = app.get("/readyz").await;
        s == 503 && b["checks"]["nats"] == false && b["checks"]["postgres"] == true
    })
    .await;
    app.nats.restart_async().await;
    wait_until("readyz 200", Duration::from_secs(20), || async {
        app.get("/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn enrollment_creates_the_agents_consumers() {
    let app = BusApp::spawn().await;
    let agent = SimAgent::connect(&app.nats.url(), "rack-7").await;
    agent.put_presence(&agent.presence_value()).await;
    for stream in [subjects::WORK_STREAM, subjects::CTL_STREAM] {
        wait_until("agent consumer", Duration::from_secs(10), || async {
            app.bus
                .js
                .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                    subjects::agent_consumer("rack-7"),
                    stream,
                )
                .await
                .is_ok()
        })
        .await;
    }
    // The mirror writes the agent right after enrolling it.
    wait_until("agent row", Duration::from_secs(10), || async {
        let (s, b) = app.get("/agents").await;
        s == 200
            && b["agents"][0]["agent_id"] == "rack-7"
            && b["agents"][0]["enrolled_at"].is_string()
    })
    .await;
    // A presence under an unsafe id is never enrolled.
    assert!(
        bootstrap::enroll_agent(&app.bus.js, "a.b", 1)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn on_a_cluster_every_stream_keeps_the_configured_replicas_through_enrollment() {
    use futures::StreamExt;
    let cluster = phonefarm_testkit::NatsCluster::start(3);
    let mut config = test_config(cluster.urls());
    config.replicas = 3;
    // The cluster elects its leaders while the coordinator's bootstrap retries.
    let bus = bus::connect(config)
        .await
        .expect("bus connect on the cluster");
    // An agent shows up: its consumers and evidence bucket (once on start for known agents,
    // once per new presence; both must leave the installation's replica count alone).
    for _ in 0..2 {
        bootstrap::enroll_agent(&bus.js, "rack-1", bus.config.replicas)
            .await
            .expect("enroll");
    }
    let mut names = Vec::new();
    let mut streams = bus.js.streams();
    while let Some(info) = streams.next().await {
        let info = info.expect("stream info");
        assert_eq!(
            info.config.num_replicas, 3,
            "stream {} has {} replicas",
            info.config.name, info.config.num_replicas
        );
        names.push(info.config.name);
    }
    names.sort();
    assert!(
        names.contains(&subjects::WORK_STREAM.to_string())
            && names.contains(&subjects::CTL_STREAM.to_string())
            && names.contains(&"OBJ_pf_evidence_rack-1".to_string()),
        "streams: {names:?}"
    );
}

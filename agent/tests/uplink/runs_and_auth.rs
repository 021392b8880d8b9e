//! Authentication and least-privilege permissions, restarts, phone ids, deadlines and `post_video`.

use crate::support::*;

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

//! Operators' phone actions and the live screen, at the agent: a locate holds the phone (its
//! work order is handed back until the locate ends, then runs), and screen watches from several
//! requesters still mean one capture loop per phone; a capture of a real phone's size (over
//! nats-server's 1 MB `max_payload`) goes in parts and comes back whole.

use futures::StreamExt as _;
use phonefarm_phonemodel::Action;
use phonefarm_shared::{ScreenFrame, Watch};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_located_phone_takes_no_work_until_the_locate_ends() {
    let agent = "rack-l";
    let env = env(agent, true).await;
    let p = sim("SIML1").await;
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&p]));
    phones_online(&env.js, agent, 1).await;
    publish_control(
        &env.js,
        agent,
        &Control::Locate {
            phone_id: "SIML1".into(),
            request_id: Uuid::new_v4(),
            for_seconds: 8,
        },
    )
    .await;
    wait_for(
        "the locate colour shown",
        Duration::from_secs(30),
        async || {
            let phone = p.phone.lock().unwrap();
            phone
                .viewing()
                .is_some_and(|v| v.colour == Some([255, 0, 255]))
                .then_some(())
        },
    )
    .await;

    // An order for the held phone is handed back (delivered again), not accepted, while the
    // colour is still up.
    let o = order("SIML1", short_warmup());
    publish_order(&env.js, agent, &o).await;
    let mut consumer: jetstream::consumer::PullConsumer = env
        .js
        .get_consumer_from_stream(subjects::agent_consumer(agent), subjects::WORK_STREAM)
        .await
        .unwrap();
    wait_for(
        "the order handed back",
        Duration::from_secs(20),
        async || {
            let info = consumer.info().await.ok()?;
            (info.delivered.consumer_sequence >= 2).then_some(())
        },
    )
    .await;
    assert!(
        p.phone.lock().unwrap().viewing().is_some(),
        "still located when the order came back"
    );
    let events = run_events(&env.js, agent).await.unwrap_or_default();
    assert!(of(&events, o.queue_item_id).is_empty(), "{events:?}");

    // After the locate (HOME), the order runs.
    let events = wait_finished(&env.js, agent, o.queue_item_id, Duration::from_secs(60)).await;
    assert_complete_sequence(&events);
    assert_eq!(finished(&events).unwrap().0, Outcome::Completed);
    let actions = p.phone.lock().unwrap().actions().to_vec();
    let viewed = actions
        .iter()
        .position(|a| matches!(a, Action::ImageViewed { .. }))
        .unwrap();
    let home = viewed
        + actions[viewed..]
            .iter()
            .position(|a| *a == Action::Key { code: 3 })
            .expect("the locate ended with HOME");
    let launched = actions
        .iter()
        .position(|a| matches!(a, Action::AppLaunched { .. }))
        .expect("the run launched the app");
    assert!(home < launched, "the run started after the locate ended");
    daemon.stop().await;
}

/// Waits for an inventory with `n` phones online (the agent knows them).
async fn phones_online(js: &jetstream::Context, agent: &str, n: usize) {
    wait_for("the phones online", Duration::from_secs(20), async || {
        let raw = stored(js, &subjects::inventory(agent)).await?;
        raw.iter()
            .filter_map(|(_, p)| phonefarm_shared::decode::<Inventory>(p).ok())
            .any(|i| {
                i.phones
                    .iter()
                    .filter(|p| p.state == phonefarm_shared::PhoneState::Online)
                    .count()
                    == n
            })
            .then_some(())
    })
    .await;
}

/// A viewer: renews a 3 s watch of `phone` on `agent` every `every` until `stop`.
fn renew_watch(
    client: &async_nats::Client,
    agent: &'static str,
    phone: &str,
    every: Duration,
    stop: &CancellationToken,
) {
    let (client, stop) = (client.clone(), stop.clone());
    let w = phonefarm_shared::encode(&Watch {
        phone_id: phone.into(),
        for_seconds: 3,
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        while !stop.is_cancelled() {
            tick.tick().await;
            let _ = client
                .publish(subjects::screen_watch(agent), w.clone().into())
                .await;
        }
    });
}

fn captures(p: &Sim) -> usize {
    p.phone
        .lock()
        .unwrap()
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Screenshot))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_one_capture_loop_and_frames_on_the_agents_subject() {
    let agent = "rack-w";
    let env = env(agent, true).await;
    let (a, b) = (sim("SIMW1").await, sim("SIMW2").await);
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&a, &b]));
    phones_online(&env.js, agent, 2).await;
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let mut frames = client
        .subscribe(subjects::screen(agent, "SIMW1"))
        .await
        .unwrap();
    // Three requesters renew SIMW1's watch, one renews SIMW2's, each every 200 ms; a watch
    // for a phone the agent does not have is ignored.
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    for phone in ["SIMW1", "SIMW1", "SIMW1", "SIMW2", "NOPE"] {
        let stop = if phone == "SIMW1" { &stop_a } else { &stop_b };
        renew_watch(&client, agent, phone, Duration::from_millis(200), stop);
    }
    let mut last = 0;
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(20), frames.next())
            .await
            .expect("a frame")
            .unwrap();
        let f: ScreenFrame = phonefarm_shared::decode(&m.payload).unwrap();
        assert_eq!(f.phone_id, "SIMW1");
        assert!(f.seq > last, "{} after {last}", f.seq);
        last = f.seq;
        assert!(f.png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    // Over a window of 5 captures of SIMW2, SIMW1 (three requesters) is captured about as often.
    let (ca, cb) = (captures(&a), captures(&b));
    wait_for("5 captures of SIMW2", Duration::from_secs(30), async || {
        (captures(&b) >= cb + 5).then_some(())
    })
    .await;
    let grown = captures(&a) - ca;
    assert!(
        (3..=7).contains(&grown),
        "SIMW1 captured {grown} times in that window"
    );
    // SIMW1's renewals stop: so do its captures (within a lapse of the 3 s watch), while
    // SIMW2, still watched, is the clock.
    stop_a.cancel();
    wait_for(
        "SIMW1's captures stopped",
        Duration::from_secs(30),
        async || {
            let (before, clock) = (captures(&a), captures(&b));
            wait_for("2 captures of SIMW2", Duration::from_secs(20), async || {
                (captures(&b) >= clock + 2).then_some(())
            })
            .await;
            (captures(&a) == before).then_some(())
        },
    )
    .await;
    let (ca, cb) = (captures(&a), captures(&b));
    wait_for(
        "6 more captures of SIMW2",
        Duration::from_secs(30),
        async || (captures(&b) >= cb + 6).then_some(()),
    )
    .await;
    assert_eq!(captures(&a), ca, "SIMW1 captured with no watch alive");
    stop_b.cancel();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_larger_than_max_payload_goes_in_parts_and_comes_back_whole() {
    let agent = "rack-big";
    let env = env(agent, true).await;
    // 2.5 MB: what a 1080x2400 capture of a busy screen weighs on a real phone.
    let mut c = phonefarm_phonesim::SimConfig::with_serial("SIMBIG");
    c.model.screencap_padding = 2_500_000;
    let big = phonefarm_phonesim::spawn(c).await.expect("sim starts");
    let daemon = Agent::start(config(agent, &env.nats.url(), &env.state, &[&big]));
    phones_online(&env.js, agent, 1).await;
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let max_payload = client.server_info().max_payload;
    assert!(
        max_payload < 2_500_000,
        "the server's max_payload is {max_payload}"
    );
    let mut msgs = client
        .subscribe(subjects::screen(agent, "SIMBIG"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    renew_watch(&client, agent, "SIMBIG", Duration::from_millis(500), &stop);
    let mut frames = phonefarm_shared::screen::Reassembler::new(8 << 20);
    let (mut messages, mut whole) = (0usize, Vec::new());
    while whole.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("a message of the phone's screen")
            .unwrap();
        messages += 1;
        assert!(m.payload.len() <= max_payload, "{} bytes", m.payload.len());
        let part = m
            .headers
            .as_ref()
            .and_then(|h| h.get(phonefarm_shared::screen::PART_HEADER))
            .map(|v| {
                phonefarm_shared::screen::parse_part_header(v.as_str()).expect("a good header")
            });
        assert!(part.is_some(), "a large frame sent whole");
        let piece: ScreenFrame = phonefarm_shared::decode(&m.payload).unwrap();
        if let Some(f) = frames.feed(part, piece) {
            whole.push(f);
        }
    }
    stop.cancel();
    for f in &whole {
        assert!(f.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(f.png.ends_with(b"IEND\xaeB`\x82"), "the PNG ends with IEND");
        assert!(f.png.len() > 2_500_000, "{} bytes", f.png.len());
    }
    assert!(whole[1].seq > whole[0].seq);
    assert!(messages >= 2 * 3, "{messages} messages for two frames");
    daemon.stop().await;
}

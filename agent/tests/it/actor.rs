//! The phone actor over an in-memory duplex, against a device session driven by hand, so the
//! test sees every message the actor sends.

use std::time::Duration;

use bytes::Bytes;
use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::adb::banner::Banner;
use phonefarm_agent::adb::message::{Message, VERSION_SKIP_CHECKSUM, cmd};
use phonefarm_agent::adb::session::{DeviceConfig, Event, Session};
use phonefarm_agent::adb::shell::Packet;
use phonefarm_agent::adb::transport::{
    ByteSource, DuplexSink, DuplexSource, PacketSink, duplex_pair,
};
use phonefarm_agent::phone::{PhoneError, PhoneHandle, PhoneOptions};
use tokio::time::Instant;

/// A device whose every step the test controls.
struct Device {
    session: Session,
    sink: DuplexSink,
    source: DuplexSource,
    /// Raw messages the device received.
    seen: Vec<Message>,
}

impl Device {
    async fn flush(&mut self) {
        while let Some(m) = self.session.poll_transmit() {
            let h = self.session.header(&m);
            self.sink.send_packet(&h, &m.payload).await.unwrap();
        }
    }

    /// Reads until an event arrives (or the deadline passes).
    async fn next_event(&mut self) -> Event {
        let mut buf = [0u8; 4096];
        let mut parser = phonefarm_agent::adb::Parser::default();
        loop {
            self.flush().await;
            if let Some(e) = self.session.poll_event() {
                return e;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.source.recv(&mut buf))
                .await
                .expect("device waited too long")
                .unwrap();
            assert!(n > 0, "host hung up");
            parser.feed(&buf[..n]);
            while let Some(m) = parser.next_message().unwrap() {
                self.seen.push(m.clone());
                self.session.handle(m).unwrap();
            }
        }
    }
}

async fn pair(features: &[&str]) -> (PhoneHandle, Device) {
    let ((hs, hr), (ds, dr)) = duplex_pair(1 << 20);
    let key = AdbKey::generate().unwrap();
    let phone = PhoneHandle::spawn(hs, hr, "mem", PhoneOptions::new(KeyRing::new(vec![key])));
    let session = Session::device(DeviceConfig {
        banner: Banner::device("p", "m", "d", features),
        version: VERSION_SKIP_CHECKSUM,
        max_payload: 1 << 20,
        auth_required: false,
        known_keys: vec![],
    });
    let mut dev = Device {
        session,
        sink: ds,
        source: dr,
        seen: Vec::new(),
    };
    assert!(matches!(dev.next_event().await, Event::Online(_)));
    (phone, dev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_sends_clse_for_the_stream() {
    let (phone, mut dev) = pair(&["shell_v2"]).await;
    let p = phone.clone();
    let call = tokio::spawn(async move {
        p.shell("sleep 100", Instant::now() + Duration::from_millis(300))
            .await
    });
    let Event::OpenRequest { id, service } = dev.next_event().await else {
        panic!()
    };
    assert_eq!(service, "shell,v2,raw:sleep 100");
    dev.session.accept(id).unwrap();
    // The device never answers; the deadline passes and the host closes the stream.
    let ev = dev.next_event().await;
    assert_eq!(ev, Event::Closed { id });
    let clse = dev
        .seen
        .iter()
        .rev()
        .find(|m| m.command == cmd::CLSE)
        .unwrap();
    assert_eq!(clse.arg1, id, "CLSE names the device's stream");
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, PhoneError::Timeout), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_by_drop_sends_clse() {
    let (phone, mut dev) = pair(&["shell_v2"]).await;
    let p = phone.clone();
    let call = tokio::spawn(async move {
        p.shell("cat", Instant::now() + Duration::from_secs(60))
            .await
    });
    let Event::OpenRequest { id, .. } = dev.next_event().await else {
        panic!()
    };
    dev.session.accept(id).unwrap();
    dev.flush().await;
    call.abort();
    assert_eq!(dev.next_event().await, Event::Closed { id });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_does_not_block_another() {
    let (phone, mut dev) = pair(&["shell_v2"]).await;
    let p1 = phone.clone();
    let slow = tokio::spawn(async move {
        p1.shell("slow", Instant::now() + Duration::from_secs(30))
            .await
    });
    let Event::OpenRequest { id: slow_id, .. } = dev.next_event().await else {
        panic!()
    };
    dev.session.accept(slow_id).unwrap();
    let p2 = phone.clone();
    let fast = tokio::spawn(async move {
        p2.shell("fast", Instant::now() + Duration::from_secs(30))
            .await
    });
    let Event::OpenRequest {
        id: fast_id,
        service,
    } = dev.next_event().await
    else {
        panic!()
    };
    assert_eq!(service, "shell,v2,raw:fast");
    dev.session.accept(fast_id).unwrap();
    let mut b = Packet::new(phonefarm_agent::adb::shell::PacketId::Stdout, &b"quick"[..])
        .encode()
        .to_vec();
    b.extend_from_slice(&Packet::exit(0).encode());
    dev.session.write(fast_id, Bytes::from(b)).unwrap();
    dev.flush().await;
    let out = fast.await.unwrap().unwrap();
    assert_eq!(out.stdout, b"quick");
    assert!(!slow.is_finished(), "the slow call is still waiting");
    dev.session
        .write(slow_id, Packet::exit(4).encode())
        .unwrap();
    dev.flush().await;
    // Keep the device reading so the host's OKAYs are consumed.
    let out = tokio::select! {
        r = slow => r.unwrap().unwrap(),
        _ = async { loop { dev.next_event().await; } } => unreachable!(),
    };
    assert_eq!(out.exit, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_phone_takes_it_offline_without_panic() {
    let (phone, mut dev) = pair(&[]).await;
    dev.sink.send_packet(&[0xAB; 24], &[]).await.unwrap();
    let err = phone
        .shell("x", Instant::now() + Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PhoneError::Offline(_) | PhoneError::Disconnected(_)),
        "{err}"
    );
    assert_eq!(phone.state().label(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_before_online_ends_the_connection() {
    let ((hs, hr), (_ds, mut dr)) = duplex_pair(1 << 16);
    let key = AdbKey::generate().unwrap();
    let phone = PhoneHandle::spawn(hs, hr, "mem", PhoneOptions::new(KeyRing::new(vec![key])));
    let mut state = phone.watch_state();
    // The phone never answers the CNXN; the last handle goes away.
    drop(phone);
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, phonefarm_agent::phone::ConnState::Offline(_))),
    )
    .await;
    assert!(ended.is_ok(), "actor kept running without handles");
    // And the device side sees the connection close (after the CNXN bytes).
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), dr.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total >= 24);
}

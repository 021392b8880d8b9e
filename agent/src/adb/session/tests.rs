use super::*;
use crate::adb::auth::AdbKey;
use std::sync::OnceLock;

fn key(i: usize) -> AdbKey {
    static KEYS: OnceLock<Vec<AdbKey>> = OnceLock::new();
    KEYS.get_or_init(|| (0..2).map(|_| AdbKey::generate().unwrap()).collect())[i].clone()
}

fn device_cfg(features: &[&str], auth_required: bool, known: Vec<PublicKey>) -> DeviceConfig {
    DeviceConfig {
        banner: Banner::device("p", "M", "d", features),
        version: VERSION_SKIP_CHECKSUM,
        max_payload: MAX_PAYLOAD,
        auth_required,
        known_keys: known,
    }
}

/// Moves every queued message between the two sessions (through the byte codec) until both
/// are quiet; returns events of each side.
fn pump(h: &mut Session, d: &mut Session) -> (Vec<Event>, Vec<Event>) {
    let (mut he, mut de) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        while let Some(m) = h.poll_transmit() {
            let mut bytes = h.header(&m).to_vec();
            bytes.extend_from_slice(&m.payload);
            d.feed(&bytes).unwrap();
            moved = true;
        }
        while let Some(m) = d.poll_transmit() {
            let mut bytes = d.header(&m).to_vec();
            bytes.extend_from_slice(&m.payload);
            h.feed(&bytes).unwrap();
            moved = true;
        }
        while let Some(e) = h.poll_event() {
            he.push(e);
        }
        while let Some(e) = d.poll_event() {
            de.push(e);
        }
        if !moved {
            return (he, de);
        }
    }
}

#[test]
fn connects_without_auth_and_negotiates() {
    let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
    let mut cfg = device_cfg(&["shell_v2"], false, vec![]);
    cfg.version = VERSION_MIN;
    cfg.max_payload = 4096;
    let mut d = Session::device(cfg);
    let (he, de) = pump(&mut h, &mut d);
    let Some(Event::Online(info)) = he.first() else {
        panic!("{he:?}")
    };
    assert_eq!(info.version, VERSION_MIN);
    assert_eq!(info.max_payload, 4096);
    assert!(info.banner.has("shell_v2"));
    assert!(!info.delayed_ack);
    assert!(h.send_checksums());
    assert!(matches!(de.first(), Some(Event::Online(_))));
}

#[test]
fn auth_with_second_key_of_ring() {
    let ring = KeyRing::new(vec![key(0), key(1)]);
    let mut h = Session::host(HostConfig::new(ring));
    let known = vec![key(1).public_key_for_tests()];
    let mut d = Session::device(device_cfg(&[], true, known));
    let (he, _) = pump(&mut h, &mut d);
    assert!(matches!(he.as_slice(), [Event::Online(_)]), "{he:?}");
}

#[test]
fn unknown_key_waits_for_user_on_same_connection() {
    let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
    let mut d = Session::device(device_cfg(&[], true, vec![]));
    let (he, de) = pump(&mut h, &mut d);
    assert_eq!(he, vec![Event::Unauthorized]);
    assert_eq!(h.state(), &State::Unauthorized);
    let Some(Event::AuthKeyOffered(k)) = de.first().cloned() else {
        panic!("{de:?}")
    };
    assert!(k.starts_with(key(0).public_key_b64().as_bytes()));
    d.authorize(&k, true).unwrap();
    let (he, _) = pump(&mut h, &mut d);
    assert!(matches!(he.as_slice(), [Event::Online(_)]));
    // The accepted key is remembered: a second connection signs straight in.
    let RoleState::Device { cfg, .. } = &d.role else {
        unreachable!()
    };
    let mut d2 = Session::device(device_cfg(&[], true, cfg.known_keys.clone()));
    let mut h2 = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
    let (he, _) = pump(&mut h2, &mut d2);
    assert!(matches!(he.as_slice(), [Event::Online(_)]));
}

fn online_pair(dev_features: &[&str]) -> (Session, Session) {
    let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
    let mut d = Session::device(device_cfg(dev_features, false, vec![]));
    pump(&mut h, &mut d);
    assert!(h.is_online() && d.is_online());
    (h, d)
}

#[test]
fn one_wrte_in_flight_without_delayed_ack() {
    let (mut h, mut d) = online_pair(&[]);
    let id = h.open("sync:").unwrap();
    let open = h.poll_transmit().unwrap();
    assert_eq!((open.command, open.arg0, open.arg1), (cmd::OPEN, id, 0));
    assert_eq!(&open.payload[..], b"sync:\0");
    d.handle(open).unwrap();
    let Some(Event::OpenRequest { id: did, service }) = d.poll_event() else {
        panic!()
    };
    assert_eq!(service, "sync:");
    d.accept(did).unwrap();
    let okay = d.poll_transmit().unwrap();
    h.handle(okay).unwrap();
    assert_eq!(h.poll_event(), Some(Event::Opened { id }));
    h.write(id, Bytes::from(vec![7u8; 3 * MAX_PAYLOAD as usize]))
        .unwrap();
    let w1 = h.poll_transmit().unwrap();
    assert_eq!(w1.command, cmd::WRTE);
    assert_eq!(w1.payload.len(), MAX_PAYLOAD as usize);
    assert!(
        h.poll_transmit().is_none(),
        "second WRTE must wait for OKAY"
    );
    assert_eq!(h.queued(id), 2 * MAX_PAYLOAD as usize);
    d.handle(w1).unwrap();
    let ack = d.poll_transmit().unwrap();
    assert_eq!(ack.command, cmd::OKAY);
    h.handle(ack).unwrap();
    assert_eq!(h.poll_transmit().unwrap().command, cmd::WRTE);
    assert!(h.poll_transmit().is_none());
}

#[test]
fn delayed_ack_pipelines_within_window() {
    let (mut h, mut d) = online_pair(&[banner::FEATURE_DELAYED_ACK]);
    assert!(h.peer().unwrap().delayed_ack);
    let id = h.open("shell,v2,raw:cat").unwrap();
    let (_, de) = pump(&mut h, &mut d);
    let Some(Event::OpenRequest { id: did, .. }) = de.first().cloned() else {
        panic!()
    };
    d.accept(did).unwrap();
    pump(&mut h, &mut d);
    h.write(id, Bytes::from(vec![1u8; 4 * MAX_PAYLOAD as usize]))
        .unwrap();
    let mut n = 0;
    while let Some(m) = h.poll_transmit() {
        assert_eq!(m.command, cmd::WRTE);
        n += 1;
    }
    assert_eq!(n, 4, "all four fit in the 8 MiB window without waiting");
}

#[test]
fn open_window_must_match_negotiation() {
    let (_h, mut d) = online_pair(&[]);
    // Not negotiated, but the OPEN carries a window: refused like adbd does.
    d.handle(Message::new(cmd::OPEN, 7, 1024, &b"shell:x\0"[..]))
        .unwrap();
    let m = d.poll_transmit().unwrap();
    assert_eq!((m.command, m.arg0, m.arg1), (cmd::CLSE, 0, 7));
    assert!(d.poll_event().is_none());

    let (_h, mut d) = online_pair(&[banner::FEATURE_DELAYED_ACK]);
    d.handle(Message::new(cmd::OPEN, 8, 0, &b"shell:x\0"[..]))
        .unwrap();
    let m = d.poll_transmit().unwrap();
    assert_eq!((m.command, m.arg0, m.arg1), (cmd::CLSE, 0, 8));
}

#[test]
fn delayed_ack_needs_both_sides() {
    let mut cfg = HostConfig::new(KeyRing::new(vec![key(0)]));
    cfg.features.retain(|f| f != banner::FEATURE_DELAYED_ACK);
    let mut h = Session::host(cfg);
    let mut d = Session::device(device_cfg(&[banner::FEATURE_DELAYED_ACK], false, vec![]));
    pump(&mut h, &mut d);
    assert!(!h.peer().unwrap().delayed_ack);
    assert!(!d.peer().unwrap().delayed_ack);
}

#[test]
fn close_echo_and_refusal() {
    let (mut h, mut d) = online_pair(&[]);
    let id = h.open("bogus:").unwrap();
    let (_, de) = pump(&mut h, &mut d);
    let Some(Event::OpenRequest { id: did, .. }) = de.first().cloned() else {
        panic!()
    };
    d.refuse(did);
    let (he, _) = pump(&mut h, &mut d);
    assert_eq!(he, vec![Event::OpenFailed { id }]);

    // Device closes first: host echoes and reports Closed.
    let id = h.open("shell:x").unwrap();
    let (_, de) = pump(&mut h, &mut d);
    let Some(Event::OpenRequest { id: did, .. }) = de.first().cloned() else {
        panic!()
    };
    d.accept(did).unwrap();
    d.write(did, Bytes::from_static(b"out")).unwrap();
    d.close(did);
    let (he, de) = pump(&mut h, &mut d);
    assert_eq!(
        he,
        vec![
            Event::Opened { id },
            Event::Data {
                id,
                data: Bytes::from_static(b"out")
            },
            Event::Closed { id }
        ]
    );
    assert_eq!(de, vec![Event::Closed { id: did }]);
    assert_eq!(h.stream_count(), 0);
    assert_eq!(d.stream_count(), 0);

    // Host aborts: CLSE goes out, the echo is absorbed.
    let id = h.open("shell:y").unwrap();
    let (_, de) = pump(&mut h, &mut d);
    let Some(Event::OpenRequest { id: did, .. }) = de.first().cloned() else {
        panic!()
    };
    d.accept(did).unwrap();
    pump(&mut h, &mut d);
    h.abort(id);
    let (he, de) = pump(&mut h, &mut d);
    assert_eq!(de, vec![Event::Closed { id: did }]);
    assert_eq!(he, vec![Event::Closed { id }]);
    assert_eq!(h.stream_count(), 0);
    // A stray CLSE for a forgotten stream is ignored.
    h.handle(Message::new(cmd::CLSE, 99, id, Bytes::new()))
        .unwrap();
}

#[test]
fn abort_while_opening_closes_after_okay() {
    let (mut h, mut d) = online_pair(&[]);
    let id = h.open("shell:z").unwrap();
    h.abort(id);
    let (he, de) = pump(&mut h, &mut d);
    // The device saw the OPEN; the host closes as soon as the OKAY arrives.
    let Some(Event::OpenRequest { id: did, .. }) = de.first().cloned() else {
        panic!()
    };
    assert!(he.is_empty());
    d.accept(did).unwrap();
    let (_, de) = pump(&mut h, &mut d);
    assert_eq!(de, vec![Event::Closed { id: did }]);
    assert_eq!(h.stream_count(), 0);
}

#[test]
fn rejects_traffic_before_online() {
    let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
    let m = Message::new(cmd::OPEN, 1, 0, &b"x\0"[..]);
    assert!(h.handle(m).is_err());
    assert!(h.open("shell:").is_err());
    let m = Message::new(cmd::STLS, 1, 0, Bytes::new());
    assert_eq!(h.handle(m), Err(SessionError::TlsRequested));
}

proptest::proptest! {
    /// Arbitrary well-framed messages in any order never panic either role.
    #[test]
    fn random_messages_never_panic(
        msgs in proptest::collection::vec(
            (0usize..8, proptest::prelude::any::<u32>(), 0u32..4, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
            0..30,
        ),
    ) {
        let cmds = [cmd::CNXN, cmd::AUTH, cmd::OPEN, cmd::OKAY, cmd::WRTE, cmd::CLSE, cmd::SYNC, cmd::STLS];
        let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
        let mut d = Session::device(device_cfg(&["delayed_ack"], true, vec![]));
        for (c, a0, a1, p) in msgs {
            let m = Message::new(cmds[c], a0 % 4, a1, p);
            let _ = h.handle(m.clone());
            let _ = d.handle(m);
            while h.poll_transmit().is_some() || h.poll_event().is_some() {}
            while d.poll_transmit().is_some() || d.poll_event().is_some() {}
        }
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let mut h = Session::host(HostConfig::new(KeyRing::new(vec![key(0)])));
        let _ = h.feed(&data);
    }
}

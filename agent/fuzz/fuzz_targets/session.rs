//! Arbitrary bytes from the peer, in arbitrary pieces, into a host session (with a key, so the
//! AUTH path signs) and into a device session (auth required, delayed ack): a protocol error
//! or nothing, never a panic, and the session's outbox stays drainable.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent_fuzz::adb::banner::Banner;
use phonefarm_agent_fuzz::adb::message::{MAX_PAYLOAD, VERSION_SKIP_CHECKSUM};
use phonefarm_agent_fuzz::adb::session::{DeviceConfig, HostConfig, Session};
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    device: bool,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fn key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate().expect("key")).clone()
}

fuzz_target!(|input: Input| {
    let mut s = if input.device {
        Session::device(DeviceConfig {
            banner: Banner::device("p", "m", "d", &["shell_v2", "delayed_ack"]),
            version: VERSION_SKIP_CHECKSUM,
            max_payload: MAX_PAYLOAD,
            auth_required: true,
            known_keys: vec![key().public_key()],
        })
    } else {
        Session::host(HostConfig::new(KeyRing::new(vec![key()])))
    };
    for c in pieces(&input.data, &input.cuts) {
        let r = s.feed(c);
        while s.poll_transmit().is_some() {}
        while let Some(ev) = s.poll_event() {
            // Accept whatever the host asks for, so stream paths run too.
            if let phonefarm_agent_fuzz::adb::Event::OpenRequest { id, .. } = ev {
                let _ = s.accept(id);
                let _ = s.write(id, bytes::Bytes::from_static(b"reply"));
            }
        }
        if r.is_err() {
            return;
        }
    }
});

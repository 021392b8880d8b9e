//! The device-side sync request decoder fed one stream whole and in pieces: same requests and
//! same first error either way, no panic, and requests (other than SEND, whose mode text may
//! be written several ways) re-encode to exactly the bytes consumed.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::checks;
use phonefarm_agent_fuzz::adb::sync::Request;
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let whole = checks::sync_requests(&[&input.data]);
    let split = checks::sync_requests(&pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
    let mut at = 0;
    for r in &whole.0 {
        let len = match r {
            Request::Done { .. } => 8,
            _ => {
                let b = &input.data[at + 4..at + 8];
                8 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
        };
        let path_ok = |p: &String| std::str::from_utf8(&input.data[at + 8..at + len]) == Ok(p);
        let exact = match r {
            Request::Send { .. } => false,
            // Paths are decoded lossily: only valid UTF-8 re-encodes byte for byte.
            Request::Stat(p)
            | Request::Stat2(p)
            | Request::Lstat2(p)
            | Request::List(p)
            | Request::Recv(p) => path_ok(p),
            // QUIT ignores any payload it carries.
            Request::Quit => len == 8,
            Request::Data(_) | Request::Done { .. } => true,
        };
        if exact {
            assert_eq!(&r.encode()[..], &input.data[at..at + len], "{r:?}");
        }
        at += len;
    }
});

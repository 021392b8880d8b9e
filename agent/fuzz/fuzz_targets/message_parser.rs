//! The incremental message parser fed one byte stream whole and in arbitrary pieces: it never
//! panics, gives the same messages and the same first error either way, never holds more than
//! one partial message (header + payload limit), and every message it returns re-encodes to
//! exactly the bytes it consumed (checksum field aside).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::checks;
use phonefarm_agent_fuzz::adb::message::{ChecksumMode, MAX_PAYLOAD_V1};
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    /// 4 KiB limit (old devices) or a small one, so oversize headers are common.
    small_limit: bool,
    checksum: u8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let limit = if input.small_limit {
        64
    } else {
        MAX_PAYLOAD_V1
    };
    let mode = match input.checksum % 3 {
        0 => ChecksumMode::Lenient,
        1 => ChecksumMode::Strict,
        _ => ChecksumMode::Off,
    };
    let whole = checks::messages(limit, mode, &[&input.data]);
    let split = checks::messages(limit, mode, &pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
    checks::assert_messages_reencode(&whole.0, &input.data);
});

//! The shell v2 decoder fed one stream whole and in pieces: same packets and same error either
//! way, no panic, and the packets re-encode to exactly the bytes consumed.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::checks;
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let whole = checks::shell_packets(&[&input.data]);
    let split = checks::shell_packets(&pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
    checks::assert_packets_reencode(&whole.0, &input.data);
});

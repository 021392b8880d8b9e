//! The host-side sync response decoder, told what reply to expect (a sequence chosen by the
//! input), fed one stream whole and in pieces: same responses and same first error either
//! way, no panic, and a bounded buffer.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::checks;
use phonefarm_agent_fuzz::adb::sync::Expect;
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    expects: Vec<u8>,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

const ALL: [Expect; 5] = [
    Expect::Stat,
    Expect::Stat2,
    Expect::List,
    Expect::Recv,
    Expect::Status,
];

fuzz_target!(|input: Input| {
    let mut expects: Vec<Expect> = input
        .expects
        .iter()
        .map(|b| ALL[usize::from(*b) % ALL.len()])
        .collect();
    if expects.is_empty() {
        expects.push(Expect::Recv);
    }
    let whole = checks::sync_responses(&expects, &[&input.data]);
    let split = checks::sync_responses(&expects, &pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
});

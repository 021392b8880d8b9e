//! The host-side sync response decoder, told what reply to expect (a sequence chosen by the
//! input), fed one stream whole and in pieces: same responses and same first error either
//! way, no panic, and a bounded buffer.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::sync::{
    Expect, MAX_PATH, Response, ResponseDecoder, SYNC_DATA_MAX, SyncError,
};
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

fn run(expects: &[Expect], chunks: &[&[u8]]) -> (Vec<Response>, Option<SyncError>) {
    let mut d = ResponseDecoder::default();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            let e = expects[out.len() % expects.len()];
            match d.next_response(e) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(err) => {
                    assert_eq!(d.next_response(e), Err(err.clone()));
                    return (out, Some(err));
                }
            }
        }
        assert!(d.buffered() < 20 + SYNC_DATA_MAX.max(MAX_PATH as usize));
    }
    (out, None)
}

fuzz_target!(|input: Input| {
    let mut expects: Vec<Expect> = input
        .expects
        .iter()
        .map(|b| ALL[usize::from(*b) % ALL.len()])
        .collect();
    if expects.is_empty() {
        expects.push(Expect::Recv);
    }
    let whole = run(&expects, &[&input.data]);
    let split = run(&expects, &pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
});

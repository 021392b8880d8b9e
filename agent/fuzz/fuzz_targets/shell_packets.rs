//! The shell v2 decoder fed one stream whole and in pieces: same packets and same error either
//! way, no panic, and the packets re-encode to exactly the bytes consumed.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::shell::{Decoder, MAX_SHELL_PACKET, Packet, ShellError};
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fn run(chunks: &[&[u8]]) -> (Vec<Packet>, Option<ShellError>) {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next_packet() {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next_packet(), Err(e.clone()));
                    return (out, Some(e));
                }
            }
        }
        assert!(d.buffered() < 5 + MAX_SHELL_PACKET as usize);
    }
    (out, None)
}

fuzz_target!(|input: Input| {
    let whole = run(&[&input.data]);
    let split = run(&pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
    let enc: Vec<u8> = whole.0.iter().flat_map(|p| p.encode().to_vec()).collect();
    assert_eq!(&enc[..], &input.data[..enc.len()]);
});

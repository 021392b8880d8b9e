//! The incremental message parser fed one byte stream whole and in arbitrary pieces: it never
//! panics, gives the same messages and the same first error either way, never holds more than
//! one partial message (header + payload limit), and every message it returns re-encodes to
//! exactly the bytes it consumed (checksum field aside).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::message::{
    ChecksumMode, HEADER_LEN, MAX_PAYLOAD_V1, Message, ParseError, Parser,
};
use phonefarm_agent_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    /// 4 KiB limit (old devices) or a small one, so oversize headers are common.
    small_limit: bool,
    checksum: u8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fn run(limit: u32, mode: ChecksumMode, chunks: &[&[u8]]) -> (Vec<Message>, Option<ParseError>) {
    let mut p = Parser::new(limit);
    p.set_checksum_mode(mode);
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c);
        loop {
            match p.next_message() {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= limit as usize);
                    out.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    // Sticky: the same error again.
                    assert_eq!(p.next_message(), Err(e.clone()));
                    return (out, Some(e));
                }
            }
        }
        assert!(
            p.buffered() < HEADER_LEN + limit as usize,
            "parser holds {} bytes with a limit of {limit}",
            p.buffered()
        );
    }
    (out, None)
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
    let whole = run(limit, mode, &[&input.data]);
    let split = run(limit, mode, &pieces(&input.data, &input.cuts));
    assert_eq!(whole, split);
    // The messages are exactly the stream's prefix, re-encoded.
    let mut at = 0;
    for m in &whole.0 {
        let enc = m.encode(false);
        let got = &input.data[at..at + enc.len()];
        assert_eq!(&enc[..16], &got[..16]);
        assert_eq!(&enc[20..], &got[20..]);
        at += enc.len();
    }
});

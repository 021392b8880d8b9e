//! Stream drivers shared by the property tests of this module and the cargo-fuzz targets in
//! `agent/fuzz` (which compile `src/adb` with `--cfg fuzzing`). Each feeds a decoder one byte
//! stream in the given pieces and collects what it yields, asserting on the way that an error
//! sticks (the same error again) and that the decoder never buffers more than one partial
//! unit; callers compare the whole-stream run with a split run.

use super::message::{ChecksumMode, HEADER_LEN, Message, ParseError, Parser};
use super::shell::{self, MAX_SHELL_PACKET, ShellError};
use super::sync::{
    Expect, MAX_PATH, Request, RequestDecoder, Response, ResponseDecoder, SYNC_DATA_MAX, SyncError,
};

/// `data` cut at `points` (each in `0..=data.len()`, any order), empty pieces included.
pub fn pieces(data: &[u8], points: impl IntoIterator<Item = usize>) -> Vec<&[u8]> {
    let mut points: Vec<usize> = points.into_iter().collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// Feeds `pieces` to `d`, pulling with `next` after each, until the end or the first error.
fn drive<D, T, E: Clone + PartialEq + std::fmt::Debug>(
    d: &mut D,
    pieces: &[&[u8]],
    feed: impl Fn(&mut D, &[u8]),
    next: impl Fn(&mut D, usize) -> Result<Option<T>, E>,
    bounded: impl Fn(&D) -> bool,
) -> (Vec<T>, Option<E>) {
    let mut out = Vec::new();
    for piece in pieces {
        feed(d, piece);
        loop {
            match next(d, out.len()) {
                Ok(Some(x)) => out.push(x),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        next(d, out.len()).err(),
                        Some(e.clone()),
                        "the error sticks"
                    );
                    return (out, Some(e));
                }
            }
        }
        assert!(bounded(d), "the decoder buffers more than one partial unit");
    }
    (out, None)
}

/// The message parser; also asserts no payload exceeds `limit`.
pub fn messages(
    limit: u32,
    mode: ChecksumMode,
    pieces: &[&[u8]],
) -> (Vec<Message>, Option<ParseError>) {
    let mut p = Parser::new(limit);
    p.set_checksum_mode(mode);
    let (out, err) = drive(
        &mut p,
        pieces,
        Parser::feed,
        |p, _| p.next_message(),
        |p| p.buffered() < HEADER_LEN + limit as usize,
    );
    assert!(out.iter().all(|m| m.payload.len() <= limit as usize));
    (out, err)
}

/// The messages are exactly the stream's prefix, re-encoded (the checksum field aside: it
/// may be zero on the wire).
pub fn assert_messages_reencode(messages: &[Message], data: &[u8]) {
    let mut at = 0;
    for m in messages {
        let enc = m.encode(false);
        assert_eq!(&enc[..16], &data[at..at + 16]);
        assert_eq!(&enc[20..], &data[at + 20..at + enc.len()]);
        at += enc.len();
    }
}

/// The shell v2 packet decoder.
pub fn shell_packets(pieces: &[&[u8]]) -> (Vec<shell::Packet>, Option<ShellError>) {
    drive(
        &mut shell::Decoder::default(),
        pieces,
        shell::Decoder::feed,
        |d, _| d.next_packet(),
        |d| d.buffered() < 5 + MAX_SHELL_PACKET as usize,
    )
}

/// The packets are exactly the stream's prefix, re-encoded.
pub fn assert_packets_reencode(packets: &[shell::Packet], data: &[u8]) {
    let enc: Vec<u8> = packets.iter().flat_map(|p| p.encode().to_vec()).collect();
    assert_eq!(&enc[..], &data[..enc.len()]);
}

/// The device-side sync request decoder.
pub fn sync_requests(pieces: &[&[u8]]) -> (Vec<Request>, Option<SyncError>) {
    drive(
        &mut RequestDecoder::default(),
        pieces,
        RequestDecoder::feed,
        |d, _| d.next_request(),
        |d| d.buffered() < 8 + SYNC_DATA_MAX.max(MAX_PATH as usize),
    )
}

/// The host-side sync response decoder, expecting `expects` in turn (cycled).
pub fn sync_responses(expects: &[Expect], pieces: &[&[u8]]) -> (Vec<Response>, Option<SyncError>) {
    drive(
        &mut ResponseDecoder::default(),
        pieces,
        ResponseDecoder::feed,
        |d, n| d.next_response(expects[n % expects.len()]),
        |d| d.buffered() < 20 + SYNC_DATA_MAX.max(MAX_PATH as usize),
    )
}

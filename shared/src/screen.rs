//! Live-view frames larger than one NATS message.
//!
//! A real phone's `screencap -p` of a 1080x2400 screen is 1-3 MB, and nats-server refuses
//! messages over its `max_payload` (1 MB by default). The agent sends such a frame in parts:
//! each part is a [`ScreenFrame`] with the same `phone_id`, `seq` and `at_unix_ms` whose `png`
//! holds one slice of the PNG, and whose message carries the header [`PART_HEADER`] `i/n`
//! (1-based). A frame that fits goes whole, without the header, so an agent and a coordinator
//! of different versions still agree on every frame that fits.
//!
//! Parts of one frame are published in order on one subject by one connection, and NATS keeps
//! that order, so [`Reassembler`] expects them in order: a part missing (a slow consumer's
//! drop) loses that frame, never mixes two frames.

use crate::ScreenFrame;

/// The NATS header naming a part: `i/n`, 1 ≤ i ≤ n ≤ [`MAX_PARTS`].
pub const PART_HEADER: &str = "Pf-Frame-Part";
/// The most parts a frame is sent in.
pub const MAX_PARTS: u16 = 64;

/// The header value of part `index` (1-based) of `count`.
pub fn part_header(index: u16, count: u16) -> String {
    format!("{index}/{count}")
}

/// Reads a [`PART_HEADER`] value; `None` when it is not `i/n` with 1 ≤ i ≤ n ≤ [`MAX_PARTS`].
pub fn parse_part_header(value: &str) -> Option<(u16, u16)> {
    let (i, n) = value.trim().split_once('/')?;
    let (i, n): (u16, u16) = (i.parse().ok()?, n.parse().ok()?);
    ((1..=n).contains(&i) && n <= MAX_PARTS).then_some((i, n))
}

/// `png` cut into slices of at most `part_size` bytes, with each slice's 1-based index and the
/// count; `None` when that takes more than [`MAX_PARTS`] parts (or `part_size` is 0).
pub fn split(png: &[u8], part_size: usize) -> Option<Vec<(u16, u16, &[u8])>> {
    if part_size == 0 {
        return None;
    }
    let count = u16::try_from(png.len().div_ceil(part_size).max(1)).ok()?;
    if count > MAX_PARTS {
        return None;
    }
    if png.is_empty() {
        return Some(vec![(1, 1, png)]);
    }
    Some(
        png.chunks(part_size)
            .zip(1u16..)
            .map(|(slice, i)| (i, count, slice))
            .collect(),
    )
}

/// Puts one phone's frames back together from their parts.
#[derive(Debug)]
pub struct Reassembler {
    max_bytes: usize,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    frame: ScreenFrame,
    next: u16,
    count: u16,
}

impl Reassembler {
    /// Keeps at most `max_bytes` of a frame; a larger one is dropped.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            partial: None,
        }
    }

    /// Takes one message: `part` is its [`PART_HEADER`], parsed (`None` for a whole frame).
    /// Returns the frame it completes, if any. A part that does not follow the one before
    /// (another frame's, a gap, a different phone) drops the frame in progress.
    pub fn feed(&mut self, part: Option<(u16, u16)>, piece: ScreenFrame) -> Option<ScreenFrame> {
        let Some((index, count)) = part else {
            self.partial = None;
            return (piece.png.len() <= self.max_bytes).then_some(piece);
        };
        let mut p = if index == 1 {
            Partial {
                frame: piece,
                next: 1,
                count,
            }
        } else {
            // Anything but the next part of the frame in progress drops that frame.
            let mut p = self.partial.take()?;
            let follows = p.next == index
                && p.count == count
                && p.frame.seq == piece.seq
                && p.frame.phone_id == piece.phone_id;
            if !follows {
                return None;
            }
            p.frame.png.extend_from_slice(&piece.png);
            p
        };
        p.next += 1;
        if p.frame.png.len() > self.max_bytes {
            return None;
        }
        if p.next > p.count {
            return Some(p.frame);
        }
        self.partial = Some(p);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(seq: u64, png: &[u8]) -> ScreenFrame {
        ScreenFrame {
            phone_id: "P1".into(),
            seq,
            at_unix_ms: 7,
            png: png.to_vec(),
        }
    }

    fn send(r: &mut Reassembler, seq: u64, png: &[u8], size: usize) -> Vec<ScreenFrame> {
        split(png, size)
            .unwrap()
            .into_iter()
            .filter_map(|(i, n, s)| r.feed(Some((i, n)), piece(seq, s)))
            .collect()
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_part_header(&part_header(3, 9)), Some((3, 9)));
        for bad in ["", "1", "0/3", "4/3", "1/65", "a/b", "1/-2", "2/3/4"] {
            assert_eq!(parse_part_header(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_split_frame_comes_back_whole() {
        let png: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for size in [1_000, 3_333, 9_999, 10_000, 20_000] {
            let parts = split(&png, size).unwrap();
            assert_eq!(parts.len(), png.len().div_ceil(size));
            assert!(parts.iter().all(|(_, _, s)| s.len() <= size));
            let mut r = Reassembler::new(1 << 20);
            let got = send(&mut r, 5, &png, size);
            assert_eq!(got.len(), 1, "part size {size}");
            assert_eq!(got[0].png, png);
            assert_eq!((got[0].seq, got[0].at_unix_ms), (5, 7));
        }
        assert!(split(&png, 100).is_none(), "more than MAX_PARTS parts");
        assert!(split(&png, 0).is_none());
        assert_eq!(split(&[], 10).unwrap().len(), 1);
    }

    #[test]
    fn a_lost_part_loses_that_frame_only() {
        let (a, b) = (vec![1u8; 2_500], vec![2u8; 2_500]);
        let mut r = Reassembler::new(1 << 20);
        let a_parts = split(&a, 1_000).unwrap();
        // Part 2 of frame 1 is lost: frame 1 never completes, frame 2 does.
        assert!(r.feed(Some((1, 3)), piece(1, a_parts[0].2)).is_none());
        assert!(r.feed(Some((3, 3)), piece(1, a_parts[2].2)).is_none());
        let got = send(&mut r, 2, &b, 1_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].png, b);
        // A part of another frame in the middle drops the frame in progress.
        let b_parts = split(&b, 1_000).unwrap();
        assert!(r.feed(Some((1, 3)), piece(3, a_parts[0].2)).is_none());
        assert!(r.feed(Some((2, 3)), piece(4, b_parts[1].2)).is_none());
        assert!(r.feed(Some((3, 3)), piece(3, a_parts[2].2)).is_none());
        // A whole frame passes straight through and abandons a partial one.
        assert!(r.feed(Some((1, 3)), piece(5, a_parts[0].2)).is_none());
        assert_eq!(r.feed(None, piece(6, &b)).unwrap().png, b);
        assert!(r.feed(Some((2, 3)), piece(5, a_parts[1].2)).is_none());
    }

    #[test]
    fn frames_over_the_limit_are_dropped() {
        let big = vec![9u8; 5_000];
        let mut r = Reassembler::new(4_000);
        assert!(send(&mut r, 1, &big, 1_000).is_empty());
        assert!(r.feed(None, piece(2, &big)).is_none());
        assert_eq!(send(&mut r, 3, &big[..4_000], 1_000).len(), 1);
    }
}

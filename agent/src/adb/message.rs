//! The 24-byte ADB message header, its checks, and an incremental parser that accepts the byte
//! stream split anywhere.

use bytes::{Buf, Bytes, BytesMut};

/// Message commands (little-endian ASCII of the four letters).
pub mod cmd {
    pub const SYNC: u32 = 0x434e_5953;
    pub const CNXN: u32 = 0x4e58_4e43;
    pub const AUTH: u32 = 0x4854_5541;
    pub const OPEN: u32 = 0x4e45_504f;
    pub const OKAY: u32 = 0x5941_4b4f;
    pub const CLSE: u32 = 0x4553_4c43;
    pub const WRTE: u32 = 0x4554_5257;
    pub const STLS: u32 = 0x534c_5453;

    /// Four-letter name of a command, or `????` for an unknown one.
    pub fn name(command: u32) -> &'static str {
        match command {
            SYNC => "SYNC",
            CNXN => "CNXN",
            AUTH => "AUTH",
            OPEN => "OPEN",
            OKAY => "OKAY",
            CLSE => "CLSE",
            WRTE => "WRTE",
            STLS => "STLS",
            _ => "????",
        }
    }
}

/// AUTH message types (arg0 of an AUTH message).
pub mod auth_type {
    pub const TOKEN: u32 = 1;
    pub const SIGNATURE: u32 = 2;
    pub const RSAPUBLICKEY: u32 = 3;
}

/// The oldest protocol version; messages carry a byte-sum checksum.
pub const VERSION_MIN: u32 = 0x0100_0000;
/// From this version on the checksum field is zero and not checked.
pub const VERSION_SKIP_CHECKSUM: u32 = 0x0100_0001;
/// Largest payload the oldest devices accept.
pub const MAX_PAYLOAD_V1: u32 = 4 * 1024;
/// Largest payload we advertise and accept (the value modern adb uses).
pub const MAX_PAYLOAD: u32 = 1024 * 1024;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;

/// One ADB message: header fields plus payload. The checksum and magic are derived when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub command: u32,
    pub arg0: u32,
    pub arg1: u32,
    pub payload: Bytes,
}

impl Message {
    pub fn new(command: u32, arg0: u32, arg1: u32, payload: impl Into<Bytes>) -> Self {
        Self {
            command,
            arg0,
            arg1,
            payload: payload.into(),
        }
    }

    /// The 24-byte header. `with_checksum` fills `data_crc32` with the byte sum (protocol
    /// versions below [`VERSION_SKIP_CHECKSUM`]); otherwise it is zero.
    pub fn header(&self, with_checksum: bool) -> [u8; HEADER_LEN] {
        let crc = if with_checksum {
            checksum(&self.payload)
        } else {
            0
        };
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&self.command.to_le_bytes());
        h[4..8].copy_from_slice(&self.arg0.to_le_bytes());
        h[8..12].copy_from_slice(&self.arg1.to_le_bytes());
        h[12..16].copy_from_slice(&(self.payload.len() as u32).to_le_bytes());
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h[20..24].copy_from_slice(&(self.command ^ 0xffff_ffff).to_le_bytes());
        h
    }

    /// Header followed by payload in one buffer.
    pub fn encode(&self, with_checksum: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(&self.header(with_checksum));
        v.extend_from_slice(&self.payload);
        v
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}({:#x}, {:#x}, {} bytes)",
            cmd::name(self.command),
            self.arg0,
            self.arg1,
            self.payload.len()
        )
    }
}

/// The legacy checksum: the sum of all payload bytes.
pub fn checksum(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// Header fields as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command: u32,
    pub arg0: u32,
    pub arg1: u32,
    pub data_length: u32,
    pub data_crc32: u32,
    pub magic: u32,
}

impl Header {
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            command: w(0),
            arg0: w(4),
            arg1: w(8),
            data_length: w(12),
            data_crc32: w(16),
            magic: w(20),
        }
    }

    /// Checks magic and payload size.
    pub fn validate(&self, max_payload: u32) -> Result<(), ParseError> {
        if self.magic != self.command ^ 0xffff_ffff {
            return Err(ParseError::BadMagic {
                command: self.command,
                magic: self.magic,
            });
        }
        if self.data_length > max_payload {
            return Err(ParseError::PayloadTooLarge {
                len: self.data_length,
                max: max_payload,
            });
        }
        Ok(())
    }
}

/// Why the byte stream cannot be parsed. Every error is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("bad header magic {magic:#010x} for command {command:#010x}")]
    BadMagic { command: u32, magic: u32 },
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: u32, max: u32 },
    #[error("payload checksum {actual:#x} does not match header {expected:#x}")]
    BadChecksum { expected: u32, actual: u32 },
}

/// Incremental parser: feed bytes as they arrive, take whole messages out.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    max_payload: u32,
    checksum: ChecksumMode,
    failed: Option<ParseError>,
}

/// How the parser treats the `data_crc32` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Protocol version not known yet: accept a correct byte sum or zero (peers that already
    /// negotiated a newer version send zero).
    Lenient,
    /// Negotiated version below [`VERSION_SKIP_CHECKSUM`]: the sum must match.
    Strict,
    /// Newer versions: the field is ignored.
    Off,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(MAX_PAYLOAD)
    }
}

impl Parser {
    /// A parser accepting payloads up to `max_payload` bytes, lenient about checksums until
    /// the protocol version is known.
    pub fn new(max_payload: u32) -> Self {
        Self {
            buf: BytesMut::new(),
            max_payload,
            checksum: ChecksumMode::Lenient,
            failed: None,
        }
    }

    /// Sets checksum handling for the negotiated protocol version.
    pub fn set_version(&mut self, version: u32) {
        self.checksum = if version < VERSION_SKIP_CHECKSUM {
            ChecksumMode::Strict
        } else {
            ChecksumMode::Off
        };
    }

    pub fn set_checksum_mode(&mut self, mode: ChecksumMode) {
        self.checksum = mode;
    }

    pub fn set_max_payload(&mut self, max: u32) {
        self.max_payload = max;
    }

    /// Appends received bytes (dropped once the stream has failed to parse).
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After an error the parser
    /// keeps returning it.
    pub fn next_message(&mut self) -> Result<Option<Message>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&self.buf[..HEADER_LEN]);
        let h = Header::decode(&hb);
        if let Err(e) = h.validate(self.max_payload) {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            return Err(e);
        }
        let total = HEADER_LEN + h.data_length as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(h.data_length as usize).freeze();
        if self.checksum != ChecksumMode::Off {
            let actual = checksum(&payload);
            let lenient_zero = self.checksum == ChecksumMode::Lenient && h.data_crc32 == 0;
            if actual != h.data_crc32 && !lenient_zero {
                let e = ParseError::BadChecksum {
                    expected: h.data_crc32,
                    actual,
                };
                self.failed = Some(e.clone());
                self.buf = BytesMut::new();
                return Err(e);
            }
        }
        Ok(Some(Message {
            command: h.command,
            arg0: h.arg0,
            arg1: h.arg1,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::checks;
    use proptest::prelude::*;

    #[test]
    fn header_layout_matches_adb() {
        let m = Message::new(cmd::CNXN, VERSION_MIN, MAX_PAYLOAD, &b"host::\0"[..]);
        let h = m.header(true);
        assert_eq!(&h[0..4], b"CNXN");
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_le_bytes(h[16..20].try_into().unwrap()),
            checksum(b"host::\0")
        );
        assert_eq!(
            u32::from_le_bytes(h[20..24].try_into().unwrap()),
            !cmd::CNXN
        );
        assert_eq!(m.header(false)[16..20], [0, 0, 0, 0]);
        for (c, s) in [
            (cmd::SYNC, b"SYNC"),
            (cmd::AUTH, b"AUTH"),
            (cmd::OPEN, b"OPEN"),
            (cmd::OKAY, b"OKAY"),
            (cmd::CLSE, b"CLSE"),
            (cmd::WRTE, b"WRTE"),
            (cmd::STLS, b"STLS"),
        ] {
            assert_eq!(&c.to_le_bytes(), s);
        }
    }

    #[test]
    fn rejects_bad_magic_checksum_and_size() {
        let m = Message::new(cmd::WRTE, 1, 2, &b"abc"[..]);
        let mut bytes = m.encode(true);
        bytes[20] ^= 1;
        let mut p = Parser::default();
        p.feed(&bytes);
        assert!(matches!(p.next_message(), Err(ParseError::BadMagic { .. })));
        // sticky
        assert!(p.next_message().is_err());

        let mut bytes = m.encode(true);
        bytes[24] ^= 0x40;
        let mut p = Parser::default();
        p.feed(&bytes);
        assert!(matches!(
            p.next_message(),
            Err(ParseError::BadChecksum { .. })
        ));

        let mut p = Parser::default();
        p.set_version(VERSION_SKIP_CHECKSUM);
        p.feed(&bytes);
        assert_eq!(
            p.next_message().unwrap().unwrap().payload,
            Bytes::from_static(b"!bc")
        );

        // Before negotiation a zero checksum is accepted; after negotiating v1 it is not.
        let zero = m.encode(false);
        let mut p = Parser::default();
        p.feed(&zero);
        assert!(p.next_message().unwrap().is_some());
        let mut p = Parser::default();
        p.set_version(VERSION_MIN);
        p.feed(&zero);
        assert!(matches!(
            p.next_message(),
            Err(ParseError::BadChecksum { .. })
        ));

        let big = Message::new(cmd::WRTE, 1, 2, vec![0u8; 5000]);
        let mut p = Parser::new(MAX_PAYLOAD_V1);
        p.feed(&big.header(true));
        assert_eq!(
            p.next_message(),
            Err(ParseError::PayloadTooLarge {
                len: 5000,
                max: MAX_PAYLOAD_V1
            })
        );
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            prop::sample::select(vec![
                cmd::SYNC,
                cmd::CNXN,
                cmd::AUTH,
                cmd::OPEN,
                cmd::OKAY,
                cmd::CLSE,
                cmd::WRTE,
            ]),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(c, a0, a1, p)| Message::new(c, a0, a1, p))
    }

    proptest! {
        #[test]
        fn any_split_gives_identical_messages(
            msgs in prop::collection::vec(arb_message(), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let stream: Vec<u8> = msgs.iter().flat_map(|m| m.encode(true)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut p = Parser::default();
            let mut out = Vec::new();
            for w in points.windows(2) {
                p.feed(&stream[w[0]..w[1]]);
                while let Some(m) = p.next_message().unwrap() {
                    out.push(m);
                }
            }
            prop_assert_eq!(out, msgs);
            prop_assert_eq!(p.buffered(), 0);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..2000), v in any::<bool>()) {
            let mut p = Parser::new(MAX_PAYLOAD_V1);
            p.set_version(if v { VERSION_MIN } else { VERSION_SKIP_CHECKSUM });
            p.feed(&data);
            for _ in 0..100 {
                match p.next_message() {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }

        /// Arbitrary bytes (well-framed messages mixed with garbage), fed whole and in
        /// arbitrary pieces: the same messages and the same first error either way; never more
        /// than one partial message (header + payload limit) held; the messages re-encode to
        /// exactly the bytes consumed. The `message_parser` fuzz target checks the same.
        #[test]
        fn whole_and_split_agree_and_buffer_stays_bounded(
            parts in prop::collection::vec(
                prop_oneof![
                    arb_message().prop_map(|m| m.encode(true)),
                    prop::collection::vec(any::<u8>(), 0..40),
                ],
                0..6,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            small in any::<bool>(),
            mode in 0u8..3,
        ) {
            let data: Vec<u8> = parts.concat();
            let limit = if small { 64 } else { MAX_PAYLOAD_V1 };
            let mode = [ChecksumMode::Lenient, ChecksumMode::Strict, ChecksumMode::Off][mode as usize];
            let pieces = checks::pieces(&data, cuts.iter().map(|i| i.index(data.len() + 1)));
            let whole = checks::messages(limit, mode, &[&data]);
            prop_assert_eq!(&whole, &checks::messages(limit, mode, &pieces));
            checks::assert_messages_reencode(&whole.0, &data);
        }

        #[test]
        fn random_header_is_rejected(data in prop::collection::vec(any::<u8>(), 24..64)) {
            let mut p = Parser::default();
            p.feed(&data);
            let h = Header::decode(data[..24].try_into().unwrap());
            // Random bytes essentially never carry a valid magic; when they do, the message parses.
            if h.magic != h.command ^ 0xffff_ffff {
                prop_assert!(p.next_message().is_err());
            }
        }
    }
}

//! Shell protocol v2: packets of `[id: u8][length: u32 LE][data]` multiplexing stdin, stdout,
//! stderr, the exit code, close-stdin and window-size changes over one stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Packet ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketId {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Exit = 3,
    CloseStdin = 4,
    WindowSizeChange = 5,
}

impl PacketId {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Stdin,
            1 => Self::Stdout,
            2 => Self::Stderr,
            3 => Self::Exit,
            4 => Self::CloseStdin,
            5 => Self::WindowSizeChange,
            _ => return None,
        })
    }
}

/// One shell v2 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: PacketId,
    pub data: Bytes,
}

impl Packet {
    pub fn new(id: PacketId, data: impl Into<Bytes>) -> Self {
        Self {
            id,
            data: data.into(),
        }
    }

    pub fn exit(code: u8) -> Self {
        Self::new(PacketId::Exit, vec![code])
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(5 + self.data.len());
        b.put_u8(self.id as u8);
        b.put_u32_le(self.data.len() as u32);
        b.put_slice(&self.data);
        b.freeze()
    }
}

/// Why a shell v2 stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unknown shell packet id {0}")]
    UnknownId(u8),
    #[error("shell packet of {0} bytes exceeds the limit")]
    TooLarge(u32),
}

/// Largest shell packet accepted (adbd uses at most the max payload, 1 MiB).
pub const MAX_SHELL_PACKET: u32 = 16 * 1024 * 1024;

/// Incremental decoder for shell v2 packets. After an error it keeps returning that error
/// (and stops buffering).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    failed: Option<ShellError>,
}

impl Decoder {
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    pub fn next_packet(&mut self) -> Result<Option<Packet>, ShellError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let Some(id) = PacketId::from_u8(self.buf[0]) else {
            let e = ShellError::UnknownId(self.buf[0]);
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            return Err(e);
        };
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len > MAX_SHELL_PACKET {
            let e = ShellError::TooLarge(len);
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            return Err(e);
        }
        if self.buf.len() < 5 + len as usize {
            return Ok(None);
        }
        self.buf.advance(5);
        let data = self.buf.split_to(len as usize).freeze();
        Ok(Some(Packet { id, data }))
    }

    /// Bytes held that do not yet form a whole packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Parsed shell service request: `shell[,arg...]:command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellService {
    pub v2: bool,
    pub raw: bool,
    pub command: String,
}

impl ShellService {
    /// Parses `shell:cmd`, `shell,v2,raw:cmd`, `shell,v2,TERM=xterm,pty:` and so on.
    pub fn parse(service: &str) -> Option<Self> {
        let rest = service.strip_prefix("shell")?;
        let (args, command) = rest.split_once(':')?;
        if !(args.is_empty() || args.starts_with(',')) {
            return None;
        }
        let args: Vec<&str> = args.split(',').filter(|a| !a.is_empty()).collect();
        Some(Self {
            v2: args.contains(&"v2"),
            raw: args.contains(&"raw") || (!args.contains(&"pty") && !command.is_empty()),
            command: command.to_string(),
        })
    }

    pub fn service_string(command: &str, v2: bool) -> String {
        if v2 {
            format!("shell,v2,raw:{command}")
        } else {
            format!("shell:{command}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::checks;
    use proptest::prelude::*;

    #[test]
    fn encodes_wire_format() {
        assert_eq!(&Packet::exit(3).encode()[..], &[3, 1, 0, 0, 0, 3]);
        assert_eq!(
            &Packet::new(PacketId::Stdout, &b"hi"[..]).encode()[..],
            &[1, 2, 0, 0, 0, b'h', b'i']
        );
    }

    #[test]
    fn parses_services() {
        let s = ShellService::parse("shell,v2,raw:echo hi").unwrap();
        assert!(s.v2 && s.raw);
        assert_eq!(s.command, "echo hi");
        let s = ShellService::parse("shell:ls -l").unwrap();
        assert!(!s.v2);
        assert_eq!(s.command, "ls -l");
        let s = ShellService::parse("shell,v2,TERM=xterm-256color,pty:").unwrap();
        assert!(s.v2 && !s.raw && s.command.is_empty());
        assert!(ShellService::parse("shellx:foo").is_none());
        assert!(ShellService::parse("sync:").is_none());
    }

    #[test]
    fn rejects_unknown_id() {
        let mut d = Decoder::default();
        d.feed(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_packet(), Err(ShellError::UnknownId(9)));
    }

    proptest! {
        #[test]
        fn splits_are_transparent(
            pkts in prop::collection::vec((0u8..6, prop::collection::vec(any::<u8>(), 0..100)), 0..10),
            cut in any::<prop::sample::Index>(),
        ) {
            let pkts: Vec<Packet> = pkts
                .into_iter()
                .map(|(i, d)| Packet::new(PacketId::from_u8(i).unwrap(), d))
                .collect();
            let stream: Vec<u8> = pkts.iter().flat_map(|p| p.encode().to_vec()).collect();
            let c = cut.index(stream.len() + 1);
            let mut d = Decoder::default();
            let mut out = Vec::new();
            d.feed(&stream[..c]);
            while let Some(p) = d.next_packet().unwrap() { out.push(p); }
            d.feed(&stream[c..]);
            while let Some(p) = d.next_packet().unwrap() { out.push(p); }
            prop_assert_eq!(out, pkts);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..500)) {
            let mut d = Decoder::default();
            d.feed(&data);
            while let Ok(Some(_)) = d.next_packet() {}
        }

        /// Arbitrary bytes, whole and in pieces: the same packets and the same (sticky) error,
        /// and the packets re-encode to exactly the bytes consumed. As the `shell_packets`
        /// fuzz target.
        #[test]
        fn whole_and_split_agree(
            parts in prop::collection::vec(
                prop_oneof![
                    (0u8..6, prop::collection::vec(any::<u8>(), 0..40))
                        .prop_map(|(i, d)| Packet::new(PacketId::from_u8(i).unwrap(), d).encode().to_vec()),
                    prop::collection::vec(any::<u8>(), 0..12),
                ],
                0..6,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let data: Vec<u8> = parts.concat();
            let pieces = checks::pieces(&data, cuts.iter().map(|i| i.index(data.len() + 1)));
            let whole = checks::shell_packets(&[&data]);
            prop_assert_eq!(&whole, &checks::shell_packets(&pieces));
            checks::assert_packets_reencode(&whole.0, &data);
        }
    }
}

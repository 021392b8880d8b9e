//! The sync protocol spoken inside a `sync:` stream: 8-byte `[id][u32 LE]` requests and
//! responses for STAT/STA2/LST2, LIST/DENT, SEND/DATA/DONE, RECV, OKAY, FAIL and QUIT.
//!
//! Both directions are here: [`Request`] with an incremental [`RequestDecoder`] (device side) and
//! [`Response`] with a [`ResponseDecoder`] that is told what reply to expect (host side), because
//! some ids (`DONE`) have different shapes in different replies.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const ID_STAT: [u8; 4] = *b"STAT";
pub const ID_STA2: [u8; 4] = *b"STA2";
pub const ID_LST2: [u8; 4] = *b"LST2";
pub const ID_LIST: [u8; 4] = *b"LIST";
pub const ID_DENT: [u8; 4] = *b"DENT";
pub const ID_SEND: [u8; 4] = *b"SEND";
pub const ID_RECV: [u8; 4] = *b"RECV";
pub const ID_DATA: [u8; 4] = *b"DATA";
pub const ID_DONE: [u8; 4] = *b"DONE";
pub const ID_OKAY: [u8; 4] = *b"OKAY";
pub const ID_FAIL: [u8; 4] = *b"FAIL";
pub const ID_QUIT: [u8; 4] = *b"QUIT";

/// Largest DATA chunk (both adb and adbd use 64 KiB).
pub const SYNC_DATA_MAX: usize = 64 * 1024;
/// Longest path accepted in a request.
pub const MAX_PATH: u32 = 4096;

/// Errors while decoding a sync stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("unexpected sync id {0:?}")]
    UnexpectedId(String),
    #[error("sync field of {0} bytes is too long")]
    TooLong(u32),
    #[error("malformed send request {0:?}")]
    BadSend(String),
}

fn id_str(id: &[u8]) -> String {
    String::from_utf8_lossy(id).into_owned()
}

/// A request from host to device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Stat(String),
    Stat2(String),
    Lstat2(String),
    List(String),
    /// `SEND path,mode`.
    Send {
        path: String,
        mode: u32,
    },
    Data(Bytes),
    /// End of a SEND with the file's modification time.
    Done {
        mtime: u32,
    },
    Recv(String),
    Quit,
}

fn put_req(b: &mut BytesMut, id: [u8; 4], data: &[u8]) {
    b.put_slice(&id);
    b.put_u32_le(data.len() as u32);
    b.put_slice(data);
}

impl Request {
    pub fn encode_into(&self, b: &mut BytesMut) {
        match self {
            Request::Stat(p) => put_req(b, ID_STAT, p.as_bytes()),
            Request::Stat2(p) => put_req(b, ID_STA2, p.as_bytes()),
            Request::Lstat2(p) => put_req(b, ID_LST2, p.as_bytes()),
            Request::List(p) => put_req(b, ID_LIST, p.as_bytes()),
            Request::Recv(p) => put_req(b, ID_RECV, p.as_bytes()),
            Request::Send { path, mode } => {
                put_req(b, ID_SEND, format!("{path},{mode}").as_bytes())
            }
            Request::Data(d) => put_req(b, ID_DATA, d),
            Request::Done { mtime } => {
                b.put_slice(&ID_DONE);
                b.put_u32_le(*mtime);
            }
            Request::Quit => put_req(b, ID_QUIT, &[]),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode_into(&mut b);
        b.freeze()
    }
}

/// Decodes requests on the device side. After an error it keeps returning that error.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    buf: BytesMut,
    failed: Option<SyncError>,
}

impl RequestDecoder {
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held that do not yet form a whole request.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_request(&mut self) -> Result<Option<Request>, SyncError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
        }
        r
    }

    fn decode(&mut self) -> Result<Option<Request>, SyncError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let id: [u8; 4] = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let len = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        if id == ID_DONE {
            self.buf.advance(8);
            return Ok(Some(Request::Done { mtime: len }));
        }
        let limit = if id == ID_DATA {
            SYNC_DATA_MAX as u32
        } else {
            MAX_PATH
        };
        if len > limit {
            return Err(SyncError::TooLong(len));
        }
        let known = [
            ID_STAT, ID_STA2, ID_LST2, ID_LIST, ID_SEND, ID_RECV, ID_DATA, ID_QUIT,
        ];
        if !known.contains(&id) {
            return Err(SyncError::UnexpectedId(id_str(&id)));
        }
        if self.buf.len() < 8 + len as usize {
            return Ok(None);
        }
        self.buf.advance(8);
        let data = self.buf.split_to(len as usize).freeze();
        let path = || String::from_utf8_lossy(&data).into_owned();
        Ok(Some(match id {
            ID_STAT => Request::Stat(path()),
            ID_STA2 => Request::Stat2(path()),
            ID_LST2 => Request::Lstat2(path()),
            ID_LIST => Request::List(path()),
            ID_RECV => Request::Recv(path()),
            ID_QUIT => Request::Quit,
            ID_DATA => Request::Data(data),
            _ => {
                // SEND "path,mode": the mode follows the last comma.
                let s = path();
                let (p, m) = s
                    .rsplit_once(',')
                    .ok_or_else(|| SyncError::BadSend(s.clone()))?;
                let mode = m.parse().map_err(|_| SyncError::BadSend(s.clone()))?;
                Request::Send {
                    path: p.to_string(),
                    mode,
                }
            }
        }))
    }
}

/// `stat_v2` result (the fields adb uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat2 {
    /// errno on the device, 0 on success.
    pub error: u32,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

/// A directory entry in a LIST reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dent {
    pub mode: u32,
    pub size: u32,
    pub mtime: u32,
    pub name: String,
}

/// A reply from device to host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Legacy STAT: all zero when the file does not exist.
    Stat {
        mode: u32,
        size: u32,
        mtime: u32,
    },
    Stat2(Stat2),
    Dent(Dent),
    /// End of a LIST.
    ListDone,
    Data(Bytes),
    /// End of a RECV.
    Done,
    Okay,
    Fail(String),
}

impl Response {
    /// Encodes the reply; `lstat` selects the LST2 id for a [`Response::Stat2`].
    pub fn encode_into(&self, b: &mut BytesMut, lstat: bool) {
        match self {
            Response::Stat { mode, size, mtime } => {
                b.put_slice(&ID_STAT);
                b.put_u32_le(*mode);
                b.put_u32_le(*size);
                b.put_u32_le(*mtime);
            }
            Response::Stat2(s) => {
                b.put_slice(if lstat { &ID_LST2 } else { &ID_STA2 });
                b.put_u32_le(s.error);
                b.put_u64_le(s.dev);
                b.put_u64_le(s.ino);
                b.put_u32_le(s.mode);
                b.put_u32_le(s.nlink);
                b.put_u32_le(s.uid);
                b.put_u32_le(s.gid);
                b.put_u64_le(s.size);
                b.put_i64_le(s.atime);
                b.put_i64_le(s.mtime);
                b.put_i64_le(s.ctime);
            }
            Response::Dent(d) => {
                b.put_slice(&ID_DENT);
                b.put_u32_le(d.mode);
                b.put_u32_le(d.size);
                b.put_u32_le(d.mtime);
                b.put_u32_le(d.name.len() as u32);
                b.put_slice(d.name.as_bytes());
            }
            Response::ListDone => {
                b.put_slice(&ID_DONE);
                b.put_bytes(0, 16);
            }
            Response::Data(d) => put_req(b, ID_DATA, d),
            Response::Done => put_req(b, ID_DONE, &[]),
            Response::Okay => put_req(b, ID_OKAY, &[]),
            Response::Fail(m) => put_req(b, ID_FAIL, m.as_bytes()),
        }
    }
}

/// What reply the host is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Stat,
    Stat2,
    List,
    Recv,
    /// OKAY or FAIL after a SEND's DONE.
    Status,
}

/// Decodes replies on the host side. After an error it keeps returning that error.
#[derive(Debug, Default)]
pub struct ResponseDecoder {
    buf: BytesMut,
    failed: Option<SyncError>,
}

impl ResponseDecoder {
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_response(&mut self, expect: Expect) -> Result<Option<Response>, SyncError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode(expect);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
        }
        r
    }

    fn decode(&mut self, expect: Expect) -> Result<Option<Response>, SyncError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let id: [u8; 4] = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let w = |b: &BytesMut, i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let need = |b: &BytesMut, n: usize| b.len() >= n;
        if id == ID_FAIL {
            let len = w(&self.buf, 4);
            if len > MAX_PATH {
                return Err(SyncError::TooLong(len));
            }
            if !need(&self.buf, 8 + len as usize) {
                return Ok(None);
            }
            self.buf.advance(8);
            let msg = self.buf.split_to(len as usize);
            return Ok(Some(Response::Fail(
                String::from_utf8_lossy(&msg).into_owned(),
            )));
        }
        let unexpected = || Err(SyncError::UnexpectedId(id_str(&id)));
        match expect {
            Expect::Stat => {
                if id != ID_STAT {
                    return unexpected();
                }
                if !need(&self.buf, 16) {
                    return Ok(None);
                }
                let r = Response::Stat {
                    mode: w(&self.buf, 4),
                    size: w(&self.buf, 8),
                    mtime: w(&self.buf, 12),
                };
                self.buf.advance(16);
                Ok(Some(r))
            }
            Expect::Stat2 => {
                if id != ID_STA2 && id != ID_LST2 {
                    return unexpected();
                }
                if !need(&self.buf, 72) {
                    return Ok(None);
                }
                self.buf.advance(4);
                let b = &mut self.buf;
                let s = Stat2 {
                    error: b.get_u32_le(),
                    dev: b.get_u64_le(),
                    ino: b.get_u64_le(),
                    mode: b.get_u32_le(),
                    nlink: b.get_u32_le(),
                    uid: b.get_u32_le(),
                    gid: b.get_u32_le(),
                    size: b.get_u64_le(),
                    atime: b.get_i64_le(),
                    mtime: b.get_i64_le(),
                    ctime: b.get_i64_le(),
                };
                Ok(Some(Response::Stat2(s)))
            }
            Expect::List => {
                if id != ID_DENT && id != ID_DONE {
                    return unexpected();
                }
                if !need(&self.buf, 20) {
                    return Ok(None);
                }
                let namelen = w(&self.buf, 16);
                if namelen > MAX_PATH {
                    return Err(SyncError::TooLong(namelen));
                }
                if !need(&self.buf, 20 + namelen as usize) {
                    return Ok(None);
                }
                let d = Dent {
                    mode: w(&self.buf, 4),
                    size: w(&self.buf, 8),
                    mtime: w(&self.buf, 12),
                    name: String::from_utf8_lossy(&self.buf[20..20 + namelen as usize])
                        .into_owned(),
                };
                self.buf.advance(20 + namelen as usize);
                Ok(Some(if id == ID_DONE {
                    Response::ListDone
                } else {
                    Response::Dent(d)
                }))
            }
            Expect::Recv => {
                if id == ID_DONE {
                    self.buf.advance(8);
                    return Ok(Some(Response::Done));
                }
                if id != ID_DATA {
                    return unexpected();
                }
                let len = w(&self.buf, 4);
                if len as usize > SYNC_DATA_MAX {
                    return Err(SyncError::TooLong(len));
                }
                if !need(&self.buf, 8 + len as usize) {
                    return Ok(None);
                }
                self.buf.advance(8);
                Ok(Some(Response::Data(
                    self.buf.split_to(len as usize).freeze(),
                )))
            }
            Expect::Status => {
                if id != ID_OKAY {
                    return unexpected();
                }
                self.buf.advance(8);
                Ok(Some(Response::Okay))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::checks;
    use proptest::prelude::*;

    fn roundtrip_req(r: Request) -> Request {
        let mut d = RequestDecoder::default();
        d.feed(&r.encode());
        d.next_request().unwrap().unwrap()
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Stat("/sdcard/a".into()),
            Request::Stat2("/x".into()),
            Request::Lstat2("/x".into()),
            Request::List("/sdcard".into()),
            Request::Send {
                path: "/sdcard/a,b.txt".into(),
                mode: 0o100644,
            },
            Request::Data(Bytes::from_static(b"hello")),
            Request::Done {
                mtime: 1_700_000_000,
            },
            Request::Recv("/sdcard/a".into()),
            Request::Quit,
        ] {
            assert_eq!(roundtrip_req(r.clone()), r);
        }
        assert_eq!(
            &Request::Send {
                path: "/a".into(),
                mode: 33188
            }
            .encode()[..],
            b"SEND\x08\0\0\0/a,33188"
        );
        assert_eq!(&Request::Done { mtime: 5 }.encode()[..], b"DONE\x05\0\0\0");
    }

    #[test]
    fn responses_round_trip() {
        let cases = [
            (
                Expect::Stat,
                Response::Stat {
                    mode: 0o100644,
                    size: 10,
                    mtime: 7,
                },
            ),
            (
                Expect::Stat2,
                Response::Stat2(Stat2 {
                    mode: 0o40755,
                    size: 1 << 40,
                    mtime: -1,
                    ..Default::default()
                }),
            ),
            (
                Expect::List,
                Response::Dent(Dent {
                    mode: 1,
                    size: 2,
                    mtime: 3,
                    name: "f".into(),
                }),
            ),
            (Expect::List, Response::ListDone),
            (Expect::Recv, Response::Data(Bytes::from_static(b"xyz"))),
            (Expect::Recv, Response::Done),
            (Expect::Status, Response::Okay),
            (Expect::Status, Response::Fail("no space".into())),
        ];
        for (e, r) in cases {
            let mut b = BytesMut::new();
            r.encode_into(&mut b, false);
            let mut d = ResponseDecoder::default();
            // byte by byte
            let mut out = None;
            for byte in b.iter() {
                d.feed(&[*byte]);
                if let Some(x) = d.next_response(e).unwrap() {
                    out = Some(x);
                }
            }
            assert_eq!(out, Some(r));
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn lstat_reply_carries_its_own_id() {
        let r = Response::Stat2(Stat2::default());
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        r.encode_into(&mut a, false);
        r.encode_into(&mut b, true);
        assert_eq!(&a[..4], b"STA2");
        assert_eq!(&b[..4], b"LST2");
        assert_eq!(a.len(), 72);
    }

    #[test]
    fn rejects_oversized_and_unknown() {
        let mut d = RequestDecoder::default();
        d.feed(b"DATA\x01\x00\x02\x00");
        assert_eq!(d.next_request(), Err(SyncError::TooLong(0x20001)));
        let mut d = RequestDecoder::default();
        d.feed(b"ABCD\0\0\0\0");
        assert!(matches!(d.next_request(), Err(SyncError::UnexpectedId(_))));
        let mut d = RequestDecoder::default();
        d.feed(b"SEND\x02\0\0\0/aQUIT\0\0\0\0");
        assert!(matches!(d.next_request(), Err(SyncError::BadSend(_))));
        // The error sticks: the stream does not resync on the request after the bad one.
        assert!(matches!(d.next_request(), Err(SyncError::BadSend(_))));
        assert_eq!(d.buffered(), 0);
        let mut r = ResponseDecoder::default();
        r.feed(b"DENT\0\0\0\0");
        assert!(r.next_response(Expect::Recv).is_err());
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let path = "[a-z/._-]{0,40}";
        prop_oneof![
            path.prop_map(Request::Stat),
            path.prop_map(Request::Stat2),
            path.prop_map(Request::List),
            path.prop_map(Request::Recv),
            (path, 0u32..0o200000).prop_map(|(p, m)| Request::Send { path: p, mode: m }),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|d| Request::Data(d.into())),
            any::<u32>().prop_map(|t| Request::Done { mtime: t }),
            Just(Request::Quit),
        ]
    }

    proptest! {
        #[test]
        fn request_stream_survives_any_split(
            reqs in prop::collection::vec(arb_request(), 1..10),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let stream: Vec<u8> = reqs.iter().flat_map(|r| r.encode().to_vec()).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut d = RequestDecoder::default();
            let mut out = Vec::new();
            for w in points.windows(2) {
                d.feed(&stream[w[0]..w[1]]);
                while let Some(r) = d.next_request().unwrap() {
                    out.push(r);
                }
            }
            prop_assert_eq!(out, reqs);
        }

        /// Arbitrary bytes (well-formed requests and replies mixed with garbage), whole and in
        /// pieces, through both decoders (replies under a random sequence of expectations):
        /// the same results and the same sticky error either way. As the `sync_requests` and
        /// `sync_responses` fuzz targets.
        #[test]
        fn whole_and_split_agree(
            parts in prop::collection::vec(
                prop_oneof![
                    arb_request().prop_map(|r| r.encode().to_vec()),
                    prop::collection::vec(any::<u8>(), 0..24),
                    Just(b"OKAY\0\0\0\0".to_vec()),
                    Just(b"DONE\0\0\0\0".to_vec()),
                    Just(b"FAIL\x03\0\0\0bad".to_vec()),
                ],
                0..8,
            ),
            expects in prop::collection::vec(0usize..5, 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let all = [Expect::Stat, Expect::Stat2, Expect::List, Expect::Recv, Expect::Status];
            let expects: Vec<Expect> = expects.into_iter().map(|i| all[i]).collect();
            let data: Vec<u8> = parts.concat();
            let pieces = checks::pieces(&data, cuts.iter().map(|i| i.index(data.len() + 1)));
            prop_assert_eq!(checks::sync_requests(&[&data]), checks::sync_requests(&pieces));
            prop_assert_eq!(
                checks::sync_responses(&expects, &[&data]),
                checks::sync_responses(&expects, &pieces)
            );
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut d = RequestDecoder::default();
            d.feed(&data);
            while let Ok(Some(_)) = d.next_request() {}
            for e in [Expect::Stat, Expect::Stat2, Expect::List, Expect::Recv, Expect::Status] {
                let mut r = ResponseDecoder::default();
                r.feed(&data);
                while let Ok(Some(_)) = r.next_response(e) {}
            }
        }
    }
}

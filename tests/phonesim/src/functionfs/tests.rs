use super::*;

#[test]
fn descriptors_match_the_v2_layout() {
    let d = descriptors();
    // usb_functionfs_descs_head_v2 + fs/hs/ss counts, then 2 × (9 + 7 + 7) and
    // 9 + 2 × (7 + 6).
    assert_eq!(d.len(), 12 + 12 + 2 * 23 + 35);
    assert_eq!(&d[0..4], &3u32.to_le_bytes()); // FUNCTIONFS_DESCRIPTORS_MAGIC_V2
    assert_eq!(&d[4..8], &(d.len() as u32).to_le_bytes());
    assert_eq!(&d[8..12], &7u32.to_le_bytes()); // HAS_FS_DESC | HAS_HS_DESC | HAS_SS_DESC
    assert_eq!(&d[12..16], &3u32.to_le_bytes());
    assert_eq!(&d[16..20], &3u32.to_le_bytes());
    assert_eq!(&d[20..24], &5u32.to_le_bytes());
    let fs = &d[24..47];
    let hs = &d[47..70];
    for (block, mps) in [(fs, [64u8, 0]), (hs, [0u8, 2])] {
        assert_eq!(&block[..9], &[9, 4, 0, 0, 2, 0xff, 0x42, 0x01, 1]);
        assert_eq!(&block[9..16], &[7, 5, 0x01, 2, mps[0], mps[1], 0]);
        assert_eq!(&block[16..23], &[7, 5, 0x82, 2, mps[0], mps[1], 0]);
    }
    let ss = &d[70..];
    assert_eq!(&ss[..9], &[9, 4, 0, 0, 2, 0xff, 0x42, 0x01, 1]);
    assert_eq!(&ss[9..16], &[7, 5, 0x01, 2, 0, 4, 0]);
    assert_eq!(&ss[16..22], &[6, 0x30, 3, 0, 0, 0]);
    assert_eq!(&ss[22..29], &[7, 5, 0x82, 2, 0, 4, 0]);
    assert_eq!(&ss[29..35], &[6, 0x30, 3, 0, 0, 0]);
}

#[test]
fn descriptors_walk_as_length_prefixed_records() {
    let d = descriptors();
    let mut i = 24;
    let mut kinds = Vec::new();
    while i < d.len() {
        kinds.push(d[i + 1]);
        i += usize::from(d[i]);
    }
    assert_eq!(i, d.len());
    assert_eq!(kinds, [4, 5, 5, 4, 5, 5, 4, 5, 0x30, 5, 0x30]);
}

#[test]
fn strings_match_the_layout() {
    let s = strings("ADB Interface");
    assert_eq!(s.len(), 16 + 2 + 14);
    assert_eq!(&s[0..4], &2u32.to_le_bytes()); // FUNCTIONFS_STRINGS_MAGIC
    assert_eq!(&s[4..8], &(s.len() as u32).to_le_bytes());
    assert_eq!(&s[8..12], &1u32.to_le_bytes()); // str_count
    assert_eq!(&s[12..16], &1u32.to_le_bytes()); // lang_count
    assert_eq!(&s[16..18], &[0x09, 0x04]);
    assert_eq!(&s[18..], b"ADB Interface\0");
}

#[test]
fn events_decode_by_type() {
    let ev = |t: u8| {
        let mut b = [0u8; EVENT_SIZE];
        b[8] = t;
        parse_event(&b)
    };
    assert_eq!(ev(0), FfsEvent::Bind);
    assert_eq!(ev(1), FfsEvent::Unbind);
    assert_eq!(ev(2), FfsEvent::Enable);
    assert_eq!(ev(3), FfsEvent::Disable);
    assert_eq!(ev(5), FfsEvent::Suspend);
    assert_eq!(ev(6), FfsEvent::Resume);
    assert_eq!(ev(9), FfsEvent::Unknown(9));
}

#[test]
fn setup_event_carries_the_control_request() {
    // GET_DESCRIPTOR(string 3), IN, wIndex 0x0409, wLength 255; padding ignored.
    let b = [
        0x80, 6, 0x03, 0x03, 0x09, 0x04, 0xff, 0x00, 4, 0xaa, 0xbb, 0xcc,
    ];
    let FfsEvent::Setup(req) = parse_event(&b) else {
        panic!("not a setup event");
    };
    assert_eq!(
        req,
        CtrlRequest {
            request_type: 0x80,
            request: 6,
            value: 0x0303,
            index: 0x0409,
            length: 255,
        }
    );
    assert!(req.is_in());
}

#[test]
fn one_read_may_hold_several_events() {
    let mut b = vec![0u8; EVENT_SIZE * 2 + 5];
    b[8] = 0;
    b[EVENT_SIZE + 8] = 2;
    assert_eq!(parse_events(&b), [FfsEvent::Bind, FfsEvent::Enable]);
}

#[test]
fn header_fields() {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(b"CNXN");
    h[12..16].copy_from_slice(&0x0001_0203u32.to_le_bytes());
    assert_eq!(payload_len(&h), 0x0001_0203);
    assert!(is_cnxn(&h));
    assert!(!is_cnxn(b"WRTE"));
}

#[tokio::test]
async fn a_new_cnxn_ends_the_connection_and_starts_the_next() {
    let (tx, rx) = mpsc::channel(8);
    let mut src = FfsSource::new(rx);
    tx.send(Ok(b"CNXN-one".to_vec())).await.unwrap();
    tx.send(Ok(b"OPEN".to_vec())).await.unwrap();
    tx.send(Ok(b"CNXN-two".to_vec())).await.unwrap();
    let mut buf = [0u8; 64];
    let n = src.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"CNXN-one");
    let n = src.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"OPEN");
    assert_eq!(src.recv(&mut buf).await.unwrap(), 0);
    src.reset();
    let n = src.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"CNXN-two");
}

fn auth(kind: u32) -> Vec<u8> {
    let mut m = b"AUTH".to_vec();
    m.extend_from_slice(&kind.to_le_bytes());
    m.extend_from_slice(&[0u8; 16]);
    m.extend_from_slice(b"key");
    m
}

async fn next(src: &mut FfsSource) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), src.recv(&mut buf))
        .await
        .expect("a message in time")
        .unwrap();
    buf[..n].to_vec()
}

#[tokio::test]
async fn a_key_offer_waits_for_the_user_even_after_its_host_left() {
    let (tx, rx) = mpsc::channel(8);
    let (allow, allows) = watch::channel(0u64);
    let mut src = FfsSource::new(rx);
    src.gate = Some(KeyGate { allows, held: None });
    assert!(is_key_offer(&auth(3)) && !is_key_offer(&auth(2)));
    tx.send(Ok(b"CNXN-one".to_vec())).await.unwrap();
    tx.send(Ok(auth(2))).await.unwrap();
    tx.send(Ok(auth(3))).await.unwrap();
    assert_eq!(next(&mut src).await, b"CNXN-one");
    assert_eq!(next(&mut src).await, auth(2));
    // Held: nothing comes until the user allows it.
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), src.recv(&mut buf))
            .await
            .is_err()
    );
    allow.send_modify(|n| *n += 1);
    assert_eq!(next(&mut src).await, auth(3));
    // An allow with no prompt showing does not pre-approve the next offer.
    tx.send(Ok(auth(3))).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), src.recv(&mut buf))
            .await
            .is_err()
    );
    // A new connection dismisses the prompt: the offer is never delivered.
    tx.send(Ok(b"CNXN-two".to_vec())).await.unwrap();
    assert_eq!(src.recv(&mut buf).await.unwrap(), 0);
    src.reset();
    assert_eq!(next(&mut src).await, b"CNXN-two");
}

/// Reads as an endpoint file does: one transfer per read, at most what was asked.
struct Transfers(std::collections::VecDeque<Vec<u8>>);

impl Read for Transfers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut t) = self.0.pop_front() else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        if t.len() > buf.len() {
            self.0.push_front(t.split_off(buf.len()));
        }
        buf[..t.len()].copy_from_slice(&t);
        Ok(t.len())
    }
}

fn message(command: u32, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let m = phonefarm_agent::adb::message::Message::new(command, 1, 2, payload.to_vec());
    (m.header(false).to_vec(), payload.to_vec())
}

#[test]
fn a_host_that_starts_over_inside_a_payload_is_followed() {
    use phonefarm_agent::adb::message::cmd;
    let (wrte, _) = message(cmd::WRTE, &[5u8; 4096]);
    let (cnxn, banner) = message(cmd::CNXN, b"host::features=shell_v2\0");
    let (okay, _) = message(cmd::OKAY, b"");
    // A WRTE header, then (unplug, replug) the next host's CNXN instead of the payload;
    // then junk cut short, then an OKAY.
    let mut ep = Transfers(
        [
            wrte,
            cnxn.clone(),
            banner.clone(),
            message(cmd::WRTE, &[1u8; 100]).0,
            vec![9u8; 7],
            okay.clone(),
        ]
        .into(),
    );
    let mut chunk = READ_CHUNK;
    let m = read_message(&mut ep, &mut chunk).unwrap();
    assert_eq!(m, [cnxn, banner].concat());
    let m = read_message(&mut ep, &mut chunk).unwrap();
    assert_eq!(m, okay);
}

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fake::{FakeBulk, ReadStep};
use super::*;
use crate::adb::message::{Message, Parser, cmd};

fn timing() -> UsbTiming {
    UsbTiming {
        read_timeout: Duration::from_millis(20),
        write_timeout: Duration::from_millis(100),
        max_stalls: 2,
    }
}

#[test]
fn zlp_rule() {
    assert!(needs_zlp(512, 512));
    assert!(needs_zlp(1024, 512));
    assert!(!needs_zlp(0, 512));
    assert!(!needs_zlp(513, 512));
    assert!(!needs_zlp(10, 0));
}

#[test]
fn header_and_payload_are_separate_transfers_with_zlp() {
    let b = FakeBulk::new(512, 512);
    let m = Message::new(cmd::WRTE, 1, 2, vec![9u8; 1024]);
    send_message(&b, &m.header(false), &m.payload, &timing()).unwrap();
    let w = b.writes();
    assert_eq!(w.len(), 3);
    assert_eq!(w[0].len(), 24);
    assert_eq!(w[1].len(), 1024);
    assert!(
        w[2].is_empty(),
        "zero-length packet after a full-packet payload"
    );

    let b = FakeBulk::new(512, 512);
    let m = Message::new(cmd::OKAY, 1, 2, Bytes::new());
    send_message(&b, &m.header(false), &m.payload, &timing()).unwrap();
    assert_eq!(
        b.writes().len(),
        1,
        "no payload transfer for an empty payload"
    );
}

#[test]
fn write_stall_is_cleared_and_retried() {
    let b = FakeBulk::new(64, 64);
    b.fail_next_write(UsbError::Stall);
    send_message(&b, &[0u8; 24], b"abc", &timing()).unwrap();
    assert_eq!(b.halts_cleared(), vec![false]);
    assert_eq!(b.writes().len(), 2);
    b.fail_next_write(UsbError::NoDevice);
    assert_eq!(
        send_message(&b, &[0u8; 24], b"", &timing()),
        Err(UsbError::NoDevice)
    );
}

#[tokio::test]
async fn reader_survives_short_reads_zlps_timeouts_and_stalls() {
    let b = Arc::new(FakeBulk::new(64, 64));
    let m1 = Message::new(cmd::WRTE, 5, 6, vec![1u8; 300]);
    let m2 = Message::new(cmd::CLSE, 5, 6, Bytes::new());
    let bytes1 = m1.encode(false);
    // Header arrives in two short reads, payload in pieces, with noise in between.
    b.push_read(ReadStep::Data(bytes1[..10].to_vec()));
    b.push_read(ReadStep::Timeout);
    b.push_read(ReadStep::Data(bytes1[10..24].to_vec()));
    b.push_read(ReadStep::Zlp);
    b.push_read(ReadStep::Stall);
    b.push_read(ReadStep::Data(bytes1[24..].to_vec()));
    b.push_read(ReadStep::Data(m2.encode(false)));
    let (_sink, mut src) = spawn(b.clone(), timing());
    let mut p = Parser::default();
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    while got.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), src.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        p.feed(&buf[..n]);
        while let Some(m) = p.next_message().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, vec![m1, m2]);
    assert_eq!(b.halts_cleared(), vec![true]);
    // Unplugged: the source reports an error.
    b.push_read(ReadStep::Gone);
    let e = tokio::time::timeout(Duration::from_secs(5), src.recv(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
}

#[tokio::test]
async fn sink_goes_through_writer_thread() {
    let b = Arc::new(FakeBulk::new(512, 512));
    let (mut sink, _src) = spawn(b.clone(), timing());
    sink.send_packet(&[7u8; 24], &[1u8; 512]).await.unwrap();
    let w = b.writes();
    assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![24, 512, 0]);
    b.fail_next_write(UsbError::NoDevice);
    assert!(sink.send_packet(&[7u8; 24], &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adb_session_runs_over_fake_usb() {
    use crate::adb::auth::{AdbKey, KeyRing};
    use crate::phone::{ConnState, PhoneHandle, PhoneOptions};
    let b = Arc::new(FakeBulk::new(512, 512));
    let (sink, src) = spawn(b.clone(), timing());
    let phone = PhoneHandle::spawn(
        sink,
        src,
        "1-2.3",
        PhoneOptions::new(KeyRing::new(vec![AdbKey::generate().unwrap()])),
    );
    // The host's CNXN goes out as header + payload transfers.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.writes().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no CNXN written");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let w = b.writes();
    assert_eq!(&w[0][..4], b"CNXN");
    assert!(w[1].starts_with(b"host::features="));
    // The phone answers; the handle comes online.
    let banner = crate::adb::banner::Banner::device("p", "UsbPhone", "d", &["shell_v2"]);
    let reply = Message::new(cmd::CNXN, 0x0100_0001, 4096, banner.into_bytes());
    b.push_read(ReadStep::Data(reply.encode(false)));
    let info = phone
        .wait_online(tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(info.banner.model.as_deref(), Some("UsbPhone"));
    assert!(matches!(phone.state(), ConnState::Online(_)));
}

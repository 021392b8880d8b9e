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

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_goes_through_writer_thread_and_reports_failures_on_both_sides() {
    let b = Arc::new(FakeBulk::new(512, 512));
    let (mut sink, mut src) = spawn(b.clone(), timing());
    sink.send_packet(&[7u8; 24], &[1u8; 512]).await.unwrap();
    sink.send_packet(&[8u8; 24], &[2u8; 100]).await.unwrap();
    wait_until("both messages written", || b.writes().len() == 5);
    let w = b.writes();
    assert_eq!(
        w.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![24, 512, 0, 24, 100]
    );
    // A failed transfer: the source reports it at once, and the next send fails.
    b.fail_next_write(UsbError::Stall);
    b.fail_next_write(UsbError::Stall);
    b.fail_next_write(UsbError::Stall);
    sink.send_packet(&[7u8; 24], &[]).await.unwrap();
    let mut buf = [0u8; 64];
    let e = tokio::time::timeout(Duration::from_secs(5), src.recv(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("write failed"), "{e}");
    let e = sink.send_packet(&[7u8; 24], &[]).await.unwrap_err();
    assert!(e.to_string().contains("stalled"), "{e}");
}

#[test]
fn reads_follow_the_framing() {
    let mut f = Framing::default();
    let cap = 1024 * 1024;
    assert_eq!(f.next_read(512, cap), 512, "a header comes first");
    f.advance(&Message::new(cmd::WRTE, 1, 2, vec![0u8; 512]).header(false));
    assert_eq!(
        f.next_read(512, cap),
        512,
        "a payload filling one packet: no more than it"
    );
    f.advance(&[0u8; 512]);
    assert_eq!(f.next_read(512, cap), 512);
    f.advance(&Message::new(cmd::WRTE, 1, 2, vec![0u8; 1000]).header(false));
    assert_eq!(f.next_read(512, cap), 1024);
    f.advance(&[0u8; 600]);
    assert_eq!(f.next_read(512, cap), 512, "the rest: 400 bytes");
    f.advance(&[0u8; 400]);
    f.advance(&Message::new(cmd::WRTE, 1, 2, vec![0u8; 1 << 20]).header(false));
    assert_eq!(f.next_read(512, cap), cap);
    // A device that runs messages together, and garbage, only change read sizes.
    let mut f = Framing::default();
    let mut both = Message::new(cmd::OKAY, 1, 2, Bytes::new()).encode(false);
    both.extend(Message::new(cmd::WRTE, 1, 2, vec![0u8; 100]).encode(false)[..50].to_vec());
    f.advance(&both);
    assert_eq!(f.next_read(512, cap), 512, "74 payload bytes owed");
    f.advance(&[0xa5; 74]);
    f.advance(&[0xa5; 24]);
    assert_eq!(f.next_read(512, cap), 512);
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

fn header(command: u32, len: usize) -> Vec<u8> {
    Message::new(command, 1, 2, vec![0u8; len])
        .header(false)
        .to_vec()
}

#[test]
fn drain_takes_a_stale_message_whose_payload_comes_late() {
    let b = Arc::new(FakeBulk::new(512, 512));
    // A CNXN the phone sent to a host that has gone: the header now, the banner later.
    b.push_read(ReadStep::Data(header(cmd::CNXN, 300)));
    let late = b.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        late.push_read(ReadStep::Data(vec![7u8; 300]));
    });
    let n = drain_stale_input(&*b, Duration::from_millis(20), Duration::from_secs(5));
    t.join().unwrap();
    assert_eq!(n, 24 + 300);
    // What comes next is this connection's.
    b.push_read(ReadStep::Data(header(cmd::AUTH, 20)));
    let mut buf = vec![0u8; 512];
    assert_eq!(b.read(&mut buf, Duration::from_millis(100)), Ok(24));
    assert_eq!(&buf[..4], b"AUTH");
}

#[test]
fn drain_of_a_quiet_endpoint_returns_at_once() {
    let b = FakeBulk::new(512, 512);
    let t = std::time::Instant::now();
    assert_eq!(
        drain_stale_input(&b, Duration::from_millis(20), Duration::from_secs(5)),
        0
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn drain_stops_when_the_device_is_gone() {
    let b = FakeBulk::new(512, 512);
    b.push_read(ReadStep::Data(header(cmd::CNXN, 300)));
    b.push_read(ReadStep::Gone);
    assert_eq!(
        drain_stale_input(&b, Duration::from_millis(20), Duration::from_secs(5)),
        24
    );
}

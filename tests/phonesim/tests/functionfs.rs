//! The FunctionFS transport without a kernel: `ep0` is a plain file (it receives the
//! descriptors and strings), `ep1` and `ep2` are FIFOs standing in for the OUT and IN
//! endpoints. Our host session drives the simulator through them: the same device-role core
//! and phone model as over TCP, with the message framing and the writer thread of the USB
//! path. (The real kernel path, dummy_hcd and a configfs gadget, is `tests/usb-vm/run`.)

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use phonefarm_agent::adb::auth::KeyRing;
use phonefarm_agent::adb::transport::{StreamSink, StreamSource};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions, PushSource};
use phonefarm_phonesim::functionfs::{self, FunctionFs};
use phonefarm_phonesim::{SimConfig, model::Phone};
use tokio::net::unix::pipe;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_session_over_functionfs_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ep0"), b"").unwrap();
    mkfifo(&dir.path().join("ep1"));
    mkfifo(&dir.path().join("ep2"));

    // FunctionFs::start opens ep1 (read) then ep2 (write), each blocking until the FIFO has a
    // peer. The host's ep1 end is opened read-write (never blocks, never fails) to release the
    // first; a non-blocking reader on ep2 releases the second.
    let d = dir.path().to_path_buf();
    let started = tokio::task::spawn_blocking(move || FunctionFs::start(&d));
    let to_device = pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(dir.path().join("ep1"))
        .unwrap();
    let from_device = pipe::OpenOptions::new()
        .open_receiver(dir.path().join("ep2"))
        .unwrap();
    let ffs = started.await.unwrap().expect("functionfs start");

    let ep0 = std::fs::read(dir.path().join("ep0")).unwrap();
    let descs = functionfs::descriptors();
    assert_eq!(&ep0[..descs.len()], &descs[..], "descriptors first");
    assert_eq!(
        &ep0[descs.len()..],
        &functionfs::strings(functionfs::INTERFACE_NAME)[..],
        "then the strings"
    );

    let cfg = SimConfig::with_serial("FFS0001");
    let phone = Arc::new(Mutex::new(Phone::new(cfg.identity.clone())));
    let shutdown = CancellationToken::new();
    tokio::spawn(ffs.serve(phone.clone(), Arc::new(cfg), shutdown.clone()));

    let h = PhoneHandle::spawn(
        StreamSink(to_device),
        StreamSource(from_device),
        "ffs",
        PhoneOptions::new(KeyRing::new(Vec::new())),
    );
    h.wait_online(deadline()).await.expect("online");

    let out = h.shell("getprop ro.serialno", deadline()).await.unwrap();
    assert_eq!(out.stdout, b"FFS0001\n");
    let out = h.shell("exit 3", deadline()).await.unwrap();
    assert_eq!(out.exit, Some(3));
    // 501 bytes of stdout: the shell v2 payload (stdout and exit packets) is exactly 512
    // bytes, one whole high-speed packet, sent with no zero-length packet after it.
    let long = "x".repeat(500);
    let out = h.shell(&format!("echo {long}"), deadline()).await.unwrap();
    assert_eq!(out.stdout.len(), 501);

    let data: Vec<u8> = (0..3 * 1024 * 1024 + 77)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    h.push(
        PushSource::Bytes(Bytes::from(data.clone())),
        "/data/local/tmp/f",
        0o644,
        deadline(),
        &mut |_, _| {},
    )
    .await
    .expect("push");
    let back = h.pull("/data/local/tmp/f", deadline()).await.expect("pull");
    assert!(back == data, "pulled bytes differ");
    shutdown.cancel();
}

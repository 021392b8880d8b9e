//! Transports only move bytes: a [`PacketSink`] takes a header and a payload as two separate
//! writes (as USB bulk endpoints need), a [`ByteSource`] yields the received byte stream in
//! whatever pieces it arrives. TCP (tokio) and an in-memory duplex are provided here; USB plugs
//! in by implementing the same two traits.

use std::future::Future;
use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::message::HEADER_LEN;

/// Sends whole ADB messages.
pub trait PacketSink: Send + 'static {
    /// Sends the 24-byte header, then the payload (possibly empty).
    fn send_packet(
        &mut self,
        header: &[u8; HEADER_LEN],
        payload: &[u8],
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Receives the peer's byte stream.
pub trait ByteSource: Send + 'static {
    /// Reads some bytes into `buf`; `Ok(0)` means the peer went away.
    fn recv(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A [`PacketSink`] over any async byte writer (TCP, duplex).
#[derive(Debug)]
pub struct StreamSink<W>(pub W);

/// A [`ByteSource`] over any async byte reader.
#[derive(Debug)]
pub struct StreamSource<R>(pub R);

impl<W: AsyncWrite + Unpin + Send + 'static> PacketSink for StreamSink<W> {
    /// Header and payload go out together in one vectored write (one `writev` on TCP, no
    /// copy), continued where the socket took less.
    async fn send_packet(&mut self, header: &[u8; HEADER_LEN], payload: &[u8]) -> io::Result<()> {
        write_all_vectored(&mut self.0, header, payload).await
    }
}

/// Writes `a` then `b` with as few writes as the writer allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut a: &[u8],
    mut b: &[u8],
) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            w.write(b).await?
        } else if b.is_empty() {
            w.write(a).await?
        } else {
            w.write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

impl<R: AsyncRead + Unpin + Send + 'static> ByteSource for StreamSource<R> {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}

pub type TcpSink = StreamSink<tokio::net::tcp::OwnedWriteHalf>;
pub type TcpSource = StreamSource<tokio::net::tcp::OwnedReadHalf>;

/// Splits a TCP connection into sink and source (with Nagle off: ADB is request/response).
pub fn tcp_split(stream: TcpStream) -> (TcpSink, TcpSource) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    (StreamSink(w), StreamSource(r))
}

/// Connects to `addr` over TCP.
pub async fn tcp_connect(addr: &str) -> io::Result<(TcpSink, TcpSource)> {
    Ok(tcp_split(TcpStream::connect(addr).await?))
}

pub type DuplexSink = StreamSink<tokio::io::WriteHalf<tokio::io::DuplexStream>>;
pub type DuplexSource = StreamSource<tokio::io::ReadHalf<tokio::io::DuplexStream>>;

/// Two connected in-memory ends, for tests.
pub fn duplex_pair(buffer: usize) -> ((DuplexSink, DuplexSource), (DuplexSink, DuplexSource)) {
    let (a, b) = tokio::io::duplex(buffer);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    (
        (StreamSink(aw), StreamSource(ar)),
        (StreamSink(bw), StreamSource(br)),
    )
}

/// One encoded message waiting for the writer task.
#[derive(Debug)]
pub struct Frame {
    pub header: [u8; HEADER_LEN],
    pub payload: Bytes,
}

/// Handle to a task that owns a [`PacketSink`], so the protocol loop never blocks on writes.
/// Memory is bounded by ADB flow control (each stream has at most one WRTE or one window in
/// flight), not by this channel.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Frame>,
    /// Resolves with the error when the sink fails.
    pub failed: oneshot::Receiver<io::Error>,
}

impl Writer {
    pub fn spawn<S: PacketSink>(mut sink: S) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
        let (ftx, failed) = oneshot::channel();
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if let Err(e) = sink.send_packet(&f.header, &f.payload).await {
                    let _ = ftx.send(e);
                    return;
                }
            }
        });
        Self { tx, failed }
    }

    /// Queues a frame; false if the writer has stopped.
    pub fn send(&self, header: [u8; HEADER_LEN], payload: Bytes) -> bool {
        self.tx.send(Frame { header, payload }).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call and records each call.
    struct Trickle {
        step: usize,
        calls: usize,
        out: Vec<u8>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.calls += 1;
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.step - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_write_is_one_call_and_survives_short_writes() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let header = [7u8; HEADER_LEN];
        let mut want = header.to_vec();
        want.extend_from_slice(&payload);
        for step in [1, 5, 24, 25, 700, 1024, 4096] {
            let mut t = Trickle {
                step,
                calls: 0,
                out: Vec::new(),
            };
            write_all_vectored(&mut t, &header, &payload).await.unwrap();
            assert_eq!(t.out, want, "step {step}");
            assert_eq!(t.calls, want.len().div_ceil(step), "step {step}");
        }
    }

    #[tokio::test]
    async fn duplex_moves_header_and_payload() {
        let ((mut sink, _), (_, mut src)) = duplex_pair(1024);
        sink.send_packet(&[1u8; HEADER_LEN], b"abc").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        while got.len() < HEADER_LEN + 3 {
            let n = src.recv(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..HEADER_LEN], &[1u8; HEADER_LEN]);
        assert_eq!(&got[HEADER_LEN..], b"abc");
    }
}

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

/// Payloads up to this size are coalesced with their header into one write.
const COALESCE: usize = 16 * 1024;

impl<W: AsyncWrite + Unpin + Send + 'static> PacketSink for StreamSink<W> {
    async fn send_packet(&mut self, header: &[u8; HEADER_LEN], payload: &[u8]) -> io::Result<()> {
        if payload.len() <= COALESCE {
            let mut b = Vec::with_capacity(HEADER_LEN + payload.len());
            b.extend_from_slice(header);
            b.extend_from_slice(payload);
            self.0.write_all(&b).await
        } else {
            self.0.write_all(header).await?;
            self.0.write_all(payload).await
        }
    }
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

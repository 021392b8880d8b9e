//! A TCP proxy a test puts between a client and a server to cut the link: `Pass` forwards,
//! `Drop` closes every connection and refuses new ones (a dead route), `Stall` keeps the
//! connections open but moves no byte (a black hole: the client notices only by its own
//! timeouts). Going back to `Pass` lets new connections through (and stalled ones resume).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, tcp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Drop,
    Stall,
}

pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(Mode::Pass);
        let mode = Arc::new(tx);
        let m = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = m.subscribe();
                tokio::spawn(connection(client, upstream, rx));
            }
        });
        Ok(Proxy { addr, mode, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(Mode::Drop);
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // Held, not served, until the link is restored or cut.
    while *mode.borrow_and_update() == Mode::Stall {
        if mode.changed().await.is_err() {
            return;
        }
    }
    if *mode.borrow() == Mode::Drop {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (or a Drop) ends both: the halves are dropped together.
    tokio::select! {
        _ = pump(cr, sw, mode.clone()) => {}
        _ = pump(sr, cw, mode) => {}
    }
}

/// Copies `r` to `w` while the mode is `Pass`, pauses while `Stall`, ends on `Drop`.
async fn pump(
    mut r: tcp::OwnedReadHalf,
    mut w: tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Drop => return,
            Mode::Stall => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Pass => {}
        }
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if w.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> Option<Vec<u8>> {
        let attempt = async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(b"ping").await.ok()?;
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.ok()?;
            Some(got.to_vec())
        };
        tokio::time::timeout(Duration::from_millis(500), attempt)
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn passes_drops_stalls_and_restores() {
        let p = Proxy::start(echo().await).await.unwrap();
        assert_eq!(round_trip(p.addr()).await.as_deref(), Some(&b"ping"[..]));
        // An open connection is cut by Drop.
        let mut open = TcpStream::connect(p.addr()).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        open.read_exact(&mut got).await.unwrap();
        p.set(Mode::Drop);
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "the open connection was not closed");
        assert_eq!(round_trip(p.addr()).await, None, "dropped");
        p.set(Mode::Stall);
        assert_eq!(round_trip(p.addr()).await, None, "stalled");
        p.set(Mode::Pass);
        assert_eq!(round_trip(p.addr()).await.as_deref(), Some(&b"ping"[..]));
    }
}

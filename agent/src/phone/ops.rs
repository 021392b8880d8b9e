//! The calls a [`PhoneHandle`] offers, each over its own stream: shell (v2 with exit codes,
//! legacy `shell:` fallback), sync push/pull/stat/list, and reboot.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

use super::actor::StreamIo;
use super::{PhoneError, PhoneHandle};
use crate::adb::banner::{FEATURE_SHELL_V2, FEATURE_STAT_V2};
use crate::adb::shell::{self, PacketId, ShellService};
use crate::adb::sync::{self, Expect, Request, Response, ResponseDecoder};

/// Result of a shell command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit status; `None` on phones without `shell_v2`, where the legacy shell reports none
    /// (stderr is then merged into stdout).
    pub exit: Option<u8>,
}

/// What to push.
#[derive(Debug, Clone)]
pub enum PushSource {
    Bytes(Bytes),
    File(PathBuf),
}

/// Remote file metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteStat {
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
}

impl RemoteStat {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

fn proto(e: impl std::fmt::Display) -> PhoneError {
    PhoneError::Protocol(e.to_string())
}

/// A sync session over one stream.
struct SyncConn {
    io: StreamIo,
    dec: ResponseDecoder,
}

impl SyncConn {
    async fn open(h: &PhoneHandle) -> Result<Self, PhoneError> {
        Ok(Self {
            io: h.open("sync:").await?,
            dec: ResponseDecoder::default(),
        })
    }

    async fn send(&mut self, r: Request) -> Result<(), PhoneError> {
        self.io.write(r.encode()).await
    }

    async fn next(&mut self, expect: Expect) -> Result<Response, PhoneError> {
        loop {
            if let Some(r) = self.dec.next_response(expect).map_err(proto)? {
                return Ok(r);
            }
            match self.io.recv().await? {
                Some(d) => self.dec.feed(&d),
                None => return Err(PhoneError::Disconnected("sync stream closed".into())),
            }
        }
    }

    async fn stat(&mut self, path: &str, v2: bool) -> Result<Option<RemoteStat>, PhoneError> {
        if v2 {
            self.send(Request::Stat2(path.to_string())).await?;
            match self.next(Expect::Stat2).await? {
                Response::Stat2(s) if s.error == 0 => Ok(Some(RemoteStat {
                    mode: s.mode,
                    size: s.size,
                    mtime: s.mtime,
                })),
                Response::Stat2(_) => Ok(None),
                Response::Fail(m) => Err(PhoneError::Remote(m)),
                other => Err(proto(format!("unexpected reply {other:?}"))),
            }
        } else {
            self.send(Request::Stat(path.to_string())).await?;
            match self.next(Expect::Stat).await? {
                Response::Stat {
                    mode: 0,
                    size: 0,
                    mtime: 0,
                } => Ok(None),
                Response::Stat { mode, size, mtime } => Ok(Some(RemoteStat {
                    mode,
                    size: u64::from(size),
                    mtime: i64::from(mtime),
                })),
                Response::Fail(m) => Err(PhoneError::Remote(m)),
                other => Err(proto(format!("unexpected reply {other:?}"))),
            }
        }
    }

    async fn quit(mut self) -> Result<(), PhoneError> {
        self.send(Request::Quit).await?;
        self.io.close();
        Ok(())
    }
}

impl PhoneHandle {
    fn has(&self, feature: &str) -> bool {
        self.peer().is_some_and(|p| p.banner.has(feature))
    }

    /// Runs `cmd` on the phone. Uses shell v2 (separate stderr, exit status) when the phone
    /// has it, else the legacy shell.
    pub async fn shell(&self, cmd: &str, deadline: Instant) -> Result<ShellOutput, PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let v2 = self.has(FEATURE_SHELL_V2);
            let mut io = self.open(&ShellService::service_string(cmd, v2)).await?;
            let mut out = ShellOutput::default();
            if !v2 {
                while let Some(d) = io.recv().await? {
                    out.stdout.extend_from_slice(&d);
                }
                return Ok(out);
            }
            let mut dec = shell::Decoder::default();
            loop {
                while let Some(p) = dec.next_packet().map_err(proto)? {
                    match p.id {
                        PacketId::Stdout => out.stdout.extend_from_slice(&p.data),
                        PacketId::Stderr => out.stderr.extend_from_slice(&p.data),
                        PacketId::Exit => {
                            out.exit = Some(p.data.first().copied().unwrap_or(0));
                            io.close();
                            return Ok(out);
                        }
                        _ => {}
                    }
                }
                match io.recv().await? {
                    Some(d) => dec.feed(&d),
                    None => return Err(proto("shell stream closed without an exit status")),
                }
            }
        })
        .await
    }

    /// Metadata of a remote path, `None` if it does not exist.
    pub async fn stat(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<Option<RemoteStat>, PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let mut s = SyncConn::open(self).await?;
            let r = s.stat(path, self.has(FEATURE_STAT_V2)).await?;
            s.quit().await?;
            Ok(r)
        })
        .await
    }

    /// Entries of a remote directory (name, stat), without `.` and `..`.
    pub async fn list(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<Vec<(String, RemoteStat)>, PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let mut s = SyncConn::open(self).await?;
            s.send(Request::List(path.to_string())).await?;
            let mut out = Vec::new();
            loop {
                match s.next(Expect::List).await? {
                    Response::Dent(d) => {
                        if d.name != "." && d.name != ".." {
                            let st = RemoteStat {
                                mode: d.mode,
                                size: u64::from(d.size),
                                mtime: i64::from(d.mtime),
                            };
                            out.push((d.name, st));
                        }
                    }
                    Response::ListDone => break,
                    Response::Fail(m) => return Err(PhoneError::Remote(m)),
                    other => return Err(proto(format!("unexpected reply {other:?}"))),
                }
            }
            s.quit().await?;
            Ok(out)
        })
        .await
    }

    /// Pushes bytes or a local file to `remote` with `mode` (permission bits; the regular-file
    /// type is added). `progress(done, total)` is called as data goes out.
    pub async fn push(
        &self,
        source: PushSource,
        remote: &str,
        mode: u32,
        deadline: Instant,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let mut s = SyncConn::open(self).await?;
            let batch_max = s.io.max_payload.max(sync::SYNC_DATA_MAX + 8);
            let mut batch = BytesMut::with_capacity(batch_max);
            Request::Send {
                path: remote.to_string(),
                mode: 0o100000 | (mode & 0o7777),
            }
            .encode_into(&mut batch);
            let mut done = 0u64;
            let mtime = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            match source {
                PushSource::Bytes(data) => {
                    let total = data.len() as u64;
                    for chunk in data.chunks(sync::SYNC_DATA_MAX) {
                        if batch.len() + chunk.len() + 8 > batch_max {
                            s.io.write(batch.split().freeze()).await?;
                            progress(done, total);
                        }
                        Request::Data(data.slice_ref(chunk)).encode_into(&mut batch);
                        done += chunk.len() as u64;
                    }
                    progress(done, total);
                }
                PushSource::File(path) => {
                    let lio = |action| {
                        let p = path.display().to_string();
                        move |source| PhoneError::LocalIo {
                            action,
                            path: p,
                            source,
                        }
                    };
                    let mut f = tokio::fs::File::open(&path).await.map_err(lio("open"))?;
                    let total = f.metadata().await.map_err(lio("stat"))?.len();
                    let mut chunk = vec![0u8; sync::SYNC_DATA_MAX];
                    loop {
                        let mut n = 0;
                        while n < chunk.len() {
                            let r = f.read(&mut chunk[n..]).await.map_err(lio("read"))?;
                            if r == 0 {
                                break;
                            }
                            n += r;
                        }
                        if n == 0 {
                            break;
                        }
                        if batch.len() + n + 8 > batch_max {
                            s.io.write(batch.split().freeze()).await?;
                            progress(done, total);
                        }
                        Request::Data(Bytes::copy_from_slice(&chunk[..n])).encode_into(&mut batch);
                        done += n as u64;
                    }
                    progress(done, total);
                }
            }
            Request::Done { mtime }.encode_into(&mut batch);
            s.io.write(batch.split().freeze()).await?;
            match s.next(Expect::Status).await? {
                Response::Okay => {}
                Response::Fail(m) => return Err(PhoneError::Remote(m)),
                other => return Err(proto(format!("unexpected reply {other:?}"))),
            }
            s.quit().await
        })
        .await
    }

    /// Pulls `remote`, handing each chunk to `sink`; `progress(done, total)` follows along.
    pub async fn pull_with(
        &self,
        remote: &str,
        deadline: Instant,
        sink: &mut (dyn FnMut(&[u8]) -> Result<(), PhoneError> + Send),
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let mut s = SyncConn::open(self).await?;
            let total = match s.stat(remote, self.has(FEATURE_STAT_V2)).await? {
                Some(st) if st.is_dir() => {
                    return Err(PhoneError::Remote(format!("{remote} is a directory")));
                }
                Some(st) => st.size,
                None => return Err(PhoneError::Remote(format!("{remote}: no such file"))),
            };
            s.send(Request::Recv(remote.to_string())).await?;
            let mut done = 0u64;
            loop {
                match s.next(Expect::Recv).await? {
                    Response::Data(d) => {
                        sink(&d)?;
                        done += d.len() as u64;
                        progress(done, total);
                    }
                    Response::Done => break,
                    Response::Fail(m) => return Err(PhoneError::Remote(m)),
                    other => return Err(proto(format!("unexpected reply {other:?}"))),
                }
            }
            s.quit().await?;
            Ok(done)
        })
        .await
    }

    /// Pulls `remote` into memory.
    pub async fn pull(&self, remote: &str, deadline: Instant) -> Result<Vec<u8>, PhoneError> {
        let mut out = Vec::new();
        self.pull_with(
            remote,
            deadline,
            &mut |d| {
                out.extend_from_slice(d);
                Ok(())
            },
            &mut |_, _| {},
        )
        .await?;
        Ok(out)
    }

    /// Pulls `remote` into a local file.
    pub async fn pull_to_file(
        &self,
        remote: &str,
        local: &std::path::Path,
        deadline: Instant,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, PhoneError> {
        use std::io::Write as _;
        let lp = local.display().to_string();
        let mut f = std::io::BufWriter::new(std::fs::File::create(local).map_err(|source| {
            PhoneError::LocalIo {
                action: "create",
                path: lp.clone(),
                source,
            }
        })?);
        let r = self
            .pull_with(
                remote,
                deadline,
                &mut |d| {
                    f.write_all(d).map_err(|source| PhoneError::LocalIo {
                        action: "write",
                        path: lp.clone(),
                        source,
                    })
                },
                progress,
            )
            .await;
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                drop(f);
                let _ = std::fs::remove_file(local);
                return Err(e);
            }
        };
        f.flush().map_err(|source| PhoneError::LocalIo {
            action: "write",
            path: lp.clone(),
            source,
        })?;
        Ok(n)
    }

    /// Reboots the phone. Succeeds once the phone closed the stream or dropped the connection.
    pub async fn reboot(&self, deadline: Instant) -> Result<(), PhoneError> {
        self.with_deadline(deadline, async {
            self.wait_online(deadline).await?;
            let mut io = self.open("reboot:").await?;
            loop {
                match io.recv().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(PhoneError::Disconnected(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }
}

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
    /// Exit status. On phones without `shell_v2` the legacy shell reports none, so the command
    /// is followed by an `echo` of a marker and `$?` (see [`legacy_command`]); it is `None` only
    /// when that line never ran (the command ended the shell itself, e.g. `exit 3`). Without
    /// `shell_v2`, stderr is merged into stdout.
    pub exit: Option<u8>,
}

/// A fresh marker for one legacy shell call: letters, digits and underscores only (nothing
/// the shell would interpret), random so that no command output can forge it.
fn exit_marker() -> String {
    format!("__pf_exit_{:016x}_", rand::random::<u64>())
}

/// The legacy `shell:` command for `cmd`: `cmd`, then `echo <marker>$?` on a line of its own
/// (as scripts around `adb shell` do with `; echo $?`, but after a newline, so a trailing
/// comment or `&` in `cmd` cannot swallow or break it).
pub fn legacy_command(cmd: &str, marker: &str) -> String {
    format!("{cmd}\necho {marker}$?")
}

/// Cuts the last `<marker><digits>` line (with its `\n` or `\r\n`: legacy shells may run on a
/// pty) out of legacy shell output and returns the status; `None`, with the output untouched,
/// when there is no well-formed marker.
pub fn take_exit_marker(stdout: &mut Vec<u8>, marker: &[u8]) -> Option<u8> {
    if marker.is_empty() || stdout.len() < marker.len() {
        return None;
    }
    let start = (0..=stdout.len() - marker.len())
        .rev()
        .find(|&i| stdout[i..].starts_with(marker))?;
    let digits_at = start + marker.len();
    let digits = stdout[digits_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let status: u16 = std::str::from_utf8(&stdout[digits_at..digits_at + digits])
        .ok()?
        .parse()
        .ok()?;
    let status = u8::try_from(status).ok()?;
    let mut end = digits_at + digits;
    if stdout.get(end) == Some(&b'\r') {
        end += 1;
    }
    if stdout.get(end) == Some(&b'\n') {
        end += 1;
    }
    stdout.drain(start..end);
    Some(status)
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

/// Appends one sync DATA request (header and `chunk`, one copy).
fn put_data(b: &mut BytesMut, chunk: &[u8]) {
    use bytes::BufMut as _;
    b.put_slice(&sync::ID_DATA);
    b.put_u32_le(chunk.len() as u32);
    b.put_slice(chunk);
}

/// Push batch buffers of one size, reused once the transport has dropped the WRTE payload made
/// from them: no allocation (and no page faults on fresh memory) per megabyte in the steady
/// state, with one WRTE or a window of them in flight.
struct BatchPool {
    size: usize,
    /// Emptied buffers whose frames may still be in flight.
    spent: Vec<BytesMut>,
}

impl BatchPool {
    /// At most this many buffers are kept (the delayed-ack window in max-payload WRTEs, plus
    /// the one being filled).
    const KEEP: usize = 10;

    fn new(size: usize) -> Self {
        Self {
            size,
            spent: Vec::new(),
        }
    }

    /// An empty buffer of `size` capacity: a spent one whose frame is gone, or a new one.
    fn take(&mut self) -> BytesMut {
        let size = self.size;
        match self.spent.iter_mut().position(|b| b.try_reclaim(size)) {
            Some(i) => self.spent.swap_remove(i),
            None => BytesMut::with_capacity(size),
        }
    }

    /// Freezes what `batch` holds for sending and puts an empty buffer in its place.
    fn swap(&mut self, batch: &mut BytesMut) -> Bytes {
        let frame = batch.split().freeze();
        let next = self.take();
        let spent = std::mem::replace(batch, next);
        if self.spent.len() < Self::KEEP {
            self.spent.push(spent);
        }
        frame
    }
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
            let mut out = ShellOutput::default();
            if !v2 {
                let marker = exit_marker();
                let mut io = self
                    .open(&ShellService::service_string(
                        &legacy_command(cmd, &marker),
                        false,
                    ))
                    .await?;
                while let Some(d) = io.recv().await? {
                    out.stdout.extend_from_slice(&d);
                }
                out.exit = take_exit_marker(&mut out.stdout, marker.as_bytes());
                return Ok(out);
            }
            let mut io = self.open(&ShellService::service_string(cmd, true)).await?;
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
            // DATA requests are packed into WRTEs of the full max payload.
            let batch_max = s.io.max_payload.max(sync::SYNC_DATA_MAX + 8);
            let mut pool = BatchPool::new(batch_max);
            let mut batch = pool.take();
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
                            s.io.write(pool.swap(&mut batch)).await?;
                            progress(done, total);
                        }
                        put_data(&mut batch, chunk);
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
                            s.io.write(pool.swap(&mut batch)).await?;
                            progress(done, total);
                        }
                        put_data(&mut batch, &chunk[..n]);
                        done += n as u64;
                    }
                    progress(done, total);
                }
            }
            Request::Done { mtime }.encode_into(&mut batch);
            s.io.write(pool.swap(&mut batch)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: &str = "__pf_exit_00112233aabbccdd_";

    #[test]
    fn legacy_command_puts_the_marker_on_its_own_line() {
        assert_eq!(
            legacy_command("ls # note", M),
            format!("ls # note\necho {M}$?")
        );
        let m = exit_marker();
        assert!(m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_ne!(m, exit_marker());
    }

    #[test]
    fn marker_line_is_cut_and_parsed() {
        let mut out = format!("hi\n{M}0\n").into_bytes();
        assert_eq!(take_exit_marker(&mut out, M.as_bytes()), Some(0));
        assert_eq!(out, b"hi\n");
        // pty line ends, output without a final newline, and three digits
        let mut out = format!("partial{M}127\r\n").into_bytes();
        assert_eq!(take_exit_marker(&mut out, M.as_bytes()), Some(127));
        assert_eq!(out, b"partial");
        // missing (the command ran `exit`), malformed or out of range: untouched
        for bad in [
            "plain\n".to_string(),
            format!("{M}\n"),
            format!("{M}x1\n"),
            format!("{M}256\n"),
            format!("{M}1000\n"),
        ] {
            let mut out = bad.clone().into_bytes();
            assert_eq!(take_exit_marker(&mut out, M.as_bytes()), None, "{bad:?}");
            assert_eq!(out, bad.as_bytes());
        }
        // the last marker counts; a late write after it is kept
        let mut out = format!("{M}1\n{M}2\nlate").into_bytes();
        assert_eq!(take_exit_marker(&mut out, M.as_bytes()), Some(2));
        assert_eq!(out, format!("{M}1\nlate").into_bytes());
    }

    #[test]
    fn batch_buffers_are_reused_once_their_frame_is_gone() {
        let mut pool = BatchPool::new(4096);
        let mut batch = pool.take();
        put_data(&mut batch, &[1; 1000]);
        let first = pool.swap(&mut batch);
        assert_eq!(&first[..8], b"DATA\xe8\x03\0\0");
        let first_at = first.as_ptr();
        // While the first frame is in flight its buffer is not handed out again.
        put_data(&mut batch, &[2; 10]);
        let second = pool.swap(&mut batch);
        assert_ne!(batch.as_ptr(), first_at);
        drop(first);
        put_data(&mut batch, &[3; 10]);
        let _third = pool.swap(&mut batch);
        assert_eq!(batch.as_ptr(), first_at, "the first buffer came back");
        assert!(batch.capacity() >= 4096);
        assert_eq!(&second[8..], &[2; 10]);
    }

    proptest! {
        #[test]
        fn any_output_and_status_survive(
            body in prop::collection::vec(any::<u8>(), 0..200),
            status in any::<u8>(),
            crlf in any::<bool>(),
        ) {
            let mut out = body.clone();
            out.extend_from_slice(M.as_bytes());
            out.extend_from_slice(status.to_string().as_bytes());
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            prop_assert_eq!(take_exit_marker(&mut out, M.as_bytes()), Some(status));
            prop_assert_eq!(out, body);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut out = data;
            let _ = take_exit_marker(&mut out, M.as_bytes());
            let _ = take_exit_marker(&mut out, b"");
        }
    }
}

//! Evidence (UI dumps, screenshots of failed steps) for the agent's own object store
//! `pf_evidence_<agent_id>` (the only one its NATS user may open), under
//! `<agent_id>/<queue_item_id>/<attempt>/<name>`.
//!
//! Evidence is journaled like events, so a NATS outage (or an agent restart) at the moment a
//! run fails loses none of it: the runner writes each piece durably to the [`EvidenceSpool`]
//! (`journal/evidence/<hex(object)>.ev`, fsynced) and journals its `Evidence` event; the
//! uploader ([`run_uploader`]) stores spooled pieces with [`EvidenceStore::put`] whenever NATS is
//! reachable, retrying with a backoff, and deletes each file only after the store acknowledged
//! it. Files left by a previous process are uploaded at start. The `Evidence` event therefore
//! names an object that is stored or on its way (an upload that lags its announcement is
//! normal during an outage); pieces not stored within [`EVIDENCE_RETENTION`] are dropped.
//!
//! The store is opened lazily (and again after a failure) with `get_object_store`; the
//! coordinator creates it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use phonefarm_shared::subjects;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::journal::{JournalError, io, write_durable};

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("cannot open the evidence store")]
    Open(#[source] async_nats::Error),
    #[error("cannot upload {object}")]
    Put {
        object: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("uploading {object} timed out")]
    Timeout { object: String },
}

/// The object name of one piece of evidence.
pub fn object_name(agent_id: &str, queue_item_id: Uuid, attempt: u32, name: &str) -> String {
    format!("{agent_id}/{queue_item_id}/{attempt}/{name}")
}

/// Uploader, shared behind an `Arc`.
pub struct EvidenceStore {
    js: jetstream::Context,
    bucket: String,
    store: Mutex<Option<ObjectStore>>,
    timeout: Duration,
}

impl std::fmt::Debug for EvidenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceStore")
            .field("bucket", &self.bucket)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EvidenceStore {
    /// The uploader of `agent_id`'s evidence (into `pf_evidence_<agent_id>`).
    pub fn new(js: jetstream::Context, agent_id: &str, timeout: Duration) -> Self {
        Self {
            js,
            bucket: subjects::evidence_bucket(agent_id),
            store: Mutex::new(None),
            timeout,
        }
    }

    /// Uploads `data` as `object`; the whole call is bounded by the store's timeout.
    pub async fn put(&self, object: &str, data: Vec<u8>) -> Result<(), EvidenceError> {
        let fut = async {
            let mut guard = self.store.lock().await;
            if guard.is_none() {
                let store = self
                    .js
                    .get_object_store(&self.bucket)
                    .await
                    .map_err(|e| EvidenceError::Open(Box::new(e)))?;
                *guard = Some(store);
            }
            let Some(store) = guard.as_ref() else {
                return Err(EvidenceError::Open("evidence store missing".into()));
            };
            let mut reader = std::io::Cursor::new(data);
            match store.put(object, &mut reader).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    *guard = None;
                    Err(EvidenceError::Put {
                        object: object.to_string(),
                        source: Box::new(e),
                    })
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| EvidenceError::Timeout {
                object: object.to_string(),
            })?
    }
}

/// Spooled evidence older than this is dropped instead of uploaded.
pub const EVIDENCE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Evidence waiting on disk for its upload; cheap to clone.
#[derive(Debug, Clone)]
pub struct EvidenceSpool {
    inner: Arc<SpoolInner>,
}

#[derive(Debug)]
struct SpoolInner {
    dir: PathBuf,
    wake: Notify,
}

/// One spooled piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub object: String,
    pub path: PathBuf,
}

const SPOOL_EXT: &str = "ev";

impl EvidenceSpool {
    /// Opens (creating) the spool in `journal_dir/evidence`.
    pub fn open(journal_dir: &Path) -> Result<Self, JournalError> {
        let dir = journal_dir.join("evidence");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            inner: Arc::new(SpoolInner {
                dir,
                wake: Notify::new(),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path_of(&self, object: &str) -> PathBuf {
        self.inner
            .dir
            .join(format!("{}.{SPOOL_EXT}", hex::encode(object.as_bytes())))
    }

    /// Writes `data` for `object` durably (fsync) and wakes the uploader.
    pub async fn keep(&self, object: &str, data: Vec<u8>) -> Result<(), JournalError> {
        let (dir, path) = (self.inner.dir.clone(), self.path_of(object));
        let written = tokio::task::spawn_blocking(move || write_durable(&dir, &path, &data))
            .await
            .unwrap_or_else(|e| {
                Err(JournalError::Io {
                    path: "(blocking task)".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        written?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Every piece still to upload, by object name (blocking file I/O).
    pub fn pending(&self) -> Result<Vec<Spooled>, JournalError> {
        let dir = &self.inner.dir;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_none_or(|e| e != SPOOL_EXT) {
                continue;
            }
            let object = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| hex::decode(s).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match object {
                Some(object) => out.push(Spooled { object, path }),
                None => {
                    tracing::warn!(path = %path.display(), "unreadable evidence file set aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        out.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(out)
    }

    /// How many pieces wait for their upload (tests, metrics).
    pub fn pending_count(&self) -> usize {
        self.pending().map_or(0, |v| v.len())
    }
}

/// Timings of the uploader.
#[derive(Debug, Clone)]
pub struct UploaderOptions {
    /// First retry delay after a failed upload; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

enum Read {
    Data(Vec<u8>),
    Expired,
    Gone,
}

fn read_spooled(path: &Path) -> Result<Read, JournalError> {
    let expired = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > EVIDENCE_RETENTION);
    if expired {
        return Ok(Read::Expired);
    }
    match std::fs::read(path) {
        Ok(d) => Ok(Read::Data(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Read::Gone),
        Err(e) => Err(io(path)(e)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(JournalError::Io {
            path: "(blocking task)".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Uploads spooled evidence until `shutdown`: at start (what a previous process left), on
/// every [`EvidenceSpool::keep`], and after a failure with a backoff. A file is deleted only
/// once the store has it.
pub async fn run_uploader(
    spool: EvidenceSpool,
    store: Arc<EvidenceStore>,
    options: UploaderOptions,
    shutdown: CancellationToken,
) {
    let mut backoff = options.min_backoff;
    loop {
        let s = spool.clone();
        let pending = match blocking(move || s.pending()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the evidence spool");
                Vec::new()
            }
        };
        let mut failed = false;
        for piece in pending {
            if shutdown.is_cancelled() {
                return;
            }
            let path = piece.path.clone();
            let data = match blocking(move || read_spooled(&path)).await {
                Ok(Read::Data(d)) => d,
                Ok(Read::Gone) => continue,
                Ok(Read::Expired) => {
                    tracing::warn!(object = %piece.object, "evidence not uploaded in time; dropped");
                    let _ = std::fs::remove_file(&piece.path);
                    continue;
                }
                Err(e) => {
                    tracing::error!(object = %piece.object, error = %e, "cannot read spooled evidence");
                    failed = true;
                    break;
                }
            };
            let uploaded = tokio::select! {
                () = shutdown.cancelled() => return,
                r = store.put(&piece.object, data) => r,
            };
            match uploaded {
                Ok(()) => {
                    backoff = options.min_backoff;
                    tracing::info!(object = %piece.object, "evidence uploaded");
                    if let Err(e) = std::fs::remove_file(&piece.path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        // Uploaded again by the next pass: a put of the same object is harmless.
                        tracing::warn!(object = %piece.object, error = %e, "cannot delete uploaded evidence");
                    }
                }
                Err(e) => {
                    tracing::warn!(object = %piece.object, error = %e, retry_in = ?backoff, "evidence upload failed; kept for a retry");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            if !super::pause(backoff, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(options.max_backoff);
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = spool.inner.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spooled_evidence_survives_reopen_with_its_object_name() {
        let dir = tempfile::tempdir().unwrap();
        let spool = EvidenceSpool::open(dir.path()).unwrap();
        let object = object_name("rack-1", Uuid::from_bytes([7; 16]), 2, "ui_dump.xml");
        spool.keep(&object, b"<hierarchy/>".to_vec()).await.unwrap();
        spool.keep(&object, b"<hierarchy/>".to_vec()).await.unwrap();
        std::fs::write(spool.dir().join("zz.ev"), b"x").unwrap();
        let spool = EvidenceSpool::open(dir.path()).unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 1, "same object once, garbage set aside");
        assert_eq!(pending[0].object, object);
        assert_eq!(std::fs::read(&pending[0].path).unwrap(), b"<hierarchy/>");
    }
}

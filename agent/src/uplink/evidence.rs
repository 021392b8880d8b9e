//! Evidence uploads to the object store `pf_evidence`, under
//! `<queue_item_id>/<attempt>/<name>`. The store is opened lazily (and again after a failure)
//! with `get_object_store`; the coordinator creates it.

use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use phonefarm_shared::subjects;
use tokio::sync::Mutex;
use uuid::Uuid;

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
pub fn object_name(queue_item_id: Uuid, attempt: u32, name: &str) -> String {
    format!("{queue_item_id}/{attempt}/{name}")
}

/// Uploader, shared behind an `Arc`.
pub struct EvidenceStore {
    js: jetstream::Context,
    store: Mutex<Option<ObjectStore>>,
    timeout: Duration,
}

impl std::fmt::Debug for EvidenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EvidenceStore {
    pub fn new(js: jetstream::Context, timeout: Duration) -> Self {
        Self {
            js,
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
                    .get_object_store(subjects::EVIDENCE_BUCKET)
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

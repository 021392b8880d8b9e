//! The flow-pack watcher: flow packs arrive through KV `pf_flows` (key = pack name, value =
//! TOML) and replace the agent's [`PackStore`] for the next run (a run in progress keeps the
//! pack it chose). A pack that does not parse or validate, or that clashes with the others
//! (same name, overlapping versions), is logged and ignored: the previous one stays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use phonefarm_flows::{FlowPack, PackError, PackSet, PackStore};
use phonefarm_shared::subjects;
use tokio_util::sync::CancellationToken;

use super::pause;

/// The packs the agent knows: the local ones (shipped on disk) and those from KV by key.
#[derive(Debug, Clone, Default)]
pub struct PackBook {
    local: Vec<FlowPack>,
    remote: BTreeMap<String, FlowPack>,
}

impl PackBook {
    pub fn new(local: &PackSet) -> Self {
        Self {
            local: local.packs().iter().map(|p| (**p).clone()).collect(),
            remote: BTreeMap::new(),
        }
    }

    /// The set: remote packs, plus local packs no remote pack of the same name replaces.
    pub fn set(&self) -> Result<PackSet, PackError> {
        let mut packs: Vec<FlowPack> = self.remote.values().cloned().collect();
        packs.extend(
            self.local
                .iter()
                .filter(|l| !self.remote.values().any(|r| r.name() == l.name()))
                .cloned(),
        );
        PackSet::new(packs)
    }

    /// Applies a put of `key`: Ok(new set) if it is valid with the others; else the book is
    /// unchanged.
    pub fn put(&mut self, key: &str, toml: &[u8]) -> Result<PackSet, PackError> {
        let text = String::from_utf8_lossy(toml);
        let pack = FlowPack::from_toml_str(&format!("kv:{key}"), &text)?;
        let previous = self.remote.insert(key.to_string(), pack);
        match self.set() {
            Ok(set) => Ok(set),
            Err(e) => {
                match previous {
                    Some(p) => self.remote.insert(key.to_string(), p),
                    None => self.remote.remove(key),
                };
                Err(e)
            }
        }
    }

    /// Applies a delete of `key`.
    pub fn delete(&mut self, key: &str) -> Result<PackSet, PackError> {
        let previous = self.remote.remove(key);
        match self.set() {
            Ok(set) => Ok(set),
            Err(e) => {
                if let Some(p) = previous {
                    self.remote.insert(key.to_string(), p);
                }
                Err(e)
            }
        }
    }
}

/// Watches `pf_flows` until `shutdown`, swapping valid pack sets into `store`.
pub async fn run_pack_watcher(
    js: jetstream::Context,
    agent_id: String,
    mut book: PackBook,
    store: Arc<PackStore>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        let watch = async {
            let kv = js.get_key_value(subjects::FLOWS_BUCKET).await?;
            let w = kv.watch_with_history(">").await?;
            Ok::<_, async_nats::Error>(w)
        };
        let mut watch = match watch.await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(%agent_id, error = %e, "cannot watch the flow-pack bucket");
                if !pause(delay, &shutdown).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        delay = Duration::from_millis(500);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                n = watch.next() => n,
            };
            let entry = match next {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    tracing::warn!(%agent_id, error = %e, "flow-pack watch failed; watching again");
                    break;
                }
                None => break,
            };
            let applied = match entry.operation {
                kv::Operation::Put => book.put(&entry.key, &entry.value),
                kv::Operation::Delete | kv::Operation::Purge => book.delete(&entry.key),
            };
            match applied {
                Ok(set) => {
                    tracing::info!(%agent_id, key = %entry.key, revision = entry.revision, packs = set.packs().len(), "flow packs updated");
                    store.replace(set);
                }
                Err(e) => {
                    tracing::warn!(%agent_id, key = %entry.key, revision = entry.revision, error = %e, "flow pack ignored; keeping the previous packs");
                }
            }
        }
        if !pause(delay, &shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../flowpacks/{name}")),
        )
        .unwrap()
    }

    #[test]
    fn bad_or_clashing_packs_keep_the_previous_set() {
        let local = PackSet::from_sources([("tiktok-32.toml", shipped("tiktok-32.toml").as_str())])
            .unwrap();
        let mut book = PackBook::new(&local);
        assert!(book.put("broken", b"[pack]\nname = 1").is_err());
        assert_eq!(book.set().unwrap().packs().len(), 1);
        let v33 = shipped("tiktok-33.toml");
        let set = book.put("tiktok-33", v33.as_bytes()).unwrap();
        assert_eq!(set.packs().len(), 2);
        // Same versions as tiktok-33 under another name: overlapping ranges are refused.
        let clash = v33.replace("name = \"tiktok-33\"", "name = \"tiktok-33-copy\"");
        assert!(book.put("copy", clash.as_bytes()).is_err());
        assert_eq!(book.set().unwrap().packs().len(), 2);
        // A new revision under the local pack's name replaces it.
        let v32b = shipped("tiktok-32.toml").replace("revision = 1", "revision = 2");
        let set = book.put("tiktok-32", v32b.as_bytes()).unwrap();
        let revs: Vec<u32> = set.packs().iter().map(|p| p.revision()).collect();
        assert!(revs.contains(&2) && set.packs().len() == 2, "{revs:?}");
        let set = book.delete("tiktok-32").unwrap();
        assert!(
            set.packs()
                .iter()
                .any(|p| p.name() == "tiktok-32" && p.revision() == 1)
        );
    }
}

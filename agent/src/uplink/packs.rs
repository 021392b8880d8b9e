//! The flow-pack watcher: signed flow packs arrive through KV `pf_flows` (key = pack name,
//! value = `SignedPack`) and replace the agent's [`PackStore`] for the next run (a run in
//! progress keeps the pack it chose).
//!
//! A pack is applied only if its signer is in the agent's [`PackTrust`] and the ed25519
//! signature verifies over the key and TOML (`phonefarm_shared::pack_signing_input`), the TOML
//! parses and validates, and it does not clash with the other packs (same name, overlapping
//! versions). Anything else is refused and reported: the previous packs stay.
//!
//! The agent reads the bucket through its own consumer `flows-<agent_id>` on `KV_pf_flows`
//! (the bucket's history, oldest first, then every change; the last value per key wins as it
//! would in a KV watch): it may create, pull from and delete that one and no other. (2.9 wants
//! a filter subject for "last per subject", and a filter would put a wildcard in the create
//! request's subject.) What it runs and what it refused go to the coordinator as a `PackReport` on
//! `pf.evt.<agent_id>.packs` whenever that changes and after every reconnect.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use futures::StreamExt as _;
use phonefarm_flows::{FlowPack, PackError, PackSet, PackStore};
use phonefarm_shared::{PackRejected, PackReport, PackRunning, SignedPack, subjects};
use sha2::Digest as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{now_ms, pause, publish_stored};

/// The prefix of a pack key's text form.
pub const KEY_PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the flow-pack trust list {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("flow-pack trust list line {line}: {what}")]
    Line { line: usize, what: String },
}

/// The publisher keys whose flow packs this agent applies. Empty: none from KV.
#[derive(Debug, Clone, Default)]
pub struct PackTrust {
    keys: Vec<VerifyingKey>,
}

/// `ed25519:<base64>` of a public key.
pub fn key_text(key: &VerifyingKey) -> String {
    format!("{KEY_PREFIX}{}", B64.encode(key.as_bytes()))
}

/// Parses `ed25519:<base64 of 32 bytes>`.
pub fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let b64 = text
        .strip_prefix(KEY_PREFIX)
        .ok_or_else(|| format!("a key starts with {KEY_PREFIX}"))?;
    let bytes = B64
        .decode(b64)
        .map_err(|_| "the key is not base64".to_string())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an ed25519 key is 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an ed25519 public key".to_string())
}

impl PackTrust {
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// One key per line (`ed25519:<base64>`, anything after it a comment); blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let token = line.split_whitespace().next().unwrap_or_default();
            keys.push(parse_key(token).map_err(|what| TrustError::Line { line: i + 1, what })?);
        }
        Ok(Self { keys })
    }

    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The TOML of `value` read under `key`, if a trusted key signed it; else why not.
    pub fn verify(&self, key: &str, value: &[u8]) -> Result<String, (Option<String>, String)> {
        let signed = phonefarm_shared::decode::<SignedPack>(value)
            .map_err(|_| (None, "unsigned".to_string()))?;
        let signer_bytes: Option<[u8; 32]> = signed.signer.clone().try_into().ok();
        let signer = signer_bytes.and_then(|b| VerifyingKey::from_bytes(&b).ok());
        let Some(signer) = signer else {
            return Err((None, "bad_signer_key".into()));
        };
        let named = Some(key_text(&signer));
        if !self.keys.contains(&signer) {
            return Err((named, "untrusted_signer".into()));
        }
        let sig = Signature::from_slice(&signed.signature)
            .map_err(|_| (named.clone(), "bad_signature".to_string()))?;
        signer
            .verify_strict(
                &phonefarm_shared::pack_signing_input(key, &signed.toml),
                &sig,
            )
            .map_err(|_| (named, "bad_signature".to_string()))?;
        Ok(signed.toml)
    }
}

struct Remote {
    pack: FlowPack,
    kv_revision: u64,
    sha256: String,
}

/// The packs the agent knows: the local ones (shipped on disk), those from KV by key, and the
/// KV values it refused.
#[derive(Default)]
pub struct PackBook {
    local: Vec<FlowPack>,
    remote: BTreeMap<String, Remote>,
    rejected: BTreeMap<String, PackRejected>,
}

impl std::fmt::Debug for PackBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackBook")
            .field("local", &self.local.len())
            .field("remote", &self.remote.keys().collect::<Vec<_>>())
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl PackBook {
    pub fn new(local: &PackSet) -> Self {
        Self {
            local: local.packs().iter().map(|p| (**p).clone()).collect(),
            ..Self::default()
        }
    }

    /// The set: remote packs, plus local packs no remote pack of the same name replaces.
    pub fn set(&self) -> Result<PackSet, PackError> {
        let mut packs: Vec<FlowPack> = self.remote.values().map(|r| r.pack.clone()).collect();
        packs.extend(
            self.local
                .iter()
                .filter(|l| !self.remote.values().any(|r| r.pack.name() == l.name()))
                .cloned(),
        );
        PackSet::new(packs)
    }

    fn reject(&mut self, key: &str, kv_revision: u64, signer: Option<String>, reason: String) {
        self.rejected.insert(
            key.to_string(),
            PackRejected {
                key: key.to_string(),
                kv_revision,
                signer,
                reason,
            },
        );
    }

    /// Applies a put of `key`: Ok(new set) if it is signed by a trusted key, valid and fits
    /// with the others; else the packs are unchanged and the refusal is remembered.
    pub fn put(
        &mut self,
        trust: &PackTrust,
        key: &str,
        kv_revision: u64,
        value: &[u8],
    ) -> Result<PackSet, PackRejected> {
        let toml = match trust.verify(key, value) {
            Ok(t) => t,
            Err((signer, reason)) => {
                self.reject(key, kv_revision, signer, reason);
                return Err(self.rejected[key].clone());
            }
        };
        let parsed = FlowPack::from_toml_str(&format!("kv:{key}"), &toml);
        let pack = match parsed {
            Ok(p) if p.name() == key => p,
            Ok(p) => {
                let why = format!(
                    "invalid:the pack is named {:?}, not after its key",
                    p.name()
                );
                self.reject(key, kv_revision, None, why);
                return Err(self.rejected[key].clone());
            }
            Err(e) => {
                self.reject(key, kv_revision, None, format!("invalid:{e}"));
                return Err(self.rejected[key].clone());
            }
        };
        let sha256 = hex::encode(sha2::Sha256::digest(toml.as_bytes()));
        // No rollback: a correctly signed but older revision (a replayed value) is refused, as
        // is other content under the revision already running.
        let running = match self.remote.get(key) {
            Some(r) => Some((r.pack.revision(), Some(r.sha256.as_str()))),
            None => self
                .local
                .iter()
                .find(|l| l.name() == key)
                .map(|l| (l.revision(), None)),
        };
        if let Some((current, current_sha)) = running {
            let other_content = current_sha.is_some_and(|s| s != sha256);
            if pack.revision() < current || (pack.revision() == current && other_content) {
                let why = format!(
                    "stale:revision {} does not supersede the running revision {current}",
                    pack.revision()
                );
                self.reject(key, kv_revision, None, why);
                return Err(self.rejected[key].clone());
            }
        }
        let previous = self.remote.insert(
            key.to_string(),
            Remote {
                pack,
                kv_revision,
                sha256,
            },
        );
        match self.set() {
            Ok(set) => {
                self.rejected.remove(key);
                Ok(set)
            }
            Err(e) => {
                match previous {
                    Some(p) => self.remote.insert(key.to_string(), p),
                    None => self.remote.remove(key),
                };
                self.reject(key, kv_revision, None, format!("clash:{e}"));
                Err(self.rejected[key].clone())
            }
        }
    }

    /// Applies a delete of `key` (the local pack of that name, if any, comes back).
    pub fn delete(&mut self, key: &str) -> Result<PackSet, PackError> {
        self.rejected.remove(key);
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

    /// What the agent runs now (sha256 empty for a pack shipped on disk), and what it refused.
    pub fn report(&self) -> (Vec<PackRunning>, Vec<PackRejected>) {
        let mut running: Vec<PackRunning> = self
            .remote
            .iter()
            .map(|(key, r)| PackRunning {
                name: r.pack.name().to_string(),
                revision: r.pack.revision(),
                sha256: r.sha256.clone(),
                kv: Some((key.clone(), r.kv_revision)),
            })
            .collect();
        running.extend(
            self.local
                .iter()
                .filter(|l| !self.remote.values().any(|r| r.pack.name() == l.name()))
                .map(|l| PackRunning {
                    name: l.name().to_string(),
                    revision: l.revision(),
                    sha256: String::new(),
                    kv: None,
                }),
        );
        running.sort_by(|a, b| a.name.cmp(&b.name));
        (running, self.rejected.values().cloned().collect())
    }
}

/// The watcher consumer's configuration.
fn watcher_config(agent_id: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        name: Some(subjects::flows_watcher(agent_id)),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::None,
        // A watcher left by a crashed process goes away by itself.
        inactive_threshold: Duration::from_secs(60),
        ..Default::default()
    }
}

async fn watch(
    js: &jetstream::Context,
    agent_id: &str,
) -> Result<consumer::pull::Stream, async_nats::Error> {
    let stream = subjects::kv_stream(subjects::FLOWS_BUCKET);
    // Start from the bucket's current values: a watcher of an earlier process has moved on.
    let _ = js
        .delete_consumer_from_stream(subjects::flows_watcher(agent_id), &stream)
        .await;
    let consumer = js
        .create_consumer_on_stream(watcher_config(agent_id), &stream)
        .await?;
    Ok(consumer
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

/// Watches `pf_flows` until `shutdown`, swapping valid pack sets into `store` and sending
/// every change of what it runs or refuses to `reports`.
pub async fn run_pack_watcher(
    js: jetstream::Context,
    agent_id: String,
    mut book: PackBook,
    trust: PackTrust,
    store: Arc<PackStore>,
    reports: watch::Sender<(Vec<PackRunning>, Vec<PackRejected>)>,
    shutdown: CancellationToken,
) {
    if trust.is_empty() {
        tracing::warn!(%agent_id, "no flow-pack trust list: packs from the bucket are refused");
    }
    reports.send_replace(book.report());
    let prefix = format!("$KV.{}.", subjects::FLOWS_BUCKET);
    let mut delay = Duration::from_millis(500);
    loop {
        let mut messages = match watch(&js, &agent_id).await {
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
                n = messages.next() => n,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) if e.kind() == consumer::pull::MessagesErrorKind::MissingHeartbeat => {
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(%agent_id, error = %e, "flow-pack watch failed; watching again");
                    break;
                }
                None => break,
            };
            let Some(key) = msg.subject.as_str().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let key = key.to_string();
            let kv_revision = msg.info().map_or(0, |i| i.stream_sequence);
            let deleted = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            if deleted {
                match book.delete(&key) {
                    Ok(set) => {
                        tracing::info!(%agent_id, %key, packs = set.packs().len(), "flow pack removed");
                        store.replace(set);
                    }
                    Err(e) => {
                        tracing::warn!(%agent_id, %key, error = %e, "flow pack removal ignored; keeping the previous packs");
                    }
                }
            } else {
                match book.put(&trust, &key, kv_revision, &msg.payload) {
                    Ok(set) => {
                        tracing::info!(%agent_id, %key, kv_revision, packs = set.packs().len(), "flow packs updated");
                        store.replace(set);
                    }
                    Err(r) => {
                        tracing::warn!(%agent_id, %key, kv_revision, signer = r.signer.as_deref().unwrap_or("-"), reason = %r.reason,
                            "flow pack refused; keeping the previous packs");
                    }
                }
            }
            let report = book.report();
            reports.send_if_modified(|r| {
                let changed = *r != report;
                *r = report;
                changed
            });
        }
        if !pause(delay, &shutdown).await {
            return;
        }
    }
}

/// Publishes a `PackReport` whenever `reports` changes and after every (re)connect, each
/// retried (same msg id) until stored or superseded.
pub async fn run_pack_reports(
    js: jetstream::Context,
    agent_id: String,
    started_at_unix_ms: i64,
    mut reports: watch::Receiver<(Vec<PackRunning>, Vec<PackRejected>)>,
    mut connects: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let subject = subjects::pack_reports(&agent_id);
    let mut seq = 0u64;
    connects.mark_unchanged();
    loop {
        seq += 1;
        let (running, rejected) = reports.borrow_and_update().clone();
        let report = PackReport {
            agent_id: agent_id.clone(),
            seq,
            at_unix_ms: now_ms(),
            running,
            rejected,
        };
        let payload: bytes::Bytes = phonefarm_shared::encode(&report).into();
        let msg_id = format!("packs:{agent_id}:{started_at_unix_ms}:{seq}");
        let mut delay = Duration::from_millis(200);
        loop {
            match publish_stored(&js, &subject, payload.clone(), &msg_id).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(%agent_id, seq, error = %e, "pack report not stored"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                changed = reports.changed() => {
                    if changed.is_err() { return; }
                    break;
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if reports.has_changed().unwrap_or(false) {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = reports.changed() => if changed.is_err() { return; },
            changed = connects.changed() => if changed.is_err() { return; },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn shipped(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../flowpacks/{name}")),
        )
        .unwrap()
    }

    fn sign(key: &SigningKey, kv_key: &str, toml: &str) -> Vec<u8> {
        let sig = key.sign(&phonefarm_shared::pack_signing_input(kv_key, toml));
        phonefarm_shared::encode(&SignedPack {
            toml: toml.into(),
            signer: key.verifying_key().as_bytes().to_vec(),
            signature: sig.to_bytes().to_vec(),
        })
    }

    #[test]
    fn only_packs_signed_by_a_trusted_key_apply() {
        let trusted = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let trust = PackTrust::parse(&format!(
            "# publishers\n\n{} ops laptop\n",
            key_text(&trusted.verifying_key())
        ))
        .unwrap();
        let local = PackSet::from_sources([("tiktok-32.toml", shipped("tiktok-32.toml").as_str())])
            .unwrap();
        let mut book = PackBook::new(&local);
        let v33 = shipped("tiktok-33.toml");

        let r = book
            .put(&trust, "tiktok-33", 1, v33.as_bytes())
            .unwrap_err();
        assert_eq!((r.reason.as_str(), r.signer.clone()), ("unsigned", None));
        let r = book
            .put(&trust, "tiktok-33", 2, &sign(&other, "tiktok-33", &v33))
            .unwrap_err();
        assert_eq!(r.reason, "untrusted_signer");
        assert_eq!(r.signer, Some(key_text(&other.verifying_key())));
        // Signed for another key, or tampered with: the signature does not verify.
        let r = book
            .put(&trust, "tiktok-33", 3, &sign(&trusted, "tiktok-34", &v33))
            .unwrap_err();
        assert_eq!(r.reason, "bad_signature");
        let mut forged: SignedPack =
            phonefarm_shared::decode(&sign(&trusted, "tiktok-33", &v33)).unwrap();
        forged.toml.push_str("\n# changed\n");
        let r = book
            .put(&trust, "tiktok-33", 4, &phonefarm_shared::encode(&forged))
            .unwrap_err();
        assert_eq!(r.reason, "bad_signature");
        assert_eq!(book.set().unwrap().packs().len(), 1, "nothing applied");
        let (running, rejected) = book.report();
        assert_eq!(running.len(), 1);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].kv_revision, 4);

        let set = book
            .put(&trust, "tiktok-33", 5, &sign(&trusted, "tiktok-33", &v33))
            .unwrap();
        assert_eq!(set.packs().len(), 2);
        let (running, rejected) = book.report();
        assert!(rejected.is_empty(), "a good put clears the refusal");
        let r33 = running.iter().find(|p| p.name == "tiktok-33").unwrap();
        assert_eq!(r33.kv, Some(("tiktok-33".into(), 5)));
        assert_eq!(r33.sha256.len(), 64);

        // Valid signatures over bad packs are refused too, keeping what runs.
        let r = book
            .put(
                &trust,
                "broken",
                6,
                &sign(&trusted, "broken", "[pack]\nname = 1"),
            )
            .unwrap_err();
        assert!(r.reason.starts_with("invalid:"), "{}", r.reason);
        let clash = v33.replace("name = \"tiktok-33\"", "name = \"copy\"");
        let r = book
            .put(&trust, "copy", 7, &sign(&trusted, "copy", &clash))
            .unwrap_err();
        assert!(r.reason.starts_with("clash:"), "{}", r.reason);
        let r = book
            .put(&trust, "elsewhere", 8, &sign(&trusted, "elsewhere", &v33))
            .unwrap_err();
        assert!(r.reason.starts_with("invalid:"), "{}", r.reason);
        assert_eq!(book.set().unwrap().packs().len(), 2);

        // A new revision under the local pack's name replaces it; deleting it brings it back.
        let v32b = shipped("tiktok-32.toml").replace("revision = 1", "revision = 2");
        let set = book
            .put(&trust, "tiktok-32", 9, &sign(&trusted, "tiktok-32", &v32b))
            .unwrap();
        assert!(
            set.packs()
                .iter()
                .any(|p| p.name() == "tiktok-32" && p.revision() == 2)
        );
        // An older revision, even correctly signed (a replayed value), is refused, and so is
        // other content under the running revision; the same value again is no change.
        let v32a = shipped("tiktok-32.toml");
        let r = book
            .put(&trust, "tiktok-32", 10, &sign(&trusted, "tiktok-32", &v32a))
            .unwrap_err();
        assert!(r.reason.starts_with("stale:revision 1 "), "{}", r.reason);
        let v32c = v32b.replace("[pack]", "# other content\n[pack]");
        let r = book
            .put(&trust, "tiktok-32", 11, &sign(&trusted, "tiktok-32", &v32c))
            .unwrap_err();
        assert!(r.reason.starts_with("stale:revision 2 "), "{}", r.reason);
        book.put(&trust, "tiktok-32", 12, &sign(&trusted, "tiktok-32", &v32b))
            .expect("the running value again");
        assert!(!book.report().1.iter().any(|r| r.key == "tiktok-32"));
        let set = book.delete("tiktok-32").unwrap();
        assert!(
            set.packs()
                .iter()
                .any(|p| p.name() == "tiktok-32" && p.revision() == 1)
        );
    }

    #[test]
    fn trust_lists_parse_keys_and_refuse_garbage() {
        let k = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let t = PackTrust::parse(&format!("{}\n", key_text(&k))).unwrap();
        assert!(!t.is_empty());
        assert_eq!(parse_key(&key_text(&k)).unwrap(), k);
        for bad in ["ssh-ed25519 AAAA", "ed25519:!!", "ed25519:AAAA"] {
            assert!(
                matches!(PackTrust::parse(bad), Err(TrustError::Line { line: 1, .. })),
                "{bad}"
            );
        }
        assert!(PackTrust::parse("# nothing\n").unwrap().is_empty());
    }
}

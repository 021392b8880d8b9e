//! Signed flow packs for the fleet.
//!
//! - [`publish`] validates a pack (it must parse and validate as agents load it, and its
//!   revision must be above the one published under its name), signs it with the publisher's
//!   ed25519 key over `phonefarm_shared::pack_signing_input(name, toml)` and puts the
//!   `SignedPack` into KV `pf_flows` under the pack's name; agents apply only packs signed by
//!   a key in their trust list (`--flowpack-trust`).
//! - [`run_reports`] reads every agent's `PackReport` (`pf.evt.<agent>.packs`, a durable
//!   consumer of its own) into Postgres and logs each new refusal: who, which, why.
//! - `flowpack list` shows the published revisions and what each agent runs.

pub mod cli;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use futures::StreamExt as _;
use phonefarm_shared::{PackReport, SignedPack, subjects};
use sha2::Digest as _;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::BusHandle;
use crate::db;

/// The prefix of a publisher key's secret file.
const SEED_PREFIX: &str = "ed25519-seed:";
/// The prefix of a public key as agents' trust lists write it.
const KEY_PREFIX: &str = "ed25519:";
/// The coordinators' durable consumer of pack reports on `PF_EVT`.
pub const REPORTS_CONSUMER: &str = "coordinator-packs";

#[derive(Debug, thiserror::Error)]
pub enum FlowPackError {
    /// The I/O error is in the message (not a `source`), so a `{:#}` chain says it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a flow-pack signing key (one line: {SEED_PREFIX}<base64 of 32 bytes>)", .0.display())]
    BadKey(std::path::PathBuf),
    #[error("the pack is not valid: {0}")]
    Invalid(String),
    #[error(
        "{name} revision {revision} is not above the published revision {published}: raise `revision` in the pack"
    )]
    Stale {
        name: String,
        revision: u32,
        published: u32,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("database")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Usage(String),
}

/// `ed25519:<base64>` of a publisher's public key: the line agents put in their trust list.
pub fn public_key_text(key: &SigningKey) -> String {
    format!("{KEY_PREFIX}{}", B64.encode(key.verifying_key().as_bytes()))
}

/// Makes a new publisher key, written to `path` (0600, never overwritten).
pub fn keygen(path: &Path) -> Result<SigningKey, FlowPackError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| FlowPackError::Usage(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    crate::fleet_auth::authority::write_secret(
        path,
        &format!("{SEED_PREFIX}{}\n", B64.encode(seed)),
    )
    .map_err(|e| FlowPackError::Usage(e.to_string()))?;
    Ok(key)
}

/// Reads a publisher key written by [`keygen`].
pub fn load_key(path: &Path) -> Result<SigningKey, FlowPackError> {
    let text = std::fs::read_to_string(path).map_err(|error| FlowPackError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let seed = text
        .trim()
        .strip_prefix(SEED_PREFIX)
        .and_then(|b| B64.decode(b).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| FlowPackError::BadKey(path.to_path_buf()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A pack published.
#[derive(Debug, Clone)]
pub struct Published {
    pub name: String,
    pub revision: u32,
    pub sha256: String,
    pub kv_revision: u64,
    pub signer: String,
}

/// The revision of the pack stored under `name` in `pf_flows`, if any (a value that is not a
/// signed pack counts as none).
async fn published_revision(kv: &jetstream::kv::Store, name: &str) -> Option<u32> {
    let value = kv.get(name).await.ok()??;
    let signed: SignedPack = phonefarm_shared::decode(&value).ok()?;
    phonefarm_flows::FlowPack::from_toml_str("published", &signed.toml)
        .ok()
        .map(|p| p.revision())
}

/// Validates, signs and publishes the pack `toml` (read from `origin`).
pub async fn publish(
    db: &PgPool,
    js: &jetstream::Context,
    key: &SigningKey,
    origin: &str,
    toml: &str,
) -> Result<Published, FlowPackError> {
    let pack = phonefarm_flows::FlowPack::from_toml_str(origin, toml)
        .map_err(|e| FlowPackError::Invalid(e.to_string()))?;
    let name = pack.name().to_string();
    if !subjects::is_bucket_token(&name) {
        return Err(FlowPackError::Invalid(format!(
            "the pack name {name:?} cannot be a KV key: use ASCII letters, digits, '-' and '_'"
        )));
    }
    let kv = js
        .get_key_value(subjects::FLOWS_BUCKET)
        .await
        .map_err(|e| FlowPackError::Nats(format!("opening {}: {e}", subjects::FLOWS_BUCKET)))?;
    if let Some(published) = published_revision(&kv, &name).await
        && published >= pack.revision()
    {
        return Err(FlowPackError::Stale {
            name,
            revision: pack.revision(),
            published,
        });
    }
    let signature = key.sign(&phonefarm_shared::pack_signing_input(&name, toml));
    let value = phonefarm_shared::encode(&SignedPack {
        toml: toml.to_string(),
        signer: key.verifying_key().as_bytes().to_vec(),
        signature: signature.to_bytes().to_vec(),
    });
    let kv_revision = kv
        .put(&name, value.into())
        .await
        .map_err(|e| FlowPackError::Nats(format!("storing {name}: {e}")))?;
    let published = Published {
        name,
        revision: pack.revision(),
        sha256: hex::encode(sha2::Sha256::digest(toml.as_bytes())),
        kv_revision,
        signer: public_key_text(key),
    };
    db::flow_packs::record_publication(
        db,
        &db::flow_packs::Publication {
            name: published.name.clone(),
            revision: i32::try_from(published.revision).unwrap_or(i32::MAX),
            sha256: published.sha256.clone(),
            signer: published.signer.clone(),
            kv_revision: i64::try_from(kv_revision).unwrap_or(i64::MAX),
            published_at: OffsetDateTime::now_utc(),
        },
    )
    .await?;
    tracing::info!(name = %published.name, revision = published.revision, kv_revision, "flow pack published");
    Ok(published)
}

/// Records one report; returns the refusals it adds (logged by the caller).
pub async fn apply_report(
    db: &PgPool,
    agent_id: &str,
    report: &PackReport,
) -> Result<Vec<phonefarm_shared::PackRejected>, sqlx::Error> {
    let at =
        crate::domain::time::from_unix_ms(report.at_unix_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let running = serde_json::to_value(&report.running).unwrap_or_default();
    let rejected = serde_json::to_value(&report.rejected).unwrap_or_default();
    let seq = i64::try_from(report.seq).unwrap_or(i64::MAX);
    let Some(before) =
        db::flow_packs::record_report(db, agent_id, at, seq, &running, &rejected).await?
    else {
        return Ok(Vec::new());
    };
    let before: Vec<phonefarm_shared::PackRejected> =
        serde_json::from_value(before).unwrap_or_default();
    Ok(report
        .rejected
        .iter()
        .filter(|r| !before.contains(r))
        .cloned()
        .collect())
}

fn reports_consumer() -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(REPORTS_CONSUMER.into()),
        filter_subject: subjects::pack_reports("*"),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    }
}

/// Mirrors agents' pack reports into Postgres until `shutdown` (binding again after errors).
pub async fn run_reports(bus: BusHandle, db: PgPool, shutdown: CancellationToken) {
    loop {
        let bound = async {
            let stream = bus.js.get_stream(subjects::EVT_STREAM).await?;
            let c = stream
                .get_or_create_consumer(REPORTS_CONSUMER, reports_consumer())
                .await?;
            Ok::<_, async_nats::Error>(c.messages().await?)
        };
        match bound.await {
            Ok(mut messages) => loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = messages.next() => n,
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "pack reports: pull interrupted");
                        if matches!(
                            e.kind(),
                            consumer::pull::MessagesErrorKind::MissingHeartbeat
                        ) {
                            continue;
                        }
                        break;
                    }
                    None => break,
                };
                handle_report(&db, &msg).await;
            },
            Err(e) => tracing::warn!(error = %e, "cannot read pack reports; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn handle_report(db: &PgPool, msg: &jetstream::Message) {
    let agent = msg
        .subject
        .as_str()
        .strip_prefix("pf.evt.")
        .and_then(|r| r.strip_suffix(".packs"))
        .unwrap_or_default()
        .to_string();
    let ack = match phonefarm_shared::decode::<PackReport>(&msg.payload) {
        Ok(r) if r.agent_id == agent => match apply_report(db, &agent, &r).await {
            Ok(new) => {
                for x in new {
                    tracing::warn!(agent_id = %agent, key = %x.key, kv_revision = x.kv_revision,
                        signer = x.signer.as_deref().unwrap_or("-"), reason = %x.reason,
                        "an agent refused a flow pack (it keeps the packs it has)");
                }
                jetstream::AckKind::Ack
            }
            Err(e) => {
                tracing::warn!(agent_id = %agent, error = %e, "recording a pack report failed");
                jetstream::AckKind::Nak(Some(Duration::from_secs(1)))
            }
        },
        Ok(r) => {
            tracing::warn!(agent_id = %agent, claimed = %r.agent_id, "pack report names another agent; dropped");
            jetstream::AckKind::Term
        }
        Err(e) => {
            tracing::warn!(agent_id = %agent, error = %e, "undecodable pack report; dropped");
            jetstream::AckKind::Term
        }
    };
    if let Err(e) = msg.ack_with(ack).await {
        tracing::debug!(error = %e, "pack report ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub.key");
        let k = keygen(&path).unwrap();
        assert!(keygen(&path).is_err(), "never overwritten");
        assert_eq!(load_key(&path).unwrap().to_bytes(), k.to_bytes());
        assert!(public_key_text(&k).starts_with("ed25519:"));
        std::fs::write(dir.path().join("bad"), "ed25519-seed:AAAA").unwrap();
        assert!(matches!(
            load_key(&dir.path().join("bad")),
            Err(FlowPackError::BadKey(_))
        ));
    }
}

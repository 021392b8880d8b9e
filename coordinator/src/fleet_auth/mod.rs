//! Agents' NATS credentials: NATS decentralized auth (operator → account → user JWTs, ed25519
//! nkeys), nats-server in operator mode with the built-in `full` resolver.
//!
//! - [`authority`]: the trust chain (`nats init`) and the keys the coordinator keeps.
//! - [`jwt`]: JWT claims, signing and `.creds` files.
//! - [`permissions`]: what an agent's user JWT allows (only its own subjects and consumers).
//! - [`enroll`] issues an agent a user JWT signed by the account signing key, records its key
//!   in Postgres and returns the `.creds` text; [`revoke`] records the revocation and
//!   [`push_account`] signs the account JWT again with every revocation in force and pushes it
//!   on `$SYS.REQ.CLAIMS.UPDATE` as the system user: the resolver stores it and the server
//!   closes the revoked user's connections at once, without a restart. The serving coordinator
//!   pushes it at start too, so a revocation recorded while NATS was away takes effect then.

pub mod authority;
pub mod cli;
pub mod jwt;
pub mod permissions;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

pub use authority::{Authority, AuthorityError, Issued};

use crate::bus::{LinkError, NatsCredentials, NatsLink};
use crate::db;

/// Key of the advisory lock serializing account JWT pushes (the last push carries every
/// revocation recorded before it).
const PUSH_LOCK: i64 = 0x5046_4e41_5453; // "PFNATS"

#[derive(Debug, thiserror::Error)]
pub enum FleetAuthError {
    #[error("agent id {0:?} cannot be enrolled: use ASCII letters, digits, '-' and '_' (1 to 64)")]
    BadAgentId(String),
    #[error(
        "agent {agent_id} holds a credential in force ({user_key}); enroll it with --replace to issue a new one and revoke that one"
    )]
    InForce { agent_id: String, user_key: String },
    #[error("agent {0} holds no credential in force")]
    NothingToRevoke(String),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error("database")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("pushing the account JWT: {0}")]
    Push(String),
    #[error("{0}")]
    Usage(String),
}

/// Options of one enrollment.
#[derive(Debug, Clone, Default)]
pub struct EnrollOptions {
    /// The credential expires this long after issue (None: never).
    pub valid_for: Option<Duration>,
    /// Revoke a credential in force and issue a new one.
    pub replace: bool,
}

/// An enrollment done: the new credential and the keys it replaced (revoked: push the
/// account JWT).
#[derive(Debug)]
pub struct Enrolled {
    pub issued: Issued,
    pub replaced: Vec<String>,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Issues `agent_id` a NATS user allowed only its own subjects and consumers.
pub async fn enroll(
    db: &PgPool,
    authority: &Authority,
    agent_id: &str,
    options: &EnrollOptions,
) -> Result<Enrolled, FleetAuthError> {
    if !phonefarm_shared::subjects::is_bucket_token(agent_id) {
        return Err(FleetAuthError::BadAgentId(agent_id.into()));
    }
    // Whole seconds: JWT times are, and a revocation covers keys issued at or before it.
    let now = unix(OffsetDateTime::now_utc());
    let expires_at = options
        .valid_for
        .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    let issued = authority.issue(
        agent_id,
        permissions::agent_publish(agent_id),
        permissions::agent_subscribe(agent_id),
        now,
        expires_at,
    )?;
    let mut tx = db.begin().await?;
    let recorded = db::agent_credentials::record(
        &mut tx,
        &db::agent_credentials::NewCredential {
            agent_id,
            user_key: &issued.user_key,
            signing_key: &authority.signing_key(),
            issued_at: at(now),
            expires_at: expires_at.map(at),
        },
        options.replace,
    )
    .await?;
    match recorded {
        db::agent_credentials::Recorded::InForce { user_key } => Err(FleetAuthError::InForce {
            agent_id: agent_id.into(),
            user_key,
        }),
        db::agent_credentials::Recorded::Stored { replaced } => {
            tx.commit().await?;
            tracing::info!(agent_id, user_key = %issued.user_key, ?expires_at, "agent enrolled");
            Ok(Enrolled { issued, replaced })
        }
    }
}

/// Records the revocation of every credential of `agent_id` in force (push the account JWT
/// next); returns the revoked keys.
pub async fn revoke(db: &PgPool, agent_id: &str) -> Result<Vec<String>, FleetAuthError> {
    let keys = db::agent_credentials::revoke(db, agent_id, OffsetDateTime::now_utc()).await?;
    if keys.is_empty() {
        return Err(FleetAuthError::NothingToRevoke(agent_id.into()));
    }
    tracing::info!(agent_id, keys = keys.len(), "agent credentials revoked");
    Ok(keys)
}

/// Signs the account JWT with every revocation in force and pushes it to the NATS resolver as
/// the system user (over `link`'s servers and TLS settings). Pushes are serialized across
/// coordinators, so the last one carries every revocation recorded before it.
pub async fn push_account(
    db: &PgPool,
    authority: &Authority,
    link: &NatsLink,
) -> Result<(), FleetAuthError> {
    let system = NatsCredentials::CredsFile(authority.system_creds());
    let opts = link
        .options_as(&system)
        .await?
        .name("phonefarm-coordinator-system");
    let client = link.connect(opts).await?;
    let mut conn = db.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PUSH_LOCK)
        .execute(&mut *conn)
        .await?;
    let pushed = async {
        let now = OffsetDateTime::now_utc();
        let revocations: BTreeMap<String, i64> =
            db::agent_credentials::revocations(&mut *conn, now)
                .await?
                .into_iter()
                .map(|(k, t)| (k, unix(t)))
                .collect();
        let token = authority.account_jwt(&revocations, unix(now))?;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.request("$SYS.REQ.CLAIMS.UPDATE", token.into()),
        )
        .await
        .map_err(|_| FleetAuthError::Push("no answer from the NATS resolver within 10 s".into()))?
        .map_err(|e| FleetAuthError::Push(e.to_string()))?;
        check_reply(&reply.payload)?;
        tracing::info!(revocations = revocations.len(), "account JWT pushed");
        Ok::<(), FleetAuthError>(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PUSH_LOCK)
        .execute(&mut *conn)
        .await;
    let _ = client.drain().await;
    pushed
}

/// Reads the resolver's answer: `{"data": {"code": 200, ...}}` or `{"error": {...}}`.
fn check_reply(payload: &[u8]) -> Result<(), FleetAuthError> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|_| FleetAuthError::Push("the resolver's answer is not JSON".into()))?;
    if let Some(e) = v.get("error") {
        let what = e
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("refused");
        return Err(FleetAuthError::Push(format!(
            "the resolver refused it: {what}"
        )));
    }
    match v.pointer("/data/code").and_then(|c| c.as_i64()) {
        Some(200) => Ok(()),
        other => Err(FleetAuthError::Push(format!(
            "unexpected answer from the resolver (code {other:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_answers() {
        assert!(
            check_reply(br#"{"data":{"account":"A","code":200,"message":"jwt updated"}}"#).is_ok()
        );
        let refused =
            check_reply(br#"{"error":{"account":"A","code":500,"description":"not trusted"}}"#);
        assert!(matches!(refused, Err(FleetAuthError::Push(m)) if m.contains("not trusted")));
        assert!(check_reply(b"nope").is_err());
        assert!(check_reply(br#"{"data":{"code":202}}"#).is_err());
    }
}

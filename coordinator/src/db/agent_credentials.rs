//! The `agent_credentials` table: NATS user keys issued to agents, and their revocations.
//! Only public keys are stored; the seed goes into the agent's `.creds` file and nowhere else.

use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;

/// One issued credential.
pub struct NewCredential<'a> {
    pub agent_id: &'a str,
    pub user_key: &'a str,
    pub signing_key: &'a str,
    pub issued_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// What became of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; these earlier keys of the agent were revoked in its place.
    Stored { replaced: Vec<String> },
    /// The agent holds a credential in force (not revoked, not expired) and no replacement
    /// was asked for.
    InForce { user_key: String },
}

/// Records `c` in the caller's transaction. An earlier credential of the agent in force is
/// revoked if `replace` (an expired one always is); otherwise nothing is written.
pub async fn record(
    tx: &mut PgConnection,
    c: &NewCredential<'_>,
    replace: bool,
) -> Result<Recorded, sqlx::Error> {
    let current: Option<(String, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT user_key, expires_at FROM agent_credentials \
         WHERE agent_id = $1 AND revoked_at IS NULL FOR UPDATE",
    )
    .bind(c.agent_id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut replaced = Vec::new();
    if let Some((user_key, expires_at)) = current {
        let expired = expires_at.is_some_and(|e| e <= c.issued_at);
        if !replace && !expired {
            return Ok(Recorded::InForce { user_key });
        }
        sqlx::query("UPDATE agent_credentials SET revoked_at = $2 WHERE user_key = $1")
            .bind(&user_key)
            .bind(c.issued_at)
            .execute(&mut *tx)
            .await?;
        replaced.push(user_key);
    }
    sqlx::query(
        "INSERT INTO agent_credentials (user_key, agent_id, signing_key, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(c.user_key)
    .bind(c.agent_id)
    .bind(c.signing_key)
    .bind(c.issued_at)
    .bind(c.expires_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO agents (agent_id, enrolled_at, updated_at) VALUES ($1, $2, $2) \
         ON CONFLICT (agent_id) DO UPDATE SET enrolled_at = COALESCE(agents.enrolled_at, $2)",
    )
    .bind(c.agent_id)
    .bind(c.issued_at)
    .execute(&mut *tx)
    .await?;
    Ok(Recorded::Stored { replaced })
}

/// Revokes every credential of `agent_id` in force; returns their keys (none: nothing to do).
pub async fn revoke<'e>(
    db: impl PgExecutor<'e>,
    agent_id: &str,
    at: OffsetDateTime,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "UPDATE agent_credentials SET revoked_at = $2 \
         WHERE agent_id = $1 AND revoked_at IS NULL RETURNING user_key",
    )
    .bind(agent_id)
    .bind(at)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}

/// The revocations the account JWT must carry at `now`: every revoked key that could still be
/// presented (no expiry, or not expired yet), with when it was revoked.
pub async fn revocations<'e>(
    db: impl PgExecutor<'e>,
    now: OffsetDateTime,
) -> Result<Vec<(String, OffsetDateTime)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_key, revoked_at FROM agent_credentials \
         WHERE revoked_at IS NOT NULL AND (expires_at IS NULL OR expires_at > $1) \
         ORDER BY user_key",
    )
    .bind(now)
    .fetch_all(db)
    .await
}

/// One line of `agent list`: an agent with its latest credential and what the fleet mirror
/// knows of it.
#[derive(Debug, Clone, FromRow)]
pub struct EnrolledAgent {
    pub agent_id: String,
    pub user_key: Option<String>,
    pub issued_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub online: bool,
    pub last_seen_at: Option<OffsetDateTime>,
}

/// Every agent that holds or held a credential, or was seen on the bus, with its latest
/// credential.
pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<EnrolledAgent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.agent_id, c.user_key, c.issued_at, c.expires_at, c.revoked_at, \
                COALESCE(g.online, false) AS online, g.last_seen_at \
         FROM (SELECT agent_id FROM agents UNION SELECT agent_id FROM agent_credentials) a \
         LEFT JOIN LATERAL (SELECT user_key, issued_at, expires_at, revoked_at \
                            FROM agent_credentials WHERE agent_id = a.agent_id \
                            ORDER BY issued_at DESC, revoked_at DESC NULLS FIRST LIMIT 1) c ON true \
         LEFT JOIN agents g ON g.agent_id = a.agent_id \
         ORDER BY a.agent_id",
    )
    .fetch_all(db)
    .await
}

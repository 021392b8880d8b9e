//! The `console_sessions` table: signed-in operators. Only the SHA-256 of a session id is
//! stored; a session counts while it is not revoked, not expired, used within the idle time,
//! and its API key is not revoked.

use sqlx::PgExecutor;
use time::OffsetDateTime;

pub struct New<'a> {
    pub id_hash: &'a [u8],
    pub key_name: &'a str,
    pub role: &'a str,
    pub csrf_token: &'a str,
    pub address: Option<&'a str>,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub async fn insert<'e>(db: impl PgExecutor<'e>, s: &New<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, key_name, role, csrf_token, address, created_at, \
         last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(s.id_hash)
    .bind(s.key_name)
    .bind(s.role)
    .bind(s.csrf_token)
    .bind(s.address)
    .bind(s.now)
    .bind(s.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The live session `id_hash` as (key name, role, CSRF token); with `touch`, its
/// `last_seen_at` becomes `now`.
pub async fn live<'e>(
    db: impl PgExecutor<'e>,
    id_hash: &[u8],
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
    touch: bool,
) -> Result<Option<(String, String, String)>, sqlx::Error> {
    const VALID: &str = "s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
        AND s.last_seen_at > $3 AND NOT EXISTS (SELECT 1 FROM api_keys k \
        WHERE k.name = s.key_name AND k.revoked_at IS NOT NULL)";
    let sql = if touch {
        format!(
            "UPDATE console_sessions s SET last_seen_at = $2 WHERE {VALID} \
             RETURNING s.key_name, s.role, s.csrf_token"
        )
    } else {
        format!("SELECT s.key_name, s.role, s.csrf_token FROM console_sessions s WHERE {VALID}")
    };
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(db)
        .await
}

pub async fn revoke<'e>(
    db: impl PgExecutor<'e>,
    id_hash: &[u8],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE console_sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// A live session as the sessions page shows it (no id, no hash).
#[derive(Debug, sqlx::FromRow)]
pub struct Listed {
    pub r#ref: i64,
    pub key_name: String,
    pub role: String,
    pub address: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Whether it is the session `mine` of [`list_live`].
    pub mine: bool,
}

/// The live sessions (as [`live`] counts them), most recently seen first, at most 500.
pub async fn list_live<'e>(
    db: impl PgExecutor<'e>,
    mine: &[u8],
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.ref, s.key_name, s.role, s.address, s.created_at, s.last_seen_at, \
           s.expires_at, s.id_hash = $1 AS mine FROM console_sessions s \
         WHERE s.revoked_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3 \
           AND NOT EXISTS (SELECT 1 FROM api_keys k \
                           WHERE k.name = s.key_name AND k.revoked_at IS NOT NULL) \
         ORDER BY s.last_seen_at DESC, s.ref DESC LIMIT 500",
    )
    .bind(mine)
    .bind(now)
    .bind(idle_since)
    .fetch_all(db)
    .await
}

/// Revokes the session with handle `r`; its key name, or `None` if there is no such session
/// not revoked yet.
pub async fn revoke_ref<'e>(
    db: impl PgExecutor<'e>,
    r: i64,
    now: OffsetDateTime,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE console_sessions SET revoked_at = $2 WHERE ref = $1 AND revoked_at IS NULL \
         RETURNING key_name",
    )
    .bind(r)
    .bind(now)
    .fetch_optional(db)
    .await
}

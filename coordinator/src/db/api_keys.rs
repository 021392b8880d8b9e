//! The `api_keys` table. Only SHA-256 hashes of keys are stored.

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub system: Option<String>,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
    key_hash: &[u8],
    prefix: &str,
    role: &str,
    system: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, prefix, role, system) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(name)
    .bind(key_hash)
    .bind(prefix)
    .bind(role)
    .bind(system)
    .execute(db)
    .await?;
    Ok(id)
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, prefix, role, system, created_at, revoked_at FROM api_keys ORDER BY created_at",
    )
    .fetch_all(db)
    .await
}

/// Revokes a key by name; false if there was no such active key.
pub async fn revoke<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The active key with this hash: (role, system).
pub async fn find_active<'e>(
    db: impl PgExecutor<'e>,
    key_hash: &[u8],
) -> Result<Option<(String, Option<String>, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT role, system, name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(db)
    .await
}

pub async fn any_active<'e>(db: impl PgExecutor<'e>) -> Result<bool, sqlx::Error> {
    let (n,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
            .fetch_one(db)
            .await?;
    Ok(n)
}

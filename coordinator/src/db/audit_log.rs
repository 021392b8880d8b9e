//! The `audit_log` table: operators' actions from the console and the API, newest first.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;

pub struct New<'a> {
    pub at: OffsetDateTime,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub address: Option<&'a str>,
    /// `console` or `api`.
    pub via: &'a str,
    pub detail: &'a Value,
}

pub async fn insert<'e>(db: impl PgExecutor<'e>, e: &New<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, address, via, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at)
    .bind(e.actor)
    .bind(e.action)
    .bind(e.target)
    .bind(e.address)
    .bind(e.via)
    .bind(e.detail)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
pub struct Row {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub address: Option<String>,
    pub via: String,
    pub detail: Value,
}

/// Up to `limit` entries older than id `before` (all when `None`), newest first.
pub async fn newest<'e>(
    db: impl PgExecutor<'e>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor, action, target, address, via, detail FROM audit_log \
         WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

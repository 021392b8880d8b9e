//! The `flow_pack_publications` and `agent_flow_packs` tables: signed packs published to the
//! fleet, and the latest report of what each agent runs and refused.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;

#[derive(Debug, Clone, FromRow)]
pub struct Publication {
    pub name: String,
    pub revision: i32,
    pub sha256: String,
    pub signer: String,
    pub kv_revision: i64,
    pub published_at: OffsetDateTime,
}

pub async fn record_publication<'e>(
    db: impl PgExecutor<'e>,
    p: &Publication,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flow_pack_publications (name, revision, sha256, signer, kv_revision, published_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name, revision) DO UPDATE SET sha256 = $3, signer = $4, kv_revision = $5, \
           published_at = $6",
    )
    .bind(&p.name)
    .bind(p.revision)
    .bind(&p.sha256)
    .bind(&p.signer)
    .bind(p.kv_revision)
    .bind(p.published_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The latest publication of every pack.
pub async fn latest_publications<'e>(
    db: impl PgExecutor<'e>,
) -> Result<Vec<Publication>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT ON (name) name, revision, sha256, signer, kv_revision, published_at \
         FROM flow_pack_publications ORDER BY name, revision DESC",
    )
    .fetch_all(db)
    .await
}

/// Stores an agent's report if it is newer than the stored one; returns the rejections stored
/// before it (None: the report was older and ignored).
pub async fn record_report<'e>(
    db: impl PgExecutor<'e>,
    agent_id: &str,
    at: OffsetDateTime,
    seq: i64,
    running: &Value,
    rejected: &Value,
) -> Result<Option<Value>, sqlx::Error> {
    let row: Option<(Option<Value>,)> = sqlx::query_as(
        "WITH old AS (SELECT rejected FROM agent_flow_packs WHERE agent_id = $1) \
         INSERT INTO agent_flow_packs AS a (agent_id, report_at, report_seq, running, rejected) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (agent_id) DO UPDATE SET report_at = $2, report_seq = $3, running = $4, \
           rejected = $5 \
         WHERE (a.report_at, a.report_seq) < ($2, $3) \
         RETURNING (SELECT rejected FROM old)",
    )
    .bind(agent_id)
    .bind(at)
    .bind(seq)
    .bind(running)
    .bind(rejected)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(old,)| old.unwrap_or(Value::Array(Vec::new()))))
}

#[derive(Debug, Clone, FromRow)]
pub struct AgentPacks {
    pub agent_id: String,
    pub report_at: OffsetDateTime,
    pub running: Value,
    pub rejected: Value,
}

pub async fn agents<'e>(db: impl PgExecutor<'e>) -> Result<Vec<AgentPacks>, sqlx::Error> {
    sqlx::query_as(
        "SELECT agent_id, report_at, running, rejected FROM agent_flow_packs ORDER BY agent_id",
    )
    .fetch_all(db)
    .await
}

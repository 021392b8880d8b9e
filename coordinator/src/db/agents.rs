//! The `agents` table: the fleet mirror of agent presence (KV `pf_agents`).

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;

#[derive(Debug, Clone, FromRow)]
pub struct AgentRow {
    pub agent_id: String,
    pub version: Option<String>,
    pub host: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub last_seen_at: Option<OffsetDateTime>,
    pub online: bool,
    pub phone_count: i32,
    pub enrolled_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

macro_rules! agent_columns {
    () => {
        "agent_id, version, host, started_at, last_seen_at, online, phone_count, enrolled_at, updated_at"
    };
}

pub struct PresenceWrite<'a> {
    pub agent_id: &'a str,
    pub version: &'a str,
    pub host: &'a str,
    pub started_at: Option<OffsetDateTime>,
    pub phones: i32,
    pub seen_at: OffsetDateTime,
    /// `last_seen_at` alone is refreshed only when the stored one is older than this.
    pub refresh_after_seconds: f64,
}

/// Writes a presence report only when something changed: the agent is new, came back
/// online, reports other facts, or its stored `last_seen_at` is older than the refresh
/// interval. Returns true if a row was written.
pub async fn upsert_presence<'e>(
    db: impl PgExecutor<'e>,
    p: &PresenceWrite<'_>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO agents (agent_id, version, host, started_at, last_seen_at, online, phone_count, \
           enrolled_at, updated_at) VALUES ($1, $2, $3, $4, $5, true, $6, $5, $5) \
         ON CONFLICT (agent_id) DO UPDATE SET version = EXCLUDED.version, host = EXCLUDED.host, \
           started_at = EXCLUDED.started_at, last_seen_at = GREATEST(agents.last_seen_at, EXCLUDED.last_seen_at), \
           online = true, phone_count = EXCLUDED.phone_count, \
           enrolled_at = COALESCE(agents.enrolled_at, EXCLUDED.enrolled_at), \
           updated_at = CASE WHEN agents.version IS DISTINCT FROM EXCLUDED.version \
                               OR agents.host IS DISTINCT FROM EXCLUDED.host \
                               OR agents.started_at IS DISTINCT FROM EXCLUDED.started_at \
                               OR agents.phone_count <> EXCLUDED.phone_count \
                               OR NOT agents.online \
                             THEN EXCLUDED.updated_at ELSE agents.updated_at END \
         WHERE agents.version IS DISTINCT FROM EXCLUDED.version \
            OR agents.host IS DISTINCT FROM EXCLUDED.host \
            OR agents.started_at IS DISTINCT FROM EXCLUDED.started_at \
            OR agents.phone_count <> EXCLUDED.phone_count \
            OR NOT agents.online OR agents.enrolled_at IS NULL \
            OR agents.last_seen_at IS NULL \
            OR agents.last_seen_at < EXCLUDED.last_seen_at - make_interval(secs => $7)",
    )
    .bind(p.agent_id)
    .bind(p.version)
    .bind(p.host)
    .bind(p.started_at)
    .bind(p.seen_at)
    .bind(p.phones)
    .bind(p.refresh_after_seconds)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Online agents: (id, stored last_seen_at).
pub async fn online<'e>(
    db: impl PgExecutor<'e>,
) -> Result<Vec<(String, Option<OffsetDateTime>)>, sqlx::Error> {
    sqlx::query_as("SELECT agent_id, last_seen_at FROM agents WHERE online")
        .fetch_all(db)
        .await
}

/// Marks agents offline (their phones count as offline with them); returns those changed.
pub async fn mark_offline<'e>(
    db: impl PgExecutor<'e>,
    ids: &[String],
    now: OffsetDateTime,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "UPDATE agents SET online = false, updated_at = $2 WHERE agent_id = ANY($1) AND online \
         RETURNING agent_id",
    )
    .bind(ids)
    .bind(now)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<AgentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        agent_columns!(),
        " FROM agents ORDER BY agent_id"
    ))
    .fetch_all(db)
    .await
}

/// Every agent id ever seen (enrollment at start-up re-creates their consumers).
pub async fn ids<'e>(db: impl PgExecutor<'e>) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT agent_id FROM agents ORDER BY agent_id")
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// Inventory ordering guard: records (at, seq) if newer than the stored report; false if the
/// report is older than one already applied (a redelivery out of order).
pub async fn advance_inventory<'e>(
    db: impl PgExecutor<'e>,
    agent_id: &str,
    at: OffsetDateTime,
    seq: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO agents (agent_id, inventory_at, inventory_seq) VALUES ($1, $2, $3) \
         ON CONFLICT (agent_id) DO UPDATE SET inventory_at = EXCLUDED.inventory_at, \
           inventory_seq = EXCLUDED.inventory_seq \
         WHERE agents.inventory_at IS NULL \
            OR (agents.inventory_at, agents.inventory_seq) < (EXCLUDED.inventory_at, EXCLUDED.inventory_seq)",
    )
    .bind(agent_id)
    .bind(at)
    .bind(seq)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

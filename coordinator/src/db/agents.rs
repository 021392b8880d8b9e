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
}

/// Writes a presence report only when something changed: the agent is new, is marked
/// offline, or reports other facts (version, host, start time, phone count). A heartbeat that
/// changes nothing writes nothing, not even `last_seen_at` (every replica keeps the latest
/// heartbeats in memory, `bus::fleet::Heartbeats`), and locks no row: the update filters
/// before it touches one and the insert runs only for an agent this snapshot does not know (if
/// another transaction inserted it meanwhile, the conflict path applies the same conditional
/// update). Returns true if a row was written.
pub async fn upsert_presence<'e>(
    db: impl PgExecutor<'e>,
    p: &PresenceWrite<'_>,
) -> Result<bool, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "WITH upd AS ( \
           UPDATE agents SET version = $2, host = $3, started_at = $4, \
             last_seen_at = GREATEST(last_seen_at, $5), online = true, phone_count = $6, \
             enrolled_at = COALESCE(enrolled_at, $5), \
             updated_at = CASE WHEN version IS DISTINCT FROM $2 OR host IS DISTINCT FROM $3 \
                                 OR started_at IS DISTINCT FROM $4 OR phone_count <> $6 OR NOT online \
                               THEN $5 ELSE updated_at END \
           WHERE agent_id = $1 \
             AND (version IS DISTINCT FROM $2 OR host IS DISTINCT FROM $3 \
                  OR started_at IS DISTINCT FROM $4 OR phone_count <> $6 OR NOT online \
                  OR enrolled_at IS NULL OR last_seen_at IS NULL) \
           RETURNING 1), \
         ins AS ( \
           INSERT INTO agents (agent_id, version, host, started_at, last_seen_at, online, phone_count, \
             enrolled_at, updated_at) \
           SELECT $1, $2, $3, $4, $5, true, $6, $5, $5 \
           WHERE NOT EXISTS (SELECT 1 FROM agents WHERE agent_id = $1) \
           ON CONFLICT (agent_id) DO UPDATE SET version = $2, host = $3, started_at = $4, \
             last_seen_at = GREATEST(agents.last_seen_at, $5), online = true, phone_count = $6, \
             enrolled_at = COALESCE(agents.enrolled_at, $5), updated_at = $5 \
           WHERE agents.version IS DISTINCT FROM $2 OR agents.host IS DISTINCT FROM $3 \
              OR agents.started_at IS DISTINCT FROM $4 OR agents.phone_count <> $6 \
              OR NOT agents.online OR agents.enrolled_at IS NULL OR agents.last_seen_at IS NULL \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)",
    )
    .bind(p.agent_id)
    .bind(p.version)
    .bind(p.host)
    .bind(p.started_at)
    .bind(p.seen_at)
    .bind(p.phones)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
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

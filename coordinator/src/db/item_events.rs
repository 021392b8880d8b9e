//! The `queue_item_events` table: every milestone of every attempt. The unique key
//! `(queue_item_id, attempt, seq)` makes a replayed agent event a no-op. Coordinator-side
//! events (dispatched, cancel requested, lease lapsed, …) use attempt 0.

use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub attempt: i32,
    pub seq: i64,
    pub kind: String,
    pub at: OffsetDateTime,
    pub payload: Value,
}

/// Records an agent event; false if `(item, attempt, seq)` was recorded before (a replay).
pub async fn insert_agent_event(
    conn: &mut PgConnection,
    queue_item_id: Uuid,
    attempt: i32,
    seq: i64,
    kind: &str,
    at: OffsetDateTime,
    payload: &Value,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (queue_item_id, attempt, seq) DO NOTHING",
    )
    .bind(queue_item_id)
    .bind(attempt)
    .bind(seq)
    .bind(kind)
    .bind(at)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Whether `(queue_item_id, attempt, seq)` is recorded. The ingester asks it for the
/// predecessor of an agent event, so a run's events are applied in their seq order.
pub async fn has_seq(
    conn: &mut PgConnection,
    queue_item_id: Uuid,
    attempt: i32,
    seq: i64,
) -> Result<bool, sqlx::Error> {
    let (found,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM queue_item_events \
                        WHERE queue_item_id = $1 AND attempt = $2 AND seq = $3)",
    )
    .bind(queue_item_id)
    .bind(attempt)
    .bind(seq)
    .fetch_one(conn)
    .await?;
    Ok(found)
}

/// The whole history of an item, in order.
pub async fn for_item<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, seq, kind, at, payload FROM queue_item_events \
         WHERE queue_item_id = $1 ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

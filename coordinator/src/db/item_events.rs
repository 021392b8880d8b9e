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

/// What [`record_agent_event`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Recorded {
    /// The predecessor `(item, attempt, seq - 1)` is recorded (always true for seq 1).
    pub predecessor: bool,
    /// The event itself was recorded before (a replay).
    pub existed: bool,
    /// This call recorded it.
    pub inserted: bool,
}

/// Records an agent event if its predecessor is recorded (or `anyway`), in one statement that
/// also says whether the predecessor and the event itself were there. A replay inserts
/// nothing (unique `(item, attempt, seq)`).
#[allow(clippy::too_many_arguments)]
pub async fn record_agent_event(
    conn: &mut PgConnection,
    queue_item_id: Uuid,
    attempt: i32,
    seq: i64,
    kind: &str,
    at: OffsetDateTime,
    payload: &Value,
    anyway: bool,
) -> Result<Recorded, sqlx::Error> {
    sqlx::query_as(
        "WITH f AS ( \
           SELECT $3 <= 1 OR EXISTS (SELECT 1 FROM queue_item_events \
                                     WHERE queue_item_id = $1 AND attempt = $2 AND seq = $3 - 1) \
                    AS predecessor, \
                  EXISTS (SELECT 1 FROM queue_item_events \
                          WHERE queue_item_id = $1 AND attempt = $2 AND seq = $3) AS existed), \
         i AS ( \
           INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
           SELECT $1, $2, $3, $4, $5, $6 FROM f WHERE (f.predecessor OR $7) AND NOT f.existed \
           ON CONFLICT (queue_item_id, attempt, seq) DO NOTHING RETURNING 1) \
         SELECT f.predecessor, f.existed, EXISTS (SELECT 1 FROM i) AS inserted FROM f",
    )
    .bind(queue_item_id)
    .bind(attempt)
    .bind(seq)
    .bind(kind)
    .bind(at)
    .bind(payload)
    .bind(anyway)
    .fetch_one(conn)
    .await
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

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

/// The CTEs `f` and `i` of recording an agent event ($1 item, $2 attempt, $3 seq, $4 kind, $5 at,
/// $6 payload, $7 anyway): `f` says whether the predecessor (seq - 1) and the event itself are
/// recorded, reading from `$from` (`""`, or a CTE that yields a row only when the event may be
/// recorded at all); `i` inserts the event if its predecessor is there (or `anyway`) and it is
/// not. Shared by [`record_agent_event`] and [`record_running_milestone`].
macro_rules! record_ctes {
    ($from:literal) => {
        concat!(
            "f AS ( \
               SELECT $3 <= 1 OR EXISTS (SELECT 1 FROM queue_item_events \
                                         WHERE queue_item_id = $1 AND attempt = $2 AND seq = $3 - 1) \
                        AS predecessor, \
                      EXISTS (SELECT 1 FROM queue_item_events \
                              WHERE queue_item_id = $1 AND attempt = $2 AND seq = $3) AS existed ",
            $from,
            "), \
             i AS ( \
               INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
               SELECT $1, $2, $3, $4, $5, $6 FROM f WHERE (f.predecessor OR $7) AND NOT f.existed \
               ON CONFLICT (queue_item_id, attempt, seq) DO NOTHING RETURNING 1)"
        )
    };
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
    sqlx::query_as(concat!(
        "WITH ",
        record_ctes!(""),
        " SELECT f.predecessor, f.existed, EXISTS (SELECT 1 FROM i) AS inserted FROM f"
    ))
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

/// A milestone of a run under way, for [`record_running_milestone`].
#[derive(Debug, Clone, Copy)]
pub struct RunningMilestone<'a> {
    pub queue_item_id: Uuid,
    pub attempt: i32,
    /// The agent that must hold the item.
    pub agent_id: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    pub at: OffsetDateTime,
    pub payload: &'a Value,
    /// Record it even if its predecessor is not recorded.
    pub anyway: bool,
    /// The lease is renewed (to `lease_until`, never shortened) only if it ends before this.
    pub renew_below: OffsetDateTime,
    pub lease_until: OffsetDateTime,
    /// Progress counters, merged into `result.progress` if the milestone is recorded.
    pub progress: Option<&'a Value>,
}

/// Applies a milestone of a run under way in one statement (so in one transaction of its
/// own, without BEGIN and COMMIT round trips): only if the item is EXECUTING at the
/// milestone's attempt on its agent, which the statement locks (`FOR UPDATE`; no other row
/// lock is taken, so it cannot deadlock with writers in the process-then-items order). Then,
/// as [`record_agent_event`]: the milestone is recorded if its predecessor is (or `anyway`);
/// the lease is renewed if it is due and the milestone was recorded or is ahead of its
/// predecessor (it proves the run is alive); progress is merged if it was recorded.
///
/// `None`, having changed nothing, when the item is unknown, not EXECUTING, at another
/// attempt or held by another agent: the caller takes the general path.
pub async fn record_running_milestone(
    conn: &mut PgConnection,
    m: &RunningMilestone<'_>,
) -> Result<Option<Recorded>, sqlx::Error> {
    sqlx::query_as(concat!(
        "WITH it AS ( \
           SELECT queue_item_id FROM queue_items \
           WHERE queue_item_id = $1 AND state = 'EXECUTING' AND attempt = $2 AND agent_id = $8 \
           FOR UPDATE), ",
        record_ctes!("FROM it"),
        ", \
         r AS ( \
           SELECT f.predecessor, f.existed, EXISTS (SELECT 1 FROM i) AS inserted FROM f), \
         u AS ( \
           UPDATE queue_items q SET \
             lease_expires_at = CASE WHEN q.lease_expires_at IS NULL OR q.lease_expires_at < $9 \
                                     THEN GREATEST(q.lease_expires_at, $10) \
                                     ELSE q.lease_expires_at END, \
             result = CASE WHEN r.inserted AND $11::jsonb IS NOT NULL \
                           THEN jsonb_set(COALESCE(q.result, '{}'), '{progress}', $11) \
                           ELSE q.result END \
           FROM r \
           WHERE q.queue_item_id = $1 \
             AND ((r.inserted AND $11::jsonb IS NOT NULL) \
                  OR ((r.inserted OR NOT (r.predecessor OR r.existed)) \
                      AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $9))) \
           RETURNING 1) \
         SELECT predecessor, existed, inserted FROM r"
    ))
    .bind(m.queue_item_id)
    .bind(m.attempt)
    .bind(m.seq)
    .bind(m.kind)
    .bind(m.at)
    .bind(m.payload)
    .bind(m.anyway)
    .bind(m.agent_id)
    .bind(m.renew_below)
    .bind(m.lease_until)
    .bind(m.progress)
    .fetch_optional(conn)
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

/// The flow pack (name, revision) an attempt's run reported choosing, if it reached the app.
pub async fn pack_of<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    attempt: i32,
) -> Result<Option<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT payload->>'name', (payload->>'revision')::bigint FROM queue_item_events \
         WHERE queue_item_id = $1 AND attempt = $2 AND kind = 'flow_pack' \
         AND payload ? 'name' ORDER BY seq LIMIT 1",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(db)
    .await
}

//! Queue-item queries of the bus: release, dispatch claims, run transitions and leases.

use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::outbox::OutboxRow;
use crate::domain::status::ItemState;

/// Advisory lock keys of the singleton loops (one holder across all coordinator replicas).
pub const DISPATCH_LOCK: i64 = 0x5046_4449_5350; // "PFDISP"
pub const SWEEP_LOCK: i64 = 0x5046_5357_4550; // "PFSWEP"

/// A SCHEDULED item whose time came.
#[derive(Debug, Clone, FromRow)]
pub struct Released {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub content_id: Option<String>,
    pub account_id: Option<String>,
    pub callback_url: Option<String>,
}

/// Moves SCHEDULED items due at `now` to QUEUED. With `lock`, the transaction first takes
/// that advisory lock (transaction-scoped, in the same statement), and nothing is released if
/// another transaction holds it.
pub async fn release_scheduled(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    lock: Option<i64>,
) -> Result<Vec<Released>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE queue_items SET state = 'QUEUED', updated_at = $1 \
         WHERE ($2::bigint IS NULL OR (SELECT pg_try_advisory_xact_lock($2))) \
           AND state = 'SCHEDULED' AND (scheduled_at IS NULL OR scheduled_at <= $1) \
         RETURNING queue_item_id, process_id, content_id, account_id, callback_url",
    )
    .bind(now)
    .bind(lock)
    .fetch_all(conn)
    .await
}

/// An item that can run now on a phone that can take it.
#[derive(Debug, Clone, FromRow)]
pub struct Candidate {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub attempt: i32,
    pub inputs: Value,
    pub account_id: Option<String>,
    pub phone_id: String,
    pub agent_id: String,
    pub content_id: Option<String>,
    pub callback_url: Option<String>,
}

/// A phone whose last reported battery is below this (percent) gets no work until it charges.
pub const MIN_BATTERY: i32 = 15;
/// A phone whose last reported battery temperature is above this (°C) gets no work until it
/// cools.
pub const MAX_TEMPERATURE_C: f32 = 42.0;

/// Dispatchable items, oldest first, locked (`SKIP LOCKED`) until the caller's commit: QUEUED or
/// due RETRYABLE items whose phone (pinned, or the account's bound phone for queue routing) is
/// enabled, online on an online agent (not `needs_attention`), not low on battery
/// ([`MIN_BATTERY`]) nor hot ([`MAX_TEMPERATURE_C`]) by its last report (unknown is fine), free
/// (no CLAIMED or EXECUTING item), and attended when the item is manual. Several candidates may
/// share a phone: the caller takes the first.
///
/// With `lock`, the transaction first takes that advisory lock (transaction-scoped, in the
/// same statement: a one-time filter), and there are no candidates if another transaction
/// holds it.
pub async fn candidates(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    limit: i64,
    lock: Option<i64>,
) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT qi.queue_item_id, qi.process_id, qi.kind, qi.attempt, qi.inputs, qi.account_id, \
                ph.phone_id, ph.agent_id, qi.content_id, qi.callback_url \
         FROM queue_items qi \
         LEFT JOIN accounts a ON a.account_id = qi.account_id \
         JOIN phones ph ON ph.phone_id = CASE WHEN qi.routing = 'queue' THEN a.phone_id ELSE qi.phone_id END \
         JOIN agents ag ON ag.agent_id = ph.agent_id \
         WHERE ($3::bigint IS NULL OR (SELECT pg_try_advisory_xact_lock($3))) \
           AND qi.state IN ('QUEUED', 'RETRYABLE') \
           AND (qi.next_attempt_at IS NULL OR qi.next_attempt_at <= $1) \
           AND (qi.scheduled_at IS NULL OR qi.scheduled_at <= $1) \
           AND (qi.routing <> 'queue' OR a.active) \
           AND ph.enabled AND ph.state = 'online' AND ag.online \
           AND (ph.battery_level IS NULL OR ph.battery_level >= $4) \
           AND (ph.temperature_c IS NULL OR ph.temperature_c <= $5) \
           AND (qi.mode <> 'manual' OR ph.attended) \
           AND NOT EXISTS (SELECT 1 FROM queue_items r WHERE r.phone_id = ph.phone_id \
                           AND r.state IN ('CLAIMED', 'EXECUTING')) \
         ORDER BY qi.created_at, qi.queue_item_id \
         LIMIT $2 \
         FOR UPDATE OF qi SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .bind(lock)
    .bind(MIN_BATTERY)
    .bind(MAX_TEMPERATURE_C)
    .fetch_all(conn)
    .await
}

/// One item to claim: the candidate's item on its phone, with a fresh run id, its next
/// attempt (the candidate's + 1: the row is locked by the caller's transaction) and its
/// encoded work order for the outbox.
#[derive(Debug, Clone)]
pub struct Claim {
    pub queue_item_id: Uuid,
    pub phone_id: String,
    pub agent_id: String,
    pub run_id: Uuid,
    pub attempt: i32,
    pub payload: Vec<u8>,
}

impl Claim {
    /// About how many bytes the claim adds to a [`claim_all`] statement.
    pub fn size(&self) -> usize {
        // Two uuids, the attempt, and a 4-byte length per array element.
        self.payload.len() + self.phone_id.len() + self.agent_id.len() + 16 + 16 + 4 + 6 * 4
    }
}

/// The outbox message id of an item's work order: the attempt makes a re-dispatch a new
/// message, and a re-published copy of the same one lands once.
pub fn work_msg_id(queue_item_id: Uuid, attempt: i32) -> String {
    format!("work:{queue_item_id}:{attempt}")
}

/// Claims every item in one statement: CLAIMED with its next attempt on its phone by its
/// agent, its work order into the outbox on `pf.work.<agent>` with message id
/// [`work_msg_id`] (one already there is left alone), and its coordinator-side `dispatched`
/// history row (attempt 0, next seq; payload: attempt, agent, phone, run). Returns the outbox
/// rows added. An item whose attempt is not the one expected is left alone, and so are its
/// order and history row.
///
/// Subject, message id and history are built by the statement from the claim's own columns,
/// so a claim carries little more than its order: more claims fit one statement under the
/// caller's size budget (a statement per round trip).
pub async fn claim_all(
    conn: &mut PgConnection,
    claims: &[Claim],
    now: OffsetDateTime,
    accept_by: OffsetDateTime,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = claims.iter().map(|c| c.queue_item_id).collect();
    let phones: Vec<&str> = claims.iter().map(|c| c.phone_id.as_str()).collect();
    let agents: Vec<&str> = claims.iter().map(|c| c.agent_id.as_str()).collect();
    let runs: Vec<Uuid> = claims.iter().map(|c| c.run_id).collect();
    let attempts: Vec<i32> = claims.iter().map(|c| c.attempt).collect();
    let payloads: Vec<&[u8]> = claims.iter().map(|c| c.payload.as_slice()).collect();
    sqlx::query_as(
        "WITH u AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::int[], $6::bytea[]) \
                WITH ORDINALITY AS u(queue_item_id, phone_id, agent_id, run_id, attempt, payload, n)), \
         c AS ( \
           UPDATE queue_items qi SET state = 'CLAIMED', attempt = u.attempt, phone_id = u.phone_id, \
             agent_id = u.agent_id, run_id = u.run_id, lease_expires_at = $7, next_attempt_at = NULL, \
             updated_at = $8 \
           FROM u \
           WHERE qi.queue_item_id = u.queue_item_id AND qi.attempt + 1 = u.attempt \
           RETURNING qi.queue_item_id), \
         d AS ( \
           SELECT u.* FROM u JOIN c ON c.queue_item_id = u.queue_item_id), \
         h AS ( \
           INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
           SELECT d.queue_item_id, 0, COALESCE((SELECT MAX(e.seq) FROM queue_item_events e \
                                                WHERE e.queue_item_id = d.queue_item_id AND e.attempt = 0), 0) + 1, \
                  'dispatched', $8, \
                  jsonb_build_object('attempt', d.attempt, 'agent_id', d.agent_id, \
                                     'phone_id', d.phone_id, 'run_id', d.run_id) \
           FROM d) \
         INSERT INTO outbox (subject, msg_id, payload) \
         SELECT $9 || d.agent_id, 'work:' || d.queue_item_id::text || ':' || d.attempt::text, d.payload \
         FROM d ORDER BY d.n \
         ON CONFLICT (msg_id) DO NOTHING \
         RETURNING id, subject, msg_id, payload, attempts",
    )
    .bind(&ids)
    .bind(&phones)
    .bind(&agents)
    .bind(&runs)
    .bind(&attempts)
    .bind(&payloads)
    .bind(accept_by)
    .bind(now)
    .bind(phonefarm_shared::subjects::WORK_PREFIX)
    .fetch_all(conn)
    .await
}

/// The fields of an item the ingester and sweeper work with.
#[derive(Debug, Clone, FromRow)]
pub struct RunItem {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub state: ItemState,
    pub attempt: i32,
    pub max_attempts: i32,
    pub agent_id: Option<String>,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub content_id: Option<String>,
    pub callback_url: Option<String>,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub result: Option<Value>,
}

macro_rules! run_columns {
    () => {
        "queue_item_id, process_id, kind, state, attempt, max_attempts, agent_id, phone_id, \
         account_id, run_id, content_id, callback_url, cancel_requested_at, lease_expires_at, result"
    };
}

/// Every item of a process, locked in id order (the lock order of every writer).
pub async fn run_items_locked(
    conn: &mut PgConnection,
    process_id: Uuid,
) -> Result<Vec<RunItem>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM queue_items WHERE process_id = $1 ORDER BY queue_item_id FOR UPDATE"
    ))
    .bind(process_id)
    .fetch_all(conn)
    .await
}

pub async fn run_item_locked(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RunItem>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM queue_items WHERE queue_item_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The run started (Accepted or a later milestone): EXECUTING with a fresh lease.
pub async fn start(
    conn: &mut PgConnection,
    id: Uuid,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_items SET state = 'EXECUTING', started_at = COALESCE(started_at, $2), \
           lease_expires_at = $3, updated_at = $2 WHERE queue_item_id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(lease_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renews the lease (never shortens it).
pub async fn renew(
    conn: &mut PgConnection,
    id: Uuid,
    lease_until: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_items SET lease_expires_at = GREATEST(lease_expires_at, $2) \
         WHERE queue_item_id = $1",
    )
    .bind(id)
    .bind(lease_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores progress counters of the running attempt (merged into `result.progress`).
pub async fn progress(
    conn: &mut PgConnection,
    id: Uuid,
    counters: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_items SET result = jsonb_set(COALESCE(result, '{}'), '{progress}', $2) \
         WHERE queue_item_id = $1",
    )
    .bind(id)
    .bind(counters)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the attempt: a terminal state (DONE, DEAD_LETTER, CANCELLED) or RETRYABLE with the
/// time of the next attempt.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    result: Option<&Value>,
    error: Option<&Value>,
    next_attempt_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let terminal = next_attempt_at.is_none() && state != "RETRYABLE";
    sqlx::query(
        "UPDATE queue_items SET state = $2, result = COALESCE($3, result), error = COALESCE($4, error), \
           next_attempt_at = $5, lease_expires_at = NULL, updated_at = $6, \
           finished_at = CASE WHEN $7 THEN $6 ELSE finished_at END \
         WHERE queue_item_id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(result)
    .bind(error)
    .bind(next_attempt_at)
    .bind(now)
    .bind(terminal)
    .execute(conn)
    .await?;
    Ok(())
}

/// Items whose lease lapsed, soonest lapsed first.
pub async fn lapsed<'e>(
    db: impl PgExecutor<'e>,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT queue_item_id FROM queue_items \
         WHERE state IN ('CLAIMED', 'EXECUTING') AND lease_expires_at < $1 \
         ORDER BY lease_expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Processes whose forced cancel is due, with their still running items:
/// (process, item, attempt, agent).
pub async fn forced_cancels_due<'e>(
    db: impl PgExecutor<'e>,
    now: OffsetDateTime,
) -> Result<Vec<(Uuid, Uuid, i32, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.process_id, qi.queue_item_id, qi.attempt, qi.agent_id FROM processes p \
         JOIN queue_items qi ON qi.process_id = p.process_id \
         WHERE p.cancel_force_at IS NOT NULL AND p.cancel_force_at <= $1 \
           AND qi.state IN ('CLAIMED', 'EXECUTING') AND qi.agent_id IS NOT NULL",
    )
    .bind(now)
    .fetch_all(db)
    .await
}

/// Clears a process's pending forced cancel once it is issued (or moot); true if it was set.
pub async fn clear_force(conn: &mut PgConnection, process_id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE processes SET cancel_force_at = NULL WHERE process_id = $1 AND cancel_force_at IS NOT NULL",
    )
    .bind(process_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Processes with a forced cancel due but nothing running any more (the soft stop worked).
pub async fn clear_moot_forces<'e>(
    db: impl PgExecutor<'e>,
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE processes p SET cancel_force_at = NULL \
         WHERE p.cancel_force_at IS NOT NULL AND p.cancel_force_at <= $1 \
           AND NOT EXISTS (SELECT 1 FROM queue_items qi WHERE qi.process_id = p.process_id \
                           AND qi.state IN ('CLAIMED', 'EXECUTING'))",
    )
    .bind(now)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

/// Everything `GET /queue-items/{id}` shows of an item.
#[derive(Debug, Clone, FromRow)]
pub struct ItemDetail {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub state: ItemState,
    pub mode: String,
    pub routing: String,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub agent_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub scheduled_at: Option<OffsetDateTime>,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub content_id: Option<String>,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// The owning process's system (visibility for integrator keys).
    pub system: Option<String>,
}

pub async fn detail<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<ItemDetail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT qi.queue_item_id, qi.process_id, qi.kind, qi.state, qi.mode, qi.routing, qi.phone_id, \
           qi.account_id, qi.agent_id, qi.run_id, qi.attempt, qi.max_attempts, qi.scheduled_at, \
           qi.next_attempt_at, qi.lease_expires_at, qi.content_id, qi.result, qi.error, \
           qi.cancel_requested_at, qi.created_at, qi.updated_at, qi.started_at, qi.finished_at, p.system \
         FROM queue_items qi LEFT JOIN processes p ON p.process_id = qi.process_id \
         WHERE qi.queue_item_id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

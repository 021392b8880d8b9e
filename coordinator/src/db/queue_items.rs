//! The `queue_items` table: the internal units of work.

use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::routing::Planned;
use crate::domain::status::ItemState;

#[derive(Debug, Clone, FromRow)]
pub struct ItemRow {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub state: ItemState,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub attempt: i32,
    pub agent_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub content_id: Option<String>,
    pub callback_url: Option<String>,
    pub created_at: OffsetDateTime,
}

macro_rules! item_columns {
    () => {
        "queue_item_id, process_id, kind, state, phone_id, account_id, attempt, \
    agent_id, run_id, content_id, callback_url, created_at"
    };
}

pub struct NewItems<'a> {
    pub process_id: Uuid,
    pub kind: &'a str,
    pub mode: &'a str,
    pub routing: &'a str,
    pub inputs: &'a Value,
    pub planned: &'a [Planned],
    pub now: OffsetDateTime,
}

/// The statement of [`insert_many`] (the API bench's pgbench script runs it with
/// one-element arrays).
pub const INSERT_MANY_SQL: &str = "INSERT INTO queue_items (queue_item_id, process_id, kind, \
     state, mode, routing, phone_id, account_id, inputs, created_at, updated_at) \
     SELECT id, pid, kind, 'QUEUED', mode, routing, phone, account, inputs, at, at \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::jsonb[], $9::timestamptz[]) \
     AS t(id, pid, kind, mode, routing, phone, account, inputs, at)";

/// Inserts the QUEUED items of many processes in one statement; returns each process's item
/// ids, in the order of `processes` and of their `planned` pairs.
pub async fn insert_many(
    conn: &mut PgConnection,
    processes: &[NewItems<'_>],
) -> Result<Vec<Vec<Uuid>>, sqlx::Error> {
    let ids: Vec<Vec<Uuid>> = processes
        .iter()
        .map(|n| n.planned.iter().map(|_| Uuid::now_v7()).collect())
        .collect();
    let rows = || {
        processes
            .iter()
            .flat_map(|n| n.planned.iter().map(move |p| (n, p)))
    };
    sqlx::query(INSERT_MANY_SQL)
        .bind(ids.concat())
        .bind(rows().map(|(n, _)| n.process_id).collect::<Vec<_>>())
        .bind(rows().map(|(n, _)| n.kind).collect::<Vec<_>>())
        .bind(rows().map(|(n, _)| n.mode).collect::<Vec<_>>())
        .bind(rows().map(|(n, _)| n.routing).collect::<Vec<_>>())
        .bind(
            rows()
                .map(|(_, p)| p.phone_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows()
                .map(|(_, p)| p.account_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows().map(|(n, _)| n.inputs).collect::<Vec<_>>())
        .bind(rows().map(|(n, _)| n.now).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(ids)
}

/// The statement of [`states_for_processes`] (the API bench's pgbench script runs it for one
/// id).
pub const STATES_MANY_SQL: &str = "SELECT process_id, queue_item_id, state FROM queue_items \
     WHERE process_id = ANY($1) ORDER BY queue_item_id";

/// `(process_id, queue_item_id, state)` of many processes' items at once, in item id order
/// (list pages).
pub async fn states_for_processes<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, ItemState)>, sqlx::Error> {
    sqlx::query_as(STATES_MANY_SQL)
        .bind(ids)
        .fetch_all(db)
        .await
}

pub async fn for_process_locked(
    conn: &mut PgConnection,
    process_id: Uuid,
) -> Result<Vec<ItemRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        item_columns!(),
        " FROM queue_items WHERE process_id = $1 ORDER BY queue_item_id FOR UPDATE"
    ))
    .bind(process_id)
    .fetch_all(conn)
    .await
}

/// Moves the given items to CANCELLED.
pub async fn cancel(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_items SET state = 'CANCELLED', finished_at = $2, updated_at = $2, \
         cancel_requested_at = COALESCE(cancel_requested_at, $2) WHERE queue_item_id = ANY($1)",
    )
    .bind(ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a cancel request on running items (the agent-side stop acts on it).
pub async fn mark_cancel_requested(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_items SET cancel_requested_at = COALESCE(cancel_requested_at, $2), updated_at = $2 \
         WHERE queue_item_id = ANY($1)",
    )
    .bind(ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends one row to an item's event history (attempt 0 for coordinator-side events).
pub async fn record_event(
    conn: &mut PgConnection,
    id: Uuid,
    kind: &str,
    at: OffsetDateTime,
    payload: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO queue_item_events (queue_item_id, attempt, seq, kind, at, payload) \
         SELECT $1, 0, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM queue_item_events \
         WHERE queue_item_id = $1 AND attempt = 0",
    )
    .bind(id)
    .bind(kind)
    .bind(at)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(())
}

pub struct NewIngest<'a> {
    pub queue_item_id: Uuid,
    pub account_id: &'a str,
    pub content_id: &'a str,
    pub state: &'a str,
    pub inputs: &'a Value,
    pub scheduled_at: Option<OffsetDateTime>,
    pub callback_url: Option<&'a str>,
    pub metadata: &'a Value,
    pub now: OffsetDateTime,
}

/// Inserts a legacy post_video item unless (account_id, content_id) exists; true if inserted.
pub async fn insert_ingest(conn: &mut PgConnection, n: NewIngest<'_>) -> Result<bool, sqlx::Error> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO queue_items (queue_item_id, kind, state, mode, routing, account_id, inputs, \
         scheduled_at, content_id, callback_url, metadata, created_at, updated_at) \
         VALUES ($1, 'post_video', $2, 'unattended', 'queue', $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (account_id, content_id) WHERE content_id IS NOT NULL DO NOTHING \
         RETURNING queue_item_id",
    )
    .bind(n.queue_item_id)
    .bind(n.state)
    .bind(n.account_id)
    .bind(n.inputs)
    .bind(n.scheduled_at)
    .bind(n.content_id)
    .bind(n.callback_url)
    .bind(n.metadata)
    .bind(n.now)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// The legacy item for (account_id, content_id): (id, state).
pub async fn find_ingest<'e>(
    db: impl PgExecutor<'e>,
    account_id: &str,
    content_id: &str,
) -> Result<Option<ItemRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        item_columns!(),
        " FROM queue_items WHERE account_id = $1 AND content_id = $2"
    ))
    .bind(account_id)
    .bind(content_id)
    .fetch_optional(db)
    .await
}

pub async fn find_ingest_locked(
    conn: &mut PgConnection,
    account_id: &str,
    content_id: &str,
) -> Result<Option<ItemRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        item_columns!(),
        " FROM queue_items WHERE account_id = $1 AND content_id = $2 FOR UPDATE"
    ))
    .bind(account_id)
    .bind(content_id)
    .fetch_optional(conn)
    .await
}

/// A `DEAD_LETTER` item back to `RETRYABLE`, due at `now`, allowed `max_attempts`; false if
/// the item was not dead-lettered.
pub async fn requeue_dead_letter(
    conn: &mut PgConnection,
    id: Uuid,
    max_attempts: i32,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE queue_items SET state = 'RETRYABLE', next_attempt_at = $3, max_attempts = $2, \
           finished_at = NULL, lease_expires_at = NULL, updated_at = $3 \
         WHERE queue_item_id = $1 AND state = 'DEAD_LETTER'",
    )
    .bind(id)
    .bind(max_attempts)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

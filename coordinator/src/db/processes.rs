//! The `processes` table: the public object.

use serde_json::Value;
use sqlx::types::JsonRawValue;
use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::status::Status;

#[derive(Debug, Clone, FromRow)]
pub struct ProcessRow {
    pub process_id: Uuid,
    pub process_type: String,
    pub request_id: String,
    pub system: String,
    pub mode: String,
    pub status: Status,
    pub target: Value,
    pub inputs: Value,
    pub requested_by: Value,
    pub callback: Value,
    pub fingerprint: Vec<u8>,
    pub result: Value,
    pub error: Option<Value>,
    pub partial_progress: Value,
    pub created_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub queued_at: Option<OffsetDateTime>,
    pub executing_at: Option<OffsetDateTime>,
    pub retrying_at: Option<OffsetDateTime>,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub cancel_strategy: Option<String>,
    pub version: i64,
}

macro_rules! process_columns {
    () => {
        "process_id, process_type, request_id, system, mode, status, target, inputs, \
    requested_by, callback, fingerprint, result, error, partial_progress, created_at, accepted_at, \
    queued_at, executing_at, retrying_at, cancel_requested_at, finished_at, cancel_strategy, version"
    };
}

pub struct NewProcess<'a> {
    pub process_id: Uuid,
    pub process_type: &'a str,
    pub request_id: &'a str,
    pub system: &'a str,
    pub mode: &'a str,
    pub target: Value,
    pub inputs: &'a Value,
    pub requested_by: Value,
    pub callback: Value,
    pub fingerprint: &'a [u8],
    pub partial_progress: Value,
    pub now: OffsetDateTime,
}

/// The statement of [`insert_many`]: one row per element of the arrays (the API bench's
/// pgbench script runs it with one-element arrays).
pub const INSERT_MANY_SQL: &str = "INSERT INTO processes (process_id, process_type, request_id, \
     system, mode, status, target, inputs, requested_by, callback, fingerprint, partial_progress, \
     created_at, accepted_at, queued_at, version) \
     SELECT id, ptype, rid, sys, mode, 'queued', target, inputs, rby, cb, fp, pp, at, at, at, 1 \
     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], \
     $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::bytea[], $11::jsonb[], $12::timestamptz[]) \
     AS t(id, ptype, rid, sys, mode, target, inputs, rby, cb, fp, pp, at) \
     ON CONFLICT (process_type, system, request_id) DO NOTHING RETURNING process_id";

/// Inserts many new processes in one statement, each unless one with its idempotency key
/// exists (also earlier in the same slice). Returns the ids that were inserted.
///
/// Callers order the slice by idempotency key: two transactions inserting overlapping keys in
/// the same order wait for each other instead of deadlocking.
pub async fn insert_many(
    conn: &mut PgConnection,
    rows: &[NewProcess<'_>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    fn col<'r>(rows: &'r [NewProcess<'_>], f: fn(&'r NewProcess<'_>) -> &'r str) -> Vec<&'r str> {
        rows.iter().map(f).collect()
    }
    fn json<'r>(
        rows: &'r [NewProcess<'_>],
        f: fn(&'r NewProcess<'_>) -> &'r Value,
    ) -> Vec<&'r Value> {
        rows.iter().map(f).collect()
    }
    sqlx::query_scalar(INSERT_MANY_SQL)
        .bind(rows.iter().map(|r| r.process_id).collect::<Vec<_>>())
        .bind(col(rows, |r| r.process_type))
        .bind(col(rows, |r| r.request_id))
        .bind(col(rows, |r| r.system))
        .bind(col(rows, |r| r.mode))
        .bind(json(rows, |r| &r.target))
        .bind(json(rows, |r| r.inputs))
        .bind(json(rows, |r| &r.requested_by))
        .bind(json(rows, |r| &r.callback))
        .bind(rows.iter().map(|r| r.fingerprint).collect::<Vec<&[u8]>>())
        .bind(json(rows, |r| &r.partial_progress))
        .bind(rows.iter().map(|r| r.now).collect::<Vec<_>>())
        .fetch_all(conn)
        .await
}

/// The existing process for an idempotency key: (id, status, fingerprint).
pub async fn find_by_key<'e>(
    db: impl PgExecutor<'e>,
    process_type: &str,
    system: &str,
    request_id: &str,
) -> Result<Option<(Uuid, Status, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT process_id, status, fingerprint FROM processes \
         WHERE process_type = $1 AND system = $2 AND request_id = $3",
    )
    .bind(process_type)
    .bind(system)
    .bind(request_id)
    .fetch_optional(db)
    .await
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<ProcessRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        process_columns!(),
        " FROM processes WHERE process_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// What `GET /processes/{id}` shows. The JSON columns stay as Postgres sends them (validated,
/// not parsed into a tree) and are copied into the response as they are.
#[derive(Debug, FromRow)]
pub struct ProcessView {
    pub process_id: Uuid,
    pub process_type: String,
    pub request_id: String,
    pub system: String,
    pub status: Status,
    pub target: Box<JsonRawValue>,
    pub requested_by: Box<JsonRawValue>,
    pub callback: Box<JsonRawValue>,
    pub result: Box<JsonRawValue>,
    pub error: Option<Box<JsonRawValue>>,
    pub partial_progress: Box<JsonRawValue>,
    pub created_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub queued_at: Option<OffsetDateTime>,
    pub executing_at: Option<OffsetDateTime>,
    pub retrying_at: Option<OffsetDateTime>,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

macro_rules! view_columns {
    () => {
        "process_id, process_type, request_id, system, status, target, requested_by, callback, \
    result, error, partial_progress, created_at, accepted_at, queued_at, executing_at, \
    retrying_at, cancel_requested_at, finished_at"
    };
}

/// The statement of [`get_views`] (the API bench's pgbench script runs it for one id).
pub const VIEWS_SQL: &str = concat!(
    "SELECT ",
    view_columns!(),
    " FROM processes WHERE process_id = ANY($1)"
);

/// The view rows of many processes in one statement (batched reads); missing ids are left
/// out.
pub async fn get_views<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<Vec<ProcessView>, sqlx::Error> {
    sqlx::query_as(VIEWS_SQL).bind(ids).fetch_all(db).await
}

pub async fn get_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<ProcessRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        process_columns!(),
        " FROM processes WHERE process_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The process of a queue item, locked (`FOR UPDATE`); `None` for an unknown item or one
/// without a process (legacy queue items).
pub async fn get_for_update_of_item(
    conn: &mut PgConnection,
    queue_item_id: Uuid,
) -> Result<Option<ProcessRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        process_columns!(),
        " FROM processes WHERE process_id = \
           (SELECT process_id FROM queue_items WHERE queue_item_id = $1) FOR UPDATE"
    ))
    .bind(queue_item_id)
    .fetch_optional(conn)
    .await
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub process_type: Option<String>,
    pub system: Option<String>,
    /// Keyset cursor: rows strictly older than this (created_at, process_id).
    pub before: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
}

pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    f: &ListFilter,
) -> Result<Vec<ProcessView>, sqlx::Error> {
    let (before_at, before_id) = f.before.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    sqlx::query_as(concat!(
        "SELECT ",
        view_columns!(),
        " FROM processes \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR process_type = $2) \
           AND ($3::text IS NULL OR system = $3) \
           AND ($4::timestamptz IS NULL OR (created_at, process_id) < ($4, $5)) \
         ORDER BY created_at DESC, process_id DESC LIMIT $6"
    ))
    .bind(&f.status)
    .bind(&f.process_type)
    .bind(&f.system)
    .bind(before_at)
    .bind(before_id)
    .bind(f.limit)
    .fetch_all(db)
    .await
}

/// What a state change writes back: status, derived fields and milestone timestamps.
pub struct StateUpdate {
    pub status: String,
    pub partial_progress: Value,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub cancel_strategy: Option<String>,
    pub cancel_reason: Option<String>,
    pub cancel_force_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// Callback events emitted by this change (the version moves by as many).
    pub events: i64,
}

/// Applies a state change; returns the version before it (callback sequences follow it).
pub async fn apply(conn: &mut PgConnection, id: Uuid, u: &StateUpdate) -> Result<i64, sqlx::Error> {
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE processes SET status = $2, partial_progress = $3, \
           cancel_requested_at = COALESCE(cancel_requested_at, $4), \
           cancel_strategy = COALESCE($5, cancel_strategy), \
           cancel_reason = COALESCE($6, cancel_reason), \
           cancel_force_at = COALESCE($7, cancel_force_at), \
           finished_at = COALESCE(finished_at, $8), \
           version = version + $9 \
         WHERE process_id = $1 RETURNING version - $9",
    )
    .bind(id)
    .bind(&u.status)
    .bind(&u.partial_progress)
    .bind(u.cancel_requested_at)
    .bind(&u.cancel_strategy)
    .bind(&u.cancel_reason)
    .bind(u.cancel_force_at)
    .bind(u.finished_at)
    .bind(u.events)
    .fetch_one(conn)
    .await?;
    Ok(version)
}

/// What a run milestone (from the bus) writes back to its process.
pub struct RunUpdate {
    pub status: String,
    pub partial_progress: Value,
    pub result: Value,
    /// `None` keeps the stored error.
    pub error: Option<Value>,
    /// Set only if not set yet (first item started).
    pub executing_at: Option<OffsetDateTime>,
    /// Moves forward only (latest retry scheduled).
    pub retrying_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// Callback events emitted by this change (the version moves by as many).
    pub events: i64,
}

/// Applies a run milestone; returns the version before it (callback sequences follow it).
pub async fn apply_run(
    conn: &mut PgConnection,
    id: Uuid,
    u: &RunUpdate,
) -> Result<i64, sqlx::Error> {
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE processes SET status = $2, partial_progress = $3, result = $4, \
           error = COALESCE($5, error), \
           executing_at = COALESCE(executing_at, $6), \
           retrying_at = GREATEST(retrying_at, $7), \
           finished_at = COALESCE(finished_at, $8), \
           version = version + $9 \
         WHERE process_id = $1 RETURNING version - $9",
    )
    .bind(id)
    .bind(&u.status)
    .bind(&u.partial_progress)
    .bind(&u.result)
    .bind(&u.error)
    .bind(u.executing_at)
    .bind(u.retrying_at)
    .bind(u.finished_at)
    .bind(u.events)
    .fetch_one(conn)
    .await?;
    Ok(version)
}

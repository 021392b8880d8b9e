//! The operators' console's read queries across tables (phones' health samples, items, events,
//! callbacks, failures), shaped for its pages.

use serde_json::Value;
use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(FromRow)]
pub struct HealthSample {
    pub at: OffsetDateTime,
    pub battery_level: Option<i32>,
    pub temperature_c: Option<f32>,
    pub storage_free_bytes: Option<i64>,
}

pub async fn health_24h(db: &PgPool, phone_id: &str) -> Result<Vec<HealthSample>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, battery_level, temperature_c, storage_free_bytes FROM phone_health_samples \
         WHERE phone_id = $1 AND at > now() - interval '24 hours' ORDER BY at",
    )
    .bind(phone_id)
    .fetch_all(db)
    .await
}

#[derive(FromRow)]
pub struct ItemRow {
    pub queue_item_id: Uuid,
    pub process_id: Option<Uuid>,
    pub kind: String,
    pub state: String,
    pub phone_id: Option<String>,
    pub account_id: Option<String>,
    pub agent_id: Option<String>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub error: Option<Value>,
    pub created_at: OffsetDateTime,
    /// The newest `step_started` of the item's current attempt.
    pub step: Option<String>,
}

const ITEM_COLUMNS: &str = "qi.queue_item_id, qi.process_id, qi.kind, qi.state, qi.phone_id, \
    qi.account_id, qi.agent_id, qi.attempt, qi.max_attempts, qi.error, qi.created_at, (SELECT e.payload->>'step' FROM queue_item_events e \
      WHERE e.queue_item_id = qi.queue_item_id AND e.kind = 'step_started' \
      ORDER BY e.attempt DESC, e.seq DESC LIMIT 1) AS step";

/// The phone's newest items (runs), newest first.
pub async fn items_of_phone(
    db: &PgPool,
    phone_id: &str,
    limit: i64,
) -> Result<Vec<ItemRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM queue_items qi WHERE qi.phone_id = $1 \
         ORDER BY qi.created_at DESC LIMIT $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(phone_id)
        .bind(limit)
        .fetch_all(db)
        .await
}

pub async fn items_of_process(db: &PgPool, process_id: Uuid) -> Result<Vec<ItemRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM queue_items qi WHERE qi.process_id = $1 \
         ORDER BY qi.created_at, qi.queue_item_id"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(process_id)
        .fetch_all(db)
        .await
}

#[derive(FromRow)]
pub struct EventRow {
    pub queue_item_id: Uuid,
    pub attempt: i32,
    pub kind: String,
    pub at: OffsetDateTime,
    pub payload: Value,
}

/// Every event of a process's items, in time order (heartbeats left out).
pub async fn events_of_process(
    db: &PgPool,
    process_id: Uuid,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.queue_item_id, e.attempt, e.kind, e.at, e.payload FROM queue_item_events e \
         JOIN queue_items qi ON qi.queue_item_id = e.queue_item_id \
         WHERE qi.process_id = $1 AND e.kind <> 'heartbeat' ORDER BY e.at, e.id LIMIT 2000",
    )
    .bind(process_id)
    .fetch_all(db)
    .await
}

#[derive(FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_type: String,
    pub sequence: Option<i64>,
    pub url: String,
    pub body: String,
    pub state: String,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
}

pub async fn deliveries_of_process(
    db: &PgPool,
    process_id: Uuid,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_type, sequence, url, body, state, attempts, created_at, next_attempt_at \
         FROM callback_deliveries WHERE process_id = $1 ORDER BY sequence, id",
    )
    .bind(process_id)
    .fetch_all(db)
    .await
}

#[derive(FromRow)]
pub struct AttemptRow {
    pub delivery_id: i64,
    pub attempt: i32,
    pub at: OffsetDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

pub async fn attempts_of(
    db: &PgPool,
    delivery_ids: &[i64],
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM callback_attempts \
         WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(delivery_ids)
    .fetch_all(db)
    .await
}

#[derive(FromRow)]
pub struct ProcessRow {
    pub process_id: Uuid,
    pub process_type: String,
    pub request_id: String,
    pub system: String,
    pub status: String,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct ProcessFilter {
    pub status: Option<String>,
    pub capability: Option<String>,
    pub system: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// A process id or a request id.
    pub search: Option<String>,
    pub before: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
}

pub async fn processes(db: &PgPool, f: &ProcessFilter) -> Result<Vec<ProcessRow>, sqlx::Error> {
    let search_id = f
        .search
        .as_deref()
        .and_then(|s| Uuid::parse_str(s.trim()).ok());
    let (before_at, before_id) = f.before.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    sqlx::query_as(
        "SELECT process_id, process_type, request_id, system, status, created_at, finished_at \
         FROM processes \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR process_type = $2) \
           AND ($3::text IS NULL OR system = $3) AND ($4::timestamptz IS NULL OR created_at >= $4) \
           AND ($5::timestamptz IS NULL OR created_at < $5) \
           AND ($6::text IS NULL OR request_id = $6 OR process_id = $7) \
           AND ($8::timestamptz IS NULL OR (created_at, process_id) < ($8, $9)) \
         ORDER BY created_at DESC, process_id DESC LIMIT $10",
    )
    .bind(&f.status)
    .bind(&f.capability)
    .bind(&f.system)
    .bind(f.since)
    .bind(f.until)
    .bind(f.search.as_deref().map(str::trim))
    .bind(search_id)
    .bind(before_at)
    .bind(before_id)
    .bind(f.limit)
    .fetch_all(db)
    .await
}

#[derive(FromRow)]
pub struct FailureGroup {
    pub reason: String,
    pub pack: Option<String>,
    pub app_version: Option<String>,
    pub model: Option<String>,
    pub runs: i64,
    pub last_at: OffsetDateTime,
    pub example: Uuid,
}

/// The statement of [`failures_24h`] (the console bench explains it).
pub const FAILURES_24H_SQL: &str = "WITH f AS ( \
       SELECT e.queue_item_id, e.attempt, e.at, split_part(COALESCE(e.payload->'error'->>'code', \
              'unknown'), ':', 1) AS reason, qi.kind, qi.phone_id, qi.agent_id, \
              CASE WHEN e.payload->'error'->>'message' LIKE '%, pack % r%)' \
                THEN left(split_part(e.payload->'error'->>'message', ', pack ', -1), -1) \
              END AS run_pack \
       FROM queue_item_events e JOIN queue_items qi ON qi.queue_item_id = e.queue_item_id \
       WHERE e.kind = 'finished' AND e.payload->>'outcome' = 'failed' \
         AND e.at > now() - interval '24 hours') \
     SELECT f.reason, \
       COALESCE((SELECT (c.payload->>'name') || ' r' || (c.payload->>'revision') \
          FROM queue_item_events c WHERE c.queue_item_id = f.queue_item_id \
            AND c.attempt = f.attempt AND c.kind = 'flow_pack' LIMIT 1), \
         f.run_pack, (SELECT string_agg((r->>'name') || ' r' || (r->>'revision'), ', ') \
          FROM agent_flow_packs a, jsonb_array_elements(a.running) r \
          WHERE a.agent_id = f.agent_id)) AS pack, \
       p.app_version, p.model, count(*) AS runs, max(f.at) AS last_at, \
       (array_agg(f.queue_item_id ORDER BY f.at DESC))[1] AS example \
     FROM f LEFT JOIN phones p ON p.phone_id = f.phone_id \
     GROUP BY 1, 2, 3, 4 ORDER BY runs DESC, last_at DESC LIMIT 200";

/// Failed runs of the last 24 h, grouped. The reason is the error code's first part; the pack
/// is the one the run reported choosing (its `flow_pack` event), else the one its message
/// names (`… pack NAME rN)`, agents before that event), else what the run's agent reports
/// running; app version and model are the phone's.
pub async fn failures_24h(db: &PgPool) -> Result<Vec<FailureGroup>, sqlx::Error> {
    sqlx::query_as(FAILURES_24H_SQL).fetch_all(db).await
}

#[derive(FromRow)]
pub struct EvidenceRow {
    pub kind: Option<String>,
    pub object: Option<String>,
}

/// The evidence objects announced for one attempt of an item.
pub async fn evidence(
    db: &PgPool,
    queue_item_id: Uuid,
    attempt: i32,
) -> Result<Vec<EvidenceRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT payload->>'kind' AS kind, payload->>'object' AS object FROM queue_item_events \
         WHERE queue_item_id = $1 AND attempt = $2 AND kind = 'evidence' ORDER BY seq",
    )
    .bind(queue_item_id)
    .bind(attempt)
    .fetch_all(db)
    .await
}

/// The error of an attempt (from its `finished` event), if it failed.
pub async fn attempt_error(
    db: &PgPool,
    queue_item_id: Uuid,
    attempt: i32,
) -> Result<Option<Value>, sqlx::Error> {
    let row: Option<(Option<Value>,)> = sqlx::query_as(
        "SELECT payload->'error' FROM queue_item_events WHERE queue_item_id = $1 \
         AND attempt = $2 AND kind = 'finished' ORDER BY seq DESC LIMIT 1",
    )
    .bind(queue_item_id)
    .bind(attempt)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| r.0).filter(|v| !v.is_null()))
}

/// The flow packs an agent last reported running (`agent_flow_packs.running`).
pub async fn running_packs(db: &PgPool, agent_id: &str) -> Result<Option<Value>, sqlx::Error> {
    let row: Option<(Value,)> =
        sqlx::query_as("SELECT running FROM agent_flow_packs WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|r| r.0))
}

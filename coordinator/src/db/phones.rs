//! The `phones` table: inventory mirrored from agents plus the operators' fields (label,
//! attended, enabled). A phone's reported state counts only while its agent is online.

use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct PhoneRow {
    pub phone_id: String,
    pub serial: Option<String>,
    pub agent_id: Option<String>,
    pub port_path: Option<String>,
    pub transport: Option<String>,
    pub label: Option<String>,
    pub attended: bool,
    pub enabled: bool,
    /// Reported state (see [`PhoneRow::effective_state`]).
    pub state: String,
    pub model: Option<String>,
    pub android_version: Option<String>,
    pub battery_level: Option<i32>,
    pub temperature_c: Option<f32>,
    pub storage_free_bytes: Option<i64>,
    pub screen_state: Option<String>,
    pub app_version: Option<String>,
    pub current_queue_item_id: Option<Uuid>,
    pub last_seen_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Whether the reporting agent is online (joined).
    pub agent_online: bool,
    /// The item the coordinator runs on it (CLAIMED or EXECUTING), joined.
    pub running_queue_item_id: Option<Uuid>,
}

impl PhoneRow {
    /// `online`, `unauthorized`, `offline`, `busy` (or `needs_attention`): offline with its
    /// agent; busy while it runs an item.
    pub fn effective_state(&self) -> &str {
        if !self.agent_online || self.agent_id.is_none() {
            return "offline";
        }
        if self.state == "online"
            && (self.running_queue_item_id.is_some() || self.current_queue_item_id.is_some())
        {
            return "busy";
        }
        &self.state
    }
}

macro_rules! phone_select {
    () => {
        "SELECT p.phone_id, p.serial, p.agent_id, p.port_path, p.transport, p.label, p.attended, \
         p.enabled, p.state, p.model, p.android_version, p.battery_level, p.temperature_c, \
         p.storage_free_bytes, p.screen_state, p.app_version, p.current_queue_item_id, \
         p.last_seen_at, p.created_at, p.updated_at, COALESCE(ag.online, false) AS agent_online, \
         (SELECT qi.queue_item_id FROM queue_items qi WHERE qi.phone_id = p.phone_id \
            AND qi.state IN ('CLAIMED', 'EXECUTING') LIMIT 1) AS running_queue_item_id \
         FROM phones p LEFT JOIN agents ag ON ag.agent_id = p.agent_id"
    };
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<PhoneRow>, sqlx::Error> {
    sqlx::query_as(concat!(phone_select!(), " ORDER BY p.phone_id"))
        .fetch_all(db)
        .await
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<Option<PhoneRow>, sqlx::Error> {
    sqlx::query_as(concat!(phone_select!(), " WHERE p.phone_id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// One phone of an inventory report, in column form.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub phone_id: String,
    pub serial: String,
    pub transport: String,
    pub location: String,
    pub state: &'static str,
    pub model: Option<String>,
    pub android_version: Option<String>,
    pub battery_level: Option<i32>,
    pub temperature_c: Option<f32>,
    pub storage_free_bytes: Option<i64>,
    pub screen_state: Option<&'static str>,
    pub app_version: Option<String>,
    pub current_queue_item_id: Option<Uuid>,
}

/// Upserts one reported phone, writing only if a reported field differs; true if written. An
/// unchanged phone is neither written nor locked: the update filters before it touches the row,
/// and the insert runs only for a phone this snapshot does not know (a concurrent insert is met
/// by the same conditional update on conflict).
pub async fn upsert_reported(
    conn: &mut PgConnection,
    agent_id: &str,
    r: &Reported,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "WITH upd AS ( \
           UPDATE phones p SET serial = $2, agent_id = $3, port_path = $4, transport = $5, state = $6, \
             model = $7, android_version = $8, battery_level = $9, temperature_c = $10, \
             storage_free_bytes = $11, screen_state = $12, app_version = $13, \
             current_queue_item_id = $14, last_seen_at = $15, updated_at = $15 \
           WHERE p.phone_id = $1 \
             AND (p.serial, p.agent_id, p.port_path, p.transport, p.state, p.model, p.android_version, \
                  p.battery_level, p.temperature_c, p.storage_free_bytes, p.screen_state, p.app_version, \
                  p.current_queue_item_id) \
                 IS DISTINCT FROM ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
           RETURNING 1), \
         ins AS ( \
           INSERT INTO phones (phone_id, serial, agent_id, port_path, transport, state, model, \
             android_version, battery_level, temperature_c, storage_free_bytes, screen_state, app_version, \
             current_queue_item_id, last_seen_at, updated_at) \
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15 \
           WHERE NOT EXISTS (SELECT 1 FROM phones WHERE phone_id = $1) \
           ON CONFLICT (phone_id) DO UPDATE SET serial = $2, agent_id = $3, port_path = $4, \
             transport = $5, state = $6, model = $7, android_version = $8, battery_level = $9, \
             temperature_c = $10, storage_free_bytes = $11, screen_state = $12, app_version = $13, \
             current_queue_item_id = $14, last_seen_at = $15, updated_at = $15 \
           WHERE (phones.serial, phones.agent_id, phones.port_path, phones.transport, phones.state, \
                  phones.model, phones.android_version, phones.battery_level, phones.temperature_c, \
                  phones.storage_free_bytes, phones.screen_state, phones.app_version, \
                  phones.current_queue_item_id) \
                 IS DISTINCT FROM ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)",
    )
    .bind(&r.phone_id)
    .bind(&r.serial)
    .bind(agent_id)
    .bind(&r.location)
    .bind(&r.transport)
    .bind(r.state)
    .bind(&r.model)
    .bind(&r.android_version)
    .bind(r.battery_level)
    .bind(r.temperature_c)
    .bind(r.storage_free_bytes)
    .bind(r.screen_state)
    .bind(&r.app_version)
    .bind(r.current_queue_item_id)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Phones of `agent_id` missing from its latest report go offline; returns how many changed.
pub async fn mark_missing_offline(
    conn: &mut PgConnection,
    agent_id: &str,
    present: &[String],
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE phones SET state = 'offline', current_queue_item_id = NULL, updated_at = $3 \
         WHERE agent_id = $1 AND NOT (phone_id = ANY($2)) AND state <> 'offline'",
    )
    .bind(agent_id)
    .bind(present)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Operator fields; `None` leaves a field as it is. Returns false for an unknown phone.
pub async fn update_operator_fields<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
    label: Option<Option<&str>>,
    attended: Option<bool>,
    enabled: Option<bool>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE phones SET label = CASE WHEN $2 THEN $3 ELSE label END, \
           attended = COALESCE($4, attended), enabled = COALESCE($5, enabled), updated_at = $6 \
         WHERE phone_id = $1",
    )
    .bind(id)
    .bind(label.is_some())
    .bind(label.flatten())
    .bind(attended)
    .bind(enabled)
    .bind(now)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

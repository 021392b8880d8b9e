//! The `phones` table: inventory mirrored from agents plus the operators' fields (label,
//! attended, enabled). A phone's reported state counts only while its agent is online.
//!
//! A phone belongs to one agent (`agent_id`): the one that reported it first, until it is
//! really moved or an operator moves it (`db::phone_claims`, `db::phone_moves`). An agent's
//! report never takes another agent's phone by itself: [`upsert_reported`] writes only the
//! reporter's own phones and the ones its caller has judged movable.

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

/// The phone, its row locked for an operator's action (`lifecycle::fleet::phone_action`).
pub async fn get_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<PhoneRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        phone_select!(),
        " WHERE p.phone_id = $1 FOR UPDATE OF p"
    ))
    .bind(id)
    .fetch_optional(conn)
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

/// A phone named in a report that another agent (or none) holds, locked by
/// [`lock_held_elsewhere`].
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct HeldElsewhere {
    pub phone_id: String,
    /// The holder (`None`: nobody).
    pub agent_id: Option<String>,
    /// Since when the holder's reports no longer name it.
    pub absent_since: Option<OffsetDateTime>,
    /// Whether the holder is online.
    pub holder_online: bool,
}

/// Locks and returns the phones among `ids` that exist and are not held by `agent_id`. In the
/// usual report (only the agent's own phones, or new ones) it returns nothing and locks
/// nothing.
pub async fn lock_held_elsewhere(
    conn: &mut PgConnection,
    agent_id: &str,
    ids: &[&str],
) -> Result<Vec<HeldElsewhere>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.phone_id, p.agent_id, p.absent_since, COALESCE(ag.online, false) AS holder_online \
         FROM phones p LEFT JOIN agents ag ON ag.agent_id = p.agent_id \
         WHERE p.phone_id = ANY($2) AND p.agent_id IS DISTINCT FROM $1 \
         ORDER BY p.phone_id FOR UPDATE OF p",
    )
    .bind(agent_id)
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// What [`upsert_reported`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Rows written (inserted or changed).
    pub written: u64,
    /// Phones this report gave their first agent: inserted, or inserted concurrently without
    /// one (an account bound to a phone no agent had reported yet).
    pub created: Vec<String>,
}

/// Upserts the phones of one report in one statement, writing only the rows where a reported
/// field differs; returns what it wrote. An existing phone is written only while `agent_id`
/// holds it, while no agent does (an account was bound to it first; also one that appeared
/// since the caller looked), or when it is in `taking` (phones the caller locked and judged
/// movable to this agent); any other phone of the report is left alone, also one another agent
/// inserted concurrently. An unchanged phone is neither written nor locked: the update filters before
/// it touches the row, and the insert runs only for a phone this snapshot does not know (a
/// concurrent insert is met by the same conditional update on conflict). `phones` must not
/// name a phone twice.
pub async fn upsert_reported(
    conn: &mut PgConnection,
    agent_id: &str,
    phones: &[Reported],
    taking: &[&str],
    now: OffsetDateTime,
) -> Result<Upserted, sqlx::Error> {
    if phones.is_empty() {
        return Ok(Upserted::default());
    }
    let (n, created): (i64, Vec<String>) = sqlx::query_as(
        "WITH r AS ( \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::int4[], $9::float4[], $10::int8[], $11::text[], \
             $12::text[], $13::uuid[]) \
             AS t(phone_id, serial, port_path, transport, state, model, android_version, \
                  battery_level, temperature_c, storage_free_bytes, screen_state, app_version, \
                  current_queue_item_id) \
         ), unassigned AS ( \
           SELECT phone_id FROM phones WHERE phone_id = ANY($1) AND agent_id IS NULL \
             AND NOT (phone_id = ANY($16)) \
         ), upd AS ( \
           UPDATE phones p SET serial = r.serial, agent_id = $14, port_path = r.port_path, \
             transport = r.transport, state = r.state, model = r.model, \
             android_version = r.android_version, battery_level = r.battery_level, \
             temperature_c = r.temperature_c, storage_free_bytes = r.storage_free_bytes, \
             screen_state = r.screen_state, app_version = r.app_version, \
             current_queue_item_id = r.current_queue_item_id, absent_since = NULL, \
             last_seen_at = $15, updated_at = $15 \
           FROM r \
           WHERE p.phone_id = r.phone_id \
             AND (p.agent_id = $14 OR p.agent_id IS NULL OR p.phone_id = ANY($16)) \
             AND (p.serial, p.agent_id, p.port_path, p.transport, p.state, p.model, p.android_version, \
                  p.battery_level, p.temperature_c, p.storage_free_bytes, p.screen_state, p.app_version, \
                  p.current_queue_item_id, p.absent_since) \
                 IS DISTINCT FROM (r.serial, $14, r.port_path, r.transport, r.state, r.model, \
                  r.android_version, r.battery_level, r.temperature_c, r.storage_free_bytes, \
                  r.screen_state, r.app_version, r.current_queue_item_id, NULL::timestamptz) \
           RETURNING p.phone_id), \
         ins AS ( \
           INSERT INTO phones (phone_id, serial, agent_id, port_path, transport, state, model, \
             android_version, battery_level, temperature_c, storage_free_bytes, screen_state, app_version, \
             current_queue_item_id, last_seen_at, updated_at) \
           SELECT r.phone_id, r.serial, $14, r.port_path, r.transport, r.state, r.model, \
             r.android_version, r.battery_level, r.temperature_c, r.storage_free_bytes, \
             r.screen_state, r.app_version, r.current_queue_item_id, $15, $15 \
           FROM r WHERE NOT EXISTS (SELECT 1 FROM phones WHERE phone_id = r.phone_id) \
           ON CONFLICT (phone_id) DO UPDATE SET serial = EXCLUDED.serial, agent_id = EXCLUDED.agent_id, \
             port_path = EXCLUDED.port_path, transport = EXCLUDED.transport, state = EXCLUDED.state, \
             model = EXCLUDED.model, android_version = EXCLUDED.android_version, \
             battery_level = EXCLUDED.battery_level, temperature_c = EXCLUDED.temperature_c, \
             storage_free_bytes = EXCLUDED.storage_free_bytes, screen_state = EXCLUDED.screen_state, \
             app_version = EXCLUDED.app_version, current_queue_item_id = EXCLUDED.current_queue_item_id, \
             absent_since = NULL, last_seen_at = EXCLUDED.last_seen_at, updated_at = EXCLUDED.updated_at \
           WHERE (phones.agent_id = EXCLUDED.agent_id OR phones.agent_id IS NULL) AND (phones.serial, phones.agent_id, phones.port_path, phones.transport, phones.state, \
                  phones.model, phones.android_version, phones.battery_level, phones.temperature_c, \
                  phones.storage_free_bytes, phones.screen_state, phones.app_version, \
                  phones.current_queue_item_id) \
                 IS DISTINCT FROM (EXCLUDED.serial, EXCLUDED.agent_id, EXCLUDED.port_path, \
                  EXCLUDED.transport, EXCLUDED.state, EXCLUDED.model, EXCLUDED.android_version, \
                  EXCLUDED.battery_level, EXCLUDED.temperature_c, EXCLUDED.storage_free_bytes, \
                  EXCLUDED.screen_state, EXCLUDED.app_version, EXCLUDED.current_queue_item_id) \
           RETURNING phone_id) \
         SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins), \
           ARRAY(SELECT phone_id FROM ins UNION \
             SELECT phone_id FROM upd WHERE phone_id IN (SELECT phone_id FROM unassigned) \
             ORDER BY phone_id)",
    )
    .bind(phones.iter().map(|r| r.phone_id.as_str()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.location.as_str()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.transport.as_str()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.state).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.model.as_deref()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.android_version.as_deref()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.battery_level).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.temperature_c).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.storage_free_bytes).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.screen_state).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.app_version.as_deref()).collect::<Vec<_>>())
    .bind(phones.iter().map(|r| r.current_queue_item_id).collect::<Vec<_>>())
    .bind(agent_id)
    .bind(now)
    .bind(taking)
    .fetch_one(conn)
    .await?;
    Ok(Upserted {
        written: n.max(0) as u64,
        created,
    })
}

/// Phones of `agent_id` missing from its latest report go offline and are absent from it from
/// now on (unless already); its claims on phones it no longer names, or now holds, are dropped
/// (`claiming`: the phones of the report it claims from other agents). Returns how many phone
/// rows changed.
pub async fn mark_missing_offline(
    conn: &mut PgConnection,
    agent_id: &str,
    present: &[&str],
    claiming: &[&str],
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "WITH dropped AS ( \
           DELETE FROM phone_claims WHERE agent_id = $1 AND NOT (phone_id = ANY($4)) \
         ) \
         UPDATE phones SET state = 'offline', current_queue_item_id = NULL, \
           absent_since = COALESCE(absent_since, $3), updated_at = $3 \
         WHERE agent_id = $1 AND NOT (phone_id = ANY($2)) \
           AND (state <> 'offline' OR absent_since IS NULL)",
    )
    .bind(agent_id)
    .bind(present)
    .bind(now)
    .bind(claiming)
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

//! The `phone_claims` table: the latest report of a phone by an agent that does not hold it,
//! kept until the claim is settled (the holder let go: the phone is moved to the claimant with
//! the claimed fields) or dropped (the claimant stops naming it).

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::phones::Reported;

/// Records (or refreshes) `agent_id`'s claims on `phones`, held by other agents.
pub async fn upsert(
    conn: &mut PgConnection,
    agent_id: &str,
    phones: &[&Reported],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    if phones.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO phone_claims (phone_id, agent_id, serial, port_path, transport, state, model, \
           android_version, battery_level, temperature_c, storage_free_bytes, screen_state, \
           app_version, current_queue_item_id, claimed_at, reported_at) \
         SELECT t.phone_id, $14, t.serial, t.port_path, t.transport, t.state, t.model, \
           t.android_version, t.battery_level, t.temperature_c, t.storage_free_bytes, \
           t.screen_state, t.app_version, t.current_queue_item_id, $15, $15 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::int4[], $9::float4[], $10::int8[], $11::text[], $12::text[], \
             $13::uuid[]) \
           AS t(phone_id, serial, port_path, transport, state, model, android_version, \
                battery_level, temperature_c, storage_free_bytes, screen_state, app_version, \
                current_queue_item_id) \
         ON CONFLICT (phone_id, agent_id) DO UPDATE SET serial = EXCLUDED.serial, \
           port_path = EXCLUDED.port_path, transport = EXCLUDED.transport, state = EXCLUDED.state, \
           model = EXCLUDED.model, android_version = EXCLUDED.android_version, \
           battery_level = EXCLUDED.battery_level, temperature_c = EXCLUDED.temperature_c, \
           storage_free_bytes = EXCLUDED.storage_free_bytes, screen_state = EXCLUDED.screen_state, \
           app_version = EXCLUDED.app_version, \
           current_queue_item_id = EXCLUDED.current_queue_item_id, reported_at = EXCLUDED.reported_at",
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
    .execute(conn)
    .await?;
    Ok(())
}

/// A claim that [`settle`] turned into a move.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Settled {
    pub phone_id: String,
    pub from_agent_id: Option<String>,
    /// `holder_gone` (the holder stopped naming it at or before the cutoff) or
    /// `holder_offline`.
    pub reason: String,
}

/// Moves to `agent_id` every phone it claims whose holder let go: the holder is offline, or
/// its reports stopped naming the phone at or before `absent_before` (now minus the offline
/// window). The phone takes the claimed fields, the move is recorded and the phone's claims
/// are dropped, in one statement. Returns the moves.
pub async fn settle(
    conn: &mut PgConnection,
    agent_id: &str,
    absent_before: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<Settled>, sqlx::Error> {
    sqlx::query_as(
        "WITH movable AS ( \
           SELECT p.phone_id, p.agent_id AS from_agent_id, \
             CASE WHEN COALESCE(ag.online, false) THEN 'holder_gone' ELSE 'holder_offline' END \
               AS reason \
           FROM phone_claims c JOIN phones p ON p.phone_id = c.phone_id \
           LEFT JOIN agents ag ON ag.agent_id = p.agent_id \
           WHERE c.agent_id = $1 AND p.agent_id IS DISTINCT FROM $1 \
             AND (NOT COALESCE(ag.online, false) OR p.absent_since <= $2) \
           FOR UPDATE OF p \
         ), moved AS ( \
           UPDATE phones p SET agent_id = $1, serial = c.serial, port_path = c.port_path, \
             transport = c.transport, state = c.state, model = c.model, \
             android_version = c.android_version, battery_level = c.battery_level, \
             temperature_c = c.temperature_c, storage_free_bytes = c.storage_free_bytes, \
             screen_state = c.screen_state, app_version = c.app_version, \
             current_queue_item_id = c.current_queue_item_id, absent_since = NULL, \
             last_seen_at = c.reported_at, updated_at = $3 \
           FROM movable m JOIN phone_claims c ON c.phone_id = m.phone_id AND c.agent_id = $1 \
           WHERE p.phone_id = m.phone_id \
           RETURNING p.phone_id \
         ), logged AS ( \
           INSERT INTO phone_moves (phone_id, from_agent_id, to_agent_id, reason, moved_by, moved_at) \
           SELECT m.phone_id, m.from_agent_id, $1, m.reason, 'inventory', $3 FROM movable m \
         ), dropped AS ( \
           DELETE FROM phone_claims c USING movable m WHERE c.phone_id = m.phone_id \
         ) \
         SELECT m.phone_id, m.from_agent_id, m.reason FROM movable m \
         WHERE m.phone_id IN (SELECT phone_id FROM moved) ORDER BY m.phone_id",
    )
    .bind(agent_id)
    .bind(absent_before)
    .bind(now)
    .fetch_all(conn)
    .await
}

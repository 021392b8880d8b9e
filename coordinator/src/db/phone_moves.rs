//! The `phone_moves` table: every change of a phone's agent (its first sighting, a real move
//! settled from a claim, an operator's move), and the operator's move itself.

use sqlx::{Connection as _, FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;

/// One recorded move.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct MoveRow {
    pub phone_id: String,
    pub from_agent_id: Option<String>,
    pub to_agent_id: String,
    /// `first_seen`, `holder_gone`, `holder_offline` or `operator`.
    pub reason: String,
    /// `inventory`, or the role of the operator's key.
    pub moved_by: String,
    pub note: Option<String>,
    pub moved_at: OffsetDateTime,
}

/// A move to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMove<'a> {
    pub phone_id: &'a str,
    pub from_agent_id: Option<&'a str>,
    pub reason: &'static str,
}

/// Records moves of phones to `to_agent_id` made by an inventory report.
pub async fn record_reported(
    conn: &mut PgConnection,
    to_agent_id: &str,
    moves: &[NewMove<'_>],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    if moves.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO phone_moves (phone_id, from_agent_id, to_agent_id, reason, moved_by, moved_at) \
         SELECT t.phone_id, t.from_agent_id, $4, t.reason, 'inventory', $5 \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(phone_id, from_agent_id, reason)",
    )
    .bind(moves.iter().map(|m| m.phone_id).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.from_agent_id).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.reason).collect::<Vec<_>>())
    .bind(to_agent_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The moves of a phone, newest first (at most 100).
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    phone_id: &str,
) -> Result<Vec<MoveRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT phone_id, from_agent_id, to_agent_id, reason, moved_by, note, moved_at \
         FROM phone_moves WHERE phone_id = $1 ORDER BY id DESC LIMIT 100",
    )
    .bind(phone_id)
    .fetch_all(db)
    .await
}

/// What became of an operator's move.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorMove {
    /// No such phone.
    UnknownPhone,
    /// No such agent.
    UnknownAgent,
    /// The phone is already with that agent: nothing changed, nothing recorded.
    Unchanged,
    /// Moved and recorded.
    Moved(MoveRow),
}

/// Moves `phone_id` to `to_agent_id` for an operator, in one transaction: the phone takes the
/// target agent's claimed fields if it claims the phone (else it is offline until that agent
/// reports it), the move is recorded, the target's claim is dropped. The previous holder's
/// later reports of the phone are claims like any other agent's.
pub async fn move_by_operator(
    conn: &mut PgConnection,
    phone_id: &str,
    to_agent_id: &str,
    moved_by: &str,
    note: Option<&str>,
    now: OffsetDateTime,
) -> Result<OperatorMove, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let holder: Option<(Option<String>,)> =
        sqlx::query_as("SELECT agent_id FROM phones WHERE phone_id = $1 FOR UPDATE")
            .bind(phone_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((from,)) = holder else {
        return Ok(OperatorMove::UnknownPhone);
    };
    let known: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM agents WHERE agent_id = $1")
        .bind(to_agent_id)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Ok(OperatorMove::UnknownAgent);
    }
    if from.as_deref() == Some(to_agent_id) {
        return Ok(OperatorMove::Unchanged);
    }
    sqlx::query(
        "UPDATE phones p SET agent_id = $2, absent_since = NULL, updated_at = $3, \
           state = COALESCE(c.state, 'offline'), \
           current_queue_item_id = c.current_queue_item_id, \
           serial = COALESCE(c.serial, p.serial), port_path = COALESCE(c.port_path, p.port_path), \
           transport = COALESCE(c.transport, p.transport), \
           model = COALESCE(c.model, p.model), \
           android_version = COALESCE(c.android_version, p.android_version), \
           battery_level = CASE WHEN c.phone_id IS NULL THEN p.battery_level ELSE c.battery_level END, \
           temperature_c = CASE WHEN c.phone_id IS NULL THEN p.temperature_c ELSE c.temperature_c END, \
           storage_free_bytes = CASE WHEN c.phone_id IS NULL THEN p.storage_free_bytes \
             ELSE c.storage_free_bytes END, \
           screen_state = CASE WHEN c.phone_id IS NULL THEN p.screen_state ELSE c.screen_state END, \
           app_version = COALESCE(c.app_version, p.app_version), \
           last_seen_at = COALESCE(c.reported_at, p.last_seen_at) \
         FROM (SELECT $1::text AS phone_id) w \
         LEFT JOIN phone_claims c ON c.phone_id = w.phone_id AND c.agent_id = $2 \
         WHERE p.phone_id = w.phone_id",
    )
    .bind(phone_id)
    .bind(to_agent_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM phone_claims WHERE phone_id = $1 AND agent_id = $2")
        .bind(phone_id)
        .bind(to_agent_id)
        .execute(&mut *tx)
        .await?;
    let row: MoveRow = sqlx::query_as(
        "INSERT INTO phone_moves (phone_id, from_agent_id, to_agent_id, reason, moved_by, note, moved_at) \
         VALUES ($1, $2, $3, 'operator', $4, $5, $6) \
         RETURNING phone_id, from_agent_id, to_agent_id, reason, moved_by, note, moved_at",
    )
    .bind(phone_id)
    .bind(from.as_deref())
    .bind(to_agent_id)
    .bind(moved_by)
    .bind(note)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(OperatorMove::Moved(row))
}

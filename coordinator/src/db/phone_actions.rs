//! The `phone_actions` table: each operator's reboot or locate, from the order (`sent`) to
//! what its agent reported (`started` or `refused`, then `done` or `failed`).

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct ActionRow {
    pub request_id: Uuid,
    pub phone_id: String,
    pub agent_id: String,
    pub action: String,
    pub requested_by: String,
    pub requested_at: OffsetDateTime,
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: OffsetDateTime,
}

pub struct NewAction<'a> {
    pub request_id: Uuid,
    pub phone_id: &'a str,
    pub agent_id: &'a str,
    pub action: &'a str,
    pub requested_by: &'a str,
    pub at: OffsetDateTime,
}

pub async fn insert<'e>(db: impl PgExecutor<'e>, a: &NewAction<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO phone_actions (request_id, phone_id, agent_id, action, requested_by, \
         requested_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(a.request_id)
    .bind(a.phone_id)
    .bind(a.agent_id)
    .bind(a.action)
    .bind(a.requested_by)
    .bind(a.at)
    .execute(db)
    .await?;
    Ok(())
}

/// Records an agent's report on one of its actions: only forward (`sent` → `started` or
/// `refused` → `done` or `failed`; a late or redelivered `started` never undoes an end), and
/// only for the agent and phone the order went to. True if the row changed.
pub async fn report<'e>(
    db: impl PgExecutor<'e>,
    agent_id: &str,
    phone_id: &str,
    request_id: Uuid,
    state: &str,
    reason: Option<&str>,
    at: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE phone_actions SET state = $4, reason = $5, updated_at = $6 \
         WHERE request_id = $1 AND agent_id = $2 AND phone_id = $3 \
           AND (CASE state WHEN 'sent' THEN 0 WHEN 'started' THEN 1 ELSE 2 END) \
             < (CASE $4 WHEN 'sent' THEN 0 WHEN 'started' THEN 1 ELSE 2 END)",
    )
    .bind(request_id)
    .bind(agent_id)
    .bind(phone_id)
    .bind(state)
    .bind(reason)
    .bind(at)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// A phone's latest actions, newest first.
pub async fn of_phone<'e>(
    db: impl PgExecutor<'e>,
    phone_id: &str,
    limit: i64,
) -> Result<Vec<ActionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_id, phone_id, agent_id, action, requested_by, requested_at, state, \
         reason, updated_at FROM phone_actions WHERE phone_id = $1 \
         ORDER BY requested_at DESC LIMIT $2",
    )
    .bind(phone_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

//! The `outbox` table: NATS messages committed with the state change that causes them, then
//! published by the relay (`bus::relay`).

use sqlx::{FromRow, PgConnection, PgExecutor};

#[derive(Debug, Clone, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub subject: String,
    pub msg_id: String,
    pub payload: Vec<u8>,
    pub attempts: i32,
}

/// Adds a message; a row with the same `msg_id` already there is left alone (true if added).
pub async fn insert(
    conn: &mut PgConnection,
    subject: &str,
    msg_id: &str,
    payload: &[u8],
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3) \
         ON CONFLICT (msg_id) DO NOTHING",
    )
    .bind(subject)
    .bind(msg_id)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Adds many messages in one statement (rows whose `msg_id` is already there are left alone);
/// returns the rows added.
pub async fn insert_all(
    conn: &mut PgConnection,
    subjects: &[String],
    msg_ids: &[String],
    payloads: &[Vec<u8>],
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    if msg_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "INSERT INTO outbox (subject, msg_id, payload) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
         ON CONFLICT (msg_id) DO NOTHING \
         RETURNING id, subject, msg_id, payload, attempts",
    )
    .bind(subjects)
    .bind(msg_ids)
    .bind(payloads)
    .fetch_all(conn)
    .await
}

/// Begins a transaction on `conn` and [`claim`]s rows in it: the relay publishes them and
/// marks them inside it, then commits, so the row locks last while it publishes.
pub async fn begin_claim<'c>(
    conn: &'c mut PgConnection,
    limit: i64,
    skip: &[i64],
) -> Result<(sqlx::Transaction<'c, sqlx::Postgres>, Vec<OutboxRow>), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let rows = claim(&mut tx, limit, skip).await?;
    Ok((tx, rows))
}

/// Claims up to `limit` unpublished rows, oldest first, skipping rows another relay holds and
/// the rows `skip` (handed to this relay by other means). The lock lasts until the caller's
/// transaction ends.
pub async fn claim(
    conn: &mut PgConnection,
    limit: i64,
    skip: &[i64],
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, subject, msg_id, payload, attempts FROM outbox \
         WHERE published_at IS NULL AND NOT (id = ANY($2)) \
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .bind(skip)
    .fetch_all(conn)
    .await
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(
    conn: &mut PgConnection,
    ids: &[i64],
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many rows wait to be published.
pub async fn pending<'e>(db: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(db)
        .await?;
    Ok(n)
}

/// Deletes published rows older than `keep_seconds` (JetStream's duplicate window is 15 min).
pub async fn prune<'e>(db: impl PgExecutor<'e>, keep_seconds: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM outbox WHERE published_at IS NOT NULL \
         AND published_at < now() - make_interval(secs => $1)",
    )
    .bind(keep_seconds as f64)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

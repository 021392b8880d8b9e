//! SQL over `callback_deliveries` and `callback_attempts`.

use std::time::Duration;

use sqlx::{FromRow as _, PgConnection, PgPool, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use super::NewCallback;

/// A delivery row claimed (leased) by this deliverer for one attempt.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub process_id: Option<Uuid>,
    pub queue_item_id: Option<Uuid>,
    pub sequence: Option<i64>,
    pub url: String,
    pub body: String,
    /// The attempt number of this claim (1-based; already incremented).
    pub attempts: i32,
    /// Seconds since the delivery was created, at claim time.
    pub age_secs: f64,
}

/// What one [`claim`] took, and how long until the earliest pending delivery it did not take
/// is due (zero if overdue; a row leased by a claim comes back when its lease ends), `None`
/// if nothing else is pending.
#[derive(Debug)]
pub(crate) struct Claim {
    pub rows: Vec<Claimed>,
    pub next_due: Option<Duration>,
}

/// What the delivery row becomes after an attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    Delivered,
    RetryIn(Duration),
    GiveUp,
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    cb: &NewCallback<'_>,
) -> Result<(), sqlx::Error> {
    // Serializing a `serde_json::Value` cannot fail (its map keys are strings); the error arm is
    // kept for completeness.
    let body = serde_json::to_string(cb.body).map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    sqlx::query(
        "INSERT INTO callback_deliveries \
             (event_id, event_type, process_id, queue_item_id, sequence, url, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(cb.event_id)
    .bind(cb.event_type)
    .bind(cb.process_id)
    .bind(cb.queue_item_id)
    .bind(cb.sequence)
    .bind(cb.url)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// The statement of [`insert_many`] (the API bench's pgbench script runs it with one-element
/// arrays).
pub const INSERT_MANY_SQL: &str = "INSERT INTO callback_deliveries \
     (event_id, event_type, process_id, queue_item_id, sequence, url, body) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::int8[], \
     $6::text[], $7::text[]) \
     ON CONFLICT (event_id) DO NOTHING";

pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    cbs: &[NewCallback<'_>],
) -> Result<(), sqlx::Error> {
    if cbs.is_empty() {
        return Ok(());
    }
    let bodies = cbs
        .iter()
        .map(|cb| serde_json::to_string(cb.body))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    sqlx::query(INSERT_MANY_SQL)
        .bind(cbs.iter().map(|c| c.event_id).collect::<Vec<_>>())
        .bind(cbs.iter().map(|c| c.event_type).collect::<Vec<_>>())
        .bind(cbs.iter().map(|c| c.process_id).collect::<Vec<_>>())
        .bind(cbs.iter().map(|c| c.queue_item_id).collect::<Vec<_>>())
        .bind(cbs.iter().map(|c| c.sequence).collect::<Vec<_>>())
        .bind(cbs.iter().map(|c| c.url).collect::<Vec<_>>())
        .bind(bodies)
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims up to `limit` due deliveries: bumps their attempt counter and pushes
/// `next_attempt_at` out by `lease`, so a crashed deliverer's rows come back once the lease runs
/// out. `SKIP LOCKED` lets several replicas claim side by side. The same statement says when
/// the next delivery it did not take is due: one round trip per look, rows or none.
pub(crate) async fn claim(
    pool: &PgPool,
    limit: usize,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // One row per claimed delivery, each with the next due time; a single row with the next
    // due time and NULLs when nothing was claimed.
    let rows = sqlx::query(
        "WITH due AS ( \
             SELECT id FROM callback_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= now() \
             ORDER BY next_attempt_at \
             LIMIT $1 \
             FOR UPDATE SKIP LOCKED), \
         c AS ( \
             UPDATE callback_deliveries AS d \
             SET attempts = d.attempts + 1, \
                 next_attempt_at = now() + $2::bigint * interval '1 millisecond' \
             FROM due \
             WHERE d.id = due.id \
             RETURNING d.id, d.event_id, d.event_type, d.process_id, d.queue_item_id, \
                       d.sequence, d.url, d.body, d.attempts, \
                       EXTRACT(EPOCH FROM (now() - d.created_at))::float8 AS age_secs), \
         n AS ( \
             SELECT EXTRACT(EPOCH FROM (min(next_attempt_at) - now()))::float8 AS next_due_secs \
             FROM callback_deliveries \
             WHERE state = 'pending' AND id NOT IN (SELECT id FROM due)) \
         SELECT n.next_due_secs, c.* FROM n LEFT JOIN c ON true",
    )
    .bind(limit)
    .bind(millis(lease))
    .fetch_all(pool)
    .await?;
    let next_due = match rows.first() {
        Some(row) => due_in(row.try_get("next_due_secs")?),
        None => None,
    };
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<i64>, _>("id")?.is_some() {
            claimed.push(Claimed::from_row(row)?);
        }
    }
    Ok(Claim {
        rows: claimed,
        next_due,
    })
}

/// Seconds until due (overdue: zero or less) as a wait; `None` stays "nothing pending".
fn due_in(secs: Option<f64>) -> Option<Duration> {
    secs.map(|secs| Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
}

/// One attempt to record: which claim it was, how it went and what the row becomes.
#[derive(Debug, Clone)]
pub(crate) struct Recording {
    /// The delivery row.
    pub id: i64,
    /// The claim's attempt number ([`Claimed::attempts`]).
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub next: Next,
}

/// Records attempts and moves their deliveries on, in one statement (one round trip, one
/// commit) for all of them. A failure only reschedules a row if this deliverer still holds the
/// claim (the attempt counter is unchanged); a success always wins, also over another attempt
/// of the same row in the same batch (a lease that ran out mid-attempt).
pub(crate) async fn record_many(
    conn: &mut PgConnection,
    recordings: &[Recording],
) -> Result<(), sqlx::Error> {
    if recordings.is_empty() {
        return Ok(());
    }
    let outcome = |n: &Next| match n {
        Next::Delivered => "delivered",
        Next::RetryIn(_) => "retry",
        Next::GiveUp => "failed",
    };
    let delay = |n: &Next| match n {
        Next::RetryIn(d) => millis(*d),
        Next::Delivered | Next::GiveUp => 0,
    };
    sqlx::query(
        "WITH input AS ( \
             SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::int4[], $4::text[], $5::int4[], \
                 $6::text[], $7::int8[]) \
                 AS t(id, attempt, status_code, error, duration_ms, outcome, delay_ms) \
         ), recorded AS ( \
             INSERT INTO callback_attempts \
                 (delivery_id, attempt, status_code, error, duration_ms) \
             SELECT id, attempt, status_code, error, duration_ms FROM input \
         ) \
         UPDATE callback_deliveries AS d SET \
             state = CASE i.outcome WHEN 'delivered' THEN 'delivered' \
                                    WHEN 'failed' THEN 'failed' ELSE d.state END, \
             delivered_at = CASE WHEN i.outcome = 'delivered' THEN now() ELSE d.delivered_at END, \
             next_attempt_at = CASE WHEN i.outcome = 'retry' \
                 THEN now() + i.delay_ms * interval '1 millisecond' \
                 ELSE d.next_attempt_at END, \
             last_status = i.status_code, \
             last_error = i.error \
         FROM (SELECT DISTINCT ON (id) * FROM input \
               ORDER BY id, outcome = 'delivered' DESC, attempt DESC) AS i \
         WHERE d.id = i.id AND d.state = 'pending' \
           AND (i.outcome = 'delivered' OR d.attempts = i.attempt)",
    )
    .bind(recordings.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(recordings.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind(recordings.iter().map(|r| r.status_code).collect::<Vec<_>>())
    .bind(
        recordings
            .iter()
            .map(|r| r.error.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(recordings.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
    .bind(
        recordings
            .iter()
            .map(|r| outcome(&r.next))
            .collect::<Vec<_>>(),
    )
    .bind(
        recordings
            .iter()
            .map(|r| delay(&r.next))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// One callback delivery, for operator views.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    /// Row id.
    pub id: i64,
    /// The event id (the same on every attempt, also in the body and `webhook-id`).
    pub event_id: Uuid,
    /// `process.updated` or `queue_item.updated`.
    pub event_type: String,
    /// The process, for `process.updated`.
    pub process_id: Option<Uuid>,
    /// The queue item, for `queue_item.updated`.
    pub queue_item_id: Option<Uuid>,
    /// The per-process sequence number, as given.
    pub sequence: Option<i64>,
    /// The receiver.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts started so far.
    pub attempts: i32,
    /// When the next attempt is due (or the current lease ends).
    pub next_attempt_at: OffsetDateTime,
    /// Status code of the last answered attempt.
    pub last_status: Option<i32>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the event was enqueued.
    pub created_at: OffsetDateTime,
    /// When a 2xx was received.
    pub delivered_at: Option<OffsetDateTime>,
}

/// One delivery attempt, for operator views.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptView {
    /// The attempt number (1-based).
    pub attempt: i32,
    /// When the attempt was recorded.
    pub at: OffsetDateTime,
    /// The response status, if one arrived.
    pub status_code: Option<i32>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: i32,
}

/// The deliveries of one process's callbacks, in sequence order.
pub async fn deliveries_for_process<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    process_id: Uuid,
) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
    sqlx::query_as::<_, DeliveryRecord>(
        "SELECT id, event_id, event_type, process_id, queue_item_id, sequence, url, state, \
                attempts, next_attempt_at, last_status, last_error, created_at, delivered_at \
         FROM callback_deliveries WHERE process_id = $1 ORDER BY sequence, id",
    )
    .bind(process_id)
    .fetch_all(executor)
    .await
}

/// The deliveries of one queue item's legacy callbacks, oldest first.
pub async fn deliveries_for_queue_item<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    queue_item_id: Uuid,
) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
    sqlx::query_as::<_, DeliveryRecord>(
        "SELECT id, event_id, event_type, process_id, queue_item_id, sequence, url, state, \
                attempts, next_attempt_at, last_status, last_error, created_at, delivered_at \
         FROM callback_deliveries WHERE queue_item_id = $1 ORDER BY id",
    )
    .bind(queue_item_id)
    .fetch_all(executor)
    .await
}

/// The attempts of one delivery, in order.
pub async fn attempts<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    delivery_id: i64,
) -> Result<Vec<AttemptView>, sqlx::Error> {
    sqlx::query_as::<_, AttemptView>(
        "SELECT attempt, at, status_code, error, duration_ms \
         FROM callback_attempts WHERE delivery_id = $1 ORDER BY attempt, id",
    )
    .bind(delivery_id)
    .fetch_all(executor)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending delivery due `in_secs` from now (negative: overdue).
    async fn pending(pool: &PgPool, in_secs: i64) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO callback_deliveries (event_id, event_type, url, body, next_attempt_at) \
             VALUES ($1, 'process.updated', 'http://127.0.0.1:9/cb', '{}', \
                     now() + $2 * interval '1 second') RETURNING id",
        )
        .bind(Uuid::new_v4())
        .bind(in_secs)
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_claim_says_when_the_next_delivery_it_did_not_take_is_due() {
        let db = phonefarm_testkit::TestDb::create().await;
        let pool = crate::db::connect(&db.url).await.unwrap();
        crate::db::MIGRATOR.run(&pool).await.unwrap();
        let lease = Duration::from_secs(60);
        let ids = |c: &Claim| c.rows.iter().map(|r| r.id).collect::<Vec<_>>();

        // Nothing pending at all.
        let got = claim(&pool, 5, lease).await.unwrap();
        assert!(got.rows.is_empty());
        assert_eq!(got.next_due, None);

        let first = pending(&pool, -20).await;
        let second = pending(&pool, -10).await;
        pending(&pool, 3600).await;

        // The oldest due one; the next (overdue) is due at once.
        let got = claim(&pool, 1, lease).await.unwrap();
        assert_eq!(ids(&got), [first]);
        assert_eq!(got.rows[0].attempts, 1);
        assert_eq!(got.next_due, Some(Duration::ZERO));

        // The rest that is due; the next is the end of the first claim's lease (a leased row
        // comes back then), not this claim's own row, whose old time is overdue.
        let got = claim(&pool, 5, lease).await.unwrap();
        assert_eq!(ids(&got), [second]);
        let next = got.next_due.unwrap();
        assert!(next > Duration::from_secs(50) && next <= lease, "{next:?}");

        // Nothing due: no rows, and the next is still a lease's end.
        let got = claim(&pool, 5, lease).await.unwrap();
        assert!(got.rows.is_empty());
        let next = got.next_due.unwrap();
        assert!(next > Duration::from_secs(50) && next <= lease, "{next:?}");

        // Once the leased rows are delivered, the next is the one in an hour.
        sqlx::query("UPDATE callback_deliveries SET state = 'delivered' WHERE id = ANY($1)")
            .bind([first, second])
            .execute(&pool)
            .await
            .unwrap();
        let got = claim(&pool, 5, lease).await.unwrap();
        assert!(got.rows.is_empty());
        let next = got.next_due.unwrap();
        assert!(
            next > Duration::from_secs(3500) && next <= Duration::from_secs(3600),
            "{next:?}"
        );
        pool.close().await;
    }
}

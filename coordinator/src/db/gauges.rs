//! What the operators' gauges on `/metrics` read (`http::gauges` renders them): a handful of
//! aggregates over `agents`, `queue_items` and `callback_deliveries`, each served by a partial
//! index (migration 0060), plus the phone list the fleet page reads. Read at every scrape, so
//! every replica reports the same values from the one database.

use sqlx::{FromRow, PgPool};

use super::phones::{self, PhoneRow};

/// The queue states an item waits or runs in (the terminal ones grow without bound and are
/// not gauges).
pub const OPEN_STATES: [&str; 6] = [
    "QUEUED",
    "SCHEDULED",
    "PLANNED",
    "RETRYABLE",
    "CLAIMED",
    "EXECUTING",
];

#[derive(Debug, Clone, FromRow)]
pub struct AgentUp {
    pub agent_id: String,
    pub online: bool,
}

/// Everything the gauges show, read at one scrape.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub agents: Vec<AgentUp>,
    pub phones: Vec<PhoneRow>,
    /// (state, items) for each of [`OPEN_STATES`] and `DEAD_LETTER` that has items.
    pub queue: Vec<(String, i64)>,
    /// Seconds the oldest item that could run now (QUEUED, or RETRYABLE and due) has waited
    /// since it became due; 0 when none waits.
    pub oldest_queued_seconds: f64,
    /// Callback deliveries not delivered yet, and the age of the oldest (0 when none).
    pub callback_backlog: i64,
    pub oldest_callback_seconds: f64,
    /// Deliveries given up on (every attempt failed).
    pub failed_callbacks: i64,
}

#[derive(FromRow)]
struct Scalars {
    oldest_queued_seconds: f64,
    callback_backlog: i64,
    oldest_callback_seconds: f64,
    failed_callbacks: i64,
}

/// Reads one [`Snapshot`].
pub async fn read(db: &PgPool) -> Result<Snapshot, sqlx::Error> {
    let agents: Vec<AgentUp> =
        sqlx::query_as("SELECT agent_id, online FROM agents ORDER BY agent_id")
            .fetch_all(db)
            .await?;
    let phones = phones::list(db).await?;
    // The states spelled out (not a parameter): exactly the partial index's predicate, so
    // the count reads only that index.
    let queue: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM queue_items WHERE state IN ('QUEUED', 'SCHEDULED', \
         'PLANNED', 'RETRYABLE', 'CLAIMED', 'EXECUTING', 'DEAD_LETTER') GROUP BY state",
    )
    .fetch_all(db)
    .await?;
    let s: Scalars = sqlx::query_as(
        "SELECT \
           COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(GREATEST(created_at, scheduled_at, \
                       next_attempt_at)))::float8 FROM queue_items \
                     WHERE state IN ('QUEUED', 'RETRYABLE') \
                       AND (next_attempt_at IS NULL OR next_attempt_at <= now()) \
                       AND (scheduled_at IS NULL OR scheduled_at <= now())), 0) \
             AS oldest_queued_seconds, \
           (SELECT count(*) FROM callback_deliveries WHERE state = 'pending') AS callback_backlog, \
           COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 \
                     FROM callback_deliveries WHERE state = 'pending'), 0) \
             AS oldest_callback_seconds, \
           (SELECT count(*) FROM callback_deliveries WHERE state = 'failed') AS failed_callbacks",
    )
    .fetch_one(db)
    .await?;
    Ok(Snapshot {
        agents,
        phones,
        queue,
        oldest_queued_seconds: s.oldest_queued_seconds.max(0.0),
        callback_backlog: s.callback_backlog,
        oldest_callback_seconds: s.oldest_callback_seconds.max(0.0),
        failed_callbacks: s.failed_callbacks,
    })
}

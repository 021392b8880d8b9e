//! Queries, one file per table. Handlers never write SQL; they call these with a pool or an
//! open transaction.

pub mod accounts;
pub mod agents;
pub mod api_keys;
pub mod capabilities;
pub mod dispatch;
mod held;
pub mod item_events;
pub mod outbox;
pub mod phones;
pub mod processes;
pub mod queue_items;
pub mod snapshots;

pub use held::Held;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// The embedded migrations of `coordinator/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connection idle for at least this long is pinged before use.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A pool that fails fast when Postgres is away (503 instead of a hang) and reconnects by
/// itself when it returns.
///
/// sqlx pings every connection when it goes back to the pool (and drops it if the ping fails),
/// so a connection in steady use is known good; `test_before_acquire` would add a second round
/// trip to every checkout. Instead only a connection that sat idle (and may have been cut while
/// Postgres restarted) is pinged before use.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(32)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(60))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    pool_options().connect(url).await
}

//! [`Held`]: a pool connection kept by one worker across its units of work.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// A pool connection a worker keeps between its batches: no pool checkout, no release task and
/// no release ping per batch. One that sat idle for [`IDLE_CHECK`] is pinged before use (it may
/// have been cut while Postgres restarted); one that saw an error, or was held for
/// [`HOLD_AT_MOST`], goes back to the pool, which tests it and applies its lifetime limit.
///
/// Used by every loop that runs statements back to back: the API's batch workers, the
/// dispatcher, the relay and the ingester's lanes. sqlx 0.9 pings a connection each time it
/// goes back to the pool (a round trip and a spawned task), which a per-pass checkout pays
/// every time.
pub struct Held {
    db: PgPool,
    conn: Option<HeldConn>,
}

struct HeldConn {
    conn: PoolConnection<Postgres>,
    since: Instant,
    used: Instant,
}

/// A held connection idle for at least this long is pinged before use.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// A held connection goes back to the pool after this long.
const HOLD_AT_MOST: Duration = Duration::from_secs(300);

impl Held {
    pub fn new(db: PgPool) -> Self {
        Self { db, conn: None }
    }

    async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if let Some(h) = &mut self.conn
            && (h.since.elapsed() >= HOLD_AT_MOST
                || (h.used.elapsed() >= IDLE_CHECK && h.conn.ping().await.is_err()))
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            let now = Instant::now();
            self.conn = Some(HeldConn {
                conn: self.db.acquire().await?,
                since: now,
                used: now,
            });
        }
        let Some(h) = &mut self.conn else {
            return Err(sqlx::Error::PoolClosed);
        };
        h.used = Instant::now();
        Ok(&mut *h.conn)
    }

    /// Runs `f` on the held connection; gives the connection back to the pool on error.
    pub async fn with<T, F>(&mut self, f: F) -> Result<T, sqlx::Error>
    where
        F: AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    {
        let conn = self.get().await?;
        let out = f(conn).await;
        if out.is_err() {
            self.conn = None;
        }
        out
    }
}

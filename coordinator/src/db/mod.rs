//! Queries, one file per table (`dispatch` and `console_views` read across tables; `states`
//! decodes stored states, `held` keeps a worker's connection). Handlers never write SQL; they call these with a pool or an
//! open transaction.
//!
//! SQL outside this folder, on purpose: `callbacks::store` (the deliverer's queries over
//! `callback_deliveries` and `callback_attempts`) and the advisory-lock queries of `bus::sweeper`
//! (the singleton lock of a pass) and `fleet_auth` (the lock that serializes account-JWT
//! pushes). `/healthz` and `/readyz` go through [`ping`].

pub mod accounts;
pub mod agent_credentials;
pub mod agents;
pub mod api_keys;
pub mod audit_log;
pub mod capabilities;
pub mod console_sessions;
pub mod console_views;
pub mod dispatch;
pub mod flow_packs;
pub mod gauges;
mod held;
pub mod item_events;
pub mod outbox;
pub mod phone_actions;
pub mod phone_claims;
pub mod phone_moves;
pub mod phones;
pub mod processes;
pub mod queue_items;
pub mod snapshots;
mod states;

pub use held::Held;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// The embedded migrations of `coordinator/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Most bytes of parameters one statement carries. sqlx 0.9 leaves Nagle's algorithm on and
/// writes one TLS record (16 KiB) per syscall, so a larger statement goes out in two writes and
/// the second waits for Postgres' delayed ACK (~40 ms, measured on the dispatcher's claims).
/// Batched writes (group commit, dispatch claims) are cut into statements under this size.
pub const STATEMENT_BUDGET: usize = 12 * 1024;

/// Consecutive index ranges whose `sizes` add up to at most [`STATEMENT_BUDGET`] (an item
/// larger than that is a range of its own): one statement each.
pub fn statement_ranges(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, s) in sizes.iter().enumerate() {
        if i > start && acc + s > STATEMENT_BUDGET {
            out.push(start..i);
            (start, acc) = (i, 0);
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

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

/// One trivial statement: whether Postgres answers (`/readyz`).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}

pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    pool_options().connect(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_the_budget() {
        let sizes = [5000, 5000, 5000, 20_000, 100, 100];
        let cut: Vec<Vec<usize>> = statement_ranges(&sizes)
            .into_iter()
            .map(|r| sizes[r].to_vec())
            .collect();
        assert_eq!(
            cut,
            vec![vec![5000, 5000], vec![5000], vec![20_000], vec![100, 100]]
        );
        assert!(statement_ranges(&[]).is_empty());
    }
}

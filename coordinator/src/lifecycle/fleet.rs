//! Registry writes of the operators and the legacy integrators: an account put, a runtime
//! snapshot upsert.

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::db::{self, accounts::AccountRow};
use crate::domain::requests::{AccountPut, Snapshot};

/// Creates or replaces account `id` (pre-provisioning its phone); true if it was created.
pub async fn put_account(
    db: &PgPool,
    id: &str,
    put: &AccountPut,
) -> Result<(AccountRow, bool), sqlx::Error> {
    let mut tx = db.begin().await?;
    let out = db::accounts::upsert(
        &mut tx,
        id,
        put.phone_id.as_deref(),
        put.platform_username.as_deref(),
        put.active,
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Stores snapshot `s` unless a newer one is stored (one statement; concurrent upserts never
/// let an older one win): its `strategy_synced_at` as stored, or `None` when stale.
pub async fn upsert_snapshot(
    db: &PgPool,
    s: &Snapshot,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    db::snapshots::upsert(db, s).await
}

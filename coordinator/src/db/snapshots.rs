//! The `runtime_snapshots` table: one strategy snapshot per account, newest wins.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::domain::requests::Snapshot;

/// Stores the snapshot unless the stored one is newer (higher version, or the same version
/// synced later). The comparison happens inside the one statement, so concurrent upserts can
/// never let an older snapshot win. Returns the stored `strategy_synced_at` when written.
pub async fn upsert<'e>(
    db: impl PgExecutor<'e>,
    s: &Snapshot,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let row: Option<(OffsetDateTime,)> = sqlx::query_as(
        "INSERT INTO runtime_snapshots AS r (account_id, ugc_account_id, snapshot_id, strategy_version, \
           content_hash, strategy_synced_at, stage, active_action, active_skills, personality) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (account_id) DO UPDATE SET ugc_account_id = EXCLUDED.ugc_account_id, \
           snapshot_id = EXCLUDED.snapshot_id, strategy_version = EXCLUDED.strategy_version, \
           content_hash = EXCLUDED.content_hash, strategy_synced_at = EXCLUDED.strategy_synced_at, \
           stage = EXCLUDED.stage, active_action = EXCLUDED.active_action, \
           active_skills = EXCLUDED.active_skills, personality = EXCLUDED.personality, updated_at = now() \
         WHERE r.strategy_version < EXCLUDED.strategy_version \
            OR (r.strategy_version = EXCLUDED.strategy_version \
                AND r.strategy_synced_at <= EXCLUDED.strategy_synced_at) \
         RETURNING strategy_synced_at",
    )
    .bind(&s.account_id)
    .bind(&s.ugc_account_id)
    .bind(&s.snapshot_id)
    .bind(s.strategy_version)
    .bind(&s.content_hash)
    .bind(s.strategy_synced_at)
    .bind(&s.stage)
    .bind(&s.active_action)
    .bind(serde_json::json!(s.active_skills))
    .bind(&s.personality)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(t,)| t))
}

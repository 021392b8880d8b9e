//! The `capabilities` registry table.

use sqlx::PgExecutor;

use crate::domain::capabilities::CapabilityRule;

type Row = (String, bool, bool, bool, Vec<String>);

fn rule(r: Row) -> CapabilityRule {
    CapabilityRule {
        name: r.0,
        manual: r.1,
        unattended: r.2,
        live_verified: r.3,
        routings: r.4,
    }
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<CapabilityRule>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, manual, unattended, live_verified, routings FROM capabilities ORDER BY name",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(rule).collect())
}

/// Replaces a known capability's rule; None if the name is unknown.
pub async fn update<'e>(
    db: impl PgExecutor<'e>,
    r: &CapabilityRule,
) -> Result<Option<CapabilityRule>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "UPDATE capabilities SET manual = $2, unattended = $3, live_verified = $4, routings = $5, \
         updated_at = now() WHERE name = $1 RETURNING name, manual, unattended, live_verified, routings",
    )
    .bind(&r.name)
    .bind(r.manual)
    .bind(r.unattended)
    .bind(r.live_verified)
    .bind(&r.routings)
    .fetch_optional(db)
    .await?;
    Ok(row.map(rule))
}

//! The `accounts` and `phones` registry that routing resolves against.

use std::collections::{HashMap, HashSet};

use sqlx::{FromRow, PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::domain::routing::{AccountInfo, Directory};

#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    pub account_id: String,
    pub phone_id: Option<String>,
    pub platform_username: Option<String>,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

macro_rules! account_columns {
    () => {
        "account_id, phone_id, platform_username, active, created_at, updated_at"
    };
}

/// Loads the registry slice a target refers to, in one round trip.
/// The statement of [`directory`] (the API bench's pgbench script repeats it).
pub const DIRECTORY_SQL: &str = "SELECT a.account_id, a.phone_id, a.active, true FROM accounts a \
     WHERE a.account_id = ANY($1) \
     UNION ALL \
     SELECT p.phone_id, a.account_id, COALESCE(a.active, false), false \
     FROM phones p LEFT JOIN accounts a ON a.phone_id = p.phone_id AND a.active \
     WHERE p.phone_id = ANY($2)";

pub async fn directory(
    conn: &mut PgConnection,
    account_ids: &[String],
    phone_ids: &[String],
) -> Result<Directory, sqlx::Error> {
    let rows: Vec<(String, Option<String>, bool, bool)> = sqlx::query_as(DIRECTORY_SQL)
        .bind(account_ids)
        .bind(phone_ids)
        .fetch_all(conn)
        .await?;
    let mut dir = Directory::default();
    let mut phones = HashSet::new();
    let mut phone_accounts: HashMap<String, Vec<String>> = HashMap::new();
    for (id, other, active, is_account) in rows {
        if is_account {
            dir.accounts.insert(
                id,
                AccountInfo {
                    phone_id: other,
                    active,
                },
            );
        } else {
            phones.insert(id.clone());
            if let Some(acc) = other {
                phone_accounts.entry(id).or_default().push(acc);
            }
        }
    }
    dir.phones = phones;
    dir.phone_accounts = phone_accounts;
    Ok(dir)
}

/// Is the account known and active?
pub async fn is_active<'e>(db: impl PgExecutor<'e>, account_id: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(bool,)> = sqlx::query_as("SELECT active FROM accounts WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some_and(|(a,)| a))
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        account_columns!(),
        " FROM accounts WHERE account_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        account_columns!(),
        " FROM accounts ORDER BY account_id"
    ))
    .fetch_all(db)
    .await
}

/// Creates or replaces an account. A phone the fleet has not reported yet is pre-provisioned
/// as `offline`, so work for it waits until it appears.
pub async fn upsert(
    conn: &mut PgConnection,
    id: &str,
    phone_id: Option<&str>,
    platform_username: Option<&str>,
    active: bool,
) -> Result<(AccountRow, bool), sqlx::Error> {
    if let Some(phone) = phone_id {
        sqlx::query("INSERT INTO phones (phone_id) VALUES ($1) ON CONFLICT (phone_id) DO NOTHING")
            .bind(phone)
            .execute(&mut *conn)
            .await?;
    }
    let (row, created): (AccountRow, bool) = {
        let r: (String, Option<String>, Option<String>, bool, OffsetDateTime, OffsetDateTime, bool) = sqlx::query_as(
            "INSERT INTO accounts (account_id, phone_id, platform_username, active) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id) DO UPDATE SET phone_id = EXCLUDED.phone_id, \
               platform_username = EXCLUDED.platform_username, active = EXCLUDED.active, updated_at = now() \
             RETURNING account_id, phone_id, platform_username, active, created_at, updated_at, (xmax = 0)",
        )
        .bind(id)
        .bind(phone_id)
        .bind(platform_username)
        .bind(active)
        .fetch_one(&mut *conn)
        .await?;
        (
            AccountRow {
                account_id: r.0,
                phone_id: r.1,
                platform_username: r.2,
                active: r.3,
                created_at: r.4,
                updated_at: r.5,
            },
            r.6,
        )
    };
    Ok((row, created))
}

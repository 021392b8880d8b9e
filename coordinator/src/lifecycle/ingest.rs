//! A `post_video` queue item from `POST /ingest`, idempotent on `(account_id, content_id)`.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Wake;
use crate::db::{self, queue_items::ItemRow};
use crate::domain::requests::IngestRequest;
use crate::domain::status::ItemState;
use crate::events;

/// The outcome of an ingest.
#[derive(Debug)]
pub enum Ingested {
    Created {
        queue_item_id: Uuid,
        state: ItemState,
        wake: Wake,
    },
    /// Ingested before (perhaps concurrently): the existing item.
    Exists(ItemRow),
}

/// Creates the item (`SCHEDULED` until a future `scheduling_hint`, else `QUEUED`) and its first
/// `queue_item.updated` callback.
pub async fn create(
    db: &PgPool,
    req: &IngestRequest,
    now: OffsetDateTime,
) -> Result<Ingested, sqlx::Error> {
    let scheduled = req.scheduling_hint.filter(|t| *t > now);
    let state = if scheduled.is_some() {
        ItemState::Scheduled
    } else {
        ItemState::Queued
    };
    let id = Uuid::now_v7();
    let inputs = req.inputs();
    let mut tx = db.begin().await?;
    let inserted = db::queue_items::insert_ingest(
        &mut tx,
        db::queue_items::NewIngest {
            queue_item_id: id,
            account_id: &req.account_id,
            content_id: &req.content_id,
            state: state.as_str(),
            inputs: &inputs,
            scheduled_at: scheduled,
            callback_url: req.callback_url.as_deref(),
            metadata: &req.metadata,
            now,
        },
    )
    .await?;
    if !inserted {
        drop(tx);
        return match db::queue_items::find_ingest(db, &req.account_id, &req.content_id).await? {
            Some(existing) => Ok(Ingested::Exists(existing)),
            None => Err(sqlx::Error::RowNotFound),
        };
    }
    events::queue_item_updated(
        &mut tx,
        req.callback_url.as_deref(),
        id,
        &req.content_id,
        &req.account_id,
        state.as_str(),
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Ingested::Created {
        queue_item_id: id,
        state,
        wake: Wake {
            callbacks: req.callback_url.is_some(),
            ..Wake::default()
        },
    })
}

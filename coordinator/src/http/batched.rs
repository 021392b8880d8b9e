//! The two hot paths of the API, batched across concurrent requests ([`crate::batch`]):
//! creating processes (group commit: every request waiting goes into one
//! [`create::create`], one transaction and one statement per table) and reading a process for `GET /processes/{id}` (one statement per table
//! for every id waiting).
//!
//! A batch answers each request exactly as the one-request path would: the same rows, the same
//! idempotency outcome, the same errors. A batch whose transaction fails for a reason other
//! than Postgres being away is retried one request at a time, so one bad request cannot fail
//! its neighbours.
//!
//! Tuning: process creation runs on 2 workers, reads on 1; a batch takes up to 64 requests.
//! A creation batch is one transaction ([`create::create`]): the directory read, then one
//! `UNNEST` insert each into processes, queue items and callback deliveries, cut into
//! statements under 12 KiB (`db::statement_ranges`, see [`crate::db`]). Keys are sorted, so
//! overlapping batches cannot deadlock. A read batch is one `= ANY($1)` statement for the rows
//! and one for the item states. Each worker keeps its pool connection between batches
//! (`db::Held`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use crate::batch::Batcher;
use crate::db::{self, Held, processes::ProcessView};
use crate::domain::status::ItemState;
use crate::error::{ApiError, is_unavailable};
use crate::lifecycle::create;
pub use crate::lifecycle::create::{Creation, Outcome};

/// Group-commit batches that run at once (each worker holds one pool connection). Two, so one
/// batch's commit (a WAL flush) overlaps the next batch's statements.
const WRITE_WORKERS: usize = 2;
/// Read batches that run at once (each worker holds one pool connection). One: reads are short
/// and a busier reader makes bigger batches; the API bench measured 1.07× pgbench with one
/// reader, 0.87× with two and 0.70× with four (mean batch 7.2, 4.1, 2.7 at 16 connections).
const READ_WORKERS: usize = 1;
/// Most requests in one batch.
const MAX_BATCH: usize = 64;

pub type Committer = Batcher<Creation, Result<Outcome, ApiError>>;

/// A process as `GET /processes/{id}` shows it: the row and its items' (id, state).
pub type Found = Arc<(ProcessView, Vec<(Uuid, ItemState)>)>;

pub type ViewReader = Batcher<Uuid, Result<Option<Found>, ApiError>>;

/// Spawns the group-commit workers on the current runtime.
pub fn committer(db: PgPool) -> Committer {
    Batcher::spawn(
        "enqueue",
        WRITE_WORKERS,
        MAX_BATCH,
        move || Held::new(db.clone()),
        commit_on,
    )
}

/// Spawns the batched-read workers on the current runtime.
pub fn view_reader(db: PgPool) -> ViewReader {
    Batcher::spawn(
        "process_view",
        READ_WORKERS,
        MAX_BATCH,
        move || Held::new(db.clone()),
        read_views,
    )
}

/// Runs one batch as a committer worker does, on a connection from the pool; public for the
/// tests.
pub async fn commit(db: &PgPool, batch: Vec<Creation>) -> Vec<Result<Outcome, ApiError>> {
    commit_on(Held::new(db.clone()), batch).await.1
}

/// One group-commit batch on the worker's connection; hands the connection back.
async fn commit_on(mut held: Held, batch: Vec<Creation>) -> (Held, Vec<Result<Outcome, ApiError>>) {
    let out = match held
        .with(async |conn| create::create(conn, &batch).await)
        .await
    {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(err) if batch.len() > 1 && !is_unavailable(&err) => {
            tracing::warn!(error = %err, size = batch.len(), "batch failed; retrying its requests one by one");
            let mut out = Vec::with_capacity(batch.len());
            for c in &batch {
                let one = std::slice::from_ref(c);
                out.push(
                    match held
                        .with(async |conn| create::create(conn, one).await)
                        .await
                    {
                        Ok(mut o) => Ok(o.pop().unwrap_or(Outcome::Exists)),
                        Err(err) => Err(ApiError::from(err)),
                    },
                );
            }
            out
        }
        Err(err) => {
            let err = ApiError::from(err);
            batch.iter().map(|_| Err(err.clone())).collect()
        }
    };
    (held, out)
}

/// The rows and item states of `ids`, by process id.
async fn read_found(held: &mut Held, ids: &[Uuid]) -> Result<HashMap<Uuid, Found>, sqlx::Error> {
    let (views, states) = held
        .with(async |conn| {
            let views = db::processes::get_views(&mut *conn, ids).await?;
            let states = if views.is_empty() {
                Vec::new()
            } else {
                let found: Vec<Uuid> = views.iter().map(|v| v.process_id).collect();
                db::queue_items::states_for_processes(&mut *conn, &found).await?
            };
            Ok((views, states))
        })
        .await?;
    let mut items: HashMap<Uuid, Vec<(Uuid, ItemState)>> = HashMap::new();
    for (process_id, item, state) in states {
        items.entry(process_id).or_default().push((item, state));
    }
    Ok(views
        .into_iter()
        .map(|v| {
            let id = v.process_id;
            (id, Arc::new((v, items.remove(&id).unwrap_or_default())))
        })
        .collect())
}

/// One batch of reads on the worker's connection; hands the connection back. A batch that
/// fails for any reason but Postgres being away (a row this build cannot decode) is read again
/// one process at a time, so one bad row fails only its own request.
async fn read_views(
    mut held: Held,
    ids: Vec<Uuid>,
) -> (Held, Vec<Result<Option<Found>, ApiError>>) {
    let unique: Vec<Uuid> = {
        let mut seen = HashSet::with_capacity(ids.len());
        ids.iter().copied().filter(|id| seen.insert(*id)).collect()
    };
    let out = match read_found(&mut held, &unique).await {
        Ok(found) => ids.iter().map(|id| Ok(found.get(id).cloned())).collect(),
        Err(err) if unique.len() > 1 && !is_unavailable(&err) => {
            tracing::warn!(error = %err, size = unique.len(), "view batch failed; reading its processes one by one");
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                out.push(match read_found(&mut held, &[*id]).await {
                    Ok(found) => Ok(found.get(id).cloned()),
                    Err(err) => Err(ApiError::from(err)),
                });
            }
            out
        }
        Err(err) => {
            let err = ApiError::from(err);
            ids.iter().map(|_| Err(err.clone())).collect()
        }
    };
    (held, out)
}

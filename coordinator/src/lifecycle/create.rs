//! Creating processes: a batch of validated requests (the API's group commit, `http::batched`,
//! gathers them across concurrent requests) in one transaction and one statement per table:
//! the directory read for every target, then processes, queue items and their `accepted`
//! callbacks.

use std::collections::BTreeSet;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::callbacks::{self, NewCallback, PROCESS_UPDATED};
use crate::db;
use crate::domain::requests::CapabilityRequest;
use crate::domain::routing::{self, Planned, RoutingError};
use crate::domain::status::{self, ItemState};
use crate::domain::time::now_ms;
use crate::events;

/// The serialized length of a JSON value, without building the string.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A validated request on its way into Postgres.
pub struct Creation {
    pub req: Arc<CapabilityRequest>,
    pub fingerprint: Vec<u8>,
    /// The request's canonical size, to keep statements under [`db::STATEMENT_BUDGET`] without
    /// serializing it again while the batch holds its connection.
    pub size: usize,
    pub process_id: Uuid,
    pub now: OffsetDateTime,
}

impl Creation {
    /// A new process for `req`: fresh id, the time now, fingerprint and size.
    pub fn new(req: Arc<CapabilityRequest>) -> Self {
        let (fingerprint, size) = req.fingerprint_and_size();
        Self {
            req,
            fingerprint,
            size,
            process_id: Uuid::now_v7(),
            now: now_ms(),
        }
    }
}

/// What became of one [`Creation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Inserted with its items and its `accepted` callback.
    Created { items: usize },
    /// A process with the same idempotency key exists (possibly from the same batch).
    Exists,
    /// The target does not resolve; nothing was written.
    Routing(RoutingError),
}

/// One transaction for the whole batch: the directory read for every target, then one insert
/// each into processes, queue_items and callback_deliveries.
pub async fn create(
    conn: &mut PgConnection,
    batch: &[Creation],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut accounts = BTreeSet::new();
    let mut phones = BTreeSet::new();
    for c in batch {
        accounts.extend(c.req.target.account_refs());
        phones.extend(c.req.target.phone_refs());
    }
    let accounts: Vec<String> = accounts.into_iter().collect();
    let phones: Vec<String> = phones.into_iter().collect();
    let mut tx = conn.begin().await?;
    let dir = db::accounts::directory(&mut tx, &accounts, &phones).await?;
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
    let mut plans: Vec<(usize, Vec<Planned>)> = Vec::with_capacity(batch.len());
    for (i, c) in batch.iter().enumerate() {
        match routing::resolve(&c.req.target, &dir) {
            Ok(p) => {
                outcomes.push(None);
                plans.push((i, p));
            }
            Err(e) => outcomes.push(Some(Outcome::Routing(e))),
        }
    }
    if plans.is_empty() {
        return Ok(outcomes.into_iter().flatten().collect());
    }
    // Idempotency-key order, so overlapping batches lock keys in the same order.
    fn key(c: &Creation) -> (&str, &str, &str) {
        (
            &c.req.capability,
            &c.req.requested_by.system,
            &c.req.request_id,
        )
    }
    plans.sort_by(|(a, _), (b, _)| key(&batch[*a]).cmp(&key(&batch[*b])));
    let rows: Vec<db::processes::NewProcess<'_>> = plans
        .iter()
        .map(|(i, planned)| {
            let c = &batch[*i];
            let states = vec![ItemState::Queued; planned.len()];
            db::processes::NewProcess {
                process_id: c.process_id,
                process_type: &c.req.capability,
                request_id: &c.req.request_id,
                system: &c.req.requested_by.system,
                mode: &c.req.mode,
                target: serde_json::to_value(&c.req.target).unwrap_or_default(),
                inputs: &c.req.inputs,
                requested_by: serde_json::to_value(&c.req.requested_by).unwrap_or_default(),
                callback: serde_json::to_value(&c.req.callback).unwrap_or_default(),
                fingerprint: &c.fingerprint,
                partial_progress: status::progress(&states),
                now: c.now,
            }
        })
        .collect();
    let mut inserted = HashSet::with_capacity(rows.len());
    // A row holds the request (target, inputs, callback, requested_by) plus fixed columns.
    let row_sizes: Vec<usize> = plans.iter().map(|(i, _)| batch[*i].size + 150).collect();
    for range in db::statement_ranges(&row_sizes) {
        inserted.extend(db::processes::insert_many(&mut tx, &rows[range]).await?);
    }
    let mut items = Vec::with_capacity(inserted.len());
    let mut item_sizes = Vec::with_capacity(inserted.len());
    let mut accepted = Vec::with_capacity(inserted.len());
    for ((i, planned), row) in plans.iter().zip(&rows) {
        let c = &batch[*i];
        if !inserted.contains(&c.process_id) {
            outcomes[*i] = Some(Outcome::Exists);
            continue;
        }
        outcomes[*i] = Some(Outcome::Created {
            items: planned.len(),
        });
        item_sizes.push(planned.len() * (c.size + 150));
        items.push(db::queue_items::NewItems {
            process_id: c.process_id,
            kind: &c.req.capability,
            mode: &c.req.mode,
            routing: &c.req.target.routing,
            inputs: &c.req.inputs,
            planned,
            now: c.now,
        });
        if let Some(event) = accepted_event(c, &row.callback) {
            accepted.push((c.process_id, event));
        }
    }
    for range in db::statement_ranges(&item_sizes) {
        db::queue_items::insert_many(&mut tx, &items[range]).await?;
    }
    let callbacks: Vec<NewCallback<'_>> = accepted
        .iter()
        .map(|(process_id, (url, event_id, body))| NewCallback {
            event_id: *event_id,
            event_type: PROCESS_UPDATED,
            process_id: Some(*process_id),
            queue_item_id: None,
            sequence: Some(1),
            url,
            body,
        })
        .collect();
    let callback_sizes: Vec<usize> = callbacks
        .iter()
        .map(|c| json_len(c.body) + c.url.len() + 100)
        .collect();
    for range in db::statement_ranges(&callback_sizes) {
        callbacks::enqueue_many(&mut tx, &callbacks[range]).await?;
    }
    tx.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Exists))
        .collect())
}

/// The `accepted` event of a new process: (url, event id, body), if it has a callback URL.
fn accepted_event(c: &Creation, callback: &Value) -> Option<(String, Uuid, Value)> {
    let url = callback.get("url").and_then(Value::as_str)?.to_owned();
    let process = events::EventProcess {
        process_id: c.process_id,
        process_type: &c.req.capability,
        request_id: &c.req.request_id,
        callback,
    };
    let (event_id, body) = events::process_updated_body(process, "accepted", "queued", 1, c.now)?;
    Some((url, event_id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_serialized_length() {
        assert_eq!(
            json_len(&serde_json::json!({"a": [1, "x"]})),
            r#"{"a":[1,"x"]}"#.len()
        );
    }
}

//! Signed HTTP callbacks delivered at least once from a Postgres outbox.
//!
//! The API and the event ingester call [`enqueue`] inside the transaction that changes state, so
//! a callback exists if and only if its state change committed; after the commit they call
//! `notify.notify_one()` on the [`Deliverer`]'s `Notify` so delivery starts at once.
//!
//! The [`Deliverer`] is a background loop. It claims due rows of `callback_deliveries` with
//! `FOR UPDATE SKIP LOCKED`, leasing them by pushing `next_attempt_at` into the future (so
//! several coordinator replicas can run side by side, and a crashed replica's rows come back when
//! the lease runs out), and POSTs each through the SSRF-guarded [`GuardedClient`] concurrently,
//! with a bounded number in flight and a timeout per attempt: a slow or dead receiver holds one
//! slot, never the API or other receivers. Every attempt is recorded in `callback_attempts`.
//! A 2xx is success; anything else (3xx included: redirects are not followed) is retried on the
//! [`Backoff`] schedule until 24 h after creation, then the delivery becomes `failed`. A URL
//! that can never work (not http(s), no host, or an IP-literal host the SSRF policy refuses)
//! fails at its first attempt.
//!
//! Every attempt of an event sends the same `event_id` and the same body bytes (serialized once
//! by [`enqueue`]); only the timestamp and signatures are fresh per attempt.
//!
//! [`GuardedClient`]: phonefarm_net::GuardedClient
//!
//! Round trips: the claim statement also says when the next row it did not take is due, so each
//! look is one round trip, rows or none (`store::claim`). Attempts are recorded through a
//! [`crate::batch::Batcher`] on one held connection: the attempts that finish while one batch is
//! written go together in one statement and one commit.

mod backoff;
mod deliverer;
mod signing;
mod store;

pub use backoff::Backoff;
pub use deliverer::{Deliverer, DelivererConfig, USER_AGENT};
pub use signing::{
    PHONEFARM_SIGNATURE, PHONEFARM_TIMESTAMP, Signer, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
};
pub use store::{
    AttemptView, DeliveryRecord, INSERT_MANY_SQL, attempts, deliveries_for_process,
    deliveries_for_queue_item,
};

/// `process.updated`.
pub const PROCESS_UPDATED: &str = "process.updated";
/// `queue_item.updated` (the legacy per-item callback of `POST /ingest`).
pub const QUEUE_ITEM_UPDATED: &str = "queue_item.updated";

/// One callback to deliver.
#[derive(Debug, Clone, Copy)]
pub struct NewCallback<'a> {
    /// Caller-chosen (UUIDv7), also in the body. Enqueueing the same `event_id` twice is a
    /// no-op.
    pub event_id: uuid::Uuid,
    /// `"process.updated"` ([`PROCESS_UPDATED`]) or `"queue_item.updated"`
    /// ([`QUEUE_ITEM_UPDATED`]).
    pub event_type: &'a str,
    /// The process, for `process.updated`.
    pub process_id: Option<uuid::Uuid>,
    /// The queue item, for `queue_item.updated`.
    pub queue_item_id: Option<uuid::Uuid>,
    /// The per-process sequence, stored as given (the body carries it too).
    pub sequence: Option<i64>,
    /// The receiver. Checked by the SSRF guard at delivery time; the API should also reject it
    /// early with [`GuardedClient::check_url`](phonefarm_net::GuardedClient::check_url).
    pub url: &'a str,
    /// The full body. Serialized once here; those exact bytes are sent and signed on every
    /// attempt.
    pub body: &'a serde_json::Value,
}

/// [`enqueue`] for many deliveries in one statement.
pub async fn enqueue_many(
    conn: &mut sqlx::PgConnection,
    cbs: &[NewCallback<'_>],
) -> Result<(), sqlx::Error> {
    store::insert_many(conn, cbs).await
}

/// Inserts one delivery row inside the caller's transaction (outbox pattern).
///
/// Call it on the transaction that makes the state change, then, after the commit,
/// `notify.notify_one()` on the deliverer's `Notify`. A row whose `event_id` already exists is
/// left alone (replays are no-ops).
pub async fn enqueue(
    conn: &mut sqlx::PgConnection,
    cb: NewCallback<'_>,
) -> Result<(), sqlx::Error> {
    store::insert(conn, &cb).await
}

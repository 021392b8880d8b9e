//! The lifecycle layer, between `http/` + `bus/` and `db/`: every change of a process or queue
//! item is one function here, in one transaction together with the callbacks and NATS
//! messages it causes (outbox rows). Handlers parse, authorize, call one of these and render;
//! the bus moves messages and calls these.
//!
//! - `create`: a batch of new processes with their items and `accepted` callbacks (the API's
//!   group commit, `http::batched`, gathers the batch).
//! - `dispatch`: the dispatcher's claim pass (release SCHEDULED items, claim, work orders).
//! - `inventory`: an agent's inventory report mirrored into `phones`.
//! - `agent_event`: one run event of an agent (the ingester's transaction).
//! - `cancel`: a process cancel (public) and a `post_video` cancel (legacy).
//! - `ingest`: a `post_video` item (`POST /ingest`).
//! - `lapse`: a run whose lease lapsed; the forced half of `soft_then_force` (the sweeper's).
//! - `fleet`: an account put, a runtime snapshot upsert.
//! - `retry`: an admin's retry of a dead-lettered item (decision 0005).
//! - `settle`: after an item changed state, the process's status, milestones and callbacks
//!   (the ingester and the sweeper call it inside their transactions), and cancel orders.

pub mod agent_event;
pub mod cancel;
pub mod create;
pub mod dispatch;
pub mod fleet;
pub mod ingest;
pub mod inventory;
pub mod lapse;
pub mod retry;
pub mod settle;

/// What to wake after a commit: the callback deliverer, the outbox relay, the dispatcher.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub callbacks: bool,
    pub relay: bool,
    pub dispatch: bool,
}

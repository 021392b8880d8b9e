//! The Phonefarm coordinator: serves the public process API over HTTPS (axum), keeps processes
//! and queue items in Postgres, delivers signed `process.updated` callbacks from an outbox, and
//! (with the NATS work) dispatches queue items to agents and ingests their milestones.

pub mod callbacks;
pub mod net;
pub mod config;
pub mod domain;
pub mod error;
pub mod db;
pub mod auth;
pub mod events;
pub mod http;
pub mod app;

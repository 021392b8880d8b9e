//! The Phonefarm coordinator: serves the public process API over HTTPS (axum), keeps processes
//! and queue items in Postgres, delivers signed `process.updated` callbacks from an outbox, and
//! (with the NATS work) dispatches queue items to agents and ingests their milestones.

pub mod app;
pub mod auth;
pub mod batch;
pub mod bus;
pub mod callbacks;
pub mod config;
pub mod console;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod fleet_auth;
pub mod flowpacks;
pub mod http;
pub mod lifecycle;
pub mod tls;

//! The coordinator under test: `app` spawns it over a fresh migrated database (without NATS)
//! with a client with one method per endpoint and callback receivers; `bus` spawns it with its
//! bus on a per-test nats-server, with a simulated agent speaking the shared wire contract;
//! `receivers`: scripted callback receivers; `console`: a signed-in console client.

pub mod app;
pub mod bus;
pub mod console;
pub mod receivers;

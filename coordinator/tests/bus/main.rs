//! Integration tests of the coordinator's NATS side: a real nats-server per test, real
//! Postgres (a database per test), and a simulated agent speaking the shared wire contract
//! (the harness: `phonefarm_testkit::coordinator::bus`).

mod bootstrap;
mod cancel;
mod dispatch;
mod enrollment;
mod fleet;
mod flowpacks;
mod ingest;
mod operator;
mod order;
mod outage;
mod permissions;
mod relay;
mod secrets;

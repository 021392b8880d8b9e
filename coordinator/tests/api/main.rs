//! Integration tests of the coordinator's public API: real Postgres (a database per test),
//! real HTTP over loopback, real callback receivers (the harness:
//! `phonefarm_testkit::coordinator::app`).

mod auth;
mod batched;
mod cancel;
mod contract;
mod enqueue;
mod faults;
mod legacy;
mod phone_actions;
mod states;

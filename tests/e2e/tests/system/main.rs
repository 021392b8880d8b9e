//! The whole system on one machine: Postgres, a real nats-server, the coordinator (API, bus
//! loops, callback deliverer), a real agent daemon (in this process, or its own OS process
//! where a test kills it) and simulated phones over ADB/TCP. Work goes in through the public
//! HTTP API and comes back as status and signed callbacks. One test binary, so the tests run
//! concurrently (`--test-threads`).
//!
//! - `capabilities`: each capability to `completed`; group fan-out with a failing phone.
//! - `cancel`: `soft`, `hard` and `soft_then_force` on executing work.
//! - `faults`: the agent process killed, a NATS outage, a coordinator restart, two replicas,
//!   a phone dropping off mid-run.
//! - `hostile`: a phone low on battery gets no work until it is charged.
//! - `phoneops`: the console's reboot and locate reach the simulated phone; refused during a run.
//! - `console`: the operators' console in Debian's chromium over WebDriver (skipped without
//!   it unless `PF_REQUIRE_BROWSER=1`).

mod cancel;
mod capabilities;
mod console;
mod faults;
mod harness;
mod hostile;
mod phoneops;

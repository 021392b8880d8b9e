//! Agent integration tests: key compatibility with Debian's adb, the phone actor over an
//! in-memory transport against a hand-driven device session, and the CLI process against the
//! simulator.

mod actor;
mod cli;
mod keys;

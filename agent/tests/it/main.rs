//! Agent integration tests: key compatibility with Debian's adb, and the phone actor over an
//! in-memory transport against a hand-driven device session.

mod actor;
mod keys;

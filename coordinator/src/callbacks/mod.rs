//! Signed HTTP callbacks delivered from the Postgres outbox (work in progress).

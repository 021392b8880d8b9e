//! End-to-end tests of the whole system (in `tests/`): coordinator, NATS, a real agent and
//! simulated phones, driven through the public HTTP API.

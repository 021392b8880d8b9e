//! The agent daemon against a real `nats-server` (2.9.10, spawned per test on a free port with
//! its own store dir, killed on drop) and simulated phones (`phonefarm_phonesim`). The test
//! plays the coordinator: it creates the streams, buckets and the agent's consumers as the
//! coordinator's bootstrap does, publishes work and controls, and reads `PF_EVT`.

mod cancel_evidence;
mod fleet_packs;
mod phoneops;
mod runs_and_auth;
mod support;
mod work;

//! Hostile phones: every fault of the phone model met through the agent's real path (the flow
//! runner over ADB to the simulator over TCP), asserting the outcome, its typed reason, the
//! evidence and what the simulated phone recorded. The simulator serves the `realistic`
//! profile ten times faster than real time (its shape kept), and dwells run 20 times faster.

mod account;
mod common;
mod device;
mod dumps;
mod fleet;
mod system;

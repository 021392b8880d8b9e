//! Integration tests of phonefarm-flows: the shipped flow packs, parser robustness, and
//! (against the in-process phone model) the UI layer and flows.

mod dump_props;
mod packs;
mod synth;

//! Integration tests of phonefarm-flows: the shipped flow packs, and (against the in-process
//! phone model) the UI layer and flows.

mod packs;

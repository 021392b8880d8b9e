//! Integration tests of phonefarm-flows: the shipped flow packs, parser robustness, and
//! (against the in-process phone model) screen identification and the flows.

mod dump_props;
mod flows;
mod hostile;
mod model;
mod packs;
mod post_video;
mod reload;
mod screens;
mod selector_props;
mod synth;

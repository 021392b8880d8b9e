//! Any bytes parse as a journal segment without panicking: the entries read are a prefix of
//! the frames (never garbage), framing them again parses back to the same entries, and
//! replaying them into a state (and checkpointing it) never panics.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::journal_segment::{State, frame, parse_frames};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.wal");
    let entries = parse_frames(data, path);
    let mut again = Vec::new();
    for e in &entries {
        frame(e, &mut again).expect("an entry that was read frames again");
    }
    assert_eq!(parse_frames(&again, path), entries);
    let mut state = State::default();
    for e in entries {
        state.apply(e);
    }
    let checkpoint = state.checkpoint();
    let mut rebuilt = State::default();
    for e in checkpoint {
        rebuilt.apply(e);
    }
    assert_eq!(rebuilt.orders, state.orders);
    assert_eq!(rebuilt.pending, state.pending);
});

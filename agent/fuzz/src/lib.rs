//! The agent's ADB protocol core (`agent/src/adb`, compiled here as it stands; see
//! Cargo.toml; cargo-fuzz sets `--cfg fuzzing`, which includes `adb::checks`, the stream
//! drivers the property tests use too), the journal's segment format, and helpers shared by
//! the fuzz targets.

#[path = "../../src/adb/mod.rs"]
pub mod adb;

/// The journal's segment format (`agent/src/uplink/journal/segment.rs`: pure, no I/O).
#[path = "../../src/uplink/journal/segment.rs"]
pub mod journal_segment;

/// `data` split at the given cut points (each taken modulo `len + 1`), so the same bytes can be
/// fed whole and in arbitrary pieces, including empty ones.
pub fn pieces<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    adb::checks::pieces(data, cuts.iter().map(|&c| usize::from(c) % (data.len() + 1)))
}

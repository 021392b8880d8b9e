//! The agent's ADB protocol core (`agent/src/adb`, compiled here as it stands; see
//! Cargo.toml) and helpers shared by the fuzz targets.

#[path = "../../src/adb/mod.rs"]
pub mod adb;

/// Splits `data` at the given cut points (each taken modulo `len + 1`, then sorted), so the
/// same bytes can be fed whole and in arbitrary pieces, including empty ones.
pub fn pieces<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

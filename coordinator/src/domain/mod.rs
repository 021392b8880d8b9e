//! Pure rules, no I/O: request validation, routing resolution, the capability registry and
//! status derivation.

pub mod capabilities;
pub mod check;
pub mod requests;
pub mod routing;
pub mod status;
pub mod time;

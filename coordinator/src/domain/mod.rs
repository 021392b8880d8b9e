//! Pure rules, no I/O: request validation, routing resolution, the capability registry,
//! status derivation and what follows a failed or lapsed run (`retry`).

pub mod capabilities;
pub mod check;
pub mod requests;
pub mod retry;
pub mod routing;
pub mod status;
pub mod time;

//! flows (work in progress)

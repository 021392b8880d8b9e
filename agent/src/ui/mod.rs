//! ui (work in progress)

//! phone (work in progress)

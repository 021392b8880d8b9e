//! UI automation and flows (work in progress).

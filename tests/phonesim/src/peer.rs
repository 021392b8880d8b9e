//! Device-side ADB peer (work in progress)

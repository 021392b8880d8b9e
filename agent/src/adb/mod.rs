//! adb (work in progress)

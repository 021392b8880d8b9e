//! Outbound HTTP with the SSRF guard (work in progress).

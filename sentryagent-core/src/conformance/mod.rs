//! Conformance suites.

pub mod rate_limiter;

//! Storage backends of the SentryAgent core traits.
//!
//! This crate will hold the sled backend (the embedded default: an
//! [`AgentStore`](sentryagent_core::AgentStore), a GCRA
//! [`RateLimiter`](sentryagent_core::RateLimiter) and a
//! [`UsageMeter`](sentryagent_core::UsageMeter) in one directory), the
//! Postgres backend (store and meter, with embedded migrations and full-text
//! marketplace search), and the Redis backend (cluster-safe GCRA limiter,
//! meter and revocation cache), each behind a cargo feature and each passing
//! the core's conformance suites. Backends are chosen by URL: `memory://`,
//! `sled://PATH`, `postgres://...`, `redis://...`.
//!
//! Until they land, the in-memory backends in
//! [`sentryagent_core::memory`] are what an `Idp` runs on.

pub use sentryagent_core::memory;

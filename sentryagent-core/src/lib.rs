//! SentryAgent core.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod error;
pub mod jose;
pub mod did;
pub mod ratelimit;
pub mod memory;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, LimitKind, Result};
pub use memory::MemoryRateLimiter;
pub use ratelimit::{Decision, Quota, RateLimiter};

/// Placeholder until the agent module lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleState {
    /// Active.
    Active,
}
impl std::fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("active")
    }
}

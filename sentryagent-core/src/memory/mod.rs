//! In-memory backends.

mod limiter;

pub use limiter::MemoryRateLimiter;

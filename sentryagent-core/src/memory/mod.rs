//! In-memory backends of every core trait. Always compiled: the defaults of
//! [`Idp::builder`](crate::Idp::builder), and the reference the conformance
//! suites are written against. Nothing survives the process.

mod limiter;
mod meter;
mod people;
mod store;
mod trust_policies;

pub use limiter::MemoryRateLimiter;
pub use meter::MemoryUsageMeter;
pub use store::MemoryStore;

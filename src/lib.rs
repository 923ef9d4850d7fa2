#![doc = include_str!("../README.md")]

pub use sentryagent_core::*;

/// The axum HTTP adapter (feature `http`).
#[cfg(feature = "http")]
pub use sentryagent_http as http;

/// Storage backends chosen by URL (feature `storage`).
#[cfg(feature = "storage")]
pub use sentryagent_storage as storage;

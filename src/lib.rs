#![doc = include_str!("../README.md")]

pub use sentryagent_core::*;

/// The axum HTTP adapter (feature `http`).
#[cfg(feature = "http")]
pub use sentryagent_http as http;

/// Storage backends chosen by URL (feature `storage`).
#[cfg(feature = "storage")]
pub use sentryagent_storage as storage;

/// Billing providers (feature `billing`; Stripe with feature `stripe`).
#[cfg(feature = "billing")]
pub use sentryagent_billing as billing_providers;

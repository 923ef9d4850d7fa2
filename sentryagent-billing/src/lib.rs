#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
pub mod event;
pub mod meter;
#[cfg(feature = "stripe")]
mod stripe;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

use std::sync::Arc;

pub use config::{MeterEventNames, PriceIds, RetryPolicy, StripeConfig};
pub use meter::{MeterReporter, MeterRun};
pub use sentryagent_core::NoBilling;
use sentryagent_core::{BillingProvider, Result};
#[cfg(feature = "stripe")]
pub use stripe::StripeBilling;
pub use webhook::{SignatureError, verify_signature};

/// The billing provider the environment asks for: [`StripeBilling`] when
/// `SENTRYAGENT_STRIPE_SECRET_KEY` is set (and the rest of
/// [`StripeConfig::from_env`] is complete), [`NoBilling`] when it is not.
pub fn provider_from_env() -> Result<Arc<dyn BillingProvider>> {
    provider_from_config(StripeConfig::from_env()?)
}

/// The billing provider for an optional Stripe configuration: `None` is
/// [`NoBilling`].
pub fn provider_from_config(config: Option<StripeConfig>) -> Result<Arc<dyn BillingProvider>> {
    match config {
        None => Ok(Arc::new(NoBilling)),
        #[cfg(feature = "stripe")]
        Some(c) => Ok(Arc::new(StripeBilling::new(c)?)),
        #[cfg(not(feature = "stripe"))]
        Some(_) => Err(sentryagent_core::Error::NotConfigured {
            message: "Stripe settings are present but sentryagent-billing was built without its `stripe` feature".into(),
        }),
    }
}

//! Billing for SentryAgent.
//!
//! This crate will hold `StripeBilling`, the
//! [`BillingProvider`](sentryagent_core::BillingProvider) on the Stripe API
//! (Checkout sessions, the Customer Portal, Billing Meter events) and the
//! project's own Stripe webhook signature verification. A deployment without
//! billing uses [`NoBilling`].

pub use sentryagent_core::NoBilling;

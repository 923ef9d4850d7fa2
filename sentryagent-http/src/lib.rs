//! The HTTP adapter of SentryAgent.
//!
//! This crate will hold `router(idp) -> axum::Router<S>`, which a host nests
//! into its own axum application: the OAuth 2.0 endpoints (RFC 8414 metadata,
//! JWKS, token, introspection, revocation), the `/v1` management API, the
//! public marketplace, health, Prometheus metrics and the OpenAPI document.
//! Handlers only translate between HTTP and the core's
//! [`Idp`](sentryagent_core::Idp); every rule lives in the core.

pub use sentryagent_core::oauth::OAuthError;

//! The one error type of the core traits and of [`Idp`](crate::idp::Idp) operations.
//!
//! Variants are *meanings*, not causes: a backend maps its own failure onto the
//! meaning and keeps the cause as `source`. Authentication failures are one
//! variant with no detail, so a caller cannot tell an unknown client from a
//! wrong or revoked secret.

use std::time::Duration;

/// A boxed error cause from a backend or parser.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which tier limit was reached (see [`Error::QuotaExceeded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// Number of agents a tenant may hold.
    Agents,
    /// Management/API calls per UTC day.
    ApiCallsPerDay,
    /// Token issuances per UTC month.
    TokenIssuancesPerMonth,
}

impl LimitKind {
    /// Stable snake_case name, as used in error bodies and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Agents => "agents",
            LimitKind::ApiCallsPerDay => "api_calls_per_day",
            LimitKind::TokenIssuancesPerMonth => "token_issuances_per_month",
        }
    }
}

/// Every failure of the core and its backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing does not exist (or the caller may not know that it does).
    #[error("{kind} not found")]
    NotFound {
        /// What was looked up ("agent", "tenant", ...).
        kind: &'static str,
    },
    /// A unique property (id, slug, name within a tenant, event id) is taken.
    #[error("{kind} already exists")]
    AlreadyExists {
        /// What collided.
        kind: &'static str,
    },
    /// The change conflicts with the current state (e.g. an illegal lifecycle
    /// transition, or a compare-and-swap that lost).
    #[error("conflict: {message}")]
    Conflict {
        /// Human readable detail.
        message: String,
    },
    /// Client or admin authentication failed. Deliberately carries no detail.
    #[error("authentication failed")]
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    #[error("forbidden: {message}")]
    Forbidden {
        /// Human readable detail.
        message: String,
    },
    /// A rate limit refused the request.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait before the request can pass.
        retry_after: Duration,
        /// The limit (requests per period) that applied.
        limit: u64,
    },
    /// A tier limit is exhausted.
    #[error("{} limit of the {tier} tier reached ({used} of {limit}); upgrade to raise it", limit_kind.as_str())]
    QuotaExceeded {
        /// Which limit.
        limit_kind: LimitKind,
        /// The tenant's tier name.
        tier: String,
        /// Current use.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The input is malformed or breaks a rule; the message says which.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which input field or parameter.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The requested scope is not allowed for this client.
    #[error("invalid scope: {message}")]
    InvalidScope {
        /// Which scope was refused.
        message: String,
    },
    /// The requested audience/resource is not allowed for this tenant.
    #[error("invalid target: {message}")]
    InvalidTarget {
        /// Which audience was refused.
        message: String,
    },
    /// A presented token is not valid (bad signature, expired, revoked...).
    #[error("invalid token")]
    InvalidToken {
        /// Internal reason, for logs and tests; never shown to a caller.
        #[source]
        reason: Option<BoxError>,
    },
    /// The grant type is not supported by the token endpoint.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// The agent is not in a state that may receive tokens.
    #[error("agent is {state}, not in a token-bearing state")]
    AgentNotActive {
        /// The agent's lifecycle state.
        state: crate::LifecycleState,
    },
    /// The tenant is suspended.
    #[error("tenant is suspended")]
    TenantSuspended,
    /// A feature is not configured (e.g. billing off).
    #[error("not configured: {message}")]
    NotConfigured {
        /// What is missing.
        message: String,
    },
    /// A backend is unreachable or failed; the request may be retried.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// Which backend and what happened.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },
    /// A bug or corrupt data: something that should never happen.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// `Invalid` shorthand.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// `Conflict` shorthand.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// `Unavailable` shorthand with a cause.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `Internal` shorthand with a cause.
    pub fn internal(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `InvalidToken` with an internal reason.
    pub fn invalid_token(reason: impl Into<BoxError>) -> Self {
        Error::InvalidToken {
            reason: Some(reason.into()),
        }
    }

    /// `NotFound` shorthand.
    pub fn not_found(kind: &'static str) -> Self {
        Error::NotFound { kind }
    }

    /// `AlreadyExists` shorthand.
    pub fn already_exists(kind: &'static str) -> Self {
        Error::AlreadyExists { kind }
    }
}

//! OAuth 2.0 error codes (RFC 6749 §5.2, RFC 7009, RFC 8707) for core errors,
//! so every adapter answers the same way.

use serde::Serialize;

use crate::Error;

/// An RFC 6749 §5.2 error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    /// The error code.
    pub error: &'static str,
    /// Human readable detail (never says which credential part was wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// HTTP status to answer with.
    #[serde(skip)]
    pub status: u16,
}

impl OAuthError {
    /// A new error.
    pub fn new(error: &'static str, status: u16, description: impl Into<String>) -> Self {
        OAuthError {
            error,
            error_description: Some(description.into()),
            status,
        }
    }
}

impl From<&Error> for OAuthError {
    fn from(e: &Error) -> Self {
        match e {
            Error::Unauthenticated => {
                OAuthError::new("invalid_client", 401, "client authentication failed")
            }
            Error::Invalid { .. } => OAuthError::new("invalid_request", 400, e.to_string()),
            Error::InvalidScope { .. } => OAuthError::new("invalid_scope", 400, e.to_string()),
            Error::InvalidTarget { .. } => OAuthError::new("invalid_target", 400, e.to_string()),
            Error::InvalidToken { .. } => OAuthError::new("invalid_grant", 400, "invalid token"),
            Error::AgentNotActive { .. } | Error::TenantSuspended | Error::Forbidden { .. } => {
                OAuthError::new("unauthorized_client", 400, e.to_string())
            }
            Error::UnsupportedGrantType => OAuthError::new(
                "unsupported_grant_type",
                400,
                "only client_credentials and token exchange (RFC 8693) are supported",
            ),
            Error::RateLimited { .. } => OAuthError::new("slow_down", 429, e.to_string()),
            Error::QuotaExceeded { .. } => OAuthError::new("quota_exceeded", 402, e.to_string()),
            Error::Unavailable { .. } => OAuthError::new(
                "temporarily_unavailable",
                503,
                "the service is temporarily unavailable",
            ),
            Error::NotFound { .. } | Error::AlreadyExists { .. } | Error::Conflict { .. } => {
                OAuthError::new("invalid_request", 400, e.to_string())
            }
            Error::NotConfigured { .. } | Error::Internal { .. } => {
                OAuthError::new("server_error", 500, "internal error")
            }
        }
    }
}

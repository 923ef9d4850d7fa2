//! Federation: a token from another identity provider (a GitHub Actions,
//! GitLab CI or Kubernetes ID token) exchanged for a token of this one
//! (RFC 8693), under a tenant's trust policies. No secret is stored
//! anywhere: the subject token is the credential.
//!
//! The pieces, each free of I/O and usable on its own:
//!
//! - [`TrustPolicy`]: which issuer, audience and claims a tenant trusts, and
//!   what it grants (an agent's access token, or a short-lived management
//!   token with some admin scopes). [`NewTrustPolicy`] and
//!   [`TrustPolicyPatch`] are validated by [`TrustPolicy::validate`],
//!   which also holds the GitHub repository-pin rule.
//! - [`glob_match`] and [`conditions_match`]: a policy's claim conditions
//!   (exact strings, or globs with `*`), and [`select_policy`]: exactly one
//!   policy must match a verified subject token.
//! - [`parse_subject_token`] and [`UnverifiedSubject::verify`]: the
//!   subject token's signature against the issuer's keys ([`IssuerKeySet`],
//!   from a JWKS: RS256, ES256 or EdDSA, the algorithm matching the key's
//!   type; `none` and HMAC refused) and its time claims (60 s leeway).
//! - [`IssuerKeys`]: where an issuer's keys come from. The core holds no
//!   HTTP client: [`StaticIssuerKeys`] holds configured key sets, and the
//!   HTTP adapter has a fetcher (OIDC discovery, then `jwks_uri`, cached).
//!
//! [`Idp::exchange_token`](crate::Idp::exchange_token) puts them together,
//! with the rate limits, metering and audit of a token request.

mod issuer_keys;
mod matcher;
mod policy;
mod subject;

pub use issuer_keys::{IssuerKeys, StaticIssuerKeys};
pub use matcher::{Refusal, claim_text, conditions_match, glob_match, select_policy};
pub use policy::{
    DEFAULT_MAX_SUBJECT_TOKEN_AGE_SECONDS, DEFAULT_MAX_TOKEN_TTL_SECONDS, GITHUB_ACTIONS_ISSUER,
    GITHUB_REPOSITORY_CLAIMS, GITLAB_ISSUER, GITLAB_PROJECT_CLAIMS, MAX_CONDITIONS,
    MAX_SUBJECT_TOKEN_AGE_SECONDS, MAX_TOKEN_TTL_SECONDS, NewTrustPolicy, TrustGrant, TrustPolicy,
    TrustPolicyPatch,
};
pub use subject::{
    IssuerKey, IssuerKeySet, JwksError, LEEWAY, MAX_JWKS_KEYS, MAX_SUBJECT_TOKEN_LEN,
    SubjectAlgorithm, SubjectError, SubjectKey, UnverifiedSubject, VerifiedSubject,
    parse_subject_token,
};

use serde::{Deserialize, Serialize};

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Subject token type of an OpenID Connect ID token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Subject token type of a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The issued token type: an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `typ` header of management tokens (a token exchange's answer for a
/// tenant: accepted by the management API as `Authorization: Bearer`).
pub const MANAGEMENT_TOKEN_TYP: &str = "sa-mgmt+jwt";

/// What a token exchange asks for: exactly one target, so that only the
/// policies of the target's tenant come into play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeTarget {
    /// `client_id=<agent id>`: that agent's access token, under the
    /// policies of its tenant that grant it.
    Agent(String),
    /// `tenant=<tenant id>`: a management token of that tenant, under its
    /// policies that grant admin scopes.
    Tenant(String),
}

/// A token exchange request (RFC 8693 §2.1), as read from the form by
/// [`form::exchange_request`](crate::form::exchange_request).
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    /// The token of the other identity provider.
    pub subject_token: String,
    /// [`ID_TOKEN_TYPE`] or [`JWT_TOKEN_TYPE`].
    pub subject_token_type: String,
    /// What is asked for.
    pub target: ExchangeTarget,
    /// `scope`, space separated: for an agent, among its allowed scopes; for
    /// a management token, admin scope names among the policy's.
    pub scope: Option<String>,
    /// `resource` and `audience` values (agent tokens only).
    pub resources: Vec<String>,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token_type", &self.subject_token_type)
            .field("target", &self.target)
            .field("scope", &self.scope)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

/// A successful token exchange (RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExchangeResponse {
    /// The issued token (a JWT).
    pub access_token: String,
    /// Always [`ACCESS_TOKEN_TYPE`].
    pub issued_token_type: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, space separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The rate-limit decision that admitted the request, for the
    /// `RateLimit-*` response headers: not part of the JSON answer.
    #[serde(skip)]
    pub rate_limit: Option<crate::Decision>,
}

/// The `act` claim (RFC 8693 §4.1) of an exchanged token: the subject of the
/// token that was exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// The other identity provider.
    pub iss: String,
    /// The subject there (e.g. `repo:octo-org/octo-agent:ref:refs/heads/main`).
    pub sub: String,
}

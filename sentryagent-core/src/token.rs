//! Access tokens (RFC 9068 JWT profile), token requests and introspection.

use serde::{Deserialize, Serialize};

use crate::ratelimit::Decision;
use crate::{AgentId, TenantId};

/// `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The client-assertion type of `private_key_jwt` (RFC 7523).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The only grant type of the token endpoint.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Claim names a custom claim may not use.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "tenant_id",
    "did",
    "cnf",
    "act",
    "may_act",
    "auth_time",
    "acr",
    "amr",
];

pub use crate::jose::Audience;

/// The claims of an access token issued here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the agent id.
    pub sub: String,
    /// Audience(s).
    pub aud: Audience,
    /// Client id (= agent id).
    pub client_id: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Not before (seconds).
    pub nbf: i64,
    /// Expires (seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Granted scopes, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Tenant of the agent.
    pub tenant_id: String,
    /// The agent's `did:key`.
    pub did: String,
    /// The agent's custom claims.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How a client authenticates at the token, introspection and revocation
/// endpoints.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// `private_key_jwt` (RFC 7523 §2.2).
    Assertion {
        /// `client_id` parameter, if sent (must match the assertion).
        client_id: Option<String>,
        /// `client_assertion_type` parameter.
        assertion_type: String,
        /// `client_assertion` parameter.
        assertion: String,
    },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredentials::Secret { client_id, .. } => f
                .debug_struct("Secret")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            ClientCredentials::Assertion { client_id, .. } => f
                .debug_struct("Assertion")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

/// The client authentication method that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// A client secret.
    ClientSecret,
    /// A JWT signed with the agent's key.
    PrivateKeyJwt,
}

/// A token request (`grant_type=client_credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: String,
    /// Client authentication.
    pub client: ClientCredentials,
    /// `scope`, space separated.
    pub scope: Option<String>,
    /// `resource` and `audience` values (RFC 8707).
    pub resources: Vec<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The rate-limit decision that admitted the request, for the
    /// `RateLimit-*` response headers: not part of the JSON answer (`None`
    /// when read back from one).
    #[serde(skip)]
    pub rate_limit: Option<Decision>,
}

/// An introspection answer (RFC 7662): inactive is just `{"active":false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Introspection {
    /// Whether the token is active.
    pub active: bool,
    /// The claims, when active.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claims: Option<IntrospectionClaims>,
    /// The rate-limit decision that admitted the request, for the
    /// `RateLimit-*` response headers: not part of the JSON answer.
    #[serde(skip)]
    pub rate_limit: Option<Decision>,
}

/// What an active introspection answer carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntrospectionClaims {
    /// Scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Subject.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Issuer.
    pub iss: String,
    /// Token id.
    pub jti: String,
    /// Tenant.
    pub tenant_id: String,
    /// Agent DID.
    pub did: String,
}

/// `{"active": false}`, or `active: true` with the claims flattened in.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Introspection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::ToSchema;
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::{
            AdditionalProperties, AllOfBuilder, ObjectBuilder, OneOfBuilder, Type,
        };
        let active = |v: bool| {
            ObjectBuilder::new()
                .property(
                    "active",
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .enum_values(Some([v])),
                )
                .required("active")
        };
        OneOfBuilder::new()
            .description(Some(
                "RFC 7662: `{\"active\": false}`, or `active: true` and the claims",
            ))
            .item(active(false).additional_properties(Some(AdditionalProperties::FreeForm(false))))
            .item(
                AllOfBuilder::new()
                    .item(active(true))
                    .item(Ref::from_schema_name(IntrospectionClaims::name())),
            )
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Introspection {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            <IntrospectionClaims as utoipa::ToSchema>::name().into(),
            IntrospectionClaims::schema(),
        ));
        <IntrospectionClaims as utoipa::ToSchema>::schemas(schemas);
    }
}

impl Introspection {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        Introspection {
            active: false,
            claims: None,
            rate_limit: None,
        }
    }
}

/// Who a successful client authentication found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedClient {
    /// The agent.
    pub agent_id: AgentId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// How.
    pub method: ClientAuthMethod,
}

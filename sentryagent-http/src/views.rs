//! Request and response shapes owned by the HTTP layer: bodies and query
//! strings of the routes, public views that leave out internal fields, and
//! schema documents for OpenAPI.

use sentryagent_core::credentials::{AdminKey, AdminScope};
use sentryagent_core::{
    Agent, AgentId, Ed25519PrivateJwk, LifecycleState, Tenant, TenantId, TenantStatus, Tier,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An RFC 9457 problem document.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemDoc {
    /// URI of the problem type (`urn:sentryagent:problem:<kind>`).
    #[serde(rename = "type")]
    pub(crate) type_: String,
    /// Short summary.
    pub(crate) title: String,
    /// HTTP status.
    pub(crate) status: u16,
    /// What happened.
    pub(crate) detail: Option<String>,
}

/// An RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
pub(crate) struct OAuthErrorDoc {
    /// Error code (`invalid_request`, `invalid_client`, ...).
    pub(crate) error: String,
    /// Detail.
    pub(crate) error_description: Option<String>,
}

/// `?tenant_id=`: the tenant an operator key acts on (tenant keys act on
/// their own tenant and may omit it).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantParam {
    /// Tenant id (operator keys).
    #[param(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
}

/// A page of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Tenant id (operator keys).
    #[param(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
    /// Cursor from the previous page's `next_cursor`.
    pub(crate) cursor: Option<String>,
    /// Page size (1 to 500, default 50).
    pub(crate) limit: Option<usize>,
}

/// Filters of the audit listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Tenant chain to read (operator keys; omitted: the system chain).
    #[param(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
    /// Events at or after this time (RFC 3339).
    #[param(value_type = Option<String>)]
    pub(crate) from: Option<Timestamp>,
    /// Events before this time (RFC 3339).
    #[param(value_type = Option<String>)]
    pub(crate) to: Option<Timestamp>,
    /// Exact action, e.g. `agent.registered`.
    pub(crate) action: Option<String>,
    /// Exact actor, e.g. `admin_key:...`.
    pub(crate) actor: Option<String>,
    /// Cursor from the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size (1 to 1000, default 100).
    pub(crate) limit: Option<usize>,
}

/// Days of the daily series.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DaysParams {
    /// Tenant id (operator keys).
    #[param(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
    /// Number of days, today last (1 to 366, default 30).
    pub(crate) days: Option<u32>,
}

/// Month of the per-agent table.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MonthParams {
    /// Tenant id (operator keys).
    #[param(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
    /// `YYYY-MM` (default: this month, UTC).
    pub(crate) month: Option<String>,
}

/// Marketplace search.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MarketplaceParams {
    /// Words, all of which must match name, description, capabilities or
    /// tags (prefix match, case-insensitive).
    pub(crate) q: Option<String>,
    /// Exact capability.
    pub(crate) capability: Option<String>,
    /// Exact tag.
    pub(crate) tag: Option<String>,
    /// Exact category.
    pub(crate) category: Option<String>,
    /// Publisher (tenant) id.
    #[param(value_type = Option<String>)]
    pub(crate) publisher: Option<TenantId>,
    /// Cursor from the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size (1 to 500, default 50).
    pub(crate) limit: Option<usize>,
}

/// Changes to a tenant (operator keys).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantPatch {
    /// New tier: `free`, `pro` or `enterprise`.
    #[schema(value_type = Option<String>)]
    pub(crate) tier: Option<Tier>,
    /// New status: `active` or `suspended`.
    #[schema(value_type = Option<String>)]
    pub(crate) status: Option<TenantStatus>,
}

/// A new admin API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApiKey {
    /// Label.
    pub(crate) name: String,
    /// Scopes (`admin`, `agents_read`, `agents_write`, `audit_read`,
    /// `billing_read`, `billing_write`); default `["admin"]`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub(crate) scopes: Option<Vec<AdminScope>>,
}

/// An admin API key without its hash; `key` only in the creation answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    /// Id.
    pub(crate) id: String,
    /// Visible start of the key.
    pub(crate) prefix: String,
    /// Tenant, or null for an operator key.
    pub(crate) tenant_id: Option<String>,
    /// Label.
    pub(crate) name: String,
    /// Scopes.
    #[schema(value_type = Vec<String>)]
    pub(crate) scopes: Vec<AdminScope>,
    /// Creation time.
    #[schema(value_type = String)]
    pub(crate) created_at: Timestamp,
    /// Last use.
    #[schema(value_type = Option<String>)]
    pub(crate) last_used_at: Option<Timestamp>,
    /// Revocation time.
    #[schema(value_type = Option<String>)]
    pub(crate) revoked_at: Option<Timestamp>,
    /// The key itself: shown once, at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

impl ApiKeyView {
    pub(crate) fn new(k: &AdminKey, key: Option<String>) -> Self {
        ApiKeyView {
            id: k.id.to_string(),
            prefix: k.prefix.clone(),
            tenant_id: k.tenant_id.as_ref().map(ToString::to_string),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            key,
        }
    }
}

/// A lifecycle transition.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LifecycleBody {
    /// Target state: `draft`, `deployed`, `listed`, `active`, `paused` or
    /// `retired`.
    #[schema(value_type = String)]
    pub(crate) state: LifecycleState,
}

/// A tier to move to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierBody {
    /// `pro` or `enterprise`.
    #[schema(value_type = String)]
    pub(crate) tier: Tier,
    /// Tenant id (operator keys).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub(crate) tenant_id: Option<TenantId>,
}

/// A URL to send the user to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UrlView {
    /// The URL.
    pub(crate) url: String,
    /// Provider id of the session, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
}

/// A registered agent with what is shown only once.
#[derive(Debug, Serialize)]
pub(crate) struct RegisteredView {
    /// The agent (its `id` is the OAuth `client_id`).
    #[serde(flatten)]
    pub(crate) agent: Agent,
    /// Same as `id`.
    pub(crate) client_id: String,
    /// Client secret: store it now, it is kept only hashed.
    pub(crate) client_secret: String,
    /// The generated Ed25519 private key (RFC 8037 JWK), when the agent
    /// brought no key: store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) private_jwk: Option<Ed25519PrivateJwk>,
}

/// A new client secret after rotation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedView {
    /// The new secret (shown once).
    pub(crate) client_secret: String,
    /// End of the grace period of the previous secrets.
    #[schema(value_type = String)]
    pub(crate) previous_valid_until: Timestamp,
}

/// An agent as the public sees it: no scopes, no custom claims.
#[derive(Debug, Serialize)]
pub(crate) struct PublicAgent {
    pub(crate) id: AgentId,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) version: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) category: Option<String>,
    pub(crate) state: LifecycleState,
    pub(crate) did: String,
    pub(crate) publisher_id: TenantId,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
}

impl From<&Agent> for PublicAgent {
    fn from(a: &Agent) -> Self {
        PublicAgent {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            version: a.version.clone(),
            capabilities: a.capabilities.clone(),
            tags: a.tags.clone(),
            category: a.category.clone(),
            state: a.state,
            did: a.did.clone(),
            publisher_id: a.tenant_id.clone(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A publisher's public profile.
#[derive(Debug, Serialize)]
pub(crate) struct PublisherView {
    pub(crate) id: TenantId,
    pub(crate) slug: String,
    pub(crate) display_name: String,
    pub(crate) website: Option<String>,
    pub(crate) verified: bool,
}

impl From<&Tenant> for PublisherView {
    fn from(t: &Tenant) -> Self {
        PublisherView {
            id: t.id.clone(),
            slug: t.slug.clone(),
            display_name: t.publisher.display_name.clone(),
            website: t.publisher.website.clone(),
            verified: t.publisher.verified,
        }
    }
}

//! Request and response shapes owned by the HTTP layer: bodies and query
//! strings of the routes, public views that leave out internal fields, and
//! schema documents for OpenAPI.

use crate::a2a::AgentCard;
use sentryagent_core::ChainHead;
use sentryagent_core::did::DidDocument;
use sentryagent_core::{AdminKey, AdminScope};
use sentryagent_core::{
    Agent, AgentId, AgentUsageRow, DailyCount, Ed25519PrivateJwk, LifecycleState, Page,
    PublisherVerification, Subscription, Tenant, TenantId, TenantStatus, Tier, Timestamp,
};
use sentryagent_core::{BackendHealth, HealthStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// An RFC 9457 problem document (`application/problem+json`). Besides
/// `type`, `title`, `status` and `detail`, some problems carry extension
/// members, listed here as optional properties.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:sentryagent:problem:not-found",
    "title": "Not found",
    "status": 404,
    "detail": "agent not found"
}))]
#[allow(dead_code)]
pub(crate) struct ProblemDoc {
    /// URI of the problem type (`urn:sentryagent:problem:<kind>`).
    #[serde(rename = "type")]
    pub(crate) type_: String,
    /// Short summary.
    pub(crate) title: String,
    /// HTTP status.
    pub(crate) status: u16,
    /// What happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// 422: the input field that is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// 422: why it is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// 429: seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_seconds: Option<u64>,
    /// 413: the body limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit_bytes: Option<u64>,
    /// 402: which limit of the tier was reached (`agents`,
    /// `api_calls_per_day`, `token_issuances_per_month`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit_kind: Option<String>,
    /// 402: the tenant's tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tier: Option<String>,
    /// 402: the use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) used: Option<u64>,
    /// 402: the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit: Option<u64>,
    /// 402: how to upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upgrade: Option<UpgradeHint>,
}

/// The request that raises a tier limit (in a 402 problem).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct UpgradeHint {
    /// `POST`.
    pub(crate) method: String,
    /// The upgrade route of this deployment.
    pub(crate) href: String,
    /// The body to send, e.g. `{"tier": "pro"}`.
    pub(crate) body: UpgradeBody,
}

/// The body of an upgrade request named by a 402 problem.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct UpgradeBody {
    /// The tier to move to.
    pub(crate) tier: Tier,
}

/// An RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "error": "invalid_client",
    "error_description": "client authentication failed"
}))]
#[allow(dead_code)]
pub(crate) struct OAuthErrorDoc {
    /// Error code (`invalid_request`, `invalid_client`, `invalid_scope`,
    /// `invalid_target`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `slow_down`, `quota_exceeded`,
    /// `temporarily_unavailable`, `server_error`).
    pub(crate) error: String,
    /// Detail (never says which credential part was wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_description: Option<String>,
}

/// One Server-Sent Event of `GET /v1/audit/stream`, as a client's event
/// source hands it over (keep-alive comments aside): `event: audit` with
/// `id: <chain>:<seq>` and an audit event as JSON in `data`, or `event:
/// lagged` with the number of events the reader missed in `data`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "event": "audit",
    "id": "tnt_01a235d6bd3b75a3b03315a80a3fd1c6:31",
    "data": "{\"seq\":31,\"action\":\"agent.updated\",\"outcome\":\"success\"}"
}))]
#[allow(dead_code)]
pub(crate) struct AuditStreamEventDoc {
    /// The event type.
    pub(crate) event: AuditStreamEventKind,
    /// `<tenant id or system>:<seq>`, the value for `Last-Event-ID` (an
    /// event source keeps the last one on `lagged` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// `audit`: the audit event as JSON; `lagged`: the number of missed
    /// events.
    pub(crate) data: String,
}

/// The event types of the audit stream.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum AuditStreamEventKind {
    /// An audit event.
    Audit,
    /// The reader was too slow and missed events.
    Lagged,
}

/// Errors of every route behind the admin-key check (problem documents).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum AuthErrors {
    /// No admin key where one is needed, or a key that does not
    /// authenticate (`WWW-Authenticate: Bearer`).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(ProblemDoc),
    /// A tier limit is reached: the daily API calls of a tenant key's
    /// tier, or the limit the operation consumes (e.g. agents).
    #[response(status = 402, content_type = "application/problem+json")]
    QuotaExceeded(ProblemDoc),
    /// The caller lacks the scope (a member: the role's scopes), the
    /// tenant is suspended, or a session's state-changing request lacks its
    /// CSRF token.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// The tenant's rate limit (tenant keys).
    #[response(
        status = 429,
        content_type = "application/problem+json",
        headers(
            ("Retry-After" = u64, description = "seconds to wait"),
            ("RateLimit-Limit" = u64, description = "requests per minute"),
            ("RateLimit-Remaining" = u64, description = "0"),
            ("RateLimit-Reset" = u64, description = "seconds until a request is admitted"),
        )
    )]
    RateLimited(ProblemDoc),
    /// A backend is unavailable, or the request timed out (`Retry-After`).
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

/// Errors of the input of a route: its query string, body or values.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum InputErrors {
    /// A malformed body or query string (unknown parameter, bad value).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// A value the operation refuses (`field` and `reason` say which).
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(ProblemDoc),
}

/// Errors of a JSON request body, beyond [`InputErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BodyErrors {
    /// The body is larger than the router's body limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
}

/// The resource does not exist or the key does not reach it.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
pub(crate) struct NotFound(ProblemDoc);

/// A request that timed out (routes outside the admin-key check).
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
#[allow(dead_code)]
pub(crate) struct TimedOut(ProblemDoc);

/// `?tenant_id=`: the tenant an operator key acts on (tenant keys act on
/// their own tenant and may omit it).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantParam {
    /// Tenant id (operator keys).
    pub(crate) tenant_id: Option<TenantId>,
}

/// A page of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Tenant id (operator keys).
    pub(crate) tenant_id: Option<TenantId>,
    /// Cursor from the previous page's `next_cursor`.
    pub(crate) cursor: Option<String>,
    /// Page size (1 to 500, default 50).
    pub(crate) limit: Option<usize>,
}

/// A page of a tenant's agents, or the one with a name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentListParams {
    /// Tenant id (operator keys).
    pub(crate) tenant_id: Option<TenantId>,
    /// Only the agent with this exact name (a page of none or one).
    pub(crate) name: Option<String>,
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
    pub(crate) tenant_id: Option<TenantId>,
    /// Events at or after this time (RFC 3339).
    pub(crate) from: Option<Timestamp>,
    /// Events before this time (RFC 3339).
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
    pub(crate) publisher: Option<TenantId>,
    /// Agent id. This and the other directory filters below compare
    /// without regard to case, exactly, or as a prefix when the value ends
    /// with `*`; 1 to 200 characters.
    pub(crate) agent: Option<String>,
    /// Agent name.
    pub(crate) name: Option<String>,
    /// Agent version.
    pub(crate) version: Option<String>,
    /// OASF skill id of a capability (digits), as in the OASF record.
    pub(crate) skill_id: Option<String>,
    /// OASF skill name of a capability
    /// (`ai_ml_engineering/agent_development/agent_memory`).
    pub(crate) skill_name: Option<String>,
    /// A locator of the OASF record: the entry or card URL (or its path
    /// below the issuer).
    pub(crate) locator: Option<String>,
    /// OASF domain of the category, by name or id.
    pub(crate) domain: Option<String>,
    /// Publisher display name or slug.
    pub(crate) author: Option<String>,
    /// `true`: verified publishers only; `false`: unverified ones only.
    pub(crate) verified: Option<bool>,
    /// An OASF record annotation, `key=value` (`sentryagent.tags=finance`;
    /// a trailing `*` makes the value a prefix).
    pub(crate) annotation: Option<String>,
    /// Opaque cursor: `next_cursor` of the previous page (same filters).
    pub(crate) cursor: Option<String>,
    /// Page size (1 to 500, default 50).
    pub(crate) limit: Option<usize>,
}

/// Changes to a tenant (operator keys).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tier": "pro", "status": "active"}))]
pub(crate) struct TenantPatch {
    /// New tier: `free`, `pro` or `enterprise`.
    pub(crate) tier: Option<Tier>,
    /// New status: `active` or `suspended`.
    pub(crate) status: Option<TenantStatus>,
    /// Why the tenant is suspended (with `"status": "suspended"` only),
    /// shown to its members.
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// A new admin API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci", "scopes": ["agents_read", "agents_write"], "expires_at": "2030-01-01T00:00:00Z"}))]
pub(crate) struct NewApiKey {
    /// Label.
    pub(crate) name: String,
    /// Scopes (`admin`, `agents_read`, `agents_write`, `audit_read`,
    /// `billing_read`, `billing_write`, `members_read`, `members_write`,
    /// `api_keys_write`), only ones the caller holds; default: the caller's
    /// own (`["admin"]` for an operator or a tenant's owner).
    #[serde(default)]
    pub(crate) scopes: Option<Vec<AdminScope>>,
    /// End of validity (RFC 3339, in the future); default: never.
    #[serde(default)]
    pub(crate) expires_at: Option<Timestamp>,
}

/// Why a key is revoked (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "leaked in a CI log"}))]
pub(crate) struct RevokeBody {
    /// 1 to 500 characters, kept with the key and shown in listings.
    #[serde(default)]
    pub(crate) reason: Option<String>,
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
    pub(crate) scopes: Vec<AdminScope>,
    /// Creation time.
    pub(crate) created_at: Timestamp,
    /// Last use.
    pub(crate) last_used_at: Option<Timestamp>,
    /// Revocation time.
    pub(crate) revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub(crate) revocation_reason: Option<String>,
    /// End of validity, if any.
    pub(crate) expires_at: Option<Timestamp>,
    /// Requests it authenticated (written at most once a minute per node).
    pub(crate) request_count: u64,
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
            revocation_reason: k.revocation_reason.clone(),
            expires_at: k.expires_at,
            request_count: k.request_count,
            key,
        }
    }
}

/// A lifecycle transition.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"state": "listed"}))]
pub(crate) struct LifecycleBody {
    /// Target state: `draft`, `deployed`, `listed`, `active`, `paused` or
    /// `retired`.
    pub(crate) state: LifecycleState,
}

/// Options of a secret rotation (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"grace_seconds": 3600}))]
pub(crate) struct RotateBody {
    /// How long the previous secrets stay valid, in seconds (0 to 2592000,
    /// i.e. 30 days; 0 ends them at once). Absent: the server's configured
    /// grace period.
    #[serde(default)]
    pub(crate) grace_seconds: Option<u64>,
}

/// A tier to move to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tier": "pro"}))]
pub(crate) struct TierBody {
    /// `pro` or `enterprise`.
    pub(crate) tier: Tier,
    /// Tenant id (operator keys).
    #[serde(default)]
    pub(crate) tenant_id: Option<TenantId>,
}

/// A URL to send the user to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"url": "https://checkout.stripe.com/c/pay/cs_test_a1", "id": "cs_test_a1"}))]
pub(crate) struct UrlView {
    /// The URL.
    pub(crate) url: String,
    /// Provider id of the session, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
}

/// A registered agent with what is shown only once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegisteredView {
    /// The agent (its `id` is the OAuth `client_id`).
    #[serde(flatten)]
    pub(crate) agent: Agent,
    /// Same as `id`.
    pub(crate) client_id: String,
    /// Client secret: store it now, it is kept only hashed. Absent when
    /// registered with `issue_client_secret: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret: Option<String>,
    /// The generated Ed25519 private key (RFC 8037 JWK), when the agent
    /// brought no key: store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) private_jwk: Option<Ed25519PrivateJwk>,
}

/// A new client secret after rotation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"client_secret": "sa_cs_8Jd2kQ0v", "previous_valid_until": "2026-11-23T10:00:00Z"}))]
pub(crate) struct RotatedView {
    /// The new secret (shown once).
    pub(crate) client_secret: String,
    /// End of the grace period of the previous secrets.
    pub(crate) previous_valid_until: Timestamp,
}

/// An agent as the public sees it: no scopes, no custom claims.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublicAgent {
    /// Id (the OAuth `client_id`).
    pub(crate) id: AgentId,
    /// Name.
    pub(crate) name: String,
    /// Description.
    pub(crate) description: String,
    /// Version of the agent software.
    pub(crate) version: String,
    /// Capabilities (its skills).
    pub(crate) capabilities: Vec<String>,
    /// Tags.
    pub(crate) tags: Vec<String>,
    /// Category.
    pub(crate) category: Option<String>,
    /// Lifecycle state (`listed` or `active` in the marketplace).
    pub(crate) state: LifecycleState,
    /// Its `did:key`.
    pub(crate) did: String,
    /// The publishing tenant.
    pub(crate) publisher_id: TenantId,
    /// Creation time.
    pub(crate) created_at: Timestamp,
    /// Last change.
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
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublisherView {
    /// The tenant id.
    pub(crate) id: TenantId,
    /// URL handle (`/v1/publishers/{slug}`).
    pub(crate) slug: String,
    /// Display name.
    pub(crate) display_name: String,
    /// Website.
    pub(crate) website: Option<String>,
    /// Whether the publisher is verified (by the operator, or by a proof of
    /// control of its website's domain).
    pub(crate) verified: bool,
    /// How and when it was verified (`method` `domain` with the proven
    /// `domain`, or `operator`), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) verification: Option<PublisherVerification>,
}

impl From<&Tenant> for PublisherView {
    fn from(t: &Tenant) -> Self {
        PublisherView {
            id: t.id.clone(),
            slug: t.slug.clone(),
            display_name: t.publisher.display_name.clone(),
            website: t.publisher.website.clone(),
            verified: t.publisher.verified,
            verification: t.publisher.verification.clone(),
        }
    }
}

/// The answer of `POST /v1/agents/{id}/credentials/revoke`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"revoked": 2}))]
pub(crate) struct RevokedView {
    /// How many client secrets were revoked.
    pub(crate) revoked: u64,
}

/// The head of a verified audit chain.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"head": {"seq": 42, "hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}))]
pub(crate) struct AuditHeadView {
    /// The last event's position and hash; `null` for an empty chain.
    pub(crate) head: Option<ChainHead>,
}

/// Token issuances per UTC day.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"days": [{"day": "2026-11-21", "count": 12}, {"day": "2026-11-22", "count": 3}]}))]
pub(crate) struct DailyTokensView {
    /// One entry per day, today last.
    pub(crate) days: Vec<DailyCount>,
}

/// The weekdays of [`HeatmapView`], Monday first.
pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Token issuances of the last 28 days by UTC weekday and hour.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "heatmap": [[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 7, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]
}))]
pub(crate) struct HeatmapView {
    /// `mon` to `sun`: the row names of `heatmap`.
    #[schema(value_type = Vec<String>, min_items = 7, max_items = 7)]
    pub(crate) weekdays: [&'static str; 7],
    /// `heatmap[weekday][hour]`: 7 rows (Monday first) of 24 counts.
    #[schema(value_type = Vec<Vec<u64>>, min_items = 7, max_items = 7)]
    pub(crate) heatmap: [[u64; 24]; 7],
}

/// Token issuances per agent in a month.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentTableView {
    /// One row per agent, largest first.
    pub(crate) rows: Vec<AgentUsageRow>,
}

/// A tenant's tier and subscription, and where to upgrade.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionView {
    /// The subscription.
    #[serde(flatten)]
    pub(crate) subscription: Subscription,
    /// The upgrade route of this deployment (`POST {"tier": "pro"}`).
    pub(crate) upgrade_url: String,
}

/// What became of a verified webhook delivery.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WebhookOutcome {
    /// The event changed the tenant's billing state.
    Applied,
    /// The event id was applied before.
    Duplicate,
    /// Older than an event already applied.
    Stale,
    /// About a subscription the tenant has since replaced.
    OtherSubscription,
    /// A type that does not concern billing.
    Ignored,
    /// No tenant matches (recorded in the audit trail).
    UnknownTenant,
}

impl WebhookOutcome {
    /// The name in the reply, also the outcome label of the webhook metric.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Stale => "stale",
            WebhookOutcome::OtherSubscription => "other_subscription",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::UnknownTenant => "unknown_tenant",
        }
    }
}

/// The answer to every verified webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"received": true, "outcome": "applied"}))]
pub(crate) struct WebhookReply {
    /// Always `true`.
    pub(crate) received: bool,
    /// What became of the event.
    pub(crate) outcome: WebhookOutcome,
}

/// A billing provider event as it arrives (Stripe's event object); the
/// body is verified byte for byte against `Stripe-Signature`.
#[derive(ToSchema)]
#[schema(example = json!({
    "id": "evt_1",
    "type": "customer.subscription.updated",
    "created": 1795000000,
    "data": {"object": {"id": "sub_1", "status": "active"}}
}))]
#[allow(dead_code)]
pub(crate) struct WebhookEventDoc {
    /// Event id.
    id: String,
    /// Event type, e.g. `checkout.session.completed`.
    #[schema(rename = "type")]
    type_: String,
    /// Creation time, Unix seconds.
    created: i64,
    /// `{object: ...}`: the provider object the event is about.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// A W3C Verifiable Credential 2.0 secured with a Data Integrity proof
/// (`eddsa-jcs-2022`): an agent badge or the badge status list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct CredentialDoc {
    /// `["https://www.w3.org/ns/credentials/v2"]`.
    #[schema(rename = "@context")]
    context: Vec<String>,
    /// The credential's URL.
    id: Option<String>,
    /// `["VerifiableCredential", "AgentBadge"]` or
    /// `["VerifiableCredential", "BitstringStatusListCredential"]`.
    #[schema(rename = "type")]
    type_: Vec<String>,
    /// The IdP's `did:web`.
    issuer: String,
    /// Start of validity (RFC 3339).
    #[schema(rename = "validFrom")]
    valid_from: Option<String>,
    /// End of validity (RFC 3339).
    #[schema(rename = "validUntil")]
    valid_until: Option<String>,
    /// What the credential says about its subject.
    #[schema(rename = "credentialSubject", value_type = Object)]
    credential_subject: serde_json::Value,
    /// Its `BitstringStatusListEntry` (badges).
    #[schema(rename = "credentialStatus", value_type = Option<Object>)]
    credential_status: Option<serde_json::Value>,
    /// The `DataIntegrityProof`.
    #[schema(value_type = Object)]
    proof: serde_json::Value,
}

/// A marketplace agent with its publisher, DID document and A2A card.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MarketplaceEntry {
    /// The agent.
    pub(crate) agent: PublicAgent,
    /// Its publisher.
    pub(crate) publisher: PublisherView,
    /// Its W3C DID document.
    pub(crate) did_document: DidDocument,
    /// Its A2A agent card, signed by the IdP.
    pub(crate) agent_card: AgentCard,
    /// Where the signed card is served on its own
    /// (`/v1/marketplace/agents/{id}/agent-card.json`).
    pub(crate) agent_card_url: String,
}

/// A publisher and the first page of its marketplace agents.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublisherPage {
    /// The publisher.
    pub(crate) publisher: PublisherView,
    /// Its marketplace agents.
    pub(crate) agents: Page<PublicAgent>,
}

/// `{status}`: liveness and readiness.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "up"}))]
pub(crate) struct StatusView {
    /// `up`, `degraded` (answering, something is wrong) or `down`.
    pub(crate) status: HealthStatus,
}

/// Each backend's health.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetailedHealth {
    /// The worst status of the backends.
    pub(crate) status: HealthStatus,
    /// Server version.
    pub(crate) version: String,
    /// Name of the rate limiter.
    pub(crate) limiter: String,
    /// Name of the billing provider (`none` without one).
    pub(crate) billing: String,
    /// One entry per backend; `details` and `error` text only for an
    /// operator key.
    pub(crate) backends: Vec<BackendHealth>,
}

#[cfg(test)]
mod tests {
    use super::WebhookOutcome;

    #[test]
    fn webhook_outcome_labels_are_the_reply_names() {
        use WebhookOutcome::*;
        for o in [
            Applied,
            Duplicate,
            Stale,
            OtherSubscription,
            Ignored,
            UnknownTenant,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }
}

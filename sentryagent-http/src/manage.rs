//! The management API under `/v1` (`Authorization: Bearer <admin key>`):
//! tenants, admin keys, agents and their credentials, the audit trail (also
//! live, as Server-Sent Events) and analytics. Each handler is one core call.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sentryagent_core::AuditQuery;
use sentryagent_core::domain_proof::DomainProofChallenge;
use sentryagent_core::{
    AdminKeyId, Agent, AgentId, AgentPatch, AuditEvent, Error, NewAgent, NewTenant, Page,
    PageRequest, Tenant, TenantId,
};
use sentryagent_core::{PublisherUpdate, TenantUpdate};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::problem::ApiError;
use crate::views::{
    AgentListParams, AgentTableView, ApiKeyView, AuditHeadView, AuditParams, AuditStreamEventDoc,
    AuthErrors, BodyErrors, DailyTokensView, DaysParams, HeatmapView, InputErrors, LifecycleBody,
    MonthParams, NewApiKey, NotFound, PageParams, ProblemDoc, RegisteredView, RevokeBody,
    RevokedView, RotateBody, RotatedView, TenantParam, TenantPatch, WEEKDAYS,
};

type ApiResult<T = Response> = Result<T, ApiError>;

/// An id from the path; one that cannot exist is simply not found.
pub(crate) fn agent_id(s: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(s).map_err(|_| Error::not_found("agent").into())
}

pub(crate) fn tenant_id(s: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(s).map_err(|_| Error::not_found("tenant").into())
}

fn key_id(s: &str) -> Result<AdminKeyId, ApiError> {
    AdminKeyId::parse(s).map_err(|_| Error::not_found("api_key").into())
}

fn page(cursor: Option<String>, limit: Option<usize>) -> PageRequest {
    PageRequest { cursor, limit }
}

fn created<T: serde::Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

// ---- tenants ----

/// Creates a tenant (operator key).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "management",
    request_body = NewTenant,
    responses(
        (status = 201, description = "the tenant", body = Tenant),
        (status = 409, description = "the slug is taken", content_type = "application/problem+json", body = ProblemDoc),
        AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn create_tenant(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiJson(new): ApiJson<NewTenant>,
) -> ApiResult {
    Ok(created(s.idp.create_tenant(&caller, new).await?))
}

/// Lists tenants (operator key).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "management", params(PageParams),
    responses((status = 200, description = "a page of tenants", body = Page<Tenant>), AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_tenants(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Tenant>>> {
    let p = s
        .idp
        .list_tenants(&caller, &page(q.cursor, q.limit))
        .await?;
    Ok(Json(p))
}

/// A tenant the key reaches.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the tenant", body = Tenant), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn get_tenant(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.idp.get_tenant(&caller, &tenant_id(&id)?).await?))
}

/// Changes a tenant's tier or status (operator key).
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = TenantPatch,
    responses((status = 200, description = "the changed tenant", body = Tenant), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn patch_tenant(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<TenantPatch>,
) -> ApiResult<Json<Tenant>> {
    let update = TenantUpdate {
        tier: patch.tier,
        status: patch.status,
        reason: patch.reason,
    };
    Ok(Json(
        s.idp
            .update_tenant(&caller, &tenant_id(&id)?, update)
            .await?,
    ))
}

/// A tenant's public profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Acme Labs", "website": "https://acme.example"}))]
pub(crate) struct PublisherBody {
    /// Display name.
    display_name: String,
    /// Website.
    #[serde(default)]
    website: Option<String>,
    /// Verified flag (operator keys only; default: unchanged).
    #[serde(default)]
    verified: Option<bool>,
}

/// Sets a tenant's publisher profile.
#[utoipa::path(
    put, path = "/v1/tenants/{id}/publisher", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = PublisherBody,
    responses((status = 200, description = "the changed tenant", body = Tenant), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn put_publisher(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PublisherBody>,
) -> ApiResult<Json<Tenant>> {
    let update = PublisherUpdate {
        display_name: body.display_name,
        website: body.website,
        verified: body.verified,
    };
    Ok(Json(
        s.idp
            .update_publisher(&caller, &tenant_id(&id)?, update)
            .await?,
    ))
}

/// The domain of a publisher domain proof.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"domain": "acme.example"}))]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainProofBody {
    /// The domain: the host of the publisher's website (ASCII; an
    /// internationalized name in its `xn--` form), without scheme or port.
    domain: String,
}

/// Starts a publisher domain proof: a token to serve at
/// `https://<domain>/.well-known/sentryagent-publisher.txt` (valid 7 days).
#[utoipa::path(
    post, path = "/v1/tenants/{id}/publisher/domain-proofs", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = DomainProofBody,
    responses(
        (status = 201, description = "the token, where to serve it, until when, and what to do", body = DomainProofChallenge),
        NotFound, AuthErrors, InputErrors, BodyErrors
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn start_domain_proof(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DomainProofBody>,
) -> ApiResult {
    let challenge = s
        .idp
        .start_publisher_domain_proof(&caller, &tenant_id(&id)?, &body.domain)
        .await?;
    Ok(created(challenge))
}

/// Verifies a publisher domain proof: the IdP fetches
/// `https://<domain>/.well-known/sentryagent-publisher.txt` (public
/// addresses only, no redirects, 5 s, 64 KiB) and looks for a current token
/// of this tenant for this domain on a line of its own. Success marks the
/// publisher verified (`verification.method: "domain"`); a failure is a 422
/// whose `reason` starts with a stable code in parentheses (`not_found`,
/// `bad_answer`, `too_large`, `token_absent`, `token_expired`, `refused`,
/// `timeout`, `unreachable`). Attempts are limited per tenant (10 an hour).
#[utoipa::path(
    post, path = "/v1/tenants/{id}/publisher/domain-proofs/verify", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = DomainProofBody,
    responses(
        (status = 200, description = "the tenant, its publisher verified", body = Tenant),
        (status = 501, description = "no domain proof fetcher is configured", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn verify_domain_proof(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DomainProofBody>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(
        s.idp
            .verify_publisher_domain(&caller, &tenant_id(&id)?, &body.domain)
            .await?,
    ))
}

// ---- admin keys ----

/// Creates an admin key for a tenant; the key is shown once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/api-keys", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = NewApiKey,
    responses((status = 201, description = "the key, with `key` shown once", body = ApiKeyView), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn create_tenant_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult {
    let id = tenant_id(&id)?;
    let (key, secret) = s
        .idp
        .create_expiring_admin_key(&caller, Some(&id), &body.name, body.scopes, body.expires_at)
        .await?;
    Ok(created(ApiKeyView::new(&key, Some(secret))))
}

/// A tenant's admin keys (without the keys).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/api-keys", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the keys, without `key`", body = Vec<ApiKeyView>), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_tenant_keys(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let id = tenant_id(&id)?;
    let keys = s.idp.list_admin_keys(&caller, Some(&id)).await?;
    Ok(Json(
        keys.iter().map(|k| ApiKeyView::new(k, None)).collect(),
    ))
}

/// Revokes a tenant's admin key.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/api-keys/{key_id}", tag = "management",
    params(("id" = String, Path, description = "tenant id"), ("key_id" = String, Path, description = "key id")),
    request_body(content = Option<RevokeBody>, description = "optional: why", content_type = "application/json"),
    responses((status = 204, description = "revoked"), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_tenant_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, key)): ApiPath<(String, String)>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> ApiResult<StatusCode> {
    let id = tenant_id(&id)?;
    let reason = body.and_then(|b| b.reason);
    s.idp
        .revoke_admin_key_because(&caller, Some(&id), &key_id(&key)?, reason.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an operator key (operator key); shown once.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "management",
    request_body = NewApiKey,
    responses((status = 201, description = "the key, with `key` shown once", body = ApiKeyView), AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn create_operator_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult {
    let (key, secret) = s
        .idp
        .create_expiring_admin_key(&caller, None, &body.name, body.scopes, body.expires_at)
        .await?;
    Ok(created(ApiKeyView::new(&key, Some(secret))))
}

/// Operator keys (operator key).
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "management",
    responses((status = 200, description = "the keys, without `key`", body = Vec<ApiKeyView>), AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_operator_keys(
    State(s): State<AppState>,
    Admin(caller): Admin,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let keys = s.idp.list_admin_keys(&caller, None).await?;
    Ok(Json(
        keys.iter().map(|k| ApiKeyView::new(k, None)).collect(),
    ))
}

/// Revokes an operator key (operator key); tenant keys are revoked under
/// `/v1/tenants/{id}/api-keys/{key_id}`.
#[utoipa::path(
    delete, path = "/v1/api-keys/{key_id}", tag = "management",
    params(("key_id" = String, Path, description = "key id")),
    request_body(content = Option<RevokeBody>, description = "optional: why", content_type = "application/json"),
    responses((status = 204, description = "revoked"), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_operator_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(key): ApiPath<String>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> ApiResult<StatusCode> {
    let reason = body.and_then(|b| b.reason);
    s.idp
        .revoke_admin_key_because(&caller, None, &key_id(&key)?, reason.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- agents ----

/// Registers an agent. With no `did` (or `public_jwk`) a key pair is
/// generated and its private key returned once as a JWK; the client secret
/// is returned once.
#[utoipa::path(
    post, path = "/v1/agents", tag = "management", params(TenantParam),
    request_body = NewAgent,
    responses(
        (status = 201, description = "the agent with `client_id`, `client_secret` and, for a generated key, `private_jwk`", body = RegisteredView),
        (status = 409, description = "the name is taken in the tenant", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn register_agent(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
    ApiJson(new): ApiJson<NewAgent>,
) -> ApiResult {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let r = s.idp.register_agent(&caller, &tenant, new).await?;
    Ok(created(RegisteredView {
        client_id: r.agent.id.to_string(),
        agent: r.agent,
        client_secret: r.client_secret,
        private_jwk: r.private_jwk,
    }))
}

/// A tenant's agents; with `name`, the agent of that name (none or one).
#[utoipa::path(
    get, path = "/v1/agents", tag = "management", params(AgentListParams),
    responses((status = 200, description = "a page of agents", body = Page<Agent>), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_agents(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<AgentListParams>,
) -> ApiResult<Json<Page<Agent>>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let p = s
        .idp
        .list_agents_named(
            &caller,
            &tenant,
            q.name.as_deref(),
            &page(q.cursor, q.limit),
        )
        .await?;
    Ok(Json(p))
}

/// An agent.
#[utoipa::path(
    get, path = "/v1/agents/{id}", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent", body = Agent), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn get_agent(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(s.idp.get_agent(&caller, &agent_id(&id)?).await?))
}

/// Changes an agent's description fields.
#[utoipa::path(
    patch, path = "/v1/agents/{id}", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    request_body = AgentPatch,
    responses(
        (status = 200, description = "the changed agent", body = Agent),
        (status = 409, description = "the name is taken, or a concurrent change", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn patch_agent(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<AgentPatch>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        s.idp.update_agent(&caller, &agent_id(&id)?, patch).await?,
    ))
}

/// Moves an agent through its lifecycle.
#[utoipa::path(
    post, path = "/v1/agents/{id}/lifecycle", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    request_body = LifecycleBody,
    responses(
        (status = 200, description = "the agent in its new state", body = Agent),
        (status = 409, description = "illegal transition", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn lifecycle(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LifecycleBody>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        s.idp
            .transition_agent(&caller, &agent_id(&id)?, body.state)
            .await?,
    ))
}

/// Issues a new client secret; the previous ones work until
/// `previous_valid_until`: for `grace_seconds` when the optional body gives
/// it, otherwise for the configured grace period.
#[utoipa::path(
    post, path = "/v1/agents/{id}/credentials/rotate", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    request_body(content = Option<RotateBody>, description = "optional; an empty body keeps the configured grace period", content_type = "application/json"),
    responses(
        (status = 200, description = "the new secret, shown once", body = RotatedView),
        (status = 409, description = "the agent is retired", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn rotate_secret(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> ApiResult<Json<RotatedView>> {
    let grace = body
        .and_then(|b| b.grace_seconds)
        .map(std::time::Duration::from_secs);
    let (client_secret, until) = s
        .idp
        .rotate_client_secret(&caller, &agent_id(&id)?, grace)
        .await?;
    Ok(Json(RotatedView {
        client_secret,
        previous_valid_until: until,
    }))
}

/// Revokes every client secret of an agent at once.
#[utoipa::path(
    post, path = "/v1/agents/{id}/credentials/revoke", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "how many secrets were revoked", body = RevokedView), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_secrets(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RevokedView>> {
    let n = s
        .idp
        .revoke_client_secrets(&caller, &agent_id(&id)?)
        .await?;
    Ok(Json(RevokedView { revoked: n }))
}

// ---- audit ----

/// The audit trail, filtered and paged. A tenant key reads its tenant's
/// chain; an operator reads `tenant_id`'s chain or the system chain.
#[utoipa::path(
    get, path = "/v1/audit", tag = "management", params(AuditParams),
    responses((status = 200, description = "a page of audit events, oldest first", body = Page<AuditEvent>), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn audit(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    let query = AuditQuery {
        tenant_id: q.tenant_id,
        from: q.from,
        to: q.to,
        action: q.action,
        actor: q.actor,
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(s.idp.query_audit(&caller, &query).await?))
}

/// Verifies a whole audit chain and returns its head.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "management", params(TenantParam),
    responses(
        (status = 200, description = "the chain verifies; its head", body = AuditHeadView),
        (status = 409, description = "the chain does not verify", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn audit_verify(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<AuditHeadView>> {
    let tenant = match (&caller.tenant, q.tenant_id) {
        (Some(own), None) => Some(own.clone()),
        (_, t) => t,
    };
    let head = s.idp.verify_audit(&caller, tenant.as_ref()).await?;
    Ok(Json(AuditHeadView { head }))
}

/// The SSE id of an audit event: `<chain>:<seq>`, the chain being the
/// tenant id or `system`.
fn audit_event_id(e: &AuditEvent) -> String {
    match &e.event.tenant_id {
        Some(t) => format!("{t}:{}", e.seq),
        None => format!("system:{}", e.seq),
    }
}

/// Parses a `Last-Event-ID` made by [`audit_event_id`].
fn parse_last_event_id(v: &str) -> Result<(Option<TenantId>, u64), ApiError> {
    let bad = || Error::invalid("Last-Event-ID", "expected <tenant id or system>:<seq>");
    let (chain, seq) = v.trim().rsplit_once(':').ok_or_else(bad)?;
    let seq = seq.parse::<u64>().map_err(|_| bad())?;
    let chain = match chain {
        "system" => None,
        t => Some(TenantId::parse(t).map_err(|_| bad())?),
    };
    Ok((chain, seq))
}

/// Live tail of audit events as Server-Sent Events (`event: audit`, data the
/// event JSON, `id: <chain>:<seq>` with the chain a tenant id or `system`;
/// `event: lagged` with the number of missed events when the reader was too
/// slow), with keep-alive comments. With `Last-Event-ID`, the stored events
/// of that chain after that sequence number come first, then the live ones,
/// none twice. A tenant holds at most a few streams open per server (429
/// `too-many-streams` beyond), a server a bounded number in all (503).
#[utoipa::path(
    get, path = "/v1/audit/stream", tag = "management",
    params(
        TenantParam,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event (`<tenant id or system>:<seq>`, the `id` of an event received earlier)"),
    ),
    responses(
        (status = 200, description = "`event: audit` (data: an audit event as JSON; id: `<chain>:<seq>`), `event: lagged` (data: the number of missed events) and keep-alive comments; the schema is that of one event", content_type = "text/event-stream", body = AuditStreamEventDoc),
        (status = 503, description = "the server holds its maximum of live audit streams (`Retry-After`)", body = ProblemDoc, content_type = "application/problem+json"),
        NotFound, AuthErrors, InputErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn audit_stream(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
    headers: HeaderMap,
) -> ApiResult {
    let last = match headers.get("last-event-id") {
        Some(v) => Some(parse_last_event_id(v.to_str().unwrap_or(""))?),
        None => None,
    };
    let tail = match last {
        Some((chain, seq)) => {
            s.idp
                .resume_audit_tail(&caller, q.tenant_id.as_ref(), chain.as_ref(), seq)?
        }
        None => s.idp.audit_tail(&caller, q.tenant_id.as_ref())?,
    };
    // Held by the stream: given back when the client leaves.
    let slot = match s.audit_streams.acquire(caller.tenant.as_ref()) {
        Ok(slot) => slot,
        Err(full) => return Ok(full.into_response()),
    };
    let stream = futures_util::stream::unfold((tail, slot), |(mut tail, slot)| async move {
        let event = match tail.next().await? {
            Ok(e) => Event::default()
                .event("audit")
                .id(audit_event_id(&e))
                .json_data(&e)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(missed) => Event::default().event("lagged").data(missed.to_string()),
        };
        Some((Ok::<_, Infallible>(event), (tail, slot)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(s.config.sse_keep_alive))
        .into_response())
}

// ---- analytics ----

/// Token issuances per UTC day (default the last 30 days, today last).
#[utoipa::path(
    get, path = "/v1/analytics/tokens/daily", tag = "management", params(DaysParams),
    responses((status = 200, description = "one count per UTC day, today last", body = DailyTokensView), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn daily_tokens(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<DaysParams>,
) -> ApiResult<Json<DailyTokensView>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let days = s
        .idp
        .daily_token_issuances(&caller, &tenant, q.days.unwrap_or(30))
        .await?;
    Ok(Json(DailyTokensView { days }))
}

/// Token issuances of the last 28 days by UTC weekday and hour.
#[utoipa::path(
    get, path = "/v1/analytics/heatmap", tag = "management", params(TenantParam),
    responses((status = 200, description = "counts by weekday (Monday first) and hour", body = HeatmapView), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn heatmap(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<HeatmapView>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let heatmap = s.idp.activity_heatmap(&caller, &tenant).await?;
    Ok(Json(HeatmapView {
        weekdays: WEEKDAYS,
        heatmap,
    }))
}

/// Token issuances per agent in a month, largest first.
#[utoipa::path(
    get, path = "/v1/analytics/agents", tag = "management", params(MonthParams),
    responses((status = 200, description = "one row per agent, largest first", body = AgentTableView), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn agent_table(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<MonthParams>,
) -> ApiResult<Json<AgentTableView>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let rows = s
        .idp
        .agent_usage_table(&caller, &tenant, q.month.as_deref())
        .await?;
    Ok(Json(AgentTableView { rows }))
}

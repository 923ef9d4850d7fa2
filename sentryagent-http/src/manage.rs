//! The management API under `/v1` (`Authorization: Bearer <admin key>`):
//! tenants, admin keys, agents and their credentials, the audit trail (also
//! live, as Server-Sent Events) and analytics. Each handler is one core call.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sentryagent_core::audit::AuditQuery;
use sentryagent_core::{
    AdminKeyId, AgentId, AgentPatch, Error, NewAgent, NewTenant, PageRequest, TenantId,
};
use sentryagent_core::{PublisherUpdate, TenantUpdate};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiError;
use crate::views::{
    ApiKeyView, AuditParams, DaysParams, LifecycleBody, MonthParams, NewApiKey, PageParams,
    RegisteredView, RotatedView, TenantParam, TenantPatch,
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
    request_body(content = serde_json::Value, description = "`{name, tier?, slug?, website?, allowed_audiences?}`"),
    responses((status = 201, description = "the tenant", body = serde_json::Value), (status = 401, body = crate::views::ProblemDoc), (status = 403, body = crate::views::ProblemDoc)),
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
    responses((status = 200, description = "`{items, next_cursor}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn list_tenants(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let p = s
        .idp
        .list_tenants(&caller, &page(q.cursor, q.limit))
        .await?;
    Ok(Json(json!(p)))
}

/// A tenant the key reaches.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::views::ProblemDoc)),
    security(("admin_key" = []))
)]
pub(crate) async fn get_tenant(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<sentryagent_core::Tenant>> {
    Ok(Json(s.idp.get_tenant(&caller, &tenant_id(&id)?).await?))
}

/// Changes a tenant's tier or status (operator key).
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = TenantPatch,
    responses((status = 200, body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn patch_tenant(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<TenantPatch>,
) -> ApiResult<Json<sentryagent_core::Tenant>> {
    let update = TenantUpdate {
        tier: patch.tier,
        status: patch.status,
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
    responses((status = 200, body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn put_publisher(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PublisherBody>,
) -> ApiResult<Json<sentryagent_core::Tenant>> {
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

// ---- admin keys ----

/// Creates an admin key for a tenant; the key is shown once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/api-keys", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    request_body = NewApiKey,
    responses((status = 201, body = ApiKeyView)),
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
        .create_admin_key(&caller, Some(&id), &body.name, body.scopes)
        .await?;
    Ok(created(ApiKeyView::new(&key, Some(secret))))
}

/// A tenant's admin keys (without the keys).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/api-keys", tag = "management",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = Vec<ApiKeyView>)),
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
    responses((status = 204, description = "revoked")),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_tenant_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, key)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = tenant_id(&id)?;
    s.idp
        .revoke_admin_key(&caller, Some(&id), &key_id(&key)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an operator key (operator key); shown once.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "management",
    request_body = NewApiKey,
    responses((status = 201, body = ApiKeyView)),
    security(("admin_key" = []))
)]
pub(crate) async fn create_operator_key(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult {
    let (key, secret) = s
        .idp
        .create_admin_key(&caller, None, &body.name, body.scopes)
        .await?;
    Ok(created(ApiKeyView::new(&key, Some(secret))))
}

/// Operator keys (operator key).
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "management",
    responses((status = 200, body = Vec<ApiKeyView>)),
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

// ---- agents ----

/// Registers an agent. With no `did` (or `public_jwk`) a key pair is
/// generated and its private key returned once as a JWK; the client secret
/// is returned once.
#[utoipa::path(
    post, path = "/v1/agents", tag = "management", params(TenantParam),
    request_body(content = serde_json::Value, description = "`{name, description?, version?, capabilities?, tags?, category?, visibility?, did?, public_jwk?, state?, allowed_scopes?, custom_claims?}`"),
    responses(
        (status = 201, description = "the agent with `client_id`, `client_secret` and, for a generated key, `private_jwk`", body = serde_json::Value),
        (status = 402, description = "the tier's agent limit is reached", body = crate::views::ProblemDoc),
        (status = 422, body = crate::views::ProblemDoc),
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

/// A tenant's agents.
#[utoipa::path(
    get, path = "/v1/agents", tag = "management", params(PageParams),
    responses((status = 200, description = "`{items, next_cursor}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn list_agents(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let p = s
        .idp
        .list_agents(&caller, &tenant, &page(q.cursor, q.limit))
        .await?;
    Ok(Json(json!(p)))
}

/// An agent.
#[utoipa::path(
    get, path = "/v1/agents/{id}", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::views::ProblemDoc)),
    security(("admin_key" = []))
)]
pub(crate) async fn get_agent(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<sentryagent_core::Agent>> {
    Ok(Json(s.idp.get_agent(&caller, &agent_id(&id)?).await?))
}

/// Changes an agent's description fields.
#[utoipa::path(
    patch, path = "/v1/agents/{id}", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    request_body(content = serde_json::Value, description = "any of `{name, description, version, capabilities, tags, category, visibility, allowed_scopes, custom_claims}`"),
    responses((status = 200, body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn patch_agent(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<AgentPatch>,
) -> ApiResult<Json<sentryagent_core::Agent>> {
    Ok(Json(
        s.idp.update_agent(&caller, &agent_id(&id)?, patch).await?,
    ))
}

/// Moves an agent through its lifecycle.
#[utoipa::path(
    post, path = "/v1/agents/{id}/lifecycle", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    request_body = LifecycleBody,
    responses((status = 200, body = serde_json::Value), (status = 409, description = "illegal transition", body = crate::views::ProblemDoc)),
    security(("admin_key" = []))
)]
pub(crate) async fn lifecycle(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LifecycleBody>,
) -> ApiResult<Json<sentryagent_core::Agent>> {
    Ok(Json(
        s.idp
            .transition_agent(&caller, &agent_id(&id)?, body.state)
            .await?,
    ))
}

/// Issues a new client secret; the previous ones work until
/// `previous_valid_until`.
#[utoipa::path(
    post, path = "/v1/agents/{id}/credentials/rotate", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = RotatedView)),
    security(("admin_key" = []))
)]
pub(crate) async fn rotate_secret(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RotatedView>> {
    let (client_secret, until) = s.idp.rotate_client_secret(&caller, &agent_id(&id)?).await?;
    Ok(Json(RotatedView {
        client_secret,
        previous_valid_until: until,
    }))
}

/// Revokes every client secret of an agent at once.
#[utoipa::path(
    post, path = "/v1/agents/{id}/credentials/revoke", tag = "management",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "`{revoked: n}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_secrets(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let n = s
        .idp
        .revoke_client_secrets(&caller, &agent_id(&id)?)
        .await?;
    Ok(Json(json!({ "revoked": n })))
}

// ---- audit ----

/// The audit trail, filtered and paged. A tenant key reads its tenant's
/// chain; an operator reads `tenant_id`'s chain or the system chain.
#[utoipa::path(
    get, path = "/v1/audit", tag = "management", params(AuditParams),
    responses((status = 200, description = "`{items, next_cursor}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn audit(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let query = AuditQuery {
        tenant_id: q.tenant_id,
        from: q.from,
        to: q.to,
        action: q.action,
        actor: q.actor,
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(json!(s.idp.query_audit(&caller, &query).await?)))
}

/// Verifies a whole audit chain and returns its head.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "management", params(TenantParam),
    responses((status = 200, description = "`{head: {seq, hash} | null}`", body = serde_json::Value), (status = 409, description = "the chain does not verify", body = crate::views::ProblemDoc)),
    security(("admin_key" = []))
)]
pub(crate) async fn audit_verify(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = match (&caller.tenant, q.tenant_id) {
        (Some(own), None) => Some(own.clone()),
        (_, t) => t,
    };
    let head = s.idp.verify_audit(&caller, tenant.as_ref()).await?;
    Ok(Json(json!({ "head": head })))
}

/// Live tail of audit events as Server-Sent Events (`event: audit`, data the
/// event JSON; `event: lagged` with the number of missed events when the
/// reader was too slow), with keep-alive comments.
#[utoipa::path(
    get, path = "/v1/audit/stream", tag = "management", params(TenantParam),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String)),
    security(("admin_key" = []))
)]
pub(crate) async fn audit_stream(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult {
    let tail = s.idp.audit_tail(&caller, q.tenant_id.as_ref())?;
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = match tail.next().await? {
            Ok(e) => Event::default()
                .event("audit")
                .json_data(&e)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(missed) => Event::default().event("lagged").data(missed.to_string()),
        };
        Some((Ok::<_, Infallible>(event), tail))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(s.config.sse_keep_alive))
        .into_response())
}

// ---- analytics ----

/// Token issuances per UTC day (default the last 30 days, today last).
#[utoipa::path(
    get, path = "/v1/analytics/tokens/daily", tag = "management", params(DaysParams),
    responses((status = 200, description = "`{days: [{day, count}]}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn daily_tokens(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<DaysParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let days = s
        .idp
        .daily_token_issuances(&caller, &tenant, q.days.unwrap_or(30))
        .await?;
    Ok(Json(json!({ "days": days })))
}

/// Token issuances of the last 28 days by UTC weekday and hour.
#[utoipa::path(
    get, path = "/v1/analytics/heatmap", tag = "management", params(TenantParam),
    responses((status = 200, description = "`{weekdays: [mon..sun], heatmap: [7][24]}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn heatmap(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let map = s.idp.activity_heatmap(&caller, &tenant).await?;
    Ok(Json(json!({
        "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "heatmap": map,
    })))
}

/// Token issuances per agent in a month, largest first.
#[utoipa::path(
    get, path = "/v1/analytics/agents", tag = "management", params(MonthParams),
    responses((status = 200, description = "`{rows: [{agent_id, name, token_issuances}]}`", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub(crate) async fn agent_table(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<MonthParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let rows = s
        .idp
        .agent_usage_table(&caller, &tenant, q.month.as_deref())
        .await?;
    Ok(Json(json!({ "rows": rows })))
}

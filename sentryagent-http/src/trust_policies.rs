//! Trust policies under `/v1/trust-policies`: which tokens of other
//! identity providers a tenant exchanges for its agents' tokens or for
//! management tokens. Each handler is one core call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sentryagent_core::federation::{NewTrustPolicy, TrustPolicy, TrustPolicyPatch};
use sentryagent_core::{Error, Page, PageRequest, TrustPolicyId};

use crate::AppState;
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiError;
use crate::views::{AuthErrors, BodyErrors, InputErrors, NotFound, PageParams, TenantParam};

type ApiResult<T = Response> = Result<T, ApiError>;

/// An id from the path; one that cannot exist is simply not found.
fn policy_id(s: &str) -> Result<TrustPolicyId, ApiError> {
    TrustPolicyId::parse(s).map_err(|_| Error::not_found("trust_policy").into())
}

/// Creates a trust policy of the caller's tenant (admin scope; an operator
/// names the tenant with `?tenant_id=`). A policy for GitHub Actions must
/// pin the repository (422 otherwise, saying why). Audited.
#[utoipa::path(
    post, path = "/v1/trust-policies", tag = "management", params(TenantParam),
    request_body = NewTrustPolicy,
    responses(
        (status = 201, description = "the policy, with its `id`", body = TrustPolicy),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn create_trust_policy(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
    ApiJson(new): ApiJson<NewTrustPolicy>,
) -> ApiResult {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let p = s.idp.create_trust_policy(&caller, &tenant, new).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// A tenant's trust policies, by id (agents_read scope).
#[utoipa::path(
    get, path = "/v1/trust-policies", tag = "management", params(PageParams),
    responses((status = 200, description = "a page of trust policies", body = Page<TrustPolicy>), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_trust_policies(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<TrustPolicy>>> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let page = PageRequest {
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(
        s.idp.list_trust_policies(&caller, &tenant, &page).await?,
    ))
}

/// A trust policy (agents_read scope).
#[utoipa::path(
    get, path = "/v1/trust-policies/{id}", tag = "management",
    params(("id" = String, Path, description = "trust policy id")),
    responses((status = 200, description = "the policy", body = TrustPolicy), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn get_trust_policy(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TrustPolicy>> {
    Ok(Json(
        s.idp.get_trust_policy(&caller, &policy_id(&id)?).await?,
    ))
}

/// Changes a trust policy (admin scope); checked as at creation. Audited.
#[utoipa::path(
    patch, path = "/v1/trust-policies/{id}", tag = "management",
    params(("id" = String, Path, description = "trust policy id")),
    request_body = TrustPolicyPatch,
    responses(
        (status = 200, description = "the changed policy", body = TrustPolicy),
        (status = 409, description = "a concurrent change", content_type = "application/problem+json", body = crate::views::ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn patch_trust_policy(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<TrustPolicyPatch>,
) -> ApiResult<Json<TrustPolicy>> {
    Ok(Json(
        s.idp
            .update_trust_policy(&caller, &policy_id(&id)?, patch)
            .await?,
    ))
}

/// Deletes a trust policy (admin scope); management tokens it granted stop
/// working at once. Audited.
#[utoipa::path(
    delete, path = "/v1/trust-policies/{id}", tag = "management",
    params(("id" = String, Path, description = "trust policy id")),
    responses((status = 204, description = "deleted"), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn delete_trust_policy(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.idp.delete_trust_policy(&caller, &policy_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

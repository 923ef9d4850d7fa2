//! A tenant's people in the management API: members and their roles,
//! invitations, password reset links, the tenant's rules for members, and
//! the operator's account lookup. An admin key or a member's session calls
//! them alike; each handler is one core call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sentryagent_core::{
    Account, Error, InvitationId, InvitationInfo, Member, NewInvitation, PasswordResetLink, Role,
    Tenant, TenantSettingsPatch, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::manage::tenant_id;
use crate::problem::ApiError;
use crate::views::{AuthErrors, BodyErrors, InputErrors, NotFound, ProblemDoc};

type ApiResult<T = Response> = Result<T, ApiError>;

fn user_id(s: &str) -> Result<UserId, ApiError> {
    UserId::parse(s).map_err(|_| Error::not_found("member").into())
}

fn invitation_id(s: &str) -> Result<InvitationId, ApiError> {
    InvitationId::parse(s).map_err(|_| Error::not_found("invitation").into())
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

/// A tenant's members (`members_read`).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/members", tag = "members",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the members, by user id", body = Vec<Member>), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_members(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(s.idp.list_members(&caller, &tenant_id(&id)?).await?))
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub(crate) struct RoleBody {
    /// `owner`, `admin`, `developer` or `viewer`.
    pub(crate) role: Role,
}

/// Changes a member's role (`members_write`; the member's role and the new
/// one within the caller's own). The last owner keeps the role (409).
#[utoipa::path(
    patch, path = "/v1/tenants/{id}/members/{user_id}", tag = "members",
    params(("id" = String, Path, description = "tenant id"), ("user_id" = String, Path, description = "the member's user id")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "the member", body = Member),
        (status = 409, description = "the tenant would have no owner", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn change_role(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, user)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<Member>> {
    let m = s
        .idp
        .change_member_role(&caller, &tenant_id(&id)?, &user_id(&user)?, body.role)
        .await?;
    Ok(Json(m))
}

/// Removes a member (`members_write`); their sessions in the tenant end.
/// The last owner stays (409).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/members/{user_id}", tag = "members",
    params(("id" = String, Path, description = "tenant id"), ("user_id" = String, Path, description = "the member's user id")),
    responses(
        (status = 204, description = "removed"),
        (status = 409, description = "the tenant would have no owner", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn remove_member(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    s.idp
        .remove_member(&caller, &tenant_id(&id)?, &user_id(&user)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new invitation, with its token and link: shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedInvitationView {
    /// The invitation.
    #[serde(flatten)]
    pub(crate) invitation: InvitationInfo,
    /// The single-use token (kept only hashed).
    pub(crate) token: String,
    /// The link to pass on; the token is in its fragment.
    pub(crate) url: String,
}

/// Invites an email with a role (`members_write`; a role within the
/// caller's own). Answers the invitation's `token` and `url`, shown once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/invitations", tag = "members",
    params(("id" = String, Path, description = "tenant id")),
    request_body = NewInvitation,
    responses(
        (status = 201, description = "the invitation, with `token` and `url` shown once", body = CreatedInvitationView),
        (status = 409, description = "the person is a member already", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors, BodyErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn create_invitation(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewInvitation>,
) -> ApiResult {
    let created = s
        .idp
        .create_invitation(&caller, &tenant_id(&id)?, &body)
        .await?;
    let now = s.idp.clock().now();
    let view = CreatedInvitationView {
        invitation: created.invitation.info(now),
        token: created.token.expose().to_owned(),
        url: created.url,
    };
    Ok(no_store((StatusCode::CREATED, Json(view)).into_response()))
}

/// A tenant's invitations with their status (`members_read`).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/invitations", tag = "members",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the invitations, oldest first", body = Vec<InvitationInfo>), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn list_invitations(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<InvitationInfo>>> {
    Ok(Json(
        s.idp.list_invitations(&caller, &tenant_id(&id)?).await?,
    ))
}

/// Revokes an invitation (`members_write`); an accepted one is 409.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/invitations/{invitation_id}", tag = "members",
    params(("id" = String, Path, description = "tenant id"), ("invitation_id" = String, Path, description = "invitation id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 409, description = "the invitation was accepted", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn revoke_invitation(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, inv)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    s.idp
        .revoke_invitation(&caller, &tenant_id(&id)?, &invitation_id(&inv)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A password reset link, shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasswordResetView {
    /// The account.
    pub(crate) user_id: UserId,
    /// The single-use token.
    pub(crate) token: String,
    /// The link to pass on; the token is in its fragment.
    pub(crate) url: String,
    /// End of validity.
    pub(crate) expires_at: Timestamp,
}

impl From<PasswordResetLink> for PasswordResetView {
    fn from(l: PasswordResetLink) -> Self {
        PasswordResetView {
            user_id: l.user_id,
            token: l.token.expose().to_owned(),
            url: l.url,
            expires_at: l.expires_at,
        }
    }
}

/// Issues a password reset link for a member (`members_write`; a member
/// within the caller's own role: an owner or admin for their members).
#[utoipa::path(
    post, path = "/v1/tenants/{id}/members/{user_id}/password-reset", tag = "members",
    params(("id" = String, Path, description = "tenant id"), ("user_id" = String, Path, description = "the member's user id")),
    responses((status = 201, description = "the link, shown once", body = PasswordResetView), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn member_password_reset(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> ApiResult {
    let link = s
        .idp
        .issue_password_reset(&caller, Some(&tenant_id(&id)?), &user_id(&user)?)
        .await?;
    Ok(no_store(
        (StatusCode::CREATED, Json(PasswordResetView::from(link))).into_response(),
    ))
}

/// Issues a password reset link for any account (operator key).
#[utoipa::path(
    post, path = "/v1/users/{user_id}/password-reset", tag = "members",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 201, description = "the link, shown once", body = PasswordResetView), NotFound, AuthErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn user_password_reset(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let user = UserId::parse(&user).map_err(|_| Error::not_found("account"))?;
    let link = s.idp.issue_password_reset(&caller, None, &user).await?;
    Ok(no_store(
        (StatusCode::CREATED, Json(PasswordResetView::from(link))).into_response(),
    ))
}

/// `?email=`: the account to find.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EmailParam {
    /// Email address.
    pub(crate) email: String,
}

/// The account with an email (operator key).
#[utoipa::path(
    get, path = "/v1/users", tag = "members", params(EmailParam),
    responses((status = 200, description = "the account", body = Account), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn find_user(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<EmailParam>,
) -> ApiResult<Json<Account>> {
    Ok(Json(s.idp.find_account(&caller, &q.email).await?))
}

/// Changes the tenant's rules for its members (`admin`: owners); fields
/// left out keep their value.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}/settings", tag = "members",
    params(("id" = String, Path, description = "tenant id")),
    request_body = TenantSettingsPatch,
    responses((status = 200, description = "the tenant", body = Tenant), NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn update_settings(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TenantSettingsPatch>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(
        s.idp
            .update_tenant_settings(&caller, &tenant_id(&id)?, body)
            .await?,
    ))
}

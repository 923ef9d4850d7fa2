//! The tenant's people: members and their roles, invitations (the link
//! shown once), role changes and removal. Only roles the member's own
//! role covers are offered; the core refuses the others anyway.

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use sentryagent_core::{
    AdminScope, Error, InvitationId, InvitationInfo, InvitationStatus, Member as Person,
    NewInvitation, Role, UserId,
};
use serde::Deserialize;

use super::auth::Member;
use super::page::{Flash, Nav, Page, PageError, PageForm, PageResult, see_other};

/// The roles `m` may give or act on.
fn givable(m: &Member) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|r| r.within(&m.caller.scopes))
        .collect()
}

fn role_select(name: &str, roles: &[Role], selected: Role) -> Markup {
    html! {
        select name=(name) {
            @for r in roles { option value=(r.as_str()) selected[*r == selected] { (r.as_str()) } }
        }
    }
}

/// The role an invitation offers first: developer when the member may
/// give it.
fn invite_default(roles: &[Role]) -> Role {
    if roles.contains(&Role::Developer) {
        Role::Developer
    } else {
        Role::Viewer
    }
}

fn members_page(
    m: &Member,
    people: &[Person],
    invitations: &[InvitationInfo],
    invite_email: &str,
) -> Markup {
    let ctx = &m.ctx;
    let write = m.may(AdminScope::MembersWrite);
    let roles = givable(m);
    html! {
        @if write {
            h2 { "Invite someone" }
            form class="row" method="post" action=(ctx.url("/members/invitations")) {
                (ctx.csrf_field())
                label { "Email" input type="email" name="email" required value=(invite_email); }
                label { "Role" (role_select("role", &roles, invite_default(&roles))) }
                button type="submit" { "Invite" }
            }
        }
        h2 { "Members" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" }
                th scope="col" { "Second factor" }
                @if write { th scope="col" { "Change" } }
            } }
            tbody { @for p in people {
                tr data-member=(p.user_id) {
                    td { (p.display_name) @if p.user_id == m.auth.user.id { " " span class="muted" { "(you)" } } }
                    td { (p.email) }
                    td { span class="badge" { (p.role.as_str()) } }
                    td { @if p.totp_enabled { "on" } @else { "off" } }
                    @if write {
                        td {
                            @if p.role.within(&m.caller.scopes) && p.user_id != m.auth.user.id {
                                form class="row" method="post" action=(ctx.url(&format!("/members/{}/role", p.user_id))) {
                                    (ctx.csrf_field())
                                    label { "Role" (role_select("role", &roles, p.role)) }
                                    button type="submit" class="secondary" { "Change" }
                                }
                                form class="inline" method="post" action=(ctx.url(&format!("/members/{}/remove", p.user_id))) {
                                    (ctx.csrf_field())
                                    button type="submit" class="danger" { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        } }
        h2 { "Invitations" }
        @let pending: Vec<&InvitationInfo> = invitations.iter().filter(|i| i.status == InvitationStatus::Pending).collect();
        @if pending.is_empty() { p class="muted" { "No pending invitation." } }
        @else {
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Until" } @if write { th scope="col" { "Revoke" } } } }
                tbody { @for i in pending {
                    tr {
                        td { (i.email) } td { (i.role.as_str()) } td { (i.expires_at) }
                        @if write { td {
                            form class="inline" method="post" action=(ctx.url(&format!("/members/invitations/{}/revoke", i.id))) {
                                (ctx.csrf_field())
                                button type="submit" class="danger" { "Revoke" }
                            }
                        } }
                    }
                } }
            } }
        }
    }
}

async fn load(m: &Member) -> Result<(Vec<Person>, Vec<InvitationInfo>), PageError> {
    let idp = &m.ctx.state.idp;
    let people = idp.list_members(&m.caller, &m.tenant).await?;
    let invitations = idp.list_invitations(&m.caller, &m.tenant).await?;
    Ok((people, invitations))
}

/// `GET /members`.
pub(crate) async fn list(m: Member) -> PageResult {
    let (people, invitations) = load(&m).await?;
    let body = members_page(&m, &people, &invitations, "");
    Ok(m.ctx.page(Page::new("Members", Nav::Members, body)))
}

fn parse_role(s: &str) -> Result<Role, PageError> {
    s.parse()
        .map_err(|_| PageError::bad_request("There is no such role."))
}

/// The invitation form.
#[derive(Deserialize)]
pub(crate) struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /members/invitations`: creates an invitation; its link is shown
/// once (`no-store`) to pass on.
pub(crate) async fn invite(m: Member, PageForm(f): PageForm<InviteForm>) -> PageResult {
    let role = parse_role(&f.role)?;
    let ctx = &m.ctx;
    let created = ctx
        .state
        .idp
        .create_invitation(
            &m.caller,
            &m.tenant,
            &NewInvitation {
                email: f.email.trim().to_owned(),
                role,
            },
        )
        .await;
    match created {
        Ok(inv) => {
            let (people, invitations) = load(&m).await?;
            let body = html! {
                div class="secret" data-secret="true" {
                    p { strong { "Shown once." } " Send this link to " (inv.invitation.email) "; it works once, until " (inv.invitation.expires_at) "." }
                    pre id="invitation-link" { (inv.url) }
                    div class="actions" hidden data-needs-js {
                        button type="button" class="secondary" data-copy="#invitation-link" { "Copy the link" }
                    }
                }
                (members_page(&m, &people, &invitations, ""))
            };
            Ok(ctx.page(
                Page::new("Members", Nav::Members, body)
                    .flash(Flash::success("The invitation is created."))
                    .no_store(),
            ))
        }
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. } | Error::Forbidden { .. })) => {
            let status = match e {
                Error::Forbidden { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let (people, invitations) = load(&m).await?;
            Ok(ctx.page(
                Page::new(
                    "Members",
                    Nav::Members,
                    members_page(&m, &people, &invitations, &f.email),
                )
                .flash(Flash::error(format!("No invitation was created: {e}.")))
                .status(status),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

fn user_id(s: &str) -> Result<UserId, PageError> {
    UserId::parse(s).map_err(|_| PageError::not_found("member"))
}

/// The role form.
#[derive(Deserialize)]
pub(crate) struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /members/{user_id}/role`.
pub(crate) async fn change_role(
    m: Member,
    Path(user): Path<String>,
    PageForm(f): PageForm<RoleForm>,
) -> PageResult {
    let role = parse_role(&f.role)?;
    let user = user_id(&user)?;
    m.ctx
        .state
        .idp
        .change_member_role(&m.caller, &m.tenant, &user, role)
        .await?;
    Ok(see_other(&format!(
        "{}?notice=role-changed",
        m.ctx.url("/members")
    )))
}

/// `POST /members/{user_id}/remove`.
pub(crate) async fn remove(m: Member, Path(user): Path<String>) -> PageResult {
    let user = user_id(&user)?;
    m.ctx
        .state
        .idp
        .remove_member(&m.caller, &m.tenant, &user)
        .await?;
    Ok(see_other(&format!(
        "{}?notice=member-removed",
        m.ctx.url("/members")
    )))
}

/// `POST /members/invitations/{id}/revoke`.
pub(crate) async fn revoke_invitation(m: Member, Path(id): Path<String>) -> PageResult {
    let id = InvitationId::parse(&id).map_err(|_| PageError::not_found("invitation"))?;
    m.ctx
        .state
        .idp
        .revoke_invitation(&m.caller, &m.tenant, &id)
        .await?;
    Ok(see_other(&format!(
        "{}?notice=invitation-revoked",
        m.ctx.url("/members")
    )))
}

//! The tenant's admin API keys: the list, a new key shown once, and
//! revocation with a reason.

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use sentryagent_core::{AdminKey, AdminKeyId, AdminScope, Error};
use serde::Deserialize;

use super::auth::Member;
use super::page::{Flash, Nav, Page, PageError, PageResult, see_other};

fn require_keys(m: &Member) -> Result<(), PageError> {
    if m.may(AdminScope::ApiKeysWrite) {
        Ok(())
    } else {
        Err(PageError::forbidden(
            "Your role may not manage API keys: ask an admin or an owner of your organization.",
        ))
    }
}

/// The scopes a member may grant: those its role covers.
fn grantable(m: &Member) -> Vec<AdminScope> {
    AdminScope::ALL
        .into_iter()
        .filter(|s| m.caller.scopes.iter().any(|own| own.covers(*s)))
        .collect()
}

fn keys_page(m: &Member, keys: &[AdminKey], form_name: &str) -> Markup {
    let ctx = &m.ctx;
    html! {
        p { "Admin API keys call the management API as your organization (" code { "Authorization: Bearer <key>" } ")." }
        h2 { "New key" }
        form class="stack" method="post" action=(ctx.url("/api-keys")) {
            (ctx.csrf_field())
            label { "Name" input type="text" name="name" required maxlength="100" value=(form_name); }
            fieldset {
                legend { "Scopes" }
                @for s in grantable(m) {
                    label { input type="checkbox" name="scope" value=(s.as_str()); " " code { (s.as_str()) } }
                }
                p class="hint muted" { "None checked: every scope of your role." }
            }
            div { button type="submit" { "Create the key" } }
        }
        h2 { "Keys" }
        @if keys.is_empty() { p class="muted" { "No key yet." } }
        @else {
            div class="table-wrap" { table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Scopes" }
                    th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { "Revoke" }
                } }
                tbody { @for k in keys {
                    tr {
                        td { (k.name) }
                        td { code { (k.prefix) } }
                        td { (k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")) }
                        td { @if let Some(t) = k.last_used_at { (t) } @else { "never" } " (" (k.request_count) " requests)" }
                        td {
                            @if let Some(at) = k.revoked_at {
                                span class="badge revoked" { "revoked" } " " (at)
                                @if let Some(r) = &k.revocation_reason { br; span class="muted" { (r) } }
                            } @else { span class="badge active" { "active" } }
                        }
                        td {
                            @if k.revoked_at.is_none() {
                                form class="row" method="post" action=(ctx.url(&format!("/api-keys/{}/revoke", k.id))) {
                                    (ctx.csrf_field())
                                    label { "Reason" input type="text" name="reason" required maxlength="500"; }
                                    button type="submit" class="danger" { "Revoke" }
                                }
                            }
                        }
                    }
                } }
            } }
        }
    }
}

/// `GET /api-keys`.
pub(crate) async fn list(m: Member) -> PageResult {
    require_keys(&m)?;
    let keys = m
        .ctx
        .state
        .idp
        .list_admin_keys(&m.caller, Some(&m.tenant))
        .await?;
    let body = keys_page(&m, &keys, "");
    Ok(m.ctx.page(Page::new("API keys", Nav::ApiKeys, body)))
}

/// `POST /api-keys`: creates a key; the key is shown once (`no-store`).
pub(crate) async fn create(m: Member, body: axum::body::Bytes) -> PageResult {
    require_keys(&m)?;
    let ctx = &m.ctx;
    // Repeated `scope` fields: read the pairs by hand.
    let mut name = String::new();
    let mut scopes = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "name" => name = v.trim().to_owned(),
            "scope" => {
                let s: AdminScope =
                    serde_json::from_value(serde_json::Value::String(v.into_owned()))
                        .map_err(|_| PageError::bad_request("There is no such scope."))?;
                scopes.push(s);
            }
            _ => {}
        }
    }
    let scopes = (!scopes.is_empty()).then_some(scopes);
    match ctx
        .state
        .idp
        .create_admin_key(&m.caller, Some(&m.tenant), &name, scopes)
        .await
    {
        Ok((key, secret)) => {
            let keys = ctx
                .state
                .idp
                .list_admin_keys(&m.caller, Some(&m.tenant))
                .await?;
            let body = html! {
                div class="secret" data-secret="true" {
                    p { strong { "Shown once." } " Store the key now: the server keeps only its hash." }
                    dl class="facts" {
                        dt { "Name" } dd { (key.name) }
                        dt { "Key" } dd { code id="api-key" { (secret) } }
                    }
                    div class="actions" hidden data-needs-js {
                        button type="button" class="secondary" data-copy="#api-key" { "Copy the key" }
                    }
                }
                (keys_page(&m, &keys, ""))
            };
            Ok(ctx.page(
                Page::new("API keys", Nav::ApiKeys, body)
                    .flash(Flash::success("The key is created."))
                    .no_store(),
            ))
        }
        Err(e @ (Error::Invalid { .. } | Error::Forbidden { .. })) => {
            let keys = ctx
                .state
                .idp
                .list_admin_keys(&m.caller, Some(&m.tenant))
                .await?;
            Ok(ctx.page(
                Page::new("API keys", Nav::ApiKeys, keys_page(&m, &keys, &name))
                    .flash(Flash::error(format!("No key was created: {e}.")))
                    .status(StatusCode::UNPROCESSABLE_ENTITY),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The revocation form.
#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    reason: String,
}

/// `POST /api-keys/{key_id}/revoke`: revokes a key of the tenant, with a
/// reason.
pub(crate) async fn revoke(
    m: Member,
    Path(id): Path<String>,
    super::page::PageForm(f): super::page::PageForm<RevokeForm>,
) -> PageResult {
    require_keys(&m)?;
    let id = AdminKeyId::parse(&id).map_err(|_| PageError::not_found("API key"))?;
    let reason = f.reason.trim();
    if reason.is_empty() {
        return Err(PageError::bad_request("Say why the key is revoked."));
    }
    m.ctx
        .state
        .idp
        .revoke_admin_key_because(&m.caller, Some(&m.tenant), &id, Some(reason))
        .await?;
    Ok(see_other(&format!(
        "{}?notice=key-revoked",
        m.ctx.url("/api-keys")
    )))
}

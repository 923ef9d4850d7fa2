//! The pages the emailed links open: accepting an invitation and setting a
//! new password. The token comes in the link's fragment (`#token=...`,
//! never sent to a server); the page's script moves it into the form, and
//! without the script the person pastes it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use sentryagent_core::{AcceptInvitation, CompletePasswordReset, Error};
use serde::Deserialize;

use super::page::{Ctx, Flash, Nav, Page, PageError, PageForm, see_other};
use crate::extract::Meta;

fn token_field(label: &str) -> Markup {
    html! {
        label { (label)
            span class="hint" { "Filled in from your link; paste the part after #token= if it is empty." }
            input type="text" name="token" data-fragment-token required autocomplete="off" spellcheck="false";
        }
    }
}

fn invitation_form(ctx: &Ctx) -> Markup {
    html! {
        p { "Join your organization: choose a password for a new account, or enter the password of the account you have under the invited email." }
        form class="stack" method="post" action=(ctx.url("/invitations/accept")) {
            (ctx.csrf_field())
            (token_field("Invitation code"))
            label { "Your name" span class="hint" { "Optional, for a new account." }
                input type="text" name="display_name" maxlength="100" autocomplete="name"; }
            label { "Password" input type="password" name="password" required autocomplete="new-password" maxlength="128"; }
            label { "One-time code" span class="hint" { "Only for an account with a second factor." }
                input type="text" name="totp" inputmode="numeric" autocomplete="one-time-code"; }
            div { button type="submit" { "Join" } }
        }
    }
}

/// `GET /invitations/accept`.
pub(crate) async fn invitation_page(ctx: Ctx) -> Response {
    let mut res = ctx.page(Page::new(
        "Accept the invitation",
        Nav::None,
        invitation_form(&ctx),
    ));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The invitation form.
#[derive(Deserialize)]
pub(crate) struct InvitationForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    totp: Option<String>,
}

/// `POST /invitations/accept`: joins (a new account, or the existing one)
/// and signs in.
pub(crate) async fn accept_invitation(
    ctx: Ctx,
    Meta(meta): Meta,
    PageForm(f): PageForm<InvitationForm>,
) -> Response {
    let input = AcceptInvitation {
        token: f.token.trim().to_owned(),
        password: f.password,
        display_name: f.display_name.filter(|n| !n.trim().is_empty()),
        totp: f.totp.filter(|t| !t.trim().is_empty()),
    };
    let old = ctx.session.as_ref().map(|s| s.secret.expose().to_owned());
    match ctx
        .state
        .idp
        .accept_invitation(&input, &meta, old.as_deref())
        .await
    {
        Ok(signed) => super::auth::signed_in_redirect(&ctx, &signed, &ctx.url("/agents")),
        Err(e) => {
            let (status, text) = match &e {
                Error::NotFound { .. } => (
                    StatusCode::NOT_FOUND,
                    "This invitation code is not valid: check the link.".to_owned(),
                ),
                Error::Conflict { .. } => (
                    StatusCode::CONFLICT,
                    "This invitation was used, revoked or has expired: ask for a new one."
                        .to_owned(),
                ),
                Error::Forbidden { message } => (StatusCode::FORBIDDEN, format!("{message}.")),
                Error::Unauthenticated => (
                    StatusCode::UNAUTHORIZED,
                    "The password or code is not right for the account of this email.".to_owned(),
                ),
                Error::Invalid { field, message } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{field}: {message}."),
                ),
                Error::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts: wait a few minutes and try again.".to_owned(),
                ),
                _ => return PageError::from(e).into_response(),
            };
            ctx.page(
                Page::new("Accept the invitation", Nav::None, invitation_form(&ctx))
                    .flash(Flash::error(text))
                    .status(status)
                    .no_store(),
            )
        }
    }
}

fn reset_form(ctx: &Ctx) -> Markup {
    html! {
        form class="stack" method="post" action=(ctx.url("/password-reset")) {
            (ctx.csrf_field())
            (token_field("Reset code"))
            label { "New password" span class="hint" { "At least 10 characters, not easy to guess. Every session of the account ends." }
                input type="password" name="password" required minlength="10" maxlength="128" autocomplete="new-password"; }
            div { button type="submit" { "Set the password" } }
        }
    }
}

/// `GET /password-reset`.
pub(crate) async fn reset_page(ctx: Ctx) -> Response {
    let mut res = ctx.page(Page::new("Set a new password", Nav::None, reset_form(&ctx)));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The reset form.
#[derive(Deserialize)]
pub(crate) struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// `POST /password-reset`: sets the password; then sign in.
pub(crate) async fn reset(
    ctx: Ctx,
    Meta(meta): Meta,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    let input = CompletePasswordReset {
        token: f.token.trim().to_owned(),
        password: f.password,
    };
    match ctx.state.idp.complete_password_reset(&input, &meta).await {
        Ok(()) => see_other(&format!("{}?notice=password-reset", ctx.url("/login"))),
        Err(e) => {
            let (status, text) = match &e {
                Error::Invalid { field, message } if *field == "password" => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("The new password is not accepted: {message}."),
                ),
                Error::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts: wait a few minutes and try again.".to_owned(),
                ),
                Error::Unavailable { .. } | Error::Internal { .. } => {
                    return PageError::from(e).into_response();
                }
                _ => (
                    StatusCode::BAD_REQUEST,
                    "This reset code is not valid, was used or has expired: ask for a new link."
                        .to_owned(),
                ),
            };
            ctx.page(
                Page::new("Set a new password", Nav::None, reset_form(&ctx))
                    .flash(Flash::error(text))
                    .status(status)
                    .no_store(),
            )
        }
    }
}

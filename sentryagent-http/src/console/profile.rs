//! The signed-in person's own settings: password, second factor and
//! sessions.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use maud::{Markup, html};
use sentryagent_core::{Error, SessionId, SessionInfo};
use serde::Deserialize;

use super::auth::{SignedIn, with_session};
use super::page::{Ctx, Flash, Nav, Page, PageError, PageForm, PageResult, see_other};
use crate::extract::Meta;
use crate::session::cookie;

fn profile_body(ctx: &Ctx, s: &SignedIn, sessions: &[SessionInfo], extra: Markup) -> Markup {
    let user = &s.auth.user;
    html! {
        (extra)
        dl class="facts" {
            dt { "Email" } dd { (user.email) }
            dt { "Name" } dd { (user.display_name) }
            dt { "Second factor" } dd { @if user.totp_enabled() { "on" } @else { "off" } }
        }
        h2 id="password" { "Password" }
        form class="stack" method="post" action=(ctx.url("/settings/profile/password")) {
            (ctx.csrf_field())
            label { "Current password" input type="password" name="current_password" autocomplete="current-password" required; }
            label { "New password" span class="hint" { "At least 10 characters, not easy to guess. Every session of yours ends, this one starts anew." }
                input type="password" name="new_password" autocomplete="new-password" required minlength="10" maxlength="128"; }
            div { button type="submit" { "Change the password" } }
        }
        h2 id="second-factor" { "Second factor" }
        @if user.totp_enabled() {
            form class="stack" method="post" action=(ctx.url("/settings/profile/totp/disable")) {
                (ctx.csrf_field())
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                div { button type="submit" class="danger" { "Turn the second factor off" } }
            }
        } @else {
            form method="post" action=(ctx.url("/settings/profile/totp")) {
                (ctx.csrf_field())
                button type="submit" { "Set up an authenticator app" }
            }
        }
        h2 id="sessions" { "Sessions" }
        div class="table-wrap" { table {
            thead { tr { th scope="col" { "Signed in" } th scope="col" { "Last seen" } th scope="col" { "From" } th scope="col" { "End" } } }
            tbody { @for x in sessions {
                tr {
                    td { (x.signed_in_at) @if x.current { " " span class="badge active" { "this one" } } }
                    td { (x.last_seen_at) }
                    td { (x.ip.as_deref().unwrap_or("")) " " span class="muted" { (x.user_agent.as_deref().unwrap_or("")) } }
                    td {
                        form class="inline" method="post" action=(ctx.url(&format!("/settings/profile/sessions/{}/end", x.id))) {
                            (ctx.csrf_field())
                            button type="submit" class="secondary" { @if x.current { "Sign out" } @else { "End" } }
                        }
                    }
                }
            } }
        } }
        @if sessions.len() > 1 {
            form method="post" action=(ctx.url("/settings/profile/sessions/end-others")) {
                (ctx.csrf_field())
                button type="submit" class="danger" { "Sign out everywhere else" }
            }
        }
    }
}

async fn render(
    s: &SignedIn,
    extra: Markup,
    flash: Option<Flash>,
    status: StatusCode,
) -> PageResult {
    let sessions = s.ctx.state.idp.list_sessions(&s.auth).await?;
    let mut page = Page::new(
        "Your profile",
        Nav::Settings,
        profile_body(&s.ctx, s, &sessions, extra),
    )
    .status(status);
    if let Some(f) = flash {
        page = page.flash(f);
    }
    Ok(s.ctx.page(page))
}

/// `GET /settings/profile`.
pub(crate) async fn page(s: SignedIn) -> PageResult {
    render(&s, html! {}, None, StatusCode::OK).await
}

/// The password form.
#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /settings/profile/password`: every session ends; this browser
/// gets the new one.
pub(crate) async fn change_password(
    s: SignedIn,
    Meta(meta): Meta,
    PageForm(f): PageForm<PasswordForm>,
) -> PageResult {
    let idp = &s.ctx.state.idp;
    match idp
        .change_password(&s.auth, &f.current_password, &f.new_password, &meta)
        .await
    {
        Ok(signed) => {
            let res = see_other(&format!(
                "{}?notice=password-changed",
                s.ctx.url("/settings/profile")
            ));
            Ok(with_session(&s.ctx, res, &signed))
        }
        Err(e @ (Error::Invalid { .. } | Error::Forbidden { .. } | Error::Unauthenticated)) => {
            let text = match e {
                Error::Invalid { message, .. } => {
                    format!("The new password is not accepted: {message}.")
                }
                _ => "The current password is not right.".to_owned(),
            };
            render(
                &s,
                html! {},
                Some(Flash::error(text)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /settings/profile/totp`: starts setting up the second factor; the
/// secret is shown once (`no-store`) with the form that confirms it.
pub(crate) async fn begin_totp(s: SignedIn) -> PageResult {
    let enrolment = s.ctx.state.idp.begin_totp(&s.auth).await?;
    let ctx = &s.ctx;
    let extra = html! {
        div class="secret" data-secret="true" {
            p { strong { "Add this key to your authenticator app" } ", then enter the code it shows." }
            dl class="facts" {
                dt { "Key" } dd { code id="totp-secret" { (enrolment.secret) } }
                dt { "Link" } dd { code id="totp-uri" { (enrolment.otpauth_uri) } }
            }
            form class="row" method="post" action=(ctx.url("/settings/profile/totp/confirm")) {
                (ctx.csrf_field())
                label { "Code" input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                button type="submit" { "Turn it on" }
            }
        }
    };
    let mut res = render(&s, extra, None, StatusCode::OK).await?;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The confirmation code.
#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `POST /settings/profile/totp/confirm`: turns the second factor on; the
/// recovery codes are shown once (`no-store`) and the session is renewed.
pub(crate) async fn confirm_totp(
    s: SignedIn,
    Meta(meta): Meta,
    PageForm(f): PageForm<CodeForm>,
) -> PageResult {
    let idp = &s.ctx.state.idp;
    match idp.confirm_totp(&s.auth, f.code.trim(), &meta).await {
        Ok((codes, signed)) => {
            let ctx = &s.ctx;
            let body = html! {
                div class="secret" data-secret="true" {
                    p { strong { "Shown once." } " Each recovery code stands in for a one-time code once: store them now." }
                    pre id="recovery-codes" { (codes.join("\n")) }
                    div class="actions" hidden data-needs-js {
                        button type="button" class="secondary" data-copy="#recovery-codes" { "Copy" }
                        button type="button" class="secondary" data-download="#recovery-codes" data-filename="sentryagent-recovery-codes.txt" { "Download" }
                    }
                }
                p { a href=(ctx.url("/settings/profile")) { "Back to your profile" } }
            };
            let res = ctx.page(
                Page::new("Second factor on", Nav::Settings, body)
                    .flash(Flash::success("The second factor is on."))
                    .no_store(),
            );
            Ok(with_session(ctx, res, &signed))
        }
        Err(Error::Invalid { .. }) => {
            render(
                &s,
                html! {},
                Some(Flash::error(
                    "The code is not right: set up the app again and enter the code it shows now.",
                )),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// The password that confirms turning the second factor off.
#[derive(Deserialize)]
pub(crate) struct PasswordConfirm {
    #[serde(default)]
    password: String,
}

/// `POST /settings/profile/totp/disable`.
pub(crate) async fn disable_totp(
    s: SignedIn,
    Meta(meta): Meta,
    PageForm(f): PageForm<PasswordConfirm>,
) -> PageResult {
    match s
        .ctx
        .state
        .idp
        .disable_totp(&s.auth, &f.password, &meta)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "{}?notice=totp-off",
            s.ctx.url("/settings/profile")
        ))),
        Err(Error::Forbidden { .. }) => {
            render(
                &s,
                html! {},
                Some(Flash::error("The password is not right.")),
                StatusCode::FORBIDDEN,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /settings/profile/sessions/{id}/end`: ends one of the person's
/// sessions (this one too: that signs out).
pub(crate) async fn end_session(
    s: SignedIn,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> PageResult {
    let id = SessionId::parse(&id).map_err(|_| PageError::not_found("session"))?;
    s.ctx.state.idp.end_session(&s.auth, &id, &meta).await?;
    if id == s.auth.session.id {
        let mut res = see_other(&format!("{}?notice=signed-out", s.ctx.url("/")));
        let now = s.ctx.state.idp.clock().now();
        res.headers_mut()
            .append(header::SET_COOKIE, cookie(s.ctx.issuer(), None, now, now));
        return Ok(res);
    }
    Ok(see_other(&format!(
        "{}?notice=session-ended",
        s.ctx.url("/settings/profile")
    )))
}

/// `POST /settings/profile/sessions/end-others`.
pub(crate) async fn end_other_sessions(s: SignedIn, Meta(meta): Meta) -> PageResult {
    s.ctx.state.idp.end_other_sessions(&s.auth, &meta).await?;
    Ok(see_other(&format!(
        "{}?notice=sessions-ended",
        s.ctx.url("/settings/profile")
    )))
}

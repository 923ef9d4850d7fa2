//! The one layout every page shares, the request context pages are
//! rendered with, flash messages, error pages and the security headers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use sentryagent_core::{Error, SessionAuth};

use super::ConsoleState;
use super::assets;
use super::auth::ConsoleSession;

/// The Content-Security-Policy of every console response: nothing but this
/// origin's own files, no inline script or style, no framing.
pub(crate) const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'; img-src 'self' data:";

/// The hidden form field that carries the session's CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf_token";

/// The request as a page sees it: where the console is mounted, the path
/// asked for and the session, if any. Any handler can take it.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) state: ConsoleState,
    pub(crate) session: Option<Arc<SessionAuth>>,
    /// The path and query asked for, prefix included.
    pub(crate) here: String,
    /// The `notice` query parameter, for [`notice_text`].
    pub(crate) notice: Option<String>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("here", &self.here)
            .field("signed_in", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl FromRequestParts<ConsoleState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Ctx::from_parts(parts, state))
    }
}

impl Ctx {
    pub(crate) fn from_parts(parts: &Parts, state: &ConsoleState) -> Ctx {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        let here = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let notice = uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "notice")
                .map(|(_, v)| v.into_owned())
        });
        Ctx {
            state: state.clone(),
            session: parts
                .extensions
                .get::<ConsoleSession>()
                .map(|s| s.0.clone()),
            here,
            notice,
        }
    }

    /// The URL of console path `path` (which starts with `/`): the prefix
    /// and the path.
    pub fn url(&self, path: &str) -> String {
        let prefix = &self.state.config.prefix;
        // A nested router's root is the prefix itself (`/console`, not
        // `/console/`).
        if path == "/" && !prefix.is_empty() {
            return prefix.clone();
        }
        format!("{prefix}{path}")
    }

    /// The URL of API path `path` (where the host nests the API router).
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.state.config.api_base)
    }

    /// The server's issuer (its public base URL), for snippets.
    pub fn issuer(&self) -> &str {
        &self.state.idp.config().issuer
    }

    /// The hidden field with the session's CSRF token, for every form that
    /// posts (empty when signed out).
    pub fn csrf_field(&self) -> Markup {
        html! {
            @if let Some(s) = &self.session {
                input type="hidden" name=(CSRF_FIELD) value=(s.csrf_token);
            }
        }
    }

    /// Whether the request came with a live session.
    pub fn signed_in(&self) -> bool {
        self.session.is_some()
    }

    /// Renders a page in the layout.
    pub fn page(&self, page: Page) -> Response {
        let body = layout(self, &page);
        let mut res = (page.status, axum::response::Html(body.into_string())).into_response();
        if page.no_store {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        res
    }

    /// A `303 See Other` to console path `path`.
    pub fn redirect(&self, path: &str) -> Response {
        see_other(&self.url(path))
    }
}

/// A `303 See Other` to `location` (already a full path).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Which main navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nav {
    /// No entry is current (sign-in, error pages).
    None,
    /// `/`.
    Home,
    /// `/pricing`.
    Pricing,
    /// `/docs`.
    Docs,
    /// `/sdks`.
    Sdks,
    /// `/marketplace` and its agents and publishers.
    Marketplace,
    /// `/usage`.
    Usage,
    /// `/agents`.
    Agents,
    /// `/analytics`.
    Analytics,
    /// `/api-keys`.
    ApiKeys,
    /// `/members`.
    Members,
    /// `/audit`.
    Audit,
    /// `/settings/...` (billing, tier, profile).
    Settings,
}

/// The entries of the main navigation: public ones, and the signed-in ones.
const PUBLIC_NAV: &[(Nav, &str, &str)] = &[
    (Nav::Home, "/", "Home"),
    (Nav::Pricing, "/pricing", "Pricing"),
    (Nav::Docs, "/docs", "Docs"),
    (Nav::Sdks, "/sdks", "SDKs"),
    (Nav::Marketplace, "/marketplace", "Marketplace"),
];

const SIGNED_IN_NAV: &[(Nav, &str, &str)] = &[
    (Nav::Usage, "/usage", "Usage"),
    (Nav::Agents, "/agents", "Agents"),
    (Nav::Analytics, "/analytics", "Analytics"),
    (Nav::ApiKeys, "/api-keys", "API keys"),
    (Nav::Members, "/members", "Members"),
    (Nav::Audit, "/audit", "Audit"),
    (Nav::Settings, "/settings/billing", "Settings"),
    (Nav::Docs, "/docs", "Docs"),
    (Nav::Marketplace, "/marketplace", "Marketplace"),
];

/// How a flash message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    /// Something happened as asked.
    Success,
    /// Worth knowing.
    Info,
    /// Something went wrong (announced with `role="alert"`).
    Error,
}

/// A message shown above a page's content.
#[derive(Debug, Clone)]
pub struct Flash {
    /// How it reads.
    pub kind: FlashKind,
    /// The text (escaped like everything else).
    pub text: String,
}

impl Flash {
    /// A success message.
    pub fn success(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Success,
            text: text.into(),
        }
    }

    /// An informational message.
    pub fn info(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Info,
            text: text.into(),
        }
    }

    /// An error message.
    pub fn error(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
}

/// The message of a `?notice=<code>` left by a redirect after a form
/// (post, redirect, get): fixed texts only, so a link cannot put words on
/// a page.
pub(crate) fn notice_text(code: &str) -> Option<Flash> {
    let text = match code {
        "signed-out" => "You are signed out.",
        "agent-updated" => "The agent's state changed.",
        "secrets-revoked" => "Every client secret of the agent is revoked.",
        "key-revoked" => "The API key is revoked.",
        "invited" => "The invitation is created.",
        "invitation-revoked" => "The invitation is revoked.",
        "role-changed" => "The member's role changed.",
        "member-removed" => "The member is removed.",
        "password-changed" => "The password is changed; your other sessions ended.",
        "password-reset" => "Your new password is set: sign in with it.",
        "totp-off" => "The second factor is off.",
        "session-ended" => "The session is ended.",
        "sessions-ended" => "Every other session is ended.",
        _ => return None,
    };
    Some(Flash::success(text))
}

/// A page to render: title, navigation entry, content and options.
#[derive(Debug)]
pub struct Page {
    title: String,
    nav: Nav,
    body: Markup,
    flash: Option<Flash>,
    no_store: bool,
    status: StatusCode,
}

impl Page {
    /// A page titled `title` (also its `h1`), under navigation entry `nav`.
    pub fn new(title: impl Into<String>, nav: Nav, body: Markup) -> Self {
        Page {
            title: title.into(),
            nav,
            body,
            flash: None,
            no_store: false,
            status: StatusCode::OK,
        }
    }

    /// Shows a message above the content.
    pub fn flash(mut self, flash: Flash) -> Self {
        self.flash = Some(flash);
        self
    }

    /// Marks the page as showing a secret: `Cache-Control: no-store`.
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// Answers with another status (a form shown again with an error).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

fn layout(ctx: &Ctx, page: &Page) -> Markup {
    let nav: &[(Nav, &str, &str)] = if ctx.signed_in() {
        SIGNED_IN_NAV
    } else {
        PUBLIC_NAV
    };
    let flash = page
        .flash
        .clone()
        .or_else(|| ctx.notice.as_deref().and_then(notice_text));
    let cfg = &ctx.state.config;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (page.title) " · SentryAgent" }
                // No icon to fetch (a missing one is an error in the console).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(ctx.url(&assets::css_path()));
                script src=(ctx.url(&assets::js_path())) defer {}
            }
            body data-prefix=(cfg.prefix) data-api-base=(cfg.api_base)
                data-refresh-ms=(cfg.refresh_interval.as_millis()) {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href=(ctx.url("/")) { "SentryAgent" }
                    nav aria-label="Main" {
                        ul {
                            @for (entry, path, label) in nav {
                                li {
                                    @if *entry == page.nav {
                                        a href=(ctx.url(path)) aria-current="page" { (label) }
                                    } @else {
                                        a href=(ctx.url(path)) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div class="account" {
                        @if let Some(s) = &ctx.session {
                            a class="who" href=(ctx.url("/settings/profile")) { (s.user.email) }
                            form method="post" action=(ctx.url("/logout")) class="inline" {
                                (ctx.csrf_field())
                                button type="submit" class="link" { "Sign out" }
                            }
                        } @else {
                            a href=(ctx.url("/login")) { "Sign in" }
                            " "
                            a class="button" href=(ctx.url("/signup")) { "Sign up" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(f) = &flash {
                        @match f.kind {
                            FlashKind::Error => div class="flash error" role="alert" { (f.text) },
                            FlashKind::Success => div class="flash success" role="status" { (f.text) },
                            FlashKind::Info => div class="flash info" role="status" { (f.text) },
                        }
                    }
                    h1 { (page.title) }
                    (page.body)
                }
                footer {
                    p {
                        "SentryAgent — identity for AI agents. "
                        a href=(ctx.url("/docs")) { "Docs" } " · "
                        a href=(ctx.api_url("/explorer/")) { "API explorer" } " · "
                        a href=(ctx.url("/pricing")) { "Pricing" }
                    }
                }
            }
        }
    }
}

/// A query string; one that does not parse is a 400 page.
#[derive(Debug)]
pub struct PageQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| PageQuery(q.0))
            .map_err(|_| {
                PageError::bad_request("The address has a query this page does not understand.")
            })
    }
}

/// A submitted form (`application/x-www-form-urlencoded`); one that does
/// not parse is a 400 page.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| PageForm(f.0))
            .map_err(|_| {
                PageError::bad_request("The form could not be read: go back and try again.")
            })
    }
}

/// An error a handler answers with: rendered as a page in the layout by
/// the console's session layer.
#[derive(Debug, Clone)]
pub struct PageError {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

/// What page handlers return.
pub type PageResult<T = Response> = Result<T, PageError>;

impl PageError {
    /// An error page with a status, a title and a message.
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        PageError {
            status,
            title,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no such {what}, or it is not yours to see."),
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::FORBIDDEN, "Not allowed", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound { kind } => PageError::not_found(kind),
            Error::Forbidden { message } => PageError::forbidden(message.clone()),
            Error::Unauthenticated => PageError::new(
                StatusCode::UNAUTHORIZED,
                "Sign in again",
                "Your session has ended: sign in again.",
            ),
            Error::RateLimited { .. } => PageError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Too many requests: wait a little and try again.",
            ),
            Error::Unavailable { .. } | Error::Internal { .. } => {
                tracing::warn!(error = %e, "console page failed");
                PageError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The server cannot answer this now: try again in a moment.",
                )
            }
            Error::QuotaExceeded { .. } => {
                PageError::new(StatusCode::FORBIDDEN, "Limit reached", e.to_string())
            }
            Error::AlreadyExists { .. } | Error::Conflict { .. } => {
                PageError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            _ => PageError::new(StatusCode::BAD_REQUEST, "Bad request", e.to_string()),
        }
    }
}

/// Handed from a handler to the session layer, which has what the layout
/// needs.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPage(pub(crate) PageError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(ErrorPage(self));
        res
    }
}

/// The error page of `e` in the layout.
pub(crate) fn error_page(ctx: &Ctx, e: &PageError) -> Response {
    let body = html! {
        p class="lead" { (e.message) }
        p {
            a href=(ctx.url("/")) { "Home" }
            @if ctx.signed_in() {
                " · " a href=(ctx.url("/agents")) { "Agents" }
            } @else {
                " · " a href=(ctx.url("/login")) { "Sign in" }
            }
        }
    };
    ctx.page(Page::new(e.title, Nav::None, body).status(e.status))
}

/// The security headers of every console response; pages that set no
/// caching rule are `private, no-cache`.
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice_text("signed-out").is_some());
        assert!(notice_text("<script>alert(1)</script>").is_none());
        assert!(notice_text("").is_none());
    }
}

//! The web console (feature `console`): server-rendered pages for people,
//! as a router a host nests under any prefix.
//!
//! ```no_run
//! # async fn host() -> sentryagent_core::Result<()> {
//! use sentryagent_http::console::{self, ConsoleConfig};
//! let idp = sentryagent_core::Idp::builder("https://example.com/idp").build().await?;
//! let app: axum::Router = axum::Router::new()
//!     .nest("/idp", sentryagent_http::router(idp.clone()))
//!     .nest("/console", console::router(idp, ConsoleConfig::new("/console").api_base("/idp")));
//! # Ok(()) }
//! ```
//!
//! Every link, form action and redirect a page writes starts with the
//! configured [`ConsoleConfig::prefix`], so the prefix given here must be
//! the one the host nests the router under.
//!
//! # Security model
//! - Every response carries `Content-Security-Policy: default-src 'self';
//!   frame-ancestors 'none'; ...` (no inline script or style: the one CSS
//!   and one JS file are served from the binary under a versioned path),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` and
//!   `X-Frame-Options: DENY`. Pages that show a secret send
//!   `Cache-Control: no-store`; every page is `private, no-cache` at least.
//! - The session is the API's session cookie (`HttpOnly`, `SameSite=Lax`,
//!   `__Host-` and `Secure` on https). Every form that changes state is a
//!   POST carrying the session's CSRF token in the hidden field
//!   `csrf_token`; the core compares it in constant time
//!   ([`Idp::authenticate_session`](sentryagent_core::Idp::authenticate_session))
//!   and a POST without it is refused (403) before any handler runs. POSTs
//!   made without a session (sign-in, sign-up) are refused when the browser
//!   says they come from another site (`Sec-Fetch-Site: cross-site`, or an
//!   `Origin` whose host is not the request's).
//! - A signed-out request to a signed-in page is redirected to
//!   `<prefix>/login?next=<path>`; `next` is followed only when it is a
//!   relative path under the prefix (never another site).
//!
//! # Adding a page
//! 1. Write a handler taking a [`Ctx`] (anyone) or a [`Member`] (signed in,
//!    with a role in a tenant; a signed-out visitor is redirected to sign
//!    in), plus any axum extractors (`Query`, `Path`, `Form`).
//! 2. Build the body with `maud::html!` (it escapes every value; never use
//!    `PreEscaped` on anything a user or agent can set). Links and form
//!    actions go through [`Ctx::url`]; every `form method="post"` includes
//!    [`Ctx::csrf_field`].
//! 3. Answer `ctx.page(Page::new("Title", Nav::Usage, body))`, with
//!    [`Page::flash`] for a message and [`Page::no_store`] when the page
//!    shows a secret; errors are [`PageError`] (`?` on core errors renders
//!    the matching error page).
//! 4. Add the route in [`router`]'s list.

mod agents;
mod analytics;
mod assets;
mod audit;
mod auth;
mod billing;
mod charts;
mod dashboard;
mod fmt;
mod keys;
mod links;
mod marketplace;
mod members;
mod page;
mod profile;
mod public;
mod tier;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};
use sentryagent_core::{Idp, Tier};

pub use auth::{Member, SignedIn, safe_next};
pub use page::{Ctx, Flash, FlashKind, Nav, Page, PageError, PageForm, PageQuery, PageResult};

/// Largest form body the console accepts: 64 KiB.
const FORM_LIMIT: usize = 64 * 1024;

/// Options of the console [`router`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// The path the host nests the console under (`""` at the root, or
    /// `/console`: a leading slash, no trailing one). Every link, form
    /// action and redirect starts with it.
    pub prefix: String,
    /// The path the API router is nested under (`""` at the root), for the
    /// pages that call the API from the browser (live parts) and for the
    /// ready-made snippets.
    pub api_base: String,
    /// How often the live parts of pages (usage) refresh. Default 60 s.
    pub refresh_interval: Duration,
    /// Prices shown on `/pricing` when billing is configured (`"$49 a
    /// month"`), by tier. Default none: paid tiers point to the billing
    /// page.
    pub prices: Vec<(Tier, String)>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig::new("")
    }
}

impl ConsoleConfig {
    /// The console nested under `prefix` (`""` for the root); a trailing
    /// slash is dropped and a missing leading one added.
    pub fn new(prefix: &str) -> Self {
        ConsoleConfig {
            prefix: normalize_prefix(prefix),
            api_base: String::new(),
            refresh_interval: Duration::from_secs(60),
            prices: Vec::new(),
        }
    }

    /// Sets where the API router is nested.
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = normalize_prefix(base);
        self
    }

    /// Sets the price shown for `tier` on `/pricing`.
    pub fn price(mut self, tier: Tier, label: impl Into<String>) -> Self {
        self.prices.retain(|(t, _)| *t != tier);
        self.prices.push((tier, label.into()));
        self
    }

    /// Sets the refresh interval of the live parts (at least one second).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every.max(Duration::from_secs(1));
        self
    }
}

fn normalize_prefix(p: &str) -> String {
    let t = p.trim().trim_end_matches('/');
    if t.is_empty() {
        String::new()
    } else if t.starts_with('/') {
        t.to_owned()
    } else {
        format!("/{t}")
    }
}

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct ConsoleState(Arc<ConsoleShared>);

impl std::ops::Deref for ConsoleState {
    type Target = ConsoleShared;

    fn deref(&self) -> &ConsoleShared {
        &self.0
    }
}

/// The parts of [`ConsoleState`].
pub(crate) struct ConsoleShared {
    pub(crate) idp: Idp,
    pub(crate) config: ConsoleConfig,
}

/// The console as an axum router, to nest under [`ConsoleConfig::prefix`]
/// (or merge at the root when the prefix is empty). It has no fallback:
/// unknown paths fall through to the host's.
pub fn router<S: Clone + Send + Sync + 'static>(idp: Idp, config: ConsoleConfig) -> Router<S> {
    let state = ConsoleState(Arc::new(ConsoleShared { idp, config }));
    Router::new()
        // Public pages.
        .route("/", get(public::home))
        .route("/pricing", get(public::pricing))
        .route("/docs", get(public::docs))
        .route("/sdks", get(public::sdks))
        .route("/marketplace", get(marketplace::search))
        .route("/marketplace/agents/{id}", get(marketplace::agent))
        .route("/publishers/{slug}", get(marketplace::publisher))
        // Signing in and out.
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/logout", post(auth::logout))
        .route(
            "/invitations/accept",
            get(links::invitation_page).post(links::accept_invitation),
        )
        .route("/password-reset", get(links::reset_page).post(links::reset))
        // Signed-in pages.
        .route("/agents", get(agents::list))
        .route("/agents/new", get(agents::new_page).post(agents::create))
        .route("/agents/{id}", get(agents::detail))
        .route("/agents/{id}/lifecycle", post(agents::lifecycle))
        .route("/agents/{id}/credentials", post(agents::credentials))
        .route("/agents/{id}/token", post(agents::first_token))
        .route("/api-keys", get(keys::list).post(keys::create))
        .route("/api-keys/{key_id}/revoke", post(keys::revoke))
        .route("/members", get(members::list))
        .route("/members/invitations", post(members::invite))
        .route(
            "/members/invitations/{id}/revoke",
            post(members::revoke_invitation),
        )
        .route("/members/{user_id}/role", post(members::change_role))
        .route("/members/{user_id}/remove", post(members::remove))
        .route("/audit", get(audit::list))
        .route("/settings/profile", get(profile::page))
        .route("/settings/profile/password", post(profile::change_password))
        .route("/settings/profile/totp", post(profile::begin_totp))
        .route(
            "/settings/profile/totp/confirm",
            post(profile::confirm_totp),
        )
        .route(
            "/settings/profile/totp/disable",
            post(profile::disable_totp),
        )
        .route(
            "/settings/profile/sessions/{id}/end",
            post(profile::end_session),
        )
        .route(
            "/settings/profile/sessions/end-others",
            post(profile::end_other_sessions),
        )
        // The dashboard: usage, billing, tier, analytics.
        .merge(dashboard::routes(Router::new()))
        // Assets, immutable under a versioned path.
        .route("/assets/{version}/{file}", get(assets::serve))
        .layer(from_fn_with_state(state.clone(), auth::session_layer))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(map_response(page::security_headers))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("/console/"), "/console");
        assert_eq!(normalize_prefix("console"), "/console");
        assert_eq!(normalize_prefix("/a/b"), "/a/b");
    }
}

//! The dashboard routes: Usage, billing, tier and analytics pages, the
//! JSON the Usage tab polls and the charts the analytics page fetches.
//! Every one needs a signed-in member; the JSON and the charts answer 401
//! (not a redirect) without one, as the script that fetches them expects.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::Tier;

use super::charts;
use super::page::{Nav, Page, PageResult};
use super::{ConsoleState, Member};
use crate::problem::{ApiError, Problem};

type Signed = Result<Member, Response>;

fn prefix(m: &Member) -> &str {
    &m.ctx.state.config.prefix
}

/// `GET /usage`.
pub(crate) async fn usage_page(m: Member) -> PageResult {
    let u = m.ctx.state.idp.usage_summary(&m.caller, &m.tenant).await?;
    let refresh = m.ctx.state.config.refresh_interval.as_secs().max(1);
    let body = super::usage::content(prefix(&m), &u, refresh);
    Ok(m.ctx.page(Page::new("Usage", Nav::Usage, body)))
}

/// `GET /usage.json`: the body of `GET /billing/usage` for the session (a
/// person's page view is not one of the tenant's API calls).
pub(crate) async fn usage_json(m: Signed) -> Response {
    let Ok(m) = m else {
        return Problem::unauthenticated("sign in to the console").into_response();
    };
    match m.ctx.state.idp.usage_summary(&m.caller, &m.tenant).await {
        Ok(u) => {
            let mut res = Json(u).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// `GET /settings/billing`.
pub(crate) async fn billing_page(m: Member) -> PageResult {
    let s = m.ctx.state.idp.subscription(&m.caller, &m.tenant).await?;
    let body = super::billing::content(prefix(&m), &m.auth.csrf_token, &s);
    Ok(m.ctx.page(Page::new("Billing", Nav::Settings, body)))
}

/// Starts a checkout to Pro (the core path of `POST /api/tiers/upgrade`)
/// and sends the browser there.
async fn checkout(m: &Member) -> PageResult {
    let session = m
        .ctx
        .state
        .idp
        .start_checkout(&m.caller, &m.tenant, Tier::Pro)
        .await?;
    Ok(hand_off(m, &session.url, "Stripe Checkout"))
}

/// Sends the browser on to the billing provider's page `url` (which the
/// core got from the provider, never from the request). The console's
/// policy allows forms to post only to itself (`form-action 'self'`), and
/// browsers apply that to a form's redirects too, so the answer to the form
/// is a page of the console that moves on at once (`refresh`) with a link
/// for browsers that do not.
fn hand_off(m: &Member, url: &str, to: &str) -> Response {
    let css = m.ctx.url(&super::assets::css_path());
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content={ "0;url=" (url) };
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(css);
                title { "Continuing to " (to) " · SentryAgent" }
            }
            body {
                main id="main" {
                    p { "Continuing to " (to) "… " a #hand-off href=(url) { "Continue" } }
                }
            }
        }
    };
    let mut res = axum::response::Html(page.into_string()).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /settings/billing/checkout` ("Upgrade to Paid").
pub(crate) async fn billing_checkout(m: Member) -> PageResult {
    checkout(&m).await
}

/// `POST /settings/tier/upgrade` ("Upgrade to Pro").
pub(crate) async fn tier_upgrade(m: Member) -> PageResult {
    checkout(&m).await
}

/// `POST /settings/billing/portal` ("Manage billing").
pub(crate) async fn billing_portal(m: Member) -> PageResult {
    let url = m.ctx.state.idp.billing_portal(&m.caller, &m.tenant).await?;
    Ok(hand_off(&m, &url, "the Stripe customer portal"))
}

/// `GET /settings/tier`.
pub(crate) async fn tier_page(m: Member) -> PageResult {
    let idp = &m.ctx.state.idp;
    let u = idp.usage_summary(&m.caller, &m.tenant).await?;
    let s = idp.subscription(&m.caller, &m.tenant).await?;
    let body = super::tier::content(prefix(&m), &m.auth.csrf_token, &u, s.billing_enabled);
    Ok(m.ctx.page(Page::new("Tier", Nav::Settings, body)))
}

/// `GET /analytics`.
pub(crate) async fn analytics_page(m: Member) -> PageResult {
    let idp = &m.ctx.state.idp;
    let rows = idp.agent_usage_table(&m.caller, &m.tenant, None).await?;
    let month = idp.clock().now().utc_month();
    let body = super::analytics::content(prefix(&m), &month, &rows);
    Ok(m.ctx.page(Page::new("Analytics", Nav::Analytics, body)))
}

fn svg(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=60"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /analytics/token-trend.svg`: the last 30 days.
pub(crate) async fn token_trend_svg(m: Signed) -> Response {
    let Ok(m) = m else {
        return Problem::unauthenticated("sign in to the console").into_response();
    };
    match m
        .ctx
        .state
        .idp
        .daily_token_issuances(&m.caller, &m.tenant, 30)
        .await
    {
        Ok(days) => svg(charts::token_trend(&days)),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `GET /analytics/heatmap.svg`: the last 28 days by weekday and hour.
pub(crate) async fn heatmap_svg(m: Signed) -> Response {
    let Ok(m) = m else {
        return Problem::unauthenticated("sign in to the console").into_response();
    };
    match m.ctx.state.idp.activity_heatmap(&m.caller, &m.tenant).await {
        Ok(cells) => svg(charts::heatmap(&cells)),
        Err(e) => ApiError(e).into_response(),
    }
}

/// The routes of this module, for the console's router.
pub(crate) fn routes(r: axum::Router<ConsoleState>) -> axum::Router<ConsoleState> {
    use axum::routing::{get, post};
    r.route("/usage", get(usage_page))
        .route("/usage.json", get(usage_json))
        .route("/settings/billing", get(billing_page))
        .route("/settings/billing/checkout", post(billing_checkout))
        .route("/settings/billing/portal", post(billing_portal))
        .route("/settings/tier", get(tier_page))
        .route("/settings/tier/upgrade", post(tier_upgrade))
        .route("/analytics", get(analytics_page))
        .route("/analytics/token-trend.svg", get(token_trend_svg))
        .route("/analytics/heatmap.svg", get(heatmap_svg))
}

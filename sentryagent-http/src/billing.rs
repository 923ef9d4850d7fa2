//! Tiers, usage and billing: usage summary, checkout (upgrade), the
//! customer portal, the subscription, and the provider's signed webhook.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sentryagent_core::{BillingOutcome, Error, UsageSummary};

use crate::AppState;
use crate::extract::{Admin, ApiJson, ApiQuery, Meta, body_problem};
use crate::problem::{ApiError, Problem};
use crate::views::{
    AuthErrors, BodyErrors, InputErrors, NotFound, ProblemDoc, SubscriptionView, TenantParam,
    TierBody, UrlView, WebhookEventDoc, WebhookOutcome, WebhookReply,
};

/// Largest webhook body: 1 MiB.
pub(crate) const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// The webhook signature header.
const SIGNATURE: &str = "stripe-signature";

/// The tenant's tier, limits and current use, with `approaching_limit` at
/// 80 % of any limit.
#[utoipa::path(
    get, path = "/billing/usage", tag = "billing", params(TenantParam),
    responses((status = 200, description = "tier, limits, use (`agents`, `api_calls_today`, `token_issuances_this_month`), `approaching_limit`, subscription", body = UsageSummary), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn usage(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> Result<Json<UsageSummary>, ApiError> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    Ok(Json(s.idp.usage_summary(&caller, &tenant).await?))
}

async fn start_checkout(
    s: &AppState,
    caller: &sentryagent_core::Caller,
    body: TierBody,
) -> Result<Json<UrlView>, ApiError> {
    let tenant = caller.tenant_or(body.tenant_id.as_ref())?;
    let session = s.idp.start_checkout(caller, &tenant, body.tier).await?;
    Ok(Json(UrlView {
        url: session.url,
        id: Some(session.id),
    }))
}

/// The answers of `POST /billing/checkout` and `POST /api/tiers/upgrade`
/// (documentation).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum CheckoutAnswers {
    /// The provider's checkout: send the user to `url`.
    #[response(status = 200)]
    Started(UrlView),
    /// Already on that tier.
    #[response(status = 409, content_type = "application/problem+json")]
    AlreadyOnTier(ProblemDoc),
    /// Billing is not configured.
    #[response(status = 501, content_type = "application/problem+json")]
    NotConfigured(ProblemDoc),
}

/// Starts a checkout to a paid tier; send the user to `url`. 501 when
/// billing is not configured on this deployment.
#[utoipa::path(
    post, path = "/billing/checkout", tag = "billing",
    request_body = TierBody,
    responses(CheckoutAnswers, NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn checkout(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<TierBody>,
) -> Result<Json<UrlView>, ApiError> {
    start_checkout(&s, &caller, body).await
}

/// Upgrades the tenant's tier: the same as `POST /billing/checkout`.
#[utoipa::path(
    post, path = "/api/tiers/upgrade", tag = "billing",
    request_body = TierBody,
    responses(CheckoutAnswers, NotFound, AuthErrors, InputErrors, BodyErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn upgrade(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<TierBody>,
) -> Result<Json<UrlView>, ApiError> {
    start_checkout(&s, &caller, body).await
}

/// The tenant's tier and subscription.
#[utoipa::path(
    get, path = "/billing/subscription", tag = "billing", params(TenantParam),
    responses((status = 200, description = "tier, status and subscription, with the upgrade route", body = SubscriptionView), NotFound, AuthErrors, InputErrors),
    security(("admin_key" = []))
)]
pub(crate) async fn subscription(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    let subscription = s.idp.subscription(&caller, &tenant).await?;
    Ok(Json(SubscriptionView {
        subscription,
        upgrade_url: s.upgrade_url.to_string(),
    }))
}

/// A customer-portal link (manage card, cancel) for a paying tenant.
#[utoipa::path(
    post, path = "/billing/portal", tag = "billing", params(TenantParam),
    responses(
        (status = 200, description = "the provider's customer portal: send the user to `url`", body = UrlView),
        (status = 409, description = "no billing account yet", content_type = "application/problem+json", body = ProblemDoc),
        (status = 501, description = "billing is not configured", content_type = "application/problem+json", body = ProblemDoc),
        NotFound, AuthErrors, InputErrors,
    ),
    security(("admin_key" = []))
)]
pub(crate) async fn portal(
    State(s): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> Result<Json<UrlView>, ApiError> {
    let tenant = caller.tenant_or(q.tenant_id.as_ref())?;
    Ok(Json(UrlView {
        url: s.idp.billing_portal(&caller, &tenant).await?,
        id: None,
    }))
}

/// The billing provider's webhook: the raw body and its `Stripe-Signature`
/// header, no admin key. 400 when the signature does not verify; 200
/// `{received: true, outcome}` for every verified delivery, including
/// duplicates, stale events, events of another subscription, ignored types
/// and unknown tenants.
#[utoipa::path(
    post, path = "/billing/webhook", tag = "billing",
    request_body(content = WebhookEventDoc, content_type = "application/json", description = "the provider's event, byte for byte"),
    params(("Stripe-Signature" = String, Header, description = "`t=...,v1=...`")),
    responses(
        (status = 200, description = "verified; `outcome` says what became of it", body = WebhookReply),
        (status = 400, description = "missing or bad signature", content_type = "application/problem+json", body = ProblemDoc),
        (status = 413, description = "larger than 1 MiB", content_type = "application/problem+json", body = ProblemDoc),
        (status = 422, description = "a signed body that is not an event", content_type = "application/problem+json", body = ProblemDoc),
        (status = 501, description = "billing is not configured", content_type = "application/problem+json", body = ProblemDoc),
        (status = 503, description = "a backend is unavailable; the provider retries later", content_type = "application/problem+json", body = ProblemDoc),
    )
)]
pub(crate) async fn webhook(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            s.metrics.webhook("invalid");
            return body_problem(&r, WEBHOOK_BODY_LIMIT).into_response();
        }
    };
    let Some(sig) = headers.get(SIGNATURE).and_then(|v| v.to_str().ok()) else {
        s.metrics.webhook("bad_signature");
        refused(&s, "no Stripe-Signature header");
        return Problem::bad_request("the Stripe-Signature header is required").into_response();
    };
    match s.idp.handle_billing_webhook(sig, &body, &meta).await {
        Ok(outcome) => {
            let outcome = match outcome {
                BillingOutcome::Applied => WebhookOutcome::Applied,
                BillingOutcome::Duplicate => WebhookOutcome::Duplicate,
                BillingOutcome::Stale => WebhookOutcome::Stale,
                BillingOutcome::OtherSubscription => WebhookOutcome::OtherSubscription,
                BillingOutcome::UnknownTenant => WebhookOutcome::UnknownTenant,
                _ => WebhookOutcome::Ignored,
            };
            s.metrics.webhook(outcome.as_str());
            (
                StatusCode::OK,
                Json(WebhookReply {
                    received: true,
                    outcome,
                }),
            )
                .into_response()
        }
        Err(Error::Unauthenticated) => {
            s.metrics.webhook("bad_signature");
            refused(&s, "the signature does not verify");
            Problem::new(StatusCode::BAD_REQUEST, "bad-signature", "Bad signature")
                .detail("the webhook signature does not verify")
                .into_response()
        }
        Err(e) => {
            s.metrics.webhook(match &e {
                Error::NotConfigured { .. } => "not_configured",
                Error::Invalid { .. } => "invalid",
                _ => "error",
            });
            if matches!(e, Error::NotConfigured { .. }) {
                refused(&s, "billing is not configured");
            }
            ApiError(e).into_response()
        }
    }
}

/// Logs a refused webhook delivery: anyone can send one, so at INFO and at
/// most one line a minute, with the number held back since the last line
/// (`sentryagent_billing_webhooks_total` counts every one).
fn refused(s: &AppState, reason: &'static str) {
    if let Some(held_back) = s.webhook_refusals.admit() {
        tracing::info!(reason, held_back, "billing webhook refused");
    }
}

//! [`StripeBilling`]: the [`BillingProvider`] on the Stripe HTTP API.
//!
//! Requests are form-encoded `POST`s, exactly as Stripe documents them, sent
//! with `reqwest` over rustls (ring). Every request carries
//! `Authorization: Bearer <secret key>`, `Stripe-Version` and an
//! `Idempotency-Key`:
//! - checkout: derived from the request's meaning, the SHA-256 of the form
//!   body and the UTC hour. Asking twice for the same tier within an hour
//!   (a double click, a retried request) returns the same Checkout Session
//!   instead of opening two;
//! - customer portal: random per call (portal sessions are short-lived and
//!   cheap), reused by the retries of that call;
//! - meter events: the SHA-256 of the form body, which holds the report's
//!   `identifier`; the same report always has the same key.
//!
//! Retries: 429, 5xx and network errors (and whatever Stripe marks with
//! `Stripe-Should-Retry: true`) are retried up to
//! [`RetryPolicy::max_attempts`](crate::RetryPolicy) with exponential
//! backoff and jitter, with the same body and the same `Idempotency-Key`, so
//! a retry never creates a second object or counts usage twice.
//!
//! Errors: Stripe's `{"error": {"type", "code", "message"}}` maps to the
//! core's meanings. 401 and 403 (a wrong or under-privileged key) become
//! `Unavailable` with a hint at the configuration and never the key or
//! Stripe's text about it; 429, 5xx and network failures become
//! `Unavailable`; 402, 409 and idempotency conflicts become `Conflict`; other
//! 4xx become `Invalid` (field `stripe`) with Stripe's message.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use sentryagent_core::{BillingEvent, BillingProvider, CheckoutSession, UsageReport};
use sentryagent_core::{Clock, Error, Result, SystemClock, Tenant, Tier, Timestamp};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::StripeConfig;
use crate::webhook;
use sentryagent_core::hex::encode as hex;

/// Largest Stripe response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Longest Stripe error message passed on.
const MAX_MESSAGE_CHARS: usize = 300;

/// Width of the time bucket of checkout idempotency keys.
const CHECKOUT_KEY_BUCKET_SECS: i64 = 3600;

/// The Stripe billing provider. Cheap to clone; clones share the HTTP client.
#[derive(Clone)]
pub struct StripeBilling {
    inner: Arc<Inner>,
}

struct Inner {
    config: StripeConfig,
    http: reqwest::Client,
    auth: HeaderValue,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StripeBilling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeBilling")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl StripeBilling {
    /// A provider for `config` (validated), on the system clock.
    pub fn new(config: StripeConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A provider whose checkout idempotency buckets read `clock`.
    pub fn with_clock(config: StripeConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let http = http_client(config.retry.request_timeout)?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.secret_key)).map_err(|_| {
                Error::NotConfigured {
                    message: "the Stripe secret key is not a valid header value".into(),
                }
            })?;
        auth.set_sensitive(true);
        Ok(StripeBilling {
            inner: Arc::new(Inner {
                config,
                http,
                auth,
                clock,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StripeConfig {
        &self.inner.config
    }

    /// Sends each report as one meter event (bounded concurrency, retried);
    /// one result per report, in order. Zero values are not sent (nothing
    /// to count) and succeed.
    pub async fn send_meter_events(&self, reports: &[UsageReport]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = reports.iter().map(|_| None).collect();
        let mut tasks = tokio::task::JoinSet::new();
        let mut index_of = std::collections::HashMap::new();
        let mut next = 0;
        let limit = self.inner.config.retry.concurrency.max(1);
        while next < reports.len() || !tasks.is_empty() {
            while next < reports.len() && tasks.len() < limit {
                let report = reports[next].clone();
                let inner = self.inner.clone();
                let handle = tasks.spawn(async move { inner.send_meter_event(&report).await });
                index_of.insert(handle.id(), next);
                next += 1;
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (id, result) = match joined {
                Ok((id, r)) => (id, r),
                Err(e) => (
                    e.id(),
                    Err(Error::Internal {
                        message: format!("meter event task failed: {e}"),
                        source: None,
                    }),
                ),
            };
            if let Some(i) = index_of.remove(&id) {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::Internal {
                        message: "meter event task lost".into(),
                        source: None,
                    })
                })
            })
            .collect()
    }
}

/// An HTTP client on rustls with the ring provider. reqwest is built without
/// a bundled TLS provider, so ring is installed as the process default once
/// (a provider the host installed before stays).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("sentryagent-billing/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("build the HTTP client", e))
}

fn validate_report(r: &UsageReport) -> Result<()> {
    let field_ok = |s: &str| (1..=100).contains(&s.len()) && !s.chars().any(char::is_control);
    if !field_ok(&r.identifier) {
        return Err(Error::invalid("identifier", "1 to 100 characters"));
    }
    if !field_ok(&r.event_name) {
        return Err(Error::invalid("event_name", "1 to 100 characters"));
    }
    if !field_ok(&r.customer_id) {
        return Err(Error::invalid("customer_id", "a Stripe customer id"));
    }
    Ok(())
}

type Form = Vec<(&'static str, String)>;

fn encode(form: &Form) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

fn body_digest(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes())[..20])
}

impl Inner {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn send_meter_event(&self, r: &UsageReport) -> Result<()> {
        validate_report(r)?;
        if r.value == 0 {
            return Ok(());
        }
        let form: Form = vec![
            ("event_name", r.event_name.clone()),
            ("payload[stripe_customer_id]", r.customer_id.clone()),
            ("payload[value]", r.value.to_string()),
            ("identifier", r.identifier.clone()),
            ("timestamp", r.timestamp.unix_secs().to_string()),
        ];
        let body = encode(&form);
        let key = format!("sa-meter-{}", body_digest(&body));
        self.post("/v1/billing/meter_events", body, &key).await?;
        Ok(())
    }

    /// POSTs a form with retries; the parsed JSON of a 2xx answer.
    async fn post(&self, path: &str, body: String, idempotency_key: &str) -> Result<Value> {
        let url = format!("{}{path}", self.config.base());
        let retry = &self.config.retry;
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(&url)
                .header(AUTHORIZATION, self.auth.clone())
                .header("Stripe-Version", self.config.api_version.as_str())
                .header("Idempotency-Key", idempotency_key)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let should_retry = resp
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.eq_ignore_ascii_case("true"));
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match read_capped(resp).await {
                        Ok(bytes) if (200..300).contains(&status) => {
                            return serde_json::from_slice(&bytes).map_err(|e| {
                                Error::Unavailable {
                                    message: format!(
                                        "Stripe answered {path} with a body that is not JSON"
                                    ),
                                    source: Some(Box::new(e)),
                                }
                            });
                        }
                        Ok(bytes) => {
                            let retryable = should_retry.unwrap_or(status == 429 || status >= 500);
                            Failure {
                                error: self.map_error(status, &bytes),
                                retryable,
                                retry_after,
                            }
                        }
                        Err(e) => Failure {
                            error: Error::unavailable(
                                format!("reading Stripe's answer to {path} failed"),
                                e,
                            ),
                            retryable: true,
                            retry_after: None,
                        },
                    }
                }
                Err(e) => Failure {
                    error: Error::unavailable(
                        format!("Stripe is unreachable ({path}): {}", network_kind(&e)),
                        e.without_url(),
                    ),
                    retryable: true,
                    retry_after: None,
                },
            };
            let Failure {
                error,
                retryable,
                retry_after,
            } = failure;
            if !retryable || attempt >= retry.max_attempts {
                return Err(error);
            }
            tokio::time::sleep(backoff(retry, attempt, retry_after)).await;
            attempt += 1;
        }
    }

    fn map_error(&self, status: u16, body: &[u8]) -> Error {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let kind = field("type");
        let code = field("code");
        let message = self.clean(&field("message"));
        let detail = match (code.is_empty(), message.is_empty()) {
            (true, true) => format!("HTTP {status}"),
            (true, false) => format!("HTTP {status}: {message}"),
            (false, true) => format!("HTTP {status}, {code}"),
            (false, false) => format!("HTTP {status}, {code}: {message}"),
        };
        match status {
            401 => Error::Unavailable {
                message: "Stripe refused the API key (HTTP 401); check SENTRYAGENT_STRIPE_SECRET_KEY"
                    .into(),
                source: None,
            },
            403 => Error::Unavailable {
                message: "the Stripe API key lacks a permission this request needs (HTTP 403); check the key's permissions".into(),
                source: None,
            },
            429 => Error::Unavailable {
                message: format!("Stripe is rate limiting requests ({detail})"),
                source: None,
            },
            s if s >= 500 => Error::Unavailable {
                message: format!("Stripe failed ({detail})"),
                source: None,
            },
            402 | 409 => Error::conflict(format!("Stripe refused the request ({detail})")),
            _ if kind == "idempotency_error" => {
                Error::conflict(format!("Stripe refused the request ({detail})"))
            }
            s if (400..500).contains(&s) => {
                Error::invalid("stripe", format!("Stripe refused the request ({detail})"))
            }
            _ => Error::Unavailable {
                message: format!("unexpected answer from Stripe ({detail})"),
                source: None,
            },
        }
    }

    /// A Stripe message fit to pass on: bounded, one line, never the key.
    fn clean(&self, message: &str) -> String {
        let m: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_MESSAGE_CHARS)
            .collect();
        m.replace(&self.config.secret_key, "[redacted]")
    }
}

/// A failed attempt.
struct Failure {
    error: Error,
    retryable: bool,
    retry_after: Option<Duration>,
}

fn network_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

async fn read_capped(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(out)
}

/// Delay before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped, with
/// jitter to 50-100 %; a `Retry-After` (capped) wins when longer.
fn backoff(
    policy: &crate::config::RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_delay);
    let jitter = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0;
    let delay = exp.mul_f64(0.5 + jitter / 2.0);
    match retry_after {
        Some(r) => delay.max(r.min(policy.max_delay)),
        None => delay,
    }
}

fn session_field(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::Unavailable {
            message: format!("Stripe's answer has no {key}"),
            source: None,
        })
}

#[async_trait]
impl BillingProvider for StripeBilling {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn checkout(&self, tenant: &Tenant, tier: Tier) -> Result<CheckoutSession> {
        let c = &self.inner.config;
        if tier == Tier::Free {
            return Err(Error::invalid(
                "tier",
                "checkout is for a paid tier (pro or enterprise)",
            ));
        }
        let price = c
            .price_ids
            .price_of(tier)
            .ok_or_else(|| Error::NotConfigured {
                message: format!(
                    "no Stripe price is configured for the {tier} tier ({})",
                    crate::config::env::PRICE_ENTERPRISE
                ),
            })?;
        let tenant_id = tenant.id.to_string();
        let mut form: Form = vec![
            ("mode", "subscription".into()),
            ("line_items[0][price]", price.to_owned()),
            ("line_items[0][quantity]", "1".into()),
            ("client_reference_id", tenant_id.clone()),
            ("metadata[tenant_id]", tenant_id.clone()),
            ("metadata[target_tier]", tier.to_string()),
            ("subscription_data[metadata][tenant_id]", tenant_id),
            ("subscription_data[metadata][target_tier]", tier.to_string()),
            ("success_url", c.success_url.clone()),
            ("cancel_url", c.cancel_url.clone()),
        ];
        if let Some(customer) = &tenant.billing.customer_id {
            form.push(("customer", customer.clone()));
        }
        let body = encode(&form);
        let bucket = self
            .inner
            .now()
            .unix_secs()
            .div_euclid(CHECKOUT_KEY_BUCKET_SECS);
        let key = format!("sa-checkout-{}", body_digest(&format!("{bucket}\n{body}")));
        let session = self.inner.post("/v1/checkout/sessions", body, &key).await?;
        Ok(CheckoutSession {
            id: session_field(&session, "id")?,
            url: session_field(&session, "url")?,
        })
    }

    async fn portal(&self, tenant: &Tenant) -> Result<String> {
        let Some(customer) = &tenant.billing.customer_id else {
            return Err(Error::conflict(
                "the tenant has no billing account yet; upgrade first",
            ));
        };
        let mut form: Form = vec![("customer", customer.clone())];
        if let Some(url) = &self.inner.config.portal_return_url {
            form.push(("return_url", url.clone()));
        }
        let key = format!("sa-portal-{}", uuid::Uuid::new_v4().simple());
        let session = self
            .inner
            .post("/v1/billing_portal/sessions", encode(&form), &key)
            .await?;
        session_field(&session, "url")
    }

    fn parse_webhook(
        &self,
        signature_header: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<BillingEvent>> {
        let c = &self.inner.config;
        webhook::verify_signature(
            signature_header,
            body,
            &c.webhook_secrets,
            now,
            c.webhook_tolerance,
        )
        .map_err(|_| Error::Unauthenticated)?;
        crate::event::parse_event(body, &c.price_ids)
    }

    /// Sends every report (see [`StripeBilling::send_meter_events`]); all
    /// are validated first. On error, some reports may have been recorded:
    /// sending them again is safe, Stripe deduplicates by `identifier`.
    async fn report_usage(&self, reports: &[UsageReport]) -> Result<()> {
        for r in reports {
            validate_report(r)?;
        }
        let results = self.send_meter_events(reports).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        match results.into_iter().find_map(std::result::Result::err) {
            None => Ok(()),
            Some(Error::Unavailable { message, source }) => Err(Error::Unavailable {
                message: format!(
                    "{failed} of {} meter events not recorded: {message}",
                    reports.len()
                ),
                source,
            }),
            Some(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryPolicy;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            let d = backoff(&p, attempt, None);
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(1));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn forms_are_encoded_as_stripe_expects() {
        let form: Form = vec![
            ("line_items[0][price]", "price_1".into()),
            (
                "success_url",
                "https://x.example/done?s={CHECKOUT_SESSION_ID}&a=b c".into(),
            ),
        ];
        assert_eq!(
            encode(&form),
            "line_items%5B0%5D%5Bprice%5D=price_1&success_url=https%3A%2F%2Fx.example%2Fdone%3Fs%3D%7BCHECKOUT_SESSION_ID%7D%26a%3Db+c"
        );
    }
}

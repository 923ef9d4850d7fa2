//! [`StripeConfig`]: the Stripe account settings, from code or from the
//! environment.

use std::fmt;
use std::time::Duration;

use sentryagent_core::{Error, Result, Tier};

/// Default Stripe API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Stripe API version sent as `Stripe-Version` by default. Webhook payloads
/// follow the API version of the webhook endpoint instead (chosen when the
/// endpoint is created); the event parser reads both the shapes before and
/// after this version.
pub const DEFAULT_API_VERSION: &str = "2025-03-31.basil";

/// Default Billing Meter event name for API calls.
pub const DEFAULT_METER_API_CALLS: &str = "sentryagent_api_calls";

/// Default Billing Meter event name for token issuances.
pub const DEFAULT_METER_TOKEN_ISSUANCES: &str = "sentryagent_token_issuances";

/// The environment variables [`StripeConfig::from_env`] reads.
pub mod env {
    /// Secret API key (`sk_live_...`, `sk_test_...` or a restricted `rk_...`).
    /// Billing is off when unset or empty.
    pub const SECRET_KEY: &str = "SENTRYAGENT_STRIPE_SECRET_KEY";
    /// Webhook signing secret(s), `whsec_...`; comma-separated to accept
    /// several while rotating.
    pub const WEBHOOK_SECRET: &str = "SENTRYAGENT_STRIPE_WEBHOOK_SECRET";
    /// Price id (`price_...`) of the pro tier.
    pub const PRICE_PRO: &str = "SENTRYAGENT_STRIPE_PRICE_PRO";
    /// Price id of the enterprise tier (optional: without it, enterprise is
    /// not sold through Checkout).
    pub const PRICE_ENTERPRISE: &str = "SENTRYAGENT_STRIPE_PRICE_ENTERPRISE";
    /// Where Checkout sends the user after paying.
    pub const SUCCESS_URL: &str = "SENTRYAGENT_STRIPE_SUCCESS_URL";
    /// Where Checkout sends the user who backs out.
    pub const CANCEL_URL: &str = "SENTRYAGENT_STRIPE_CANCEL_URL";
    /// Where the Customer Portal's "return" link goes (optional: without it,
    /// the portal configuration's default return URL applies).
    pub const PORTAL_RETURN_URL: &str = "SENTRYAGENT_STRIPE_PORTAL_RETURN_URL";
    /// API base URL (default `https://api.stripe.com`).
    pub const API_BASE: &str = "SENTRYAGENT_STRIPE_API_BASE";
    /// `Stripe-Version` header (default [`DEFAULT_API_VERSION`](super::DEFAULT_API_VERSION)).
    pub const API_VERSION: &str = "SENTRYAGENT_STRIPE_API_VERSION";
    /// Meter event name for API calls (default `sentryagent_api_calls`).
    pub const METER_API_CALLS: &str = "SENTRYAGENT_STRIPE_METER_API_CALLS";
    /// Meter event name for token issuances (default
    /// `sentryagent_token_issuances`).
    pub const METER_TOKEN_ISSUANCES: &str = "SENTRYAGENT_STRIPE_METER_TOKEN_ISSUANCES";
}

/// Price ids of the paid tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceIds {
    /// Price of the pro tier (`price_...`).
    pub pro: String,
    /// Price of the enterprise tier, when sold through Checkout.
    pub enterprise: Option<String>,
}

impl PriceIds {
    /// The price of a paid tier (`None` for free, or an unpriced enterprise).
    pub fn price_of(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Free => None,
            Tier::Pro => Some(&self.pro),
            Tier::Enterprise => self.enterprise.as_deref(),
        }
    }

    /// The tier a price id stands for (reverse map).
    pub fn tier_of(&self, price: &str) -> Option<Tier> {
        if price == self.pro {
            Some(Tier::Pro)
        } else if self.enterprise.as_deref() == Some(price) {
            Some(Tier::Enterprise)
        } else {
            None
        }
    }
}

/// Billing Meter event names (`event_name` of meter events; each must match
/// a meter created in the Stripe account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEventNames {
    /// API calls of a tenant.
    pub api_calls: String,
    /// Access tokens issued to a tenant's agents.
    pub token_issuances: String,
}

impl Default for MeterEventNames {
    fn default() -> Self {
        MeterEventNames {
            api_calls: DEFAULT_METER_API_CALLS.into(),
            token_issuances: DEFAULT_METER_TOKEN_ISSUANCES.into(),
        }
    }
}

/// How requests to Stripe are retried and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1). Default 4.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each next one, with jitter
    /// (a random 50 to 100 % of it). Default 500 ms.
    pub base_delay: Duration,
    /// Largest delay between attempts (also caps `Retry-After`). Default 8 s.
    pub max_delay: Duration,
    /// Timeout of one attempt. Default 30 s.
    pub request_timeout: Duration,
    /// Meter events in flight at once in [`report_usage`](sentryagent_core::BillingProvider::report_usage).
    /// Default 8.
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            request_timeout: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// Settings of a Stripe account. `Debug` never shows the secret key or the
/// webhook secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeConfig {
    /// Secret API key, sent as `Authorization: Bearer`.
    pub secret_key: String,
    /// Webhook signing secrets (`whsec_...`); a signature under any passes.
    pub webhook_secrets: Vec<String>,
    /// Price ids of the paid tiers.
    pub price_ids: PriceIds,
    /// Checkout `success_url` (may contain `{CHECKOUT_SESSION_ID}`).
    pub success_url: String,
    /// Checkout `cancel_url`.
    pub cancel_url: String,
    /// Customer Portal `return_url`; omitted when `None`.
    pub portal_return_url: Option<String>,
    /// API base URL, without a trailing slash.
    pub api_base: String,
    /// `Stripe-Version` header.
    pub api_version: String,
    /// Meter event names.
    pub meter_event_names: MeterEventNames,
    /// Tolerance of webhook timestamps. Default 300 s.
    pub webhook_tolerance: Duration,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &redact_key(&self.secret_key))
            .field(
                "webhook_secrets",
                &format_args!("[{} redacted]", self.webhook_secrets.len()),
            )
            .field("price_ids", &self.price_ids)
            .field("success_url", &self.success_url)
            .field("cancel_url", &self.cancel_url)
            .field("portal_return_url", &self.portal_return_url)
            .field("api_base", &self.api_base)
            .field("api_version", &self.api_version)
            .field("meter_event_names", &self.meter_event_names)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Shows only the kind of a key (`sk_live_…`), never its secret part.
pub(crate) fn redact_key(key: &str) -> String {
    let kind = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
        .into_iter()
        .find(|p| key.starts_with(p))
        .unwrap_or("");
    format!("{kind}[redacted]")
}

impl StripeConfig {
    /// A configuration with defaults for everything but the account's own
    /// values.
    pub fn new(
        secret_key: impl Into<String>,
        webhook_secrets: Vec<String>,
        price_ids: PriceIds,
        success_url: impl Into<String>,
        cancel_url: impl Into<String>,
    ) -> Self {
        StripeConfig {
            secret_key: secret_key.into(),
            webhook_secrets,
            price_ids,
            success_url: success_url.into(),
            cancel_url: cancel_url.into(),
            portal_return_url: None,
            api_base: DEFAULT_API_BASE.into(),
            api_version: DEFAULT_API_VERSION.into(),
            meter_event_names: MeterEventNames::default(),
            webhook_tolerance: crate::webhook::DEFAULT_TOLERANCE,
            retry: RetryPolicy::default(),
        }
    }

    /// Reads the `SENTRYAGENT_STRIPE_*` variables ([`env`](mod@env)). `Ok(None)` when
    /// no secret key is set: billing is off. An error names every missing or
    /// malformed variable when the key is set but the rest is incomplete.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(secret_key) = get(env::SECRET_KEY) else {
            return Ok(None);
        };
        let mut problems = Vec::new();
        let webhook_secrets: Vec<String> = get(env::WEBHOOK_SECRET)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if webhook_secrets.is_empty() {
            problems.push(format!("{} is not set", env::WEBHOOK_SECRET));
        }
        let pro = get(env::PRICE_PRO).unwrap_or_else(|| {
            problems.push(format!("{} is not set", env::PRICE_PRO));
            String::new()
        });
        let success_url = get(env::SUCCESS_URL).unwrap_or_else(|| {
            problems.push(format!("{} is not set", env::SUCCESS_URL));
            String::new()
        });
        let cancel_url = get(env::CANCEL_URL).unwrap_or_else(|| {
            problems.push(format!("{} is not set", env::CANCEL_URL));
            String::new()
        });
        if !problems.is_empty() {
            return Err(Error::NotConfigured {
                message: format!(
                    "Stripe billing is partially configured ({} is set): {}",
                    env::SECRET_KEY,
                    problems.join("; ")
                ),
            });
        }
        let mut c = StripeConfig::new(
            secret_key,
            webhook_secrets,
            PriceIds {
                pro,
                enterprise: get(env::PRICE_ENTERPRISE),
            },
            success_url,
            cancel_url,
        );
        c.portal_return_url = get(env::PORTAL_RETURN_URL);
        if let Some(base) = get(env::API_BASE) {
            c.api_base = base;
        }
        if let Some(v) = get(env::API_VERSION) {
            c.api_version = v;
        }
        if let Some(v) = get(env::METER_API_CALLS) {
            c.meter_event_names.api_calls = v;
        }
        if let Some(v) = get(env::METER_TOKEN_ISSUANCES) {
            c.meter_event_names.token_issuances = v;
        }
        c.validate()?;
        Ok(Some(c))
    }

    /// Checks every value; the error names each bad one (never showing a
    /// secret).
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let key_ok = self.secret_key.len() <= 512
            && self.secret_key.len() > 8
            && self.secret_key.bytes().all(|b| b.is_ascii_graphic());
        if !key_ok {
            problems.push("the secret key must be printable ASCII without spaces".to_owned());
        }
        if self.webhook_secrets.is_empty() {
            problems.push("at least one webhook signing secret is needed".to_owned());
        }
        if self.webhook_secrets.iter().any(|s| {
            s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c == ',')
        }) {
            problems.push("a webhook signing secret is empty or malformed".to_owned());
        }
        let price_ok = |p: &str| {
            (1..=255).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !price_ok(&self.price_ids.pro) {
            problems.push(format!(
                "the pro price id {:?} is malformed",
                self.price_ids.pro
            ));
        }
        if let Some(e) = &self.price_ids.enterprise {
            if !price_ok(e) {
                problems.push(format!("the enterprise price id {e:?} is malformed"));
            }
            if *e == self.price_ids.pro {
                problems.push("pro and enterprise need different price ids".to_owned());
            }
        }
        for (name, url) in [
            ("success URL", Some(&self.success_url)),
            ("cancel URL", Some(&self.cancel_url)),
            ("portal return URL", self.portal_return_url.as_ref()),
            ("API base", Some(&self.api_base)),
        ] {
            if let Some(url) = url
                && !is_http_url(url)
            {
                problems.push(format!("the {name} {url:?} is not an http(s) URL"));
            }
        }
        if self.api_version.is_empty()
            || self.api_version.len() > 64
            || !self
                .api_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            problems.push(format!(
                "the API version {:?} is malformed",
                self.api_version
            ));
        }
        for name in [
            &self.meter_event_names.api_calls,
            &self.meter_event_names.token_issuances,
        ] {
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                problems.push(format!("the meter event name {name:?} is malformed"));
            }
        }
        if self.retry.max_attempts == 0 || self.retry.concurrency == 0 {
            problems.push("retry attempts and concurrency must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::NotConfigured {
                message: format!("Stripe billing settings: {}", problems.join("; ")),
            })
        }
    }

    /// The API base without a trailing slash.
    #[cfg_attr(not(feature = "stripe"), allow(dead_code))]
    pub(crate) fn base(&self) -> &str {
        self.api_base.trim_end_matches('/')
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        (env::SECRET_KEY, "sk_test_abcdefghijkl"),
        (env::WEBHOOK_SECRET, "whsec_one, whsec_two"),
        (env::PRICE_PRO, "price_pro"),
        (env::PRICE_ENTERPRISE, "price_ent"),
        (
            env::SUCCESS_URL,
            "https://app.example/billing/done?s={CHECKOUT_SESSION_ID}",
        ),
        (env::CANCEL_URL, "https://app.example/billing"),
    ];

    #[test]
    fn unset_key_means_billing_off() {
        assert_eq!(StripeConfig::from_lookup(lookup(&[])).unwrap(), None);
        assert_eq!(
            StripeConfig::from_lookup(lookup(&[(env::SECRET_KEY, "  ")])).unwrap(),
            None
        );
    }

    #[test]
    fn full_settings_with_defaults() {
        let c = StripeConfig::from_lookup(lookup(FULL)).unwrap().unwrap();
        assert_eq!(c.webhook_secrets, ["whsec_one", "whsec_two"]);
        assert_eq!(c.price_ids.tier_of("price_ent"), Some(Tier::Enterprise));
        assert_eq!(c.price_ids.tier_of("price_pro"), Some(Tier::Pro));
        assert_eq!(c.price_ids.tier_of("price_x"), None);
        assert_eq!(c.price_ids.price_of(Tier::Free), None);
        assert_eq!(c.api_base, DEFAULT_API_BASE);
        assert_eq!(c.api_version, DEFAULT_API_VERSION);
        assert_eq!(c.portal_return_url, None);
        assert_eq!(c.meter_event_names, MeterEventNames::default());
    }

    #[test]
    fn overrides() {
        let mut vars = FULL.to_vec();
        vars.extend([
            (env::API_BASE, "http://127.0.0.1:9999/"),
            (env::API_VERSION, "2024-06-20"),
            (env::PORTAL_RETURN_URL, "https://app.example/settings"),
            (env::METER_API_CALLS, "calls"),
            (env::METER_TOKEN_ISSUANCES, "tokens"),
        ]);
        let c = StripeConfig::from_lookup(lookup(&vars)).unwrap().unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:9999");
        assert_eq!(c.api_version, "2024-06-20");
        assert_eq!(
            c.portal_return_url.as_deref(),
            Some("https://app.example/settings")
        );
        assert_eq!(c.meter_event_names.api_calls, "calls");
        assert_eq!(c.meter_event_names.token_issuances, "tokens");
    }

    #[test]
    fn partial_settings_name_what_is_missing() {
        let err = StripeConfig::from_lookup(lookup(&[(env::SECRET_KEY, "sk_test_abcdefghijkl")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::NotConfigured { .. }));
        for v in [
            env::WEBHOOK_SECRET,
            env::PRICE_PRO,
            env::SUCCESS_URL,
            env::CANCEL_URL,
        ] {
            assert!(msg.contains(v), "{msg}");
        }
        assert!(!msg.contains("abcdefghijkl"), "{msg}");
    }

    #[test]
    fn malformed_values_are_refused() {
        let mut bad = FULL.to_vec();
        bad.retain(|(k, _)| *k != env::SUCCESS_URL);
        bad.push((env::SUCCESS_URL, "ftp://x"));
        let err = StripeConfig::from_lookup(lookup(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("success URL"), "{err}");
        let mut bad = FULL.to_vec();
        bad.retain(|(k, _)| *k != env::PRICE_ENTERPRISE);
        bad.push((env::PRICE_ENTERPRISE, "price_pro"));
        let err = StripeConfig::from_lookup(lookup(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("different price ids"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = StripeConfig::from_lookup(lookup(FULL)).unwrap().unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("abcdefghijkl"), "{d}");
        assert!(!d.contains("whsec_one"), "{d}");
        assert!(d.contains("sk_test_[redacted]"), "{d}");
    }
}

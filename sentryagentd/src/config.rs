//! The server's settings: flags, each also an environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use sentryagent_billing::StripeConfig;
use sentryagent_billing::config::env as stripe_env;
use sentryagent_core::{SignupMode, Tier, TierLimits, TierTable};
use serde_json::Value;

/// The SentryAgent identity provider for AI agents, over HTTP.
///
/// Every flag is also an environment variable (shown as `env:`) and a
/// setting of the `--config` file; a flag wins over its variable, the
/// variable over the file. Pass secrets through the environment or the
/// file, not as flags: flags show in the process list.
#[derive(Debug, Clone, Parser)]
#[command(name = "sentryagentd", version, about, long_about = None)]
#[non_exhaustive]
pub struct Args {
    /// A TOML file of settings, keyed by the long flag names
    /// (`listen = "0.0.0.0:8080"`, `cors-origins = ["https://..."]`). A
    /// flag or environment variable wins over the file, the file over the
    /// default. Default: none.
    #[arg(long, env = "SENTRYAGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SENTRYAGENT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Public base URL (token `iss`; endpoint URLs derive from it).
    /// Default: `http://<listen>`.
    #[arg(long, env = "SENTRYAGENT_ISSUER")]
    pub issuer: Option<String>,
    /// Store URL: `sled://<dir>`, `postgres://...` or `memory://`.
    #[arg(
        long,
        env = "SENTRYAGENT_STORE",
        default_value = "sled://./sentryagent-data",
        hide_env_values = true
    )]
    pub store: String,
    /// Rate limiter URL: `redis://...`, `sled://<dir>` or `memory://`.
    /// Default: the store's URL.
    #[arg(long, env = "SENTRYAGENT_LIMITER", hide_env_values = true)]
    pub limiter: Option<String>,
    /// Usage meter URL: `redis://...`, `postgres://...`, `sled://<dir>` or
    /// `memory://`. Default: the store's URL.
    #[arg(long, env = "SENTRYAGENT_METER", hide_env_values = true)]
    pub meter: Option<String>,
    /// Makes this value an operator key at start (idempotent): `sa_ak_` and
    /// at least 32 of `A-Z a-z 0-9 - _`. Default: none (the first start
    /// creates one and prints it once).
    #[arg(long, env = "SENTRYAGENT_BOOTSTRAP_KEY", hide_env_values = true)]
    pub bootstrap_key: Option<String>,
    /// Who may create an account: `open` (anyone signs up at `POST
    /// /v1/signup` and owns a new free-tier tenant), `invite` (accounts come
    /// only from invitations) or `closed` (only an operator's invitations
    /// create accounts). Default: `open` when the issuer is a loopback URL,
    /// `closed` otherwise.
    #[arg(long, env = "SENTRYAGENT_SIGNUP", value_enum)]
    pub signup: Option<Signup>,
    /// Seconds between maintenance runs (usage flush, key rotation, purges).
    #[arg(long, env = "SENTRYAGENT_MAINTENANCE_SECS", default_value_t = 5)]
    pub maintenance_secs: u64,
    /// A JSON file with the tier table (`{"free": {"max_agents": 3, ...},
    /// "pro": {...}, "enterprise": {...}}`, the `TierLimits` field names,
    /// `null` = unlimited; a tier or field left out keeps its default).
    /// Default: the built-in table.
    #[arg(long, env = "SENTRYAGENT_TIERS")]
    pub tiers: Option<PathBuf>,
    /// Log format: `text` (colour only on a terminal, never with
    /// `NO_COLOR`) or `json` (one object per line).
    #[arg(long, env = "SENTRYAGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `warn`, `sentryagent_http=debug,info`...).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// Seconds to wait at shutdown for requests in flight before exiting
    /// anyway.
    #[arg(long, env = "SENTRYAGENT_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Seconds a client has to send a request's headers (slow clients are
    /// disconnected).
    #[arg(long, env = "SENTRYAGENT_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds to the response head of a request (503 beyond).
    #[arg(long, env = "SENTRYAGENT_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "SENTRYAGENT_BODY_LIMIT", default_value_t = sentryagent_http::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Largest request head (request line and headers) in bytes; at least
    /// 8192 (431 beyond, 414 for a URI that alone is too long).
    #[arg(long, env = "SENTRYAGENT_MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..=1024 * 1024))]
    pub max_header_bytes: u32,
    /// Origins whose pages may call the API cross-origin (CORS), comma
    /// separated (`https://console.example.com,http://localhost:5173`; `*`
    /// for any). Default: none. Discovery, the JWKS and the public
    /// marketplace are readable from any origin regardless.
    #[arg(long, env = "SENTRYAGENT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<sentryagent_http::CorsOrigin>,
    /// Live audit event streams a tenant may hold open at once (429
    /// beyond).
    #[arg(long, env = "SENTRYAGENT_MAX_AUDIT_STREAMS_PER_TENANT", default_value_t = sentryagent_http::DEFAULT_AUDIT_STREAMS_PER_TENANT)]
    pub max_audit_streams_per_tenant: usize,
    /// Live audit event streams open at once on this node, all tenants
    /// together (503 beyond).
    #[arg(long, env = "SENTRYAGENT_MAX_AUDIT_STREAMS", default_value_t = sentryagent_http::DEFAULT_AUDIT_STREAMS)]
    pub max_audit_streams: usize,
    /// Token exchange: allow plain HTTP (and loopback addresses) for issuers
    /// on a loopback host (`localhost`, `127.0.0.1`, `[::1]`). For
    /// development and tests only: issuers are fetched over HTTPS otherwise.
    #[arg(
        long,
        env = sentryagent_http::ALLOW_HTTP_LOOPBACK_ENV,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub federation_allow_http_loopback: bool,
    /// Token exchange: least seconds between two fetches of one issuer's
    /// keys (a token naming a key the cached set lacks, or after a failed
    /// fetch).
    #[arg(long, env = sentryagent_http::MIN_REFETCH_ENV, default_value_t = 60)]
    pub federation_jwks_min_refetch_seconds: u64,
    /// How often the console's Usage tab refreshes its figures, in seconds
    /// (at least 1).
    #[arg(
        long,
        env = "SENTRYAGENT_CONSOLE_USAGE_REFRESH_SECONDS",
        default_value_t = 60
    )]
    pub console_usage_refresh_seconds: u64,
    /// A bearer token `/metrics` requires (`Authorization: Bearer <token>`;
    /// 401 otherwise): 16 to 256 visible ASCII characters. Default: none,
    /// `/metrics` answers anyone who reaches the listener. Pass it through
    /// the environment or the config file, not as a flag.
    #[arg(long, env = "SENTRYAGENT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Checks the configuration (URLs, keys, tier file, Stripe settings,
    /// reachability of each backend), prints what is wrong and exits: 0
    /// when all is well, 1 otherwise.
    #[arg(long)]
    pub check_config: bool,
    /// Asks the server listening at `--listen` whether it is ready (`GET
    /// /health/ready`, on the loopback address when it listens on every
    /// interface), prints the answer and exits: 0 when ready, 1 otherwise.
    /// For container health checks: no HTTP client needed in the image.
    #[arg(long, conflicts_with = "check_config")]
    pub healthcheck: bool,

    /// Stripe secret key; with it (and the other Stripe settings) billing
    /// goes through Stripe. Default: none (billing off).
    #[arg(long, env = stripe_env::SECRET_KEY, hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe webhook signing secrets, comma separated. Default: none.
    #[arg(long, env = stripe_env::WEBHOOK_SECRET, hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Stripe price id of the pro tier. Default: none.
    #[arg(long, env = stripe_env::PRICE_PRO)]
    pub stripe_price_pro: Option<String>,
    /// Stripe price id of the enterprise tier. Default: none.
    #[arg(long, env = stripe_env::PRICE_ENTERPRISE)]
    pub stripe_price_enterprise: Option<String>,
    /// Where Checkout returns after a payment. Default: none.
    #[arg(long, env = stripe_env::SUCCESS_URL)]
    pub stripe_success_url: Option<String>,
    /// Where Checkout returns when cancelled. Default: none.
    #[arg(long, env = stripe_env::CANCEL_URL)]
    pub stripe_cancel_url: Option<String>,
    /// Where the Customer Portal returns. Default: the success URL.
    #[arg(long, env = stripe_env::PORTAL_RETURN_URL)]
    pub stripe_portal_return_url: Option<String>,
    /// Stripe API base URL.
    #[arg(long, env = stripe_env::API_BASE, default_value = sentryagent_billing::config::DEFAULT_API_BASE)]
    pub stripe_api_base: String,
    /// Stripe API version.
    #[arg(long, env = stripe_env::API_VERSION, default_value = sentryagent_billing::config::DEFAULT_API_VERSION)]
    pub stripe_api_version: String,
    /// Stripe meter event name of API calls.
    #[arg(long, env = stripe_env::METER_API_CALLS, default_value = sentryagent_billing::config::DEFAULT_METER_API_CALLS)]
    pub stripe_meter_api_calls: String,
    /// Stripe meter event name of token issuances.
    #[arg(long, env = stripe_env::METER_TOKEN_ISSUANCES, default_value = sentryagent_billing::config::DEFAULT_METER_TOKEN_ISSUANCES)]
    pub stripe_meter_token_issuances: String,
}

/// Who may create an account (`--signup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signup {
    /// Anyone signs up.
    Open,
    /// Accounts come from invitations.
    Invite,
    /// Only an operator's invitations create accounts.
    Closed,
}

impl From<Signup> for SignupMode {
    fn from(s: Signup) -> Self {
        match s {
            Signup::Open => SignupMode::Open,
            Signup::Invite => SignupMode::Invite,
            Signup::Closed => SignupMode::Closed,
        }
    }
}

/// The log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// The public base URL.
    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The sign-up mode: the flag's, or the default for the issuer.
    pub fn signup_mode(&self) -> SignupMode {
        match self.signup {
            Some(s) => s.into(),
            None => SignupMode::default_for(&self.issuer()),
        }
    }

    /// The Stripe configuration, `None` when billing is off.
    pub fn stripe(&self) -> Result<Option<StripeConfig>, String> {
        StripeConfig::from_lookup(|name| {
            match name {
                stripe_env::SECRET_KEY => self.stripe_secret_key.clone(),
                stripe_env::WEBHOOK_SECRET => self.stripe_webhook_secret.clone(),
                stripe_env::PRICE_PRO => self.stripe_price_pro.clone(),
                stripe_env::PRICE_ENTERPRISE => self.stripe_price_enterprise.clone(),
                stripe_env::SUCCESS_URL => self.stripe_success_url.clone(),
                stripe_env::CANCEL_URL => self.stripe_cancel_url.clone(),
                stripe_env::PORTAL_RETURN_URL => self.stripe_portal_return_url.clone(),
                stripe_env::API_BASE => Some(self.stripe_api_base.clone()),
                stripe_env::API_VERSION => Some(self.stripe_api_version.clone()),
                stripe_env::METER_API_CALLS => Some(self.stripe_meter_api_calls.clone()),
                stripe_env::METER_TOKEN_ISSUANCES => {
                    Some(self.stripe_meter_token_issuances.clone())
                }
                // A variable this server has no flag for: read it as is.
                other => std::env::var(other).ok(),
            }
        })
        .map_err(|e| e.to_string())
    }

    /// The settings of the issuer key fetcher (token exchange).
    pub fn jwks_fetcher(&self) -> sentryagent_http::JwksFetcherConfig {
        sentryagent_http::JwksFetcherConfig::default()
            .allow_http_loopback(self.federation_allow_http_loopback)
            .min_refetch(std::time::Duration::from_secs(
                self.federation_jwks_min_refetch_seconds,
            ))
    }

    /// The tier table: the file's, or the built-in one.
    pub fn tier_table(&self) -> Result<TierTable, String> {
        match &self.tiers {
            None => Ok(TierTable::default()),
            Some(path) => load_tiers(path),
        }
    }
}

/// Checks a public base URL: `http` or `https`, a host, no query, fragment
/// or trailing slash.
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    let Some((scheme, rest)) = issuer.split_once("://") else {
        return Err(format!("issuer {issuer:?} is not a URL"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("issuer {issuer:?} must use http or https"));
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(format!("issuer {issuer:?} needs a host (and no user info)"));
    }
    if issuer
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#')
    {
        return Err(format!(
            "issuer {issuer:?} must not hold spaces, a query or a fragment"
        ));
    }
    if issuer.ends_with('/') {
        return Err(format!("issuer {issuer:?} must not end with a slash"));
    }
    Ok(())
}

/// Checks the bootstrap key's form (the value itself is never printed).
pub fn check_bootstrap_key(key: &str) -> Result<(), String> {
    let rest = key.strip_prefix("sa_ak_").unwrap_or_default();
    let ok = key.starts_with("sa_ak_")
        && rest.len() >= 32
        && key.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("the bootstrap key must be sa_ak_ followed by at least 32 of A-Z a-z 0-9 - _".into())
    }
}

/// Checks the metrics token's form (the value itself is never printed).
pub fn check_metrics_token(token: &str) -> Result<(), String> {
    let ok = (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err("the metrics token must be 16 to 256 visible ASCII characters (no spaces)".into())
    }
}

/// Reads a tier table file. Each tier and each field is optional (left
/// out: the built-in value); `null` is unlimited.
pub fn load_tiers(path: &Path) -> Result<TierTable, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("tier file {shown}: cannot read: {e}"))?;
    parse_tiers(&text).map_err(|e| format!("tier file {shown}: {e}"))
}

/// Parses a tier table (see [`load_tiers`]).
pub fn parse_tiers(text: &str) -> Result<TierTable, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(tiers) = value else {
        return Err("expected an object with the keys free, pro, enterprise".into());
    };
    let mut table = TierTable::default();
    for (name, limits) in &tiers {
        let tier: Tier = name
            .parse()
            .map_err(|_| format!("unknown tier {name:?} (expected free, pro or enterprise)"))?;
        let Value::Object(fields) = limits else {
            return Err(format!("{name}: expected an object of limits"));
        };
        let target = match tier {
            Tier::Free => &mut table.free,
            Tier::Pro => &mut table.pro,
            Tier::Enterprise => &mut table.enterprise,
        };
        for (field, v) in fields {
            set_limit(target, field, v).map_err(|e| format!("{name}.{field}: {e}"))?;
        }
    }
    table.validate().map_err(|e| e.to_string())?;
    Ok(table)
}

fn set_limit(t: &mut TierLimits, field: &str, v: &Value) -> Result<(), String> {
    let u64_or_null = |v: &Value| -> Result<Option<u64>, String> {
        match v {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| "expected a whole number >= 0 or null (unlimited)".to_owned()),
        }
    };
    let u32_or_null = |v: &Value| -> Result<Option<u32>, String> {
        u64_or_null(v)?
            .map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("expected 1 to {} or null (unlimited)", u32::MAX))
            })
            .transpose()
    };
    match field {
        "max_agents" => t.max_agents = u64_or_null(v)?,
        "api_calls_per_day" => t.api_calls_per_day = u64_or_null(v)?,
        "token_issuances_per_month" => t.token_issuances_per_month = u64_or_null(v)?,
        "requests_per_minute" => t.requests_per_minute = u32_or_null(v)?.unwrap_or(u32::MAX),
        "client_requests_per_minute" => t.client_requests_per_minute = u32_or_null(v)?,
        _ => {
            return Err("unknown limit (expected max_agents, api_calls_per_day, \
                 token_issuances_per_month, requests_per_minute, client_requests_per_minute)"
                .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_merge_with_defaults_and_null_is_unlimited() {
        let t = parse_tiers(
            r#"{"free": {"max_agents": 5, "api_calls_per_day": null},
                "pro": {"requests_per_minute": null}}"#,
        )
        .unwrap();
        let d = TierTable::default();
        assert_eq!(t.free.max_agents, Some(5));
        assert_eq!(t.free.api_calls_per_day, None);
        assert_eq!(
            t.free.token_issuances_per_month,
            d.free.token_issuances_per_month
        );
        assert_eq!(t.pro.requests_per_minute, u32::MAX);
        assert_eq!(t.pro.max_agents, d.pro.max_agents);
        assert_eq!(t.enterprise, d.enterprise);
    }

    #[test]
    fn bad_tier_files_say_what_is_wrong() {
        for (text, needle) in [
            ("[]", "expected an object"),
            ("{", "not JSON"),
            (r#"{"gold": {}}"#, "unknown tier \"gold\""),
            (r#"{"free": 3}"#, "free: expected an object"),
            (
                r#"{"free": {"max_agent": 3}}"#,
                "free.max_agent: unknown limit",
            ),
            (
                r#"{"pro": {"max_agents": -1}}"#,
                "pro.max_agents: expected a whole number",
            ),
            (
                r#"{"pro": {"max_agents": "3"}}"#,
                "pro.max_agents: expected a whole number",
            ),
            (
                r#"{"free": {"requests_per_minute": 0}}"#,
                "free.requests_per_minute: expected 1",
            ),
            (
                r#"{"free": {"client_requests_per_minute": 4294967296}}"#,
                "free.client_requests_per_minute: expected 1",
            ),
        ] {
            let e = parse_tiers(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn signup_defaults_to_open_only_on_a_loopback_issuer() {
        use clap::Parser as _;
        let args = |extra: &[&str]| {
            let mut argv = vec!["sentryagentd"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap()
        };
        assert_eq!(args(&[]).signup_mode(), SignupMode::Open);
        assert_eq!(
            args(&["--issuer", "https://idp.example"]).signup_mode(),
            SignupMode::Closed
        );
        assert_eq!(
            args(&["--issuer", "https://idp.example", "--signup", "open"]).signup_mode(),
            SignupMode::Open
        );
        assert_eq!(
            args(&["--signup", "invite"]).signup_mode(),
            SignupMode::Invite
        );
        assert!(Args::try_parse_from(["sentryagentd", "--signup", "maybe"]).is_err());
    }

    #[test]
    fn issuer_and_bootstrap_key_checks() {
        assert!(check_issuer("https://idp.example/base").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        for bad in [
            "idp.example",
            "ftp://idp.example",
            "https://",
            "https://idp.example/",
            "https://idp.example?x=1",
            "https://u:p@idp.example",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
        assert!(check_bootstrap_key(&format!("sa_ak_{}", "a".repeat(32))).is_ok());
        assert!(check_bootstrap_key(&format!("sa_ak_{}", "a".repeat(31))).is_err());
        assert!(check_bootstrap_key(&format!("sa_ak_{}!", "a".repeat(32))).is_err());
        assert!(check_bootstrap_key(&format!("xx_ak_{}", "a".repeat(32))).is_err());
        assert!(check_metrics_token("0123456789abcdef").is_ok());
        assert!(check_metrics_token(&"x".repeat(256)).is_ok());
        for bad in ["short", "0123456789 abcdef", "0123456789abcdé!", ""] {
            assert!(check_metrics_token(bad).is_err(), "{bad}");
        }
        assert!(check_metrics_token(&"x".repeat(257)).is_err());
    }
}

//! [`RedisOptions`]: where Redis is, the key prefix, timeouts, the rate
//! limiter's failure policy and the usage meter's retention.

use std::time::Duration;

use sentryagent_core::{Error, Result};

use crate::url_params::{self, Params};

/// What the rate limiter answers while Redis is unreachable (or failing).
///
/// Either way the failure is counted and [`health`](super::RedisRateLimiter::health)
/// reports it, and the server keeps serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit the request: the decision is the one a fresh key would get
    /// (`allowed`, `remaining = burst - cost`). Rate limits are not enforced
    /// until Redis answers again. The default: an outage of the limiter
    /// does not become an outage of token issuance.
    #[default]
    Open,
    /// Refuse with [`Error::Unavailable`] (HTTP 503 with the adapter), not
    /// with a refusal decision: the caller is not over its limit, the limiter
    /// cannot tell, and a `Retry-After` from a refusal would be made up.
    Closed,
}

impl FailurePolicy {
    /// `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Open => "open",
            FailurePolicy::Closed => "closed",
        }
    }
}

impl std::str::FromStr for FailurePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(FailurePolicy::Open),
            "closed" => Ok(FailurePolicy::Closed),
            _ => Err(Error::invalid(
                "url",
                "failure_policy must be open or closed",
            )),
        }
    }
}

/// How long the usage meter keeps its Redis keys, counted from the key's
/// last write (each write renews it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRetention {
    /// Hour buckets (the hourly series, daily views and heatmaps): 35 days,
    /// so that a 28-day heatmap and a month of daily counts are complete.
    pub hours: Duration,
    /// Day buckets (daily API-call quotas): 400 days.
    pub days: Duration,
    /// Month buckets, per-agent month tables and active-agent sets
    /// (monthly token quotas, billing): 3 years (1096 days).
    pub months: Duration,
    /// Idempotency keys of applied batches: 7 days. A batch retried after
    /// its key expired would count again; the core retries a failed flush
    /// on its next flush, seconds later.
    pub batch_keys: Duration,
}

impl Default for UsageRetention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        UsageRetention {
            hours: Duration::from_secs(35 * DAY),
            days: Duration::from_secs(400 * DAY),
            months: Duration::from_secs(1096 * DAY),
            batch_keys: Duration::from_secs(7 * DAY),
        }
    }
}

/// Settings of the Redis backend.
///
/// Built from a URL ([`from_url`](Self::from_url)), where these query
/// parameters are read (and removed before the URL reaches the driver):
///
/// | parameter | field | default |
/// |---|---|---|
/// | `prefix` | [`key_prefix`](Self::key_prefix) | `sa:` |
/// | `failure_policy` | [`failure_policy`](Self::failure_policy) (`open`, `closed`) | `open` |
/// | `connect_timeout` | [`connect_timeout`](Self::connect_timeout) | `1s` |
/// | `response_timeout` | [`response_timeout`](Self::response_timeout) | `1s` |
/// | `failure_cooldown` | [`failure_cooldown`](Self::failure_cooldown) | `1s` |
///
/// Durations are an integer with a unit (`ms`, `s`, `m`, `h`). Retention of
/// usage keys is set in code ([`retention`](Self::retention)).
///
/// ```
/// use sentryagent_storage::redis::{FailurePolicy, RedisOptions};
///
/// let o = RedisOptions::from_url("redis://cache:6379/2?prefix=idp:&failure_policy=closed")?;
/// assert_eq!(o.url, "redis://cache:6379/2");
/// assert_eq!(o.key_prefix, "idp:");
/// assert_eq!(o.failure_policy, FailurePolicy::Closed);
/// # Ok::<(), sentryagent_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The connection URL given to the driver (`redis://`, `redis+unix://`
    /// or `unix://`), without the parameters above; or a
    /// `redis+cluster://host:port,host:port` URL, which selects Redis
    /// Cluster mode (see [`cluster_nodes`](Self::cluster_nodes)).
    pub url: String,
    /// Starts every key (inside its hash tag, see the module docs), so that
    /// several deployments can share a Redis. At most 64 bytes, no `{`, `}`
    /// or whitespace.
    pub key_prefix: String,
    /// The rate limiter's answer while Redis fails.
    pub failure_policy: FailurePolicy,
    /// Longest wait for a connection to Redis.
    pub connect_timeout: Duration,
    /// Longest wait for a reply.
    pub response_timeout: Duration,
    /// After a failed call, the rate limiter applies its failure policy at
    /// once, without calling Redis, for this long (so an outage does not add
    /// a connection timeout to every request). Zero calls Redis every time.
    pub failure_cooldown: Duration,
    /// Retention of the usage meter's keys.
    pub retention: UsageRetention,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &url_params::redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("failure_policy", &self.failure_policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("failure_cooldown", &self.failure_cooldown)
            .field("retention", &self.retention)
            .finish()
    }
}

impl RedisOptions {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "sa:";

    /// Defaults for a connection URL (used as is: no parameter is read).
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            key_prefix: Self::DEFAULT_PREFIX.into(),
            failure_policy: FailurePolicy::Open,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            failure_cooldown: Duration::from_secs(1),
            retention: UsageRetention::default(),
        }
    }

    /// Parses a `redis://` URL and the parameters in its query (see the type
    /// docs); bad values are [`Error::Invalid`] (field `"url"`).
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(
            scheme,
            Some("redis" | "redis+unix" | "unix" | "redis+cluster")
        ) {
            return Err(Error::invalid(
                "url",
                "expected a redis://, redis+cluster://, redis+unix:// or unix:// URL",
            ));
        }
        let mut params = Params::split(url)?;
        let mut o = RedisOptions::new(String::new());
        if let Some(v) = params.take("prefix")? {
            o.key_prefix = v;
        }
        if let Some(v) = params.take("failure_policy")? {
            o.failure_policy = v.parse()?;
        }
        if let Some(v) = params.take("connect_timeout")? {
            o.connect_timeout = url_params::parse_duration("connect_timeout", &v)?;
        }
        if let Some(v) = params.take("response_timeout")? {
            o.response_timeout = url_params::parse_duration("response_timeout", &v)?;
        }
        if let Some(v) = params.take("failure_cooldown")? {
            o.failure_cooldown = url_params::parse_duration("failure_cooldown", &v)?;
        }
        o.url = params.rest();
        o.validate()?;
        Ok(o)
    }

    /// The scheme that selects Redis Cluster mode.
    pub const CLUSTER_SCHEME: &'static str = "redis+cluster://";

    /// For a `redis+cluster://[user:password@]host:port,host:port[?params]`
    /// URL, the `redis://` URL of each seed node (each with the user, the
    /// password and the remaining query parameters); `None` for any other
    /// URL. The client learns the other nodes and the slot map from the
    /// seeds. A database number is refused by [`validate`](Self::validate):
    /// Redis Cluster has only database 0.
    pub fn cluster_nodes(&self) -> Option<Vec<String>> {
        let rest = self.url.strip_prefix(Self::CLUSTER_SCHEME)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, format!("?{q}")),
            None => (rest, String::new()),
        };
        let (authority, _path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), authority),
        };
        Some(
            hosts
                .split(',')
                .map(|host| format!("redis://{userinfo}{host}{query}"))
                .collect(),
        )
    }

    /// The same options with another key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The same options with another failure policy.
    #[must_use]
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Checks the prefix, the timeouts and the retention.
    pub fn validate(&self) -> Result<()> {
        let p = &self.key_prefix;
        if p.len() > 64 || p.contains(['{', '}']) || p.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "url",
                "prefix: at most 64 bytes, without braces or spaces",
            ));
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(Error::invalid("url", "timeouts must be more than zero"));
        }
        if let Some(rest) = self.url.strip_prefix(Self::CLUSTER_SCHEME) {
            let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if hosts.split(',').any(|h| h.trim().is_empty()) {
                return Err(Error::invalid(
                    "url",
                    "redis+cluster:// needs host:port seed nodes separated by commas",
                ));
            }
            if !matches!(path, "" | "0") {
                return Err(Error::invalid("url", "Redis Cluster has only database 0"));
            }
        }
        let r = &self.retention;
        for d in [r.hours, r.days, r.months, r.batch_keys] {
            if d < Duration::from_secs(1) {
                return Err(Error::invalid("retention", "at least one second"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_and_removed() {
        let o = RedisOptions::from_url(
            "redis://:pw@h:1/3?prefix=x%3Ay:&connect_timeout=250ms&response_timeout=2s&failure_cooldown=0&protocol=resp2",
        )
        .unwrap();
        assert_eq!(o.url, "redis://:pw@h:1/3?protocol=resp2");
        assert_eq!(o.key_prefix, "x:y:");
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.response_timeout, Duration::from_secs(2));
        assert_eq!(o.failure_cooldown, Duration::ZERO);
        assert_eq!(o.failure_policy, FailurePolicy::Open);
        assert!(!format!("{o:?}").contains("pw"));
        assert_eq!(
            RedisOptions::from_url("redis://h").unwrap(),
            RedisOptions::new("redis://h")
        );
    }

    #[test]
    fn cluster_urls_list_their_seed_nodes() {
        let o = RedisOptions::from_url(
            "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001?prefix=idp:&protocol=resp3",
        )
        .unwrap();
        assert_eq!(o.key_prefix, "idp:");
        assert_eq!(
            o.cluster_nodes().unwrap(),
            [
                "redis://:pw@10.0.0.1:7000?protocol=resp3",
                "redis://:pw@10.0.0.2:7001?protocol=resp3"
            ]
        );
        assert!(!format!("{o:?}").contains("pw"));
        let one = RedisOptions::from_url("redis+cluster://h:7000/").unwrap();
        assert_eq!(one.cluster_nodes().unwrap(), ["redis://h:7000"]);
        assert_eq!(RedisOptions::new("redis://h").cluster_nodes(), None);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "postgres://h",
            "redis://h?prefix=a{b",
            "redis://h?prefix=a%20b",
            "redis://h?failure_policy=maybe",
            "redis://h?connect_timeout=0s",
            "redis://h?response_timeout=x",
            "redis+cluster://",
            "redis+cluster://h:1,,h:2",
            "redis+cluster://h:1/3",
        ] {
            assert!(
                matches!(RedisOptions::from_url(bad), Err(Error::Invalid { .. })),
                "{bad}"
            );
        }
    }
}

//! [`PostgresOptions`]: where the database is and how the pool behaves.

use std::time::Duration;

use sentryagent_core::{Error, Result};

use crate::url_params::{self, Params};

/// Connection and pool settings of the Postgres backend.
///
/// Built from a URL ([`from_url`](Self::from_url)), where these query
/// parameters are read (and removed before the URL reaches the driver, which
/// gets every other parameter, such as `sslmode` or `application_name`):
///
/// | parameter | field | default |
/// |---|---|---|
/// | `schema` | [`schema`](Self::schema) | `public` |
/// | `max_connections` | [`max_connections`](Self::max_connections) | 10 |
/// | `min_connections` | [`min_connections`](Self::min_connections) | 0 |
/// | `acquire_timeout` | [`acquire_timeout`](Self::acquire_timeout) | `5s` |
/// | `idle_timeout` | [`idle_timeout`](Self::idle_timeout) (`none` keeps idle connections) | `10m` |
/// | `max_lifetime` | [`max_lifetime`](Self::max_lifetime) (`none`: no limit) | `30m` |
/// | `statement_cache_capacity` | [`statement_cache_capacity`](Self::statement_cache_capacity) | 100 |
/// | `client_cache` | [`client_cache`](Self::client_cache): `on` or `off` | `on` |
/// | `client_cache_capacity` | [`client_cache_capacity`](Self::client_cache_capacity) | 4096 |
/// | `client_cache_revalidate_ms` | [`client_cache_revalidate`](Self::client_cache_revalidate), in milliseconds | 250 |
///
/// Durations are an integer with a unit: `ms`, `s`, `m` or `h` (a bare
/// integer is seconds). For example
/// `postgres://app@db.internal/sentryagent?schema=idp&max_connections=20&acquire_timeout=2s`.
///
/// ```
/// use std::time::Duration;
/// use sentryagent_storage::postgres::PostgresOptions;
///
/// let o = PostgresOptions::from_url("postgres://app@db/idp?schema=tenant_a&max_connections=20&sslmode=require")?;
/// assert_eq!(o.schema, "tenant_a");
/// assert_eq!(o.max_connections, 20);
/// assert_eq!(o.acquire_timeout, Duration::from_secs(5));
/// assert_eq!(o.url, "postgres://app@db/idp?sslmode=require");
/// # Ok::<(), sentryagent_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The connection URL given to the driver (`postgres://` or
    /// `postgresql://`), without the parameters above.
    pub url: String,
    /// The schema holding the tables: created if missing, migrated, and set
    /// as the `search_path` of every connection. Letters, digits and `_`,
    /// not starting with a digit, at most 63 bytes.
    pub schema: String,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle.
    pub min_connections: u32,
    /// How long an operation waits for a connection before failing with
    /// [`Error::Unavailable`].
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long.
    pub max_lifetime: Option<Duration>,
    /// Prepared statements cached per connection.
    pub statement_cache_capacity: usize,
    /// Whether the token path's client records (agent, client secrets,
    /// tenant) are cached in the process, invalidated across nodes by
    /// `LISTEN`/`NOTIFY` and revalidated by version (see
    /// [`PostgresStore`](super::PostgresStore#client-cache)).
    pub client_cache: bool,
    /// Most client records the cache keeps (at least 1).
    pub client_cache_capacity: usize,
    /// A cached record older than this is checked against the database's
    /// version of it before use (at most 60 s; zero checks on every use).
    pub client_cache_revalidate: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &url_params::redact(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("client_cache", &self.client_cache)
            .field("client_cache_capacity", &self.client_cache_capacity)
            .field("client_cache_revalidate", &self.client_cache_revalidate)
            .finish()
    }
}

impl PostgresOptions {
    /// Default `max_connections`.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// Default `acquire_timeout`.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `idle_timeout`.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
    /// Default `max_lifetime`.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(1800);
    /// Default `statement_cache_capacity`.
    pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 100;
    /// Default `client_cache_capacity`.
    pub const DEFAULT_CLIENT_CACHE_CAPACITY: usize = 4096;
    /// Default `client_cache_revalidate`.
    pub const DEFAULT_CLIENT_CACHE_REVALIDATE: Duration = Duration::from_millis(250);
    /// Largest `client_cache_revalidate`.
    pub const MAX_CLIENT_CACHE_REVALIDATE: Duration = Duration::from_secs(60);

    /// Defaults for a connection URL (used as is: no parameter is read).
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: "public".into(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            min_connections: 0,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            max_lifetime: Some(Self::DEFAULT_MAX_LIFETIME),
            statement_cache_capacity: Self::DEFAULT_STATEMENT_CACHE_CAPACITY,
            client_cache: true,
            client_cache_capacity: Self::DEFAULT_CLIENT_CACHE_CAPACITY,
            client_cache_revalidate: Self::DEFAULT_CLIENT_CACHE_REVALIDATE,
        }
    }

    /// Parses a `postgres://` or `postgresql://` URL and the pool parameters
    /// in its query (see the type docs). An unknown value of a known
    /// parameter, or a bad schema name, is [`Error::Invalid`] (field `"url"`).
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, _) = url
            .split_once("://")
            .ok_or_else(|| Error::invalid("url", "expected postgres://..."))?;
        if scheme != "postgres" && scheme != "postgresql" {
            return Err(Error::invalid(
                "url",
                format!("expected a postgres:// or postgresql:// URL, not {scheme}://"),
            ));
        }
        let mut params = Params::split(url)?;
        let mut o = PostgresOptions::new(String::new());
        if let Some(v) = params.take("schema")? {
            o.schema = v;
        }
        if let Some(v) = params.take("max_connections")? {
            o.max_connections = url_params::parse_number("max_connections", &v)?;
        }
        if let Some(v) = params.take("min_connections")? {
            o.min_connections = url_params::parse_number("min_connections", &v)?;
        }
        if let Some(v) = params.take("acquire_timeout")? {
            o.acquire_timeout = url_params::parse_duration("acquire_timeout", &v)?;
        }
        if let Some(v) = params.take("idle_timeout")? {
            o.idle_timeout = url_params::parse_optional_duration("idle_timeout", &v)?;
        }
        if let Some(v) = params.take("max_lifetime")? {
            o.max_lifetime = url_params::parse_optional_duration("max_lifetime", &v)?;
        }
        if let Some(v) = params.take("statement_cache_capacity")? {
            o.statement_cache_capacity = url_params::parse_number("statement_cache_capacity", &v)?;
        }
        if let Some(v) = params.take("client_cache")? {
            o.client_cache = match v.as_str() {
                "on" => true,
                "off" => false,
                _ => return Err(Error::invalid("url", "`client_cache` must be on or off")),
            };
        }
        if let Some(v) = params.take("client_cache_capacity")? {
            o.client_cache_capacity = url_params::parse_number("client_cache_capacity", &v)?;
        }
        if let Some(v) = params.take("client_cache_revalidate_ms")? {
            let ms: u64 = url_params::parse_number("client_cache_revalidate_ms", &v)?;
            o.client_cache_revalidate = Duration::from_millis(ms);
        }
        o.url = params.rest();
        o.validate()?;
        Ok(o)
    }

    /// The same options with another schema.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Checks the schema name and the pool sizes.
    pub fn validate(&self) -> Result<()> {
        validate_schema(&self.schema)?;
        if self.max_connections == 0 {
            return Err(Error::invalid("url", "max_connections must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(Error::invalid(
                "url",
                "min_connections must not exceed max_connections",
            ));
        }
        if self.acquire_timeout.is_zero() {
            return Err(Error::invalid(
                "url",
                "acquire_timeout must be more than zero",
            ));
        }
        if self.client_cache_capacity == 0 {
            return Err(Error::invalid(
                "url",
                "client_cache_capacity must be at least 1 (client_cache=off turns the cache off)",
            ));
        }
        if self.client_cache_revalidate > Self::MAX_CLIENT_CACHE_REVALIDATE {
            return Err(Error::invalid(
                "url",
                "client_cache_revalidate_ms must be at most 60000",
            ));
        }
        Ok(())
    }
}

/// Schema names are plain identifiers, so they never need quoting rules
/// beyond double quotes.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "url",
            "schema: 1 to 63 letters, digits or _, not starting with a digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_and_removed() {
        let o = PostgresOptions::from_url(
            "postgresql://u:p@h:5433/db?application_name=x&schema=s_1&min_connections=2&max_connections=4\
             &idle_timeout=none&max_lifetime=90m&acquire_timeout=250ms&statement_cache_capacity=7\
             &client_cache=off&client_cache_capacity=16&client_cache_revalidate_ms=100",
        )
        .unwrap();
        assert_eq!(o.url, "postgresql://u:p@h:5433/db?application_name=x");
        assert_eq!(o.schema, "s_1");
        assert_eq!((o.min_connections, o.max_connections), (2, 4));
        assert_eq!(o.idle_timeout, None);
        assert_eq!(o.max_lifetime, Some(Duration::from_secs(5400)));
        assert_eq!(o.acquire_timeout, Duration::from_millis(250));
        assert_eq!(o.statement_cache_capacity, 7);
        assert!(!o.client_cache);
        assert_eq!(o.client_cache_capacity, 16);
        assert_eq!(o.client_cache_revalidate, Duration::from_millis(100));
        assert!(
            !format!("{o:?}").contains(":p@"),
            "the password is not printed"
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let o = PostgresOptions::from_url("postgres://h/db").unwrap();
        assert_eq!(o, PostgresOptions::new("postgres://h/db"));
        assert!(o.client_cache);
        assert_eq!(o.client_cache_capacity, 4096);
        assert_eq!(o.client_cache_revalidate, Duration::from_millis(250));
        for bad in [
            "redis://h",
            "postgres://h/db?schema=1abc",
            "postgres://h/db?schema=a-b",
            "postgres://h/db?schema=",
            "postgres://h/db?max_connections=0",
            "postgres://h/db?max_connections=x",
            "postgres://h/db?min_connections=5&max_connections=2",
            "postgres://h/db?acquire_timeout=0s",
            "postgres://h/db?acquire_timeout=5 parsecs",
            "postgres://h/db?schema=a&schema=b",
            "postgres://h/db?client_cache=yes",
            "postgres://h/db?client_cache_capacity=0",
            "postgres://h/db?client_cache_revalidate_ms=60001",
            "postgres://h/db?client_cache_revalidate_ms=1s",
        ] {
            assert!(
                matches!(PostgresOptions::from_url(bad), Err(Error::Invalid { .. })),
                "{bad}"
            );
        }
    }
}

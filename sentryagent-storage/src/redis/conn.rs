//! The connection the Redis parts share, and Lua scripts called by
//! `EVALSHA`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::cluster::ClusterConn;
use redis::{ErrorKind, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value};
use sentryagent_core::{Error, Result};

use super::options::RedisOptions;

/// How many response timeouts a cluster command keeps retrying
/// `TRYAGAIN` (a slot migration in progress) and `CLUSTERDOWN`.
pub(crate) const TRYAGAIN_ROUNDS: u32 = 5;

/// A Lua script: its source and SHA-1.
pub(crate) struct Lua {
    script: redis::Script,
}

impl Lua {
    pub(crate) fn new(source: &str) -> Self {
        Lua {
            script: redis::Script::new(source),
        }
    }
}

/// The connection to Redis: one server through a connection manager, or a
/// Redis Cluster through [`ClusterConn`] (which follows `MOVED` and `ASK`
/// redirections and retries `TRYAGAIN`). Both are multiplexed and cheap to
/// clone.
#[derive(Clone)]
pub(crate) enum Handle {
    /// One server (or a proxy in front of several).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConn),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(cmd, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}

/// One connection (see [`Handle`]), shared by every part opened from one
/// [`RedisBackend`](super::RedisBackend).
#[derive(Clone)]
pub(crate) struct Conn {
    manager: Handle,
    pub(crate) options: Arc<RedisOptions>,
    script_loads: Arc<AtomicU64>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection manager that connects on first use: opening never
    /// fails because Redis is down.
    pub(crate) fn open(options: RedisOptions) -> Result<Conn> {
        options.validate()?;
        let manager = match options.cluster_nodes() {
            Some(nodes) => Handle::Cluster(Self::open_cluster(&options, nodes)?),
            None => Handle::Single(Self::open_single(&options)?),
        };
        Ok(Conn {
            manager,
            options: Arc::new(options),
            script_loads: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A cluster connection that connects on first use: opening never
    /// fails because the cluster is down.
    fn open_cluster(options: &RedisOptions, nodes: Vec<String>) -> Result<ClusterConn> {
        for node in &nodes {
            redis::Client::open(node.as_str())
                .map_err(|e| Error::invalid("url", format!("not a Redis Cluster URL: {e}")))?;
        }
        Ok(ClusterConn::new(
            nodes,
            options.connect_timeout,
            options.response_timeout,
        ))
    }

    fn open_single(options: &RedisOptions) -> Result<ConnectionManager> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| Error::invalid("url", format!("not a Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // One quick retry of a failed connect; callers decide the rest.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(100));
        ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::invalid("url", format!("redis: {e}")))
    }

    pub(crate) fn manager(&self) -> Handle {
        self.manager.clone()
    }

    /// Whether this is a Redis Cluster connection (every multi-key command
    /// and script must then stay in one slot).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.manager, Handle::Cluster(_))
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.options.key_prefix
    }

    /// How many `SCRIPT LOAD`s this connection sent.
    pub(crate) fn script_loads(&self) -> u64 {
        self.script_loads.load(Ordering::Relaxed)
    }

    /// `SCRIPT LOAD`.
    pub(crate) async fn load(&self, lua: &Lua) -> RedisResult<()> {
        self.script_loads.fetch_add(1, Ordering::Relaxed);
        lua.script.load_async(&mut self.manager()).await.map(|_| ())
    }

    /// The `EVALSHA` command of a script call.
    pub(crate) fn evalsha(lua: &Lua, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(lua.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        cmd
    }

    /// Calls a script by `EVALSHA`. Only a `NOSCRIPT` reply (the server
    /// lost its script cache: a restart, a fail-over, `SCRIPT FLUSH`) loads
    /// it again and retries, once: the script did not run, so the retry
    /// cannot count twice. Any other error is returned as is, never retried.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<T> {
        let cmd = Self::evalsha(lua, keys, args);
        match cmd.query_async::<T>(&mut self.manager()).await {
            Err(e) if is_noscript(&e) => {
                self.load(lua).await?;
                cmd.query_async(&mut self.manager()).await
            }
            other => other,
        }
    }

    /// `PING` round trip.
    pub(crate) async fn ping(&self) -> RedisResult<Duration> {
        let start = Instant::now();
        redis::cmd("PING")
            .query_async::<String>(&mut self.manager())
            .await?;
        Ok(start.elapsed())
    }
}

pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A Redis failure as [`Error::Unavailable`].
pub(crate) fn unavailable(what: &str, e: RedisError) -> Error {
    Error::unavailable(format!("redis: {what}: {e}"), e)
}

/// A reply of an unexpected shape.
pub(crate) fn bad_reply(what: &str, v: &Value) -> Error {
    Error::Internal {
        message: format!("redis: unexpected reply to {what}: {v:?}"),
        source: None,
    }
}

/// The key of `name` in the hash tag `{<prefix><scope>:<name>}`: one Redis
/// Cluster slot per tag.
pub(crate) fn tagged(prefix: &str, scope: &str, name: &str) -> String {
    format!("{{{prefix}{scope}:{name}}}")
}

/// The key of a name made of segments separated by `/`: the first segment
/// is the hash tag, the rest follows it, `{<prefix><scope>:<first>}/<rest>`
/// (a name without `/` is all tag, as [`tagged`]). Names that share their
/// first segment share a Redis Cluster slot.
pub(crate) fn tagged_by_first_segment(prefix: &str, scope: &str, name: &str) -> String {
    match name.split_once('/') {
        Some((first, rest)) => format!("{{{prefix}{scope}:{first}}}/{rest}"),
        None => tagged(prefix, scope, name),
    }
}

/// The hash tag of a key made by [`tagged`] or [`tagged_by_first_segment`]
/// (what Redis Cluster hashes): between the first `{` and the next `}`.
pub(crate) fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or(key, |(tag, _)| tag)
}

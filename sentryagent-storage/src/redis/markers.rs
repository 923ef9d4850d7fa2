//! [`RedisMarkerStore`]: one-time markers shared by every node.

use async_trait::async_trait;
use sentryagent_core::BackendHealth;
use sentryagent_core::{Backend, MarkerStore, Result, Timestamp};

use super::conn::{Conn, Lua, unavailable};

/// Most expired markers one purge script call removes; a purge repeats
/// calls until fewer come back.
const PURGE_BATCH: usize = 1000;

/// Longest purge, in script calls (a bound, never reached in practice:
/// markers are purged every few seconds).
const PURGE_MAX_CALLS: usize = 10_000;

fn put_script() -> &'static Lua {
    static LUA: std::sync::OnceLock<Lua> = std::sync::OnceLock::new();
    LUA.get_or_init(|| Lua::new(include_str!("marker_put.lua")))
}

fn purge_script() -> &'static Lua {
    static LUA: std::sync::OnceLock<Lua> = std::sync::OnceLock::new();
    LUA.get_or_init(|| Lua::new(include_str!("marker_purge.lua")))
}

/// The [`MarkerStore`] on Redis: seen assertion `jti`s, revoked tokens and
/// processed webhook events, visible to every node at once.
///
/// A marker is the key `{<prefix>mk}:<namespace length>:<namespace>:<key>`
/// holding its expiry (Unix microseconds of the caller's clock), with a
/// Redis lifetime to match, plus an entry in the expiry index
/// `{<prefix>mk}:exp` (a sorted set) that [`purge_markers`](MarkerStore::purge_markers)
/// reads. Putting is one script call (check, set, index: atomic); a lookup
/// is one `GET`. All markers share one hash tag, so they live on one
/// Redis Cluster slot.
///
/// A failing Redis is [`Error::Unavailable`](sentryagent_core::Error::Unavailable).
#[derive(Debug, Clone)]
pub struct RedisMarkerStore {
    conn: Conn,
}

impl RedisMarkerStore {
    pub(crate) fn new(conn: Conn) -> Self {
        RedisMarkerStore { conn }
    }

    fn key(&self, namespace: &str, key: &str) -> String {
        format!(
            "{{{}mk}}:{}:{namespace}:{key}",
            self.conn.prefix(),
            namespace.len()
        )
    }

    fn index(&self) -> String {
        format!("{{{}mk}}:exp", self.conn.prefix())
    }
}

#[async_trait]
impl Backend for RedisMarkerStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn health(&self) -> BackendHealth {
        match self.conn.ping().await {
            Ok(latency) => BackendHealth::up("redis", latency),
            Err(e) => BackendHealth::down("redis", format!("redis unreachable: {e}")),
        }
        .with_detail("part", "markers")
    }
}

#[async_trait]
impl MarkerStore for RedisMarkerStore {
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let millis = if expires_at > now {
            expires_at.since(now).as_micros().div_ceil(1000).max(1)
        } else {
            1
        };
        let stored: i64 = self
            .conn
            .eval(
                put_script(),
                &[self.key(namespace, key), self.index()],
                &[
                    expires_at.unix_micros().to_string(),
                    now.unix_micros().to_string(),
                    u64::try_from(millis).unwrap_or(u64::MAX).to_string(),
                ],
            )
            .await
            .map_err(|e| unavailable("put_marker", e))?;
        Ok(stored == 1)
    }

    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool> {
        let v: Option<i64> = redis::cmd("GET")
            .arg(self.key(namespace, key))
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("has_marker", e))?;
        Ok(v.is_some_and(|expires| expires > now.unix_micros()))
    }

    async fn purge_markers(&self, now: Timestamp) -> Result<u64> {
        let mut total = 0u64;
        for _ in 0..PURGE_MAX_CALLS {
            let n: u64 = self
                .conn
                .eval(
                    purge_script(),
                    &[self.index()],
                    &[now.unix_micros().to_string(), PURGE_BATCH.to_string()],
                )
                .await
                .map_err(|e| unavailable("purge_markers", e))?;
            total += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(total)
    }
}

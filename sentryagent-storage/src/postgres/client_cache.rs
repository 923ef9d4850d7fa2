//! [`ClientCache`]: the token path's client records (agent, client secrets,
//! tenant) kept in the process, invalidated across nodes by
//! `LISTEN`/`NOTIFY` and revalidated by version.
//!
//! How a cached record stays right:
//!
//! - **notifications**: triggers (migration 6) send `<schema>:agent:<id>` or
//!   `<schema>:tenant:<id>` on the channel [`CHANNEL`] when an agent, a
//!   client secret or a tenant changes, at commit. A task of each store
//!   listens on a connection of its own and drops the records named;
//!   writes made through this store drop them at once, before returning;
//! - **no listener, no cache**: records are cached only while the listener
//!   is connected. When its connection is lost the cache is emptied and
//!   bypassed; when it is back (after `LISTEN`), the cache is emptied again,
//!   since notifications sent in between were lost;
//! - **version check**: a record older than the revalidation interval
//!   (default 250 ms) is checked before use with one query that reads the
//!   version of its rows (the `xmin` of the agent, its tenant and its
//!   secrets: Postgres gives every new row version a new one) and is read
//!   again if that changed. A notification that never arrives (a listener
//!   whose connection hangs without an error) therefore keeps a revoked
//!   secret usable on a node for at most that interval;
//! - **no stale insert**: a record read while any invalidation happened is
//!   returned but not kept (a global generation counter);
//! - **bounded**: at most `capacity` records; a new one beyond that replaces
//!   an arbitrary one. Unknown clients are never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::types::Json;

use sentryagent_core::{AgentId, BackendHealth, ClientRecord, Error, Result, Tenant, TenantId};

use super::db::{Db, Step};
use super::store::doc;

/// The notification channel of client-record changes.
pub(crate) const CHANNEL: &str = "sentryagent_clients";

/// The version of a client record: the `xmin` of the agent row, of its
/// tenant row and of its secrets' rows, in one text (`-` for no tenant or no
/// secret).
const VERSION: &str = "concat(a.xmin::text, ':', coalesce(t.xmin::text, '-'), ':', \
     coalesce(s.versions, '-'))";

/// The agent with its tenant and its secrets (one row).
const FROM: &str = "FROM agents a LEFT JOIN tenants t ON t.id = a.tenant_id \
     LEFT JOIN LATERAL (SELECT jsonb_agg(x.doc ORDER BY x.seq) AS docs, \
                               string_agg(x.xmin::text, ',' ORDER BY x.seq) AS versions \
                        FROM client_secrets x WHERE x.agent_id = a.id) s ON true \
     WHERE a.id = $1";

/// Reads a client record and its version in one query (one snapshot).
pub(crate) async fn load(db: &Db, id: &AgentId) -> Result<(ClientRecord, String)> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT a.doc AS agent, t.doc AS tenant, \
             COALESCE(s.docs, '[]'::jsonb) AS secrets, {VERSION} AS version {FROM}"
        )
    });
    db.run_read(|| async {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id.as_str())
            .fetch_optional(&db.pool)
            .await?;
        let Some(row) = row else {
            return Err(Error::not_found("agent").into());
        };
        let record = ClientRecord {
            agent: doc(&row, "agent")?,
            secrets: doc(&row, "secrets")?,
            tenant: row
                .try_get::<Option<Json<Tenant>>, _>("tenant")?
                .map(|Json(t)| t),
        };
        let version: String = row.try_get("version")?;
        Ok((record, version))
    })
    .await
}

/// The current version of a client record; `None` if the agent is gone.
async fn version(db: &Db, id: &AgentId) -> Result<Option<String>> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| format!("SELECT {VERSION} AS version {FROM}"));
    db.run_read(|| async {
        let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id.as_str())
            .fetch_optional(&db.pool)
            .await?;
        Step::Ok(v)
    })
    .await
}

/// One cached record.
struct Entry {
    record: ClientRecord,
    version: String,
    /// When the record was last known to be current.
    checked: Mutex<Instant>,
    /// Held while the record is revalidated, so concurrent requests wait
    /// for one check instead of each making it.
    revalidating: tokio::sync::Mutex<()>,
}

impl Entry {
    fn new(record: ClientRecord, version: String, checked: Instant) -> Self {
        Entry {
            record,
            version,
            checked: Mutex::new(checked),
            revalidating: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, bound: Duration) -> bool {
        let checked = *self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checked.elapsed() < bound
    }

    /// Whether a check that started at or after `t` found it current.
    fn checked_since(&self, t: Instant) -> bool {
        *self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            >= t
    }

    fn checked_at(&self, at: Instant) {
        *self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

/// Counters reported by `health()`.
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    revalidations: AtomicU64,
    invalidations: AtomicU64,
    listener_connects: AtomicU64,
}

/// The client-record cache of one [`PostgresStore`](super::PostgresStore)
/// (see the module docs).
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    capacity: usize,
    revalidate: Duration,
    schema: Arc<str>,
    /// Whether the listener is connected (the cache is used only then).
    live: AtomicBool,
    /// Bumped by every invalidation: a record read across one is not kept.
    generation: AtomicU64,
    counters: Counters,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("capacity", &self.capacity)
            .field("revalidate", &self.revalidate)
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ClientCache {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ClientCache {
    /// A cache for `db`'s schema, with its listener started; returns once
    /// the listener has connected (or failed to: then the cache stays
    /// bypassed until its task connects).
    pub(crate) async fn start(db: &Db, capacity: usize, revalidate: Duration) -> Arc<Self> {
        let cache = Arc::new(ClientCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            revalidate,
            schema: db.schema().into(),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            counters: Counters::default(),
            listener: Mutex::new(None),
        });
        let connect = (*db.connect)
            .clone()
            .application_name(&listener_name(db.schema()));
        let first = connect_listener(&connect).await.ok();
        if first.is_some() {
            cache.set_live(true);
        }
        let task = tokio::spawn(listen(Arc::downgrade(&cache), connect, first));
        *cache
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        cache
    }

    /// Stops the listener; the cache is bypassed from then on.
    pub(crate) fn stop(&self) {
        self.live.store(false, Ordering::Release);
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.clear();
    }

    /// The client record of `id`, from the cache when it holds a current
    /// one; `NotFound` if there is no such agent.
    pub(crate) async fn get(&self, db: &Db, id: &AgentId) -> Result<ClientRecord> {
        if !self.live.load(Ordering::Acquire) {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return load(db, id).await.map(|(record, _)| record);
        }
        let Some(entry) = self.lookup(id) else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return self.fetch(db, id).await;
        };
        if entry.fresh(self.revalidate) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry.record.clone());
        }
        let arrived = Instant::now();
        let _one_check = entry.revalidating.lock().await;
        // Another request may have checked it, or replaced it, meanwhile: a
        // check or a read that started after this request arrived is as
        // good as its own.
        match self.lookup(id) {
            Some(current) if Arc::ptr_eq(&current, &entry) => {}
            Some(current) if current.checked_since(arrived) || current.fresh(self.revalidate) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(current.record.clone());
            }
            _ => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return self.fetch(db, id).await;
            }
        }
        if entry.checked_since(arrived) || entry.fresh(self.revalidate) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry.record.clone());
        }
        self.counters.revalidations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match version(db, id).await? {
            Some(v) if v == entry.version => {
                entry.checked_at(started);
                Ok(entry.record.clone())
            }
            _ => {
                self.forget(id.as_str());
                self.fetch(db, id).await
            }
        }
    }

    /// Reads the record and keeps it, unless an invalidation happened
    /// meanwhile or the listener is down.
    async fn fetch(&self, db: &Db, id: &AgentId) -> Result<ClientRecord> {
        let generation = self.generation.load(Ordering::Acquire);
        let started = Instant::now();
        let (record, version) = load(db, id).await?;
        if self.live.load(Ordering::Acquire)
            && self.generation.load(Ordering::Acquire) == generation
        {
            let entry = Arc::new(Entry::new(record.clone(), version, started));
            let mut entries = self.lock();
            // Checked again under the lock that invalidations take.
            if self.generation.load(Ordering::Acquire) == generation {
                if entries.len() >= self.capacity
                    && !entries.contains_key(id.as_str())
                    && let Some(old) = entries.keys().next().cloned()
                {
                    entries.remove(&old);
                }
                entries.insert(id.as_str().to_owned(), entry);
            }
        }
        Ok(record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, id: &AgentId) -> Option<Arc<Entry>> {
        self.lock().get(id.as_str()).cloned()
    }

    /// Drops the record of agent `id`.
    pub(crate) fn forget(&self, id: &str) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        entries.remove(id);
    }

    /// Drops the records of every agent of tenant `id`.
    pub(crate) fn forget_tenant(&self, id: &TenantId) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        entries.retain(|_, e| e.record.agent.tenant_id != *id);
    }

    /// Drops every record.
    fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Records kept now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Acts on a notification's payload (`<schema>:agent:<id>` or
    /// `<schema>:tenant:<id>`); other schemas' and unknown ones are ignored.
    fn on_notification(&self, payload: &str) {
        let mut parts = payload.splitn(3, ':');
        let (Some(schema), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if schema != &*self.schema {
            return;
        }
        match kind {
            "agent" => self.forget(id),
            "tenant" => match TenantId::parse(id) {
                Ok(t) => self.forget_tenant(&t),
                // Not a tenant id this code reads: drop everything.
                Err(_) => self.clear(),
            },
            _ => {}
        }
    }

    /// The listener connected (`LISTEN` done) or lost: either way what was
    /// kept may have missed a notification.
    fn set_live(&self, live: bool) {
        self.clear();
        if live {
            self.counters
                .listener_connects
                .fetch_add(1, Ordering::Relaxed);
        }
        self.live.store(live, Ordering::Release);
    }

    /// Adds the cache's figures to a health report.
    pub(crate) fn report(&self, health: BackendHealth) -> BackendHealth {
        let c = &self.counters;
        health
            .with_detail("client_cache_live", self.live.load(Ordering::Relaxed))
            .with_detail("client_cache_entries", self.len() as u64)
            .with_detail("client_cache_capacity", self.capacity as u64)
            .with_detail(
                "client_cache_revalidate_ms",
                u64::try_from(self.revalidate.as_millis()).unwrap_or(u64::MAX),
            )
            .with_detail("client_cache_hits", c.hits.load(Ordering::Relaxed))
            .with_detail("client_cache_misses", c.misses.load(Ordering::Relaxed))
            .with_detail(
                "client_cache_revalidations",
                c.revalidations.load(Ordering::Relaxed),
            )
            .with_detail(
                "client_cache_invalidations",
                c.invalidations.load(Ordering::Relaxed),
            )
            .with_detail(
                "client_cache_listener_connects",
                c.listener_connects.load(Ordering::Relaxed),
            )
    }
}

/// Drops a cached record when dropped: held across a write to the agent
/// (or the tenant's agents), so the record is forgotten once the write is
/// over, whether it committed, failed or was cancelled.
pub(crate) enum Forget<'a> {
    /// An agent's record.
    Agent(Option<&'a ClientCache>, &'a AgentId),
    /// The records of a tenant's agents.
    Tenant(Option<&'a ClientCache>, &'a TenantId),
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        match self {
            Forget::Agent(Some(c), id) => c.forget(id.as_str()),
            Forget::Tenant(Some(c), id) => c.forget_tenant(id),
            _ => {}
        }
    }
}

/// The `application_name` of the listener's connection, so operators (and
/// tests) can tell it from the pool's: `sentryagent-listen:<schema>`.
pub(crate) fn listener_name(schema: &str) -> String {
    let mut name = format!("sentryagent-listen:{schema}");
    // Postgres keeps 63 bytes; the name is ASCII.
    name.truncate(63);
    name
}

/// A listener on [`CHANNEL`], on a connection of its own.
async fn connect_listener(
    connect: &PgConnectOptions,
) -> std::result::Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The listener task: receives notifications while connected, reconnects
/// (with a growing pause, at most 2 s) when the connection is lost, and
/// ends when the cache is gone. `first`, when given, is a listener the
/// cache is already live on.
async fn listen(
    cache: Weak<ClientCache>,
    connect: PgConnectOptions,
    mut first: Option<PgListener>,
) {
    let mut failures: u32 = 0;
    loop {
        let (listener, live) = match first.take() {
            Some(l) => (Ok(l), true),
            None => (connect_listener(&connect).await, false),
        };
        if let Ok(mut listener) = listener {
            failures = 0;
            if !live {
                match cache.upgrade() {
                    Some(c) => c.set_live(true),
                    None => return,
                }
            }
            // `Ok(None)`: the connection was lost; `Err`: the server ended
            // the session (or another error): reconnect either way.
            while let Ok(Some(n)) = listener.try_recv().await {
                match cache.upgrade() {
                    Some(c) => c.on_notification(n.payload()),
                    None => return,
                }
            }
            match cache.upgrade() {
                Some(c) => c.set_live(false),
                None => return,
            }
        } else {
            failures = failures.saturating_add(1);
        }
        let pause = Duration::from_millis(50u64 << failures.min(5)).min(Duration::from_secs(2));
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names_fit_postgres() {
        assert_eq!(listener_name("idp"), "sentryagent-listen:idp");
        assert_eq!(listener_name(&"s".repeat(63)).len(), 63);
    }
}

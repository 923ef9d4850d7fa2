//! The embedded backend: the store, the rate limiter and the usage meter in
//! one [sled](https://docs.rs/sled/0.34.7) database directory. It is the
//! default: a server started with `sled://./sentryagent-data` needs no other
//! service.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sentryagent_core::SystemClock;
//! use sentryagent_storage::sled::SledBackend;
//!
//! # fn main() -> sentryagent_core::Result<()> {
//! let backend = SledBackend::open("./sentryagent-data")?;
//! let store = backend.store();
//! let limiter = backend.rate_limiter(Arc::new(SystemClock));
//! let meter = backend.usage_meter(Arc::new(SystemClock));
//! # let _ = (store, limiter, meter);
//! # Ok(())
//! # }
//! ```
//!
//! # One database per directory
//!
//! [`SledBackend::open`] owns the [`sled::Db`]; the three parts
//! share it. sled locks its directory, so a process can open it only once:
//! opening a path that this process already has open returns the same
//! database (paths are compared after [canonicalization](std::fs::canonicalize)),
//! and a directory locked by *another* process is refused with
//! [`Error::Unavailable`] naming the path. The database closes (after a last
//! flush) when every handle to it is dropped.
//!
//! # Layout
//!
//! Each kind of record has its own tree. Values are JSON; keys are built
//! from ids (which never contain a zero byte) joined by a zero byte, and
//! numbers in keys are 8-byte big-endian, signed ones with the sign bit
//! flipped, so that byte order is numeric order. `∅` is an empty value.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `format` | `sentryagent-sled/1`, checked at open |
//! | `tenants` | tenant id | tenant |
//! | `tenants_by_slug` | slug | tenant id |
//! | `agents` | agent id | agent |
//! | `agents_by_name` | tenant id, 0, agent name | agent id |
//! | `agents_by_tenant` | tenant id, 0, agent id | ∅ |
//! | `live_agents` | tenant id | u64: agents not retired |
//! | `client_secrets` | agent id | the agent's secrets, oldest first |
//! | `marketplace` | agent id of every public listed/active agent | ∅ |
//! | `marketplace_terms` | search word, 0, agent id (same agents) | ∅ |
//! | `marketplace_keys` | directory key (`kind:value`), 0, agent id (same agents) | ∅ |
//! | `marketplace_key_counts` | directory key | u64: agents with it |
//! | `marketplace_publishers` | publisher key, 0, tenant id | ∅ |
//! | `admin_keys` | key id | admin key |
//! | `admin_keys_by_prefix` | visible prefix | key id |
//! | `admin_keys_by_tenant` | tenant id (empty for operator keys), 0, key id | ∅ |
//! | `signing_keys` | kid | signing key record |
//! | `settings` | name | raw bytes |
//! | `audit` | chain, 0, seq (u64) | sealed event |
//! | `audit_heads` | chain | chain head |
//! | `audit_by_time` | chain, 0, at (i64 µs), seq (u64) | ∅ |
//! | `markers` | namespace length (u32), namespace, key | expiry (i64 µs) |
//! | `markers_by_expiry` | expiry (i64 µs), marker key | ∅ |
//! | `trust_policies` | policy id | trust policy |
//! | `trust_policies_by_tenant` | tenant id, 0, policy id | ∅ |
//! | `rate_limits` | limiter key | TAT (i64 µs) |
//! | `usage` | tenant, 0, kind, `h` hour start (i64 µs) / `d` day / `m` month | u64 |
//! | `usage_by_agent` | tenant, 0, kind, month, 0, agent id | u64 |
//! | `active_agents` | tenant, 0, month, 0, agent id | ∅ |
//! | `active_agent_counts` | tenant, 0, month | u64 |
//! | `usage_batches` | idempotency key | applied at (i64 µs) |
//! | `usage_batches_by_time` | applied at (i64 µs), idempotency key | ∅ |
//! | `users` | user id | account |
//! | `users_by_email` | normalized email | user id |
//! | `memberships` | tenant id, 0, user id | membership |
//! | `memberships_by_user` | user id, 0, tenant id | ∅ |
//! | `owner_counts` | tenant id | u64: members with the owner role |
//! | `sessions` | session id | session |
//! | `sessions_by_hash` | secret hash (32 bytes) | session id |
//! | `sessions_by_user` | user id, 0, session id | ∅ |
//! | `sessions_by_expiry` | first end (i64 µs: the idle end or the lifetime's, whichever comes first), session id | ∅ |
//! | `invitations` | invitation id | invitation |
//! | `invitations_by_hash` | token hash (32 bytes) | invitation id |
//! | `invitations_by_tenant` | tenant id, 0, invitation id | ∅ |
//!
//! The directory trees (`marketplace_keys`, `marketplace_key_counts`,
//! `marketplace_publishers`) are built from the agents and tenants at open
//! when the `meta` key `marketplace_index` does not name their current
//! layout (a database written before them); see the `marketplace` module.
//!
//! The audit chain of a tenant is keyed by its id, the system chain by the
//! empty string. Marker keys are length-prefixed because a marker key (a
//! token's `jti`) may contain any byte.
//!
//! # Transactions
//!
//! Every write that touches more than one key runs in one sled transaction
//! over all the trees involved, so secondary indexes never disagree with the
//! records: an agent, its name, its tenant listing, its first secret, the
//! live-agent counter (checked against `max_agents` in the same
//! transaction) and its marketplace entries (words, directory keys and
//! their counts) are written together; a tenant and its publisher keys
//! too; an audit
//! event is sealed ([`AuditEvent::seal`](sentryagent_core::AuditEvent::seal))
//! after the head read in the transaction that stores it and moves the head.
//! sled 0.34 serializes transactions (they hold a process-wide lock while
//! the closure runs), and may re-run a closure after a conflict; every
//! closure here only reads and writes through its transaction and computes
//! its writes from what it read, so a re-run is harmless. Reads outside a
//! transaction see committed data, but a listing that reads an index and
//! then the records is not a snapshot: a record changed in between is read
//! in its newer form and filtered again (the marketplace re-checks every
//! candidate with [`MarketplaceQuery::matches`](sentryagent_core::MarketplaceQuery::matches)).
//!
//! A tenant's owners are counted in `owner_counts`, read and written in
//! the transaction that changes a membership, so that no two concurrent
//! changes leave a tenant without an owner.
//!
//! Single-key writes use sled's atomic operations: `compare_and_swap` for
//! settings (first writer wins), signing-key inserts and the rate limiter.
//!
//! # Decoded copies
//!
//! The store keeps decoded copies of the agents, client-secret lists and
//! tenants it reads by id (at most 4,096 of each), because the token
//! endpoint reads all three on every request. A read still reads the tree
//! and uses a copy only when the stored bytes are the ones it was decoded
//! from, so every write is seen by the next read.
//!
//! # Durability
//!
//! sled writes to disk in the background (every 500 ms) and guarantees
//! durability only after a flush. This backend flushes (sled's `flush`:
//! write out and fsync, run on Tokio's blocking pool; concurrent writers
//! share the fsync):
//!
//! - **store writes: before returning.** Every [`AgentStore`](sentryagent_core::AgentStore)
//!   method that changes data (registration, secret rotation and
//!   revocation, updates, admin keys, signing keys, settings, audit
//!   appends, markers) returns only after its write is on disk, so an
//!   acknowledged write survives `kill -9` or a power cut. Token issuance
//!   does not write to the store, so this costs nothing on the hot path.
//! - **usage batches: before returning**, so a batch the meter acknowledged
//!   is never counted again nor lost (the [`Idp`](sentryagent_core::Idp)
//!   keeps a batch until it is acknowledged and batches many counts).
//! - **rate limiter: never explicitly.** Its state is written by the
//!   background flush only. After a crash, every limit restarts from at most
//!   what was last written (about half a second earlier): a client may get
//!   back up to that half second of its quota, never more than a full burst.
//!
//! # Retention
//!
//! - Markers live until their expiry; `purge_markers` removes expired ones
//!   through the `markers_by_expiry` index, without scanning live ones.
//! - Rate-limit keys back to a full burst are equivalent to absent keys;
//!   they are removed incrementally as new keys arrive (a few old keys are
//!   examined per new key) and by [`SledRateLimiter::remove_expired`].
//! - Idempotency keys of applied usage batches are kept for
//!   [`SledUsageMeter::BATCH_KEY_RETENTION`] (7 days) after they were
//!   applied, then purged lazily (at most once an hour, by the next
//!   `record`). A batch delivered again within that time counts once; the
//!   [`Idp`](sentryagent_core::Idp) retries a failed batch within minutes.
//! - Everything else (tenants, agents, secrets, keys, the audit trail,
//!   usage counts) is kept until deleted by the trait's operations.

mod cache;
mod codec;
mod limiter;
mod marketplace;
mod meter;
mod people;
mod store;
mod trust_policies;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sentryagent_core::BackendHealth;
use sentryagent_core::{Clock, Error, Result};

pub use limiter::SledRateLimiter;
pub use meter::SledUsageMeter;
pub use store::SledStore;

use codec::sled_error;

/// The on-disk format this version reads and writes.
const FORMAT: &[u8] = b"sentryagent-sled/1";

/// Databases this process has open, by canonical path.
static OPEN: Mutex<BTreeMap<PathBuf, Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// An open sled database and the trees of every part.
pub(crate) struct Shared {
    db: ::sled::Db,
    path: PathBuf,
    pub(crate) t: Trees,
}

/// Every tree (see the layout table in the module docs).
pub(crate) struct Trees {
    meta: ::sled::Tree,
    tenants: ::sled::Tree,
    tenants_by_slug: ::sled::Tree,
    agents: ::sled::Tree,
    agents_by_name: ::sled::Tree,
    agents_by_tenant: ::sled::Tree,
    live_agents: ::sled::Tree,
    client_secrets: ::sled::Tree,
    marketplace: ::sled::Tree,
    marketplace_terms: ::sled::Tree,
    marketplace_keys: ::sled::Tree,
    marketplace_key_counts: ::sled::Tree,
    marketplace_publishers: ::sled::Tree,
    admin_keys: ::sled::Tree,
    admin_keys_by_prefix: ::sled::Tree,
    admin_keys_by_tenant: ::sled::Tree,
    signing_keys: ::sled::Tree,
    settings: ::sled::Tree,
    audit: ::sled::Tree,
    audit_heads: ::sled::Tree,
    audit_by_time: ::sled::Tree,
    markers: ::sled::Tree,
    markers_by_expiry: ::sled::Tree,
    pub(crate) trust_policies: ::sled::Tree,
    pub(crate) trust_policies_by_tenant: ::sled::Tree,
    rate_limits: ::sled::Tree,
    usage: ::sled::Tree,
    usage_by_agent: ::sled::Tree,
    active_agents: ::sled::Tree,
    active_agent_counts: ::sled::Tree,
    usage_batches: ::sled::Tree,
    usage_batches_by_time: ::sled::Tree,
    people: people::PeopleTrees,
}

impl Trees {
    fn open(db: &::sled::Db) -> std::result::Result<Trees, ::sled::Error> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            tenants: db.open_tree("tenants")?,
            tenants_by_slug: db.open_tree("tenants_by_slug")?,
            agents: db.open_tree("agents")?,
            agents_by_name: db.open_tree("agents_by_name")?,
            agents_by_tenant: db.open_tree("agents_by_tenant")?,
            live_agents: db.open_tree("live_agents")?,
            client_secrets: db.open_tree("client_secrets")?,
            marketplace: db.open_tree("marketplace")?,
            marketplace_terms: db.open_tree("marketplace_terms")?,
            marketplace_keys: db.open_tree("marketplace_keys")?,
            marketplace_key_counts: db.open_tree("marketplace_key_counts")?,
            marketplace_publishers: db.open_tree("marketplace_publishers")?,
            admin_keys: db.open_tree("admin_keys")?,
            admin_keys_by_prefix: db.open_tree("admin_keys_by_prefix")?,
            admin_keys_by_tenant: db.open_tree("admin_keys_by_tenant")?,
            signing_keys: db.open_tree("signing_keys")?,
            settings: db.open_tree("settings")?,
            audit: db.open_tree("audit")?,
            audit_heads: db.open_tree("audit_heads")?,
            audit_by_time: db.open_tree("audit_by_time")?,
            markers: db.open_tree("markers")?,
            markers_by_expiry: db.open_tree("markers_by_expiry")?,
            trust_policies: db.open_tree("trust_policies")?,
            trust_policies_by_tenant: db.open_tree("trust_policies_by_tenant")?,
            rate_limits: db.open_tree("rate_limits")?,
            usage: db.open_tree("usage")?,
            usage_by_agent: db.open_tree("usage_by_agent")?,
            active_agents: db.open_tree("active_agents")?,
            active_agent_counts: db.open_tree("active_agent_counts")?,
            usage_batches: db.open_tree("usage_batches")?,
            usage_batches_by_time: db.open_tree("usage_batches_by_time")?,
            people: people::PeopleTrees::open(db)?,
        })
    }
}

impl Shared {
    /// Makes every write so far durable: sled's synchronous flush (write
    /// out and fsync), on Tokio's blocking pool when in a Tokio runtime.
    ///
    /// Not `flush_async`: in sled 0.34 concurrent `flush_async` calls can
    /// hang for ever (its flushes wait, on sled's own thread pool, for log
    /// writes queued on that same pool; upstream issues 1241 and 1308, fixed
    /// only in unreleased versions).
    pub(crate) async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        let flushed = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || db.flush())
                .await
                .map_err(|e| Error::internal("sled: the flush task failed", e))?,
            Err(_) => db.flush(),
        };
        flushed
            .map(drop)
            .map_err(|e| sled_error(&format!("flush of {}", self.path.display()), e))
    }

    /// Health: a read of the format key, size on disk and record counts.
    pub(crate) fn health(&self, part: &str) -> BackendHealth {
        /// Counting stops here, so a health check stays cheap.
        const COUNT_CAP: usize = 10_000;
        let start = Instant::now();
        match self.t.meta.get("format") {
            Ok(Some(v)) if v.as_ref() == FORMAT => {}
            Ok(_) => return BackendHealth::down("sled", "format marker missing"),
            Err(e) => return BackendHealth::down("sled", e),
        }
        let latency = start.elapsed();
        let count = |tree: &::sled::Tree| -> serde_json::Value {
            let n = tree.iter().keys().take(COUNT_CAP).count();
            if n < COUNT_CAP {
                n.into()
            } else {
                format!("{COUNT_CAP}+").into()
            }
        };
        let mut h = BackendHealth::up("sled", latency)
            .with_detail("part", part)
            .with_detail("path", self.path.display().to_string())
            .with_detail("trees", self.db.tree_names().len());
        match self.db.size_on_disk() {
            Ok(n) => h = h.with_detail("size_on_disk_bytes", n),
            Err(e) => h = h.with_detail("size_on_disk_error", e.to_string()),
        }
        match part {
            "store" => h
                .with_detail("tenants", count(&self.t.tenants))
                .with_detail("agents", count(&self.t.agents))
                .with_detail("marketplace_agents", count(&self.t.marketplace))
                .with_detail("markers", count(&self.t.markers))
                .with_detail("trust_policies", count(&self.t.trust_policies)),
            "meter" => h
                .with_detail("usage_counters", count(&self.t.usage))
                .with_detail("batch_keys", count(&self.t.usage_batches)),
            _ => h.with_detail("rate_limit_keys", count(&self.t.rate_limits)),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort on a clean shutdown: limiter state is then kept too.
        let _ = self.db.flush();
    }
}

/// An open sled database: hands out the [`SledStore`], the
/// [`SledRateLimiter`] and the [`SledUsageMeter`], which all share it.
/// Clones share the database too.
#[derive(Clone)]
pub struct SledBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledBackend")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl SledBackend {
    /// Opens (creating if needed) the database in directory `path`.
    ///
    /// Opening a directory this process already has open returns the same
    /// database. Errors are [`Error::Unavailable`] naming the path: the
    /// directory cannot be created or read, it is locked by another process,
    /// or it does not hold a sled database of this format.
    pub fn open(path: impl AsRef<Path>) -> Result<SledBackend> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return Err(Error::invalid("path", "the sled directory path is empty"));
        }
        let shown = path.display().to_string();
        std::fs::create_dir_all(path).map_err(|e| {
            Error::unavailable(format!("cannot create the sled directory {shown}"), e)
        })?;
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| Error::unavailable(format!("cannot resolve the sled path {shown}"), e))?;
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = open.get(&canonical).and_then(Weak::upgrade) {
            return Ok(SledBackend { shared });
        }
        let shared = Arc::new(open_shared(&canonical, &shown)?);
        open.insert(canonical, Arc::downgrade(&shared));
        Ok(SledBackend { shared })
    }

    /// The directory of the database (canonical).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The agent store.
    pub fn store(&self) -> SledStore {
        SledStore::new(self.shared.clone())
    }

    /// The rate limiter, reading time from `clock`.
    pub fn rate_limiter(&self, clock: Arc<dyn Clock>) -> SledRateLimiter {
        SledRateLimiter::new(self.shared.clone(), clock)
    }

    /// The usage meter; `clock` dates applied batches for the retention of
    /// their idempotency keys.
    pub fn usage_meter(&self, clock: Arc<dyn Clock>) -> SledUsageMeter {
        SledUsageMeter::new(self.shared.clone(), clock)
    }

    /// Makes every write so far durable (rate-limiter state included).
    pub async fn flush(&self) -> Result<()> {
        self.shared.flush().await
    }
}

fn open_shared(canonical: &Path, shown: &str) -> Result<Shared> {
    // sled recovers a damaged log by dropping everything from the first bad
    // record on, so a wholly damaged data file opens as an empty database.
    // A data file that held something but yields no format marker is
    // refused rather than initialized over.
    let had_data = std::fs::metadata(canonical.join("db")).is_ok_and(|m| m.len() > 0);
    // A handle of this process that was just dropped may still be closing
    // (sled's I/O threads finish their last writes): wait a little for its
    // lock before calling the directory busy.
    let deadline = Instant::now() + LOCK_WAIT;
    let db = loop {
        match ::sled::Config::new().path(canonical).open() {
            Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(|e| open_error(shown, e))?,
        }
    };
    let t = Trees::open(&db).map_err(|e| open_error(shown, e))?;
    let marker = t.meta.get("format").map_err(|e| open_error(shown, e))?;
    if marker.is_none() && had_data {
        return Err(Error::Unavailable {
            message: format!(
                "the sled database at {shown} has a data file but no readable SentryAgent data \
                 (damaged, or not a SentryAgent database); refusing to initialize over it"
            ),
            source: None,
        });
    }
    match t
        .meta
        .compare_and_swap("format", None::<&[u8]>, Some(FORMAT))
    {
        Ok(Ok(())) => {
            // A new database: its marker is durable before anything else.
            db.flush().map_err(|e| open_error(shown, e))?;
        }
        Ok(Err(found)) if found.current.as_deref() == Some(FORMAT) => {}
        Ok(Err(found)) => {
            let found = found
                .current
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            return Err(Error::Unavailable {
                message: format!(
                    "the sled database at {shown} has format `{found}`; this version reads `{}`",
                    String::from_utf8_lossy(FORMAT)
                ),
                source: None,
            });
        }
        Err(e) => return Err(open_error(shown, e)),
    }
    marketplace::build_index(&t)?;
    Ok(Shared {
        db,
        path: canonical.to_owned(),
        t,
    })
}

/// How long `open` waits for a directory locked by a closing handle.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn is_lock_error(e: &::sled::Error) -> bool {
    matches!(e, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn open_error(shown: &str, e: ::sled::Error) -> Error {
    let message = if is_lock_error(&e) {
        format!(
            "the sled database at {shown} is in use by another process (sled locks its directory)"
        )
    } else {
        format!("cannot open the sled database at {shown}")
    };
    Error::unavailable(message, e)
}

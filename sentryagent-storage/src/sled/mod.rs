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
//! | `meta` | `bulk_registration`, `bulk_registration_done` | a batch of agents being written and its chunks stored (see the `bulk` module) |
//! | `tenants` | tenant id | tenant |
//! | `tenants_by_slug` | slug | tenant id |
//! | `agents` | agent id | agent |
//! | `agents_by_name` | tenant id, 0, agent name | agent id |
//! | `agents_by_tenant` | tenant id, 0, agent id | ∅ |
//! | `live_agents` | tenant id | u64: agents not retired |
//! | `client_secrets` | agent id | the agent's secrets, oldest first |
//! | `marketplace` | agent id of every public listed/active agent | ∅ |
//! | `marketplace_terms` | search word, 0, first agent id of a block (same agents) | up to 32 agent ids joined by 0 |
//! | `marketplace_keys` | directory key (`kind:value`; not the keys derived from a lower-case id), 0, first agent id of a block (same agents) | up to 32 agent ids joined by 0 |
//! | `marketplace_key_counts` | directory key (not of the kinds `agent`, `name`, `locator`, `annotation`) | u64: agents with it |
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
//! The directory trees (`marketplace_terms`, `marketplace_keys`,
//! `marketplace_key_counts`, `marketplace_publishers`) are built from the
//! agents and tenants at open when the `meta` key `marketplace_index` does
//! not name their current layout (a database written before them, or with
//! the first layout's one key per word and agent); see the `marketplace`
//! module.
//!
//! The audit chain of a tenant is keyed by its id, the system chain by the
//! empty string. Marker keys are length-prefixed because a marker key (a
//! token's `jti`) may contain any byte.
//!
//! # Transactions
//!
//! Every write that touches more than one key runs in one sled transaction
//! over all the trees involved (a batch of agents excepted: see "Bulk
//! registration"), so secondary indexes never disagree with the
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
//! # I/O errors and recovery
//!
//! sled's write errors are sticky: once its log met an I/O error (a full
//! disk), every later write of that handle fails. Every part reaches the
//! database through one accessor (a read lock and an `Arc` clone of the
//! open handle), so the handle can be replaced. When an I/O error is met,
//! one background task (on the current Tokio runtime) checks the database
//! with a small write and a flush. If they fail, the backend is
//! *degraded*: writes fail with [`Error::Unavailable`], reads go on from the
//! open handle, and `health()` reports `degraded`. Every second the task
//! checks that the disk has room again (it writes, syncs and removes 1 MiB
//! in the directory), takes the failed handle out (operations meanwhile
//! fail with `Unavailable`), waits for the operations holding it, drops it,
//! and opens the directory again; sled recovers its log up to the last
//! durable write, which includes every acknowledged store write. The
//! store's decoded copies are dropped with the old handle. Without a Tokio
//! runtime nothing is reopened: a degraded database needs a new
//! [`SledBackend::open`] after every handle to it was dropped.
//!
//! # Memory: the page cache
//!
//! sled keeps recently used pages in a cache of 1 GiB by default; once the
//! database is larger than that, the cache is most of the process's
//! resident memory. [`SledOptions::cache_capacity`] sets it
//! (`sled://PATH?cache_mb=128` in a URL, [`SledBackend::open_with`] in
//! code); a reopen after an I/O error keeps it. Pages that fall out of it
//! are read again from the file (usually from the operating system's file
//! cache, which is not counted in the process's resident memory). Measured
//! resident memory of the server by database size and cache is in
//! docs/benchmarks.md ("One million agents", `loadtest/rss_1m.sh`).
//!
//! # Bulk registration
//!
//! [`AgentStore::create_agents`](sentryagent_core::AgentStore::create_agents)
//! writes a batch (at most
//! [`MAX_AGENT_BATCH`](sentryagent_core::MAX_AGENT_BATCH) agents) in small
//! transactions, not one: a check-and-reserve transaction (ids and names
//! free, the live-agent counters checked against each record's limit and
//! raised, the batch recorded in `meta`), then one transaction per chunk of
//! agents with all their index entries, then the record is removed; it
//! flushes once. The writers of agents wait for a batch meanwhile, and a
//! batch interrupted by an error or a crash is rolled back (by the call, or
//! at the next open), so a batch is stored whole or not at all. Why: see
//! the `bulk` module.
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

mod bulk;
mod cache;
mod codec;
mod limiter;
mod marketplace;
mod meter;
mod people;
mod postings;
mod store;
mod trust_policies;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use sentryagent_core::{BackendHealth, HealthStatus};
use sentryagent_core::{Clock, Error, Result};

pub use limiter::SledRateLimiter;
pub use meter::SledUsageMeter;
pub use store::SledStore;

use codec::sled_error;

/// The on-disk format this version reads and writes.
const FORMAT: &[u8] = b"sentryagent-sled/1";

/// How to open a sled database ([`SledBackend::open_with`]); in a URL,
/// `sled://PATH?cache_mb=N` ([`SledOptions::from_url`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache, in bytes; `None` keeps sled's default
    /// ([`SledOptions::DEFAULT_CACHE_CAPACITY`], 1 GiB).
    ///
    /// The cache holds recently used pages of every tree; it is the bulk of
    /// the process's resident memory once the database is larger than it.
    /// A smaller cache bounds that memory at the price of more reads from
    /// the operating system's file cache (reads that miss it decode the
    /// page again).
    pub cache_capacity: Option<u64>,
}

impl SledOptions {
    /// sled's default page cache: 1 GiB.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 1024 * 1024 * 1024;
    /// The largest `cache_mb` a URL may give (1 TiB).
    pub const MAX_CACHE_MB: u64 = 1024 * 1024;

    /// Options with a page cache of `bytes`.
    pub fn with_cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// The page cache size these options open with.
    pub fn effective_cache_capacity(&self) -> u64 {
        self.cache_capacity.unwrap_or(Self::DEFAULT_CACHE_CAPACITY)
    }

    /// Splits a `sled://PATH[?cache_mb=N]` URL into its directory and its
    /// options. `cache_mb` is the page cache in MiB (1 to
    /// [`MAX_CACHE_MB`](Self::MAX_CACHE_MB)); any other parameter is
    /// [`Error::Invalid`]. The path is the text between `sled://` and the
    /// first `?`, as is (no percent-decoding).
    pub fn from_url(url: &str) -> Result<(String, SledOptions)> {
        let rest = url
            .strip_prefix("sled://")
            .ok_or_else(|| Error::invalid("url", "a sled URL starts with sled://"))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut options = SledOptions::default();
        if let Some(query) = query {
            let mut params = crate::url_params::Params::split(&format!("?{query}"))?;
            if let Some(v) = params.take("cache_mb")? {
                let mb: u64 = crate::url_params::parse_number("cache_mb", &v)?;
                if mb == 0 || mb > Self::MAX_CACHE_MB {
                    return Err(Error::invalid(
                        "url",
                        format!("`cache_mb` must be 1 to {}", Self::MAX_CACHE_MB),
                    ));
                }
                options.cache_capacity = Some(mb * 1024 * 1024);
            }
            let unknown = params.rest();
            if !unknown.is_empty() {
                return Err(Error::invalid(
                    "url",
                    format!(
                        "unknown sled URL parameter in `{}` (known: cache_mb)",
                        unknown.trim_start_matches('?')
                    ),
                ));
            }
        }
        Ok((path.to_owned(), options))
    }
}

/// Databases this process has open, by canonical path.
static OPEN: Mutex<BTreeMap<PathBuf, Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// A sled database of this process, shared by the store, the limiter and
/// the meter: the open handle (swapped for a new one when the database is
/// reopened after an I/O error, see [`Shared::open`]) and its state.
pub(crate) struct Shared {
    path: PathBuf,
    /// The open database; `None` only while it is being reopened.
    slot: RwLock<Option<Arc<Open>>>,
    /// Writes failed with an I/O error and the handle is not yet replaced.
    degraded: AtomicBool,
    /// Whether the recovery task runs.
    probing: AtomicBool,
    /// The value of [`codec::io_errors`] last looked at.
    io_errors_seen: AtomicU64,
    /// Bumped by every reopen (decoded copies made before are dropped).
    generation: AtomicU64,
    /// The last I/O error that degraded the database (for `health()`).
    last_error: Mutex<Option<String>>,
    /// sled's page cache size in bytes, as opened (and reopened).
    cache_capacity: u64,
    /// The rate limiter's per-key locks (shared by every limiter of this
    /// database, and kept across a reopen).
    pub(crate) limiter_locks: limiter::KeyLocks,
    /// Held by the writers of agents (`create_agent`, `create_agents`,
    /// `update_agent`): a batch is written in several transactions, and no
    /// other write may contradict its checks meanwhile (see the `bulk`
    /// module).
    agent_writes: Mutex<()>,
}

/// One open handle of the database and its trees.
pub(crate) struct Open {
    db: ::sled::Db,
    pub(crate) t: Trees,
    /// The group commit of this handle's flushes (see [`Shared::flush`]).
    flushes: FlushGroup,
}

/// Group commit: concurrent callers of [`Shared::flush`] share sled
/// flushes instead of each sealing, writing and syncing a log buffer of
/// its own.
///
/// A caller takes a ticket after its write; one flush runs at a time
/// (`running`), and it covers every ticket handed out before it started
/// (`requested`, read then). A caller whose ticket a completed flush covers
/// (`done`) returns without flushing; the others queue on `running` (fair,
/// first come first served) and the first of them flushes for all.
#[derive(Default)]
struct FlushGroup {
    /// Tickets handed out.
    requested: AtomicU64,
    /// The highest ticket a successful flush covers.
    done: AtomicU64,
    running: tokio::sync::Mutex<()>,
    /// sled flushes run (for the tests).
    #[cfg(test)]
    runs: AtomicU64,
}

impl Drop for Open {
    fn drop(&mut self) {
        // Best effort on a clean shutdown: limiter state is then kept too.
        let _ = self.db.flush();
    }
}

/// How often a degraded database is checked for space and reopened.
const RECOVERY_EVERY: Duration = Duration::from_secs(1);
/// How long a reopen waits for the operations holding the failed handle.
const HANDLE_RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Bytes written (and removed) to check that the disk has room again before
/// a reopen: two of sled's default 512 KiB log segments.
const SPACE_PROBE_BYTES: usize = 1 << 20;
/// The space probe's file, in the database directory.
const SPACE_PROBE_FILE: &str = "sentryagent-space-probe";

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
    fn new(path: PathBuf, open: Open, cache_capacity: u64) -> Shared {
        Shared {
            cache_capacity,
            limiter_locks: limiter::KeyLocks::new(),
            path,
            slot: RwLock::new(Some(Arc::new(open))),
            degraded: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            io_errors_seen: AtomicU64::new(codec::io_errors()),
            generation: AtomicU64::new(0),
            last_error: Mutex::new(None),
            agent_writes: Mutex::new(()),
        }
    }

    /// The agent-write lock (see the field).
    pub(crate) fn agent_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.agent_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The open handle: every read and write goes through it. Cheap (a
    /// read lock and an `Arc` clone, no allocation). Fails with
    /// [`Error::Unavailable`] only during a reopen.
    ///
    /// When an I/O error was met since the last call (by any sled database
    /// of the process), it first starts the recovery task, which checks
    /// this database (see [`Shared::recover`]).
    pub(crate) fn open(self: &Arc<Self>) -> Result<Arc<Open>> {
        let seen = codec::io_errors();
        if seen != self.io_errors_seen.load(Ordering::Relaxed) {
            self.io_errors_seen.store(seen, Ordering::Relaxed);
            self.start_recovery();
        }
        match &*self.slot.read().unwrap_or_else(PoisonError::into_inner) {
            Some(open) => Ok(Arc::clone(open)),
            None => Err(Error::Unavailable {
                message: format!(
                    "sled: the database at {} is being reopened after an I/O error",
                    self.path.display()
                ),
                source: None,
            }),
        }
    }

    /// Bumped by every reopen.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes every write so far durable: sled's synchronous flush (write
    /// out and fsync), on Tokio's blocking pool when in a Tokio runtime.
    /// Concurrent callers share flushes ([`FlushGroup`]): while one runs,
    /// the writes of the callers that arrive meanwhile wait for the next,
    /// which covers them all; a failed flush covers nobody (each waiting
    /// caller then flushes in turn and sees its own result).
    ///
    /// Not `flush_async`: in sled 0.34 concurrent `flush_async` calls can
    /// hang for ever (its flushes wait, on sled's own thread pool, for log
    /// writes queued on that same pool; upstream issues 1241 and 1308, fixed
    /// only in unreleased versions).
    ///
    /// A write and the flush that follows it read the handle with no await
    /// in between, and a reopen waits (at least [`RECOVERY_EVERY`] after the
    /// failed handle stopped taking writes) for every holder of the failed
    /// handle: a write is never made on one handle and flushed on another.
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<()> {
        let open = self.open()?;
        // The caller's write is in sled's log buffers: any flush that
        // starts from now on makes it durable (group commit, see
        // [`FlushGroup`]).
        let g = &open.flushes;
        let ticket = g.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let running = g.running.lock().await;
        if g.done.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let covers = g.requested.load(Ordering::SeqCst);
        #[cfg(test)]
        g.runs.fetch_add(1, Ordering::SeqCst);
        let db = open.db.clone();
        let flushed = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || db.flush())
                .await
                .map_err(|e| Error::internal("sled: the flush task failed", e))?,
            Err(_) => db.flush(),
        };
        if flushed.is_ok() {
            g.done.fetch_max(covers, Ordering::SeqCst);
        }
        drop(running);
        drop(open);
        flushed
            .map(drop)
            .map_err(|e| sled_error(&format!("flush of {}", self.path.display()), e))
    }

    /// Starts the recovery task unless it runs (or no Tokio runtime is
    /// current: then a degraded database needs a restart, as before).
    fn start_recovery(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let me = Arc::downgrade(self);
        rt.spawn(async move { Shared::recover(me).await });
    }

    /// The recovery task. It checks the database with a small write and a
    /// flush: if they work, the I/O error was elsewhere or passing, and the
    /// task ends. Otherwise the database is degraded (sled keeps failing
    /// every write once its log met an I/O error; reads go on from the open
    /// handle), and every [`RECOVERY_EVERY`] the task checks that the disk
    /// has room again (writes, syncs and removes [`SPACE_PROBE_BYTES`]),
    /// then reopens the database: it takes the failed handle out, waits for
    /// the operations holding it to finish, drops it (sled's last flush
    /// and lock release), opens the directory again (sled recovers its log
    /// to the last durable write) and puts the new handle in. The task
    /// holds no strong reference between attempts: it ends when the
    /// database is closed.
    async fn recover(me: Weak<Shared>) {
        let Some(shared) = me.upgrade() else { return };
        match shared.check_writes().await {
            Ok(()) if !shared.degraded.load(Ordering::Acquire) => {
                shared.probing.store(false, Ordering::Release);
                return;
            }
            Ok(()) => {}
            Err(e) => {
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                shared.degraded.store(true, Ordering::Release);
            }
        }
        drop(shared);
        loop {
            tokio::time::sleep(RECOVERY_EVERY).await;
            let Some(shared) = me.upgrade() else { return };
            if shared.try_reopen().await {
                shared.degraded.store(false, Ordering::Release);
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                shared.probing.store(false, Ordering::Release);
                return;
            }
        }
    }

    /// A small write and a flush on the open handle.
    async fn check_writes(self: &Arc<Self>) -> Result<()> {
        let open = self.open()?;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        open.t
            .meta
            .insert("write_check", &at.to_be_bytes())
            .map_err(|e| sled_error("write check", e))?;
        drop(open);
        self.flush().await
    }

    /// One reopen attempt; whether the database is open and writable again.
    async fn try_reopen(self: &Arc<Self>) -> bool {
        let path = self.path.clone();
        let room = tokio::task::spawn_blocking(move || space_probe(&path)).await;
        if !matches!(room, Ok(Ok(()))) {
            return false;
        }
        // Take the failed handle out: new operations fail with
        // `Unavailable` until the new one is in.
        let old = self
            .slot
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            let deadline = Instant::now() + HANDLE_RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 {
                if Instant::now() > deadline {
                    // Still in use: put it back, try again later.
                    *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(old);
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        }
        let path = self.path.clone();
        let capacity = self.cache_capacity;
        let opened = tokio::task::spawn_blocking(move || {
            let shown = path.display().to_string();
            open_handle(&path, &shown, capacity)
        })
        .await;
        match opened {
            Ok(Ok(open)) => {
                *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(open));
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            // The slot stays empty (operations answer `Unavailable`); the
            // next attempt opens again.
            _ => false,
        }
    }

    /// Health: a read of the format key, size on disk and record counts;
    /// `degraded` while writes fail after an I/O error.
    pub(crate) fn health(self: &Arc<Self>, part: &str) -> BackendHealth {
        let open = match self.open() {
            Ok(open) => open,
            Err(e) => return BackendHealth::down("sled", e),
        };
        let mut h = Self::health_of(&open, &self.path, part)
            .with_detail("cache_capacity_bytes", self.cache_capacity);
        if self.degraded.load(Ordering::Acquire) {
            let why = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            h.status = HealthStatus::Degraded;
            h.error = Some(format!(
                "writes fail after an I/O error ({why}); reads go on, the database is \
                 reopened once the disk has room"
            ));
            h = h.with_detail("degraded", true);
        }
        h
    }

    fn health_of(open: &Open, path: &Path, part: &str) -> BackendHealth {
        /// Counting stops here, so a health check stays cheap.
        const COUNT_CAP: usize = 10_000;
        let start = Instant::now();
        match open.t.meta.get("format") {
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
            .with_detail("path", path.display().to_string())
            .with_detail("trees", open.db.tree_names().len());
        match open.db.size_on_disk() {
            Ok(n) => h = h.with_detail("size_on_disk_bytes", n),
            Err(e) => h = h.with_detail("size_on_disk_error", e.to_string()),
        }
        match part {
            "store" => h
                .with_detail("tenants", count(&open.t.tenants))
                .with_detail("agents", count(&open.t.agents))
                .with_detail("marketplace_agents", count(&open.t.marketplace))
                .with_detail("markers", count(&open.t.markers))
                .with_detail("trust_policies", count(&open.t.trust_policies)),
            "meter" => h
                .with_detail("usage_counters", count(&open.t.usage))
                .with_detail("batch_keys", count(&open.t.usage_batches)),
            _ => h.with_detail("rate_limit_keys", count(&open.t.rate_limits)),
        }
    }
}

/// Writes, syncs and removes [`SPACE_PROBE_BYTES`] in `dir`.
fn space_probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let p = dir.join(SPACE_PROBE_FILE);
    let written = (|| {
        let mut f = std::fs::File::create(&p)?;
        f.write_all(&vec![0u8; SPACE_PROBE_BYTES])?;
        f.sync_all()
    })();
    let removed = std::fs::remove_file(&p);
    written.and(removed)
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
        Self::open_with(path, &SledOptions::default())
    }

    /// Opens (creating if needed) the database in directory `path` with
    /// `options`, as [`open`](Self::open) does. Options apply when this
    /// process opens the directory first; opening it again returns the
    /// open database, and an explicit cache size other than the one it was
    /// opened with is [`Error::Invalid`].
    pub fn open_with(path: impl AsRef<Path>, options: &SledOptions) -> Result<SledBackend> {
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
            if let Some(asked) = options.cache_capacity
                && asked != shared.cache_capacity
            {
                return Err(Error::invalid(
                    "url",
                    format!(
                        "the sled database at {shown} is already open with a cache of {} bytes, \
                         not {asked}: give every URL naming it the same cache_mb",
                        shared.cache_capacity
                    ),
                ));
            }
            return Ok(SledBackend { shared });
        }
        let capacity = options.effective_cache_capacity();
        let handle = open_handle(&canonical, &shown, capacity)?;
        let shared = Arc::new(Shared::new(canonical.clone(), handle, capacity));
        open.insert(canonical, Arc::downgrade(&shared));
        Ok(SledBackend { shared })
    }

    /// The directory of the database (canonical).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// sled's page cache size, in bytes, that the database was opened with.
    pub fn cache_capacity(&self) -> u64 {
        self.shared.cache_capacity
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

fn open_handle(canonical: &Path, shown: &str, cache_capacity: u64) -> Result<Open> {
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
        let config = ::sled::Config::new()
            .path(canonical)
            .cache_capacity(cache_capacity);
        match config.open() {
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
    bulk::roll_back(&t)?;
    marketplace::build_index(&t)?;
    Ok(Open {
        db,
        t,
        flushes: FlushGroup::default(),
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

#[cfg(test)]
mod flush_tests {
    use super::*;

    /// The callers that arrive while a flush runs share the next one, and
    /// each returns only once its own write is durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_share_one_sled_flush() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let shared = backend.shared.clone();
        let open = shared.open().unwrap();
        let g = &open.flushes;
        // As if a flush ran: the callers below queue behind it.
        let running = g.running.lock().await;
        let callers: Vec<_> = (0..16u32)
            .map(|i| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let open = shared.open().unwrap();
                    open.t
                        .settings
                        .insert(format!("k{i}"), &i.to_be_bytes()[..])
                        .unwrap();
                    drop(open);
                    shared.flush().await
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while g.requested.load(Ordering::SeqCst) < 16 {
            assert!(Instant::now() < deadline, "the callers took no ticket");
            tokio::task::yield_now().await;
        }
        assert!(
            callers.iter().all(|c| !c.is_finished()),
            "no caller returns before a flush covers its write"
        );
        drop(running);
        for c in callers {
            c.await.unwrap().unwrap();
        }
        assert_eq!(g.runs.load(Ordering::SeqCst), 1, "one flush for 16 callers");
        assert_eq!(g.done.load(Ordering::SeqCst), 16);
        // A caller after them is covered by no earlier flush.
        shared.flush().await.unwrap();
        assert_eq!(g.runs.load(Ordering::SeqCst), 2);
        drop(open);
        drop(shared);
        drop(backend);
        let again = SledBackend::open(dir.path()).unwrap();
        let open = again.shared.open().unwrap();
        for i in 0..16u32 {
            assert_eq!(
                open.t.settings.get(format!("k{i}")).unwrap().as_deref(),
                Some(&i.to_be_bytes()[..])
            );
        }
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    fn setting(shared: &Arc<Shared>, name: &str) -> Option<Vec<u8>> {
        let open = shared.open().unwrap();
        open.t.settings.get(name).unwrap().map(|v| v.to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_swaps_the_handle_and_keeps_every_durable_write() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let shared = backend.shared.clone();
        shared
            .open()
            .unwrap()
            .t
            .settings
            .insert("before", &b"1"[..])
            .unwrap();
        shared.flush().await.unwrap();
        assert_eq!(shared.generation(), 0);

        assert!(shared.try_reopen().await, "reopened");
        assert_eq!(shared.generation(), 1);
        assert_eq!(setting(&shared, "before").as_deref(), Some(&b"1"[..]));
        // The new handle takes writes, durably.
        shared
            .open()
            .unwrap()
            .t
            .settings
            .insert("after", &b"2"[..])
            .unwrap();
        shared.flush().await.unwrap();
        drop(shared);
        drop(backend);
        let again = SledBackend::open(dir.path()).unwrap();
        assert_eq!(setting(&again.shared, "before").as_deref(), Some(&b"1"[..]));
        assert_eq!(setting(&again.shared, "after").as_deref(), Some(&b"2"[..]));
        assert!(
            !dir.path().join(SPACE_PROBE_FILE).exists(),
            "the space probe leaves nothing behind"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_waits_for_the_operations_holding_the_old_handle() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let shared = backend.shared.clone();
        let held = shared.open().unwrap();
        let reopen = tokio::spawn({
            let shared = shared.clone();
            async move { shared.try_reopen().await }
        });
        // While the old handle is held, it is out of the slot: new
        // operations are refused (never served by a second handle).
        let mut refused = false;
        for _ in 0..200 {
            if let Err(e) = shared.open() {
                assert!(matches!(e, Error::Unavailable { .. }), "{e}");
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused, "operations wait for the reopen");
        assert!(!reopen.is_finished(), "the reopen waits for the holder");
        drop(held);
        assert!(reopen.await.unwrap(), "reopened once the holder finished");
        assert!(shared.open().is_ok());
        assert_eq!(shared.generation(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_database_is_not_degraded_by_an_io_error_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let shared = backend.shared.clone();
        // An I/O error of another database: this one checks itself and
        // finds its writes working.
        let _ = codec::sled_error("test", ::sled::Error::Io(std::io::ErrorKind::Other.into()));
        let _ = shared.open().unwrap();
        for _ in 0..200 {
            if !shared.probing.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!shared.probing.load(Ordering::Acquire), "the check ended");
        assert!(!shared.degraded.load(Ordering::Acquire));
        assert_eq!(shared.generation(), 0, "no reopen");
        assert_eq!(shared.health("store").status, HealthStatus::Up);
    }
}

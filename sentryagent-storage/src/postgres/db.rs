//! The pool, schema, migrations, error mapping and retries shared by the
//! Postgres store and meter.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sentryagent_core::BackendHealth;
use sentryagent_core::{Error, Result};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::options::{PostgresOptions, validate_schema};
use super::outage::Outage;

/// The versioned migrations, embedded: `(version, description, SQL)`. Files
/// in `migrations/` are named `<version>_<description>.sql`; a unit test
/// checks that this list and the directory agree. Never edit an applied
/// migration: add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "store", include_str!("../../migrations/0001_store.sql")),
    (2, "usage", include_str!("../../migrations/0002_usage.sql")),
    (
        3,
        "people",
        include_str!("../../migrations/0003_people.sql"),
    ),
    (
        4,
        "federation",
        include_str!("../../migrations/0004_federation.sql"),
    ),
    (
        5,
        "marketplace_directory",
        include_str!("../../migrations/0005_marketplace_directory.sql"),
    ),
    (
        6,
        "client_notify",
        include_str!("../../migrations/0006_client_notify.sql"),
    ),
    (
        7,
        "market_key_counts",
        include_str!("../../migrations/0007_market_key_counts.sql"),
    ),
];

/// The table recording applied migrations (in the store's schema).
pub(crate) const MIGRATIONS_TABLE: &str = "_sentryagent_migrations";

/// How often an operation is retried after a serialization failure or a
/// deadlock (SQLSTATE 40001, 40P01) before the error is returned.
const MAX_RETRIES: u32 = 5;

/// Everything the store and the meter share: one pool on one schema.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: PgPool,
    /// How the pool's connections are opened (for connections of its own,
    /// such as the client cache's listener).
    pub(crate) connect: Arc<PgConnectOptions>,
    schema: Arc<str>,
    max_connections: u32,
    in_flight: Arc<AtomicU64>,
    /// Fast failure while the database cannot be reached.
    outage: Arc<Outage>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// What an operation body fails with: a database error still to be mapped
/// (and maybe retried), or a final answer.
pub(crate) enum Fail {
    Db(sqlx::Error),
    Done(Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Done(e)
    }
}

pub(crate) type Step<T> = std::result::Result<T, Fail>;

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(Cow::into_owned),
        _ => None,
    }
}

/// Maps a unique violation (23505) to `AlreadyExists(kind)`.
pub(crate) fn unique(kind: &'static str) -> impl FnOnce(sqlx::Error) -> Fail {
    move |e| {
        if sqlstate(&e).as_deref() == Some("23505") {
            Fail::Done(Error::already_exists(kind))
        } else {
            Fail::Db(e)
        }
    }
}

fn retryable(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("40001" | "40P01"))
}

/// Whether the connection an operation ran on was dead: its socket closed
/// or reset, or the server ended the session (administrator shutdown,
/// crash recovery, SQLSTATE class 08). Without a ping before acquiring, a
/// connection that died while idle shows up this way on first use.
fn dead_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => matches!(
            sqlstate(e).as_deref(),
            Some("57P01" | "57P02" | "57P03") | Some("08000" | "08003" | "08006")
        ),
        _ => false,
    }
}

/// Maps a driver error onto the core's meanings.
pub(crate) fn to_error(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(Cow::into_owned).unwrap_or_default();
            let message = db.message().to_owned();
            match code.get(..2).unwrap_or_default() {
                // A unique violation not mapped by its caller.
                _ if code == "23505" => Error::already_exists("record"),
                // Data exceptions (a NUL character, a number out of range),
                // other integrity violations, program limits (a value too
                // large for an index or a text search vector).
                "22" | "23" | "54" => {
                    Error::invalid("input", format!("refused by Postgres: {message}"))
                }
                // Connection, resources, shutdown, rolled-back transactions,
                // authentication, missing database.
                "08" | "53" | "57" | "40" | "28" | "3D" => {
                    Error::unavailable(format!("postgres: {message}"), sqlx::Error::Database(db))
                }
                _ => Error::internal(format!("postgres: {message}"), sqlx::Error::Database(db)),
            }
        }
        sqlx::Error::PoolTimedOut => Error::unavailable(
            "postgres: no connection available within the acquire timeout",
            sqlx::Error::PoolTimedOut,
        ),
        e @ (sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed) => Error::unavailable(format!("postgres: {e}"), e),
        sqlx::Error::Configuration(c) => Error::invalid("url", format!("postgres: {c}")),
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. }) => {
            Error::internal("postgres: stored data could not be read", e)
        }
        e => Error::internal(format!("postgres: {e}"), e),
    }
}

/// A short, jittered wait before retry `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    let base = 2u64 << attempt.min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) % base.max(1));
    Duration::from_millis(base + jitter)
}

impl Db {
    /// Opens the pool, creates the schema if missing and runs the
    /// migrations (under sqlx's advisory lock, so several nodes may open at
    /// once).
    pub(crate) async fn connect(options: &PostgresOptions) -> Result<Db> {
        options.validate()?;
        let mut connect: PgConnectOptions = options.url.parse().map_err(|e: sqlx::Error| {
            Error::invalid("url", format!("not a Postgres URL: {}", short(&e)))
        })?;
        connect = connect.statement_cache_capacity(options.statement_cache_capacity);
        if connect.get_application_name().is_none() {
            connect = connect.application_name("sentryagent");
        }
        let schema: Arc<str> = options.schema.as_str().into();
        let set_path: Arc<str> = format!("SET search_path TO {}", quote_ident(&schema)).into();
        let outage = Outage::new(connect.clone());
        // No ping when a connection leaves the idle queue
        // (`test_before_acquire`): a connection that died while idle fails
        // the operation that gets it with `Unavailable` (and is then
        // dropped), rather than costing every operation a round trip.
        // Reads on the token path retry once on a dead connection
        // (`run_read`).
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(options.max_lifetime)
            .after_connect(move |conn, _meta| {
                let sql = set_path.to_string();
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(to_error)?;
        let db = Db {
            pool,
            connect: Arc::new(connect),
            schema,
            max_connections: options.max_connections,
            in_flight: Arc::new(AtomicU64::new(0)),
            outage,
        };
        db.create_schema().await?;
        db.migrate().await?;
        Ok(db)
    }

    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// `CREATE SCHEMA IF NOT EXISTS` is not safe against a concurrent
    /// creation (it may fail with a unique violation): either way the schema
    /// exists afterwards.
    async fn create_schema(&self) -> Result<()> {
        validate_schema(&self.schema)?;
        let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&self.schema));
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(sqlstate(&e).as_deref(), Some("23505" | "42P06")) => Ok(()),
            Err(e) => Err(to_error(e)),
        }
    }

    /// Applies the embedded migrations. sqlx's migrator holds a session
    /// advisory lock (per database) while it works, so concurrent opens
    /// apply each migration once; a failed run closes its connection, which
    /// releases the lock.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(to_error)?;
        match migrator().run(&mut *conn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.close().await;
                Err(Error::Unavailable {
                    message: format!("postgres: migrations failed: {e}"),
                    source: Some(Box::new(e)),
                })
            }
        }
    }

    /// Runs `op` (a whole operation, transaction included), retrying it on a
    /// serialization failure or deadlock, and maps its error. While the
    /// database is marked down (see [`Outage`](super::outage)) it fails at
    /// once with [`Error::Unavailable`].
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        self.run_with(op, false).await
    }

    async fn run_with<T, F, Fut>(&self, mut op: F, read_only: bool) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        let _guard = InFlight::new(&self.in_flight);
        let mut attempt = 0;
        let mut reconnected = false;
        loop {
            let Some(step) = self.outage.guard(op()).await else {
                return Err(Outage::refusal());
            };
            match step {
                Ok(v) => return Ok(v),
                Err(Fail::Done(e)) => return Err(e),
                Err(Fail::Db(e)) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                // The retry observes its own error, if any.
                Err(Fail::Db(e)) if read_only && !reconnected && dead_connection(&e) => {
                    reconnected = true;
                }
                Err(Fail::Db(e)) => {
                    self.outage.observe(&e);
                    return Err(to_error(e));
                }
            }
        }
    }

    /// [`run`](Self::run) for an operation that only reads: it is also
    /// retried once when its connection turns out to be dead (the pool does
    /// not ping a connection before handing it out; the dead one is dropped,
    /// so the retry gets another). Writes are not retried that way, since a
    /// write whose connection died may have committed.
    pub(crate) async fn run_read<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        self.run_with(op, true).await
    }

    /// Ping latency and pool figures.
    /// While the database is marked down, `down` at once.
    pub(crate) async fn health(&self) -> BackendHealth {
        let start = Instant::now();
        let ping = match self
            .outage
            .guard(sqlx::query("SELECT 1").execute(&self.pool))
            .await
        {
            Some(Ok(done)) => Ok(done),
            Some(Err(e)) => {
                self.outage.observe(&e);
                Err(to_error(e))
            }
            None => Err(Outage::refusal()),
        };
        let latency = start.elapsed();
        let size = u64::from(self.pool.size());
        let idle = u64::try_from(self.pool.num_idle()).unwrap_or(u64::MAX);
        let in_use = size.saturating_sub(idle);
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let h = match ping {
            Ok(_) => BackendHealth::up("postgres", latency),
            Err(e) => BackendHealth::down("postgres", e),
        };
        h.with_detail("schema", self.schema.to_string())
            .with_detail("pool_max", self.max_connections)
            .with_detail("pool_size", size)
            .with_detail("pool_idle", idle)
            .with_detail("pool_in_use", in_use)
            .with_detail("operations_in_flight", in_flight)
            .with_detail("operations_waiting", in_flight.saturating_sub(in_use))
            .with_detail("outage", self.outage.is_down())
    }
}

/// Counts operations in flight (for `health()`).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    // A node running older code may open a database that newer code has
    // already migrated further (a rolling upgrade): migrations are additive.
    m.set_ignore_missing(true);
    // Our own bookkeeping table, so that another sqlx application sharing
    // the schema keeps its own versions.
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// A schema name (already validated: letters, digits, `_`) as a quoted
/// identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn short(e: &sqlx::Error) -> String {
    e.to_string().chars().take(200).collect()
}

/// An advisory-lock key for `name` within `namespace` (32-bit FNV-1a over
/// the schema and the name), for `pg_advisory_xact_lock(int4, int4)`. Two
/// names may share a key: that only serializes them.
pub(crate) fn lock_key(schema: &str, name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in schema.bytes().chain([0u8]).chain(name.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// `u64` to a `bigint` column; larger values are refused.
pub(crate) fn to_i64(v: u64, field: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "too large (at most 2^63 - 1)"))
}

/// A `bigint` column back to `u64`.
pub(crate) fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Internal {
        message: "postgres: negative count stored".into(),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_list_matches_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
            .collect();
        assert_eq!(files, listed, "every migration file is embedded, in order");
        for ((_, _, sql), file) in MIGRATIONS.iter().zip(&files) {
            assert_eq!(*sql, std::fs::read_to_string(dir.join(file)).unwrap());
        }
        let m = migrator();
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(m.table_name, MIGRATIONS_TABLE);
    }

    #[test]
    fn lock_keys_are_stable_and_spread() {
        assert_eq!(lock_key("public", "tnt_1"), lock_key("public", "tnt_1"));
        assert_ne!(lock_key("public", "tnt_1"), lock_key("public", "tnt_2"));
        assert_ne!(lock_key("a", "bc"), lock_key("ab", "c"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("sa_test"), "\"sa_test\"");
    }
}

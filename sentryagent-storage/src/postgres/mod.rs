//! The Postgres backend (feature `postgres`): [`PostgresStore`] (an
//! [`AgentStore`](sentryagent_core::AgentStore)) and [`PostgresUsageMeter`]
//! (a [`UsageMeter`](sentryagent_core::UsageMeter)), for several nodes
//! sharing one database.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sentryagent_storage::postgres::{PostgresOptions, PostgresStore};
//!
//! # async fn f() -> sentryagent_core::Result<()> {
//! let options = PostgresOptions::from_url("postgres://app@db.internal/sentryagent?schema=idp")?;
//! let store = PostgresStore::connect(&options).await?;
//! let meter = store.usage_meter(); // the same pool
//! let idp = sentryagent_core::Idp::builder("https://idp.example")
//!     .store(Arc::new(store))
//!     .meter(Arc::new(meter))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Schema and migrations
//!
//! The tables live in one schema ([`PostgresOptions::schema`], default
//! `public`), created if missing. Every pooled connection sets its
//! `search_path` to that schema when it opens, so several deployments (or
//! parallel test runs) can share a database, each in its own schema.
//!
//! Versioned migrations (the crate's `migrations/` directory, embedded in the
//! binary, recorded in the schema's `_sentryagent_migrations` table) are
//! applied on open through sqlx's migrator, which takes a
//! Postgres advisory lock for the database while it works: nodes opening at
//! once apply each migration exactly once, the others wait and find it done.
//! A node running older code accepts a database migrated further by newer
//! code (migrations only add).
//!
//! # Pool
//!
//! [`PostgresOptions`] sets the pool (sizes, timeouts, statement cache),
//! from URL query parameters or in code. `health()` reports the ping
//! latency and the pool's size, idle and in-use connections, and the
//! operations in flight and waiting for a connection.
//!
//! A connection is not pinged when it leaves the idle queue (sqlx's
//! `test_before_acquire` is off): one that died while idle fails the
//! operation that gets it with `Unavailable` and is dropped; the token
//! path's read is retried once on another connection.
//!
//! # Outages
//!
//! When an operation fails because the database cannot be reached (or
//! waits more than half a second), one background probe connects on its
//! own and runs `SELECT 1`; if that fails too the database is marked down
//! and every operation fails at once with
//! [`Error::Unavailable`](sentryagent_core::Error::Unavailable) (HTTP 503
//! with `Retry-After`) instead of waiting for the pool's acquire timeout.
//! The probe tries again every 250 ms and clears the mark as soon as
//! Postgres answers; `health()` reports `outage: true` meanwhile.
//!
//! # Client cache
//!
//! The token path's client records are cached in the process, invalidated
//! across nodes by `LISTEN`/`NOTIFY` and revalidated by version: see
//! [the client cache](PostgresStore#client-cache) and the `client_cache*`
//! options of [`PostgresOptions`].
//!
//! Queries are built at run time (`sqlx::query`), never by the compile-time
//! checked macros: building needs no database.

mod client_cache;
mod db;
mod directory;
mod meter;
mod options;
mod outage;
mod people;
mod search;
mod store;
mod trust_policies;

pub use meter::PostgresUsageMeter;
pub use options::PostgresOptions;
pub use store::{PostgresStore, SEARCH_SPARSE_CAP};

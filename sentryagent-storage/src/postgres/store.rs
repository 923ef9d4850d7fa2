//! [`PostgresStore`]: every store trait on Postgres.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Row};

use sentryagent_core::BackendHealth;
use sentryagent_core::store::{
    NewAgentRecord, agent_batch_tenants, check_agent_batch, check_agent_batch_limits,
};
use sentryagent_core::{AdminKey, ClientSecret};
use sentryagent_core::{
    AdminKeyId, Agent, AgentId, AgentStateCounts, Error, LifecycleState, LimitKind,
    MarketplaceQuery, Result, Tenant, TenantId, Timestamp,
};
use sentryagent_core::{
    AdminKeyStore, AgentStore, AuditLog, Backend, ClientRecord, IntrospectionRecord, MarkerStore,
    SettingStore, SigningKeyRecord, SigningKeyStore, TenantStore,
};
use sentryagent_core::{AuditEvent, AuditQuery, ChainHead, NewAuditEvent};
use sentryagent_core::{Page, PageRequest};

use std::sync::Arc;

use super::client_cache::{self, ClientCache, Forget};
use super::db::{Db, Step, lock_key, to_i64, to_u64, unique};
use super::directory;
use super::meter::PostgresUsageMeter;
use super::options::PostgresOptions;
use super::search;
use sentryagent_core::marketplace_index::IndexKind;

/// Most agents a marketplace text search reads from the text index for its
/// rare words (after its cursor) before paging over them in id order; with
/// more, it walks the marketplace's id index instead. Words the statistics
/// count on at most half this many agents are rare.
pub const SEARCH_SPARSE_CAP: usize = 4096;

/// Advisory-lock namespace of a tenant's agent count (`max_agents`).
const LOCK_AGENT_LIMIT: i32 = 0x5341_0001;
/// Advisory-lock namespace of an audit chain.
const LOCK_AUDIT_CHAIN: i32 = 0x5341_0002;

/// Every store trait on Postgres.
///
/// Every entity is stored whole as JSONB, beside the columns its keys,
/// indexes and queries need, which are derived from the same value in the
/// same statement. How each rule of the trait holds:
///
/// - **unique keys**: primary keys and unique constraints; a violation
///   (SQLSTATE 23505) is [`Error::AlreadyExists`];
/// - **optimistic revisions**: `UPDATE ... WHERE id = $1 AND revision = $2`;
///   when no row changes, a second read tells [`Error::NotFound`] from
///   [`Error::Conflict`];
/// - **`max_agents`**: in one transaction, a transaction-scoped advisory lock
///   on the tenant, the insert, then the count of the tenant's other live
///   agents; over the limit rolls back, so concurrent registrations never
///   exceed it;
/// - **audit chains**: in one transaction, an advisory lock on the chain,
///   its head, [`AuditEvent::seal`], the insert;
/// - **markers**: one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at
///   <= now RETURNING`;
/// - **marketplace**: a `tsvector` of the agent's words with a GIN index and
///   prefix `tsquery`s (see the `search` module), GIN indexes on
///   capabilities and tags, the directory keys (`market_keys` with a GIN
///   index, `agent_market_keys` for prefixes, `market_key_counts` for the
///   counts; see the
///   `directory` module), cursor paging by id (never `OFFSET`); results are
///   exactly [`MarketplaceQuery::matches_listing`];
/// - **audit queries**: by chain and sequence number (primary key) or time
///   (index `(chain, at, seq)`); the cursor is the sequence number.
///
/// Multi-row changes run in transactions; a serialization failure or
/// deadlock (40001, 40P01) retries the whole operation up to five times.
/// Bad input the database refuses (a NUL character in text, a number out of
/// range) is [`Error::Invalid`]; an unreachable database is
/// [`Error::Unavailable`].
///
/// JSONB keeps numbers as decimals: a float in an agent's `custom_claims`
/// written in exponent form (`1e16`) is read back as the equal integer.
///
/// # Client cache
///
/// [`get_client`](AgentStore::get_client), what the token endpoint reads
/// on every request (the agent, its client secrets and its tenant), is
/// served from a cache in the process when [`PostgresOptions::client_cache`]
/// is on (the default; URL parameter `client_cache=off` turns it off):
///
/// - triggers (migration 6) send a notification on the channel
///   `sentryagent_clients` when an agent, a client secret or a tenant
///   changes (rotation, revocation, suspension, any update), and each store
///   `LISTEN`s on a connection of its own (`application_name`
///   `sentryagent-listen:<schema>`) and drops the records named, so other
///   nodes see a change within milliseconds of its commit; this store drops
///   them itself before the write returns;
/// - records are cached only while that listener is connected; when it
///   reconnects, the cache is emptied (notifications may have been missed);
/// - a record older than [`PostgresOptions::client_cache_revalidate`]
///   (default 250 ms) is checked before use by one query comparing the
///   version (`xmin`) of its rows, so even a lost notification keeps a
///   revoked secret usable on a node for at most that long;
/// - at most [`PostgresOptions::client_cache_capacity`] records (default
///   4,096); unknown clients are not cached.
///
/// `health()` reports the cache's figures (`client_cache_*`: entries, hits,
/// misses, revalidations, invalidations, listener connects).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(super) db: Db,
    /// The token path's client records, when the cache is on.
    clients: Option<Arc<ClientCache>>,
    /// Lexeme frequencies for marketplace text search.
    lexemes: Arc<search::LexemeStats>,
}

pub(super) fn doc<T: DeserializeOwned>(row: &PgRow, column: &str) -> Step<T> {
    let Json(v): Json<T> = row.try_get(column)?;
    Ok(v)
}

pub(super) fn page_of<T>(mut items: Vec<T>, size: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next_cursor }
}

pub(super) fn limit_of(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1)
}

fn chain_of(tenant: Option<&TenantId>) -> &str {
    tenant.map_or("", TenantId::as_str)
}

/// The columns of an agent row, derived from the agent.
struct AgentRow<'a> {
    agent: &'a Agent,
    revision: i64,
    lexemes: Vec<String>,
    /// Its marketplace directory keys (`market_keys`).
    market_keys: Vec<String>,
}

impl<'a> AgentRow<'a> {
    fn new(agent: &'a Agent) -> Result<Self> {
        Ok(AgentRow {
            agent,
            revision: to_i64(agent.revision, "revision")?,
            lexemes: search::lexemes(agent),
            market_keys: directory::agent_keys(agent),
        })
    }
}

/// An agent row of a bulk insert, as one element of its JSON array.
#[derive(serde::Serialize)]
struct BulkAgentRow<'a> {
    id: &'a str,
    tenant_id: &'a str,
    name: &'a str,
    state: &'a str,
    revision: i64,
    in_marketplace: bool,
    capabilities: &'a [String],
    tags: &'a [String],
    category: Option<&'a str>,
    lexemes: Vec<String>,
    market_keys: Vec<String>,
    doc: &'a Agent,
}

impl<'a> BulkAgentRow<'a> {
    fn new(agent: &'a Agent) -> Result<Self> {
        Ok(BulkAgentRow {
            id: agent.id.as_str(),
            tenant_id: agent.tenant_id.as_str(),
            name: &agent.name,
            state: agent.state.as_str(),
            revision: to_i64(agent.revision, "revision")?,
            in_marketplace: agent.is_in_marketplace(),
            capabilities: &agent.capabilities,
            tags: &agent.tags,
            category: agent.category.as_deref(),
            lexemes: search::lexemes(agent),
            market_keys: directory::agent_keys(agent),
            doc: agent,
        })
    }
}

/// A client-secret row of a bulk insert.
#[derive(serde::Serialize)]
struct BulkSecretRow<'a> {
    id: &'a str,
    agent_id: &'a str,
    revoked: bool,
    doc: &'a ClientSecret,
}

impl PostgresStore {
    /// Connects, creates the schema if missing and applies the migrations.
    /// Several nodes may open the same database at once.
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        let db = Db::connect(options).await?;
        directory::backfill(&db).await?;
        let clients = if options.client_cache {
            Some(
                ClientCache::start(
                    &db,
                    options.client_cache_capacity,
                    options.client_cache_revalidate,
                )
                .await,
            )
        } else {
            None
        };
        Ok(PostgresStore {
            db,
            clients,
            lexemes: Arc::default(),
        })
    }

    /// A usage meter on the same pool.
    pub fn usage_meter(&self) -> PostgresUsageMeter {
        PostgresUsageMeter::from_db(self.db.clone())
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        self.db.schema()
    }

    /// Closes the pool, which its [`usage_meter`](Self::usage_meter)s share
    /// (waiting for connections in use to come back).
    pub async fn close(&self) {
        if let Some(c) = &self.clients {
            c.stop();
        }
        self.db.pool.close().await;
    }

    pub(super) async fn get_doc<T: DeserializeOwned + Send + Unpin>(
        &self,
        sql: &'static str,
        key: &str,
        kind: &'static str,
    ) -> Result<T> {
        self.db
            .run(|| async {
                let row = sqlx::query(sql)
                    .bind(key)
                    .fetch_optional(&self.db.pool)
                    .await?;
                match row {
                    Some(r) => doc(&r, "doc"),
                    None => Err(Error::not_found(kind).into()),
                }
            })
            .await
    }
}

#[async_trait]
impl Backend for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn health(&self) -> BackendHealth {
        let health = self.db.health().await;
        match &self.clients {
            Some(c) => c.report(health),
            None => health.with_detail("client_cache_live", false),
        }
    }
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        let revision = to_i64(tenant.revision, "revision")?;
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO tenants (id, slug, revision, doc, market_keys) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant.id.as_str())
                .bind(&tenant.slug)
                .bind(revision)
                .bind(Json(tenant))
                .bind(directory::publisher_keys(tenant))
                .execute(&self.db.pool)
                .await
                .map_err(unique("tenant"))?;
                Ok(())
            })
            .await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        self.get_doc(
            "SELECT doc FROM tenants WHERE id = $1",
            id.as_str(),
            "tenant",
        )
        .await
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        self.get_doc("SELECT doc FROM tenants WHERE slug = $1", slug, "tenant")
            .await
    }

    async fn get_tenants(&self, ids: &[TenantId]) -> Result<Vec<Tenant>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<&str> = ids.iter().map(TenantId::as_str).collect();
        self.db
            .run(|| async {
                let rows = sqlx::query("SELECT doc FROM tenants WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&self.db.pool)
                    .await?;
                rows.iter().map(|r| doc(r, "doc")).collect()
            })
            .await
    }

    async fn update_tenant(&self, tenant: &Tenant) -> Result<Tenant> {
        let expected = to_i64(tenant.revision, "revision")?;
        let mut next = tenant.clone();
        next.revision = tenant
            .revision
            .checked_add(1)
            .ok_or_else(|| Error::invalid("revision", "too large"))?;
        let revision = to_i64(next.revision, "revision")?;
        let next = &next;
        let _forget = Forget::Tenant(self.clients.as_deref(), &tenant.id);
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "UPDATE tenants SET doc = $4, revision = $3, market_keys = $6 \
                     WHERE id = $1 AND revision = $2 AND slug = $5",
                )
                .bind(tenant.id.as_str())
                .bind(expected)
                .bind(revision)
                .bind(Json(next))
                .bind(&tenant.slug)
                .bind(directory::publisher_keys(next))
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(next.clone());
                }
                let row = sqlx::query("SELECT revision, slug FROM tenants WHERE id = $1")
                    .bind(tenant.id.as_str())
                    .fetch_optional(&self.db.pool)
                    .await?;
                let Some(row) = row else {
                    return Err(Error::not_found("tenant").into());
                };
                let stored: i64 = row.try_get("revision")?;
                let slug: String = row.try_get("slug")?;
                if stored == expected && slug != tenant.slug {
                    return Err(Error::invalid("slug", "cannot change").into());
                }
                Err(Error::conflict("tenant was changed concurrently").into())
            })
            .await
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let size = page.size();
        self.db
            .run(|| async {
                let rows = sqlx::query(
                    "SELECT doc FROM tenants WHERE ($1::text IS NULL OR id > $1) \
                     ORDER BY id LIMIT $2",
                )
                .bind(page.cursor.as_deref())
                .bind(limit_of(size))
                .fetch_all(&self.db.pool)
                .await?;
                let items = rows
                    .iter()
                    .map(|r| doc::<Tenant>(r, "doc"))
                    .collect::<Step<Vec<_>>>()?;
                Ok(page_of(items, size, |t| t.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl AgentStore for PostgresStore {
    async fn create_agent(
        &self,
        agent: &Agent,
        secret: Option<&ClientSecret>,
        max_agents: Option<u64>,
    ) -> Result<()> {
        let row = AgentRow::new(agent)?;
        let row = &row;
        let lock = lock_key(self.db.schema(), agent.tenant_id.as_str());
        self.db
            .run(|| async move {
                let mut tx = self.db.pool.begin().await?;
                if max_agents.is_some() {
                    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(LOCK_AGENT_LIMIT)
                        .bind(lock)
                        .execute(&mut *tx)
                        .await?;
                }
                insert_agent(&mut tx, row).await?;
                if let Some(max) = max_agents {
                    let used: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM agents \
                         WHERE tenant_id = $1 AND state <> 'retired' AND id <> $2",
                    )
                    .bind(agent.tenant_id.as_str())
                    .bind(agent.id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    let used = to_u64(used)?;
                    if used >= max {
                        tx.rollback().await?;
                        return Err(Error::QuotaExceeded {
                            limit_kind: LimitKind::Agents,
                            tier: String::new(),
                            used,
                            limit: max,
                        }
                        .into());
                    }
                }
                if let Some(secret) = secret {
                    sqlx::query(
                        "INSERT INTO client_secrets (id, agent_id, revoked, doc) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(secret.id.as_str())
                    .bind(secret.agent_id.as_str())
                    .bind(secret.revoked_at.is_some())
                    .bind(Json(secret))
                    .execute(&mut *tx)
                    .await
                    .map_err(unique("client_secret"))?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// One transaction per batch: advisory locks on the tenants whose
    /// limit is checked (in a fixed order), one multi-row `INSERT` of the
    /// agents and one of their secrets (rows passed as one JSON array),
    /// then the live-agent counts of the batch's tenants checked against
    /// the limits; a violation rolls everything back.
    async fn create_agents(&self, batch: &[NewAgentRecord]) -> Result<()> {
        check_agent_batch(batch)?;
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch
            .iter()
            .map(|r| BulkAgentRow::new(&r.agent))
            .collect::<Result<Vec<_>>>()?;
        let rows = &Json(rows);
        let secrets = &Json(
            batch
                .iter()
                .filter_map(|r| r.secret.as_ref())
                .map(|s| BulkSecretRow {
                    id: s.id.as_str(),
                    agent_id: s.agent_id.as_str(),
                    revoked: s.revoked_at.is_some(),
                    doc: s,
                })
                .collect::<Vec<_>>(),
        );
        let tenants: Vec<&str> = agent_batch_tenants(batch)
            .into_iter()
            .map(TenantId::as_str)
            .collect();
        let tenants = &tenants;
        let limited = batch.iter().any(|r| r.max_agents.is_some());
        let mut locks: Vec<i32> = batch
            .iter()
            .filter(|r| r.max_agents.is_some())
            .map(|r| lock_key(self.db.schema(), r.agent.tenant_id.as_str()))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let locks = &locks;
        self.db
            .run(|| async move {
                let mut tx = self.db.pool.begin().await?;
                for lock in locks {
                    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(LOCK_AGENT_LIMIT)
                        .bind(*lock)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO agents (id, tenant_id, name, state, revision, in_marketplace, \
                     capabilities, tags, category, search, doc, market_keys) \
                     SELECT r->>'id', r->>'tenant_id', r->>'name', r->>'state', \
                     (r->>'revision')::bigint, (r->>'in_marketplace')::boolean, \
                     ARRAY(SELECT jsonb_array_elements_text(r->'capabilities')), \
                     ARRAY(SELECT jsonb_array_elements_text(r->'tags')), r->>'category', \
                     array_to_tsvector(ARRAY(SELECT jsonb_array_elements_text(r->'lexemes'))), \
                     r->'doc', \
                     ARRAY(SELECT jsonb_array_elements_text(r->'market_keys')) \
                     FROM jsonb_array_elements($1::jsonb) AS r",
                )
                .bind(rows)
                .execute(&mut *tx)
                .await
                .map_err(unique("agent"))?;
                if !secrets.0.is_empty() {
                    sqlx::query(
                        "INSERT INTO client_secrets (id, agent_id, revoked, doc) \
                         SELECT s->>'id', s->>'agent_id', (s->>'revoked')::boolean, s->'doc' \
                         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(s, n) \
                         ORDER BY n",
                    )
                    .bind(secrets)
                    .execute(&mut *tx)
                    .await
                    .map_err(unique("client_secret"))?;
                }
                if limited {
                    // Live agents now stored, the batch's own included.
                    let counted: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT tenant_id, count(*) FROM agents \
                         WHERE tenant_id = ANY($1) AND state <> 'retired' GROUP BY tenant_id",
                    )
                    .bind(tenants)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut stored = BTreeMap::new();
                    for (tenant, n) in counted {
                        let tenant = TenantId::parse(&tenant).map_err(|_| Error::Internal {
                            message: format!(
                                "postgres: an agent has the invalid tenant id {tenant:?}"
                            ),
                            source: None,
                        })?;
                        stored.insert(tenant, to_u64(n)?);
                    }
                    for r in batch {
                        if r.agent.state != LifecycleState::Retired
                            && let Some(n) = stored.get_mut(&r.agent.tenant_id)
                        {
                            *n = n.saturating_sub(1);
                        }
                    }
                    if let Err(e) = check_agent_batch_limits(batch, &stored) {
                        tx.rollback().await?;
                        return Err(e.into());
                    }
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        self.get_doc("SELECT doc FROM agents WHERE id = $1", id.as_str(), "agent")
            .await
    }

    async fn get_agent_by_name(&self, tenant: &TenantId, name: &str) -> Result<Agent> {
        self.db
            .run(|| async {
                let row = sqlx::query("SELECT doc FROM agents WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.as_str())
                    .bind(name)
                    .fetch_optional(&self.db.pool)
                    .await?;
                match row {
                    Some(r) => doc(&r, "doc"),
                    None => Err(Error::not_found("agent").into()),
                }
            })
            .await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent> {
        let expected = to_i64(agent.revision, "revision")?;
        let mut next = agent.clone();
        next.revision = agent
            .revision
            .checked_add(1)
            .ok_or_else(|| Error::invalid("revision", "too large"))?;
        let row = AgentRow::new(&next)?;
        let row = &row;
        let _forget = Forget::Agent(self.clients.as_deref(), &agent.id);
        self.db
            .run(|| async move {
                let done = sqlx::query(
                    "UPDATE agents SET name = $3, state = $4, revision = $5, in_marketplace = $6, \
                     capabilities = $7, tags = $8, category = $9, \
                     search = array_to_tsvector($10::text[]), doc = $11, market_keys = $13 \
                     WHERE id = $1 AND revision = $2 AND tenant_id = $12",
                )
                .bind(agent.id.as_str())
                .bind(expected)
                .bind(&row.agent.name)
                .bind(row.agent.state.as_str())
                .bind(row.revision)
                .bind(row.agent.is_in_marketplace())
                .bind(&row.agent.capabilities)
                .bind(&row.agent.tags)
                .bind(row.agent.category.as_deref())
                .bind(&row.lexemes)
                .bind(Json(row.agent))
                .bind(agent.tenant_id.as_str())
                .bind(&row.market_keys)
                .execute(&self.db.pool)
                .await
                .map_err(unique("agent"))?;
                if done.rows_affected() == 1 {
                    return Ok(row.agent.clone());
                }
                let stored = sqlx::query("SELECT revision, tenant_id FROM agents WHERE id = $1")
                    .bind(agent.id.as_str())
                    .fetch_optional(&self.db.pool)
                    .await?;
                let Some(stored) = stored else {
                    return Err(Error::not_found("agent").into());
                };
                let revision: i64 = stored.try_get("revision")?;
                let tenant: String = stored.try_get("tenant_id")?;
                if revision == expected && tenant != agent.tenant_id.as_str() {
                    return Err(Error::invalid("tenant_id", "cannot change").into());
                }
                Err(Error::conflict("agent was changed concurrently").into())
            })
            .await
    }

    async fn list_agents(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Agent>> {
        let size = page.size();
        self.db
            .run(|| async {
                let rows = sqlx::query(
                    "SELECT doc FROM agents WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(page.cursor.as_deref())
                .bind(limit_of(size))
                .fetch_all(&self.db.pool)
                .await?;
                let items = rows
                    .iter()
                    .map(|r| doc::<Agent>(r, "doc"))
                    .collect::<Step<Vec<_>>>()?;
                Ok(page_of(items, size, |a| a.id.to_string()))
            })
            .await
    }

    async fn count_agents(&self, tenant: &TenantId) -> Result<u64> {
        self.db
            .run(|| async {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM agents WHERE tenant_id = $1 AND state <> 'retired'",
                )
                .bind(tenant.as_str())
                .fetch_one(&self.db.pool)
                .await?;
                Ok(to_u64(n)?)
            })
            .await
    }

    /// One `GROUP BY` over the `state` column.
    async fn agents_by_state(&self, _tenants: &dyn TenantStore) -> Result<AgentStateCounts> {
        self.db
            .run(|| async {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT state, count(*) FROM agents GROUP BY state")
                        .fetch_all(&self.db.pool)
                        .await?;
                let mut counts = AgentStateCounts::default();
                for (state, n) in rows {
                    let state: LifecycleState = state.parse().map_err(|_| Error::Internal {
                        message: format!("postgres: an agent has the unknown state {state:?}"),
                        source: None,
                    })?;
                    counts.add(state, to_u64(n)?);
                }
                Ok(counts)
            })
            .await
    }

    /// How a text search is read (see [`SEARCH_SPARSE_CAP`]): the query's
    /// rare words (by the planner's lexeme statistics, read once a minute)
    /// are first looked up alone in the text index, at most
    /// `SEARCH_SPARSE_CAP + 1` agents; when they are no more than that, the
    /// page is read from those ids in id order (primary key), every filter
    /// applied. Otherwise, and when every word is common, the marketplace's
    /// id index is walked in order (bitmap scans off: the planner, misled
    /// by word frequencies it cannot combine, would otherwise read every
    /// match of common words to sort them). Both paths test the same
    /// conditions, re-check with the core's rule and page by id, so results
    /// and cursors are the same. Without statistics (a table never
    /// analyzed), or with other filters and only common words, the planner
    /// chooses.
    async fn search_marketplace(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let size = page.size();
        let terms = search::terms(query);
        let tsquery = search::tsquery_of(&terms);
        let filters = directory::Filters::of(query);
        let columns = if filters.needs_tenant() {
            "SELECT id, doc, (SELECT t.doc FROM tenants t WHERE t.id = agents.tenant_id) \
             AS tenant_doc FROM agents"
        } else {
            "SELECT id, doc FROM agents"
        };
        // Only the filters present enter the statement, so each shape gets
        // a plan that uses its index; values are always bound.
        let mut condition = String::from(" WHERE in_marketplace AND id > $1");
        let mut n = 1;
        let mut next = |sql: &mut String, fragment: &str| {
            n += 1;
            sql.push_str(&fragment.replace('?', &format!("${n}")));
        };
        if tsquery.is_some() {
            next(&mut condition, " AND search @@ ?::tsquery");
        }
        if query.capability.is_some() {
            next(&mut condition, " AND capabilities @> ARRAY[?::text]");
        }
        if query.tag.is_some() {
            next(&mut condition, " AND tags @> ARRAY[?::text]");
        }
        if query.category.is_some() {
            next(&mut condition, " AND category = ?");
        }
        if query.publisher.is_some() {
            next(&mut condition, " AND tenant_id = ?");
        }
        filters.push_sql(&mut condition, &mut next);
        let mut tail = String::new();
        next(&mut tail, " ?");
        let last = tail.trim();
        // The walk: the marketplace's id index in order, each row tested.
        let walk = format!("{columns}{condition} ORDER BY id LIMIT {last}");
        // The page among probed ids (bound in the limit's place, before
        // it), in order.
        let after = format!("${}", n + 1);
        let among =
            format!("{columns}{condition} AND id = ANY({last}::text[]) ORDER BY id LIMIT {after}");
        let others = query.category.is_some() || query.publisher.is_some() || filters.any();
        let (rare, walk_only) = match &tsquery {
            None => (None, false),
            Some(_) => {
                let lexemes = self.lexemes.get(&self.db).await;
                let most = (SEARCH_SPARSE_CAP / 2) as f64;
                let rare = search::tsquery_of(&lexemes.rare(&terms, most));
                let known = lexemes.known();
                (rare, known && !others)
            }
        };
        let (filters, tsquery, rare) = (&filters, &tsquery, &rare);
        let (walk, among) = (&walk, &among);
        // The statement with the cursor and every filter's value bound; the
        // last values (ids, limit) are the caller's.
        let bind_all = move |sql: &String, cursor: String| {
            let mut q = sqlx::query(AssertSqlSafe(sql.clone())).bind(cursor);
            if let Some(t) = tsquery {
                q = q.bind(t.clone());
            }
            for v in [&query.capability, &query.tag, &query.category]
                .into_iter()
                .flatten()
            {
                q = q.bind(v.clone());
            }
            if let Some(p) = &query.publisher {
                q = q.bind(p.to_string());
            }
            filters.bind(q)
        };
        self.db
            .run(|| async move {
                let start = page.cursor.clone().unwrap_or_default();
                let matcher = query.matcher();
                let mut items: Vec<Agent> = Vec::with_capacity(size + 1);
                let mut tx = self.db.pool.begin().await?;
                let mut ids: Option<Vec<String>> = None;
                if let Some(rare) = rare {
                    // Only the text index can answer (a bitmap scan); its
                    // matches are read up to the cap, in no order.
                    sqlx::raw_sql(
                        "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off",
                    )
                    .execute(&mut *tx)
                    .await?;
                    let found: Vec<String> = sqlx::query(
                        "SELECT id FROM agents WHERE in_marketplace AND id > $1 \
                         AND search @@ $2::tsquery LIMIT $3",
                    )
                    .bind(&start)
                    .bind(rare)
                    .bind(limit_of(SEARCH_SPARSE_CAP))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<std::result::Result<_, _>>()?;
                    if found.len() <= SEARCH_SPARSE_CAP {
                        ids = Some(found);
                    }
                }
                if rare.is_some() || walk_only {
                    // The page: by primary key among the probed ids, or
                    // the id index walked; never a bitmap of every match.
                    sqlx::raw_sql(
                        "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on; \
                         SET LOCAL enable_bitmapscan = off",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                // The index may return a few candidates that the exact rule
                // refuses (words longer than a lexeme): keep reading until a
                // page and one more are found, or the rows end.
                let mut cursor = start;
                'rows: loop {
                    let q = match &ids {
                        Some(ids) => bind_all(among, cursor.clone()).bind(ids),
                        None => bind_all(walk, cursor.clone()),
                    };
                    let rows = q.bind(limit_of(size)).fetch_all(&mut *tx).await?;
                    let exhausted = rows.len() <= size;
                    for r in &rows {
                        cursor = r.try_get("id")?;
                        let agent: Agent = doc(r, "doc")?;
                        let tenant: Option<Tenant> = if filters.needs_tenant() {
                            let t: Option<Json<Tenant>> = r.try_get("tenant_doc")?;
                            t.map(|Json(t)| t)
                        } else {
                            None
                        };
                        if matcher.matches_listing(&agent, tenant.as_ref()) {
                            items.push(agent);
                            if items.len() > size {
                                break 'rows;
                            }
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
                tx.commit().await?;
                Ok(page_of(items, size, |a| a.id.to_string()))
            })
            .await
    }

    /// From the `market_key_counts` table (see the `directory` module).
    async fn marketplace_counts(&self, kind: IndexKind) -> Result<Vec<(String, u64)>> {
        directory::counts(&self.db, kind).await
    }

    /// One query (one snapshot) instead of three: the token path's read,
    /// the agent's tenant included when this database has it; served from
    /// the client cache when it is on and holds a current copy.
    async fn get_client(&self, id: &AgentId) -> Result<ClientRecord> {
        match &self.clients {
            Some(cache) => cache.get(&self.db, id).await,
            None => client_cache::load(&self.db, id).await.map(|(r, _)| r),
        }
    }

    async fn introspection_record(
        &self,
        caller: &AgentId,
        subject: &AgentId,
        marker: (&str, &str),
        now: Timestamp,
    ) -> Result<IntrospectionRecord> {
        self.db
            .run(|| async {
                // One row whatever is missing: the caller's columns are
                // NULL when it does not exist.
                let row = sqlx::query(
                    "SELECT a.doc AS agent, t.doc AS tenant, \
                     COALESCE((SELECT jsonb_agg(s.doc ORDER BY s.seq) FROM client_secrets s \
                               WHERE s.agent_id = a.id), '[]'::jsonb) AS secrets, \
                     (SELECT x.doc FROM agents x WHERE x.id = $2) AS subject, \
                     EXISTS (SELECT 1 FROM markers m WHERE m.namespace = $3 AND m.key = $4 \
                             AND m.expires_at > $5) AS revoked \
                     FROM (SELECT 1) AS one LEFT JOIN agents a ON a.id = $1 \
                     LEFT JOIN tenants t ON t.id = a.tenant_id",
                )
                .bind(caller.as_str())
                .bind(subject.as_str())
                .bind(marker.0)
                .bind(marker.1)
                .bind(now.unix_micros())
                .fetch_one(&self.db.pool)
                .await?;
                let caller = match row.try_get::<Option<Json<Agent>>, _>("agent")? {
                    Some(Json(agent)) => Some(ClientRecord {
                        agent,
                        secrets: doc(&row, "secrets")?,
                        tenant: row
                            .try_get::<Option<Json<Tenant>>, _>("tenant")?
                            .map(|Json(t)| t),
                    }),
                    None => None,
                };
                Ok(IntrospectionRecord {
                    caller,
                    subject: row
                        .try_get::<Option<Json<Agent>>, _>("subject")?
                        .map(|Json(a)| a),
                    revoked: Some(row.try_get::<bool, _>("revoked")?),
                })
            })
            .await
    }

    async fn list_client_secrets(&self, agent: &AgentId) -> Result<Vec<ClientSecret>> {
        self.db
            .run(|| async {
                let rows =
                    sqlx::query("SELECT doc FROM client_secrets WHERE agent_id = $1 ORDER BY seq")
                        .bind(agent.as_str())
                        .fetch_all(&self.db.pool)
                        .await?;
                rows.iter().map(|r| doc(r, "doc")).collect()
            })
            .await
    }

    async fn rotate_client_secret(
        &self,
        agent: &AgentId,
        new: &ClientSecret,
        old_valid_until: Timestamp,
    ) -> Result<()> {
        let _forget = Forget::Agent(self.clients.as_deref(), agent);
        self.db
            .run(|| async {
                let mut tx = self.db.pool.begin().await?;
                lock_agent(&mut tx, agent).await?;
                for mut old in unrevoked_secrets(&mut tx, agent).await? {
                    let until = old
                        .expires_at
                        .map_or(old_valid_until, |e| e.min(old_valid_until));
                    if old.expires_at != Some(until) {
                        old.expires_at = Some(until);
                        update_secret(&mut tx, &old).await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO client_secrets (id, agent_id, revoked, doc) VALUES ($1, $2, $3, $4)",
                )
                .bind(new.id.as_str())
                .bind(agent.as_str())
                .bind(new.revoked_at.is_some())
                .bind(Json(new))
                .execute(&mut *tx)
                .await
                .map_err(unique("client_secret"))?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn revoke_client_secrets(&self, agent: &AgentId, at: Timestamp) -> Result<u64> {
        let _forget = Forget::Agent(self.clients.as_deref(), agent);
        self.db
            .run(|| async {
                let mut tx = self.db.pool.begin().await?;
                lock_agent(&mut tx, agent).await?;
                let mut n = 0;
                for mut s in unrevoked_secrets(&mut tx, agent).await? {
                    s.revoked_at = Some(at);
                    update_secret(&mut tx, &s).await?;
                    n += 1;
                }
                tx.commit().await?;
                Ok(n)
            })
            .await
    }
}

#[async_trait]
impl AdminKeyStore for PostgresStore {
    async fn create_admin_key(&self, key: &AdminKey) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO admin_keys (id, prefix, tenant_id, doc) VALUES ($1, $2, $3, $4)",
                )
                .bind(key.id.as_str())
                .bind(&key.prefix)
                .bind(key.tenant_id.as_ref().map(TenantId::as_str))
                .bind(Json(key))
                .execute(&self.db.pool)
                .await
                .map_err(unique("api_key"))?;
                Ok(())
            })
            .await
    }

    async fn get_admin_key_by_prefix(&self, prefix: &str) -> Result<AdminKey> {
        self.get_doc(
            "SELECT doc FROM admin_keys WHERE prefix = $1",
            prefix,
            "api_key",
        )
        .await
    }

    async fn list_admin_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AdminKey>> {
        self.db
            .run(|| async {
                let rows = match tenant {
                    Some(t) => {
                        sqlx::query("SELECT doc FROM admin_keys WHERE tenant_id = $1 ORDER BY id")
                            .bind(t.as_str())
                            .fetch_all(&self.db.pool)
                            .await?
                    }
                    None => {
                        sqlx::query(
                            "SELECT doc FROM admin_keys WHERE tenant_id IS NULL ORDER BY id",
                        )
                        .fetch_all(&self.db.pool)
                        .await?
                    }
                };
                rows.iter().map(|r| doc(r, "doc")).collect()
            })
            .await
    }

    async fn revoke_admin_key(
        &self,
        id: &AdminKeyId,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Result<()> {
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "UPDATE admin_keys \
                     SET doc = jsonb_set(jsonb_set(doc, '{revoked_at}', $2), '{revocation_reason}', $3) \
                     WHERE id = $1 AND coalesce(doc->'revoked_at', 'null'::jsonb) = 'null'::jsonb",
                )
                .bind(id.as_str())
                .bind(Json(at))
                .bind(Json(reason))
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                exists(
                    &self.db,
                    "SELECT 1 FROM admin_keys WHERE id = $1",
                    id.as_str(),
                    "api_key",
                )
                .await
            })
            .await
    }

    async fn touch_admin_key(&self, id: &AdminKeyId, at: Timestamp, requests: u64) -> Result<()> {
        let requests = to_i64(requests, "requests")?;
        self.db
            .run(|| async {
                // One statement: concurrent touches from several nodes all add.
                let done = sqlx::query(
                    "UPDATE admin_keys SET doc = jsonb_set(jsonb_set(doc, '{last_used_at}', $2), \
                       '{request_count}', to_jsonb(coalesce((doc->>'request_count')::bigint, 0) + $3)) \
                     WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(Json(at))
                .bind(requests)
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(Error::not_found("api_key").into())
                }
            })
            .await
    }
}

#[async_trait]
impl SigningKeyStore for PostgresStore {
    async fn put_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query("INSERT INTO signing_keys (kid, doc) VALUES ($1, $2)")
                    .bind(&key.kid)
                    .bind(Json(key))
                    .execute(&self.db.pool)
                    .await
                    .map_err(unique("signing_key"))?;
                Ok(())
            })
            .await
    }

    async fn update_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        self.db
            .run(|| async {
                let done = sqlx::query("UPDATE signing_keys SET doc = $2 WHERE kid = $1")
                    .bind(&key.kid)
                    .bind(Json(key))
                    .execute(&self.db.pool)
                    .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(Error::not_found("signing_key").into())
                }
            })
            .await
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.db
            .run(|| async {
                let rows = sqlx::query("SELECT doc FROM signing_keys ORDER BY kid")
                    .fetch_all(&self.db.pool)
                    .await?;
                rows.iter().map(|r| doc(r, "doc")).collect()
            })
            .await
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                    .bind(kid)
                    .execute(&self.db.pool)
                    .await?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl SettingStore for PostgresStore {
    async fn setting_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.db
            .run(|| async {
                // A concurrent insert makes ON CONFLICT wait for it; the
                // second statement then sees the winner.
                let inserted: Option<Vec<u8>> = sqlx::query_scalar(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING RETURNING value",
                )
                .bind(name)
                .bind(value)
                .fetch_optional(&self.db.pool)
                .await?;
                if let Some(v) = inserted {
                    return Ok(v);
                }
                let stored: Vec<u8> =
                    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.db.pool)
                        .await?;
                Ok(stored)
            })
            .await
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let chain = chain_of(event.tenant_id.as_ref()).to_owned();
        let lock = lock_key(self.db.schema(), &chain);
        let (chain, event) = (&chain, &event);
        self.db
            .run(|| async move {
                let mut tx = self.db.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind(LOCK_AUDIT_CHAIN)
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                let head = sqlx::query(
                    "SELECT seq, hash FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(chain)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| head_of(&r))
                .transpose()?;
                let sealed = AuditEvent::seal(event.clone(), head.as_ref());
                sqlx::query(
                    "INSERT INTO audit_events (chain, seq, at, action, actor, hash, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(chain)
                .bind(to_i64(sealed.seq, "seq")?)
                .bind(sealed.event.at.unix_micros())
                .bind(&sealed.event.action)
                .bind(&sealed.event.actor)
                .bind(&sealed.hash)
                .bind(Json(&sealed))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(sealed)
            })
            .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let after = i64::try_from(query.after_seq()?).unwrap_or(i64::MAX);
        let size = query.page_size();
        let mut sql = String::from("SELECT doc FROM audit_events WHERE chain = $1 AND seq > $2");
        let mut n = 2;
        let mut next = |sql: &mut String, fragment: &str| {
            n += 1;
            sql.push_str(&fragment.replace('?', &format!("${n}")));
        };
        if query.from.is_some() {
            next(&mut sql, " AND at >= ?");
        }
        if query.to.is_some() {
            next(&mut sql, " AND at < ?");
        }
        if query.action.is_some() {
            next(&mut sql, " AND action = ?");
        }
        if query.actor.is_some() {
            next(&mut sql, " AND actor = ?");
        }
        next(&mut sql, " ORDER BY seq LIMIT ?");
        let sql = &sql;
        let chain = chain_of(query.tenant_id.as_ref());
        self.db
            .run(|| async move {
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(chain)
                    .bind(after);
                for t in [query.from, query.to].into_iter().flatten() {
                    q = q.bind(t.unix_micros());
                }
                for v in [&query.action, &query.actor].into_iter().flatten() {
                    q = q.bind(v.as_str());
                }
                let rows = q.bind(limit_of(size)).fetch_all(&self.db.pool).await?;
                let items = rows
                    .iter()
                    .map(|r| doc::<AuditEvent>(r, "doc"))
                    .collect::<Step<Vec<_>>>()?;
                Ok(page_of(items, size, |e| e.seq.to_string()))
            })
            .await
    }

    async fn audit_head(&self, tenant: Option<&TenantId>) -> Result<Option<ChainHead>> {
        let chain = chain_of(tenant);
        self.db
            .run(|| async {
                let row = sqlx::query(
                    "SELECT seq, hash FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(chain)
                .fetch_optional(&self.db.pool)
                .await?;
                row.map(|r| head_of(&r)).transpose()
            })
            .await
    }
}

#[async_trait]
impl MarkerStore for PostgresStore {
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        self.db
            .run(|| async {
                let stored = sqlx::query(
                    "INSERT INTO markers (namespace, key, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (namespace, key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                     WHERE markers.expires_at <= $4 \
                     RETURNING 1",
                )
                .bind(namespace)
                .bind(key)
                .bind(expires_at.unix_micros())
                .bind(now.unix_micros())
                .fetch_optional(&self.db.pool)
                .await?;
                Ok(stored.is_some())
            })
            .await
    }

    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool> {
        self.db
            .run(|| async {
                let found = sqlx::query(
                    "SELECT 1 FROM markers WHERE namespace = $1 AND key = $2 AND expires_at > $3",
                )
                .bind(namespace)
                .bind(key)
                .bind(now.unix_micros())
                .fetch_optional(&self.db.pool)
                .await?;
                Ok(found.is_some())
            })
            .await
    }

    async fn purge_markers(&self, now: Timestamp) -> Result<u64> {
        self.db
            .run(|| async {
                let done = sqlx::query("DELETE FROM markers WHERE expires_at <= $1")
                    .bind(now.unix_micros())
                    .execute(&self.db.pool)
                    .await?;
                Ok(done.rows_affected())
            })
            .await
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

async fn insert_agent(tx: &mut Tx, row: &AgentRow<'_>) -> Step<()> {
    let a = row.agent;
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, state, revision, in_marketplace, \
         capabilities, tags, category, search, doc, market_keys) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, array_to_tsvector($10::text[]), $11, $12)",
    )
    .bind(a.id.as_str())
    .bind(a.tenant_id.as_str())
    .bind(&a.name)
    .bind(a.state.as_str())
    .bind(row.revision)
    .bind(a.is_in_marketplace())
    .bind(&a.capabilities)
    .bind(&a.tags)
    .bind(a.category.as_deref())
    .bind(&row.lexemes)
    .bind(Json(a))
    .bind(&row.market_keys)
    .execute(&mut **tx)
    .await
    .map_err(unique("agent"))?;
    Ok(())
}

/// Locks the agent row for the transaction; `NotFound` if absent.
async fn lock_agent(tx: &mut Tx, agent: &AgentId) -> Step<()> {
    let found = sqlx::query("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE")
        .bind(agent.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::not_found("agent").into()),
    }
}

async fn unrevoked_secrets(tx: &mut Tx, agent: &AgentId) -> Step<Vec<ClientSecret>> {
    let rows = sqlx::query(
        "SELECT doc FROM client_secrets WHERE agent_id = $1 AND NOT revoked ORDER BY seq",
    )
    .bind(agent.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| doc(r, "doc")).collect()
}

async fn update_secret(tx: &mut Tx, secret: &ClientSecret) -> Step<()> {
    sqlx::query("UPDATE client_secrets SET revoked = $2, doc = $3 WHERE id = $1")
        .bind(secret.id.as_str())
        .bind(secret.revoked_at.is_some())
        .bind(Json(secret))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn head_of(row: &PgRow) -> Step<ChainHead> {
    let seq: i64 = row.try_get("seq")?;
    Ok(ChainHead {
        seq: to_u64(seq)?,
        hash: row.try_get("hash")?,
    })
}

async fn exists(db: &Db, sql: &'static str, key: &str, kind: &'static str) -> Step<()> {
    let found = sqlx::query(sql).bind(key).fetch_optional(&db.pool).await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::not_found(kind).into()),
    }
}

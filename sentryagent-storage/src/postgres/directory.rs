//! The marketplace directory on Postgres (migration `0005`): the keys of
//! [`sentryagent_core::marketplace_index`] in `agents.market_keys` (GIN
//! index: exact keys, `@>`) and `tenants.market_keys`, mirrored by a
//! trigger into `agent_market_keys (key, agent_id)` (prefix filters are
//! ranges of its primary key); the same trigger keeps a count per key in
//! `market_key_counts` (migration `0007`), which the counts read.
//!
//! Rows written before the migration hold `NULL` keys; [`backfill`] fills
//! them when the store connects. Nodes of an older version that still
//! write agents leave their keys as they were: run one version at once.

use sqlx::Row;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::types::Json;

use sentryagent_core::marketplace_index::{self, IndexKind, KeyMatch};
use sentryagent_core::{Agent, MarketplaceQuery, Result, Tenant};

use super::db::{Db, to_u64};

/// Rows back-filled per statement.
const BACKFILL_BATCH: i64 = 500;

/// An agent's keys, for `agents.market_keys`.
pub(crate) fn agent_keys(agent: &Agent) -> Vec<String> {
    marketplace_index::agent_keys(agent).into_iter().collect()
}

/// A publisher's keys, for `tenants.market_keys`.
pub(crate) fn publisher_keys(tenant: &Tenant) -> Vec<String> {
    marketplace_index::publisher_keys(tenant)
        .into_iter()
        .collect()
}

/// The end of a key range: every key starting with `p` sorts before it
/// (byte order, `COLLATE "C"`), for keys whose next character is below
/// U+10FFFF; candidates are re-checked, so the range may only be wider.
fn after_prefix(p: &str) -> String {
    format!("{p}\u{10FFFF}")
}

/// The directory filters of a query as SQL, beside the filters the store
/// already had (capability, tag, category, publisher id).
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// Exact agent keys, all required (`market_keys @> ...`).
    exact: Vec<String>,
    /// Agent key prefixes (`[from, to)` ranges of `agent_market_keys`).
    prefixes: Vec<(String, String)>,
    /// Exact publisher keys.
    publisher_exact: Vec<String>,
    /// Publisher key prefixes.
    publisher_prefixes: Vec<String>,
}

impl Filters {
    /// The directory filters of `query`.
    pub(crate) fn of(query: &MarketplaceQuery) -> Filters {
        let plan = query.index_plan();
        let handled = [
            IndexKind::Capability,
            IndexKind::Tag,
            IndexKind::Category,
            IndexKind::Publisher,
        ]
        .map(IndexKind::prefix);
        let mut f = Filters::default();
        for m in plan.agent {
            if handled.iter().any(|h| m.key().starts_with(h.as_str())) {
                continue;
            }
            match m {
                KeyMatch::Exact(k) => f.exact.push(k),
                KeyMatch::Prefix(p) => {
                    let end = after_prefix(&p);
                    f.prefixes.push((p, end));
                }
            }
        }
        for m in plan.publisher {
            match m {
                KeyMatch::Exact(k) => f.publisher_exact.push(k),
                KeyMatch::Prefix(p) => f.publisher_prefixes.push(p),
            }
        }
        f
    }

    /// Whether there is any directory filter.
    pub(crate) fn any(&self) -> bool {
        !self.exact.is_empty()
            || !self.prefixes.is_empty()
            || !self.publisher_exact.is_empty()
            || !self.publisher_prefixes.is_empty()
    }

    /// Whether matching needs the publisher (`tenant_doc` is selected).
    pub(crate) fn needs_tenant(&self) -> bool {
        !self.publisher_exact.is_empty() || !self.publisher_prefixes.is_empty()
    }

    /// Appends the conditions; `next` numbers each `?` placeholder.
    pub(crate) fn push_sql(&self, sql: &mut String, next: &mut impl FnMut(&mut String, &str)) {
        if !self.exact.is_empty() {
            next(sql, " AND market_keys @> ?::text[]");
        }
        for _ in &self.prefixes {
            sql.push_str(" AND id IN (SELECT k.agent_id FROM agent_market_keys k WHERE k.key >= ");
            next(sql, "?");
            sql.push_str(" AND k.key < ");
            next(sql, "?)");
        }
        if self.needs_tenant() {
            sql.push_str(" AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = agents.tenant_id");
            if !self.publisher_exact.is_empty() {
                next(sql, " AND t.market_keys @> ?::text[]");
            }
            for _ in &self.publisher_prefixes {
                next(
                    sql,
                    " AND EXISTS (SELECT 1 FROM unnest(t.market_keys) AS pk WHERE starts_with(pk, ?))",
                );
            }
            sql.push(')');
        }
    }

    /// Binds the values, in the order of [`push_sql`](Self::push_sql).
    pub(crate) fn bind<'q>(
        &'q self,
        mut q: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        if !self.exact.is_empty() {
            q = q.bind(&self.exact);
        }
        for (from, to) in &self.prefixes {
            q = q.bind(from).bind(to);
        }
        if !self.publisher_exact.is_empty() {
            q = q.bind(&self.publisher_exact);
        }
        for p in &self.publisher_prefixes {
            q = q.bind(p);
        }
        q
    }
}

/// Fills `market_keys` of agents and tenants written before the directory
/// (`NULL`), in batches; a row changed meanwhile (another revision) is
/// left to its writer, which wrote its keys.
pub(crate) async fn backfill(db: &Db) -> Result<()> {
    loop {
        let rows = db
            .run(|| async {
                Ok(sqlx::query(
                    "SELECT id, revision, doc FROM agents WHERE market_keys IS NULL LIMIT $1",
                )
                .bind(BACKFILL_BATCH)
                .fetch_all(&db.pool)
                .await?)
            })
            .await?;
        if rows.is_empty() {
            break;
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut revisions = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id").map_err(to_internal)?;
            let revision: i64 = r.try_get("revision").map_err(to_internal)?;
            let Json(agent): Json<Agent> = r.try_get("doc").map_err(to_internal)?;
            ids.push(id);
            revisions.push(revision);
            // One text per agent (arrays of arrays must be rectangular):
            // the keys as a JSON array.
            keys.push(serde_json::to_string(&agent_keys(&agent)).map_err(|e| {
                sentryagent_core::Error::internal("postgres: encode market keys", e)
            })?);
        }
        let (ids, revisions, keys) = (&ids, &revisions, &keys);
        db.run(|| async move {
            sqlx::query(
                "UPDATE agents a SET market_keys = \
                 ARRAY(SELECT jsonb_array_elements_text(u.keys::jsonb)) \
                 FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, revision, keys) \
                 WHERE a.id = u.id AND a.revision = u.revision AND a.market_keys IS NULL",
            )
            .bind(ids)
            .bind(revisions)
            .bind(keys)
            .execute(&db.pool)
            .await?;
            Ok(())
        })
        .await?;
    }
    loop {
        let rows = db
            .run(|| async {
                Ok(sqlx::query(
                    "SELECT id, revision, doc FROM tenants WHERE market_keys IS NULL LIMIT $1",
                )
                .bind(BACKFILL_BATCH)
                .fetch_all(&db.pool)
                .await?)
            })
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let id: String = r.try_get("id").map_err(to_internal)?;
            let revision: i64 = r.try_get("revision").map_err(to_internal)?;
            let Json(tenant): Json<Tenant> = r.try_get("doc").map_err(to_internal)?;
            let keys = publisher_keys(&tenant);
            let (id, keys) = (&id, &keys);
            db.run(|| async move {
                sqlx::query(
                    "UPDATE tenants SET market_keys = $3 \
                     WHERE id = $1 AND revision = $2 AND market_keys IS NULL",
                )
                .bind(id)
                .bind(revision)
                .bind(keys)
                .execute(&db.pool)
                .await?;
                Ok(())
            })
            .await?;
        }
    }
    Ok(())
}

fn to_internal(e: sqlx::Error) -> sentryagent_core::Error {
    sentryagent_core::Error::internal("postgres: read of a row to back-fill", e)
}

/// The kinds whose keys `market_key_counts` counts (migration 0007's
/// `market_key_counted`): those `GET /v1/marketplace/categories` lists.
const COUNTED: [IndexKind; 3] = [
    IndexKind::Category,
    IndexKind::Capability,
    IndexKind::SkillName,
];

/// Marketplace agents per key of `kind`: for the [`COUNTED`] kinds from
/// `market_key_counts` (kept with `agent_market_keys` by its trigger), at
/// most 16 rows per key; for the others grouped from `agent_market_keys`,
/// a row per agent and key.
pub(crate) async fn counts(db: &Db, kind: IndexKind) -> Result<Vec<(String, u64)>> {
    let p = kind.prefix();
    let end = after_prefix(&p);
    let sql = if COUNTED.contains(&kind) {
        "SELECT key, sum(n)::bigint FROM market_key_counts \
         WHERE key >= $1 AND key < $2 GROUP BY key HAVING sum(n) > 0 ORDER BY key"
    } else {
        "SELECT key, count(*) FROM agent_market_keys \
         WHERE key >= $1 AND key < $2 GROUP BY key ORDER BY key"
    };
    let rows: Vec<(String, i64)> = db
        .run(|| async {
            Ok(sqlx::query_as(sql)
                .bind(&p)
                .bind(&end)
                .fetch_all(&db.pool)
                .await?)
        })
        .await?;
    rows.into_iter()
        .map(|(key, n)| Ok((key[p.len()..].to_owned(), to_u64(n)?)))
        .collect()
}

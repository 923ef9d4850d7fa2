//! [`TrustPolicyStore`] of the [`PostgresStore`]: the `trust_policies`
//! table (migration 4), each policy whole as JSONB beside its id, tenant and
//! revision; optimistic updates as for tenants and agents.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::types::Json;

use sentryagent_core::federation::TrustPolicy;
use sentryagent_core::{
    Error, Page, PageRequest, Result, TenantId, TrustPolicyId, TrustPolicyStore,
};

use super::db::{Step, to_i64, unique};
use super::store::{PostgresStore, doc, limit_of, page_of};

#[async_trait]
impl TrustPolicyStore for PostgresStore {
    async fn create_trust_policy(&self, p: &TrustPolicy) -> Result<()> {
        let revision = to_i64(p.revision, "revision")?;
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO trust_policies (id, tenant_id, revision, doc) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(p.id.as_str())
                .bind(p.tenant_id.as_str())
                .bind(revision)
                .bind(Json(p))
                .execute(&self.db.pool)
                .await
                .map_err(unique("trust_policy"))?;
                Ok(())
            })
            .await
    }

    async fn get_trust_policy(&self, id: &TrustPolicyId) -> Result<TrustPolicy> {
        self.get_doc(
            "SELECT doc FROM trust_policies WHERE id = $1",
            id.as_str(),
            "trust_policy",
        )
        .await
    }

    async fn update_trust_policy(&self, p: &TrustPolicy) -> Result<TrustPolicy> {
        let expected = to_i64(p.revision, "revision")?;
        let mut next = p.clone();
        next.revision = p
            .revision
            .checked_add(1)
            .ok_or_else(|| Error::invalid("revision", "too large"))?;
        let revision = to_i64(next.revision, "revision")?;
        let next = &next;
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "UPDATE trust_policies SET doc = $4, revision = $3 \
                     WHERE id = $1 AND revision = $2 AND tenant_id = $5",
                )
                .bind(p.id.as_str())
                .bind(expected)
                .bind(revision)
                .bind(Json(next))
                .bind(p.tenant_id.as_str())
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(next.clone());
                }
                let row =
                    sqlx::query("SELECT revision, tenant_id FROM trust_policies WHERE id = $1")
                        .bind(p.id.as_str())
                        .fetch_optional(&self.db.pool)
                        .await?;
                let Some(row) = row else {
                    return Err(Error::not_found("trust_policy").into());
                };
                let stored: i64 = row.try_get("revision")?;
                let tenant: String = row.try_get("tenant_id")?;
                if stored == expected && tenant != p.tenant_id.as_str() {
                    return Err(Error::invalid("tenant_id", "cannot change").into());
                }
                Err(Error::conflict("trust policy was changed concurrently").into())
            })
            .await
    }

    async fn delete_trust_policy(&self, id: &TrustPolicyId) -> Result<()> {
        self.db
            .run(|| async {
                let done = sqlx::query("DELETE FROM trust_policies WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&self.db.pool)
                    .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(Error::not_found("trust_policy").into())
                }
            })
            .await
    }

    async fn list_trust_policies(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<TrustPolicy>> {
        let size = page.size();
        self.db
            .run(|| async {
                let rows = sqlx::query(
                    "SELECT doc FROM trust_policies \
                     WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(page.cursor.as_deref())
                .bind(limit_of(size))
                .fetch_all(&self.db.pool)
                .await?;
                let items = rows
                    .iter()
                    .map(|r| doc::<TrustPolicy>(r, "doc"))
                    .collect::<Step<Vec<_>>>()?;
                Ok(page_of(items, size, |p| p.id.to_string()))
            })
            .await
    }
}

//! [`TenantStore`]: tenants.

use async_trait::async_trait;

use super::Backend;
use crate::page::{Page, PageRequest};
use crate::{Result, Tenant, TenantId};

/// Tenants, by id and by slug.
#[async_trait]
pub trait TenantStore: Backend {
    /// Inserts a tenant; `AlreadyExists` if its id or slug is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    /// A tenant by id.
    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant>;
    /// A tenant by slug.
    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Tenant>;
    /// Replaces a tenant if `tenant.revision` is the stored revision; returns
    /// the stored tenant (revision + 1). The slug cannot change.
    async fn update_tenant(&self, tenant: &Tenant) -> Result<Tenant>;
    /// Tenants by id.
    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>>;
    /// The tenants of `ids` that exist, in no particular order (an id
    /// named twice or unknown is no error). The default reads them one by
    /// one; a backend with a round trip per read answers in one.
    async fn get_tenants(&self, ids: &[TenantId]) -> Result<Vec<Tenant>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if found.iter().any(|t: &Tenant| &t.id == id) {
                continue;
            }
            match self.get_tenant(id).await {
                Ok(t) => found.push(t),
                Err(crate::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
}

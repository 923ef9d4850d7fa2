//! [`AdminKeyStore`]: management API keys.

use async_trait::async_trait;

use super::Backend;
use crate::credentials::AdminKey;
use crate::{AdminKeyId, Result, TenantId, Timestamp};

/// Management API keys (stored hashed), of a tenant or of the operator.
#[async_trait]
pub trait AdminKeyStore: Backend {
    /// Inserts an admin key; `AlreadyExists` if its id or prefix is taken.
    async fn create_admin_key(&self, key: &AdminKey) -> Result<()>;
    /// An admin key by its visible prefix.
    async fn get_admin_key_by_prefix(&self, prefix: &str) -> Result<AdminKey>;
    /// Admin keys of a tenant, or the operator keys for `None`.
    async fn list_admin_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AdminKey>>;
    /// Sets `revoked_at` and `revocation_reason` (idempotent; the first
    /// revocation, and its reason, stay).
    async fn revoke_admin_key(
        &self,
        id: &AdminKeyId,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Result<()>;
    /// Sets `last_used_at` and adds `requests` to `request_count`
    /// (atomically: concurrent touches all count).
    async fn touch_admin_key(&self, id: &AdminKeyId, at: Timestamp, requests: u64) -> Result<()>;
}

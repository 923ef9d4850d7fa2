//! [`TrustPolicyStore`]: tenants' trust policies (federation).

use async_trait::async_trait;

use super::Backend;
use crate::federation::TrustPolicy;
use crate::page::{Page, PageRequest};
use crate::{Result, TenantId, TrustPolicyId};

/// The trust policies of tenants: which tokens of other identity providers
/// may be exchanged for the tenant's tokens.
#[async_trait]
pub trait TrustPolicyStore: Backend {
    /// Inserts a policy; `AlreadyExists` if its id is taken.
    async fn create_trust_policy(&self, policy: &TrustPolicy) -> Result<()>;
    /// A policy by id.
    async fn get_trust_policy(&self, id: &TrustPolicyId) -> Result<TrustPolicy>;
    /// Replaces a policy if `policy.revision` is the stored revision; returns
    /// the stored policy (revision + 1). The tenant cannot change.
    async fn update_trust_policy(&self, policy: &TrustPolicy) -> Result<TrustPolicy>;
    /// Deletes a policy; `NotFound` if there is none.
    async fn delete_trust_policy(&self, id: &TrustPolicyId) -> Result<()>;
    /// A tenant's policies by id.
    async fn list_trust_policies(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<TrustPolicy>>;
}

//! [`TrustPolicyStore`] of the [`MemoryStore`].

use async_trait::async_trait;

use super::MemoryStore;
use super::store::page_by_key;
use crate::federation::TrustPolicy;
use crate::page::{Page, PageRequest};
use crate::store::TrustPolicyStore;
use crate::{Error, Result, TenantId, TrustPolicyId};

#[async_trait]
impl TrustPolicyStore for MemoryStore {
    async fn create_trust_policy(&self, policy: &TrustPolicy) -> Result<()> {
        let mut m = self
            .trust_policies
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if m.contains_key(&policy.id) {
            return Err(Error::already_exists("trust_policy"));
        }
        m.insert(policy.id.clone(), policy.clone());
        Ok(())
    }

    async fn get_trust_policy(&self, id: &TrustPolicyId) -> Result<TrustPolicy> {
        self.trust_policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or(Error::not_found("trust_policy"))
    }

    async fn update_trust_policy(&self, policy: &TrustPolicy) -> Result<TrustPolicy> {
        let mut m = self
            .trust_policies
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let stored = m
            .get_mut(&policy.id)
            .ok_or(Error::not_found("trust_policy"))?;
        if stored.revision != policy.revision {
            return Err(Error::conflict("trust policy was changed concurrently"));
        }
        if stored.tenant_id != policy.tenant_id {
            return Err(Error::invalid("tenant_id", "cannot change"));
        }
        let mut next = policy.clone();
        next.revision += 1;
        *stored = next.clone();
        Ok(next)
    }

    async fn delete_trust_policy(&self, id: &TrustPolicyId) -> Result<()> {
        self.trust_policies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .map(drop)
            .ok_or(Error::not_found("trust_policy"))
    }

    async fn list_trust_policies(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<TrustPolicy>> {
        let m = self
            .trust_policies
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Ok(page_by_key(
            m.iter()
                .filter(|(_, p)| &p.tenant_id == tenant)
                .map(|(k, v)| (k.clone(), v.clone())),
            page,
        ))
    }
}

//! [`TrustPolicyStore`] of the [`SledStore`]: the `trust_policies` tree and
//! its `trust_policies_by_tenant` index, written together in one
//! transaction.

use std::ops::Bound;

use ::sled::transaction::Transactional;
use async_trait::async_trait;

use sentryagent_core::federation::TrustPolicy;
use sentryagent_core::{
    Error, Page, PageRequest, Result, TenantId, TrustPolicyId, TrustPolicyStore,
};

use super::codec::{OrAbort, TxResult, abort, after_sep, decode, encode, key, prefix, tx_error};
use super::store::{
    EMPTY, SledStore, dangling, iter_error, page_of, prefix_end, record, start_after,
};

#[async_trait]
impl TrustPolicyStore for SledStore {
    async fn create_trust_policy(&self, p: &TrustPolicy) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = p.id.as_str().as_bytes();
        let value = encode("trust policy", p)?;
        let listed = key(&[p.tenant_id.as_str().as_bytes(), id]);
        (&t.trust_policies, &t.trust_policies_by_tenant)
            .transaction(|(policies, by_tenant)| -> TxResult<()> {
                if policies.get(id)?.is_some() {
                    return abort(Error::already_exists("trust_policy"));
                }
                policies.insert(id, value.clone())?;
                by_tenant.insert(listed.as_slice(), EMPTY)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_trust_policy", e))?;
        self.durable().await
    }

    async fn get_trust_policy(&self, id: &TrustPolicyId) -> Result<TrustPolicy> {
        record(
            &self.shared.open()?.t.trust_policies,
            id.as_str().as_bytes(),
            "trust policy",
        )?
        .ok_or(Error::not_found("trust_policy"))
    }

    async fn update_trust_policy(&self, p: &TrustPolicy) -> Result<TrustPolicy> {
        let id = p.id.as_str().as_bytes();
        let mut next = p.clone();
        next.revision += 1;
        let value = encode("trust policy", &next)?;
        self.shared
            .open()?
            .t
            .trust_policies
            .transaction(|policies| -> TxResult<()> {
                let Some(raw) = policies.get(id)? else {
                    return abort(Error::not_found("trust_policy"));
                };
                let stored: TrustPolicy = decode("trust policy", &raw).or_abort()?;
                if stored.revision != p.revision {
                    return abort(Error::conflict("trust policy was changed concurrently"));
                }
                if stored.tenant_id != p.tenant_id {
                    return abort(Error::invalid("tenant_id", "cannot change"));
                }
                policies.insert(id, value.clone())?;
                Ok(())
            })
            .map_err(|e| tx_error("update_trust_policy", e))?;
        self.durable().await?;
        Ok(next)
    }

    async fn delete_trust_policy(&self, id: &TrustPolicyId) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = id.as_str().as_bytes();
        (&t.trust_policies, &t.trust_policies_by_tenant)
            .transaction(|(policies, by_tenant)| -> TxResult<()> {
                let Some(raw) = policies.remove(id)? else {
                    return abort(Error::not_found("trust_policy"));
                };
                let stored: TrustPolicy = decode("trust policy", &raw).or_abort()?;
                by_tenant.remove(key(&[stored.tenant_id.as_str().as_bytes(), id]))?;
                Ok(())
            })
            .map_err(|e| tx_error("delete_trust_policy", e))?;
        self.durable().await
    }

    async fn list_trust_policies(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<TrustPolicy>> {
        let t = &self.shared.open()?.t;
        let size = page.size();
        let start = start_after(&prefix(tenant.as_str().as_bytes()), page.cursor.as_deref());
        let end: Bound<Vec<u8>> = prefix_end(tenant.as_str().as_bytes());
        let mut out = Vec::with_capacity(size + 1);
        for k in t.trust_policies_by_tenant.range((start, end)).keys() {
            let k = k.map_err(iter_error("trust policies of a tenant"))?;
            let p: TrustPolicy = record(&t.trust_policies, after_sep(&k), "trust policy")?
                .ok_or_else(|| dangling("trust policy"))?;
            out.push((p.id.to_string(), p));
            if out.len() > size {
                break;
            }
        }
        Ok(page_of(out, size))
    }
}

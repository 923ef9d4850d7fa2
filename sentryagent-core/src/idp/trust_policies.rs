//! Trust policies of tenants: the management side of token exchange.

use super::{Caller, Idp};
use crate::audit::{NewAuditEvent, Outcome};
use crate::credentials::AdminScope;
use crate::federation::{NewTrustPolicy, TrustGrant, TrustPolicy, TrustPolicyPatch};
use crate::page::{Page, PageRequest};
use crate::{Error, Result, TenantId, TrustPolicyId};

/// Most trust policies of a tenant (checked before each creation).
pub const MAX_TRUST_POLICIES: usize = 100;

/// How a grant reads in the audit trail.
fn grant_text(g: &TrustGrant) -> String {
    match g {
        TrustGrant::AgentId(a) => format!("agent:{a}"),
        TrustGrant::AdminScopes(s) => format!(
            "admin_scopes:{}",
            s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        ),
    }
}

impl Idp {
    /// Every trust policy of a tenant (all pages).
    pub(crate) async fn all_trust_policies(&self, tenant: &TenantId) -> Result<Vec<TrustPolicy>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(crate::page::MAX_PAGE_SIZE);
        loop {
            let p = self
                .inner
                .store
                .trust_policies
                .list_trust_policies(tenant, &page)
                .await?;
            out.extend(p.items);
            match p.next_cursor {
                Some(c) if out.len() <= MAX_TRUST_POLICIES * 2 => page.cursor = Some(c),
                _ => return Ok(out),
            }
        }
    }

    /// Checks a policy and that the agent it grants is one of its tenant's.
    async fn check_trust_policy(&self, policy: &mut TrustPolicy) -> Result<()> {
        policy.validate()?;
        if let TrustGrant::AgentId(agent) = &policy.grant {
            match self.inner.store.agents.get_agent(agent).await {
                Ok(a) if a.tenant_id == policy.tenant_id => {}
                Ok(_) | Err(Error::NotFound { .. }) => {
                    return Err(Error::invalid(
                        "grant",
                        "agent_id names no agent of the tenant",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn policy_event(&self, caller: &Caller, action: &str, p: &TrustPolicy) -> NewAuditEvent {
        let mut ev = self.event(
            Some(&p.tenant_id),
            &caller.actor,
            action,
            Some(p.id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        let d = &mut ev.details;
        d.insert("name".into(), p.name.clone());
        d.insert("issuer".into(), p.issuer.clone());
        d.insert("audience".into(), p.audience.clone());
        d.insert(
            "conditions".into(),
            serde_json::to_string(&p.conditions).unwrap_or_default(),
        );
        d.insert("grant".into(), grant_text(&p.grant));
        d.insert(
            "max_token_ttl_seconds".into(),
            p.max_token_ttl_seconds.to_string(),
        );
        d.insert(
            "max_subject_token_age_seconds".into(),
            p.max_subject_token_age_seconds.to_string(),
        );
        d.insert("single_use".into(), p.single_use.to_string());
        ev
    }

    /// Creates a trust policy of `tenant` (admin scope). The policy is
    /// validated ([`TrustPolicy::validate`], including the GitHub
    /// repository-pin rule), a granted agent must be one of the tenant's,
    /// and a tenant holds at most [`MAX_TRUST_POLICIES`]. Audited
    /// (`trust_policy.created`).
    pub async fn create_trust_policy(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        new: NewTrustPolicy,
    ) -> Result<TrustPolicy> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::Admin)?;
        self.inner.store.tenants.get_tenant(tenant).await?;
        let mut policy = TrustPolicy::new(tenant.clone(), new, self.now());
        self.check_trust_policy(&mut policy).await?;
        if self.all_trust_policies(tenant).await?.len() >= MAX_TRUST_POLICIES {
            return Err(Error::invalid(
                "trust_policy",
                format!("a tenant holds at most {MAX_TRUST_POLICIES} trust policies"),
            ));
        }
        self.inner
            .store
            .trust_policies
            .create_trust_policy(&policy)
            .await?;
        self.audit(self.policy_event(caller, "trust_policy.created", &policy))
            .await?;
        Ok(policy)
    }

    /// A trust policy the caller reaches (agents_read scope).
    pub async fn get_trust_policy(
        &self,
        caller: &Caller,
        id: &TrustPolicyId,
    ) -> Result<TrustPolicy> {
        caller.require(AdminScope::AgentsRead)?;
        let p = self.inner.store.trust_policies.get_trust_policy(id).await?;
        caller.reach(&p.tenant_id, "trust_policy")?;
        Ok(p)
    }

    /// A tenant's trust policies, by id (agents_read scope).
    pub async fn list_trust_policies(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<TrustPolicy>> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::AgentsRead)?;
        self.inner
            .store
            .trust_policies
            .list_trust_policies(tenant, page)
            .await
    }

    /// Changes a trust policy (admin scope); checked as at creation.
    /// Audited (`trust_policy.updated`, with the policy as changed).
    pub async fn update_trust_policy(
        &self,
        caller: &Caller,
        id: &TrustPolicyId,
        patch: TrustPolicyPatch,
    ) -> Result<TrustPolicy> {
        caller.require(AdminScope::Admin)?;
        for _ in 0..16 {
            let mut p = self.inner.store.trust_policies.get_trust_policy(id).await?;
            caller.reach(&p.tenant_id, "trust_policy")?;
            p.apply(patch.clone());
            p.updated_at = self.now();
            self.check_trust_policy(&mut p).await?;
            match self
                .inner
                .store
                .trust_policies
                .update_trust_policy(&p)
                .await
            {
                Ok(stored) => {
                    self.audit(self.policy_event(caller, "trust_policy.updated", &stored))
                        .await?;
                    return Ok(stored);
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "trust policy is changing too often; try again",
        ))
    }

    /// Deletes a trust policy (admin scope). Management tokens it granted
    /// stop working at once. Audited (`trust_policy.deleted`).
    pub async fn delete_trust_policy(&self, caller: &Caller, id: &TrustPolicyId) -> Result<()> {
        caller.require(AdminScope::Admin)?;
        let p = self.inner.store.trust_policies.get_trust_policy(id).await?;
        caller.reach(&p.tenant_id, "trust_policy")?;
        self.inner
            .store
            .trust_policies
            .delete_trust_policy(id)
            .await?;
        self.audit(self.policy_event(caller, "trust_policy.deleted", &p))
            .await?;
        Ok(())
    }
}

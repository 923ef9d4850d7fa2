//! In-memory store (every store trait): one lock over plain maps. Always compiled; the
//! default for tests and for a library user who wants no persistence.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditQuery, ChainHead, NewAuditEvent};
use crate::credentials::{AdminKey, ClientSecret};
use crate::page::{Page, PageRequest};
use crate::store::{
    AdminKeyStore, AgentStore, AuditLog, Backend, IntrospectionRecord, MarkerStore, NewAgentRecord,
    SettingStore, SigningKeyRecord, SigningKeyStore, TenantStore, agent_batch_tenants,
    check_agent_batch, check_agent_batch_limits,
};
use crate::{
    AdminKeyId, Agent, AgentId, AgentStateCounts, Error, LifecycleState, LimitKind,
    MarketplaceQuery, Result, Tenant, TenantId, Timestamp,
};

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, Tenant>,
    slugs: HashMap<String, TenantId>,
    agents: BTreeMap<AgentId, Agent>,
    agent_names: HashMap<(TenantId, String), AgentId>,
    secrets: HashMap<AgentId, Vec<ClientSecret>>,
    admin_keys: BTreeMap<AdminKeyId, AdminKey>,
    admin_prefixes: HashMap<String, AdminKeyId>,
    signing_keys: BTreeMap<String, SigningKeyRecord>,
    settings: HashMap<String, Vec<u8>>,
    audit: HashMap<Option<TenantId>, Vec<AuditEvent>>,
    markers: HashMap<(String, String), Timestamp>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    /// Accounts, memberships, sessions and invitations (`people.rs`).
    pub(super) people: RwLock<super::people::People>,
    /// Trust policies by id (see `trust_policies.rs`).
    pub(super) trust_policies:
        RwLock<BTreeMap<crate::TrustPolicyId, crate::federation::TrustPolicy>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pages a sorted map by key: the cursor is the last key returned.
pub(crate) fn page_by_key<K: Ord + Clone + AsRef<str>, V: Clone>(
    items: impl Iterator<Item = (K, V)>,
    page: &PageRequest,
) -> Page<V> {
    let size = page.size();
    let mut out: Vec<(K, V)> = Vec::with_capacity(size + 1);
    for (k, v) in items {
        if let Some(c) = &page.cursor
            && k.as_ref() <= c.as_str()
        {
            continue;
        }
        out.push((k, v));
        if out.len() > size {
            break;
        }
    }
    let next_cursor = if out.len() > size {
        out.truncate(size);
        out.last().map(|(k, _)| k.as_ref().to_owned())
    } else {
        None
    };
    Page {
        items: out.into_iter().map(|(_, v)| v).collect(),
        next_cursor,
    }
}

fn live_agents(s: &State, tenant: &TenantId) -> u64 {
    s.agents
        .values()
        .filter(|a| &a.tenant_id == tenant && a.state != LifecycleState::Retired)
        .count() as u64
}

#[async_trait]
impl Backend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl TenantStore for MemoryStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        let mut s = self.write();
        if s.tenants.contains_key(&tenant.id) || s.slugs.contains_key(&tenant.slug) {
            return Err(Error::already_exists("tenant"));
        }
        s.slugs.insert(tenant.slug.clone(), tenant.id.clone());
        s.tenants.insert(tenant.id.clone(), tenant.clone());
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        self.read()
            .tenants
            .get(id)
            .cloned()
            .ok_or(Error::not_found("tenant"))
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        let s = self.read();
        s.slugs
            .get(slug)
            .and_then(|id| s.tenants.get(id))
            .cloned()
            .ok_or(Error::not_found("tenant"))
    }

    async fn update_tenant(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut s = self.write();
        let stored = s
            .tenants
            .get_mut(&tenant.id)
            .ok_or(Error::not_found("tenant"))?;
        if stored.revision != tenant.revision {
            return Err(Error::conflict("tenant was changed concurrently"));
        }
        if stored.slug != tenant.slug {
            return Err(Error::invalid("slug", "cannot change"));
        }
        let mut next = tenant.clone();
        next.revision += 1;
        *stored = next.clone();
        Ok(next)
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let s = self.read();
        Ok(page_by_key(
            s.tenants.iter().map(|(k, v)| (k.clone(), v.clone())),
            page,
        ))
    }
}

#[async_trait]
impl AgentStore for MemoryStore {
    async fn introspection_record(
        &self,
        caller: &AgentId,
        subject: &AgentId,
        marker: (&str, &str),
        now: Timestamp,
    ) -> Result<IntrospectionRecord> {
        crate::store::introspection_record_in_process(self, caller, subject, marker, now).await
    }

    async fn create_agent(
        &self,
        agent: &Agent,
        secret: Option<&ClientSecret>,
        max_agents: Option<u64>,
    ) -> Result<()> {
        let mut s = self.write();
        let name_key = (agent.tenant_id.clone(), agent.name.clone());
        if s.agents.contains_key(&agent.id) || s.agent_names.contains_key(&name_key) {
            return Err(Error::already_exists("agent"));
        }
        if let Some(max) = max_agents {
            let used = live_agents(&s, &agent.tenant_id);
            if used >= max {
                return Err(Error::QuotaExceeded {
                    limit_kind: LimitKind::Agents,
                    tier: String::new(),
                    used,
                    limit: max,
                });
            }
        }
        s.agent_names.insert(name_key, agent.id.clone());
        s.agents.insert(agent.id.clone(), agent.clone());
        s.secrets
            .insert(agent.id.clone(), secret.cloned().into_iter().collect());
        Ok(())
    }

    /// The whole batch under one write lock: checked first, then stored.
    async fn create_agents(&self, batch: &[NewAgentRecord]) -> Result<()> {
        check_agent_batch(batch)?;
        let mut s = self.write();
        for r in batch {
            let a = &r.agent;
            if s.agents.contains_key(&a.id)
                || s.agent_names
                    .contains_key(&(a.tenant_id.clone(), a.name.clone()))
            {
                return Err(Error::already_exists("agent"));
            }
        }
        let stored = agent_batch_tenants(batch)
            .into_iter()
            .map(|t| (t.clone(), live_agents(&s, t)))
            .collect();
        check_agent_batch_limits(batch, &stored)?;
        for r in batch {
            let a = &r.agent;
            s.agent_names
                .insert((a.tenant_id.clone(), a.name.clone()), a.id.clone());
            s.agents.insert(a.id.clone(), a.clone());
            s.secrets
                .insert(a.id.clone(), r.secret.iter().cloned().collect());
        }
        Ok(())
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        self.read()
            .agents
            .get(id)
            .cloned()
            .ok_or(Error::not_found("agent"))
    }

    async fn get_agent_by_name(&self, tenant: &TenantId, name: &str) -> Result<Agent> {
        let s = self.read();
        s.agent_names
            .get(&(tenant.clone(), name.to_owned()))
            .and_then(|id| s.agents.get(id))
            .cloned()
            .ok_or(Error::not_found("agent"))
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent> {
        let mut s = self.write();
        let stored = s.agents.get(&agent.id).ok_or(Error::not_found("agent"))?;
        if stored.revision != agent.revision {
            return Err(Error::conflict("agent was changed concurrently"));
        }
        if stored.tenant_id != agent.tenant_id {
            return Err(Error::invalid("tenant_id", "cannot change"));
        }
        let old_name = (stored.tenant_id.clone(), stored.name.clone());
        let new_name = (agent.tenant_id.clone(), agent.name.clone());
        if old_name != new_name {
            if s.agent_names.contains_key(&new_name) {
                return Err(Error::already_exists("agent"));
            }
            s.agent_names.remove(&old_name);
            s.agent_names.insert(new_name, agent.id.clone());
        }
        let mut next = agent.clone();
        next.revision += 1;
        s.agents.insert(agent.id.clone(), next.clone());
        Ok(next)
    }

    async fn list_agents(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Agent>> {
        let s = self.read();
        Ok(page_by_key(
            s.agents
                .iter()
                .filter(|(_, a)| &a.tenant_id == tenant)
                .map(|(k, v)| (k.clone(), v.clone())),
            page,
        ))
    }

    async fn count_agents(&self, tenant: &TenantId) -> Result<u64> {
        Ok(live_agents(&self.read(), tenant))
    }

    async fn agents_by_state(&self, _tenants: &dyn TenantStore) -> Result<AgentStateCounts> {
        Ok(self.read().agents.values().map(|a| a.state).collect())
    }

    async fn search_marketplace(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let s = self.read();
        let matcher = query.matcher();
        Ok(page_by_key(
            s.agents
                .iter()
                .filter(|(_, a)| matcher.matches_listing(a, s.tenants.get(&a.tenant_id)))
                .map(|(k, v)| (k.clone(), v.clone())),
            page,
        ))
    }

    async fn list_client_secrets(&self, agent: &AgentId) -> Result<Vec<ClientSecret>> {
        Ok(self.read().secrets.get(agent).cloned().unwrap_or_default())
    }

    async fn rotate_client_secret(
        &self,
        agent: &AgentId,
        new: &ClientSecret,
        old_valid_until: Timestamp,
    ) -> Result<()> {
        let mut s = self.write();
        if !s.agents.contains_key(agent) {
            return Err(Error::not_found("agent"));
        }
        let list = s.secrets.entry(agent.clone()).or_default();
        for old in list.iter_mut().filter(|x| x.revoked_at.is_none()) {
            old.expires_at = Some(
                old.expires_at
                    .map_or(old_valid_until, |e| e.min(old_valid_until)),
            );
        }
        list.push(new.clone());
        Ok(())
    }

    async fn revoke_client_secrets(&self, agent: &AgentId, at: Timestamp) -> Result<u64> {
        let mut s = self.write();
        if !s.agents.contains_key(agent) {
            return Err(Error::not_found("agent"));
        }
        let mut n = 0;
        for x in s.secrets.entry(agent.clone()).or_default().iter_mut() {
            if x.revoked_at.is_none() {
                x.revoked_at = Some(at);
                n += 1;
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl AdminKeyStore for MemoryStore {
    async fn create_admin_key(&self, key: &AdminKey) -> Result<()> {
        let mut s = self.write();
        if s.admin_keys.contains_key(&key.id) || s.admin_prefixes.contains_key(&key.prefix) {
            return Err(Error::already_exists("api_key"));
        }
        s.admin_prefixes.insert(key.prefix.clone(), key.id.clone());
        s.admin_keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn get_admin_key_by_prefix(&self, prefix: &str) -> Result<AdminKey> {
        let s = self.read();
        s.admin_prefixes
            .get(prefix)
            .and_then(|id| s.admin_keys.get(id))
            .cloned()
            .ok_or(Error::not_found("api_key"))
    }

    async fn list_admin_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AdminKey>> {
        Ok(self
            .read()
            .admin_keys
            .values()
            .filter(|k| k.tenant_id.as_ref() == tenant)
            .cloned()
            .collect())
    }

    async fn revoke_admin_key(
        &self,
        id: &AdminKeyId,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut s = self.write();
        let k = s
            .admin_keys
            .get_mut(id)
            .ok_or(Error::not_found("api_key"))?;
        if k.revoked_at.is_none() {
            k.revoked_at = Some(at);
            k.revocation_reason = reason.map(str::to_owned);
        }
        Ok(())
    }

    async fn touch_admin_key(&self, id: &AdminKeyId, at: Timestamp, requests: u64) -> Result<()> {
        let mut s = self.write();
        let k = s
            .admin_keys
            .get_mut(id)
            .ok_or(Error::not_found("api_key"))?;
        k.last_used_at = Some(at);
        k.request_count = k.request_count.saturating_add(requests);
        Ok(())
    }
}

#[async_trait]
impl SigningKeyStore for MemoryStore {
    async fn put_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let mut s = self.write();
        if s.signing_keys.contains_key(&key.kid) {
            return Err(Error::already_exists("signing_key"));
        }
        s.signing_keys.insert(key.kid.clone(), key.clone());
        Ok(())
    }

    async fn update_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let mut s = self.write();
        let k = s
            .signing_keys
            .get_mut(&key.kid)
            .ok_or(Error::not_found("signing_key"))?;
        *k = key.clone();
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(self.read().signing_keys.values().cloned().collect())
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<()> {
        self.write().signing_keys.remove(kid);
        Ok(())
    }
}

#[async_trait]
impl SettingStore for MemoryStore {
    async fn setting_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        let mut s = self.write();
        Ok(s.settings
            .entry(name.to_owned())
            .or_insert_with(|| value.to_vec())
            .clone())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let mut s = self.write();
        let chain = s.audit.entry(event.tenant_id.clone()).or_default();
        let head = chain.last().map(AuditEvent::head);
        let sealed = AuditEvent::seal(event, head.as_ref());
        chain.push(sealed.clone());
        Ok(sealed)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let after = query.after_seq()?;
        let size = query.page_size();
        let s = self.read();
        let Some(chain) = s.audit.get(&query.tenant_id) else {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        };
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(chain.len());
        let mut items: Vec<AuditEvent> = chain[start..]
            .iter()
            .filter(|e| query.matches(e))
            .take(size + 1)
            .cloned()
            .collect();
        let next_cursor = if items.len() > size {
            items.truncate(size);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn audit_head(&self, tenant: Option<&TenantId>) -> Result<Option<ChainHead>> {
        Ok(self
            .read()
            .audit
            .get(&tenant.cloned())
            .and_then(|c| c.last())
            .map(AuditEvent::head))
    }
}

#[async_trait]
impl MarkerStore for MemoryStore {
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let mut s = self.write();
        let k = (namespace.to_owned(), key.to_owned());
        match s.markers.get(&k) {
            Some(exp) if *exp > now => Ok(false),
            _ => {
                s.markers.insert(k, expires_at);
                Ok(true)
            }
        }
    }

    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool> {
        let s = self.read();
        Ok(s.markers
            .get(&(namespace.to_owned(), key.to_owned()))
            .is_some_and(|exp| *exp > now))
    }

    async fn purge_markers(&self, now: Timestamp) -> Result<u64> {
        let mut s = self.write();
        let before = s.markers.len();
        s.markers.retain(|_, exp| *exp > now);
        Ok((before - s.markers.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_conformance_store() {
        crate::conformance::store::run_all(Arc::new(super::MemoryStore::new())).await;
    }
}

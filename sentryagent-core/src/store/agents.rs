//! [`AgentStore`]: agents, their client secrets and the marketplace query.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;

use super::{Backend, TenantStore};
use crate::credentials::ClientSecret;
use crate::marketplace_index::IndexKind;
use crate::page::{MAX_PAGE_SIZE, Page, PageRequest};
use crate::{
    Agent, AgentId, AgentStateCounts, Error, LifecycleState, LimitKind, MarketplaceQuery, Result,
    Tenant, TenantId, Timestamp,
};

/// The most agents one [`AgentStore::create_agents`] call takes; a larger
/// batch is refused with [`Error::Invalid`] before anything is written.
pub const MAX_AGENT_BATCH: usize = 10_000;

/// One agent of a bulk registration ([`AgentStore::create_agents`]): what
/// one [`AgentStore::create_agent`] call takes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgentRecord {
    /// The agent.
    pub agent: Agent,
    /// Its first client secret, if any.
    pub secret: Option<ClientSecret>,
    /// The agent limit of its tenant, checked as
    /// [`create_agent`](AgentStore::create_agent) checks it, counting the
    /// live agents earlier in the same batch as stored.
    pub max_agents: Option<u64>,
}

impl NewAgentRecord {
    /// A record of `agent` with its first `secret` and no agent limit.
    pub fn new(agent: Agent, secret: Option<ClientSecret>) -> Self {
        NewAgentRecord {
            agent,
            secret,
            max_agents: None,
        }
    }

    /// The same record checked against an agent limit of `max`.
    pub fn with_max_agents(mut self, max: Option<u64>) -> Self {
        self.max_agents = max;
        self
    }
}

/// What a batch can be checked for on its own, before any store is read:
/// at most [`MAX_AGENT_BATCH`] records (else [`Error::Invalid`]), and no id
/// or name (within a tenant) given twice (else [`Error::AlreadyExists`], as
/// the second registration would fail). Every backend's
/// [`create_agents`](AgentStore::create_agents) calls it first.
pub fn check_agent_batch(batch: &[NewAgentRecord]) -> Result<()> {
    if batch.len() > MAX_AGENT_BATCH {
        return Err(Error::invalid(
            "agents",
            format!(
                "a batch holds at most {MAX_AGENT_BATCH} agents, this one {}",
                batch.len()
            ),
        ));
    }
    let mut ids = HashSet::with_capacity(batch.len());
    let mut names = HashSet::with_capacity(batch.len());
    for r in batch {
        if !ids.insert(&r.agent.id) || !names.insert((&r.agent.tenant_id, &r.agent.name)) {
            return Err(Error::already_exists("agent"));
        }
    }
    Ok(())
}

/// The tenants of a batch, each once, in order (the order in which a
/// backend takes per-tenant locks, so that two batches never wait for each
/// other in a cycle).
pub fn agent_batch_tenants(batch: &[NewAgentRecord]) -> Vec<&TenantId> {
    let mut seen: Vec<&TenantId> = batch.iter().map(|r| &r.agent.tenant_id).collect();
    seen.sort();
    seen.dedup();
    seen
}

/// The agent limits of a batch, checked in order as successive
/// [`create_agent`](AgentStore::create_agent) calls check them: `stored`
/// holds, for each tenant of the batch, its live (not retired) agents
/// stored before the batch (a missing tenant counts none). Returns each
/// tenant's live agents with the batch stored, or the
/// [`Error::QuotaExceeded`] of the first record over its limit (`used` is
/// the count that record saw).
pub fn check_agent_batch_limits(
    batch: &[NewAgentRecord],
    stored: &BTreeMap<TenantId, u64>,
) -> Result<BTreeMap<TenantId, u64>> {
    let mut live = stored.clone();
    for r in batch {
        let used = live.entry(r.agent.tenant_id.clone()).or_insert(0);
        if let Some(max) = r.max_agents
            && *used >= max
        {
            return Err(Error::QuotaExceeded {
                limit_kind: LimitKind::Agents,
                tier: String::new(),
                used: *used,
                limit: max,
            });
        }
        if r.agent.state != LifecycleState::Retired {
            *used += 1;
        }
    }
    Ok(live)
}

/// An agent with its client secrets ([`AgentStore::get_client`]), and its
/// tenant when the backend read it in the same step.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    /// The agent.
    pub agent: Agent,
    /// Its client secrets, usable or not, oldest first.
    pub secrets: Vec<ClientSecret>,
    /// The agent's tenant, when this backend keeps tenants too and read it
    /// in the same round trip (Postgres: one query); `None` otherwise. The
    /// [`Idp`](crate::Idp) uses it only when its tenant store is the same
    /// backend object, and reads the tenant store otherwise.
    pub tenant: Option<Tenant>,
}

/// What introspecting a token reads ([`AgentStore::introspection_record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionRecord {
    /// The calling client, as [`AgentStore::get_client`] reads it; `None`
    /// if there is no such agent.
    pub caller: Option<ClientRecord>,
    /// The agent the token names (`sub`); `None` if there is no such agent.
    pub subject: Option<Agent>,
    /// Whether the token's revocation marker is present and unexpired at
    /// `now`, when this backend keeps markers too and read it in the same
    /// round trip (Postgres); `None` otherwise. The [`Idp`](crate::Idp)
    /// uses it only when its marker store is the same backend object, and
    /// asks the marker store otherwise.
    pub revoked: Option<bool>,
}

/// Agents (the OAuth clients), their client secrets, and the public
/// marketplace over them. An agent and its first secret are written in one
/// step, hence one trait.
#[async_trait]
pub trait AgentStore: Backend {
    /// Inserts an agent with its first client secret (none for an agent
    /// that authenticates only with its key or by token exchange),
    /// atomically. `AlreadyExists` if the id, or the name within the tenant,
    /// is taken. With `max_agents`, fails with `QuotaExceeded` (limit kind
    /// agents, tier left empty for the caller to fill) when the tenant
    /// already holds that many agents that are not retired; the check and
    /// the insert are one atomic step, so concurrent registrations never
    /// exceed the limit.
    async fn create_agent(
        &self,
        agent: &Agent,
        secret: Option<&ClientSecret>,
        max_agents: Option<u64>,
    ) -> Result<()>;
    /// Inserts a batch of agents with their first secrets, each as
    /// [`create_agent`](Self::create_agent) would, in order (a record's
    /// agent limit counts the live agents earlier in the batch), at most
    /// [`MAX_AGENT_BATCH`] at once ([`check_agent_batch`]). An empty batch
    /// does nothing.
    ///
    /// The backends of this project store a batch atomically: every agent
    /// of it, with all its index entries, or none (the first failure is
    /// returned), and concurrent registrations (single or bulk) never
    /// exceed an agent limit.
    ///
    /// The default checks the batch ([`check_agent_batch`]), then whether
    /// any id or name is taken and every agent limit
    /// ([`count_agents`](Self::count_agents)), then creates the agents one
    /// by one. Without concurrent writers that is all or nothing; a
    /// registration racing it can still make a later agent fail after
    /// earlier ones were stored (limits still hold: each create checks its
    /// own). A backend with transactions overrides it.
    async fn create_agents(&self, batch: &[NewAgentRecord]) -> Result<()> {
        check_agent_batch(batch)?;
        for r in batch {
            match self.get_agent(&r.agent.id).await {
                Ok(_) => return Err(Error::already_exists("agent")),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match self
                .get_agent_by_name(&r.agent.tenant_id, &r.agent.name)
                .await
            {
                Ok(_) => return Err(Error::already_exists("agent")),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut stored = BTreeMap::new();
        for tenant in agent_batch_tenants(batch) {
            stored.insert(tenant.clone(), self.count_agents(tenant).await?);
        }
        check_agent_batch_limits(batch, &stored)?;
        for r in batch {
            self.create_agent(&r.agent, r.secret.as_ref(), r.max_agents)
                .await?;
        }
        Ok(())
    }
    /// An agent by id (= client id).
    async fn get_agent(&self, id: &AgentId) -> Result<Agent>;
    /// The agent named `name` in `tenant`; `NotFound` if none. The default
    /// reads the tenant's listing; a backend with a name index overrides it.
    async fn get_agent_by_name(&self, tenant: &TenantId, name: &str) -> Result<Agent> {
        let mut page = PageRequest::first(crate::page::MAX_PAGE_SIZE);
        loop {
            let p = self.list_agents(tenant, &page).await?;
            if let Some(a) = p.items.into_iter().find(|a| a.name == name) {
                return Ok(a);
            }
            match p.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Err(crate::Error::not_found("agent")),
            }
        }
    }
    /// Replaces an agent if `agent.revision` is the stored one; returns the
    /// stored agent. Tenant and id cannot change; a name taken by another
    /// agent of the tenant is `AlreadyExists`.
    async fn update_agent(&self, agent: &Agent) -> Result<Agent>;
    /// A tenant's agents by id.
    async fn list_agents(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Agent>>;
    /// Number of a tenant's agents that are not retired.
    async fn count_agents(&self, tenant: &TenantId) -> Result<u64>;
    /// Public agents in a listed or active state matching the query (see
    /// [`MarketplaceQuery::matches`] for the meaning), by id.
    async fn search_marketplace(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>>;

    /// How many marketplace agents have each index key of `kind` (an agent
    /// kind of [`IndexKind`]; see [`crate::marketplace_index`]), as
    /// `(value, count)` with the value after `kind:`, by value; values no
    /// agent has are left out.
    ///
    /// The default reads the whole marketplace
    /// ([`search_marketplace`](Self::search_marketplace), page by page) and
    /// computes the keys; a backend with an index overrides it (sled: a
    /// count tree; Postgres: the key table).
    async fn marketplace_counts(&self, kind: IndexKind) -> Result<Vec<(String, u64)>> {
        let prefix = kind.prefix();
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let found = self
                .search_marketplace(&MarketplaceQuery::default(), &page)
                .await?;
            for agent in &found.items {
                for key in crate::marketplace_index::agent_keys(agent) {
                    if let Some(value) = key.strip_prefix(prefix.as_str()) {
                        *counts.entry(value.to_owned()).or_default() += 1;
                    }
                }
            }
            match found.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// An agent's secrets (usable or not), oldest first.
    async fn list_client_secrets(&self, agent: &AgentId) -> Result<Vec<ClientSecret>>;
    /// Rotation, atomically: every unrevoked secret of the agent gets
    /// `expires_at = min(expires_at, old_valid_until)`, and `new` is inserted.
    /// `NotFound` if the agent does not exist.
    async fn rotate_client_secret(
        &self,
        agent: &AgentId,
        new: &ClientSecret,
        old_valid_until: Timestamp,
    ) -> Result<()>;
    /// Revokes every unrevoked secret of the agent at `at`; returns how many.
    async fn revoke_client_secrets(&self, agent: &AgentId, at: Timestamp) -> Result<u64>;

    /// What authenticating a client reads: the agent and its secrets (as
    /// [`list_client_secrets`](Self::list_client_secrets)). `NotFound` if
    /// the agent does not exist.
    ///
    /// The default makes the two calls and leaves
    /// [`tenant`](ClientRecord::tenant) empty; a backend with round trips to
    /// save overrides it with one (Postgres: one query, tenant included).
    async fn get_client(&self, id: &AgentId) -> Result<ClientRecord> {
        let agent = self.get_agent(id).await?;
        let secrets = self.list_client_secrets(id).await?;
        Ok(ClientRecord {
            agent,
            secrets,
            tenant: None,
        })
    }

    /// What token introspection reads, at once: the calling client
    /// (`caller`, as [`get_client`](Self::get_client)), the agent the token
    /// names (`subject`, which may be the caller) and, for a backend that
    /// keeps markers too, whether marker `(namespace, key)` (the token's
    /// revocation) is present at `now`. A missing agent is `None`, not an
    /// error.
    ///
    /// The default makes the reads one after the other
    /// ([`get_client`](Self::get_client), then
    /// [`get_agent`](Self::get_agent) unless the subject is the caller) and
    /// leaves [`revoked`](IntrospectionRecord::revoked) `None`; a backend
    /// with round trips to save overrides it with one (Postgres: one query,
    /// the caller's tenant and the marker included).
    async fn introspection_record(
        &self,
        caller: &AgentId,
        subject: &AgentId,
        marker: (&str, &str),
        now: Timestamp,
    ) -> Result<IntrospectionRecord> {
        let _ = (marker, now);
        let caller_record = match self.get_client(caller).await {
            Ok(r) => Some(r),
            Err(crate::Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let subject_agent = if subject == caller {
            caller_record.as_ref().map(|r| r.agent.clone())
        } else {
            match self.get_agent(subject).await {
                Ok(a) => Some(a),
                Err(crate::Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            }
        };
        Ok(IntrospectionRecord {
            caller: caller_record,
            subject: subject_agent,
            revoked: None,
        })
    }

    /// How many agents of every tenant are in each lifecycle state.
    ///
    /// The default walks `tenants` ([`TenantStore::list_tenants`]) and
    /// counts each tenant's agents ([`list_agents`](Self::list_agents)):
    /// right for any backend, in as many round trips as there are pages of
    /// tenants and agents. A backend that can count in one pass overrides
    /// it (Postgres: one `GROUP BY`; sled and memory: one scan) and may
    /// ignore `tenants`. Hosts read it through
    /// [`Idp::agents_by_state`](crate::Idp::agents_by_state), which caches
    /// it.
    async fn agents_by_state(&self, tenants: &dyn TenantStore) -> Result<AgentStateCounts> {
        let mut counts = AgentStateCounts::default();
        let mut tenant_page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let page = tenants.list_tenants(&tenant_page).await?;
            for t in &page.items {
                let mut agent_page = PageRequest::first(MAX_PAGE_SIZE);
                loop {
                    let agents = self.list_agents(&t.id, &agent_page).await?;
                    for a in &agents.items {
                        counts.add(a.state, 1);
                    }
                    match agents.next_cursor {
                        Some(c) => agent_page.cursor = Some(c),
                        None => break,
                    }
                }
            }
            match page.next_cursor {
                Some(c) => tenant_page.cursor = Some(c),
                None => break,
            }
        }
        Ok(counts)
    }
}

/// [`AgentStore::introspection_record`] for a backend that keeps agents,
/// tenants and markers in the same process (no round trip to save): the
/// caller with its tenant, the subject and the marker, read in turn.
/// In-process backends implement the method by calling this.
pub async fn introspection_record_in_process<S>(
    store: &S,
    caller: &AgentId,
    subject: &AgentId,
    marker: (&str, &str),
    now: Timestamp,
) -> Result<IntrospectionRecord>
where
    S: AgentStore + TenantStore + super::MarkerStore + ?Sized,
{
    fn found<T>(r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(crate::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    let caller = match found(store.get_client(caller).await)? {
        Some(mut record) => {
            record.tenant = found(store.get_tenant(&record.agent.tenant_id).await)?;
            Some(record)
        }
        None => None,
    };
    Ok(IntrospectionRecord {
        caller,
        subject: found(store.get_agent(subject).await)?,
        revoked: Some(store.has_marker(marker.0, marker.1, now).await?),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{sample_agent, sample_secret, sample_tenant};
    use crate::{LifecycleState, MemoryStore};

    /// A memory agent store that keeps the default `agents_by_state`.
    #[derive(Debug, Default)]
    struct Walking(MemoryStore);

    impl Backend for Walking {
        fn name(&self) -> &'static str {
            "walking"
        }
    }

    #[async_trait]
    impl AgentStore for Walking {
        async fn create_agent(
            &self,
            a: &Agent,
            s: Option<&ClientSecret>,
            max: Option<u64>,
        ) -> Result<()> {
            self.0.create_agent(a, s, max).await
        }
        async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
            self.0.get_agent(id).await
        }
        async fn update_agent(&self, a: &Agent) -> Result<Agent> {
            self.0.update_agent(a).await
        }
        async fn list_agents(&self, t: &TenantId, p: &PageRequest) -> Result<Page<Agent>> {
            self.0.list_agents(t, p).await
        }
        async fn count_agents(&self, t: &TenantId) -> Result<u64> {
            self.0.count_agents(t).await
        }
        async fn search_marketplace(
            &self,
            q: &MarketplaceQuery,
            p: &PageRequest,
        ) -> Result<Page<Agent>> {
            self.0.search_marketplace(q, p).await
        }
        async fn list_client_secrets(&self, a: &AgentId) -> Result<Vec<ClientSecret>> {
            self.0.list_client_secrets(a).await
        }
        async fn rotate_client_secret(
            &self,
            a: &AgentId,
            s: &ClientSecret,
            until: Timestamp,
        ) -> Result<()> {
            self.0.rotate_client_secret(a, s, until).await
        }
        async fn revoke_client_secrets(&self, a: &AgentId, at: Timestamp) -> Result<u64> {
            self.0.revoke_client_secrets(a, at).await
        }
    }

    /// The default bulk registration (checks, then one create per agent)
    /// passes every bulk check that has no concurrent writer.
    #[tokio::test]
    async fn the_default_bulk_registration_passes_the_suite() {
        use crate::conformance::agent_store as suite;
        let store = Walking::default();
        suite::bulk_registration(&store).await;
        suite::bulk_all_or_nothing(&store).await;
        suite::bulk_agent_limit(&store).await;
        suite::bulk_batch_limit(&store).await;
    }

    #[tokio::test]
    async fn the_default_count_by_state_passes_the_suite() {
        crate::conformance::agent_store::agents_by_state(&Walking::default()).await;
    }

    /// More tenants and agents than one page of each: the walk pages
    /// through both and agrees with the memory store's own count.
    #[tokio::test]
    async fn the_default_count_by_state_pages_and_agrees_with_an_override() {
        let walking = Arc::new(Walking::default());
        let tenants = MemoryStore::new();
        let crowded = sample_tenant("Crowded");
        tenants.create_tenant(&crowded).await.unwrap();
        for i in 0..MAX_PAGE_SIZE + 3 {
            let mut a = sample_agent(&crowded.id, &format!("a{i}"));
            a.state = LifecycleState::ALL[i % LifecycleState::ALL.len()];
            walking
                .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
                .await
                .unwrap();
        }
        for i in 0..MAX_PAGE_SIZE + 2 {
            let t = sample_tenant(&format!("Tenant {i}"));
            tenants.create_tenant(&t).await.unwrap();
            if i % 100 == 0 {
                let a = sample_agent(&t.id, "lone");
                walking
                    .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
                    .await
                    .unwrap();
            }
        }
        let walked = walking.agents_by_state(&tenants).await.unwrap();
        let counted = walking.0.agents_by_state(&tenants).await.unwrap();
        assert_eq!(walked, counted);
        assert_eq!(walked.total(), (MAX_PAGE_SIZE + 3 + 6) as u64);
        assert_eq!(
            walked.get(LifecycleState::Draft),
            (MAX_PAGE_SIZE + 3).div_ceil(6) as u64
        );
    }
}

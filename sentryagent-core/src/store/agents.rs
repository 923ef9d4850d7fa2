//! [`AgentStore`]: agents, their client secrets and the marketplace query.

use async_trait::async_trait;

use super::Backend;
use crate::credentials::ClientSecret;
use crate::page::{Page, PageRequest};
use crate::{Agent, AgentId, MarketplaceQuery, Result, Tenant, TenantId, Timestamp};

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
}

//! [`AgentStore`]: everything the IdP keeps, behind one object-safe trait.
//!
//! A backend implements only these primitives; every rule (tiers, lifecycle,
//! token protocol) lives in the core above them. The conformance suite
//! [`conformance::agent_store`](crate::conformance) states what each
//! primitive must do, and every backend runs it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditQuery, ChainHead, NewAuditEvent};
use crate::credentials::{AdminKey, ClientSecret};
use crate::health::BackendHealth;
use crate::jose::Algorithm;
use crate::page::{Page, PageRequest};
use crate::{AdminKeyId, Agent, AgentId, MarketplaceQuery, Result, Tenant, TenantId, Timestamp};

/// A signing key of the token key ring, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// The private key (32 bytes), raw unless `sealed`. Protecting the store
    /// at rest is the host's responsibility (see the `Idp` docs on keys).
    pub secret: Vec<u8>,
    /// Whether `secret` is encrypted under a key-encryption key. This
    /// version writes only unsealed keys and refuses to load sealed ones.
    pub sealed: bool,
    /// Creation time; the newest key of an algorithm signs.
    pub created_at: Timestamp,
    /// No longer used for signing after this time (set when rotated out).
    pub retire_at: Option<Timestamp>,
    /// Removed from the JWKS after this time (every token it signed has
    /// expired by then).
    pub expire_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("sealed", &self.sealed)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish_non_exhaustive()
    }
}

/// An agent with its client secrets and its tenant
/// ([`AgentStore::get_client`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    /// The agent.
    pub agent: Agent,
    /// Its client secrets, usable or not, oldest first.
    pub secrets: Vec<ClientSecret>,
    /// Its tenant.
    pub tenant: Tenant,
}

/// What the IdP stores: tenants, agents, credentials, admin keys, signing
/// keys, the audit trail and one-time markers (seen `jti`s, revoked tokens,
/// processed webhook events).
///
/// Rules every backend keeps (checked by the conformance suite):
/// - Creates fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
///   on a taken unique key; reads of missing rows fail with
///   [`Error::NotFound`](crate::Error::NotFound).
/// - Updates of tenants and agents compare `revision` with the stored one and
///   fail with [`Error::Conflict`](crate::Error::Conflict) when it moved; on
///   success the stored revision is the given one plus one.
/// - Listings are ordered by id and paged by an opaque cursor.
#[async_trait]
pub trait AgentStore: Send + Sync + std::fmt::Debug {
    /// Backend name.
    fn name(&self) -> &'static str;

    // ---- tenants ----

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

    // ---- agents ----

    /// Inserts an agent with its first client secret, atomically.
    /// `AlreadyExists` if the id, or the name within the tenant, is taken.
    /// With `max_agents`, fails with `QuotaExceeded` (limit kind agents, tier
    /// left empty for the caller to fill) when the tenant already holds that
    /// many agents that are not retired; the check and the insert are one
    /// atomic step, so concurrent registrations never exceed the limit.
    async fn create_agent(
        &self,
        agent: &Agent,
        secret: &ClientSecret,
        max_agents: Option<u64>,
    ) -> Result<()>;
    /// An agent by id (= client id).
    async fn get_agent(&self, id: &AgentId) -> Result<Agent>;
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

    // ---- client secrets ----

    /// An agent's secrets (usable or not), oldest first.
    async fn list_client_secrets(&self, agent: &AgentId) -> Result<Vec<ClientSecret>>;

    /// What authenticating a client and issuing it a token read: the agent,
    /// its secrets (as [`list_client_secrets`](Self::list_client_secrets))
    /// and its tenant. `NotFound` if the agent does not exist.
    ///
    /// The default makes the three calls; a backend with round trips to
    /// save overrides it with one (Postgres: one query).
    async fn get_client(&self, id: &AgentId) -> Result<ClientRecord> {
        let agent = self.get_agent(id).await?;
        let secrets = self.list_client_secrets(id).await?;
        let tenant = self.get_tenant(&agent.tenant_id).await?;
        Ok(ClientRecord {
            agent,
            secrets,
            tenant,
        })
    }
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

    // ---- admin keys ----

    /// Inserts an admin key; `AlreadyExists` if its id or prefix is taken.
    async fn create_admin_key(&self, key: &AdminKey) -> Result<()>;
    /// An admin key by its visible prefix.
    async fn get_admin_key_by_prefix(&self, prefix: &str) -> Result<AdminKey>;
    /// Admin keys of a tenant, or the operator keys for `None`.
    async fn list_admin_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AdminKey>>;
    /// Sets `revoked_at` (idempotent; the first time stays).
    async fn revoke_admin_key(&self, id: &AdminKeyId, at: Timestamp) -> Result<()>;
    /// Sets `last_used_at`.
    async fn touch_admin_key(&self, id: &AdminKeyId, at: Timestamp) -> Result<()>;

    // ---- signing keys ----

    /// Inserts a signing key; `AlreadyExists` on a taken kid.
    async fn put_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;
    /// Replaces a signing key's record (same kid); `NotFound` if absent.
    async fn update_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;
    /// Every signing key.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Deletes a signing key (idempotent).
    async fn delete_signing_key(&self, kid: &str) -> Result<()>;

    // ---- settings ----

    /// Returns the stored value of a setting, first storing `value` if the
    /// setting is absent (atomically: concurrent callers all get the winner).
    async fn setting_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;

    // ---- audit ----

    /// Appends to the event's chain: seals it after the chain's head
    /// ([`AuditEvent::seal`]) and stores it, atomically with respect to other
    /// appends to the same chain.
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent>;
    /// Events of one chain matching the query, by sequence number; the cursor
    /// is the last returned sequence number.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>>;
    /// The head of a chain, `None` when empty.
    async fn audit_head(&self, tenant: Option<&TenantId>) -> Result<Option<ChainHead>>;

    // ---- one-time markers ----

    /// Stores `(namespace, key)` until `expires_at` if it is absent or expired
    /// at `now`; returns whether it was stored (false: already present).
    /// Atomic: of concurrent callers with one key, exactly one gets true.
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
    /// Whether `(namespace, key)` is present and unexpired at `now`.
    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool>;
    /// Removes markers expired at `now`; returns how many.
    async fn purge_markers(&self, now: Timestamp) -> Result<u64>;

    // ---- operations ----

    /// Health of the backend.
    async fn health(&self) -> BackendHealth {
        BackendHealth::up(self.name(), std::time::Duration::ZERO)
    }
}

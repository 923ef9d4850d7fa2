//! What the IdP stores, as small traits: one per kind of state.
//!
//! | trait | holds | conformance suite |
//! |---|---|---|
//! | [`TenantStore`] | tenants | `conformance::tenant_store` |
//! | [`AgentStore`] | agents, their client secrets, the marketplace query | `conformance::agent_store` |
//! | [`AdminKeyStore`] | management API keys | `conformance::admin_key_store` |
//! | [`SigningKeyStore`] | the token signing key ring | `conformance::signing_key_store` |
//! | [`SettingStore`] | named deployment settings (the secret hashing key) | `conformance::setting_store` |
//! | [`AuditLog`] | the hash-chained audit trail | `conformance::audit_log` |
//! | [`MarkerStore`] | one-time markers: seen `jti`s, revoked tokens, processed webhook events | `conformance::marker_store` |
//! | [`UserStore`] | people's accounts (unique email) | `conformance::user_store` |
//! | [`MembershipStore`] | memberships of people in tenants, with a role (an owner always kept) | `conformance::membership_store` |
//! | [`SessionStore`] | signed-in sessions (by the hash of their secret) | `conformance::session_store` |
//! | [`InvitationStore`] | invitations to join a tenant (accepted once) | `conformance::invitation_store` |
//! | [`TrustPolicyStore`] | tenants' trust policies (token exchange) | `conformance::trust_policy_store` |
//!
//! Each trait is object safe and has only the primitives a backend must
//! write; anything derivable is a provided method or lives in the
//! [`Idp`](crate::Idp). [`IdpStore`] bundles them all for a backend that
//! keeps everything (memory, sled, Postgres); it is implemented for every
//! type that implements all of them. [`IdpBuilder::store`](crate::IdpBuilder::store)
//! takes a bundle, and the builder's per-part methods replace single parts,
//! so a host can mix backends (Postgres for tenants and agents, Redis for
//! markers).
//!
//! Rules every backend keeps (checked by the suites):
//! - Creates fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
//!   on a taken unique key; reads of missing rows fail with
//!   [`Error::NotFound`](crate::Error::NotFound).
//! - Updates of tenants and agents compare `revision` with the stored one and
//!   fail with [`Error::Conflict`](crate::Error::Conflict) when it moved; on
//!   success the stored revision is the given one plus one.
//! - Listings are ordered by id and paged by an opaque cursor.

mod admin_keys;
mod agents;
mod audit_log;
mod invitations;
mod markers;
mod memberships;
mod sessions;
mod settings;
mod signing_keys;
mod tenants;
mod trust_policies;
mod users;

use std::sync::Arc;

use async_trait::async_trait;

use crate::health::BackendHealth;

pub use admin_keys::AdminKeyStore;
pub use agents::{
    AgentStore, ClientRecord, IntrospectionRecord, MAX_AGENT_BATCH, NewAgentRecord,
    agent_batch_tenants, check_agent_batch, check_agent_batch_limits,
    introspection_record_in_process,
};
pub use audit_log::AuditLog;
pub use invitations::InvitationStore;
pub use markers::MarkerStore;
pub use memberships::MembershipStore;
pub use sessions::SessionStore;
pub use settings::SettingStore;
pub use signing_keys::{SigningKeyRecord, SigningKeyStore};
pub use tenants::TenantStore;
pub use trust_policies::TrustPolicyStore;
pub use users::UserStore;

/// What every storage part says about itself: its name and its health.
/// Every store trait extends it.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Backend name (`memory`, `sled`, `postgres`, `redis`).
    fn name(&self) -> &'static str;

    /// Health of the backend (default: up, no latency measured).
    async fn health(&self) -> BackendHealth {
        BackendHealth::up(self.name(), std::time::Duration::ZERO)
    }
}

/// Every store trait at once: what a backend that keeps everything
/// implements. Implemented for each type that implements every store trait;
/// nothing to write.
pub trait IdpStore:
    TenantStore
    + AgentStore
    + AdminKeyStore
    + SigningKeyStore
    + SettingStore
    + AuditLog
    + MarkerStore
    + UserStore
    + MembershipStore
    + SessionStore
    + InvitationStore
    + TrustPolicyStore
{
}

impl<T> IdpStore for T where
    T: TenantStore
        + AgentStore
        + AdminKeyStore
        + SigningKeyStore
        + SettingStore
        + AuditLog
        + MarkerStore
        + UserStore
        + MembershipStore
        + SessionStore
        + InvitationStore
        + TrustPolicyStore
        + ?Sized
{
}

/// The store parts an [`Idp`](crate::Idp) works with, each behind its own
/// trait. [`StoreParts::from`] an [`IdpStore`] fills every part with the
/// same backend; the `with_*` methods replace one part.
#[derive(Debug, Clone)]
pub struct StoreParts {
    /// Tenants.
    pub tenants: Arc<dyn TenantStore>,
    /// Agents and their client secrets.
    pub agents: Arc<dyn AgentStore>,
    /// Management API keys.
    pub admin_keys: Arc<dyn AdminKeyStore>,
    /// Token signing keys.
    pub signing_keys: Arc<dyn SigningKeyStore>,
    /// Deployment settings.
    pub settings: Arc<dyn SettingStore>,
    /// The audit trail.
    pub audit_log: Arc<dyn AuditLog>,
    /// One-time markers.
    pub markers: Arc<dyn MarkerStore>,
    /// People's accounts.
    pub users: Arc<dyn UserStore>,
    /// Memberships of people in tenants.
    pub memberships: Arc<dyn MembershipStore>,
    /// Signed-in sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Invitations.
    pub invitations: Arc<dyn InvitationStore>,
    /// Trust policies.
    pub trust_policies: Arc<dyn TrustPolicyStore>,
}

impl<S: IdpStore + 'static> From<Arc<S>> for StoreParts {
    fn from(store: Arc<S>) -> Self {
        let bundle: Arc<dyn IdpStore> = store;
        StoreParts::from(bundle)
    }
}

impl From<Arc<dyn IdpStore>> for StoreParts {
    fn from(store: Arc<dyn IdpStore>) -> Self {
        StoreParts {
            tenants: store.clone(),
            agents: store.clone(),
            admin_keys: store.clone(),
            signing_keys: store.clone(),
            settings: store.clone(),
            audit_log: store.clone(),
            markers: store.clone(),
            users: store.clone(),
            memberships: store.clone(),
            sessions: store.clone(),
            invitations: store.clone(),
            trust_policies: store,
        }
    }
}

/// The address of the object behind a part, to tell parts of one backend
/// from parts of several.
fn addr<T: ?Sized>(part: &Arc<T>) -> *const () {
    Arc::as_ptr(part).cast::<()>()
}

impl StoreParts {
    /// Replaces the tenant store.
    pub fn with_tenants(mut self, part: Arc<dyn TenantStore>) -> Self {
        self.tenants = part;
        self
    }

    /// Replaces the agent store.
    pub fn with_agents(mut self, part: Arc<dyn AgentStore>) -> Self {
        self.agents = part;
        self
    }

    /// Replaces the admin key store.
    pub fn with_admin_keys(mut self, part: Arc<dyn AdminKeyStore>) -> Self {
        self.admin_keys = part;
        self
    }

    /// Replaces the signing key store.
    pub fn with_signing_keys(mut self, part: Arc<dyn SigningKeyStore>) -> Self {
        self.signing_keys = part;
        self
    }

    /// Replaces the setting store.
    pub fn with_settings(mut self, part: Arc<dyn SettingStore>) -> Self {
        self.settings = part;
        self
    }

    /// Replaces the audit log.
    pub fn with_audit_log(mut self, part: Arc<dyn AuditLog>) -> Self {
        self.audit_log = part;
        self
    }

    /// Replaces the marker store.
    pub fn with_markers(mut self, part: Arc<dyn MarkerStore>) -> Self {
        self.markers = part;
        self
    }

    /// Replaces the user store.
    pub fn with_users(mut self, part: Arc<dyn UserStore>) -> Self {
        self.users = part;
        self
    }

    /// Replaces the membership store.
    pub fn with_memberships(mut self, part: Arc<dyn MembershipStore>) -> Self {
        self.memberships = part;
        self
    }

    /// Replaces the session store.
    pub fn with_sessions(mut self, part: Arc<dyn SessionStore>) -> Self {
        self.sessions = part;
        self
    }

    /// Replaces the invitation store.
    pub fn with_invitations(mut self, part: Arc<dyn InvitationStore>) -> Self {
        self.invitations = part;
        self
    }

    /// Replaces the trust policy store.
    pub fn with_trust_policies(mut self, part: Arc<dyn TrustPolicyStore>) -> Self {
        self.trust_policies = part;
        self
    }

    /// Whether tenants and agents are kept by one backend object, so that a
    /// tenant read together with an agent ([`ClientRecord::tenant`]) is the
    /// stored tenant.
    pub(crate) fn tenants_beside_agents(&self) -> bool {
        addr(&self.tenants) == addr(&self.agents)
    }

    /// Whether markers and agents are kept by one backend object, so that a
    /// marker read together with agents
    /// ([`IntrospectionRecord::revoked`]) is the stored marker.
    pub(crate) fn markers_beside_agents(&self) -> bool {
        addr(&self.markers) == addr(&self.agents)
    }

    /// Each distinct backend object once, in part order.
    pub fn backends(&self) -> Vec<Arc<dyn Backend>> {
        let all: [Arc<dyn Backend>; 12] = [
            self.tenants.clone(),
            self.agents.clone(),
            self.admin_keys.clone(),
            self.signing_keys.clone(),
            self.settings.clone(),
            self.audit_log.clone(),
            self.markers.clone(),
            self.users.clone(),
            self.memberships.clone(),
            self.sessions.clone(),
            self.invitations.clone(),
            self.trust_policies.clone(),
        ];
        let mut out: Vec<Arc<dyn Backend>> = Vec::new();
        for b in all {
            if !out.iter().any(|o| addr(o) == addr(&b)) {
                out.push(b);
            }
        }
        out
    }

    /// Health of each distinct backend.
    pub async fn health(&self) -> Vec<BackendHealth> {
        let mut out = Vec::new();
        for b in self.backends() {
            out.push(b.health().await);
        }
        out
    }
}

//! Conformance suites: one per trait, run by every backend.
//!
//! Each suite is a set of public async functions taking the backend under
//! test, plus a `run_all`. A backend passes the suite without special cases,
//! or the trait has a gap. The in-memory backends run them in this crate's
//! tests; the sled, Postgres and Redis backends run the same functions.
//!
//! A backend that keeps everything runs [`store::run_all`], which runs the
//! suite of each store trait; a backend of one part runs that part's suite
//! (e.g. [`marker_store::run_all`]).
//!
//! ```no_run
//! # async fn f() {
//! use std::sync::Arc;
//! use sentryagent_core::MemoryStore;
//! sentryagent_core::conformance::store::run_all(Arc::new(MemoryStore::new())).await;
//! # }
//! ```
//!
//! Suites panic (with the backend's name and what failed) on the first
//! failure, like any test.

/// Panics with the backend's name and the message unless the condition
/// holds.
macro_rules! check {
    ($store:expr, $cond:expr, $($msg:tt)+) => {
        assert!($cond, "[{}] {}", $store.name(), format!($($msg)+))
    };
}

pub mod admin_key_store;
pub mod agent_store;
pub mod audit_log;
pub mod invitation_store;
pub mod kit;
pub mod marker_store;
pub mod marketplace;
pub mod membership_store;
pub mod rate_limiter;
pub mod session_store;
pub mod setting_store;
pub mod signing_key_store;
pub mod store;
pub mod tenant_store;
pub mod trust_policy_store;
pub mod usage_meter;
pub mod user_store;

use crate::credentials::ClientSecret;
use crate::people::{Invitation, PasswordHash, Role, Session, User, UserStatus};
use crate::secret::SecretHash;
use crate::tenant::{BillingInfo, Publisher};
use crate::{
    Agent, AgentId, InvitationId, LifecycleState, SecretId, SessionId, Tenant, TenantId,
    TenantStatus, Tier, Timestamp, UserId, Visibility,
};

/// A time of the suites: `secs` after [`kit::EPOCH`].
pub(crate) fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(kit::EPOCH.unix_secs() + secs)
}

/// A unique suffix so suites can share a database with other runs.
pub(crate) fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A tenant for tests.
pub fn sample_tenant(name: &str) -> Tenant {
    let now = kit::EPOCH;
    Tenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        slug: format!("{}-{}", crate::tenant::slugify(name), unique()),
        tier: Tier::Free,
        status: TenantStatus::Active,
        billing: BillingInfo::default(),
        publisher: Publisher {
            display_name: name.to_owned(),
            website: None,
            verified: false,
            verification: None,
        },
        allowed_audiences: vec![],
        settings: Default::default(),
        suspended_at: None,
        suspension_reason: None,
        created_at: now,
        updated_at: now,
        revision: 0,
    }
}

/// An agent of `tenant` for tests (active, private).
pub fn sample_agent(tenant: &TenantId, name: &str) -> Agent {
    let now = kit::EPOCH;
    let seed = crate::secret::random_bytes::<32>();
    let key = crate::jose::SigningKey::from_secret_bytes(
        crate::jose::Algorithm::EdDSA,
        String::new(),
        &seed,
    )
    .unwrap_or_else(|e| panic!("test key: {e}"));
    let pk = key
        .verifying_key()
        .to_jwk()
        .ed25519_public_key()
        .unwrap_or_else(|e| panic!("test key: {e}"));
    Agent {
        id: AgentId::generate(),
        tenant_id: tenant.clone(),
        name: name.to_owned(),
        description: format!("{name} does things"),
        version: "1.0.0".into(),
        capabilities: vec![],
        tags: vec![],
        category: None,
        visibility: Visibility::Private,
        state: LifecycleState::Active,
        did: crate::did::did_key_from_ed25519(&pk),
        allowed_scopes: vec![],
        custom_claims: Default::default(),
        token_algorithm: None,
        tokens_not_before: None,
        state_changed_at: Some(now),
        created_at: now,
        updated_at: now,
        revision: 0,
    }
}

/// A client secret record for `agent` for tests.
pub fn sample_secret(agent: &AgentId, seed: u8) -> ClientSecret {
    ClientSecret {
        id: SecretId::generate(),
        agent_id: agent.clone(),
        hash: SecretHash([seed; 32]),
        created_at: kit::EPOCH,
        expires_at: None,
        revoked_at: None,
    }
}

/// An account for tests, with a unique email `<name>-<unique>@example.com`
/// (the password hash is a placeholder: stores never read it).
pub fn sample_user(name: &str) -> User {
    User {
        id: UserId::generate(),
        email: format!("{}-{}@example.com", name.to_lowercase(), unique()),
        display_name: name.to_owned(),
        password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$placeholder".into()),
        status: UserStatus::Active,
        created_at: kit::EPOCH,
        last_sign_in_at: None,
        password_changed_at: kit::EPOCH,
        totp: None,
        revision: 0,
    }
}

/// A session of `user` acting in `tenant` for tests: issued at
/// [`kit::EPOCH`], idle until `idle_secs` and valid until `life_secs` after
/// it, with a random secret hash.
pub fn sample_session(
    user: &UserId,
    tenant: Option<&TenantId>,
    idle_secs: i64,
    life_secs: i64,
) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: SecretHash(crate::secret::random_bytes()),
        user_id: user.clone(),
        tenant_id: tenant.cloned(),
        role: tenant.map(|_| Role::Developer),
        created_at: kit::EPOCH,
        signed_in_at: kit::EPOCH,
        last_seen_at: kit::EPOCH,
        idle_expires_at: t(idle_secs),
        expires_at: t(life_secs),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
    }
}

/// A pending invitation to `tenant` for tests (valid for a day), with a
/// random token hash.
pub fn sample_invitation(tenant: &TenantId, role: Role) -> Invitation {
    Invitation {
        id: InvitationId::generate(),
        tenant_id: tenant.clone(),
        email: format!("invitee-{}@example.com", unique()),
        role,
        token_hash: SecretHash(crate::secret::random_bytes()),
        invited_by: "system".into(),
        by_operator: true,
        created_at: kit::EPOCH,
        expires_at: t(86_400),
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
    }
}

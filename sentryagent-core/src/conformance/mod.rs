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
pub mod kit;
pub mod marker_store;
pub mod rate_limiter;
pub mod setting_store;
pub mod signing_key_store;
pub mod store;
pub mod tenant_store;
pub mod trust_policy_store;
pub mod usage_meter;

use crate::credentials::ClientSecret;
use crate::secret::SecretHash;
use crate::tenant::{BillingInfo, Publisher};
use crate::{
    Agent, AgentId, LifecycleState, SecretId, Tenant, TenantId, TenantStatus, Tier, Timestamp,
    Visibility,
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
        },
        allowed_audiences: vec![],
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

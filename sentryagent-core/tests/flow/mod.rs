//! The `Idp` flow tests, by concern, with a manual clock: registration,
//! every client authentication method, issuance refusals, verification,
//! introspection, revocation, rotation, keys, tenants, limits and token
//! exchange (federation).
//!
//! The test crate that includes this module provides
//! `async fn store_parts() -> Option<StoreParts>`: the store the tests run
//! on (`None`: skip, after the crate printed why). The core runs them on
//! the in-memory store; `sentryagent-storage` runs the same tests on a mixed
//! store (Postgres parts, Redis markers).

#![allow(dead_code, unreachable_pub)]

mod client_auth;
mod federation;
mod limits;
mod observe;
mod people;
mod tenants;
mod tokens;

pub(crate) use std::sync::Arc;
pub(crate) use std::time::Duration;

pub(crate) use sentryagent_core::conformance::kit::{
    self, agent_key, assertion_request as jwt_request, client_assertion as assertion,
    secret_request,
};
pub(crate) use sentryagent_core::jose::jwt::{Validation, verify_jwt};
pub(crate) use sentryagent_core::jose::{Algorithm, Jwk, JwkSet, KeySet, SigningKey};
pub(crate) use sentryagent_core::{AccessTokenClaims, JWT_BEARER_ASSERTION_TYPE};
pub(crate) use sentryagent_core::{
    AdminScope, Caller, ClientCredentials, Clock, Decision, Error, Idp, LifecycleState, LimitKind,
    ManualClock, NewAgent, NewTenant, RegisteredAgent, Tenant, TenantId, TenantStatus, Tier,
    TierTable, Timestamp, TokenRequest,
};
pub(crate) use sentryagent_core::{AuditQuery, Outcome};

pub(crate) const ISSUER: &str = "https://idp.example";

/// An `Idp` on the test crate's store with a manual clock; `None` when that
/// store is unavailable (the test returns, skipped).
pub(crate) async fn idp_with(
    clock: &ManualClock,
    f: impl FnOnce(&mut sentryagent_core::IdpConfig),
) -> Option<Idp> {
    let store = crate::store_parts().await?;
    Some(
        Idp::builder(ISSUER)
            .store_parts(store)
            .clock(Arc::new(clock.clone()))
            .configure(f)
            .build()
            .await
            .unwrap(),
    )
}

pub(crate) fn clock() -> ManualClock {
    ManualClock::new(kit::EPOCH)
}

pub(crate) async fn tenant(idp: &Idp, tier: Tier) -> Tenant {
    idp.create_tenant(
        &Caller::system(),
        NewTenant {
            name: "Acme".into(),
            tier: Some(tier),
            allowed_audiences: vec!["https://api.example".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

pub(crate) async fn agent(idp: &Idp, t: &Tenant, name: &str) -> RegisteredAgent {
    register(
        idp,
        t,
        NewAgent {
            name: name.into(),
            allowed_scopes: vec!["read".into(), "write".into()],
            ..Default::default()
        },
    )
    .await
}

/// Registers `new` in `t` as the system.
pub(crate) async fn register(idp: &Idp, t: &Tenant, new: NewAgent) -> RegisteredAgent {
    idp.register_agent(&Caller::system(), &t.id, new)
        .await
        .unwrap()
}

/// The agent's secret request with another secret.
pub(crate) fn with_secret(a: &RegisteredAgent, secret: &str) -> TokenRequest {
    let mut r = secret_request(a, None);
    r.client = ClientCredentials::Secret {
        client_id: a.agent.id.to_string(),
        client_secret: secret.to_owned(),
    };
    r
}

pub(crate) async fn issue(idp: &Idp, req: &TokenRequest) -> sentryagent_core::Result<String> {
    idp.issue_token(req, &Default::default())
        .await
        .map(|t| t.access_token)
}

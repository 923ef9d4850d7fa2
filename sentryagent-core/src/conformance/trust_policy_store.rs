//! The [`TrustPolicyStore`] conformance suite.

use std::sync::Arc;

use super::{t, unique};
use crate::credentials::AdminScope;
use crate::federation::{TrustGrant, TrustPolicy};
use crate::page::PageRequest;
use crate::store::TrustPolicyStore;
use crate::{AgentId, Error, TenantId, TrustPolicyId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn TrustPolicyStore>) {
    policies(store.as_ref()).await;
    listing(store.as_ref()).await;
    race_updates(store).await;
}

/// A policy of `tenant` for tests: a GitHub-shaped policy granting an agent,
/// with conditions whose names and patterns hold the characters stores must
/// keep as they are.
pub fn sample_trust_policy(tenant: &TenantId) -> TrustPolicy {
    let mut p = TrustPolicy {
        id: TrustPolicyId::generate(),
        tenant_id: tenant.clone(),
        name: format!("deploy {}", unique()),
        issuer: crate::federation::GITHUB_ACTIONS_ISSUER.into(),
        audience: "https://idp.example".into(),
        conditions: Default::default(),
        grant: TrustGrant::AgentId(AgentId::generate()),
        max_token_ttl_seconds: 900,
        max_subject_token_age_seconds: 600,
        single_use: false,
        created_at: t(0),
        updated_at: t(0),
        revision: 0,
    };
    for (k, v) in [
        ("repository_id", "74"),
        ("ref", "refs/heads/*"),
        (
            "workflow_ref",
            "octo-org/octo-agent/.github/workflows/deploy.yml@*",
        ),
        ("/kubernetes.io/namespace", "ci ~ é ' \" \\ %"),
        ("head_ref", ""),
    ] {
        p.conditions.insert(k.into(), v.into());
    }
    p
}

/// Policies: create, read, unique id, optimistic updates, delete.
pub async fn policies(store: &dyn TrustPolicyStore) {
    let tenant = TenantId::generate();
    let a = sample_trust_policy(&tenant);
    store.create_trust_policy(&a).await.unwrap();
    check!(
        store,
        store.get_trust_policy(&a.id).await.unwrap() == a,
        "get_trust_policy returns what was stored"
    );
    let r = store.create_trust_policy(&a).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "duplicate id: {r:?}"
    );
    let r = store.get_trust_policy(&TrustPolicyId::generate()).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing policy: {r:?}"
    );

    let mut changed = a.clone();
    changed.grant = TrustGrant::AdminScopes(vec![AdminScope::AgentsWrite, AdminScope::AuditRead]);
    changed.single_use = true;
    changed.conditions.remove("ref");
    changed.updated_at = t(10);
    let stored = store.update_trust_policy(&changed).await.unwrap();
    check!(
        store,
        stored.revision == a.revision + 1,
        "revision moves by one"
    );
    let mut expected = changed.clone();
    expected.revision += 1;
    check!(
        store,
        stored == expected,
        "update returns the stored policy"
    );
    check!(
        store,
        store.get_trust_policy(&a.id).await.unwrap() == stored,
        "update is stored"
    );
    let r = store.update_trust_policy(&changed).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "stale revision: {r:?}"
    );
    let r = store
        .update_trust_policy(&sample_trust_policy(&tenant))
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "update of a missing policy: {r:?}"
    );
    let mut moved = stored.clone();
    moved.tenant_id = TenantId::generate();
    let r = store.update_trust_policy(&moved).await;
    check!(
        store,
        matches!(r, Err(Error::Invalid { .. })),
        "the tenant cannot change: {r:?}"
    );
    check!(
        store,
        store.get_trust_policy(&a.id).await.unwrap() == stored,
        "a refused update changes nothing"
    );

    store.delete_trust_policy(&a.id).await.unwrap();
    let r = store.get_trust_policy(&a.id).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "deleted: {r:?}"
    );
    let r = store.delete_trust_policy(&a.id).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "delete of a missing policy: {r:?}"
    );
    let page = store
        .list_trust_policies(&tenant, &PageRequest::default())
        .await
        .unwrap();
    check!(
        store,
        page.items.is_empty(),
        "a deleted policy is not listed"
    );
}

/// Listing: a tenant's policies only, by id, in pages.
pub async fn listing(store: &dyn TrustPolicyStore) {
    let tenant = TenantId::generate();
    let other = TenantId::generate();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let p = sample_trust_policy(&tenant);
        store.create_trust_policy(&p).await.unwrap();
        ids.push(p.id);
    }
    store
        .create_trust_policy(&sample_trust_policy(&other))
        .await
        .unwrap();
    ids.sort();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = store.list_trust_policies(&tenant, &page).await.unwrap();
        check!(store, p.items.len() <= 2, "page size holds");
        seen.extend(p.items.into_iter().map(|x| x.id));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    check!(
        store,
        seen == ids,
        "every policy of the tenant once, by id: {seen:?} vs {ids:?}"
    );
    let p = store
        .list_trust_policies(&TenantId::generate(), &PageRequest::default())
        .await
        .unwrap();
    check!(
        store,
        p.items.is_empty() && p.next_cursor.is_none(),
        "a tenant without policies"
    );
}

/// Concurrent updates from one revision: exactly one wins.
pub async fn race_updates(store: Arc<dyn TrustPolicyStore>) {
    let p = sample_trust_policy(&TenantId::generate());
    store.create_trust_policy(&p).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut next = p.clone();
        next.name = format!("writer {i}");
        tasks.push(tokio::spawn(async move {
            store.update_trust_policy(&next).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("[{}] concurrent update: {e}", store.name()),
        }
    }
    check!(
        store,
        wins == 1,
        "exactly one of 8 concurrent updates wins, got {wins}"
    );
    let stored = store.get_trust_policy(&p.id).await.unwrap();
    check!(store, stored.revision == 1, "one revision step");
}

//! The [`MembershipStore`] conformance suite.

use std::sync::Arc;

use super::t;
use crate::people::{Membership, Role};
use crate::store::MembershipStore;
use crate::{Error, TenantId, UserId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn MembershipStore>) {
    memberships(store.as_ref()).await;
    last_owner_race(store.clone()).await;
}

fn member(tenant: &TenantId, user: &UserId, role: Role) -> Membership {
    Membership {
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        role,
        created_at: t(0),
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Adding, reading and listing memberships both ways; role changes and
/// removals that always keep an owner.
pub async fn memberships(store: &dyn MembershipStore) {
    let (t1, t2) = (TenantId::generate(), TenantId::generate());
    let (a, b) = (UserId::generate(), UserId::generate());
    store
        .add_membership(&member(&t1, &a, Role::Owner))
        .await
        .unwrap();
    store
        .add_membership(&member(&t1, &b, Role::Developer))
        .await
        .unwrap();
    store
        .add_membership(&member(&t2, &a, Role::Viewer))
        .await
        .unwrap();
    let r = store.add_membership(&member(&t1, &a, Role::Viewer)).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "a second membership of one tenant: {r:?}"
    );
    check!(
        store,
        store.get_membership(&t1, &b).await.unwrap() == member(&t1, &b, Role::Developer),
        "get"
    );
    let r = store.get_membership(&t2, &b).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "not a member: {r:?}"
    );
    let members: Vec<UserId> = store
        .list_members(&t1)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    check!(
        store,
        members == sorted(&[a.clone(), b.clone()]),
        "members by user id: {members:?}"
    );
    let tenants: Vec<TenantId> = store
        .list_memberships(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.tenant_id)
        .collect();
    check!(
        store,
        tenants == sorted(&[t1.clone(), t2.clone()]),
        "memberships by tenant id: {tenants:?}"
    );
    check!(
        store,
        store
            .list_members(&TenantId::generate())
            .await
            .unwrap()
            .is_empty(),
        "an unknown tenant has no members"
    );

    let m = store.set_role(&t1, &b, Role::Admin).await.unwrap();
    check!(
        store,
        m.role == Role::Admin && m.user_id == b,
        "set_role returns: {m:?}"
    );
    let r = store.set_role(&t1, &a, Role::Admin).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "demoting the last owner: {r:?}"
    );
    let r = store.remove_membership(&t1, &a).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "removing the last owner: {r:?}"
    );
    check!(
        store,
        store.set_role(&t1, &a, Role::Owner).await.unwrap().role == Role::Owner,
        "an owner stays owner"
    );
    store.set_role(&t1, &b, Role::Owner).await.unwrap();
    store.set_role(&t1, &a, Role::Viewer).await.unwrap();
    let r = store.remove_membership(&t1, &b).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "the other owner is now the last: {r:?}"
    );
    store.remove_membership(&t1, &a).await.unwrap();
    let r = store.remove_membership(&t1, &a).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "removed twice: {r:?}"
    );
    let r = store.set_role(&t1, &a, Role::Viewer).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "role of a non-member: {r:?}"
    );
    // A tenant with no owner at all lets its other members go.
    store.remove_membership(&t2, &a).await.unwrap();
    check!(
        store,
        store.list_memberships(&a).await.unwrap().is_empty(),
        "no memberships left"
    );
}

/// Two owners demoting or removing each other at once: one wins, the
/// tenant keeps an owner.
pub async fn last_owner_race(store: Arc<dyn MembershipStore>) {
    for round in 0..12 {
        let tenant = TenantId::generate();
        let (a, b) = (UserId::generate(), UserId::generate());
        store
            .add_membership(&member(&tenant, &a, Role::Owner))
            .await
            .unwrap();
        store
            .add_membership(&member(&tenant, &b, Role::Owner))
            .await
            .unwrap();
        let (s1, s2) = (store.clone(), store.clone());
        let (t1, t2) = (tenant.clone(), tenant.clone());
        let (a1, b2) = (a.clone(), b.clone());
        let first = tokio::spawn(async move {
            if round % 2 == 0 {
                s1.remove_membership(&t1, &a1).await
            } else {
                s1.set_role(&t1, &a1, Role::Viewer).await.map(|_| ())
            }
        });
        let second = tokio::spawn(async move { s2.remove_membership(&t2, &b2).await });
        let results = [first.await.unwrap(), second.await.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        check!(
            store,
            ok == 1,
            "round {round}: exactly one of two owners leaves: {results:?}"
        );
        for r in &results {
            check!(
                store,
                matches!(r, Ok(()) | Err(Error::Conflict { .. })),
                "round {round}: the loser gets Conflict: {r:?}"
            );
        }
        let owners = store
            .list_members(&tenant)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.role == Role::Owner)
            .count();
        check!(
            store,
            owners == 1,
            "round {round}: one owner left, found {owners}"
        );
    }
}

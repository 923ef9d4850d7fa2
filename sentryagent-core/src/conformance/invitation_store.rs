//! The [`InvitationStore`] conformance suite.

use std::sync::Arc;

use super::{sample_invitation, t};
use crate::people::Role;
use crate::secret::SecretHash;
use crate::store::InvitationStore;
use crate::{Error, InvitationId, TenantId, UserId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn InvitationStore>) {
    invitations(store.as_ref()).await;
    race_accept(store.clone()).await;
}

/// Invitations: unique id and token hash, lookup by hash, listing by
/// tenant, revocation, acceptance once.
pub async fn invitations(store: &dyn InvitationStore) {
    let (t1, t2) = (TenantId::generate(), TenantId::generate());
    let i1 = sample_invitation(&t1, Role::Developer);
    let i2 = sample_invitation(&t1, Role::Viewer);
    let i3 = sample_invitation(&t2, Role::Admin);
    for i in [&i1, &i2, &i3] {
        store.create_invitation(i).await.unwrap();
    }
    let mut dup = sample_invitation(&t1, Role::Viewer);
    dup.id = i1.id.clone();
    let r = store.create_invitation(&dup).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken id: {r:?}"
    );
    let mut dup = sample_invitation(&t1, Role::Viewer);
    dup.token_hash = i1.token_hash;
    let r = store.create_invitation(&dup).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken token hash: {r:?}"
    );
    check!(
        store,
        store.get_invitation_by_token(&i1.token_hash).await.unwrap() == i1,
        "get by token hash"
    );
    let r = store.get_invitation_by_token(&SecretHash([7; 32])).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "unknown token: {r:?}"
    );
    let ids: Vec<InvitationId> = store
        .list_invitations(&t1)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut want = vec![i1.id.clone(), i2.id.clone()];
    want.sort();
    check!(store, ids == want, "a tenant's invitations by id: {ids:?}");

    let r = store.revoke_invitation(&t2, &i2.id, t(5)).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "another tenant's invitation: {r:?}"
    );
    let revoked = store.revoke_invitation(&t1, &i2.id, t(5)).await.unwrap();
    check!(
        store,
        revoked.revoked_at == Some(t(5)),
        "revoked: {revoked:?}"
    );
    let again = store.revoke_invitation(&t1, &i2.id, t(9)).await.unwrap();
    check!(
        store,
        again.revoked_at == Some(t(5)),
        "the first revocation stays"
    );
    let r = store
        .accept_invitation(&i2.id, &UserId::generate(), t(6))
        .await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "a revoked invitation is not accepted: {r:?}"
    );

    let user = UserId::generate();
    let accepted = store.accept_invitation(&i1.id, &user, t(6)).await.unwrap();
    check!(
        store,
        accepted.accepted_at == Some(t(6)) && accepted.accepted_by.as_ref() == Some(&user),
        "accepted: {accepted:?}"
    );
    check!(
        store,
        store.get_invitation_by_token(&i1.token_hash).await.unwrap() == accepted,
        "the acceptance is stored"
    );
    let r = store
        .accept_invitation(&i1.id, &UserId::generate(), t(7))
        .await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "accepted twice: {r:?}"
    );
    let r = store.revoke_invitation(&t1, &i1.id, t(8)).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "an accepted invitation is not revoked: {r:?}"
    );
    let r = store
        .accept_invitation(&InvitationId::generate(), &user, t(6))
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "accept missing: {r:?}"
    );
}

/// Concurrent acceptances of one invitation: exactly one succeeds.
pub async fn race_accept(store: Arc<dyn InvitationStore>) {
    let inv = sample_invitation(&TenantId::generate(), Role::Viewer);
    store.create_invitation(&inv).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let id = inv.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .accept_invitation(&id, &UserId::generate(), t(1))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("[{}] racing accept_invitation: {e}", store.name()),
        }
    }
    check!(
        store,
        ok == 1,
        "exactly one of 16 concurrent acceptances succeeds, got {ok}"
    );
}

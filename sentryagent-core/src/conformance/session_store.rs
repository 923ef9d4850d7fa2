//! The [`SessionStore`] conformance suite.

use std::sync::Arc;

use super::{sample_session, t};
use crate::secret::SecretHash;
use crate::store::SessionStore;
use crate::{Error, SessionId, TenantId, UserId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn SessionStore>) {
    sessions(store.as_ref()).await;
    expiry(store.as_ref()).await;
}

async fn present(store: &dyn SessionStore, hash: &SecretHash) -> bool {
    match store.get_session(hash).await {
        Ok(_) => true,
        Err(Error::NotFound { .. }) => false,
        Err(e) => panic!("[{}] get_session: {e}", store.name()),
    }
}

/// Sessions: unique id and secret hash, lookup by hash, touch, listing,
/// ending one, ending a person's (by tenant, keeping one).
pub async fn sessions(store: &dyn SessionStore) {
    let (user, other) = (UserId::generate(), UserId::generate());
    let (t1, t2) = (TenantId::generate(), TenantId::generate());
    let s1 = sample_session(&user, Some(&t1), 100, 1000);
    let s2 = sample_session(&user, Some(&t2), 100, 1000);
    let s3 = sample_session(&user, Some(&t1), 100, 1000);
    let theirs = sample_session(&other, Some(&t1), 100, 1000);
    for s in [&s1, &s2, &s3, &theirs] {
        store.create_session(s).await.unwrap();
    }
    let mut dup = sample_session(&user, None, 100, 1000);
    dup.id = s1.id.clone();
    let r = store.create_session(&dup).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken id: {r:?}"
    );
    let mut dup = sample_session(&user, None, 100, 1000);
    dup.token_hash = s1.token_hash;
    let r = store.create_session(&dup).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken secret hash: {r:?}"
    );
    check!(
        store,
        store.get_session(&s1.token_hash).await.unwrap() == s1,
        "get by secret hash"
    );
    check!(
        store,
        !present(store, &SecretHash([9; 32])).await,
        "an unknown hash finds nothing"
    );

    store.touch_session(&s1.id, t(50), t(150)).await.unwrap();
    let got = store.get_session(&s1.token_hash).await.unwrap();
    check!(
        store,
        got.last_seen_at == t(50) && got.idle_expires_at == t(150) && got.expires_at == t(1000),
        "touch moves the idle end only: {got:?}"
    );
    let r = store
        .touch_session(&SessionId::generate(), t(1), t(2))
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "touch missing: {r:?}"
    );

    let ids: Vec<SessionId> = store
        .list_sessions(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut want = vec![s1.id.clone(), s2.id.clone(), s3.id.clone()];
    want.sort();
    check!(store, ids == want, "a person's sessions by id: {ids:?}");

    let n = store
        .delete_sessions(&user, Some(&t1), Some(&s1.id))
        .await
        .unwrap();
    check!(
        store,
        n == 1,
        "ending the tenant's sessions but one ends one: {n}"
    );
    check!(
        store,
        present(store, &s1.token_hash).await
            && present(store, &s2.token_hash).await
            && !present(store, &s3.token_hash).await,
        "only the other session of that tenant ended"
    );
    check!(
        store,
        store.delete_session(&s2.id).await.unwrap(),
        "ending one"
    );
    check!(
        store,
        !store.delete_session(&s2.id).await.unwrap(),
        "ending it again finds nothing"
    );
    check!(
        store,
        !present(store, &s2.token_hash).await,
        "ended means gone"
    );
    let n = store.delete_sessions(&user, None, None).await.unwrap();
    check!(store, n == 1, "ending every session of a person: {n}");
    check!(
        store,
        store.list_sessions(&user).await.unwrap().is_empty(),
        "none left"
    );
    check!(
        store,
        present(store, &theirs.token_hash).await,
        "another person's session stays"
    );
}

/// Purging removes sessions past their idle end or their lifetime, and
/// only those.
pub async fn expiry(store: &dyn SessionStore) {
    let user = UserId::generate();
    let idle = sample_session(&user, None, 10, 100);
    let old = sample_session(&user, None, 100, 10);
    let live = sample_session(&user, None, 11, 11);
    for s in [&idle, &old, &live] {
        store.create_session(s).await.unwrap();
    }
    check!(
        store,
        !idle.is_live(t(10)) && idle.is_live(t(9)) && !old.is_live(t(10)) && live.is_live(t(10)),
        "is_live: valid strictly before both ends"
    );
    let n = store.purge_sessions(t(10)).await.unwrap();
    check!(store, n >= 2, "purge counts what it removed: {n}");
    check!(
        store,
        !present(store, &idle.token_hash).await && !present(store, &old.token_hash).await,
        "idle and expired sessions are purged"
    );
    check!(
        store,
        present(store, &live.token_hash).await,
        "a live session stays"
    );
    // Touching moves the idle end, so a purge later keeps it.
    store.touch_session(&live.id, t(10), t(50)).await.unwrap();
    store.purge_sessions(t(11)).await.unwrap();
    check!(
        store,
        !present(store, &live.token_hash).await,
        "the lifetime ends a session whatever its idle end"
    );
}

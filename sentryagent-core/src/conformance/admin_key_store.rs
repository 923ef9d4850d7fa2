//! The [`AdminKeyStore`] conformance suite.

use std::sync::Arc;

use super::{sample_tenant, t, unique};
use crate::credentials::{AdminKey, AdminScope};
use crate::secret::SecretHash;
use crate::store::AdminKeyStore;
use crate::{AdminKeyId, Error, TenantId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn AdminKeyStore>) {
    admin_keys(store.as_ref()).await;
    concurrent_touches(store.clone()).await;
}

fn admin_key(tenant: Option<&TenantId>) -> AdminKey {
    AdminKey {
        id: AdminKeyId::generate(),
        prefix: format!("sa_ak_{}", &unique()[..8]),
        tenant_id: tenant.cloned(),
        name: "test".into(),
        scopes: vec![AdminScope::Admin],
        hash: SecretHash([5; 32]),
        created_at: t(0),
        last_used_at: None,
        revoked_at: None,
        expires_at: None,
        revocation_reason: None,
        request_count: 0,
    }
}

/// Admin keys: unique prefix, lookup, listing by reach, revoke, touch.
pub async fn admin_keys(store: &dyn AdminKeyStore) {
    let ten = sample_tenant("Keys");
    let k = admin_key(Some(&ten.id));
    store.create_admin_key(&k).await.unwrap();
    check!(
        store,
        store.get_admin_key_by_prefix(&k.prefix).await.unwrap() == k,
        "lookup by prefix"
    );
    let mut dup = admin_key(None);
    dup.prefix = k.prefix.clone();
    let r = store.create_admin_key(&dup).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "duplicate prefix: {r:?}"
    );
    let op = admin_key(None);
    store.create_admin_key(&op).await.unwrap();
    let tenant_keys = store.list_admin_keys(Some(&ten.id)).await.unwrap();
    check!(store, tenant_keys == vec![k.clone()], "tenant listing");
    let ops = store.list_admin_keys(None).await.unwrap();
    check!(
        store,
        ops.iter().any(|x| x.id == op.id) && ops.iter().all(|x| x.tenant_id.is_none()),
        "operator listing"
    );
    store.touch_admin_key(&k.id, t(4), 3).await.unwrap();
    store.touch_admin_key(&k.id, t(5), 2).await.unwrap();
    store
        .revoke_admin_key(&k.id, t(10), Some("leaked in a CI log"))
        .await
        .unwrap();
    store
        .revoke_admin_key(&k.id, t(20), Some("again"))
        .await
        .unwrap();
    let got = store.get_admin_key_by_prefix(&k.prefix).await.unwrap();
    check!(
        store,
        got.revoked_at == Some(t(10))
            && got.revocation_reason.as_deref() == Some("leaked in a CI log")
            && got.last_used_at == Some(t(5))
            && got.request_count == 5,
        "revoke keeps the first time and reason; touch stores the time and adds the count: {got:?}"
    );
    let mut expiring = admin_key(Some(&ten.id));
    expiring.expires_at = Some(t(100));
    store.create_admin_key(&expiring).await.unwrap();
    store
        .revoke_admin_key(&expiring.id, t(7), None)
        .await
        .unwrap();
    let got = store
        .get_admin_key_by_prefix(&expiring.prefix)
        .await
        .unwrap();
    check!(
        store,
        got.expires_at == Some(t(100))
            && got.revoked_at == Some(t(7))
            && got.revocation_reason.is_none(),
        "expiry stored; a revocation without a reason: {got:?}"
    );
    let r = store.get_admin_key_by_prefix("sa_ak_nothere").await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing prefix: {r:?}"
    );
    let r = store
        .revoke_admin_key(&AdminKeyId::generate(), t(0), None)
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "revoke missing key: {r:?}"
    );
}

/// Concurrent touches of one key (several nodes): every count is added.
pub async fn concurrent_touches(store: Arc<dyn AdminKeyStore>) {
    let k = admin_key(None);
    store.create_admin_key(&k).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let id = k.id.clone();
        tasks.push(tokio::spawn(async move {
            store.touch_admin_key(&id, t(i), 10).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let got = store.get_admin_key_by_prefix(&k.prefix).await.unwrap();
    check!(
        store,
        got.request_count == 160,
        "16 concurrent touches of 10 add up to 160, got {}",
        got.request_count
    );
}

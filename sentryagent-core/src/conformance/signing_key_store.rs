//! The [`SigningKeyStore`] conformance suite.

use std::sync::Arc;

use super::{t, unique};
use crate::Error;
use crate::jose::Algorithm;
use crate::store::{SigningKeyRecord, SigningKeyStore};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn SigningKeyStore>) {
    signing_keys(store.as_ref()).await;
}

/// Signing keys: insert, update, list, delete.
pub async fn signing_keys(store: &dyn SigningKeyStore) {
    let kid = format!("kid-{}", unique());
    let rec = SigningKeyRecord {
        kid: kid.clone(),
        alg: Algorithm::EdDSA,
        secret: vec![7; 32],
        sealed: false,
        created_at: t(0),
        retire_at: None,
        expire_at: None,
    };
    store.put_signing_key(&rec).await.unwrap();
    let r = store.put_signing_key(&rec).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "duplicate kid: {r:?}"
    );
    let mut retired = rec.clone();
    retired.retire_at = Some(t(10));
    retired.expire_at = Some(t(20));
    store.update_signing_key(&retired).await.unwrap();
    let all = store.list_signing_keys().await.unwrap();
    check!(store, all.iter().any(|k| k == &retired), "update stored");
    store.delete_signing_key(&kid).await.unwrap();
    store.delete_signing_key(&kid).await.unwrap();
    check!(
        store,
        !store
            .list_signing_keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.kid == kid),
        "deleted"
    );
    let r = store.update_signing_key(&rec).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "update missing: {r:?}"
    );
}

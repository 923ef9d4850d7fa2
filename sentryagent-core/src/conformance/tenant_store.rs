//! The [`TenantStore`] conformance suite.

use std::sync::Arc;

use super::sample_tenant;
use crate::page::PageRequest;
use crate::store::TenantStore;
use crate::{Error, TenantId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn TenantStore>) {
    tenants(store.as_ref()).await;
    paging(store.as_ref()).await;
}

/// Tenants: create, read by id and slug, unique keys, optimistic updates.
pub async fn tenants(store: &dyn TenantStore) {
    let a = sample_tenant("Acme Corp");
    store.create_tenant(&a).await.unwrap();
    check!(
        store,
        store.get_tenant(&a.id).await.unwrap() == a,
        "get_tenant returns what was stored"
    );
    check!(
        store,
        store.get_tenant_by_slug(&a.slug).await.unwrap() == a,
        "get_tenant_by_slug"
    );
    let r = store.create_tenant(&a).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "duplicate id: {r:?}"
    );
    let mut same_slug = sample_tenant("Other");
    same_slug.slug = a.slug.clone();
    let r = store.create_tenant(&same_slug).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "duplicate slug: {r:?}"
    );
    let r = store.get_tenant(&TenantId::generate()).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing tenant: {r:?}"
    );
    let r = store.get_tenant_by_slug("no-such-slug-here").await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing slug: {r:?}"
    );
    let b = sample_tenant("Beta Corp");
    store.create_tenant(&b).await.unwrap();
    let mut many = store
        .get_tenants(&[
            b.id.clone(),
            TenantId::generate(),
            a.id.clone(),
            b.id.clone(),
        ])
        .await
        .unwrap();
    many.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
    check!(
        store,
        many == want,
        "get_tenants: each existing tenant once, unknown ids left out"
    );
    check!(
        store,
        store.get_tenants(&[]).await.unwrap().is_empty(),
        "get_tenants of no ids"
    );

    let mut changed = a.clone();
    changed.tier = crate::Tier::Pro;
    changed.billing.customer_id = Some("cus_1".into());
    let stored = store.update_tenant(&changed).await.unwrap();
    check!(
        store,
        stored.revision == a.revision + 1,
        "revision moves by one"
    );
    check!(
        store,
        store.get_tenant(&a.id).await.unwrap() == stored,
        "update is stored"
    );
    // A writer holding the old revision loses.
    let r = store.update_tenant(&changed).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "stale revision: {r:?}"
    );
    let r = store.update_tenant(&sample_tenant("Ghost")).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "update of a missing tenant: {r:?}"
    );
}

/// Cursor paging of tenants reaches every tenant.
pub async fn paging(store: &dyn TenantStore) {
    let ten = sample_tenant("Pager");
    store.create_tenant(&ten).await.unwrap();
    let mut seen = 0;
    let mut req = PageRequest::first(2);
    let mut found = false;
    loop {
        let p = store.list_tenants(&req).await.unwrap();
        seen += p.items.len();
        found |= p.items.iter().any(|x| x.id == ten.id);
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
        check!(store, seen < 1_000_000, "tenant paging ends");
    }
    check!(store, found, "list_tenants reaches every tenant");
}

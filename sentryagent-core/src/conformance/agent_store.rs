//! The [`AgentStore`] conformance suite.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{sample_agent, sample_secret, sample_tenant, unique};
use crate::audit::{AuditQuery, NewAuditEvent, Outcome, RequestMeta, verify_chain};
use crate::credentials::{AdminKey, AdminScope};
use crate::jose::Algorithm;
use crate::page::PageRequest;
use crate::secret::SecretHash;
use crate::store::{AgentStore, SigningKeyRecord};
use crate::{
    AdminKeyId, AgentId, Error, LifecycleState, LimitKind, MarketplaceQuery, TenantId, Timestamp,
    Visibility,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(1_763_700_000 + secs)
}

macro_rules! check {
    ($store:expr, $cond:expr, $($msg:tt)+) => {
        assert!($cond, "[{}] {}", $store.name(), format!($($msg)+))
    };
}

/// Runs every test of the suite.
pub async fn run_all(store: Arc<dyn AgentStore>) {
    tenants(store.as_ref()).await;
    agents(store.as_ref()).await;
    agent_limit(store.as_ref()).await;
    marketplace(store.as_ref()).await;
    paging(store.as_ref()).await;
    client_secrets(store.as_ref()).await;
    admin_keys(store.as_ref()).await;
    signing_keys(store.as_ref()).await;
    settings(store.as_ref()).await;
    audit(store.as_ref()).await;
    markers(store.as_ref()).await;
    race_same_name(store.clone()).await;
    race_agent_limit(store.clone()).await;
    race_audit_append(store.clone()).await;
    race_markers(store.clone()).await;
}

/// Tenants: create, read by id and slug, unique keys, optimistic updates.
pub async fn tenants(store: &dyn AgentStore) {
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

/// Agents: create with a secret, read, unique names per tenant, updates.
pub async fn agents(store: &dyn AgentStore) {
    let ten = sample_tenant("Agents Inc");
    let other = sample_tenant("Other Inc");
    store.create_tenant(&ten).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    let a = sample_agent(&ten.id, "alpha");
    let s = sample_secret(&a.id, 1);
    store.create_agent(&a, &s, None).await.unwrap();
    check!(
        store,
        store.get_agent(&a.id).await.unwrap() == a,
        "get_agent returns what was stored"
    );
    check!(
        store,
        store.list_client_secrets(&a.id).await.unwrap() == vec![s.clone()],
        "first secret stored with the agent"
    );

    let dup_name = sample_agent(&ten.id, "alpha");
    let r = store
        .create_agent(&dup_name, &sample_secret(&dup_name.id, 2), None)
        .await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "same name in a tenant: {r:?}"
    );
    check!(
        store,
        store
            .list_client_secrets(&dup_name.id)
            .await
            .unwrap()
            .is_empty(),
        "a refused agent leaves no secret"
    );
    let elsewhere = sample_agent(&other.id, "alpha");
    store
        .create_agent(&elsewhere, &sample_secret(&elsewhere.id, 3), None)
        .await
        .unwrap();
    let r = store.create_agent(&a, &s, None).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "same id: {r:?}"
    );
    let r = store.get_agent(&AgentId::generate()).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing agent: {r:?}"
    );

    // Update with optimistic concurrency.
    let mut renamed = a.clone();
    renamed.name = "alpha-2".into();
    renamed.description = "renamed".into();
    let stored = store.update_agent(&renamed).await.unwrap();
    check!(store, stored.revision == 1, "revision moves by one");
    check!(
        store,
        store.get_agent(&a.id).await.unwrap() == stored,
        "update stored"
    );
    let r = store.update_agent(&renamed).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "stale revision: {r:?}"
    );
    // The old name is free again; the new one is taken.
    let reuse = sample_agent(&ten.id, "alpha");
    store
        .create_agent(&reuse, &sample_secret(&reuse.id, 4), None)
        .await
        .unwrap();
    let mut clash = store.get_agent(&reuse.id).await.unwrap();
    clash.name = "alpha-2".into();
    let r = store.update_agent(&clash).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "rename onto a taken name: {r:?}"
    );

    // Counting ignores retired agents.
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 2,
        "two agents"
    );
    let mut retired = store.get_agent(&reuse.id).await.unwrap();
    retired.state = LifecycleState::Retired;
    store.update_agent(&retired).await.unwrap();
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 1,
        "retired agents do not count"
    );

    // Listing never crosses tenants.
    let listed = store
        .list_agents(&other.id, &PageRequest::first(100))
        .await
        .unwrap();
    check!(
        store,
        listed.items.len() == 1 && listed.items[0].id == elsewhere.id,
        "list_agents stays in its tenant"
    );
}

/// The agent limit is checked with the insert.
pub async fn agent_limit(store: &dyn AgentStore) {
    let ten = sample_tenant("Limited");
    store.create_tenant(&ten).await.unwrap();
    for i in 0..3 {
        let a = sample_agent(&ten.id, &format!("a{i}"));
        store
            .create_agent(&a, &sample_secret(&a.id, 1), Some(3))
            .await
            .unwrap();
    }
    let a = sample_agent(&ten.id, "a3");
    let r = store
        .create_agent(&a, &sample_secret(&a.id, 1), Some(3))
        .await;
    check!(
        store,
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::Agents,
                used: 3,
                limit: 3,
                ..
            })
        ),
        "fourth agent over a limit of three: {r:?}"
    );
    check!(
        store,
        matches!(store.get_agent(&a.id).await, Err(Error::NotFound { .. })),
        "refused agent not stored"
    );
    // Retiring one frees a place.
    let first = store
        .list_agents(&ten.id, &PageRequest::first(1))
        .await
        .unwrap()
        .items
        .remove(0);
    let mut retired = first.clone();
    retired.state = LifecycleState::Retired;
    store.update_agent(&retired).await.unwrap();
    store
        .create_agent(&a, &sample_secret(&a.id, 1), Some(3))
        .await
        .unwrap();
}

/// Marketplace search: only public listed/active agents; text and filters.
pub async fn marketplace(store: &dyn AgentStore) {
    let tag = format!("tag{}", unique());
    let pubr = sample_tenant("Publisher");
    let other = sample_tenant("Other Publisher");
    store.create_tenant(&pubr).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    let mk = |tenant: &TenantId,
              name: &str,
              desc: &str,
              caps: &[&str],
              state: LifecycleState,
              vis: Visibility,
              cat: Option<&str>| {
        let mut a = sample_agent(tenant, name);
        a.description = desc.to_owned();
        a.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
        a.tags = vec![tag.clone()];
        a.state = state;
        a.visibility = vis;
        a.category = cat.map(str::to_owned);
        a
    };
    let translator = mk(
        &pubr.id,
        "Translator",
        "Translates invoices between languages",
        &["translate", "summarize"],
        LifecycleState::Listed,
        Visibility::Public,
        Some("language"),
    );
    let summarizer = mk(
        &pubr.id,
        "Summarizer",
        "Summarizes long documents",
        &["summarize"],
        LifecycleState::Active,
        Visibility::Public,
        Some("language"),
    );
    let private = mk(
        &pubr.id,
        "Secret Translator",
        "Translates internal memos",
        &["translate"],
        LifecycleState::Listed,
        Visibility::Private,
        None,
    );
    let draft = mk(
        &pubr.id,
        "Draft Translator",
        "Translates drafts",
        &["translate"],
        LifecycleState::Draft,
        Visibility::Public,
        None,
    );
    let paused = mk(
        &other.id,
        "Paused Translator",
        "Translates when awake",
        &["translate"],
        LifecycleState::Paused,
        Visibility::Public,
        None,
    );
    let foreign = mk(
        &other.id,
        "Invoice Reader",
        "Reads invoices",
        &["ocr"],
        LifecycleState::Listed,
        Visibility::Public,
        Some("finance"),
    );
    for a in [
        &translator,
        &summarizer,
        &private,
        &draft,
        &paused,
        &foreign,
    ] {
        store
            .create_agent(a, &sample_secret(&a.id, 9), None)
            .await
            .unwrap();
    }
    let search = |q: MarketplaceQuery| async move {
        let page = store
            .search_marketplace(&q, &PageRequest::first(100))
            .await
            .unwrap();
        page.items
            .into_iter()
            .map(|a| a.name)
            .collect::<BTreeSet<_>>()
    };
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    let base = MarketplaceQuery {
        tag: Some(tag.clone()),
        ..Default::default()
    };

    check!(
        store,
        search(base.clone()).await == names(&["Translator", "Summarizer", "Invoice Reader"]),
        "only public listed/active agents"
    );
    let q = MarketplaceQuery {
        text: Some("invoices".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator", "Invoice Reader"]),
        "text over description"
    );
    let q = MarketplaceQuery {
        text: Some("TRANSLATOR".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator"]),
        "text is case-insensitive, over name"
    );
    let q = MarketplaceQuery {
        text: Some("summarize languages".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator"]),
        "every word must match (capability and description)"
    );
    let q = MarketplaceQuery {
        capability: Some("summarize".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator", "Summarizer"]),
        "capability filter"
    );
    let q = MarketplaceQuery {
        category: Some("finance".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Invoice Reader"]),
        "category filter"
    );
    let q = MarketplaceQuery {
        publisher: Some(pubr.id.clone()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator", "Summarizer"]),
        "publisher filter"
    );
    let q = MarketplaceQuery {
        text: Some("nonexistentword".into()),
        ..base.clone()
    };
    check!(store, search(q).await.is_empty(), "no match");

    // Changes reach the index.
    let mut t2 = store.get_agent(&translator.id).await.unwrap();
    t2.description = "Converts receipts".into();
    t2.capabilities = vec!["convert".into()];
    store.update_agent(&t2).await.unwrap();
    let q = MarketplaceQuery {
        text: Some("invoices".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Invoice Reader"]),
        "an update leaves no stale terms"
    );
    let q = MarketplaceQuery {
        text: Some("receipts".into()),
        ..base.clone()
    };
    check!(
        store,
        search(q).await == names(&["Translator"]),
        "an update adds new terms"
    );
    let mut s2 = store.get_agent(&summarizer.id).await.unwrap();
    s2.state = LifecycleState::Retired;
    store.update_agent(&s2).await.unwrap();
    let mut p2 = store.get_agent(&private.id).await.unwrap();
    p2.visibility = Visibility::Public;
    store.update_agent(&p2).await.unwrap();
    check!(
        store,
        search(base.clone()).await == names(&["Translator", "Secret Translator", "Invoice Reader"]),
        "retired leaves, public joins"
    );
}

/// Cursor paging visits everything once, in id order.
pub async fn paging(store: &dyn AgentStore) {
    let ten = sample_tenant("Pager");
    store.create_tenant(&ten).await.unwrap();
    let tag = format!("page{}", unique());
    let mut ids = BTreeSet::new();
    for i in 0..23 {
        let mut a = sample_agent(&ten.id, &format!("p{i:02}"));
        a.visibility = Visibility::Public;
        a.tags = vec![tag.clone()];
        store
            .create_agent(&a, &sample_secret(&a.id, 1), None)
            .await
            .unwrap();
        ids.insert(a.id.clone());
    }
    for size in [1usize, 5, 23, 50] {
        let mut seen = Vec::new();
        let mut req = PageRequest::first(size);
        let mut pages = 0;
        loop {
            let p = store.list_agents(&ten.id, &req).await.unwrap();
            check!(store, p.items.len() <= size, "page larger than asked");
            seen.extend(p.items.into_iter().map(|a| a.id));
            pages += 1;
            check!(store, pages <= 30, "paging does not end");
            match p.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        check!(
            store,
            seen.iter().cloned().collect::<BTreeSet<_>>() == ids && seen.len() == ids.len(),
            "list_agents pages of {size} visit every agent once"
        );
        check!(store, seen.windows(2).all(|w| w[0] < w[1]), "ordered by id");

        let q = MarketplaceQuery {
            tag: Some(tag.clone()),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut req = PageRequest::first(size);
        loop {
            let p = store.search_marketplace(&q, &req).await.unwrap();
            seen.extend(p.items.into_iter().map(|a| a.id));
            match p.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        check!(
            store,
            seen.len() == 23 && seen.windows(2).all(|w| w[0] < w[1]),
            "marketplace pages of {size}"
        );
    }
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

/// Client secrets: rotation sets a grace period, revocation is total.
pub async fn client_secrets(store: &dyn AgentStore) {
    let ten = sample_tenant("Secrets");
    store.create_tenant(&ten).await.unwrap();
    let a = sample_agent(&ten.id, "s");
    let first = sample_secret(&a.id, 1);
    store.create_agent(&a, &first, None).await.unwrap();
    let second = sample_secret(&a.id, 2);
    store
        .rotate_client_secret(&a.id, &second, t(100))
        .await
        .unwrap();
    let list = store.list_client_secrets(&a.id).await.unwrap();
    check!(store, list.len() == 2, "two secrets after rotation");
    let old = list.iter().find(|s| s.id == first.id).unwrap();
    let new = list.iter().find(|s| s.id == second.id).unwrap();
    check!(
        store,
        old.expires_at == Some(t(100)) && new.expires_at.is_none(),
        "old secret gets the grace period"
    );
    // A second rotation never extends an earlier grace period.
    let third = sample_secret(&a.id, 3);
    store
        .rotate_client_secret(&a.id, &third, t(200))
        .await
        .unwrap();
    let list = store.list_client_secrets(&a.id).await.unwrap();
    let exp = |id| list.iter().find(|s| &s.id == id).unwrap().expires_at;
    check!(
        store,
        exp(&first.id) == Some(t(100))
            && exp(&second.id) == Some(t(200))
            && exp(&third.id).is_none(),
        "grace periods only shrink"
    );
    check!(
        store,
        store.revoke_client_secrets(&a.id, t(300)).await.unwrap() == 3,
        "three revoked"
    );
    check!(
        store,
        store.revoke_client_secrets(&a.id, t(400)).await.unwrap() == 0,
        "revocation is idempotent"
    );
    let list = store.list_client_secrets(&a.id).await.unwrap();
    check!(
        store,
        list.iter().all(|s| s.revoked_at == Some(t(300))),
        "first revocation time kept"
    );
    // `get_client` reads the same as the three separate reads.
    let record = store.get_client(&a.id).await.unwrap();
    check!(
        store,
        record.agent == store.get_agent(&a.id).await.unwrap()
            && record.secrets == list
            && record.tenant == store.get_tenant(&ten.id).await.unwrap(),
        "get_client = get_agent + list_client_secrets + get_tenant: {record:?}"
    );
    let lone = sample_agent(&ten.id, "s-lone");
    store
        .create_agent(&lone, &sample_secret(&lone.id, 9), None)
        .await
        .unwrap();
    check!(
        store,
        store.get_client(&lone.id).await.unwrap().secrets.len() == 1,
        "get_client of an agent with one secret"
    );
    let ghost = AgentId::generate();
    let r = store.get_client(&ghost).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "get_client of a missing agent: {r:?}"
    );
    let r = store
        .rotate_client_secret(&ghost, &sample_secret(&ghost, 1), t(0))
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "rotate for a missing agent: {r:?}"
    );
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
    }
}

/// Admin keys: unique prefix, lookup, listing by reach, revoke, touch.
pub async fn admin_keys(store: &dyn AgentStore) {
    let ten = sample_tenant("Keys");
    store.create_tenant(&ten).await.unwrap();
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
    store.touch_admin_key(&k.id, t(5)).await.unwrap();
    store.revoke_admin_key(&k.id, t(10)).await.unwrap();
    store.revoke_admin_key(&k.id, t(20)).await.unwrap();
    let got = store.get_admin_key_by_prefix(&k.prefix).await.unwrap();
    check!(
        store,
        got.revoked_at == Some(t(10)) && got.last_used_at == Some(t(5)),
        "revoke keeps the first time; touch stored"
    );
    let r = store.get_admin_key_by_prefix("sa_ak_nothere").await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing prefix: {r:?}"
    );
    let r = store.revoke_admin_key(&AdminKeyId::generate(), t(0)).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "revoke missing key: {r:?}"
    );
}

/// Signing keys: insert, update, list, delete.
pub async fn signing_keys(store: &dyn AgentStore) {
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

/// Settings: the first value wins.
pub async fn settings(store: &dyn AgentStore) {
    let name = format!("setting-{}", unique());
    check!(
        store,
        store.setting_get_or_insert(&name, b"one").await.unwrap() == b"one",
        "first insert"
    );
    check!(
        store,
        store.setting_get_or_insert(&name, b"two").await.unwrap() == b"one",
        "second insert returns the first"
    );
}

fn event(tenant: Option<&TenantId>, action: &str, actor: &str, at: Timestamp) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: tenant.cloned(),
        at,
        actor: actor.into(),
        action: action.into(),
        target: Some("x".into()),
        outcome: Outcome::Success,
        request: RequestMeta {
            request_id: Some("r1".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
        },
        details: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
    }
}

/// Audit: chains per tenant, filters, cursor paging, heads.
pub async fn audit(store: &dyn AgentStore) {
    let a = sample_tenant("Audit A");
    let b = sample_tenant("Audit B");
    for x in [&a, &b] {
        store.create_tenant(x).await.unwrap();
    }
    check!(
        store,
        store.audit_head(Some(&a.id)).await.unwrap().is_none(),
        "empty chain has no head"
    );
    for i in 0..10 {
        let action = if i % 2 == 0 {
            "agent.registered"
        } else {
            "agent.updated"
        };
        let actor = if i < 5 {
            "admin_key:one"
        } else {
            "admin_key:two"
        };
        let e = store
            .append_audit(event(Some(&a.id), action, actor, t(i)))
            .await
            .unwrap();
        check!(
            store,
            e.seq == u64::try_from(i).unwrap() + 1,
            "sequence numbers from 1"
        );
    }
    store
        .append_audit(event(Some(&b.id), "agent.registered", "x", t(0)))
        .await
        .unwrap();
    let all = store
        .query_audit(&AuditQuery {
            tenant_id: Some(a.id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    check!(
        store,
        all.items.len() == 10 && all.next_cursor.is_none(),
        "one tenant's chain only"
    );
    let head = store.audit_head(Some(&a.id)).await.unwrap();
    check!(
        store,
        verify_chain(&all.items, head.as_ref()).is_ok(),
        "stored chain verifies up to its head"
    );
    check!(
        store,
        all.items[3]
            == store
                .query_audit(&AuditQuery {
                    tenant_id: Some(a.id.clone()),
                    cursor: Some("3".into()),
                    limit: Some(1),
                    ..Default::default()
                })
                .await
                .unwrap()
                .items[0],
        "events read back unchanged"
    );
    let q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        action: Some("agent.updated".into()),
        actor: Some("admin_key:two".into()),
        ..Default::default()
    };
    let got: Vec<u64> = store
        .query_audit(&q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    check!(
        store,
        got == vec![6, 8, 10],
        "action and actor filters: {got:?}"
    );
    let q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        from: Some(t(2)),
        to: Some(t(5)),
        ..Default::default()
    };
    let got: Vec<u64> = store
        .query_audit(&q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    check!(
        store,
        got == vec![3, 4, 5],
        "time range [from, to): {got:?}"
    );
    let mut seen = vec![];
    let mut q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        limit: Some(3),
        action: Some("agent.registered".into()),
        ..Default::default()
    };
    loop {
        let p = store.query_audit(&q).await.unwrap();
        seen.extend(p.items.iter().map(|e| e.seq));
        match p.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    check!(
        store,
        seen == vec![1, 3, 5, 7, 9],
        "filtered paging: {seen:?}"
    );
    let bad = AuditQuery {
        tenant_id: Some(a.id.clone()),
        cursor: Some("not-a-cursor".into()),
        ..Default::default()
    };
    check!(
        store,
        matches!(store.query_audit(&bad).await, Err(Error::Invalid { .. })),
        "bad cursor is Invalid"
    );
    let sys = store
        .append_audit(event(
            None,
            "client.authentication_failed",
            "client:x",
            t(0),
        ))
        .await
        .unwrap();
    check!(store, sys.event.tenant_id.is_none(), "system chain");
}

/// One-time markers.
pub async fn markers(store: &dyn AgentStore) {
    let ns = format!("ns{}", unique());
    check!(
        store,
        store.put_marker(&ns, "k", t(10), t(0)).await.unwrap(),
        "first put"
    );
    check!(
        store,
        !store.put_marker(&ns, "k", t(10), t(5)).await.unwrap(),
        "second put while live"
    );
    check!(
        store,
        store.has_marker(&ns, "k", t(9)).await.unwrap(),
        "present before expiry"
    );
    check!(
        store,
        !store.has_marker(&ns, "k", t(10)).await.unwrap(),
        "absent at expiry"
    );
    check!(
        store,
        !store.has_marker("other", "k", t(0)).await.unwrap(),
        "namespaces are separate"
    );
    check!(
        store,
        store.put_marker(&ns, "k", t(30), t(10)).await.unwrap(),
        "expired marker can be put again"
    );
    store.put_marker(&ns, "short", t(1), t(0)).await.unwrap();
    let purged = store.purge_markers(t(20)).await.unwrap();
    check!(store, purged >= 1, "purge removes expired markers");
    check!(
        store,
        store.has_marker(&ns, "k", t(20)).await.unwrap(),
        "purge keeps live markers"
    );
}

/// N tasks registering the same name: exactly one wins.
pub async fn race_same_name(store: Arc<dyn AgentStore>) {
    let ten = sample_tenant("Race");
    store.create_tenant(&ten).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            let a = sample_agent(&tid, "same-name");
            store.create_agent(&a, &sample_secret(&a.id, i), None).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("[{}] unexpected error in race: {e:?}", store.name()),
        }
    }
    check!(
        store,
        ok == 1,
        "exactly one of 16 concurrent registrations of one name wins, got {ok}"
    );
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 1,
        "one agent stored"
    );
}

/// N tasks registering distinct agents against a limit: exactly the limit
/// passes.
pub async fn race_agent_limit(store: Arc<dyn AgentStore>) {
    let ten = sample_tenant("Race Limit");
    store.create_tenant(&ten).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            let a = sample_agent(&tid, &format!("n{i}"));
            store
                .create_agent(&a, &sample_secret(&a.id, i), Some(5))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::QuotaExceeded { .. }) => {}
            Err(e) => panic!("[{}] unexpected error in race: {e:?}", store.name()),
        }
    }
    check!(
        store,
        ok == 5,
        "a limit of 5 admits exactly 5 of 16 concurrent registrations, got {ok}"
    );
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 5,
        "five agents stored"
    );
}

/// Concurrent appends to one chain stay one unbroken chain.
pub async fn race_audit_append(store: Arc<dyn AgentStore>) {
    let ten = sample_tenant("Race Audit");
    store.create_tenant(&ten).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(event(Some(&tid), "race", "r", t(i)))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = store
        .query_audit(&AuditQuery {
            tenant_id: Some(ten.id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    check!(store, all.items.len() == 32, "32 events");
    let head = store.audit_head(Some(&ten.id)).await.unwrap();
    let r = verify_chain(&all.items, head.as_ref());
    check!(
        store,
        r.is_ok(),
        "concurrent appends form one valid chain: {r:?}"
    );
}

/// Concurrent puts of one marker: exactly one is first.
pub async fn race_markers(store: Arc<dyn AgentStore>) {
    let ns = format!("race{}", unique());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            store.put_marker(&ns, "jti", t(100), t(0)).await
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            firsts += 1;
        }
    }
    check!(
        store,
        firsts == 1,
        "exactly one of 16 concurrent put_marker calls is first, got {firsts}"
    );
}

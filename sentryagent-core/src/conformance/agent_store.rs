//! The [`AgentStore`] conformance suite.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{sample_agent, sample_secret, sample_tenant, t, unique};
use crate::page::PageRequest;
use crate::store::{AgentStore, MAX_AGENT_BATCH, NewAgentRecord, TenantStore};
use crate::{
    Agent, AgentId, Error, LifecycleState, LimitKind, MarketplaceQuery, MemoryStore, TenantId,
    Visibility,
};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn AgentStore>) {
    agents(store.as_ref()).await;
    agent_limit(store.as_ref()).await;
    marketplace(store.as_ref()).await;
    paging(store.as_ref()).await;
    client_secrets(store.as_ref()).await;
    by_name_and_without_secret(store.as_ref()).await;
    race_same_name(store.clone()).await;
    race_agent_limit(store.clone()).await;
    agents_by_state(store.as_ref()).await;
    bulk_registration(store.as_ref()).await;
    bulk_all_or_nothing(store.as_ref()).await;
    bulk_agent_limit(store.as_ref()).await;
    bulk_batch_limit(store.as_ref()).await;
    race_bulk_agent_limit(store.clone()).await;
}

/// An agent by its name in its tenant (also after a rename), and an agent
/// created without a client secret (none listed until one is rotated in).
pub async fn by_name_and_without_secret(store: &dyn AgentStore) {
    let ten = sample_tenant("Names");
    let other = sample_tenant("Other Names");
    let a = sample_agent(&ten.id, "deployer");
    store.create_agent(&a, None, None).await.unwrap();
    let twin = sample_agent(&other.id, "deployer");
    store
        .create_agent(&twin, Some(&sample_secret(&twin.id, 1)), None)
        .await
        .unwrap();
    check!(
        store,
        store.get_agent_by_name(&ten.id, "deployer").await.unwrap() == a,
        "get_agent_by_name finds the tenant's agent"
    );
    check!(
        store,
        store
            .get_agent_by_name(&other.id, "deployer")
            .await
            .unwrap()
            == twin,
        "the same name in another tenant is another agent"
    );
    let r = store.get_agent_by_name(&ten.id, "nobody").await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing name: {r:?}"
    );
    let mut renamed = a.clone();
    renamed.name = "deployer-2".into();
    let renamed = store.update_agent(&renamed).await.unwrap();
    check!(
        store,
        store
            .get_agent_by_name(&ten.id, "deployer-2")
            .await
            .unwrap()
            == renamed,
        "found by its new name"
    );
    check!(
        store,
        matches!(
            store.get_agent_by_name(&ten.id, "deployer").await,
            Err(Error::NotFound { .. })
        ),
        "not by its old name"
    );
    check!(
        store,
        store.list_client_secrets(&a.id).await.unwrap().is_empty(),
        "an agent created without a secret has none"
    );
    let record = store.get_client(&a.id).await.unwrap();
    check!(
        store,
        record.secrets.is_empty() && record.agent == renamed,
        "get_client of an agent without secrets: {record:?}"
    );
    let first = sample_secret(&a.id, 7);
    store
        .rotate_client_secret(&a.id, &first, t(100))
        .await
        .unwrap();
    check!(
        store,
        store.list_client_secrets(&a.id).await.unwrap() == vec![first],
        "a rotation gives it its first secret"
    );
}

/// Agents: create with a secret, read, unique names per tenant, updates.
pub async fn agents(store: &dyn AgentStore) {
    let ten = sample_tenant("Agents Inc");
    let other = sample_tenant("Other Inc");
    let a = sample_agent(&ten.id, "alpha");
    let s = sample_secret(&a.id, 1);
    store.create_agent(&a, Some(&s), None).await.unwrap();
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
        .create_agent(&dup_name, Some(&sample_secret(&dup_name.id, 2)), None)
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
        .create_agent(&elsewhere, Some(&sample_secret(&elsewhere.id, 3)), None)
        .await
        .unwrap();
    let r = store.create_agent(&a, Some(&s), None).await;
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
        .create_agent(&reuse, Some(&sample_secret(&reuse.id, 4)), None)
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
    for i in 0..3 {
        let a = sample_agent(&ten.id, &format!("a{i}"));
        store
            .create_agent(&a, Some(&sample_secret(&a.id, 1)), Some(3))
            .await
            .unwrap();
    }
    let a = sample_agent(&ten.id, "a3");
    let r = store
        .create_agent(&a, Some(&sample_secret(&a.id, 1)), Some(3))
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
        .create_agent(&a, Some(&sample_secret(&a.id, 1)), Some(3))
        .await
        .unwrap();
}

/// Marketplace search: only public listed/active agents; text and filters.
pub async fn marketplace(store: &dyn AgentStore) {
    let tag = format!("tag{}", unique());
    let pubr = sample_tenant("Publisher");
    let other = sample_tenant("Other Publisher");
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
            .create_agent(a, Some(&sample_secret(&a.id, 9)), None)
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

    // The filters on the id (`agent`, `locator`, the id annotation) compare
    // without regard to case, whether the id has upper-case letters or not.
    let mut mixed = mk(
        &other.id,
        "Mixed Case",
        "Has an upper-case id",
        &["ocr"],
        LifecycleState::Listed,
        Visibility::Public,
        None,
    );
    let stem = format!("agt_MiXed{}", unique());
    mixed.id = AgentId::parse(&format!("{stem}Z")).unwrap();
    store
        .create_agent(&mixed, Some(&sample_secret(&mixed.id, 9)), None)
        .await
        .unwrap();
    let plain = translator.id.as_str().to_owned();
    let upper = mixed.id.as_str().to_owned();
    let entry = |id: &str| format!("/v1/marketplace/agents/{id}");
    let agent = |v: String| MarketplaceQuery {
        agent: Some(v),
        ..base.clone()
    };
    let locator = |v: String| MarketplaceQuery {
        locator: Some(v),
        ..base.clone()
    };
    let annotation = |v: String| MarketplaceQuery {
        annotation: Some(format!("sentryagent.agent_id={v}")),
        ..base.clone()
    };
    for (q, want, what) in [
        (agent(plain.clone()), "Translator", "agent: a lower-case id"),
        (
            agent(plain.to_uppercase()),
            "Translator",
            "agent: upper-cased",
        ),
        (agent(upper.clone()), "Mixed Case", "agent: a mixed-case id"),
        (
            agent(upper.to_lowercase()),
            "Mixed Case",
            "agent: lower-cased",
        ),
        (
            agent(format!("{}*", stem.to_uppercase())),
            "Mixed Case",
            "agent: a prefix",
        ),
        (locator(entry(&plain)), "Translator", "locator: the entry"),
        (
            locator(format!("{}/agent-card.json", entry(&upper.to_lowercase()))),
            "Mixed Case",
            "locator: the card, lower-cased",
        ),
        (
            locator(format!("{}*", entry(&stem.to_lowercase()))),
            "Mixed Case",
            "locator: a prefix",
        ),
        (
            annotation(plain.to_uppercase()),
            "Translator",
            "annotation: upper-cased",
        ),
        (
            annotation(upper.to_lowercase()),
            "Mixed Case",
            "annotation: lower-cased",
        ),
    ] {
        let found = search(q.clone()).await;
        check!(
            store,
            found == names(&[want]),
            "{what}: {q:?} found {found:?}"
        );
    }
    check!(
        store,
        search(agent(format!("{plain}x"))).await.is_empty(),
        "agent: an id that is not one"
    );
}

/// Cursor paging visits everything once, in id order.
pub async fn paging(store: &dyn AgentStore) {
    let ten = sample_tenant("Pager");
    let tag = format!("page{}", unique());
    let mut ids = BTreeSet::new();
    for i in 0..23 {
        let mut a = sample_agent(&ten.id, &format!("p{i:02}"));
        a.visibility = Visibility::Public;
        a.tags = vec![tag.clone()];
        store
            .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
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
}

/// Client secrets: rotation sets a grace period, revocation is total.
pub async fn client_secrets(store: &dyn AgentStore) {
    let ten = sample_tenant("Secrets");
    let a = sample_agent(&ten.id, "s");
    let first = sample_secret(&a.id, 1);
    store.create_agent(&a, Some(&first), None).await.unwrap();
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
    // `get_client` reads the same as the two separate reads.
    let record = store.get_client(&a.id).await.unwrap();
    check!(
        store,
        record.agent == store.get_agent(&a.id).await.unwrap() && record.secrets == list,
        "get_client = get_agent + list_client_secrets: {record:?}"
    );
    let lone = sample_agent(&ten.id, "s-lone");
    store
        .create_agent(&lone, Some(&sample_secret(&lone.id, 9)), None)
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

/// N tasks registering the same name: exactly one wins.
pub async fn race_same_name(store: Arc<dyn AgentStore>) {
    let ten = sample_tenant("Race");
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            let a = sample_agent(&tid, "same-name");
            store
                .create_agent(&a, Some(&sample_secret(&a.id, i)), None)
                .await
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
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            let a = sample_agent(&tid, &format!("n{i}"));
            store
                .create_agent(&a, Some(&sample_secret(&a.id, i)), Some(5))
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

/// Counts by lifecycle state: every agent once, in its stored state,
/// retired ones included, across tenants; a state change moves it.
///
/// The backend may hold agents of other checks, so the suite compares
/// counts before and after its own agents. The tenants it passes (for the
/// default implementation, which walks them) hold the two tenants of those
/// agents.
pub async fn agents_by_state(store: &dyn AgentStore) {
    let tenants = MemoryStore::new();
    let a = sample_tenant("Counted");
    let b = sample_tenant("Counted Too");
    tenants.create_tenant(&a).await.unwrap();
    tenants.create_tenant(&b).await.unwrap();
    let before = store.agents_by_state(&tenants).await.unwrap();
    let plan = [
        (&a.id, LifecycleState::Active),
        (&a.id, LifecycleState::Active),
        (&a.id, LifecycleState::Retired),
        (&b.id, LifecycleState::Active),
        (&b.id, LifecycleState::Draft),
        (&b.id, LifecycleState::Paused),
        (&b.id, LifecycleState::Listed),
    ];
    let mut created = Vec::new();
    for (i, (tenant, state)) in plan.iter().enumerate() {
        let mut agent = sample_agent(tenant, &format!("counted-{i}"));
        agent.state = *state;
        store
            .create_agent(&agent, Some(&sample_secret(&agent.id, 1)), None)
            .await
            .unwrap();
        created.push(agent);
    }
    // One active agent is paused, the draft is deployed.
    for (i, to) in [(0, LifecycleState::Paused), (4, LifecycleState::Deployed)] {
        let mut changed = store.get_agent(&created[i].id).await.unwrap();
        changed.state = to;
        store.update_agent(&changed).await.unwrap();
    }
    let after = store.agents_by_state(&tenants).await.unwrap();
    let added = |s: LifecycleState| match s {
        LifecycleState::Active => 2,
        LifecycleState::Paused => 2,
        LifecycleState::Retired | LifecycleState::Deployed | LifecycleState::Listed => 1,
        _ => 0,
    };
    for s in LifecycleState::ALL {
        check!(
            store,
            after.get(s) == before.get(s) + added(s),
            "agents in {s}: {} before, {} after, {} added",
            before.get(s),
            after.get(s),
            added(s)
        );
    }
    check!(
        store,
        after.total() == before.total() + 7,
        "every agent counted once"
    );
}

/// `n` agents of `tenant` named `<prefix>-<i>`, cheap to make (copies of one
/// sample agent with new ids and names), each with a first secret.
fn batch_of(tenant: &TenantId, prefix: &str, n: usize) -> Vec<NewAgentRecord> {
    let template = sample_agent(tenant, prefix);
    (0..n)
        .map(|i| {
            let mut a: Agent = template.clone();
            a.id = AgentId::generate();
            a.name = format!("{prefix}-{i}");
            let s = sample_secret(&a.id, i as u8);
            NewAgentRecord::new(a, Some(s))
        })
        .collect()
}

/// Whether none of the batch's agents is stored.
async fn none_stored(store: &dyn AgentStore, batch: &[NewAgentRecord]) -> bool {
    for r in batch {
        if store.get_agent(&r.agent.id).await.is_ok()
            || !store
                .list_client_secrets(&r.agent.id)
                .await
                .unwrap()
                .is_empty()
        {
            return false;
        }
    }
    true
}

/// A batch is stored as its agents one by one would be: each readable by
/// id and name, with its secret, listed, counted (retired ones not) and in
/// the marketplace when public and listed; an empty batch does nothing.
pub async fn bulk_registration(store: &dyn AgentStore) {
    let ten = sample_tenant("Bulk");
    let tag = format!("bulk{}", unique());
    let mut batch = batch_of(&ten.id, "bulk", 25);
    for (i, r) in batch.iter_mut().enumerate() {
        r.agent.tags = vec![tag.clone()];
        match i % 5 {
            0 => {
                r.agent.visibility = Visibility::Public;
                r.agent.state = LifecycleState::Listed;
            }
            1 => r.agent.state = LifecycleState::Retired,
            2 => r.secret = None,
            _ => {}
        }
    }
    store.create_agents(&[]).await.unwrap();
    store.create_agents(&batch).await.unwrap();
    for r in &batch {
        check!(
            store,
            store.get_agent(&r.agent.id).await.unwrap() == r.agent,
            "a bulk-registered agent reads back as given"
        );
        check!(
            store,
            store
                .get_agent_by_name(&ten.id, &r.agent.name)
                .await
                .unwrap()
                .id
                == r.agent.id,
            "a bulk-registered agent is found by name"
        );
        let secrets = store.list_client_secrets(&r.agent.id).await.unwrap();
        check!(
            store,
            secrets == r.secret.iter().cloned().collect::<Vec<_>>(),
            "a bulk-registered agent has the secret it was given: {secrets:?}"
        );
    }
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 20,
        "25 agents, 5 retired: 20 counted"
    );
    let listed = store
        .list_agents(&ten.id, &PageRequest::first(100))
        .await
        .unwrap();
    check!(
        store,
        listed.items.len() == 25,
        "every agent of the batch is listed"
    );
    let q = MarketplaceQuery {
        tag: Some(tag.clone()),
        text: Some("bulk".into()),
        ..Default::default()
    };
    let found: BTreeSet<AgentId> = store
        .search_marketplace(&q, &PageRequest::first(100))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.id)
        .collect();
    let public: BTreeSet<AgentId> = batch
        .iter()
        .step_by(5)
        .map(|r| r.agent.id.clone())
        .collect();
    check!(
        store,
        found == public,
        "the marketplace holds exactly the public listed agents of the batch"
    );
    let first = &batch[0].agent;
    let q = MarketplaceQuery {
        tag: Some(tag.clone()),
        name: Some(first.name.clone()),
        ..Default::default()
    };
    let by_name: Vec<AgentId> = store
        .search_marketplace(&q, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.id)
        .collect();
    check!(
        store,
        by_name == vec![first.id.clone()],
        "a bulk-registered agent is in the directory index (name filter): {by_name:?}"
    );
    let again = batch_of(&ten.id, "bulk", 1);
    let r = store.create_agents(&again).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "a batch reusing a stored name: {r:?}"
    );
}

/// A batch with one bad agent stores nothing: a name or id already
/// stored, or given twice in the batch.
pub async fn bulk_all_or_nothing(store: &dyn AgentStore) {
    let ten = sample_tenant("Bulk Atomic");
    let taken = sample_agent(&ten.id, "taken");
    store
        .create_agent(&taken, Some(&sample_secret(&taken.id, 1)), None)
        .await
        .unwrap();
    let mut cases: Vec<(&str, Vec<NewAgentRecord>)> = Vec::new();
    let mut stored_name = batch_of(&ten.id, "atomic-a", 10);
    stored_name[9].agent.name = "taken".into();
    cases.push(("a name already stored, last in the batch", stored_name));
    let mut stored_id = batch_of(&ten.id, "atomic-b", 10);
    stored_id[5].agent.id = taken.id.clone();
    cases.push(("an id already stored", stored_id));
    let mut twice_name = batch_of(&ten.id, "atomic-c", 10);
    twice_name[7].agent.name = twice_name[2].agent.name.clone();
    cases.push(("a name given twice", twice_name));
    let mut twice_id = batch_of(&ten.id, "atomic-d", 10);
    twice_id[8].agent.id = twice_id[1].agent.id.clone();
    cases.push(("an id given twice", twice_id));
    for (what, batch) in &cases {
        let r = store.create_agents(batch).await;
        check!(
            store,
            matches!(r, Err(Error::AlreadyExists { .. })),
            "a batch with {what}: {r:?}"
        );
        // The clashing record's id may be the stored agent's: check the
        // others.
        let others: Vec<NewAgentRecord> = batch
            .iter()
            .filter(|r| r.agent.id != taken.id)
            .cloned()
            .collect();
        check!(
            store,
            none_stored(store, &others).await,
            "a refused batch ({what}) leaves none of its agents"
        );
    }
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 1,
        "refused batches leave the count alone"
    );
    check!(
        store,
        store.get_agent(&taken.id).await.unwrap() == taken,
        "the stored agent is untouched"
    );
}

/// A batch over its tenant's agent limit stores nothing; the limit counts
/// the stored agents and the batch's own earlier agents, not retired ones.
pub async fn bulk_agent_limit(store: &dyn AgentStore) {
    let ten = sample_tenant("Bulk Limited");
    let first = batch_of(&ten.id, "first", 2);
    store.create_agents(&first).await.unwrap();
    let over: Vec<NewAgentRecord> = batch_of(&ten.id, "over", 4)
        .into_iter()
        .map(|r| r.with_max_agents(Some(5)))
        .collect();
    let r = store.create_agents(&over).await;
    check!(
        store,
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::Agents,
                used: 5,
                limit: 5,
                ..
            })
        ),
        "2 stored + 4 in a batch over a limit of 5: {r:?}"
    );
    check!(
        store,
        none_stored(store, &over).await,
        "a batch over the limit leaves none of its agents"
    );
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 2,
        "still two agents"
    );
    let fits: Vec<NewAgentRecord> = batch_of(&ten.id, "fits", 3)
        .into_iter()
        .map(|r| r.with_max_agents(Some(5)))
        .collect();
    store.create_agents(&fits).await.unwrap();
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 5,
        "a batch up to the limit is stored"
    );
    // A retired agent takes no place from the agents after it.
    let mut mixed: Vec<NewAgentRecord> = batch_of(&ten.id, "mixed", 2)
        .into_iter()
        .map(|r| r.with_max_agents(Some(7)))
        .collect();
    mixed[0].agent.state = LifecycleState::Retired;
    let mut last = batch_of(&ten.id, "mixed-last", 1).remove(0);
    last.max_agents = Some(7);
    mixed.push(last);
    store.create_agents(&mixed).await.unwrap();
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 7,
        "retired agents of a batch do not count"
    );
    let one_more: Vec<NewAgentRecord> = batch_of(&ten.id, "one-more", 1)
        .into_iter()
        .map(|r| r.with_max_agents(Some(7)))
        .collect();
    let r = store.create_agents(&one_more).await;
    check!(
        store,
        matches!(r, Err(Error::QuotaExceeded { used: 7, .. })),
        "a full tenant refuses a batch: {r:?}"
    );
}

/// A batch larger than [`MAX_AGENT_BATCH`] is refused as invalid, and
/// nothing of it is stored; one of exactly that size is stored.
pub async fn bulk_batch_limit(store: &dyn AgentStore) {
    let ten = sample_tenant("Bulk Size");
    let too_big = batch_of(&ten.id, "big", MAX_AGENT_BATCH + 1);
    let r = store.create_agents(&too_big).await;
    check!(
        store,
        matches!(r, Err(Error::Invalid { .. })),
        "a batch of {} agents: {r:?}",
        MAX_AGENT_BATCH + 1
    );
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == 0,
        "nothing of a refused oversized batch is stored"
    );
    let full = batch_of(&ten.id, "full", MAX_AGENT_BATCH);
    store.create_agents(&full).await.unwrap();
    check!(
        store,
        store.count_agents(&ten.id).await.unwrap() == MAX_AGENT_BATCH as u64,
        "a batch of exactly {MAX_AGENT_BATCH} agents is stored"
    );
    let last = &full[MAX_AGENT_BATCH - 1];
    check!(
        store,
        store
            .get_client(&last.agent.id)
            .await
            .unwrap()
            .secrets
            .len()
            == 1,
        "the last agent of a full batch has its secret"
    );
}

/// Bulk and single registrations race against one agent limit: the limit
/// is never exceeded, every batch is stored whole or not at all, and the
/// count agrees with what was acknowledged.
pub async fn race_bulk_agent_limit(store: Arc<dyn AgentStore>) {
    const LIMIT: u64 = 10;
    let ten = sample_tenant("Bulk Race");
    let mut batches = Vec::new();
    let mut tasks = Vec::new();
    for b in 0..4 {
        let batch: Vec<NewAgentRecord> = batch_of(&ten.id, &format!("race-b{b}"), 4)
            .into_iter()
            .map(|r| r.with_max_agents(Some(LIMIT)))
            .collect();
        batches.push(batch.clone());
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create_agents(&batch).await.map(|()| 4u64)
        }));
    }
    for i in 0..8u8 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            let a = sample_agent(&tid, &format!("race-single-{i}"));
            store
                .create_agent(&a, Some(&sample_secret(&a.id, i)), Some(LIMIT))
                .await
                .map(|()| 1u64)
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => acknowledged += n,
            Err(Error::QuotaExceeded { .. }) => {}
            Err(e) => panic!("[{}] unexpected error in race: {e:?}", store.name()),
        }
    }
    let count = store.count_agents(&ten.id).await.unwrap();
    check!(
        store,
        count == acknowledged,
        "the count ({count}) is what was acknowledged ({acknowledged})"
    );
    // Refusals happen only when the request did not fit: the tenant ends
    // with at least LIMIT - 3 agents (a batch of 4 refused at 7 or more).
    check!(
        store,
        (LIMIT - 3..=LIMIT).contains(&count),
        "a limit of {LIMIT} under racing bulk and single registrations: {count} stored"
    );
    for batch in &batches {
        let mut present = 0;
        for r in batch {
            if store.get_agent(&r.agent.id).await.is_ok() {
                present += 1;
            }
        }
        check!(
            store,
            present == 0 || present == batch.len(),
            "a batch is stored whole or not at all: {present} of {} present",
            batch.len()
        );
    }
}

//! The marketplace directory suite: every query kind of
//! [`MarketplaceQuery`] (see [`crate::marketplace_index`]), combined with
//! AND, exact and prefix, cursor paging, the index after changes of agents
//! and publishers, and the counts of
//! [`AgentStore::marketplace_counts`](crate::AgentStore::marketplace_counts).
//!
//! Suites share databases with other runs, so every query is either
//! scoped to this run's agents (a unique tag, name or publisher) or checked
//! for containing them and for holding only agents that match.
//!
//! A backend with a built index also shows that it builds the index for
//! agents stored before it existed: it runs [`seed`], removes its index,
//! reopens, and runs [`finds`] on the same [`Fixture`].

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{sample_agent, sample_secret, sample_tenant, unique};
use crate::marketplace_index::IndexKind;
use crate::oasf::taxonomy;
use crate::page::PageRequest;
use crate::store::IdpStore;
use crate::{Agent, AgentId, LifecycleState, MarketplaceQuery, Tenant, Visibility};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn IdpStore>) {
    let fixture = seed(store.as_ref()).await;
    finds(store.as_ref(), &fixture).await;
    changes(store.as_ref(), &fixture).await;
    paging(store.as_ref()).await;
    counts(store.as_ref()).await;
}

/// This run's publishers and agents ([`seed`]).
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The run's unique token.
    pub u: String,
    /// A verified publisher (`Verified Co <u>`).
    pub verified: Tenant,
    /// An unverified publisher (`Plain Co <u>`).
    pub plain: Tenant,
    /// `Alpha <u>`: verified publisher, skill `agent_memory`, a category
    /// that is an OASF domain, an unmapped capability.
    pub alpha: Agent,
    /// `Alphabet <u>`: plain publisher, another skill, an unmapped
    /// category.
    pub alphabet: Agent,
    /// `Beta <u>`: verified publisher, skill `agent_memory`.
    pub beta: Agent,
    /// `Alpha Hidden <u>`: private, never found.
    pub hidden: Agent,
}

impl Fixture {
    /// The run's tag, on every agent.
    pub fn tag(&self) -> String {
        format!("dir{}", self.u)
    }

    /// A query scoped to the run's agents.
    pub fn scoped(&self) -> MarketplaceQuery {
        MarketplaceQuery {
            tag: Some(self.tag()),
            ..Default::default()
        }
    }

    /// The unmapped capability of `alpha`.
    pub fn unmapped_capability(&self) -> String {
        format!("x.unmapped{}", self.u)
    }

    /// The unmapped category of `alphabet`.
    pub fn unmapped_category(&self) -> String {
        format!("cat{}", self.u)
    }
}

/// The second skill of the fixture: the first skill outside
/// `ai_ml_engineering`, by its full name.
fn other_skill() -> &'static crate::oasf::TaxonomyClass {
    taxonomy()
        .skills
        .iter()
        .find(|s| s.name.contains('/') && !s.name.starts_with("ai_ml_engineering"))
        .expect("the taxonomy has skills outside ai_ml_engineering")
}

/// A domain of the taxonomy with a parent, by its full name.
fn a_domain() -> &'static crate::oasf::TaxonomyClass {
    taxonomy()
        .domains
        .iter()
        .find(|d| d.name.contains('/'))
        .expect("the taxonomy has nested domains")
}

/// Stores the fixture's publishers and agents.
pub async fn seed(store: &dyn IdpStore) -> Fixture {
    let u = unique();
    let mut verified = sample_tenant(&format!("Verified Co {u}"));
    verified.publisher.verified = true;
    let plain = sample_tenant(&format!("Plain Co {u}"));
    store.create_tenant(&verified).await.unwrap();
    store.create_tenant(&plain).await.unwrap();
    let tag = format!("dir{u}");
    let mk = |tenant: &Tenant, name: &str, version: &str, caps: Vec<String>| {
        let mut a = sample_agent(&tenant.id, &format!("{name} {u}"));
        a.version = format!("{version}-{u}");
        a.capabilities = caps;
        a.tags = vec![tag.clone()];
        a.visibility = Visibility::Public;
        a.state = LifecycleState::Listed;
        a
    };
    let mut alpha = mk(
        &verified,
        "Alpha",
        "1.2.0",
        vec!["agent_memory".into(), format!("x.unmapped{u}")],
    );
    alpha.category = Some(a_domain().name.clone());
    let mut alphabet = mk(
        &plain,
        "Alphabet",
        "1.3.0",
        vec![other_skill().name.clone()],
    );
    alphabet.category = Some(format!("cat{u}"));
    alphabet.state = LifecycleState::Active;
    let beta = mk(&verified, "Beta", "2.0.0", vec!["Agent_Memory".into()]);
    let mut hidden = mk(
        &verified,
        "Alpha Hidden",
        "1.2.0",
        vec!["agent_memory".into()],
    );
    hidden.visibility = Visibility::Private;
    for a in [&alpha, &alphabet, &beta, &hidden] {
        store
            .create_agent(a, Some(&sample_secret(&a.id, 3)), None)
            .await
            .unwrap();
    }
    Fixture {
        u,
        verified,
        plain,
        alpha,
        alphabet,
        beta,
        hidden,
    }
}

/// Every page of a search (pages of `size`), checked: ids ascending, no
/// repeats, every agent matching the query (with its stored publisher).
async fn all(store: &dyn IdpStore, q: &MarketplaceQuery, size: usize) -> Vec<Agent> {
    let mut seen: Vec<Agent> = Vec::new();
    let mut req = PageRequest::first(size);
    let mut pages = 0;
    loop {
        let p = store
            .search_marketplace(q, &req)
            .await
            .unwrap_or_else(|e| panic!("[{}] search {q:?}: {e}", store.name()));
        check!(store, p.items.len() <= size, "a page larger than asked");
        seen.extend(p.items);
        pages += 1;
        check!(store, pages <= 10_000, "paging does not end");
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    check!(
        store,
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "results ascend by id without repeats for {q:?}"
    );
    for a in &seen {
        let tenant = store.get_tenant(&a.tenant_id).await.ok();
        check!(
            store,
            q.matches_listing(a, tenant.as_ref()),
            "{} does not match {q:?}",
            a.name
        );
    }
    seen
}

fn ids(agents: &[Agent]) -> BTreeSet<AgentId> {
    agents.iter().map(|a| a.id.clone()).collect()
}

fn set(agents: &[&Agent]) -> BTreeSet<AgentId> {
    agents.iter().map(|a| a.id.clone()).collect()
}

/// Each query kind, scoped to the fixture, finds exactly the agents it
/// names; unscoped ones find at least them and only matching agents.
pub async fn finds(store: &dyn IdpStore, f: &Fixture) {
    let u = &f.u;
    let scoped = f.scoped();
    let memory = taxonomy().skill_for("agent_memory").unwrap();
    let other = other_skill();
    let domain = a_domain();
    let cases: Vec<(&str, MarketplaceQuery, BTreeSet<AgentId>)> = vec![
        (
            "everything listed",
            scoped.clone(),
            set(&[&f.alpha, &f.alphabet, &f.beta]),
        ),
        (
            "agent id, any case",
            MarketplaceQuery {
                agent: Some(f.beta.id.as_str().to_uppercase()),
                ..scoped.clone()
            },
            set(&[&f.beta]),
        ),
        (
            "name exact, any case",
            MarketplaceQuery {
                name: Some(format!("ALPHA {u}")),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "name prefix",
            MarketplaceQuery {
                name: Some("alpha*".into()),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.alphabet]),
        ),
        (
            "version exact",
            MarketplaceQuery {
                version: Some(format!("1.2.0-{u}")),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "version prefix",
            MarketplaceQuery {
                version: Some("1.*".into()),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.alphabet]),
        ),
        (
            "skill id",
            MarketplaceQuery {
                skill_id: Some(memory.id.to_string()),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            "skill name, any case",
            MarketplaceQuery {
                skill_name: Some(other.name.to_uppercase()),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "skill name prefix (a category of skills)",
            MarketplaceQuery {
                skill_name: Some("ai_ml_engineering/*".into()),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            "domain by name",
            MarketplaceQuery {
                domain: Some(domain.name.clone()),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "domain by id",
            MarketplaceQuery {
                domain: Some(domain.id.to_string()),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "locator: the entry",
            MarketplaceQuery {
                locator: Some(format!("/v1/marketplace/agents/{}", f.alphabet.id)),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "locator: the card",
            MarketplaceQuery {
                locator: Some(format!(
                    "/v1/marketplace/agents/{}/agent-card.json",
                    f.alpha.id
                )),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "author by display name",
            MarketplaceQuery {
                author: Some(format!("verified co {u}")),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            "author by slug",
            MarketplaceQuery {
                author: Some(f.plain.slug.to_uppercase()),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "author prefix",
            MarketplaceQuery {
                author: Some("Plain Co*".into()),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "verified only",
            MarketplaceQuery {
                verified: Some(true),
                ..scoped.clone()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            "unverified only",
            MarketplaceQuery {
                verified: Some(false),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "annotation from the agent",
            MarketplaceQuery {
                annotation: Some(format!(
                    "sentryagent.unmapped_capabilities={}",
                    f.unmapped_capability()
                )),
                ..Default::default()
            },
            set(&[&f.alpha]),
        ),
        (
            "annotation value prefix",
            MarketplaceQuery {
                annotation: Some(format!("sentryagent.unmapped_category=CAT{u}*")),
                ..Default::default()
            },
            set(&[&f.alphabet]),
        ),
        (
            "annotation from the publisher",
            MarketplaceQuery {
                annotation: Some(format!("sentryagent.publisher={}", f.verified.slug)),
                ..Default::default()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            "AND of several kinds",
            MarketplaceQuery {
                name: Some("alpha*".into()),
                version: Some("1.*".into()),
                verified: Some(true),
                skill_id: Some(memory.id.to_string()),
                ..scoped.clone()
            },
            set(&[&f.alpha]),
        ),
        (
            "AND with words and capability",
            MarketplaceQuery {
                text: Some("alphabet".into()),
                capability: Some(other.name.clone()),
                author: Some("plain*".into()),
                ..scoped.clone()
            },
            set(&[&f.alphabet]),
        ),
        (
            "AND with no common agent",
            MarketplaceQuery {
                name: Some(format!("beta {u}")),
                verified: Some(false),
                ..scoped.clone()
            },
            BTreeSet::new(),
        ),
        (
            "a prefix that is no value",
            MarketplaceQuery {
                name: Some(format!("zz{u}*")),
                ..Default::default()
            },
            BTreeSet::new(),
        ),
    ];
    for (what, q, want) in cases {
        for size in [1, 50] {
            let got = ids(&all(store, &q, size).await);
            check!(store, got == want, "{what} (pages of {size}): {q:?}");
        }
    }
    // Unscoped: the run's agents are among the results, every result
    // matches.
    let unscoped: Vec<(MarketplaceQuery, BTreeSet<AgentId>)> = vec![
        (
            MarketplaceQuery {
                skill_id: Some(memory.id.to_string()),
                ..Default::default()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            MarketplaceQuery {
                skill_id: Some(format!("{}*", memory.id / 100)),
                verified: Some(true),
                ..Default::default()
            },
            set(&[&f.alpha, &f.beta]),
        ),
        (
            MarketplaceQuery {
                name: Some(format!("alpha {u}")),
                ..Default::default()
            },
            set(&[&f.alpha]),
        ),
    ];
    for (q, want) in unscoped {
        let got = ids(&all(store, &q, 100).await);
        check!(
            store,
            want.is_subset(&got),
            "unscoped {q:?} finds the run's agents"
        );
        check!(
            store,
            !got.contains(&f.hidden.id),
            "a private agent is found"
        );
    }
}

/// The index follows changes: renames, versions, capabilities, pausing,
/// unlisting, retiring, and publisher changes (verification, name).
pub async fn changes(store: &dyn IdpStore, f: &Fixture) {
    let u = &f.u;
    let scoped = f.scoped();
    let find = |q: MarketplaceQuery| async move { ids(&all(store, &q, 2).await) };
    // Rename and new version.
    let mut a = store.get_agent(&f.alphabet.id).await.unwrap();
    a.name = format!("Gamma {u}");
    a.version = "3.0.0".into();
    store.update_agent(&a).await.unwrap();
    check!(
        store,
        find(MarketplaceQuery {
            name: Some("alpha*".into()),
            ..scoped.clone()
        })
        .await
            == set(&[&f.alpha]),
        "a renamed agent leaves its old name"
    );
    check!(
        store,
        find(MarketplaceQuery {
            name: Some("gamma*".into()),
            version: Some("3.0.0".into()),
            ..scoped.clone()
        })
        .await
            == set(&[&f.alphabet]),
        "a renamed agent is found by its new name and version"
    );
    // New capability: a new skill, the unmapped annotation goes.
    let memory = taxonomy().skill_for("agent_memory").unwrap();
    let mut al = store.get_agent(&f.alpha.id).await.unwrap();
    al.capabilities = vec![other_skill().name.clone()];
    store.update_agent(&al).await.unwrap();
    check!(
        store,
        find(MarketplaceQuery {
            skill_id: Some(memory.id.to_string()),
            ..scoped.clone()
        })
        .await
            == set(&[&f.beta]),
        "a dropped capability leaves its skill"
    );
    check!(
        store,
        find(MarketplaceQuery {
            annotation: Some(format!(
                "sentryagent.unmapped_capabilities={}",
                f.unmapped_capability()
            )),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a dropped capability leaves its annotation"
    );
    // Pause, unlist, retire: out of every index; back when listed again.
    let mut b = store.get_agent(&f.beta.id).await.unwrap();
    b.state = LifecycleState::Paused;
    let b = store.update_agent(&b).await.unwrap();
    let everything = find(scoped.clone()).await;
    check!(
        store,
        everything == set(&[&f.alpha, &f.alphabet]),
        "a paused agent leaves the directory"
    );
    check!(
        store,
        find(MarketplaceQuery {
            agent: Some(f.beta.id.to_string()),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a paused agent is not found by id"
    );
    let mut b = b;
    b.state = LifecycleState::Listed;
    let mut b = store.update_agent(&b).await.unwrap();
    check!(
        store,
        find(MarketplaceQuery {
            skill_id: Some(memory.id.to_string()),
            verified: Some(true),
            ..scoped.clone()
        })
        .await
            == set(&[&f.beta]),
        "a listed-again agent is back"
    );
    b.state = LifecycleState::Deployed;
    let b = store.update_agent(&b).await.unwrap();
    let mut al = store.get_agent(&f.alpha.id).await.unwrap();
    al.visibility = Visibility::Private;
    store.update_agent(&al).await.unwrap();
    check!(
        store,
        find(scoped.clone()).await == set(&[&f.alphabet]),
        "unlisted and private agents leave the directory"
    );
    let mut b = b;
    b.state = LifecycleState::Retired;
    store.update_agent(&b).await.unwrap();
    check!(
        store,
        find(MarketplaceQuery {
            name: Some(format!("beta {u}")),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a retired agent leaves the directory"
    );
    // Publisher changes reach its agents.
    let mut plain = store.get_tenant(&f.plain.id).await.unwrap();
    plain.publisher.verified = true;
    plain.publisher.display_name = format!("Renamed Co {u}");
    store.update_tenant(&plain).await.unwrap();
    check!(
        store,
        find(MarketplaceQuery {
            verified: Some(true),
            ..scoped.clone()
        })
        .await
            == set(&[&f.alphabet]),
        "a publisher's verification reaches its agents"
    );
    check!(
        store,
        find(MarketplaceQuery {
            author: Some(format!("renamed co {u}")),
            ..Default::default()
        })
        .await
            == set(&[&f.alphabet]),
        "a publisher's new name reaches its agents"
    );
    check!(
        store,
        find(MarketplaceQuery {
            author: Some(format!("plain co {u}")),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a publisher's old name is gone"
    );
    check!(
        store,
        find(MarketplaceQuery {
            annotation: Some("sentryagent.publisher_verified=true".into()),
            ..scoped.clone()
        })
        .await
            == set(&[&f.alphabet]),
        "publisher annotations follow the publisher"
    );
}

/// Cursor paging over an index filter: every page size visits every
/// matching agent once, in id order, with agents that do not match in
/// between.
pub async fn paging(store: &dyn IdpStore) {
    let u = unique();
    let ten = sample_tenant(&format!("Pages {u}"));
    store.create_tenant(&ten).await.unwrap();
    let mut want = BTreeSet::new();
    for i in 0..13 {
        let mut a = sample_agent(&ten.id, &format!("pg{u} {i:02}"));
        a.visibility = Visibility::Public;
        a.state = LifecycleState::Listed;
        // Every third agent has another version: not matched.
        a.version = if i % 3 == 0 { "9".into() } else { "1.0".into() };
        store
            .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
            .await
            .unwrap();
        if i % 3 != 0 {
            want.insert(a.id.clone());
        }
    }
    let q = MarketplaceQuery {
        name: Some(format!("pg{u}*")),
        version: Some("1.0".into()),
        ..Default::default()
    };
    for size in [1, 2, 3, 8, 500] {
        let got = all(store, &q, size).await;
        check!(
            store,
            got.len() == want.len() && ids(&got) == want,
            "pages of {size} visit every match once"
        );
    }
    let q = MarketplaceQuery {
        author: Some(format!("pages {u}")),
        ..Default::default()
    };
    check!(
        store,
        all(store, &q, 4).await.len() == 13,
        "paging over a publisher filter"
    );
}

/// [`AgentStore::marketplace_counts`](crate::AgentStore::marketplace_counts)
/// counts listed agents per key and follows changes.
pub async fn counts(store: &dyn IdpStore) {
    let u = unique();
    let ten = sample_tenant(&format!("Counts {u}"));
    store.create_tenant(&ten).await.unwrap();
    let category = format!("cnt{u}");
    let capability = format!("cap{u}");
    let mut agents = Vec::new();
    for i in 0..3 {
        let mut a = sample_agent(&ten.id, &format!("c{i}"));
        a.visibility = Visibility::Public;
        a.state = LifecycleState::Listed;
        a.category = Some(category.clone());
        a.capabilities = vec![capability.clone(), format!("{capability}.{i}")];
        store
            .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
            .await
            .unwrap();
        agents.push(a);
    }
    let count = |kind: IndexKind, value: String| async move {
        store
            .marketplace_counts(kind)
            .await
            .unwrap()
            .into_iter()
            .find(|(v, _)| *v == value)
            .map_or(0, |(_, n)| n)
    };
    check!(
        store,
        count(IndexKind::Category, category.clone()).await == 3,
        "three agents in the category"
    );
    check!(
        store,
        count(IndexKind::Capability, capability.clone()).await == 3
            && count(IndexKind::Capability, format!("{capability}.1")).await == 1,
        "capability counts"
    );
    let mut a = store.get_agent(&agents[0].id).await.unwrap();
    a.state = LifecycleState::Paused;
    store.update_agent(&a).await.unwrap();
    let mut b = store.get_agent(&agents[1].id).await.unwrap();
    b.category = Some(format!("{category}.other"));
    store.update_agent(&b).await.unwrap();
    check!(
        store,
        count(IndexKind::Category, category.clone()).await == 1
            && count(IndexKind::Category, format!("{category}.other")).await == 1,
        "counts follow pausing and changes"
    );
    check!(
        store,
        count(IndexKind::Capability, format!("{capability}.0")).await == 0,
        "a key no listed agent has is not counted"
    );
    let skills = store
        .marketplace_counts(IndexKind::SkillName)
        .await
        .unwrap();
    check!(
        store,
        skills.windows(2).all(|w| w[0].0 < w[1].0) && skills.iter().all(|(_, n)| *n > 0),
        "counts by value, none zero"
    );
}

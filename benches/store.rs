//! Agent store operations, per backend: in memory, sled (on a temporary
//! directory) and Postgres (on a fresh schema of the database of
//! `SENTRYAGENT_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, dropped at the end).
//!
//! `cargo bench --bench store` (add `--features postgres` for the Postgres
//! ids); ids under the group `store` (see docs/benchmarks.md). Async calls
//! are driven by criterion's `to_async` on a current-thread Tokio runtime.
//! The in-memory ids measure the bench thread's CPU time; the sled and
//! Postgres ids measure wall time, since their work includes waiting for the
//! disk (sled flushes before acknowledging a write) or the database server.
//!
//! Per backend: `<backend>_register` (one agent with its first client
//! secret, into a store that keeps growing), `<backend>_lookup_by_client_id`
//! (among 100k agents) and `<backend>_marketplace_search_100k` (a text query
//! and a capability filter over 100k listed public agents, first page; the
//! in-memory id is `marketplace_search_100k`). For sled and Postgres, the
//! directory query kinds over the same agents:
//! `<backend>_marketplace_search_skill_100k` (an OASF skill id),
//! `<backend>_marketplace_search_verified_100k` (verified publishers only),
//! `<backend>_marketplace_search_and_100k` (name prefix, skill id and
//! verified together), first page each, and
//! `<backend>_marketplace_categories_100k` (the counts of categories,
//! capabilities and OASF skills that `GET /v1/marketplace/categories`
//! reads).

use std::cell::OnceCell;
use std::sync::Arc;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use futures_util::{StreamExt, stream};
use sentryagent::ClientSecret;
use sentryagent::SecretHash;
use sentryagent::did::did_key_from_ed25519;
use sentryagent::{
    Agent, AgentId, IdpStore, LifecycleState, MarketplaceQuery, MemoryStore, PageRequest, SecretId,
    Tenant, TenantId, TenantStatus, Tier, Visibility,
};
use sentryagent::{BillingInfo, Publisher};
use sentryagent_core::conformance::kit;
use sentryagent_core::marketplace_index::IndexKind;
use support::{ThreadCpuTime, cpu_time_criterion};
use tokio::runtime::Runtime;

mod support;

/// Agents in each backend's store (the marketplace searched, and the
/// agents looked up).
const AGENTS: usize = 100_000;
/// Agents created at once while filling a store.
const FILL_CONCURRENCY: usize = 32;
/// Publishers (tenants) the agents are spread over; every other one is
/// verified.
const PUBLISHERS: usize = 100;
/// OASF skills the agents are given (one each, in turn, as a fourth
/// capability by its full name).
const OASF_SKILLS: usize = 20;

/// The OASF skills of the generated agents: the first [`OASF_SKILLS`]
/// nested skills of the shipped taxonomy.
fn oasf_skills() -> Vec<&'static sentryagent_core::oasf::TaxonomyClass> {
    sentryagent_core::oasf::taxonomy()
        .skills
        .iter()
        .filter(|s| s.name.matches('/').count() >= 1)
        .take(OASF_SKILLS)
        .collect()
}

/// Words the generated agents are described with.
const WORDS: [&str; 40] = [
    "invoice",
    "billing",
    "payment",
    "ledger",
    "report",
    "summary",
    "translate",
    "language",
    "search",
    "index",
    "crawler",
    "scraper",
    "calendar",
    "meeting",
    "schedule",
    "email",
    "inbox",
    "support",
    "ticket",
    "triage",
    "code",
    "review",
    "deploy",
    "monitor",
    "alert",
    "incident",
    "data",
    "pipeline",
    "warehouse",
    "query",
    "image",
    "vision",
    "speech",
    "audio",
    "contract",
    "legal",
    "compliance",
    "security",
    "audit",
    "research",
];
/// Capabilities the generated agents offer (three each).
const CAPABILITIES: [&str; 20] = [
    "pdf.extract",
    "pdf.render",
    "text.summarize",
    "text.translate",
    "web.search",
    "web.fetch",
    "mail.send",
    "mail.read",
    "calendar.read",
    "calendar.write",
    "code.review",
    "code.run",
    "db.query",
    "db.write",
    "image.caption",
    "image.generate",
    "audio.transcribe",
    "tts.speak",
    "payments.charge",
    "payments.refund",
];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn tenant() -> Tenant {
    publisher(false)
}

/// A tenant whose publisher is `verified` or not.
fn publisher(verified: bool) -> Tenant {
    let at = kit::EPOCH;
    let id = TenantId::generate();
    Tenant {
        slug: format!("acme-{}", id.as_str().replace('_', "-")),
        id,
        name: "Acme".into(),
        tier: Tier::Enterprise,
        status: TenantStatus::Active,
        billing: BillingInfo::default(),
        publisher: Publisher {
            display_name: "Acme".into(),
            website: None,
            verified,
            verification: None,
        },
        allowed_audiences: vec![],
        settings: Default::default(),
        suspended_at: None,
        suspension_reason: None,
        created_at: at,
        updated_at: at,
        revision: 0,
    }
}

/// Agent number `i` of `tenant`: deterministic words, capabilities and tags,
/// public and listed. All share one (valid) DID: stores do not index it.
fn agent(tenant: &TenantId, i: usize, did: &str) -> (Agent, ClientSecret) {
    let at = kit::EPOCH;
    let w = |k: usize| WORDS[(i / k + k * 7) % WORDS.len()];
    let agent = Agent {
        id: AgentId::generate(),
        tenant_id: tenant.clone(),
        name: format!("{}-{}-{i}", w(1), w(3)),
        description: format!(
            "Handles {} and {} for {} teams; {} on request.",
            w(1),
            w(5),
            w(11),
            w(17)
        ),
        version: "1.0.0".into(),
        capabilities: (0..3)
            .map(|k| CAPABILITIES[(i * 7 + k * 3) % CAPABILITIES.len()].to_owned())
            .chain(std::iter::once(oasf_skills()[i % OASF_SKILLS].name.clone()))
            .collect(),
        tags: vec![w(2).to_owned(), w(13).to_owned()],
        category: Some(w(19).to_owned()),
        visibility: Visibility::Public,
        state: LifecycleState::Listed,
        did: did.to_owned(),
        allowed_scopes: vec!["read".into()],
        custom_claims: Default::default(),
        token_algorithm: None,
        tokens_not_before: None,
        state_changed_at: Some(at),
        created_at: at,
        updated_at: at,
        revision: 0,
    };
    let secret = ClientSecret {
        id: SecretId::generate(),
        agent_id: agent.id.clone(),
        hash: SecretHash([i as u8; 32]),
        created_at: at,
        expires_at: None,
        revoked_at: None,
    };
    (agent, secret)
}

/// Fills `store` with [`PUBLISHERS`] tenants (every other one verified)
/// and `n` listed agents spread over them in turn (created
/// [`FILL_CONCURRENCY`] at a time); returns their ids.
fn fill(rt: &Runtime, store: &Arc<dyn IdpStore>, n: usize, did: &str) -> Vec<AgentId> {
    let tenants: Vec<Tenant> = (0..PUBLISHERS).map(|i| publisher(i % 2 == 0)).collect();
    let tenants = &tenants;
    rt.block_on(async {
        for t in tenants {
            store.create_tenant(t).await.expect("tenant");
        }
        stream::iter(0..n)
            .map(|i| {
                let (a, s) = agent(&tenants[i % PUBLISHERS].id, i, did);
                async move {
                    store.create_agent(&a, Some(&s), None).await.expect("agent");
                    a.id
                }
            })
            .buffered(FILL_CONCURRENCY)
            .collect()
            .await
    })
}

/// The three ids of one backend, on an empty `store`. The store is filled
/// when the first id that needs the agents runs, so that a filter selecting
/// other ids does not pay for it.
fn bench_backend<M: Measurement>(
    g: &mut BenchmarkGroup<'_, M>,
    rt: &Runtime,
    backend: &str,
    store: Arc<dyn IdpStore>,
    did: &str,
) {
    let agents: OnceCell<Vec<AgentId>> = OnceCell::new();
    let filled = || {
        agents.get_or_init(|| {
            let started = std::time::Instant::now();
            let ids = fill(rt, &store, AGENTS, did);
            eprintln!(
                "{backend}: {AGENTS} agents created in {:.1} s ({FILL_CONCURRENCY} at a time)",
                started.elapsed().as_secs_f64()
            );
            ids
        })
    };

    // Lookup by client id (= agent id) among the 100k agents.
    g.bench_function(format!("{backend}_lookup_by_client_id"), |b| {
        let ids = filled();
        let mut i = 0usize;
        b.to_async(rt).iter(|| {
            i = (i + 7919) % ids.len();
            let (store, id) = (&store, &ids[i]);
            async move { store.get_agent(id).await.expect("found") }
        })
    });

    // Marketplace search over the 100k listed public agents: a text query
    // and a capability filter together, first page.
    let query = MarketplaceQuery {
        text: Some("invoice ledger".into()),
        capability: Some("pdf.extract".into()),
        ..Default::default()
    };
    let page = PageRequest::default();
    let checked = OnceCell::new();
    let search_id = if backend == "memory" {
        "marketplace_search_100k".to_owned()
    } else {
        format!("{backend}_marketplace_search_100k")
    };
    g.bench_function(search_id, |b| {
        filled();
        checked.get_or_init(|| {
            let found = rt
                .block_on(store.search_marketplace(&query, &page))
                .expect("search");
            eprintln!(
                "{backend}: the search's first page has {} agents (more: {})",
                found.items.len(),
                found.next_cursor.is_some()
            );
            assert!(
                !found.items.is_empty(),
                "the query should match some agents"
            );
        });
        b.to_async(rt).iter(|| async {
            store
                .search_marketplace(std::hint::black_box(&query), &page)
                .await
                .expect("search")
        })
    });

    if backend != "memory" {
        bench_directory(g, rt, backend, &store, &filled);
    }

    // Registration: one agent with its first client secret, into the store
    // (which keeps growing during the run, as a real one does).
    let t = tenant();
    rt.block_on(store.create_tenant(&t)).expect("tenant");
    let mut next = AGENTS;
    g.bench_function(format!("{backend}_register"), |b| {
        b.to_async(rt).iter_batched(
            || {
                next += 1;
                agent(&t.id, next, did)
            },
            |(a, s)| {
                let store = &store;
                async move {
                    store
                        .create_agent(&a, Some(&s), None)
                        .await
                        .expect("create")
                }
            },
            BatchSize::SmallInput,
        )
    });
}

/// The directory ids of one backend (see the crate docs), on the filled
/// store.
fn bench_directory<'a, M: Measurement>(
    g: &mut BenchmarkGroup<'_, M>,
    rt: &Runtime,
    backend: &str,
    store: &Arc<dyn IdpStore>,
    filled: &dyn Fn() -> &'a Vec<AgentId>,
) {
    // Skill 4 is on agents 4, 24, 44, ... (all of verified publishers);
    // names start with `scraper` on agents 4, 44, 84, ...: the AND query
    // matches 2,500 agents.
    let skill = oasf_skills()[4];
    let searches = [
        (
            "skill",
            MarketplaceQuery {
                skill_id: Some(skill.id.to_string()),
                ..Default::default()
            },
        ),
        (
            "verified",
            MarketplaceQuery {
                verified: Some(true),
                ..Default::default()
            },
        ),
        (
            "and",
            MarketplaceQuery {
                name: Some("scraper*".into()),
                skill_id: Some(skill.id.to_string()),
                verified: Some(true),
                ..Default::default()
            },
        ),
    ];
    let page = PageRequest::default();
    for (kind, query) in searches {
        g.bench_function(format!("{backend}_marketplace_search_{kind}_100k"), |b| {
            filled();
            let found = rt
                .block_on(store.search_marketplace(&query, &page))
                .expect("search");
            eprintln!(
                "{backend}: the {kind} search's first page has {} agents (more: {})",
                found.items.len(),
                found.next_cursor.is_some()
            );
            assert!(!found.items.is_empty(), "the {kind} query matches agents");
            b.to_async(rt).iter(|| async {
                store
                    .search_marketplace(std::hint::black_box(&query), &page)
                    .await
                    .expect("search")
            })
        });
    }
    g.bench_function(format!("{backend}_marketplace_categories_100k"), |b| {
        filled();
        b.to_async(rt).iter(|| async {
            let mut n = 0;
            for kind in [
                IndexKind::Category,
                IndexKind::Capability,
                IndexKind::SkillName,
            ] {
                n += store.marketplace_counts(kind).await.expect("counts").len();
            }
            n
        })
    });
}

/// The DID every generated agent shares.
fn shared_did() -> String {
    did_key_from_ed25519(
        &ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
            .verifying_key()
            .to_bytes(),
    )
}

fn memory(c: &mut Criterion<ThreadCpuTime>) {
    let rt = runtime();
    let mut g = c.benchmark_group("store");
    g.sample_size(20);
    bench_backend(
        &mut g,
        &rt,
        "memory",
        Arc::new(MemoryStore::new()),
        &shared_did(),
    );
    g.finish();
}

fn on_disk(c: &mut Criterion) {
    let rt = runtime();
    let did = shared_did();
    let mut g = c.benchmark_group("store");
    g.sample_size(20);

    #[cfg(feature = "sled")]
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = sentryagent::storage::sled::SledBackend::open(dir.path()).expect("sled");
        bench_backend(&mut g, &rt, "sled", Arc::new(backend.store()), &did);
    }
    #[cfg(not(feature = "sled"))]
    eprintln!("SKIPPED sled store ids: built without the `sled` feature");

    #[cfg(feature = "postgres")]
    postgres::bench(&mut g, &rt, &did);
    #[cfg(not(feature = "postgres"))]
    eprintln!(
        "SKIPPED postgres store ids: built without the `postgres` feature (cargo bench --features postgres)"
    );
    g.finish();
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use criterion::BenchmarkGroup;
    use criterion::measurement::WallTime;
    use sentryagent::storage::postgres::{PostgresOptions, PostgresStore};
    use sqlx::Connection;
    use tokio::runtime::Runtime;

    /// The Postgres ids, on a fresh schema dropped afterwards (also when
    /// an id panics); a line saying so when Postgres is unreachable.
    pub(super) fn bench(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, did: &str) {
        let url = std::env::var("SENTRYAGENT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("sa_bench_{}", std::process::id());
        let options = PostgresOptions::new(url.as_str()).with_schema(schema.as_str());
        let Ok(store) = rt.block_on(PostgresStore::connect(&options)) else {
            for id in ["register", "lookup_by_client_id", "marketplace_search_100k"] {
                eprintln!("SKIPPED postgres_{id}: postgres unreachable at {url}");
            }
            return;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::bench_backend(g, rt, "postgres", Arc::new(store.clone()), did);
        }));
        rt.block_on(async {
            store.close().await;
            if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&url).await {
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

criterion_group! {
    name = cpu_time;
    config = cpu_time_criterion();
    targets = memory
}
criterion_group!(wall_time, on_disk);
criterion_main!(cpu_time, wall_time);

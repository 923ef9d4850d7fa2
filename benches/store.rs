//! Agent store operations, per backend (the in-memory one for now).
//!
//! `cargo bench --bench store`; ids under the group `store` (see
//! docs/benchmarks.md). Async calls are driven by criterion's `to_async` on
//! a current-thread Tokio runtime (one `block_on` per sample).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sentryagent::credentials::ClientSecret;
use sentryagent::did::did_key_from_ed25519;
use sentryagent::secret::SecretHash;
use sentryagent::tenant::{BillingInfo, Publisher};
use sentryagent::{
    Agent, AgentId, AgentStore, LifecycleState, MarketplaceQuery, MemoryStore, PageRequest,
    SecretId, Tenant, TenantId, TenantStatus, Tier, Timestamp, Visibility,
};
use support::{ThreadCpuTime, cpu_time_criterion};
use tokio::runtime::Runtime;

mod support;

/// Agents of `marketplace_search_100k`.
const MARKETPLACE_AGENTS: usize = 100_000;
/// Agents in the store of `memory_lookup_by_client_id`.
const LOOKUP_AGENTS: usize = 10_000;

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
        .build()
        .expect("runtime")
}

fn tenant() -> Tenant {
    let at = Timestamp::from_unix_secs(1_763_700_000);
    Tenant {
        id: TenantId::generate(),
        name: "Acme".into(),
        slug: "acme".into(),
        tier: Tier::Enterprise,
        status: TenantStatus::Active,
        billing: BillingInfo::default(),
        publisher: Publisher {
            display_name: "Acme".into(),
            website: None,
            verified: false,
        },
        allowed_audiences: vec![],
        created_at: at,
        updated_at: at,
        revision: 0,
    }
}

/// Agent number `i` of `tenant`: deterministic words, capabilities and tags,
/// public and listed. All share one (valid) DID: stores do not index it.
fn agent(tenant: &TenantId, i: usize, did: &str) -> (Agent, ClientSecret) {
    let at = Timestamp::from_unix_secs(1_763_700_000);
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
            .collect(),
        tags: vec![w(2).to_owned(), w(13).to_owned()],
        category: Some(w(19).to_owned()),
        visibility: Visibility::Public,
        state: LifecycleState::Listed,
        did: did.to_owned(),
        allowed_scopes: vec!["read".into()],
        custom_claims: Default::default(),
        token_algorithm: None,
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

/// A memory store with one tenant and `n` agents; returns their ids.
fn filled(rt: &Runtime, n: usize, did: &str) -> (Arc<MemoryStore>, Vec<AgentId>) {
    let store = Arc::new(MemoryStore::new());
    let t = tenant();
    let ids = rt.block_on(async {
        store.create_tenant(&t).await.expect("tenant");
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let (a, s) = agent(&t.id, i, did);
            store.create_agent(&a, &s, None).await.expect("agent");
            ids.push(a.id);
        }
        ids
    });
    (store, ids)
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let rt = runtime();
    let did = did_key_from_ed25519(
        &ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
            .verifying_key()
            .to_bytes(),
    );
    let mut g = c.benchmark_group("store");

    // Registration: one agent with its first client secret, into a store
    // that keeps growing during the run (as a real one does).
    let store: Arc<dyn AgentStore> = Arc::new(MemoryStore::new());
    let t = tenant();
    rt.block_on(store.create_tenant(&t)).expect("tenant");
    let mut next = 0usize;
    g.bench_function("memory_register", |b| {
        b.to_async(&rt).iter_batched(
            || {
                next += 1;
                agent(&t.id, next, &did)
            },
            |(a, s)| {
                let store = &store;
                async move { store.create_agent(&a, &s, None).await.expect("create") }
            },
            BatchSize::SmallInput,
        )
    });

    // Lookup by client id (= agent id) among 10k agents.
    let (store, ids) = filled(&rt, LOOKUP_AGENTS, &did);
    let store: Arc<dyn AgentStore> = store;
    let mut i = 0usize;
    g.bench_function("memory_lookup_by_client_id", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % ids.len();
            let (store, id) = (&store, &ids[i]);
            async move { store.get_agent(id).await.expect("found") }
        })
    });

    // Marketplace search over 100k listed public agents: a text query and a
    // capability filter together, first page.
    let (store, _) = filled(&rt, MARKETPLACE_AGENTS, &did);
    let store: Arc<dyn AgentStore> = store;
    let query = MarketplaceQuery {
        text: Some("invoice ledger".into()),
        capability: Some("pdf.extract".into()),
        ..Default::default()
    };
    let page = PageRequest::default();
    let found = rt
        .block_on(store.search_marketplace(&query, &page))
        .expect("search");
    eprintln!(
        "marketplace_search_100k: first page has {} agents (more: {})",
        found.items.len(),
        found.next_cursor.is_some()
    );
    assert!(
        !found.items.is_empty(),
        "the query should match some agents"
    );
    g.sample_size(20);
    g.bench_function("marketplace_search_100k", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .search_marketplace(std::hint::black_box(&query), &page)
                .await
                .expect("search")
        })
    });

    // Slots for the other backends, to add with them, with the same data:
    // `sled_register`, `sled_lookup_by_client_id`,
    // `sled_marketplace_search_100k` (on a temporary directory), and
    // `postgres_register`, `postgres_lookup_by_client_id`,
    // `postgres_marketplace_search_100k` (on the database of
    // `SENTRYAGENT_TEST_POSTGRES_URL`, printing
    // `SKIPPED <id>: postgres unreachable at <url>` when it is absent).
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time_criterion();
    targets = bench
}
criterion_main!(benches);

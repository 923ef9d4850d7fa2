//! One million agents: bulk registration, lookup by client id and
//! marketplace search on sled and on Postgres, over a fixture built once
//! and reused across runs.
//!
//! `cargo bench --bench store_1m --all-features`; ids under the group
//! `store` (see docs/benchmarks.md, "One million agents"):
//!
//! - `<backend>_register_bulk_1m`: one batch of [`GROWTH_BATCH`] listed
//!   public agents (with their first secrets), registered with
//!   `AgentStore::create_agents` into the store holding the million (the
//!   store grows by these agents; the figure is per batch, criterion's
//!   throughput line gives agents per second). The time to register the
//!   whole fixture, in batches of [`FIXTURE_BATCH`], is measured when the
//!   fixture is built, printed, and recorded in the store (printed again
//!   by every later run).
//! - `<backend>_lookup_by_client_id_1m`: `get_agent` of a random agent
//!   among the million, warm (on sled every agent read once first, on
//!   Postgres [`WARM_SAMPLE`] random ones), with a sample of
//!   [`LOOKUP_SAMPLE`] timed lookups whose p50/p90/p99 are printed (and the
//!   same for `get_client`, what the token endpoint reads).
//! - `<backend>_marketplace_search_1m`: first page of `search_marketplace`
//!   with a text query (one of [`SEARCHES`] in turn, one with a capability
//!   filter) over the million listed public agents; p50/p99 of a sample of
//!   [`SEARCH_SAMPLE`] searches per query printed.
//!
//! The fixture: sled under `target/bench-data/sled-1m-v<version>/`,
//! Postgres in schema `sa_bench_1m` of `SENTRYAGENT_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), kept between runs.
//! A store whose fixture marker (a setting) names another version or count
//! is rebuilt; an interrupted build resumes (batches are atomic, stored
//! batches are skipped). `SENTRYAGENT_BENCH_1M_AGENTS` sets the number of
//! agents (another count gets its own directory and schema, e.g.
//! `sled-10000-v2`, `sa_bench_1m_10000`); `SENTRYAGENT_BENCH_1M_PREPARE_ONLY=1`
//! builds the fixtures and measures nothing; `SENTRYAGENT_BENCH_1M_BACKENDS`
//! (`sled`, `postgres` or both, comma-separated; default both) picks the
//! backends.
//!
//! Time is wall time (the work includes sled's disk flushes and the
//! Postgres server), async calls run on a current-thread Tokio runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_util::{StreamExt, stream};
use sentryagent::did::did_key_from_ed25519;
use sentryagent::{
    Agent, AgentId, BillingInfo, ClientSecret, Error, IdpStore, LifecycleState, MAX_AGENT_BATCH,
    MarketplaceQuery, NewAgentRecord, PageRequest, Publisher, SecretHash, SecretId, Tenant,
    TenantId, TenantStatus, Tier, Visibility,
};
use sentryagent_core::conformance::kit;
use tokio::runtime::Runtime;

/// Bumped whenever the generated agents or the store format change: a
/// fixture of another version is rebuilt.
const FIXTURE_VERSION: u32 = 2;
/// Agents in the fixture unless `SENTRYAGENT_BENCH_1M_AGENTS` says.
const DEFAULT_AGENTS: usize = 1_000_000;
/// Agents per tenant of the fixture.
const AGENTS_PER_TENANT: usize = 1_000;
/// Agents per `create_agents` call while building the fixture.
const FIXTURE_BATCH: usize = MAX_AGENT_BATCH;
/// Agents per `create_agents` call of the `register_bulk_1m` ids.
const GROWTH_BATCH: usize = 1_000;
/// Lookups before the timed ones on Postgres (sled reads every agent).
const WARM_SAMPLE: usize = 20_000;
/// Timed lookups for the printed percentiles.
const LOOKUP_SAMPLE: usize = 10_000;
/// Timed searches per query for the printed percentiles.
const SEARCH_SAMPLE: usize = 200;
/// The setting that marks a complete fixture.
const MARKER: &str = "bench-fixture:store_1m";

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
/// Syllables of product names: three make a name (13,824 names, about 72
/// agents each in a million).
const SYLLABLES: [&str; 24] = [
    "zan", "quo", "ri", "vel", "mak", "tor", "lux", "pen", "dra", "kil", "bo", "sen", "fy", "gar",
    "nox", "tri", "ul", "wem", "ca", "jo", "hex", "pli", "stu", "dor",
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
/// Marketplace categories.
const CATEGORIES: [&str; 12] = [
    "finance",
    "language",
    "productivity",
    "developer",
    "operations",
    "data",
    "media",
    "legal",
    "security",
    "research",
    "support",
    "sales",
];

/// The searches, as (label, text, capability). The product names are
/// those of agents 777 and 4242; the other words are common.
fn searches() -> Vec<(&'static str, MarketplaceQuery)> {
    let q = |text: String, capability: Option<&str>| MarketplaceQuery {
        text: Some(text),
        capability: capability.map(str::to_owned),
        ..Default::default()
    };
    vec![
        ("product name", q(product(777), None)),
        (
            "product name + word",
            q(format!("{} {}", product(4242), word(4242, 1)), None),
        ),
        ("common word", q("invoice".into(), None)),
        ("two common words", q("invoice ledger".into(), None)),
        (
            "common word + capability",
            q("translate".into(), Some("pdf.extract")),
        ),
    ]
}

/// How many queries the search ids cycle through ([`searches`]).
const SEARCHES: usize = 5;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<'a>(items: &[&'a str], i: usize, salt: u64) -> &'a str {
    items[(mix(i as u64 ^ (salt << 40)) % items.len() as u64) as usize]
}

/// Word `k` of agent `i`'s description.
fn word(i: usize, k: u64) -> &'static str {
    pick(&WORDS, i, k)
}

/// Agent `i`'s product name.
fn product(i: usize) -> String {
    (0..3u64).map(|k| pick(&SYLLABLES, i, 10 + k)).collect()
}

/// Agent `i`'s id: time-ordered like a generated one (UUIDv7 layout).
fn agent_id(i: usize) -> AgentId {
    AgentId::parse(&format!("agt_0193{:012x}7{:015x}", i, mix(i as u64) >> 4)).expect("a valid id")
}

/// Tenant `t` of the fixture (`t` in `0..`): fixed ids, so a resumed
/// build finds them.
fn tenant(t: usize, label: &str) -> Tenant {
    let at = kit::EPOCH;
    let id = TenantId::parse(&format!("tnt_bench1m_{label}_{t:05}")).expect("a valid id");
    Tenant {
        slug: format!("bench-1m-{label}-{t:05}"),
        id,
        name: format!("Publisher {t}"),
        tier: Tier::Enterprise,
        status: TenantStatus::Active,
        billing: BillingInfo::default(),
        publisher: Publisher {
            display_name: format!("Publisher {t}"),
            website: None,
            verified: t.is_multiple_of(3),
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

/// Agent `i` of tenant `tenant`, public and listed, with its first secret.
fn agent(i: usize, id: AgentId, tenant: &TenantId, did: &str) -> NewAgentRecord {
    let at = kit::EPOCH;
    let name = product(i);
    let agent = Agent {
        id,
        tenant_id: tenant.clone(),
        name: format!("{name}-{}-{i}", word(i, 1)),
        description: format!(
            "{} handles {} and {} for {} teams; {} and {} on request.",
            capitalized(&name),
            word(i, 1),
            word(i, 2),
            word(i, 3),
            word(i, 4),
            word(i, 5),
        ),
        version: "1.0.0".into(),
        capabilities: (0..3)
            .map(|k| pick(&CAPABILITIES, i, 20 + k).to_owned())
            .collect(),
        tags: vec![word(i, 6).to_owned(), word(i, 7).to_owned()],
        category: Some(pick(&CATEGORIES, i, 30).to_owned()),
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
    let mut hash = [0u8; 32];
    for (k, chunk) in hash.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(i as u64 * 4 + k as u64).to_le_bytes());
    }
    let secret = ClientSecret {
        id: SecretId::parse(&format!("sec_{}", &agent.id.as_str()[4..])).expect("a valid id"),
        agent_id: agent.id.clone(),
        hash: SecretHash(hash),
        created_at: at,
        expires_at: None,
        revoked_at: None,
    };
    NewAgentRecord::new(agent, Some(secret))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The DID every generated agent shares (stores do not index it).
fn shared_did() -> String {
    did_key_from_ed25519(
        &ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
            .verifying_key()
            .to_bytes(),
    )
}

/// The fixture's size and its name part (`1m` for a million).
struct Size {
    agents: usize,
    label: String,
}

fn size() -> Size {
    let agents = std::env::var("SENTRYAGENT_BENCH_1M_AGENTS")
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| {
                    panic!("SENTRYAGENT_BENCH_1M_AGENTS must be a positive integer, not {v:?}")
                })
        })
        .unwrap_or(DEFAULT_AGENTS);
    let label = if agents == DEFAULT_AGENTS {
        "1m".to_owned()
    } else {
        agents.to_string()
    };
    Size { agents, label }
}

/// Whether `SENTRYAGENT_BENCH_1M_BACKENDS` (a comma-separated list,
/// default every backend) names `backend`.
fn wanted(backend: &str) -> bool {
    std::env::var("SENTRYAGENT_BENCH_1M_BACKENDS")
        .map_or(true, |v| v.split(',').any(|b| b.trim() == backend))
}

fn prepare_only() -> bool {
    std::env::var("SENTRYAGENT_BENCH_1M_PREPARE_ONLY").is_ok_and(|v| v == "1")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The setting holding the fixture's version.
fn version_setting() -> String {
    format!("{MARKER}:version")
}

/// Whether the store holds no fixture or one of this version (a new store
/// is marked with this version).
async fn version_matches(store: &dyn IdpStore) -> bool {
    let version = FIXTURE_VERSION.to_string();
    let stored = store
        .setting_get_or_insert(&version_setting(), version.as_bytes())
        .await
        .expect("fixture version");
    stored == version.as_bytes()
}

/// The fixture's batches of agent numbers.
fn batches(n: usize) -> Vec<std::ops::Range<usize>> {
    (0..n)
        .step_by(FIXTURE_BATCH)
        .map(|s| s..(s + FIXTURE_BATCH).min(n))
        .collect()
}

/// Whether every batch of the fixture is stored (batches are atomic: the
/// last agent of each tells).
async fn complete(store: &dyn IdpStore, n: usize) -> bool {
    for range in batches(n) {
        if store.get_agent(&agent_id(range.end - 1)).await.is_err() {
            return false;
        }
    }
    true
}

/// Builds (or resumes building) the fixture in `store`; returns what the
/// store records of the build that completed it (duration and rate).
fn build_fixture(
    rt: &Runtime,
    backend: &str,
    store: &Arc<dyn IdpStore>,
    size: &Size,
    concurrency: usize,
) -> String {
    let n = size.agents;
    let record_key = format!("{MARKER}:build");
    if rt.block_on(complete(store.as_ref(), n)) {
        let record = rt
            .block_on(store.setting_get_or_insert(&record_key, b"(no build record)"))
            .expect("build record");
        let record = String::from_utf8_lossy(&record).into_owned();
        eprintln!("{backend}: fixture of {n} agents ready; {record}");
        return record;
    }
    let did = shared_did();
    let started = Instant::now();
    let mut skipped = 0usize;
    rt.block_on(async {
        for t in 0..n.div_ceil(AGENTS_PER_TENANT) {
            match store.create_tenant(&tenant(t, &size.label)).await {
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => panic!("{backend}: tenant {t}: {e}"),
            }
        }
        let mut done = 0usize;
        let mut last_report = Instant::now();
        let mut stream = stream::iter(batches(n))
            .map(|range| {
                let store = store.clone();
                let did = did.clone();
                let label = size.label.clone();
                async move {
                    // A stored batch is whole: its last agent tells.
                    if store.get_agent(&agent_id(range.end - 1)).await.is_ok() {
                        return (range.len(), true);
                    }
                    let batch: Vec<NewAgentRecord> = range
                        .clone()
                        .map(|i| {
                            let t = tenant(i / AGENTS_PER_TENANT, &label);
                            agent(i, agent_id(i), &t.id, &did)
                        })
                        .collect();
                    store
                        .create_agents(&batch)
                        .await
                        .unwrap_or_else(|e| panic!("batch {range:?}: {e}"));
                    (range.len(), false)
                }
            })
            .buffer_unordered(concurrency);
        while let Some((len, was_stored)) = stream.next().await {
            done += len;
            if was_stored {
                skipped += len;
            }
            if last_report.elapsed() > Duration::from_secs(15) || done == n {
                last_report = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "{backend}: {done} of {n} agents stored ({skipped} by an earlier run), \
                     {secs:.0} s, {:.0} agents/s",
                    (done - skipped) as f64 / secs.max(1e-9)
                );
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let registered = n - skipped;
    let record = format!(
        "fixture v{FIXTURE_VERSION}: {registered} agents registered in {secs:.1} s \
         ({:.0} agents/s) in batches of {FIXTURE_BATCH}, {concurrency} at a time{}",
        registered as f64 / secs.max(1e-9),
        if skipped > 0 {
            format!("; {skipped} were stored by an earlier, interrupted build")
        } else {
            String::new()
        }
    );
    let record = rt
        .block_on(store.setting_get_or_insert(&record_key, record.as_bytes()))
        .expect("build record");
    let record = String::from_utf8_lossy(&record).into_owned();
    eprintln!("{backend}: built; {record}");
    record
}

/// `p` (0..=1) of sorted durations, in microseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn report(backend: &str, what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    eprintln!(
        "{backend}: {what}: n={} p50={:.1} µs p90={:.1} µs p99={:.1} µs max={:.1} µs",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
}

/// The three ids of one backend over its fixture.
fn bench_backend(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    backend: &str,
    store: Arc<dyn IdpStore>,
    size: &Size,
) {
    let n = size.agents;
    let label = &size.label;
    let mut rng = kit::Rng::new(0x5eed_1000 + n as u64);

    // Lookup by client id, warm: agents read first (on sled all of them,
    // on Postgres a sample: a round trip each), then timed.
    let warm = Instant::now();
    let warm_reads = if backend == "sled" {
        n
    } else {
        n.min(WARM_SAMPLE)
    };
    rt.block_on(async {
        for k in 0..warm_reads {
            let i = if warm_reads == n {
                k
            } else {
                rng.below(n as u64) as usize
            };
            store.get_agent(&agent_id(i)).await.expect("fixture agent");
        }
    });
    eprintln!(
        "{backend}: warmed by reading {warm_reads} agents in {:.1} s",
        warm.elapsed().as_secs_f64()
    );
    let sample: Vec<AgentId> = (0..LOOKUP_SAMPLE)
        .map(|_| agent_id(rng.below(n as u64) as usize))
        .collect();
    let timed = rt.block_on(async {
        let mut out = Vec::with_capacity(sample.len());
        for id in &sample {
            let start = Instant::now();
            std::hint::black_box(store.get_agent(id).await.expect("found"));
            out.push(start.elapsed());
        }
        out
    });
    report(
        backend,
        &format!("get_agent of random agents among {n}"),
        timed,
    );
    let timed = rt.block_on(async {
        let mut out = Vec::with_capacity(sample.len());
        for id in &sample {
            let start = Instant::now();
            std::hint::black_box(store.get_client(id).await.expect("found"));
            out.push(start.elapsed());
        }
        out
    });
    report(
        backend,
        &format!("get_client (agent and secrets) of random agents among {n}"),
        timed,
    );
    g.sampling_mode(SamplingMode::Auto);
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("{backend}_lookup_by_client_id_{label}"), |b| {
        b.to_async(rt).iter(|| {
            let id = agent_id(rng.below(n as u64) as usize);
            let store = &store;
            async move { store.get_agent(&id).await.expect("found") }
        })
    });

    // Marketplace search: each query's percentiles, then the id cycling
    // through the queries.
    let queries = searches();
    assert_eq!(queries.len(), SEARCHES);
    let page = PageRequest::default();
    let mut all = Vec::new();
    for (what, q) in &queries {
        let first = rt
            .block_on(store.search_marketplace(q, &page))
            .expect("search");
        assert!(!first.items.is_empty(), "{backend}: `{what}` finds agents");
        let timed = rt.block_on(async {
            let mut out = Vec::with_capacity(SEARCH_SAMPLE);
            for _ in 0..SEARCH_SAMPLE {
                let start = Instant::now();
                std::hint::black_box(store.search_marketplace(q, &page).await.expect("search"));
                out.push(start.elapsed());
            }
            out
        });
        all.extend_from_slice(&timed);
        report(
            backend,
            &format!(
                "search {what} ({:?}{}; first page {} agents, more: {})",
                q.text.as_deref().unwrap_or_default(),
                q.capability
                    .as_deref()
                    .map(|c| format!(", capability {c}"))
                    .unwrap_or_default(),
                first.items.len(),
                first.next_cursor.is_some()
            ),
            timed,
        );
    }
    report(backend, "search, every query", all);
    let mut k = 0usize;
    g.bench_function(format!("{backend}_marketplace_search_{label}"), |b| {
        b.to_async(rt).iter(|| {
            k = (k + 1) % queries.len();
            let (store, q, page) = (&store, &queries[k].1, &page);
            async move { store.search_marketplace(q, page).await.expect("search") }
        })
    });

    // Bulk registration into the full store: one batch of GROWTH_BATCH
    // agents per iteration, in a tenant of this run.
    let run = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let growth = Tenant {
        id: TenantId::parse(&format!("tnt_bench1m_{label}_growth_{run}")).expect("a valid id"),
        slug: format!("bench-1m-{label}-growth-{}", run.replace('_', "-")),
        ..tenant(0, label)
    };
    rt.block_on(store.create_tenant(&growth))
        .expect("growth tenant");
    let did = shared_did();
    let mut next = 0usize;
    let mut registered = 0usize;
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(GROWTH_BATCH as u64));
    g.bench_function(format!("{backend}_register_bulk_{label}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<NewAgentRecord> = (0..GROWTH_BATCH)
                    .map(|_| {
                        next += 1;
                        agent(n + next, AgentId::generate(), &growth.id, &did)
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(store.create_agents(&batch)).expect("batch");
                total += start.elapsed();
                registered += GROWTH_BATCH;
            }
            total
        })
    });
    eprintln!(
        "{backend}: {registered} agents added to the fixture by {backend}_register_bulk_{label}"
    );
}

fn store_1m(c: &mut Criterion) {
    let rt = runtime();
    let size = size();
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));

    #[cfg(feature = "sled")]
    if wanted("sled") {
        sled::bench(&mut g, &rt, &size);
    }
    #[cfg(not(feature = "sled"))]
    eprintln!("SKIPPED sled 1m ids: built without the `sled` feature");

    #[cfg(feature = "postgres")]
    if wanted("postgres") {
        postgres::bench(&mut g, &rt, &size);
    }
    #[cfg(not(feature = "postgres"))]
    eprintln!(
        "SKIPPED postgres 1m ids: built without the `postgres` feature (cargo bench --features postgres)"
    );
    g.finish();
}

#[cfg(feature = "sled")]
mod sled {
    use std::path::PathBuf;
    use std::sync::Arc;

    use criterion::BenchmarkGroup;
    use criterion::measurement::WallTime;
    use sentryagent::storage::sled::SledBackend;
    use tokio::runtime::Runtime;

    use super::{FIXTURE_VERSION, Size};

    /// The fixture's directory: `target/bench-data/sled-<label>-v<version>`.
    pub(super) fn fixture_dir(size: &Size) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target
            .join("bench-data")
            .join(format!("sled-{}-v{FIXTURE_VERSION}", size.label))
    }

    pub(super) fn bench(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, size: &Size) {
        let dir = fixture_dir(size);
        eprintln!("sled: fixture in {}", dir.display());
        let mut store: Arc<dyn sentryagent::IdpStore> =
            Arc::new(SledBackend::open(&dir).expect("sled fixture").store());
        if !rt.block_on(super::version_matches(store.as_ref())) {
            eprintln!("sled: the fixture has another version; rebuilding it");
            drop(store);
            std::fs::remove_dir_all(&dir).expect("remove the old fixture");
            store = Arc::new(SledBackend::open(&dir).expect("sled fixture").store());
            assert!(rt.block_on(super::version_matches(store.as_ref())));
        }
        super::build_fixture(rt, "sled", &store, size, 1);
        if super::prepare_only() {
            return;
        }
        super::bench_backend(g, rt, "sled", store, size);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use criterion::BenchmarkGroup;
    use criterion::measurement::WallTime;
    use sentryagent::storage::postgres::{PostgresOptions, PostgresStore};
    use sqlx::Connection;
    use tokio::runtime::Runtime;

    use super::Size;

    pub(super) fn bench(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, size: &Size) {
        let url = std::env::var("SENTRYAGENT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = if size.label == "1m" {
            "sa_bench_1m".to_owned()
        } else {
            format!("sa_bench_1m_{}", size.label)
        };
        let options = PostgresOptions::new(url.as_str()).with_schema(schema.as_str());
        let mut store = match rt.block_on(PostgresStore::connect(&options)) {
            Ok(s) => s,
            Err(e) => {
                for id in ["register_bulk", "lookup_by_client_id", "marketplace_search"] {
                    eprintln!(
                        "SKIPPED postgres_{id}_{}: postgres unreachable at {url}: {e}",
                        size.label
                    );
                }
                return;
            }
        };
        eprintln!("postgres: fixture in schema {schema}");
        if !rt.block_on(super::version_matches(&store)) {
            eprintln!("postgres: the fixture has another version; rebuilding it");
            rt.block_on(async {
                store.close().await;
                let mut conn = sqlx::postgres::PgConnection::connect(&url)
                    .await
                    .expect("postgres");
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("drop the old fixture");
                let _ = conn.close().await;
            });
            store = rt
                .block_on(PostgresStore::connect(&options))
                .expect("postgres");
            assert!(rt.block_on(super::version_matches(&store)));
        }
        let store: Arc<dyn sentryagent::IdpStore> = Arc::new(store);
        super::build_fixture(rt, "postgres", &store, size, 2);
        if super::prepare_only() {
            return;
        }
        super::bench_backend(g, rt, "postgres", store, size);
    }
}

criterion::criterion_group!(benches, store_1m);
criterion::criterion_main!(benches);

//! The core conformance suites, a reopen test and open errors, on the sled
//! backend (each test on a fresh temporary directory).
#![cfg(feature = "sled")]

use sentryagent_core::{AgentStore, AuditLog, MarkerStore, SettingStore, TenantStore};
use std::sync::Arc;

use sentryagent_core::PageRequest;
use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::conformance::{self, kit, sample_agent, sample_secret, sample_tenant};
use sentryagent_core::{AuditQuery, NewAuditEvent, Outcome, verify_chain};
use sentryagent_core::{Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter};
use sentryagent_core::{
    Clock, Error, LifecycleState, ManualClock, MarketplaceQuery, Timestamp, Visibility,
};
use sentryagent_core::{Quota, RateLimiter};
use sentryagent_storage::sled::SledBackend;
use sentryagent_storage::{BackendUrls, open};

fn clock() -> ManualClock {
    ManualClock::new(EPOCH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_conformance_store() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SledBackend::open(dir.path()).unwrap();
    conformance::store::run_all(Arc::new(backend.store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_conformance_rate_limiter() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let limiter: Arc<dyn RateLimiter> = Arc::new(
        SledBackend::open(dir.path())
            .unwrap()
            .rate_limiter(Arc::new(clock.clone())),
    );
    conformance::rate_limiter::run_all(&limiter, &clock, "conformance:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_conformance_usage_meter() {
    let dir = tempfile::tempdir().unwrap();
    let meter = SledBackend::open(dir.path())
        .unwrap()
        .usage_meter(Arc::new(clock()));
    conformance::usage_meter::run_all(Arc::new(meter)).await;
}

fn event(tenant: &sentryagent_core::TenantId, i: i64) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: Some(tenant.clone()),
        at: Timestamp::from_unix_secs(EPOCH.unix_secs() + i),
        actor: "system".into(),
        action: format!("test.event{}", i % 3),
        target: Some(format!("t{i}")),
        outcome: Outcome::Success,
        request: Default::default(),
        details: Default::default(),
    }
}

/// Everything written is read back after the database is closed and opened
/// again: records, indexes, counters, the audit chain, markers, limiter
/// state and usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_reopen_reads_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let ten = sample_tenant("Reopen");
    let mut listed = sample_agent(&ten.id, "Invoice Translator");
    listed.visibility = Visibility::Public;
    listed.state = LifecycleState::Listed;
    listed.capabilities = vec!["translate".into()];
    let private = sample_agent(&ten.id, "Private Translator");
    let first = sample_secret(&listed.id, 1);
    let second = sample_secret(&listed.id, 2);
    let (head, listed_after) = {
        let backend = SledBackend::open(dir.path()).unwrap();
        let store = backend.store();
        store.create_tenant(&ten).await.unwrap();
        store
            .create_agent(&listed, Some(&first), Some(10))
            .await
            .unwrap();
        store
            .create_agent(&private, Some(&sample_secret(&private.id, 3)), Some(10))
            .await
            .unwrap();
        store
            .rotate_client_secret(
                &listed.id,
                &second,
                Timestamp::from_unix_secs(1_763_800_000),
            )
            .await
            .unwrap();
        store
            .revoke_client_secrets(&private.id, Timestamp::from_unix_secs(1_763_700_100))
            .await
            .unwrap();
        let mut renamed = listed.clone();
        renamed.description = "Translates invoices and receipts".into();
        let listed_after = store.update_agent(&renamed).await.unwrap();
        for i in 0..20 {
            store.append_audit(event(&ten.id, i)).await.unwrap();
        }
        store
            .put_marker(
                "jti",
                "abc",
                Timestamp::from_unix_secs(1_900_000_000),
                clock.now(),
            )
            .await
            .unwrap();
        store.setting_get_or_insert("k", b"v1").await.unwrap();
        let limiter = backend.rate_limiter(Arc::new(clock.clone()));
        let q = Quota::per_day(1);
        assert!(limiter.check("client", &q, 1).await.unwrap().allowed);
        let meter = backend.usage_meter(Arc::new(clock.clone()));
        let batch = UsageBatch {
            idempotency_key: "batch-1".into(),
            increments: vec![UsageIncrement {
                tenant_id: ten.id.clone(),
                agent_id: Some(listed.id.clone()),
                kind: UsageKind::TokenIssued,
                at: clock.now(),
                count: 3,
            }],
        };
        assert!(meter.record(&batch).await.unwrap());
        (store.audit_head(Some(&ten.id)).await.unwrap(), listed_after)
        // Every handle is dropped here: the database closes.
    };

    let backend = SledBackend::open(dir.path()).unwrap();
    let store = backend.store();
    assert_eq!(store.get_tenant(&ten.id).await.unwrap(), ten);
    assert_eq!(store.get_tenant_by_slug(&ten.slug).await.unwrap(), ten);
    assert_eq!(store.get_agent(&listed.id).await.unwrap(), listed_after);
    assert_eq!(store.count_agents(&ten.id).await.unwrap(), 2);
    let page = store
        .list_agents(&ten.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let secrets = store.list_client_secrets(&listed.id).await.unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(
        secrets[0].expires_at,
        Some(Timestamp::from_unix_secs(1_763_800_000))
    );
    assert!(
        store
            .list_client_secrets(&private.id)
            .await
            .unwrap()
            .iter()
            .all(|s| s.revoked_at.is_some())
    );
    // The marketplace index came back: a prefix search finds the agent,
    // by a word of its updated description too.
    for text in ["transl", "receipts", "invoice translator"] {
        let q = MarketplaceQuery {
            text: Some(text.into()),
            publisher: Some(ten.id.clone()),
            ..Default::default()
        };
        let found = store
            .search_marketplace(&q, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(found.items, vec![listed_after.clone()], "search {text:?}");
    }
    // The audit chain verifies up to the head seen before closing.
    let chain = store
        .query_audit(&AuditQuery {
            tenant_id: Some(ten.id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(chain.items.len(), 20);
    verify_chain(&chain.items, head.as_ref()).unwrap();
    assert_eq!(store.audit_head(Some(&ten.id)).await.unwrap(), head);
    let next = store.append_audit(event(&ten.id, 99)).await.unwrap();
    assert_eq!(next.seq, 21);
    assert!(store.has_marker("jti", "abc", clock.now()).await.unwrap());
    assert_eq!(
        store.setting_get_or_insert("k", b"v2").await.unwrap(),
        b"v1"
    );
    let limiter = backend.rate_limiter(Arc::new(clock.clone()));
    assert!(
        !limiter
            .check("client", &Quota::per_day(1), 1)
            .await
            .unwrap()
            .allowed,
        "limiter state survives a clean close"
    );
    let meter = backend.usage_meter(Arc::new(clock.clone()));
    assert_eq!(
        meter
            .get(
                &ten.id,
                UsageKind::TokenIssued,
                &Bucket::month_of(clock.now())
            )
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        meter
            .active_agents(&ten.id, &clock.now().utc_month())
            .await
            .unwrap(),
        1
    );
    let again = UsageBatch {
        idempotency_key: "batch-1".into(),
        increments: vec![],
    };
    assert!(!meter.record(&again).await.unwrap(), "batch keys survive");
}

fn expect_unavailable(path: &std::path::Path, r: sentryagent_core::Result<()>) {
    match r {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected Unavailable for {}, got {other:?}", path.display()),
    }
}

#[tokio::test]
async fn sled_open_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    // A path through a regular file cannot be a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    for path in [file.clone(), file.join("below")] {
        match SledBackend::open(&path) {
            Err(Error::Unavailable { message, source }) => {
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(source.is_some());
            }
            other => panic!("expected Unavailable for {}, got {other:?}", path.display()),
        }
    }
    // A directory holding garbage where sled keeps its files.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("conf"), b"\xff\xfe garbage").unwrap();
    std::fs::write(corrupt.join("db"), vec![0xa5; 4096]).unwrap();
    expect_unavailable(&corrupt, SledBackend::open(&corrupt).map(drop));
    // A real database whose data file was overwritten (sled alone would
    // open it as an empty database) or truncated (sled keeps what precedes
    // the damage): refused, or opened with what is readable; never a panic.
    for (i, damage) in ["garbage", "zeros", "truncate"].into_iter().enumerate() {
        let real = dir.path().join(format!("real{i}"));
        {
            let store = SledBackend::open(&real).unwrap().store();
            for j in 0..50 {
                store
                    .create_tenant(&sample_tenant(&format!("T{j}")))
                    .await
                    .unwrap();
            }
        }
        let db = real.join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        match damage {
            "garbage" => std::fs::write(&db, vec![0x5a; len as usize]).unwrap(),
            "zeros" => std::fs::write(&db, vec![0; len as usize]).unwrap(),
            _ => std::fs::OpenOptions::new()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(len / 3)
                .unwrap(),
        }
        let opened = std::panic::catch_unwind(|| SledBackend::open(&real).map(drop))
            .unwrap_or_else(|_| panic!("opening a {damage} database panicked"));
        if damage == "truncate" {
            if let Err(e) = opened {
                assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
            }
        } else {
            expect_unavailable(&real, opened);
        }
    }
    // An empty path.
    assert!(matches!(SledBackend::open(""), Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn sled_open_twice_shares_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let a = SledBackend::open(dir.path()).unwrap();
    // The same directory by another spelling.
    let b = SledBackend::open(dir.path().join(".")).unwrap();
    assert_eq!(a.path(), b.path());
    let ten = sample_tenant("Shared");
    a.store().create_tenant(&ten).await.unwrap();
    assert_eq!(b.store().get_tenant(&ten.id).await.unwrap(), ten);
}

#[tokio::test]
async fn sled_urls_open_one_database_for_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}", dir.path().display());
    let clock = Arc::new(clock());
    let backends = open(
        &BackendUrls {
            store: url.clone(),
            ..Default::default()
        },
        clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(backends.store.name(), "sled");
    assert_eq!(backends.limiter.name(), "sled");
    assert_eq!(backends.meter.name(), "sled");
    let health = backends.health().await;
    assert!(health.iter().all(|h| h.backend == "sled"
        && h.status == sentryagent_core::HealthStatus::Up
        && h.details.contains_key("size_on_disk_bytes")));
    // Mixed: a memory limiter beside a sled store and meter.
    let mixed = open(
        &BackendUrls {
            store: url.clone(),
            limiter: Some("memory://".into()),
            meter: Some(url),
        },
        clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(mixed.limiter.name(), "memory");
    let ten = sample_tenant("Via URL");
    backends.store.create_tenant(&ten).await.unwrap();
    assert_eq!(mixed.store.get_tenant(&ten.id).await.unwrap(), ten);
    let r = open(
        &BackendUrls {
            store: "sled://".into(),
            ..Default::default()
        },
        clock,
    )
    .await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
}

const WORDS: &[&str] = &[
    "alpha",
    "alps",
    "al",
    "beta",
    "bet",
    "translate",
    "translator",
    "invoice",
    "inv",
    "ocr",
    "Émile",
    "straße",
    "x1",
    "data-pipeline",
];

fn random_text(rng: &mut kit::Rng, max_words: usize) -> String {
    (0..(rng.below((max_words + 1) as u64) as usize))
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Marketplace searches through the inverted index return exactly the
/// agents that `MarketplaceQuery::matches` accepts, in id order, across
/// random creates, updates (renames, state and visibility changes) and
/// paging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_marketplace_index_equals_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledBackend::open(dir.path()).unwrap().store();
    let tenants = [sample_tenant("Pub A"), sample_tenant("Pub B")];
    for t in &tenants {
        store.create_tenant(t).await.unwrap();
    }
    let mut rng = kit::Rng::new(0x5eed_1234_abcd_ef01);
    let states = [
        LifecycleState::Draft,
        LifecycleState::Deployed,
        LifecycleState::Listed,
        LifecycleState::Active,
        LifecycleState::Paused,
    ];
    let mut agents = std::collections::BTreeMap::new();
    for i in 0..60 {
        let tenant = &tenants[rng.below(2) as usize];
        let mut a = sample_agent(&tenant.id, &format!("{} {i}", random_text(&mut rng, 2)));
        a.description = random_text(&mut rng, 4);
        a.capabilities = (0..(rng.below(3) as usize))
            .map(|_| (*rng.pick(WORDS)).to_owned())
            .collect();
        a.tags = (0..(rng.below(2) as usize))
            .map(|_| (*rng.pick(WORDS)).to_owned())
            .collect();
        a.category =
            [None, Some("finance"), Some("language")][rng.below(3) as usize].map(str::to_owned);
        a.state = states[rng.below(states.len() as u64) as usize];
        a.visibility = if rng.below(4) == 0 {
            Visibility::Private
        } else {
            Visibility::Public
        };
        store
            .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
            .await
            .unwrap();
        agents.insert(a.id.clone(), a);
    }
    for _ in 0..80 {
        let ids: Vec<_> = agents.keys().cloned().collect();
        let mut a = agents[&ids[rng.below(ids.len() as u64) as usize]].clone();
        match rng.below(5) {
            0 => a.name = format!("{} {}", random_text(&mut rng, 2), a.id),
            1 => a.description = random_text(&mut rng, 4),
            2 => {
                a.visibility = if a.visibility == Visibility::Public {
                    Visibility::Private
                } else {
                    Visibility::Public
                }
            }
            3 => a.capabilities = vec![(*rng.pick(WORDS)).to_owned()],
            _ => {
                let to = states[rng.below(states.len() as u64) as usize];
                if a.state.can_transition_to(to) {
                    a.state = to;
                }
            }
        }
        let stored = store.update_agent(&a).await.unwrap();
        agents.insert(stored.id.clone(), stored);
    }
    // Queries: random prefixes of the vocabulary (and of nothing), with and
    // without filters.
    for _ in 0..150 {
        let mut words: Vec<String> = (0..(rng.below(3) as usize))
            .map(|_| {
                let w = rng.pick(WORDS).to_uppercase();
                let chars: Vec<char> = w.chars().collect();
                chars[..1 + (rng.below(chars.len() as u64) as usize)]
                    .iter()
                    .collect()
            })
            .collect();
        if rng.below(10) == 0 {
            words.push("zzz".into());
        }
        let text = words.join(" ");
        let q = MarketplaceQuery {
            text: (!text.is_empty()).then_some(text),
            capability: (rng.below(4) == 0).then(|| (*rng.pick(WORDS)).to_owned()),
            tag: (rng.below(6) == 0).then(|| (*rng.pick(WORDS)).to_owned()),
            category: (rng.below(5) == 0).then(|| "language".to_owned()),
            publisher: (rng.below(4) == 0).then(|| tenants[rng.below(2) as usize].id.clone()),
            // Directory filters: a name prefix, a version, an annotation.
            name: (rng.below(4) == 0).then(|| format!("{}*", &rng.pick(WORDS)[..2])),
            version: (rng.below(8) == 0).then(|| "1.0.0".to_owned()),
            annotation: (rng.below(8) == 0).then(|| "sentryagent.state=list*".to_owned()),
            ..Default::default()
        };
        let want: Vec<_> = agents.values().filter(|a| q.matches(a)).cloned().collect();
        let size = 1 + rng.below(7) as usize;
        let mut got = Vec::new();
        let mut req = PageRequest::first(size);
        for _ in 0..100 {
            let p = store.search_marketplace(&q, &req).await.unwrap();
            assert!(p.items.len() <= size);
            got.extend(p.items);
            match p.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, want, "query {q:?}, pages of {size}");
    }
}

/// `cache_mb` in a sled URL reaches sled (the health report shows the
/// cache the database was opened with); bad values and unknown parameters
/// are refused; a second URL naming the open directory with another cache
/// is refused, and one without the parameter shares the database.
#[tokio::test]
async fn sled_cache_mb_url_parameter() {
    use sentryagent_storage::sled::SledOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cached");
    let url = format!("sled://{}?cache_mb=64", path.display());
    let (parsed, options) = SledOptions::from_url(&url).unwrap();
    assert_eq!(parsed, path.display().to_string());
    assert_eq!(options.cache_capacity, Some(64 * 1024 * 1024));
    let (_, default) = SledOptions::from_url("sled://x").unwrap();
    assert_eq!(
        default.effective_cache_capacity(),
        SledOptions::DEFAULT_CACHE_CAPACITY
    );
    for bad in [
        "sled://x?cache_mb=0",
        "sled://x?cache_mb=-1",
        "sled://x?cache_mb=lots",
        "sled://x?cache_mb=2000000",
        "sled://x?cache_mb=1&cache_mb=2",
        "sled://x?cache=64",
    ] {
        let r = SledOptions::from_url(bad);
        assert!(matches!(r, Err(Error::Invalid { .. })), "{bad}: {r:?}");
    }

    let clock: Arc<dyn Clock> = Arc::new(clock());
    let b = open(
        &BackendUrls {
            store: url.clone(),
            limiter: None,
            meter: None,
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let health = b.store.health().await;
    assert_eq!(
        health.details.get("cache_capacity_bytes"),
        Some(&serde_json::json!(64 * 1024 * 1024)),
        "{health:?}"
    );
    let backend = SledBackend::open(&path).unwrap();
    assert_eq!(backend.cache_capacity(), 64 * 1024 * 1024);
    let other = SledBackend::open_with(&path, &SledOptions::default().with_cache_capacity(1 << 20));
    assert!(matches!(other, Err(Error::Invalid { .. })), "{other:?}");
    let r = open(
        &BackendUrls {
            store: "sled://?cache_mb=8".into(),
            limiter: None,
            meter: None,
        },
        clock,
    )
    .await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
}

/// A database written before the marketplace directory index (its trees
/// and version marker absent) gets the index built at open: every query
/// kind finds the agents stored before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_marketplace_index_is_built_for_older_databases() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = seeded(dir.path()).await;
    // Remove the index as an older version would have left the database.
    let raw = open_raw(dir.path());
    for tree in [
        "marketplace_keys",
        "marketplace_key_counts",
        "marketplace_publishers",
    ] {
        assert!(raw.drop_tree(tree).unwrap(), "{tree} existed");
    }
    raw.open_tree("meta")
        .unwrap()
        .remove("marketplace_index")
        .unwrap()
        .expect("the index version was recorded");
    raw.flush().unwrap();
    drop(raw);
    let backend = SledBackend::open(dir.path()).unwrap();
    let store = backend.store();
    conformance::marketplace::finds(&store, &fixture).await;
    let counts = store
        .marketplace_counts(sentryagent_core::marketplace_index::IndexKind::Category)
        .await
        .unwrap();
    assert!(
        counts.contains(&(fixture.unmapped_category(), 1)),
        "{counts:?}"
    );
    // The rebuilt index is kept right by later writes.
    conformance::marketplace::changes(&store, &fixture).await;
}

/// The marketplace fixture of the conformance suite, stored in a new
/// database at `path`, flushed and closed.
async fn seeded(path: &std::path::Path) -> conformance::marketplace::Fixture {
    let backend = SledBackend::open(path).unwrap();
    let fixture = conformance::marketplace::seed(&backend.store()).await;
    backend.flush().await.unwrap();
    fixture
}

/// The database at `path` opened with sled alone (waiting for the store's
/// handle to let go of the directory).
fn open_raw(path: &std::path::Path) -> sled::Db {
    let mut tries = 0;
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => break db,
            Err(e) if tries < 200 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopen raw: {e}"),
        }
    }
}

/// A database whose word and directory-key postings have the first
/// layout (version 1: one key per word or key and agent, `part 0 id`, and
/// an empty value) gets them rewritten in blocks at open: every query kind
/// finds the agents stored before, and later writes keep the index right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_marketplace_postings_of_the_first_layout_are_rewritten_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = seeded(dir.path()).await;
    let raw = open_raw(dir.path());
    let mut entries = 0;
    for name in ["marketplace_terms", "marketplace_keys"] {
        let tree = raw.open_tree(name).unwrap();
        let blocks: Vec<(sled::IVec, sled::IVec)> = tree.iter().map(Result::unwrap).collect();
        assert!(!blocks.is_empty(), "{name} holds postings");
        tree.clear().unwrap();
        for (k, v) in blocks {
            let part = &k[..k.iter().position(|&b| b == 0).unwrap()];
            for id in v.split(|&b| b == 0) {
                let mut old = part.to_vec();
                old.push(0);
                old.extend_from_slice(id);
                tree.insert(old, &[][..]).unwrap();
                entries += 1;
            }
        }
    }
    let meta = raw.open_tree("meta").unwrap();
    meta.insert("marketplace_index", &b"1"[..]).unwrap();
    raw.flush().unwrap();
    drop((meta, raw));
    {
        let backend = SledBackend::open(dir.path()).unwrap();
        let store = backend.store();
        conformance::marketplace::finds(&store, &fixture).await;
        conformance::marketplace::changes(&store, &fixture).await;
        backend.flush().await.unwrap();
    }
    let raw = open_raw(dir.path());
    let mut rewritten = 0;
    for name in ["marketplace_terms", "marketplace_keys"] {
        for item in raw.open_tree(name).unwrap().iter() {
            let (_, v) = item.unwrap();
            assert!(!v.is_empty(), "{name}: every entry is a block of ids");
            rewritten += 1;
        }
    }
    assert!(
        rewritten < entries,
        "blocks ({rewritten}) are fewer than the first layout's entries ({entries})"
    );
}

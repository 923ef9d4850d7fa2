//! Postgres specifics beyond the conformance suite: concurrent migrations,
//! schema isolation, marketplace search equal to the core's rule on awkward
//! words, bad input, health.
#![cfg(feature = "postgres")]

use sentryagent_storage::testing as services;

use sentryagent_core::{AgentStore, Backend, MarkerStore, TenantStore};
use std::collections::BTreeSet;

use sentryagent_core::HealthStatus;
use sentryagent_core::MemoryStore;
use sentryagent_core::PageRequest;
use sentryagent_core::conformance::{sample_agent, sample_secret, sample_tenant};
use sentryagent_core::{Error, LifecycleState, MarketplaceQuery, NewAgentRecord, Tier, Visibility};
use sentryagent_storage::postgres::{PostgresOptions, PostgresStore, SEARCH_SPARSE_CAP};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migrations_run_concurrently_from_two_stores() {
    services::with_schema(
        "postgres_migrations_run_concurrently_from_two_stores",
        |url, schema| async move {
            let options = PostgresOptions::from_url(&url).unwrap();
            // Two (and then two more) nodes open a database whose schema does
            // not exist yet, at the same instant.
            let (a, b, c, d) = tokio::join!(
                PostgresStore::connect(&options),
                PostgresStore::connect(&options),
                PostgresStore::connect(&options),
                PostgresStore::connect(&options),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            c.unwrap();
            d.unwrap();

            let mut conn = sqlx::postgres::PgConnection::connect(&services::postgres_url())
                .await
                .unwrap();
            let applied: Vec<(i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT version, success FROM \"{schema}\"._sentryagent_migrations ORDER BY version"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert_eq!(
                applied,
                vec![
                    (1, true),
                    (2, true),
                    (3, true),
                    (4, true),
                    (5, true),
                    (6, true),
                    (7, true)
                ],
                "each migration applied once"
            );
            conn.close().await.unwrap();

            // Both stores work on the one schema.
            let t = sample_tenant("Shared");
            a.create_tenant(&t).await.unwrap();
            assert_eq!(b.get_tenant(&t.id).await.unwrap(), t);
            // Opening again is a no-op.
            let again = PostgresStore::connect(&options).await.unwrap();
            assert_eq!(again.get_tenant(&t.id).await.unwrap(), t);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schemas_are_isolated() {
    services::with_schema("postgres_schemas_are_isolated", |url, _| async move {
        services::with_schema("postgres_schemas_are_isolated", |other_url, _| async move {
            let a = PostgresStore::connect(&PostgresOptions::from_url(&url).unwrap())
                .await
                .unwrap();
            let b = PostgresStore::connect(&PostgresOptions::from_url(&other_url).unwrap())
                .await
                .unwrap();
            let t = sample_tenant("Only In A");
            a.create_tenant(&t).await.unwrap();
            assert!(matches!(
                b.get_tenant(&t.id).await,
                Err(Error::NotFound { .. })
            ));
            b.create_tenant(&t).await.unwrap();
        })
        .await;
    })
    .await;
}

fn names(page: &[sentryagent_core::Agent]) -> BTreeSet<String> {
    page.iter().map(|a| a.name.clone()).collect()
}

/// Text searches page the same whatever path they take: rare words (by the
/// statistics) read from the text index and paged by id, common words by
/// the id index walked, and a word the statistics still count as rare but
/// now on more agents than `SEARCH_SPARSE_CAP` (walked first, then, once
/// the matches after the cursor are fewer than the cap, read from the text
/// index): every page and cursor equal the in-memory store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_marketplace_text_search_pages_across_the_sparse_cap() {
    services::with_schema(
        "postgres_marketplace_text_search_pages_across_the_sparse_cap",
        |url, schema| async move {
            let pg = PostgresStore::connect(&PostgresOptions::from_url(&url).unwrap())
                .await
                .unwrap();
            let mem = MemoryStore::new();
            let mut t = sample_tenant("Paging");
            t.tier = Tier::Enterprise;
            pg.create_tenant(&t).await.unwrap();
            mem.create_tenant(&t).await.unwrap();
            let agents = |from: usize,
                          count: usize,
                          word: &dyn Fn(usize) -> String|
             -> Vec<NewAgentRecord> {
                (from..from + count)
                    .map(|i| {
                        let mut a = sample_agent(&t.id, &format!("Agent {i}"));
                        a.description = word(i);
                        a.capabilities = if i % 50 == 3 {
                            vec!["cap-few".into()]
                        } else {
                            vec!["cap-many".into()]
                        };
                        a.visibility = if i % 97 == 5 {
                            Visibility::Private
                        } else {
                            Visibility::Public
                        };
                        a.state = LifecycleState::Listed;
                        let s = sample_secret(&a.id, 1);
                        NewAgentRecord::new(a, Some(s))
                    })
                    .collect()
            };
            // `common` on nine agents in ten (more than half the cap: a
            // common word), `rare` on one in a hundred.
            let first = agents(0, 2_600, &|i| {
                let word = if i % 10 == 9 { "other" } else { "common" };
                let extra = if i % 100 == 7 { " rare" } else { "" };
                format!("{word} words{extra}")
            });
            pg.create_agents(&first).await.unwrap();
            mem.create_agents(&first).await.unwrap();
            let mut conn = sqlx::postgres::PgConnection::connect(&services::postgres_url())
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE \"{schema}\".agents")))
                .execute(&mut conn)
                .await
                .unwrap();
            let q = |text: &str, capability: Option<&str>| MarketplaceQuery {
                text: Some(text.to_owned()),
                capability: capability.map(str::to_owned),
                ..Default::default()
            };
            let pages = |query: MarketplaceQuery, size: usize, least: usize| {
                let (pg, mem) = (&pg, &mem);
                async move {
                    let mut cursor = None;
                    let mut seen = 0;
                    let mut n = 0;
                    loop {
                        let page = PageRequest {
                            cursor: cursor.clone(),
                            limit: Some(size),
                        };
                        let want = mem.search_marketplace(&query, &page).await.unwrap();
                        let got = pg.search_marketplace(&query, &page).await.unwrap();
                        let ids = |p: &sentryagent_core::Page<sentryagent_core::Agent>| {
                            p.items.iter().map(|a| a.id.clone()).collect::<Vec<_>>()
                        };
                        assert_eq!(ids(&got), ids(&want), "{query:?} page {n}");
                        assert_eq!(got.next_cursor, want.next_cursor, "{query:?} page {n}");
                        assert!(got.items.len() <= size);
                        seen += got.items.len();
                        n += 1;
                        match got.next_cursor {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                    // Private agents (one in 97) are left out.
                    assert!(seen >= least, "{query:?}: {seen}");
                    assert_eq!(least == 0, seen == 0, "{query:?}: {seen}");
                }
            };
            pages(q("common", None), 500, 2_250).await;
            pages(q("comm", None), 97, 2_250).await;
            pages(q("words", Some("cap-many")), 450, 2_450).await;
            pages(q("words", Some("cap-few")), 10, 45).await;
            pages(q("rare", None), 4, 22).await;
            pages(q("common rare", None), 3, 22).await;
            pages(q("rare", Some("cap-few")), 3, 0).await;
            pages(q("nothing", None), 10, 0).await;
            // More agents with `rare` than the cap, written after the
            // statistics: still taken for rare, too many to read from the
            // text index at first.
            let second = agents(2_600, SEARCH_SPARSE_CAP + 100, &|_| "rare words".to_owned());
            pg.create_agents(&second).await.unwrap();
            mem.create_agents(&second).await.unwrap();
            pages(q("rare", None), 500, SEARCH_SPARSE_CAP).await;
            pages(q("rar", None), 333, SEARCH_SPARSE_CAP).await;
            pages(q("rare common", None), 7, 22).await;
            conn.close().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_marketplace_search_equals_the_core_rule() {
    services::with_schema(
        "postgres_marketplace_search_equals_the_core_rule",
        |url, _| async move {
            let pg = PostgresStore::connect(&PostgresOptions::from_url(&url).unwrap())
                .await
                .unwrap();
            let mem = MemoryStore::new();
            let t = sample_tenant("Words");
            pg.create_tenant(&t).await.unwrap();
            mem.create_tenant(&t).await.unwrap();
            let long = format!("x{}", "é".repeat(1500)); // 3001 bytes: longer than a lexeme
            let texts = [
                ("Dotted", "talks to api.example.com and foo.bar"),
                ("Hyphen", "an e-mail sender, state-of-the-art"),
                ("Unicode", "ÜBER Straße 東京 naïve café"),
                ("Numbers", "version v2 of 3.14 and 42"),
                ("Snake", "snake_case and CamelCase words"),
                ("Long", long.as_str()),
                ("Quotes", "it's a 'quoted' & !negated | piped:* thing"),
            ];
            for (name, desc) in texts {
                let mut a = sample_agent(&t.id, name);
                a.description = desc.to_owned();
                a.capabilities = vec![format!("cap-{}", name.to_lowercase())];
                a.tags = vec!["shared-tag".into(), format!("t_{name}")];
                a.visibility = Visibility::Public;
                a.state = LifecycleState::Listed;
                let s = sample_secret(&a.id, 1);
                pg.create_agent(&a, Some(&s), None).await.unwrap();
                mem.create_agent(&a, Some(&s), None).await.unwrap();
            }
            let queries = [
                "api",
                "example",
                "com",
                "foo bar",
                "e",
                "mail",
                "e-mail",
                "state art",
                "über",
                "strasse",
                "straße",
                "東",
                "東京",
                "naive",
                "naïve",
                "café",
                "v",
                "v2",
                "3",
                "14",
                "42",
                "snake",
                "case",
                "camel",
                "camelcase",
                "x",
                &long[..201],
                long.as_str(),
                &format!("{long}é"),
                "it",
                "s",
                "quoted",
                "negated piped",
                "thing",
                "'",
                "&",
                "!",
                ":*",
                "cap",
                "tag",
                "t",
                "shared",
                "zzz",
                "",
                "words unicode",
                "dotted talks",
                "DOTTED",
            ];
            for text in queries {
                let q = MarketplaceQuery {
                    text: Some(text.to_owned()),
                    tag: Some("shared-tag".into()),
                    ..Default::default()
                };
                let want = mem
                    .search_marketplace(&q, &PageRequest::first(100))
                    .await
                    .unwrap();
                let got = pg
                    .search_marketplace(&q, &PageRequest::first(100))
                    .await
                    .unwrap();
                assert_eq!(
                    names(&got.items),
                    names(&want.items),
                    "query {:?}",
                    text.chars().take(40).collect::<String>()
                );
            }
            // Filters by capability, category and publisher.
            let q = MarketplaceQuery {
                capability: Some("cap-hyphen".into()),
                publisher: Some(t.id.clone()),
                ..Default::default()
            };
            let got = pg
                .search_marketplace(&q, &PageRequest::first(10))
                .await
                .unwrap();
            assert_eq!(names(&got.items), BTreeSet::from(["Hyphen".to_owned()]));
            let q = MarketplaceQuery {
                category: Some("none-such".into()),
                ..Default::default()
            };
            assert!(
                pg.search_marketplace(&q, &PageRequest::first(10))
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_input_is_invalid() {
    services::with_schema("postgres_bad_input_is_invalid", |url, _| async move {
        let pg = PostgresStore::connect(&PostgresOptions::from_url(&url).unwrap())
            .await
            .unwrap();
        let t = sample_tenant("Bad Input");
        pg.create_tenant(&t).await.unwrap();

        let mut nul_name = sample_agent(&t.id, "nul\0name");
        nul_name.description = "fine".into();
        let r = pg
            .create_agent(&nul_name, Some(&sample_secret(&nul_name.id, 1)), None)
            .await;
        assert!(
            matches!(r, Err(Error::Invalid { .. })),
            "NUL in a name: {r:?}"
        );

        let mut nul_claim = sample_agent(&t.id, "claims");
        nul_claim
            .custom_claims
            .insert("x".into(), serde_json::json!("a\u{0}b"));
        let r = pg
            .create_agent(&nul_claim, Some(&sample_secret(&nul_claim.id, 1)), None)
            .await;
        assert!(
            matches!(r, Err(Error::Invalid { .. })),
            "NUL in a claim: {r:?}"
        );
        assert!(matches!(
            pg.get_agent(&nul_claim.id).await,
            Err(Error::NotFound { .. })
        ));

        let mut huge = t.clone();
        huge.revision = u64::MAX;
        assert!(matches!(
            pg.update_tenant(&huge).await,
            Err(Error::Invalid { .. })
        ));

        let mut slug = pg.get_tenant(&t.id).await.unwrap();
        slug.slug = "another-slug".into();
        assert!(matches!(
            pg.update_tenant(&slug).await,
            Err(Error::Invalid { field: "slug", .. })
        ));

        let other = sample_tenant("Other");
        pg.create_tenant(&other).await.unwrap();
        let a = sample_agent(&t.id, "mover");
        pg.create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
            .await
            .unwrap();
        let mut moved = a.clone();
        moved.tenant_id = other.id.clone();
        let r = pg.update_agent(&moved).await;
        assert!(
            matches!(
                r,
                Err(Error::Invalid {
                    field: "tenant_id",
                    ..
                })
            ),
            "{r:?}"
        );

        let marker = pg.put_marker("ns\0", "k", t.created_at, t.created_at).await;
        assert!(matches!(marker, Err(Error::Invalid { .. })), "{marker:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_health_reports_the_pool() {
    services::with_schema(
        "postgres_health_reports_the_pool",
        |url, schema| async move {
            let options = PostgresOptions::from_url(&format!("{url}&max_connections=3")).unwrap();
            let pg = PostgresStore::connect(&options).await.unwrap();
            let h = pg.health().await;
            assert_eq!(h.status, HealthStatus::Up, "{h:?}");
            assert!(h.latency_us.is_some());
            assert_eq!(h.details["pool_max"], 3);
            assert_eq!(h.details["schema"], schema.as_str());
            for k in [
                "pool_size",
                "pool_idle",
                "pool_in_use",
                "operations_in_flight",
                "operations_waiting",
            ] {
                assert!(h.details.contains_key(k), "{k} in {h:?}");
            }
            pg.close().await;
            let h = pg.health().await;
            assert_eq!(h.status, HealthStatus::Down, "a closed pool is down: {h:?}");
            assert!(matches!(
                pg.get_tenant(&sample_tenant("x").id).await,
                Err(Error::Unavailable { .. })
            ));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_usage_batch_keys_can_be_purged() {
    use sentryagent_core::{Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter};
    services::with_schema(
        "postgres_usage_batch_keys_can_be_purged",
        |url, _| async move {
            let store = PostgresStore::connect(&PostgresOptions::from_url(&url).unwrap())
                .await
                .unwrap();
            let meter = store.usage_meter();
            let t = sample_tenant("Purge");
            let batch = UsageBatch {
                idempotency_key: "k1".into(),
                increments: vec![UsageIncrement {
                    tenant_id: t.id.clone(),
                    agent_id: None,
                    kind: UsageKind::ApiCall,
                    at: t.created_at,
                    count: 2,
                }],
            };
            assert!(meter.record(&batch).await.unwrap());
            assert!(!meter.record(&batch).await.unwrap());
            assert_eq!(
                meter
                    .purge_batch_keys(std::time::Duration::from_secs(3600))
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                meter
                    .purge_batch_keys(std::time::Duration::ZERO)
                    .await
                    .unwrap(),
                1
            );
            // A batch delivered again after its key was purged counts again.
            assert!(meter.record(&batch).await.unwrap());
            let day = Bucket::day_of(t.created_at);
            assert_eq!(meter.get(&t.id, UsageKind::ApiCall, &day).await.unwrap(), 4);
            // Counts over what a bigint holds are refused, and nothing changes.
            let huge = UsageBatch {
                idempotency_key: "k2".into(),
                increments: vec![UsageIncrement {
                    count: u64::MAX,
                    ..batch.increments[0].clone()
                }],
            };
            assert!(matches!(
                meter.record(&huge).await,
                Err(Error::Invalid { .. })
            ));
            assert_eq!(meter.get(&t.id, UsageKind::ApiCall, &day).await.unwrap(), 4);
            assert_eq!(meter.health().await.status, HealthStatus::Up);
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_unreachable_server_is_unavailable() {
    let options =
        PostgresOptions::from_url("postgres://postgres@127.0.0.1:1/test?acquire_timeout=2s")
            .unwrap();
    let r = PostgresStore::connect(&options).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
}

/// Agents and tenants written before the directory migration (their
/// `market_keys` NULL) are back-filled when a store connects: every query
/// kind finds them, and later writes keep the index right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_marketplace_keys_are_backfilled() {
    services::with_schema(
        "postgres_marketplace_keys_are_backfilled",
        |url, schema| async move {
            let options = PostgresOptions::from_url(&url).unwrap();
            let store = PostgresStore::connect(&options).await.unwrap();
            let fixture = sentryagent_core::conformance::marketplace::seed(&store).await;
            store.close().await;
            let mut conn = sqlx::postgres::PgConnection::connect(&services::postgres_url())
                .await
                .unwrap();
            for table in ["agents", "tenants"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE \"{schema}\".{table} SET market_keys = NULL"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            let (left,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{schema}\".agent_market_keys"
            )))
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(left, 0, "the trigger empties the key table with the keys");
            conn.close().await.unwrap();
            let store = PostgresStore::connect(&options).await.unwrap();
            sentryagent_core::conformance::marketplace::finds(&store, &fixture).await;
            sentryagent_core::conformance::marketplace::changes(&store, &fixture).await;
            store.close().await;
        },
    )
    .await;
}

/// The per-key counts of the directory (`market_key_counts`, migration
/// 0007; categories, capabilities, skill names) equal a count of the key
/// rows after concurrent registrations,
/// category changes, pauses and retirements on shared keys (count rows
/// several transactions lock at once) and a bulk batch; the answers of
/// `marketplace_counts` are those counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_market_key_counts_follow_concurrent_writes() {
    services::with_schema(
        "postgres_market_key_counts_follow_concurrent_writes",
        |url, schema| async move {
            let options = PostgresOptions::from_url(&url).unwrap();
            let store = std::sync::Arc::new(PostgresStore::connect(&options).await.unwrap());
            let mut ten = sample_tenant("Key Counts");
            ten.tier = Tier::Enterprise;
            store.create_tenant(&ten).await.unwrap();
            let tenant_id = ten.id.clone();
            let listed = move |name: String, i: usize| {
                let mut a = sample_agent(&tenant_id, &name);
                a.visibility = Visibility::Public;
                a.state = LifecycleState::Listed;
                a.category = Some(["finance", "legal", "media"][i % 3].into());
                a.capabilities = vec![
                    ["pdf.extract", "web.search"][i % 2].into(),
                    ["mail.send", "db.query", "code.run"][i % 3].into(),
                ];
                a
            };
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    let listed = listed.clone();
                    tokio::spawn(async move {
                        for i in 0..12 {
                            let a = listed(format!("task {t} agent {i}"), t + i);
                            store.create_agent(&a, None, None).await.unwrap();
                            let mut a = store.get_agent(&a.id).await.unwrap();
                            match i % 4 {
                                0 => a.category = Some(["legal", "media", "finance"][t % 3].into()),
                                1 => a.state = LifecycleState::Paused,
                                2 => a.state = LifecycleState::Retired,
                                _ => a.capabilities.reverse(),
                            }
                            store.update_agent(&a).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let batch: Vec<NewAgentRecord> = (0..40)
                .map(|i| NewAgentRecord::new(listed(format!("bulk {i}"), i), None))
                .collect();
            store.create_agents(&batch).await.unwrap();

            let mut conn = sqlx::postgres::PgConnection::connect(&services::postgres_url())
                .await
                .unwrap();
            let kept: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT key, sum(n)::bigint FROM \"{schema}\".market_key_counts \
                 GROUP BY key HAVING sum(n) <> 0 ORDER BY key"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let counted: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT key, count(*) FROM \"{schema}\".agent_market_keys \
                 WHERE \"{schema}\".market_key_counted(key) GROUP BY key ORDER BY key"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
            let kept_map: std::collections::BTreeMap<_, _> = kept.iter().cloned().collect();
            let counted_map: std::collections::BTreeMap<_, _> = counted.iter().cloned().collect();
            let differ: Vec<_> = kept_map
                .keys()
                .chain(counted_map.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| kept_map.get(*k) != counted_map.get(*k))
                .map(|k| (k, kept_map.get(k), counted_map.get(k)))
                .collect();
            assert!(
                differ.is_empty(),
                "kept counts that differ from the counted rows (key, kept, counted): {differ:?}"
            );
            let finance = kept
                .iter()
                .find(|(k, _)| k == "category:finance")
                .map(|(_, n)| *n);
            assert!(finance.is_some_and(|n| n > 0), "{kept:?}");
            let categories = store
                .marketplace_counts(sentryagent_core::marketplace_index::IndexKind::Category)
                .await
                .unwrap();
            // A kind not counted in the table is grouped from the key rows.
            let versions = store
                .marketplace_counts(sentryagent_core::marketplace_index::IndexKind::Version)
                .await
                .unwrap();
            assert!(
                versions.iter().map(|(_, n)| *n).sum::<u64>() > 0,
                "{versions:?}"
            );
            assert_eq!(
                categories.iter().map(|(_, n)| *n).sum::<u64>(),
                kept.iter()
                    .filter(|(k, _)| k.starts_with("category:"))
                    .map(|(_, n)| u64::try_from(*n).unwrap())
                    .sum::<u64>()
            );
            store.close().await;
        },
    )
    .await;
}

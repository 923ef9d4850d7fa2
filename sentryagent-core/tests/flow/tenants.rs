//! Tenants and their reach: tenant keys, the bootstrap key, the audit trail
//! and its tail, analytics, the marketplace and publishers.

use super::*;

#[tokio::test]
async fn tenant_keys_reach_only_their_tenant() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let t1 = tenant(&idp, Tier::Pro).await;
    let t2 = tenant(&idp, Tier::Pro).await;
    let a2 = agent(&idp, &t2, "theirs").await;
    let (_, secret) = idp
        .create_admin_key(&sys, Some(&t1.id), "ci", Some(vec![AdminScope::Admin]))
        .await
        .unwrap();
    let key = idp
        .authenticate_admin(&secret, &Default::default())
        .await
        .unwrap();
    let caller = Caller::from_key(&key, Default::default());
    assert!(matches!(
        idp.get_agent(&caller, &a2.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.list_agents(&caller, &t2.id, &Default::default()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.rotate_client_secret(&caller, &a2.agent.id, None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.usage_summary(&caller, &t2.id).await,
        Err(Error::NotFound { .. })
    ));
    let r = idp
        .register_agent(
            &caller,
            &t2.id,
            NewAgent {
                name: "x".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })));
    let r = idp
        .create_tenant(
            &caller,
            NewTenant {
                name: "x".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })));
    // Its own tenant works.
    idp.register_agent(
        &caller,
        &t1.id,
        NewAgent {
            name: "mine".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // A read-only key cannot write.
    let (_, ro) = idp
        .create_admin_key(&sys, Some(&t1.id), "ro", Some(vec![AdminScope::AgentsRead]))
        .await
        .unwrap();
    let ro = Caller::from_key(
        &idp.authenticate_admin(&ro, &Default::default())
            .await
            .unwrap(),
        Default::default(),
    );
    assert!(
        idp.list_agents(&ro, &t1.id, &Default::default())
            .await
            .is_ok()
    );
    let r = idp
        .register_agent(
            &ro,
            &t1.id,
            NewAgent {
                name: "nope".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })));

    // Admin key failures are one error.
    for bad in [
        "",
        "sa_ak_",
        &secret[..secret.len() - 1],
        "sa_ak_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        assert!(
            matches!(
                idp.authenticate_admin(bad, &Default::default()).await,
                Err(Error::Unauthenticated)
            ),
            "{bad}"
        );
    }
    idp.revoke_admin_key(&caller, Some(&t1.id), &key.id)
        .await
        .unwrap();
    assert!(matches!(
        idp.authenticate_admin(&secret, &Default::default()).await,
        Err(Error::Unauthenticated)
    ));
}

#[tokio::test]
async fn bootstrap_operator_key_is_idempotent() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let boot = "sa_ak_bootstrapbootstrapbootstrapbootstrap12";
    let k1 = idp.ensure_operator_key(boot).await.unwrap();
    let k2 = idp.ensure_operator_key(boot).await.unwrap();
    assert_eq!(k1.id, k2.id);
    let key = idp
        .authenticate_admin(boot, &Default::default())
        .await
        .unwrap();
    assert!(key.is_operator());
    assert!(matches!(
        idp.ensure_operator_key("short").await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn the_audit_trail_records_changes_and_verifies() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let mut tail = idp.subscribe_audit();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    idp.rotate_client_secret(&sys, &a.agent.id, None)
        .await
        .unwrap();
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    let page = idp
        .query_audit(
            &sys,
            &AuditQuery {
                tenant_id: Some(t.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<_> = page.items.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "agent.registered",
            "credential.rotated",
            "agent.state_changed"
        ]
    );
    let head = idp.verify_audit(&sys, Some(&t.id)).await.unwrap().unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(tail.recv().await.unwrap().event.action, "tenant.created");
    assert_eq!(tail.recv().await.unwrap().event.action, "agent.registered");
    let dump = serde_json::to_string(&page.items).unwrap();
    assert!(
        !dump.contains(a.client_secret.as_deref().unwrap())
            && !dump.contains(&a.private_jwk.as_ref().unwrap().d)
    );
}

#[tokio::test]
async fn analytics_series_cover_days_hours_and_agents() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "a").await;
    let b = agent(&idp, &t, "b").await;
    for _ in 0..3 {
        issue(&idp, &secret_request(&a, None)).await.unwrap();
    }
    c.advance(Duration::from_secs(86_400));
    issue(&idp, &secret_request(&b, None)).await.unwrap();
    idp.flush_usage().await.unwrap();
    let daily = idp.daily_token_issuances(&sys, &t.id, 30).await.unwrap();
    assert_eq!(daily.len(), 30);
    assert_eq!(daily[29].count, 1);
    assert_eq!(daily[28].count, 3);
    assert_eq!(daily.iter().map(|d| d.count).sum::<u64>(), 4);
    let heat = idp.activity_heatmap(&sys, &t.id).await.unwrap();
    // 2025-11-21 04:40 UTC is a Friday (4), the next day a Saturday (5).
    assert_eq!(heat[4][4], 3);
    assert_eq!(heat[5][4], 1);
    let table = idp.agent_usage_table(&sys, &t.id, None).await.unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(
        (table[0].agent_id.clone(), table[0].token_issuances),
        (a.agent.id.clone(), 3)
    );
    assert_eq!(table[0].name.as_deref(), Some("a"));
}

#[tokio::test]
async fn marketplace_and_did_documents_show_only_public_listed_agents() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "public-bot").await;
    let hidden = agent(&idp, &t, "hidden-bot").await;
    idp.update_agent(
        &sys,
        &a.agent.id,
        sentryagent_core::AgentPatch {
            visibility: Some(sentryagent_core::Visibility::Public),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let found = idp
        .search_marketplace(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let (agent, publisher) = idp.marketplace_agent(&a.agent.id).await.unwrap();
    assert_eq!(agent.id, a.agent.id);
    assert_eq!(publisher.id, t.id);
    assert!(matches!(
        idp.marketplace_agent(&hidden.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    let doc = idp.did_document(None, &a.agent.id).await.unwrap();
    assert_eq!(doc.id, a.agent.did);
    assert!(matches!(
        idp.did_document(None, &hidden.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(idp.did_document(Some(&sys), &hidden.agent.id).await.is_ok());
}

#[tokio::test]
async fn audit_tail_shows_a_tenant_key_only_its_own_events() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let a = tenant(&idp, Tier::Free).await;
    let b = tenant(&idp, Tier::Free).await;
    let (key, _) = idp
        .create_admin_key(
            &Caller::system(),
            Some(&a.id),
            "k",
            Some(vec![AdminScope::Admin]),
        )
        .await
        .unwrap();
    let caller = Caller::from_key(&key, Default::default());
    assert!(matches!(
        idp.audit_tail(&caller, Some(&b.id)),
        Err(Error::NotFound { .. })
    ));
    let mut tail = idp.audit_tail(&caller, None).unwrap();
    let mut all = idp.audit_tail(&Caller::system(), None).unwrap();
    agent(&idp, &b, "other").await;
    agent(&idp, &a, "mine").await;
    let seen = tail.next().await.unwrap().unwrap();
    assert_eq!(seen.event.tenant_id.as_ref(), Some(&a.id));
    assert_eq!(seen.event.action, "agent.registered");
    let first = all.next().await.unwrap().unwrap();
    assert_eq!(first.event.tenant_id.as_ref(), Some(&b.id));
}

#[tokio::test]
async fn publishers_are_found_by_slug_unless_suspended() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Free).await;
    assert_eq!(idp.publisher(&t.slug).await.unwrap().id, t.id);
    assert!(matches!(
        idp.publisher("no-such-publisher").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.publisher("Not A Slug!").await,
        Err(Error::NotFound { .. })
    ));
    idp.set_tenant_status(&Caller::system(), &t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    assert!(matches!(
        idp.publisher(&t.slug).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_suspended_publishers_agents_leave_the_marketplace_until_reactivation() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let kept = tenant(&idp, Tier::Pro).await;
    let gone = tenant(&idp, Tier::Pro).await;
    let mut ids = std::collections::BTreeMap::new();
    for (t, names) in [(&kept, ["k1", "k2"]), (&gone, ["g1", "g2"])] {
        for name in names {
            let new = NewAgent {
                name: name.into(),
                visibility: Some(sentryagent_core::Visibility::Public),
                ..Default::default()
            };
            let a = register(&idp, t, new).await;
            ids.insert(a.agent.id.clone(), t.id.clone());
        }
    }
    // Every page of one agent, following the cursor.
    let listed = |idp: Idp| async move {
        let mut seen = Vec::new();
        let mut page = sentryagent_core::PageRequest::first(1);
        for _ in 0..10 {
            let p = idp
                .search_marketplace(&Default::default(), &page)
                .await
                .unwrap();
            seen.extend(p.items.into_iter().map(|a| a.tenant_id));
            match p.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return seen,
            }
        }
        panic!("more pages than agents");
    };
    assert_eq!(listed(idp.clone()).await.len(), 4);
    idp.set_tenant_status(&sys, &gone.id, TenantStatus::Suspended)
        .await
        .unwrap();
    let during = listed(idp.clone()).await;
    assert_eq!(during, vec![kept.id.clone(), kept.id.clone()]);
    let by_publisher = idp
        .search_marketplace(
            &sentryagent_core::MarketplaceQuery {
                publisher: Some(gone.id.clone()),
                ..Default::default()
            },
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(by_publisher.items.is_empty(), "{:?}", by_publisher.items);
    for (id, t) in &ids {
        let r = idp.marketplace_agent(id).await;
        assert_eq!(r.is_ok(), t == &kept.id, "{id}: {r:?}");
    }
    idp.set_tenant_status(&sys, &gone.id, TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(listed(idp.clone()).await.len(), 4);
}

#[tokio::test]
async fn agents_record_when_their_state_last_changed() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "mover").await.agent;
    assert_eq!(a.state_changed_at, Some(a.created_at));
    c.advance(Duration::from_secs(60));
    let sys = Caller::system();
    let paused = idp
        .transition_agent(&sys, &a.id, LifecycleState::Paused)
        .await
        .unwrap();
    assert_eq!(paused.state_changed_at, Some(c.now()));
    // A change that is not a transition keeps it.
    c.advance(Duration::from_secs(60));
    let renamed = idp
        .update_agent(
            &sys,
            &a.id,
            sentryagent_core::AgentPatch {
                description: Some("moves things".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.state_changed_at, paused.state_changed_at);
    assert!(renamed.updated_at > paused.updated_at);
}

#[tokio::test]
async fn admin_keys_expire_count_their_requests_and_keep_a_revocation_reason() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let t = tenant(&idp, Tier::Pro).await;
    let r = idp
        .create_expiring_admin_key(&sys, Some(&t.id), "past", None, Some(c.now()))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Invalid {
                field: "expires_at",
                ..
            })
        ),
        "{r:?}"
    );
    let until = c.now().plus(Duration::from_secs(3600));
    let (key, secret) = idp
        .create_expiring_admin_key(&sys, Some(&t.id), "ci", None, Some(until))
        .await
        .unwrap();
    assert_eq!(key.expires_at, Some(until));
    // Every use counts: the first is written at once, the others with the
    // next touch or the maintenance run.
    for _ in 0..5 {
        idp.authenticate_admin(&secret, &Default::default())
            .await
            .unwrap();
    }
    assert_eq!(listed(&idp, &t, &key.id).await.request_count, 1);
    idp.maintenance().await.unwrap();
    let k = listed(&idp, &t, &key.id).await;
    assert_eq!((k.request_count, k.last_used_at), (5, Some(c.now())));
    c.advance(Duration::from_secs(61));
    idp.authenticate_admin(&secret, &Default::default())
        .await
        .unwrap();
    assert_eq!(listed(&idp, &t, &key.id).await.request_count, 6);
    // Expired: the same refusal as any bad key.
    c.advance(Duration::from_secs(3600));
    assert!(matches!(
        idp.authenticate_admin(&secret, &Default::default()).await,
        Err(Error::Unauthenticated)
    ));
    // A revocation keeps its reason, and the audit trail says it.
    let (other, _) = idp
        .create_admin_key(&sys, Some(&t.id), "leaky", None)
        .await
        .unwrap();
    let r = idp
        .revoke_admin_key_because(&sys, Some(&t.id), &other.id, Some(" "))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Invalid {
                field: "reason",
                ..
            })
        ),
        "{r:?}"
    );
    idp.revoke_admin_key_because(&sys, Some(&t.id), &other.id, Some("leaked in a CI log"))
        .await
        .unwrap();
    let keys = idp.list_admin_keys(&sys, Some(&t.id)).await.unwrap();
    let revoked = keys.iter().find(|k| k.id == other.id).unwrap();
    assert_eq!(
        revoked.revocation_reason.as_deref(),
        Some("leaked in a CI log")
    );
    let page = idp
        .query_audit(
            &sys,
            &AuditQuery {
                tenant_id: Some(t.id.clone()),
                action: Some("api_key.revoked".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.items[0]
            .event
            .details
            .get("reason")
            .map(String::as_str),
        Some("leaked in a CI log")
    );
}

async fn listed(
    idp: &Idp,
    t: &Tenant,
    id: &sentryagent_core::AdminKeyId,
) -> sentryagent_core::AdminKey {
    idp.list_admin_keys(&Caller::system(), Some(&t.id))
        .await
        .unwrap()
        .into_iter()
        .find(|k| &k.id == id)
        .unwrap()
}

#[tokio::test]
async fn validation_errors_name_the_rule_that_was_broken() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let try_register = |name: &str, description: &str| {
        let idp = idp.clone();
        let t = t.id.clone();
        let new = NewAgent {
            name: name.into(),
            description: description.into(),
            ..Default::default()
        };
        async move {
            idp.register_agent(&Caller::system(), &t, new)
                .await
                .expect_err("refused")
                .to_string()
        }
    };
    let e = try_register("bot", "rings a \u{7} bell").await;
    assert!(e.contains("description"), "{e}");
    assert!(
        e.contains(
            "control characters are not allowed (line breaks are fine): U+0007 at character 9"
        ),
        "{e}"
    );
    let e = try_register("bot", &"x".repeat(2001)).await;
    assert!(
        e.contains("at most 2000 characters (this one has 2001)"),
        "{e}"
    );
    let e = try_register("  ", "").await;
    assert!(e.contains("name") && e.contains("must not be empty"), "{e}");
    let e = try_register("tab\there", "").await;
    assert!(e.contains("U+0009 at character 4"), "{e}");
    // A line break is fine in a description.
    idp.register_agent(
        &Caller::system(),
        &t.id,
        NewAgent {
            name: "multi-line".into(),
            description: "first line\nsecond line".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

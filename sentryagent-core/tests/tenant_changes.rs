//! Tenant changes decided in the core: tier and status in one step, the
//! publisher's verified flag never undone by a stale read, default admin-key
//! scopes, the subscription view and the tier an admitted call carries.

use sentryagent_core::{
    AdminScope, AuditQuery, Caller, Error, Idp, NewTenant, PublisherUpdate, Tenant, TenantStatus,
    TenantUpdate, Tier,
};

async fn idp() -> Idp {
    Idp::builder("https://idp.example").build().await.unwrap()
}

async fn tenant(idp: &Idp) -> Tenant {
    idp.create_tenant(
        &Caller::system(),
        NewTenant {
            name: "Acme".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn actions(idp: &Idp, t: &Tenant) -> Vec<String> {
    let q = AuditQuery {
        tenant_id: Some(t.id.clone()),
        ..Default::default()
    };
    let page = idp.query_audit(&Caller::system(), &q).await.unwrap();
    page.items.into_iter().map(|e| e.event.action).collect()
}

fn tenant_caller(idp_key: &sentryagent_core::AdminKey) -> Caller {
    Caller::from_key(idp_key, Default::default())
}

#[tokio::test]
async fn tier_and_status_change_in_one_step_with_one_audit_event() {
    let idp = idp().await;
    let t = tenant(&idp).await;
    let both = TenantUpdate {
        tier: Some(Tier::Pro),
        status: Some(TenantStatus::Suspended),
        reason: None,
    };
    let changed = idp
        .update_tenant(&Caller::system(), &t.id, both.clone())
        .await
        .unwrap();
    assert_eq!(
        (changed.tier, changed.status),
        (Tier::Pro, TenantStatus::Suspended)
    );
    assert_eq!(changed.revision, t.revision + 1, "one stored change");
    assert_eq!(
        actions(&idp, &t).await,
        ["tenant.created", "tenant.updated"]
    );

    // Nothing to change: no write, no event.
    let same = idp
        .update_tenant(&Caller::system(), &t.id, TenantUpdate::default())
        .await
        .unwrap();
    assert_eq!(same, changed);
    let tier_only = TenantUpdate {
        tier: Some(Tier::Enterprise),
        ..Default::default()
    };
    idp.update_tenant(&Caller::system(), &t.id, tier_only)
        .await
        .unwrap();
    assert_eq!(
        actions(&idp, &t).await,
        ["tenant.created", "tenant.updated", "tenant.tier_changed"]
    );

    // Only an operator changes either.
    let (key, _) = idp
        .create_admin_key(&Caller::system(), Some(&t.id), "k", None)
        .await
        .unwrap();
    let r = idp.update_tenant(&tenant_caller(&key), &t.id, both).await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

#[tokio::test]
async fn a_publisher_update_never_undoes_a_concurrent_verification() {
    let idp = idp().await;
    let t = tenant(&idp).await;
    let (key, _) = idp
        .create_admin_key(&Caller::system(), Some(&t.id), "k", None)
        .await
        .unwrap();
    let member = tenant_caller(&key);
    let verify = PublisherUpdate {
        display_name: "Acme".into(),
        website: None,
        verified: Some(true),
    };
    // The tenant renames itself many times while the operator verifies it;
    // none of the renames carries the flag, so none may clear it.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (idp, member) = (idp.clone(), member.clone());
        let id = t.id.clone();
        tasks.push(tokio::spawn(async move {
            let rename = PublisherUpdate {
                display_name: format!("Acme {i}"),
                website: Some("https://acme.example".into()),
                verified: None,
            };
            idp.update_publisher(&member, &id, rename).await.unwrap();
        }));
    }
    idp.update_publisher(&Caller::system(), &t.id, verify)
        .await
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let after = idp.get_tenant(&Caller::system(), &t.id).await.unwrap();
    assert!(after.publisher.verified, "{after:?}");

    // A tenant key cannot set the flag either way.
    let unverify = PublisherUpdate {
        display_name: "Acme".into(),
        website: None,
        verified: Some(false),
    };
    let r = idp.update_publisher(&member, &t.id, unverify).await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

#[tokio::test]
async fn admin_keys_default_to_the_admin_scope() {
    let idp = idp().await;
    let t = tenant(&idp).await;
    let (key, _) = idp
        .create_admin_key(&Caller::system(), Some(&t.id), "k", None)
        .await
        .unwrap();
    assert_eq!(key.scopes, [AdminScope::Admin]);
    let (ro, _) = idp
        .create_admin_key(
            &Caller::system(),
            Some(&t.id),
            "ro",
            Some(vec![AdminScope::AgentsRead]),
        )
        .await
        .unwrap();
    // A key without the admin scope creates no keys, with or without scopes.
    let r = idp
        .create_admin_key(&tenant_caller(&ro), Some(&t.id), "x", None)
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

#[tokio::test]
async fn the_subscription_view_needs_billing_read_and_an_admission_carries_the_tier() {
    let idp = idp().await;
    let t = tenant(&idp).await;
    let sub = idp.subscription(&Caller::system(), &t.id).await.unwrap();
    assert_eq!((sub.tier, sub.billing_enabled), (Tier::Free, false));
    assert_eq!(sub.subscription_status, None);
    let (agents_only, _) = idp
        .create_admin_key(
            &Caller::system(),
            Some(&t.id),
            "agents",
            Some(vec![AdminScope::AgentsWrite]),
        )
        .await
        .unwrap();
    let r = idp.subscription(&tenant_caller(&agents_only), &t.id).await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    let other = tenant(&idp).await;
    let r = idp
        .subscription(&tenant_caller(&agents_only), &other.id)
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");

    idp.set_tenant_tier(&Caller::system(), &t.id, Tier::Pro)
        .await
        .unwrap();
    let admitted = idp.admit_api_call(&t.id).await.unwrap();
    assert_eq!(admitted.tier, Tier::Pro);
    assert!(admitted.decision.allowed);
}

#[tokio::test]
async fn a_suspension_records_when_and_why_and_reactivation_clears_it() {
    let idp = idp().await;
    let t = tenant(&idp).await;
    assert_eq!(
        (t.suspended_at, t.suspension_reason.as_deref()),
        (None, None)
    );
    let suspend = TenantUpdate {
        status: Some(TenantStatus::Suspended),
        reason: Some("payment overdue since March".into()),
        ..Default::default()
    };
    let s = idp
        .update_tenant(&Caller::system(), &t.id, suspend)
        .await
        .unwrap();
    assert!(s.suspended_at.is_some_and(|at| at >= t.created_at));
    assert_eq!(
        s.suspension_reason.as_deref(),
        Some("payment overdue since March")
    );
    // A member sees it on its tenant.
    let (key, _) = idp
        .create_admin_key(
            &Caller::system(),
            Some(&t.id),
            "viewer",
            Some(vec![AdminScope::AgentsRead]),
        )
        .await
        .unwrap();
    let seen = idp.get_tenant(&tenant_caller(&key), &t.id).await.unwrap();
    assert_eq!(seen.suspension_reason, s.suspension_reason);
    let q = AuditQuery {
        tenant_id: Some(t.id.clone()),
        action: Some("tenant.status_changed".into()),
        ..Default::default()
    };
    let ev = idp.query_audit(&Caller::system(), &q).await.unwrap();
    assert_eq!(
        ev.items[0].event.details.get("reason").map(String::as_str),
        Some("payment overdue since March")
    );
    // A reason comes only with a suspension.
    for bad in [
        TenantUpdate {
            tier: Some(Tier::Pro),
            reason: Some("why".into()),
            ..Default::default()
        },
        TenantUpdate {
            status: Some(TenantStatus::Suspended),
            reason: Some(" ".into()),
            ..Default::default()
        },
    ] {
        let r = idp.update_tenant(&Caller::system(), &t.id, bad).await;
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
    }
    let active = idp
        .set_tenant_status(&Caller::system(), &t.id, TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(
        (active.suspended_at, active.suspension_reason),
        (None, None)
    );
}

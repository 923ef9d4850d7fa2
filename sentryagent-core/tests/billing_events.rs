//! Applying billing events: idempotent, ordered, tolerant of unknown tenants.

use std::sync::Arc;

use sentryagent_core::SubscriptionStatus;
use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::{BillingEvent, BillingEventKind};
use sentryagent_core::{
    BillingOutcome, Caller, Error, Idp, ManualClock, NewTenant, Tenant, TenantId, Tier, Timestamp,
};

fn ev(id: &str, tenant: &TenantId, created: i64, kind: BillingEventKind) -> BillingEvent {
    BillingEvent {
        id: id.into(),
        created: Timestamp::from_unix_secs(created),
        tenant_id: Some(tenant.clone()),
        customer_id: Some("cus_1".into()),
        subscription_id: Some("sub_1".into()),
        kind,
    }
}

/// An in-memory `Idp` on a manual clock, with one free tenant.
async fn idp_with_tenant() -> (Idp, Tenant) {
    let clock = ManualClock::new(EPOCH);
    let idp = Idp::builder("https://idp.example")
        .clock(Arc::new(clock))
        .build()
        .await
        .unwrap();
    let t = idp
        .create_tenant(
            &Caller::system(),
            NewTenant {
                name: "Acme".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (idp, t)
}

#[tokio::test]
async fn events_apply_once_in_order() {
    let (idp, t) = idp_with_tenant().await;
    let sys = Caller::system();
    let meta = Default::default();

    let done = ev(
        "evt_1",
        &t.id,
        100,
        BillingEventKind::CheckoutCompleted { tier: Tier::Pro },
    );
    assert_eq!(
        idp.apply_billing_event(&done, &meta).await.unwrap(),
        BillingOutcome::Applied
    );
    let now = idp.get_tenant(&sys, &t.id).await.unwrap();
    assert_eq!(now.tier, Tier::Pro);
    assert_eq!(now.billing.customer_id.as_deref(), Some("cus_1"));
    assert_eq!(
        now.billing.subscription_status,
        Some(SubscriptionStatus::Active)
    );

    // Redelivery changes nothing.
    assert_eq!(
        idp.apply_billing_event(&done, &meta).await.unwrap(),
        BillingOutcome::Duplicate
    );
    assert_eq!(
        idp.get_tenant(&sys, &t.id).await.unwrap().revision,
        now.revision
    );

    let renew = Timestamp::from_unix_secs(1_766_000_000);
    let paid = ev(
        "evt_2",
        &t.id,
        200,
        BillingEventKind::PaymentSucceeded {
            current_period_end: Some(renew),
        },
    );
    idp.apply_billing_event(&paid, &meta).await.unwrap();
    assert_eq!(
        idp.get_tenant(&sys, &t.id)
            .await
            .unwrap()
            .billing
            .current_period_end,
        Some(renew)
    );

    let deleted = ev("evt_4", &t.id, 400, BillingEventKind::SubscriptionDeleted);
    idp.apply_billing_event(&deleted, &meta).await.unwrap();
    assert_eq!(idp.get_tenant(&sys, &t.id).await.unwrap().tier, Tier::Free);

    // An older update arriving late does not roll the state back.
    let late = ev(
        "evt_3",
        &t.id,
        300,
        BillingEventKind::SubscriptionUpdated {
            status: SubscriptionStatus::Active,
            tier: Some(Tier::Enterprise),
            current_period_end: None,
        },
    );
    assert_eq!(
        idp.apply_billing_event(&late, &meta).await.unwrap(),
        BillingOutcome::Stale
    );
    let after = idp.get_tenant(&sys, &t.id).await.unwrap();
    assert_eq!(after.tier, Tier::Free);
    assert_eq!(
        after.billing.subscription_status,
        Some(SubscriptionStatus::Canceled)
    );

    // Unknown tenants are recorded and acknowledged.
    let ghost = ev(
        "evt_9",
        &TenantId::generate(),
        500,
        BillingEventKind::PaymentFailed,
    );
    assert_eq!(
        idp.apply_billing_event(&ghost, &meta).await.unwrap(),
        BillingOutcome::UnknownTenant
    );

    // Billing is off by default, and says so.
    assert!(matches!(
        idp.start_checkout(&sys, &t.id, Tier::Pro).await,
        Err(Error::NotConfigured { .. })
    ));
    assert!(matches!(
        idp.handle_billing_webhook("t=1,v1=00", b"{}", &meta).await,
        Err(Error::NotConfigured { .. })
    ));
}

#[tokio::test]
async fn events_of_a_replaced_subscription_change_nothing_but_renewal_dates_move_forward() {
    let (idp, t) = idp_with_tenant().await;
    let sys = Caller::system();
    let meta = Default::default();
    let mut first = ev(
        "evt_a",
        &t.id,
        100,
        BillingEventKind::CheckoutCompleted { tier: Tier::Pro },
    );
    first.subscription_id = Some("sub_old".into());
    idp.apply_billing_event(&first, &meta).await.unwrap();
    let mut second = ev(
        "evt_b",
        &t.id,
        200,
        BillingEventKind::CheckoutCompleted {
            tier: Tier::Enterprise,
        },
    );
    second.subscription_id = Some("sub_new".into());
    idp.apply_billing_event(&second, &meta).await.unwrap();
    // The old subscription's cancellation must not drop the tenant to free.
    let mut old_deleted = ev("evt_c", &t.id, 300, BillingEventKind::SubscriptionDeleted);
    old_deleted.subscription_id = Some("sub_old".into());
    assert_eq!(
        idp.apply_billing_event(&old_deleted, &meta).await.unwrap(),
        BillingOutcome::OtherSubscription
    );
    let now = idp.get_tenant(&sys, &t.id).await.unwrap();
    assert_eq!(now.tier, Tier::Enterprise);
    assert_eq!(now.billing.subscription_id.as_deref(), Some("sub_new"));

    // A late event still carries a later renewal date.
    let renew = Timestamp::from_unix_secs(1_770_000_000);
    let mut paid = ev(
        "evt_d",
        &t.id,
        150,
        BillingEventKind::PaymentSucceeded {
            current_period_end: Some(renew),
        },
    );
    paid.subscription_id = Some("sub_new".into());
    assert_eq!(
        idp.apply_billing_event(&paid, &meta).await.unwrap(),
        BillingOutcome::Stale
    );
    assert_eq!(
        idp.get_tenant(&sys, &t.id)
            .await
            .unwrap()
            .billing
            .current_period_end,
        Some(renew)
    );
}

#[tokio::test]
async fn late_events_of_a_deleted_or_replaced_subscription_leave_the_renewal_date_alone() {
    let (idp, t) = idp_with_tenant().await;
    let sys = Caller::system();
    let meta = Default::default();
    let done = ev(
        "evt_1",
        &t.id,
        100,
        BillingEventKind::CheckoutCompleted { tier: Tier::Pro },
    );
    idp.apply_billing_event(&done, &meta).await.unwrap();

    // Stripe changes the plan (with a renewal date), then cancels; the
    // cancellation arrives first.
    let renew = Timestamp::from_unix_secs(1_766_000_000);
    let update = ev(
        "evt_2",
        &t.id,
        200,
        BillingEventKind::SubscriptionUpdated {
            status: SubscriptionStatus::Active,
            tier: Some(Tier::Enterprise),
            current_period_end: Some(renew),
        },
    );
    let deleted = ev("evt_3", &t.id, 300, BillingEventKind::SubscriptionDeleted);
    idp.apply_billing_event(&deleted, &meta).await.unwrap();
    let canceled = idp.get_tenant(&sys, &t.id).await.unwrap();
    assert_eq!(canceled.billing.current_period_end, None);
    assert_eq!(
        idp.apply_billing_event(&update, &meta).await.unwrap(),
        BillingOutcome::Stale
    );
    assert_eq!(
        idp.get_tenant(&sys, &t.id).await.unwrap(),
        canceled,
        "a canceled subscription gets no renewal date back"
    );

    // A new subscription: its first event sets its renewal date; a late
    // payment of another subscription does not move it.
    let mut again = ev(
        "evt_4",
        &t.id,
        400,
        BillingEventKind::SubscriptionUpdated {
            status: SubscriptionStatus::Active,
            tier: Some(Tier::Pro),
            current_period_end: Some(renew),
        },
    );
    again.subscription_id = Some("sub_2".into());
    assert_eq!(
        idp.apply_billing_event(&again, &meta).await.unwrap(),
        BillingOutcome::Applied
    );
    let current = idp.get_tenant(&sys, &t.id).await.unwrap();
    assert_eq!(current.tier, Tier::Pro);
    assert_eq!(current.billing.subscription_id.as_deref(), Some("sub_2"));
    assert_eq!(current.billing.current_period_end, Some(renew));
    let other = ev(
        "evt_5",
        &t.id,
        350,
        BillingEventKind::PaymentSucceeded {
            current_period_end: Some(Timestamp::from_unix_secs(1_799_000_000)),
        },
    );
    assert_eq!(
        idp.apply_billing_event(&other, &meta).await.unwrap(),
        BillingOutcome::OtherSubscription
    );
    assert_eq!(idp.get_tenant(&sys, &t.id).await.unwrap(), current);
}

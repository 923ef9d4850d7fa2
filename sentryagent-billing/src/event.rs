//! Stripe events, normalized to the core's [`BillingEvent`].
//!
//! Only the verified raw body is read, as JSON; the shapes of Stripe API
//! versions before and after `2025-03-31.basil` are both understood (invoice
//! subscription details moved under `parent`, and period ends moved from the
//! subscription to its items).
//!
//! | Stripe event | normalized |
//! |---|---|
//! | `checkout.session.completed` (subscription mode, paid or no payment required), `checkout.session.async_payment_succeeded` | `CheckoutCompleted { tier: metadata.target_tier }` |
//! | `checkout.session.completed` with `payment_status: unpaid` (a delayed payment method) | `SubscriptionUpdated { status: incomplete, tier }`: the tier waits for the payment |
//! | `customer.subscription.created`, `.updated` | `SubscriptionUpdated { status, tier (item price via the price map, else metadata.target_tier), current_period_end }` |
//! | `customer.subscription.deleted` | `SubscriptionDeleted` |
//! | `invoice.payment_succeeded`, `invoice.paid` (subscription invoices) | `PaymentSucceeded { current_period_end: latest line period end }` |
//! | `invoice.payment_failed` (subscription invoices) | `PaymentFailed` |
//! | anything else, checkout sessions of other modes, one-off invoices, subscriptions in an unknown status | `None`: acknowledged and ignored |
//!
//! Subscription statuses: `active`, `trialing`, `past_due`, `canceled`,
//! `unpaid` map to themselves; `incomplete` and `incomplete_expired` to
//! `incomplete` (the tier does not move); `paused` (a trial ended without a
//! payment method) to `unpaid` (the tenant falls back to free).
//!
//! The tenant is `metadata.tenant_id` of the object (for checkout sessions
//! also `client_reference_id`; for invoices the subscription's metadata under
//! `subscription_details` or `parent.subscription_details`). A tenant id that
//! is not a valid id is treated as absent: the core records the event as one
//! for an unknown tenant.

use sentryagent_core::SubscriptionStatus;
use sentryagent_core::{BillingEvent, BillingEventKind};
use sentryagent_core::{Error, Result, TenantId, Tier, Timestamp};
use serde_json::Value;

use crate::config::PriceIds;

fn bad(message: impl Into<String>) -> Error {
    Error::invalid("event", message)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// An id field that Stripe sends as a string or, when expanded, as an
/// object with `id`.
fn get_id(v: &Value, path: &[&str]) -> Option<String> {
    let field = get(v, path)?;
    let id = match field {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("id").and_then(Value::as_str)?,
        _ => return None,
    };
    (!id.is_empty() && id.len() <= 255).then(|| id.to_owned())
}

fn get_time(v: &Value, path: &[&str]) -> Option<Timestamp> {
    get(v, path)
        .and_then(Value::as_i64)
        .filter(|s| *s >= 0)
        .map(Timestamp::from_unix_secs)
}

fn tenant_at(v: &Value, path: &[&str]) -> Option<TenantId> {
    get_str(v, path).and_then(|s| TenantId::parse(s).ok())
}

/// `target_tier` metadata: `Ok(None)` when absent, an error when it names no
/// paid tier.
fn target_tier(object: &Value, path: &[&str]) -> Result<Option<Tier>> {
    match get_str(object, path) {
        None => Ok(None),
        Some(s) => match s.parse::<Tier>() {
            Ok(Tier::Free) | Err(_) => Err(bad(format!(
                "metadata target_tier {s:?} is not a paid tier"
            ))),
            Ok(t) => Ok(Some(t)),
        },
    }
}

fn subscription_status(s: &str) -> Option<SubscriptionStatus> {
    Some(match s {
        "active" => SubscriptionStatus::Active,
        "trialing" => SubscriptionStatus::Trialing,
        "past_due" => SubscriptionStatus::PastDue,
        "canceled" => SubscriptionStatus::Canceled,
        "unpaid" | "paused" => SubscriptionStatus::Unpaid,
        "incomplete" | "incomplete_expired" => SubscriptionStatus::Incomplete,
        _ => return None,
    })
}

fn items(object: &Value) -> impl Iterator<Item = &Value> {
    get(object, &["items", "data"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Normalizes a verified Stripe event (the raw webhook body). `Ok(None)` for
/// events that do not concern billing state; `Error::Invalid` for a body
/// that is not a Stripe event.
pub fn parse_event(body: &[u8], prices: &PriceIds) -> Result<Option<BillingEvent>> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let id = get_str(&event, &["id"])
        .filter(|s| s.len() <= 255)
        .ok_or_else(|| bad("no event id"))?
        .to_owned();
    let kind = get_str(&event, &["type"]).ok_or_else(|| bad("no event type"))?;
    let created = get_time(&event, &["created"]).ok_or_else(|| bad("no event creation time"))?;
    let object = get(&event, &["data", "object"])
        .filter(|o| o.is_object())
        .ok_or_else(|| bad("no data.object"))?;
    let normalized = match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout(object, kind == "checkout.session.async_payment_succeeded")?
        }
        "customer.subscription.created" | "customer.subscription.updated" => {
            subscription(object, prices)?
        }
        "customer.subscription.deleted" => Some(Normalized {
            tenant_id: tenant_at(object, &["metadata", "tenant_id"]),
            customer_id: get_id(object, &["customer"]),
            subscription_id: get_id(object, &["id"]),
            kind: BillingEventKind::SubscriptionDeleted,
        }),
        "invoice.payment_succeeded" | "invoice.paid" => invoice(object, true),
        "invoice.payment_failed" => invoice(object, false),
        _ => None,
    };
    Ok(normalized.map(|n| BillingEvent {
        id,
        created,
        tenant_id: n.tenant_id,
        customer_id: n.customer_id,
        subscription_id: n.subscription_id,
        kind: n.kind,
    }))
}

struct Normalized {
    tenant_id: Option<TenantId>,
    customer_id: Option<String>,
    subscription_id: Option<String>,
    kind: BillingEventKind,
}

fn checkout(session: &Value, async_paid: bool) -> Result<Option<Normalized>> {
    if get_str(session, &["mode"]).is_some_and(|m| m != "subscription") {
        return Ok(None);
    }
    let tenant_id = tenant_at(session, &["metadata", "tenant_id"])
        .or_else(|| tenant_at(session, &["client_reference_id"]));
    let tier = target_tier(session, &["metadata", "target_tier"])?;
    let Some(tier) = tier else {
        if tenant_id.is_none() {
            // A session this service did not create.
            return Ok(None);
        }
        return Err(bad("checkout session metadata has no target_tier"));
    };
    let unpaid = !async_paid && get_str(session, &["payment_status"]) == Some("unpaid");
    Ok(Some(Normalized {
        tenant_id,
        customer_id: get_id(session, &["customer"]),
        subscription_id: get_id(session, &["subscription"]),
        kind: if unpaid {
            BillingEventKind::SubscriptionUpdated {
                status: SubscriptionStatus::Incomplete,
                tier: Some(tier),
                current_period_end: None,
            }
        } else {
            BillingEventKind::CheckoutCompleted { tier }
        },
    }))
}

fn subscription(sub: &Value, prices: &PriceIds) -> Result<Option<Normalized>> {
    let Some(status) = get_str(sub, &["status"]).and_then(subscription_status) else {
        return Ok(None);
    };
    let price_tier = items(sub)
        .filter_map(|item| get_id(item, &["price"]).or_else(|| get_id(item, &["plan"])))
        .find_map(|price| prices.tier_of(&price));
    let tier = match price_tier {
        Some(t) => Some(t),
        None => target_tier(sub, &["metadata", "target_tier"])?,
    };
    let current_period_end = get_time(sub, &["current_period_end"]).or_else(|| {
        items(sub)
            .filter_map(|i| get_time(i, &["current_period_end"]))
            .max()
    });
    Ok(Some(Normalized {
        tenant_id: tenant_at(sub, &["metadata", "tenant_id"]),
        customer_id: get_id(sub, &["customer"]),
        subscription_id: get_id(sub, &["id"]),
        kind: BillingEventKind::SubscriptionUpdated {
            status,
            tier,
            current_period_end,
        },
    }))
}

fn invoice(inv: &Value, paid: bool) -> Option<Normalized> {
    const DETAILS: [&[&str]; 2] = [
        &["parent", "subscription_details"],
        &["subscription_details"],
    ];
    let subscription_id = get_id(inv, &["subscription"]).or_else(|| {
        DETAILS
            .iter()
            .find_map(|d| get(inv, d).and_then(|d| get_id(d, &["subscription"])))
    });
    // One-off invoices do not concern the subscription.
    let subscription_id = subscription_id?;
    let tenant_id = DETAILS
        .iter()
        .find_map(|d| get(inv, d).and_then(|d| tenant_at(d, &["metadata", "tenant_id"])))
        .or_else(|| tenant_at(inv, &["metadata", "tenant_id"]));
    let kind = if paid {
        let current_period_end = get(inv, &["lines", "data"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|line| get_time(line, &["period", "end"]))
            .max();
        BillingEventKind::PaymentSucceeded { current_period_end }
    } else {
        BillingEventKind::PaymentFailed
    };
    Some(Normalized {
        tenant_id,
        customer_id: get_id(inv, &["customer"]),
        subscription_id: Some(subscription_id),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use sentryagent_core::conformance::kit::EPOCH;
    use serde_json::json;

    use super::*;

    fn prices() -> PriceIds {
        PriceIds {
            pro: "price_pro".into(),
            enterprise: Some("price_ent".into()),
        }
    }

    fn parse(v: Value) -> Result<Option<BillingEvent>> {
        parse_event(&serde_json::to_vec(&v).unwrap(), &prices())
    }

    fn event(kind: &str, object: Value) -> Value {
        json!({"id": "evt_1", "object": "event", "type": kind, "created": EPOCH.unix_secs(), "data": {"object": object}})
    }

    fn tenant() -> TenantId {
        TenantId::parse("tnt_1").unwrap()
    }

    #[test]
    fn checkout_completed() {
        let e = parse(event(
            "checkout.session.completed",
            json!({"id": "cs_1", "mode": "subscription", "payment_status": "paid",
                   "client_reference_id": "tnt_1", "customer": "cus_1", "subscription": {"id": "sub_1"},
                   "metadata": {"target_tier": "enterprise"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.created, EPOCH);
        assert_eq!(e.tenant_id, Some(tenant()));
        assert_eq!(e.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(e.subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(
            e.kind,
            BillingEventKind::CheckoutCompleted {
                tier: Tier::Enterprise
            }
        );
    }

    #[test]
    fn unpaid_checkout_waits_for_the_payment() {
        let session = json!({"mode": "subscription", "payment_status": "unpaid",
                             "metadata": {"tenant_id": "tnt_1", "target_tier": "pro"}});
        let e = parse(event("checkout.session.completed", session.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            e.kind,
            BillingEventKind::SubscriptionUpdated {
                status: SubscriptionStatus::Incomplete,
                tier: Some(Tier::Pro),
                current_period_end: None
            }
        );
        let e = parse(event("checkout.session.async_payment_succeeded", session))
            .unwrap()
            .unwrap();
        assert_eq!(
            e.kind,
            BillingEventKind::CheckoutCompleted { tier: Tier::Pro }
        );
    }

    #[test]
    fn foreign_or_broken_checkout_sessions() {
        assert_eq!(
            parse(event(
                "checkout.session.completed",
                json!({"mode": "payment", "metadata": {"tenant_id": "tnt_1", "target_tier": "pro"}})
            ))
            .unwrap(),
            None
        );
        assert_eq!(
            parse(event(
                "checkout.session.completed",
                json!({"mode": "subscription", "metadata": {}})
            ))
            .unwrap(),
            None
        );
        for tier in [json!("free"), json!("gold")] {
            assert!(matches!(
                parse(event(
                    "checkout.session.completed",
                    json!({"mode": "subscription", "metadata": {"tenant_id": "tnt_1", "target_tier": tier}})
                )),
                Err(Error::Invalid { .. })
            ));
        }
        assert!(matches!(
            parse(event(
                "checkout.session.completed",
                json!({"mode": "subscription", "client_reference_id": "tnt_1"})
            )),
            Err(Error::Invalid { .. })
        ));
        // A tenant id that is no valid id is absent (unknown tenant).
        let e = parse(event(
            "checkout.session.completed",
            json!({"metadata": {"tenant_id": "a b", "target_tier": "pro"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(e.tenant_id, None);
    }

    #[test]
    fn subscription_updated_in_both_api_shapes() {
        // Before basil: period end on the subscription.
        let e = parse(event(
            "customer.subscription.updated",
            json!({"id": "sub_1", "customer": "cus_1", "status": "past_due", "current_period_end": 1_766_000_000,
                   "metadata": {"tenant_id": "tnt_1"},
                   "items": {"data": [{"price": {"id": "price_ent"}}]}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            e.kind,
            BillingEventKind::SubscriptionUpdated {
                status: SubscriptionStatus::PastDue,
                tier: Some(Tier::Enterprise),
                current_period_end: Some(Timestamp::from_unix_secs(1_766_000_000))
            }
        );
        assert_eq!(e.subscription_id.as_deref(), Some("sub_1"));
        // Basil and later: period end on the items; unknown price falls back
        // to metadata.
        let e = parse(event(
            "customer.subscription.created",
            json!({"id": "sub_1", "customer": "cus_1", "status": "trialing",
                   "metadata": {"tenant_id": "tnt_1", "target_tier": "pro"},
                   "items": {"data": [{"price": {"id": "price_other"}, "current_period_end": 1_766_000_100}]}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            e.kind,
            BillingEventKind::SubscriptionUpdated {
                status: SubscriptionStatus::Trialing,
                tier: Some(Tier::Pro),
                current_period_end: Some(Timestamp::from_unix_secs(1_766_000_100))
            }
        );
    }

    #[test]
    fn every_stripe_subscription_status() {
        for (s, want) in [
            ("active", SubscriptionStatus::Active),
            ("trialing", SubscriptionStatus::Trialing),
            ("past_due", SubscriptionStatus::PastDue),
            ("canceled", SubscriptionStatus::Canceled),
            ("unpaid", SubscriptionStatus::Unpaid),
            ("paused", SubscriptionStatus::Unpaid),
            ("incomplete", SubscriptionStatus::Incomplete),
            ("incomplete_expired", SubscriptionStatus::Incomplete),
        ] {
            let e = parse(event(
                "customer.subscription.updated",
                json!({"id": "sub_1", "status": s}),
            ))
            .unwrap()
            .unwrap();
            assert!(
                matches!(e.kind, BillingEventKind::SubscriptionUpdated { status, tier: None, .. } if status == want),
                "{s}"
            );
        }
        assert_eq!(
            parse(event(
                "customer.subscription.updated",
                json!({"id": "sub_1", "status": "someday"})
            ))
            .unwrap(),
            None
        );
    }

    #[test]
    fn subscription_deleted() {
        let e = parse(event(
            "customer.subscription.deleted",
            json!({"id": "sub_1", "customer": "cus_1", "status": "canceled", "metadata": {"tenant_id": "tnt_1"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(e.kind, BillingEventKind::SubscriptionDeleted);
        assert_eq!(e.tenant_id, Some(tenant()));
    }

    #[test]
    fn invoices_in_both_api_shapes() {
        let old = json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1",
                         "subscription_details": {"metadata": {"tenant_id": "tnt_1"}},
                         "lines": {"data": [{"period": {"start": 1, "end": 1_766_000_000}},
                                            {"period": {"start": 1, "end": 1_766_000_500}}]}});
        let new = json!({"id": "in_1", "customer": "cus_1",
                         "parent": {"type": "subscription_details",
                                    "subscription_details": {"subscription": "sub_1", "metadata": {"tenant_id": "tnt_1"}}},
                         "lines": {"data": [{"period": {"start": 1, "end": 1_766_000_500}}]}});
        for inv in [old, new] {
            for kind in ["invoice.payment_succeeded", "invoice.paid"] {
                let e = parse(event(kind, inv.clone())).unwrap().unwrap();
                assert_eq!(e.tenant_id, Some(tenant()));
                assert_eq!(e.subscription_id.as_deref(), Some("sub_1"));
                assert_eq!(
                    e.kind,
                    BillingEventKind::PaymentSucceeded {
                        current_period_end: Some(Timestamp::from_unix_secs(1_766_000_500))
                    }
                );
            }
            let e = parse(event("invoice.payment_failed", inv))
                .unwrap()
                .unwrap();
            assert_eq!(e.kind, BillingEventKind::PaymentFailed);
        }
        // One-off invoice: not about the subscription.
        assert_eq!(
            parse(event(
                "invoice.payment_failed",
                json!({"id": "in_2", "customer": "cus_1"})
            ))
            .unwrap(),
            None
        );
    }

    #[test]
    fn unknown_types_are_ignored_and_garbage_is_invalid() {
        assert_eq!(
            parse(event("charge.refunded", json!({"id": "ch_1"}))).unwrap(),
            None
        );
        for body in [
            &b"not json"[..],
            b"[]",
            br#"{"type":"invoice.paid","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","created":-1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","created":1,"data":{"object":7}}"#,
        ] {
            assert!(
                matches!(parse_event(body, &prices()), Err(Error::Invalid { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

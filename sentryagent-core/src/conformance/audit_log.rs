//! The [`AuditLog`] conformance suite.

use std::sync::Arc;

use super::{sample_tenant, t};
use crate::audit::{AuditQuery, NewAuditEvent, Outcome, RequestMeta, verify_chain};
use crate::store::AuditLog;
use crate::{Error, TenantId, Timestamp};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn AuditLog>) {
    audit(store.as_ref()).await;
    race_audit_append(store.clone()).await;
}

fn event(tenant: Option<&TenantId>, action: &str, actor: &str, at: Timestamp) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: tenant.cloned(),
        at,
        actor: actor.into(),
        action: action.into(),
        target: Some("x".into()),
        outcome: Outcome::Success,
        request: RequestMeta {
            request_id: Some("r1".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
        },
        details: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
    }
}

/// Audit: chains per tenant, filters, cursor paging, heads.
pub async fn audit(store: &dyn AuditLog) {
    let a = sample_tenant("Audit A");
    let b = sample_tenant("Audit B");
    check!(
        store,
        store.audit_head(Some(&a.id)).await.unwrap().is_none(),
        "empty chain has no head"
    );
    for i in 0..10 {
        let action = if i % 2 == 0 {
            "agent.registered"
        } else {
            "agent.updated"
        };
        let actor = if i < 5 {
            "admin_key:one"
        } else {
            "admin_key:two"
        };
        let e = store
            .append_audit(event(Some(&a.id), action, actor, t(i)))
            .await
            .unwrap();
        check!(
            store,
            e.seq == u64::try_from(i).unwrap() + 1,
            "sequence numbers from 1"
        );
    }
    store
        .append_audit(event(Some(&b.id), "agent.registered", "x", t(0)))
        .await
        .unwrap();
    let all = store
        .query_audit(&AuditQuery {
            tenant_id: Some(a.id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    check!(
        store,
        all.items.len() == 10 && all.next_cursor.is_none(),
        "one tenant's chain only"
    );
    let head = store.audit_head(Some(&a.id)).await.unwrap();
    check!(
        store,
        verify_chain(&all.items, head.as_ref()).is_ok(),
        "stored chain verifies up to its head"
    );
    check!(
        store,
        all.items[3]
            == store
                .query_audit(&AuditQuery {
                    tenant_id: Some(a.id.clone()),
                    cursor: Some("3".into()),
                    limit: Some(1),
                    ..Default::default()
                })
                .await
                .unwrap()
                .items[0],
        "events read back unchanged"
    );
    let q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        action: Some("agent.updated".into()),
        actor: Some("admin_key:two".into()),
        ..Default::default()
    };
    let got: Vec<u64> = store
        .query_audit(&q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    check!(
        store,
        got == vec![6, 8, 10],
        "action and actor filters: {got:?}"
    );
    let q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        from: Some(t(2)),
        to: Some(t(5)),
        ..Default::default()
    };
    let got: Vec<u64> = store
        .query_audit(&q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    check!(
        store,
        got == vec![3, 4, 5],
        "time range [from, to): {got:?}"
    );
    let mut seen = vec![];
    let mut q = AuditQuery {
        tenant_id: Some(a.id.clone()),
        limit: Some(3),
        action: Some("agent.registered".into()),
        ..Default::default()
    };
    loop {
        let p = store.query_audit(&q).await.unwrap();
        seen.extend(p.items.iter().map(|e| e.seq));
        match p.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    check!(
        store,
        seen == vec![1, 3, 5, 7, 9],
        "filtered paging: {seen:?}"
    );
    let bad = AuditQuery {
        tenant_id: Some(a.id.clone()),
        cursor: Some("not-a-cursor".into()),
        ..Default::default()
    };
    check!(
        store,
        matches!(store.query_audit(&bad).await, Err(Error::Invalid { .. })),
        "bad cursor is Invalid"
    );
    let sys = store
        .append_audit(event(
            None,
            "client.authentication_failed",
            "client:x",
            t(0),
        ))
        .await
        .unwrap();
    check!(store, sys.event.tenant_id.is_none(), "system chain");
}

/// Concurrent appends to one chain stay one unbroken chain.
pub async fn race_audit_append(store: Arc<dyn AuditLog>) {
    let ten = sample_tenant("Race Audit");
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let tid = ten.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(event(Some(&tid), "race", "r", t(i)))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = store
        .query_audit(&AuditQuery {
            tenant_id: Some(ten.id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    check!(store, all.items.len() == 32, "32 events");
    let head = store.audit_head(Some(&ten.id)).await.unwrap();
    let r = verify_chain(&all.items, head.as_ref());
    check!(
        store,
        r.is_ok(),
        "concurrent appends form one valid chain: {r:?}"
    );
}

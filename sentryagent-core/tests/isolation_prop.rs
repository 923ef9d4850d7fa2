//! Property: a tenant-bound caller never reads, lists, changes or counts
//! anything of another tenant (agents, API keys, audit, usage), whatever the
//! sequence of management calls by the keys of two tenants.
//!
//! A model keeps what each tenant should own; after every call each tenant
//! sees exactly its own agents, keys, audit events and usage, and every call
//! aimed at the other tenant is refused as "not found" and changes nothing.

use std::time::Duration;

use proptest::prelude::*;
use sentryagent_core::{
    AdminKeyId, AdminScope, AgentId, AgentPatch, AuditQuery, AuditTail, Caller, ClientCredentials,
    Error, Idp, LifecycleState, NewAgent, NewTenant, PageRequest, TenantId, Tier, TokenRequest,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One management call: `who` (0 or 1) calls, aimed at a thing of tenant
/// `target` (its `idx`-th agent or key, modulo how many there are).
#[derive(Debug, Clone, Copy)]
enum Op {
    Register,
    Update {
        target: usize,
        idx: usize,
    },
    Pause {
        target: usize,
        idx: usize,
    },
    Resume {
        target: usize,
        idx: usize,
    },
    Rotate {
        target: usize,
        idx: usize,
    },
    RevokeSecrets {
        target: usize,
        idx: usize,
    },
    CreateKey {
        target: usize,
    },
    RevokeKey {
        target: usize,
        idx: usize,
    },
    /// A token for one of the caller's own agents (counted as usage).
    Token {
        idx: usize,
    },
    /// Every read of the other tenant's things.
    ReadOther,
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0usize..2;
    let i = 0usize..8;
    prop_oneof![
        3 => Just(Op::Register),
        1 => (t.clone(), i.clone()).prop_map(|(target, idx)| Op::Update { target, idx }),
        1 => (t.clone(), i.clone()).prop_map(|(target, idx)| Op::Pause { target, idx }),
        1 => (t.clone(), i.clone()).prop_map(|(target, idx)| Op::Resume { target, idx }),
        1 => (t.clone(), i.clone()).prop_map(|(target, idx)| Op::Rotate { target, idx }),
        1 => (t.clone(), i.clone()).prop_map(|(target, idx)| Op::RevokeSecrets { target, idx }),
        1 => t.clone().prop_map(|target| Op::CreateKey { target }),
        1 => (t, i.clone()).prop_map(|(target, idx)| Op::RevokeKey { target, idx }),
        2 => i.prop_map(|idx| Op::Token { idx }),
        1 => Just(Op::ReadOther),
    ]
}

/// What a tenant should own.
#[derive(Debug, Default)]
struct Owned {
    /// Agents: id, current secret (none once revoked), state, description.
    agents: Vec<(AgentId, Option<String>, LifecycleState, String)>,
    /// Keys: id, secret, revoked. The first is the one its caller uses.
    keys: Vec<(AdminKeyId, String, bool)>,
    /// Tokens issued to its agents.
    tokens: u64,
}

/// A refusal that tells nothing about the other tenant.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    }
}

fn token_request(id: &AgentId, secret: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: id.to_string(),
            client_secret: secret.to_owned(),
        },
        scope: None,
        resources: vec![],
    }
}

/// The events a live tail has ready now.
async fn drain(tail: &mut AuditTail) -> Vec<sentryagent_core::AuditEvent> {
    let mut out = vec![];
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_millis(1), tail.next()).await {
        out.push(e);
    }
    out
}

/// Every read a tenant has of its own things shows exactly the model, and
/// nothing of the other tenant.
async fn check_views(
    idp: &Idp,
    callers: &[Caller; 2],
    tenants: &[TenantId; 2],
    owned: &[Owned; 2],
    tails: &mut [AuditTail; 2],
) {
    for i in 0..2 {
        let (c, own, other) = (&callers[i], &tenants[i], &owned[1 - i]);
        let mine = &owned[i];
        // Agents: listed, counted, in the usage table.
        let list = idp
            .list_agents(c, own, &PageRequest::first(500))
            .await
            .unwrap();
        let mut ids: Vec<_> = list.items.iter().map(|a| a.id.clone()).collect();
        let mut expected: Vec<_> = mine.agents.iter().map(|a| a.0.clone()).collect();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "tenant {i} lists its agents");
        for a in &list.items {
            let m = mine.agents.iter().find(|m| m.0 == a.id).unwrap();
            assert_eq!(
                (a.state, &a.description),
                (m.2, &m.3),
                "tenant {i}: {}",
                a.id
            );
        }
        idp.flush_usage().await.unwrap();
        let usage = idp.usage_summary(c, own).await.unwrap();
        assert_eq!(&usage.tenant_id, own);
        assert_eq!(usage.agents.used, mine.agents.len() as u64, "tenant {i}");
        assert_eq!(
            usage.token_issuances_this_month.used, mine.tokens,
            "tenant {i}"
        );
        let table = idp.agent_usage_table(c, own, None).await.unwrap();
        assert!(
            table
                .iter()
                .all(|r| mine.agents.iter().any(|a| a.0 == r.agent_id)),
            "tenant {i}'s usage table names only its agents"
        );
        assert_eq!(
            table.iter().map(|r| r.token_issuances).sum::<u64>(),
            mine.tokens
        );
        let daily = idp.daily_token_issuances(c, own, 2).await.unwrap();
        assert_eq!(daily.iter().map(|d| d.count).sum::<u64>(), mine.tokens);
        // Keys.
        let keys = idp.list_admin_keys(c, Some(own)).await.unwrap();
        let mut got: Vec<_> = keys
            .iter()
            .map(|k| (k.id.clone(), k.revoked_at.is_some()))
            .collect();
        let mut want: Vec<_> = mine.keys.iter().map(|k| (k.0.clone(), k.2)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "tenant {i} lists its keys");
        assert!(keys.iter().all(|k| k.tenant_id.as_ref() == Some(own)));
        // Audit, stored and live: only its own chain, nothing that names
        // the other tenant's agents or keys.
        let names_other = |e: &sentryagent_core::AuditEvent| {
            let text = serde_json::to_string(e).unwrap();
            other.agents.iter().any(|a| text.contains(a.0.as_str()))
                || other.keys.iter().any(|k| text.contains(k.0.as_str()))
                || text.contains(tenants[1 - i].as_str())
        };
        let page = idp
            .query_audit(
                c,
                &AuditQuery {
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for e in &page.items {
            assert_eq!(e.event.tenant_id.as_ref(), Some(own), "{e:?}");
            assert!(!names_other(e), "tenant {i}'s trail names the other: {e:?}");
        }
        for e in drain(&mut tails[i]).await {
            assert_eq!(e.event.tenant_id.as_ref(), Some(own), "{e:?}");
            assert!(
                !names_other(&e),
                "tenant {i}'s live tail names the other: {e:?}"
            );
        }
        assert!(idp.verify_audit(c, Some(own)).await.is_ok());
    }
}

/// Every read of `who` aimed at the other tenant is refused.
async fn read_other(idp: &Idp, c: &Caller, other_tenant: &TenantId, other: &Owned) {
    let t = other_tenant;
    refused("get_tenant", idp.get_tenant(c, t).await);
    refused(
        "list_agents",
        idp.list_agents(c, t, &PageRequest::first(5)).await,
    );
    refused("list_admin_keys", idp.list_admin_keys(c, Some(t)).await);
    refused(
        "query_audit",
        idp.query_audit(
            c,
            &AuditQuery {
                tenant_id: Some(t.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    refused("verify_audit", idp.verify_audit(c, Some(t)).await);
    refused("audit_tail", idp.audit_tail(c, Some(t)).map(|_| ()));
    refused("usage_summary", idp.usage_summary(c, t).await);
    refused(
        "daily_token_issuances",
        idp.daily_token_issuances(c, t, 7).await,
    );
    refused("activity_heatmap", idp.activity_heatmap(c, t).await);
    refused("agent_usage_table", idp.agent_usage_table(c, t, None).await);
    for a in &other.agents {
        refused("get_agent", idp.get_agent(c, &a.0).await);
        refused("did_document", idp.did_document(Some(c), &a.0).await);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn no_call_crosses_tenants(ops in proptest::collection::vec((0usize..2, op()), 1..32)) {
        runtime().block_on(async move {
            let idp = Idp::builder("https://idp.example").build().await.unwrap();
            let sys = Caller::system();
            let mut tenants = vec![];
            let mut callers = vec![];
            let mut owned: [Owned; 2] = Default::default();
            for (i, mine) in owned.iter_mut().enumerate() {
                let t = idp.create_tenant(&sys, NewTenant { name: format!("T{i}"), tier: Some(Tier::Enterprise), ..Default::default() }).await.unwrap();
                let (k, secret) = idp.create_admin_key(&sys, Some(&t.id), "k", Some(vec![AdminScope::Admin])).await.unwrap();
                let key = idp.authenticate_admin(&secret, &Default::default()).await.unwrap();
                callers.push(Caller::from_key(&key, Default::default()));
                mine.keys.push((k.id, secret, false));
                tenants.push(t.id);
            }
            let callers: [Caller; 2] = callers.try_into().unwrap();
            let tenants: [TenantId; 2] = tenants.try_into().unwrap();
            let mut tails = [
                idp.audit_tail(&callers[0], None).unwrap(),
                idp.audit_tail(&callers[1], None).unwrap(),
            ];
            for (n, (who, op)) in ops.into_iter().enumerate() {
                let c = &callers[who];
                let own = &tenants[who];
                // The thing aimed at, and whether it is the caller's own.
                let agent_of = |owned: &[Owned; 2], target: usize, idx: usize| {
                    let list = &owned[target].agents;
                    (!list.is_empty()).then(|| list[idx % list.len()].0.clone())
                };
                match op {
                    Op::Register => {
                        let r = idp.register_agent(c, own, NewAgent { name: format!("a{n}"), ..Default::default() }).await.unwrap();
                        assert_eq!(&r.agent.tenant_id, own);
                        owned[who].agents.push((r.agent.id, r.client_secret, r.agent.state, r.agent.description));
                    }
                    Op::Update { target, idx } => {
                        let Some(id) = agent_of(&owned, target, idx) else { continue };
                        let description = format!("changed by {who} at {n}");
                        let patch = AgentPatch { description: Some(description.clone()), ..Default::default() };
                        let r = idp.update_agent(c, &id, patch).await;
                        if target == who {
                            r.unwrap();
                            owned[who].agents.iter_mut().find(|a| a.0 == id).unwrap().3 = description;
                        } else {
                            refused("update_agent", r);
                        }
                    }
                    Op::Pause { target, idx } | Op::Resume { target, idx } => {
                        let Some(id) = agent_of(&owned, target, idx) else { continue };
                        let to = if matches!(op, Op::Pause { .. }) { LifecycleState::Paused } else { LifecycleState::Active };
                        let r = idp.transition_agent(c, &id, to).await;
                        if target == who {
                            let a = owned[who].agents.iter_mut().find(|a| a.0 == id).unwrap();
                            match r {
                                Ok(agent) => a.2 = agent.state,
                                Err(Error::Conflict { .. } | Error::Invalid { .. }) => {}
                                Err(e) => panic!("transition of an own agent: {e:?}"),
                            }
                        } else {
                            refused("transition_agent", r);
                        }
                    }
                    Op::Rotate { target, idx } => {
                        let Some(id) = agent_of(&owned, target, idx) else { continue };
                        let r = idp.rotate_client_secret(c, &id, None).await;
                        if target == who {
                            let (secret, _) = r.unwrap();
                            owned[who].agents.iter_mut().find(|a| a.0 == id).unwrap().1 = Some(secret);
                        } else {
                            refused("rotate_client_secret", r);
                        }
                    }
                    Op::RevokeSecrets { target, idx } => {
                        let Some(id) = agent_of(&owned, target, idx) else { continue };
                        let r = idp.revoke_client_secrets(c, &id).await;
                        if target == who {
                            r.unwrap();
                            owned[who].agents.iter_mut().find(|a| a.0 == id).unwrap().1 = None;
                        } else {
                            refused("revoke_client_secrets", r);
                        }
                    }
                    Op::CreateKey { target } => {
                        let r = idp.create_admin_key(c, Some(&tenants[target]), &format!("k{n}"), None).await;
                        if target == who {
                            let (k, secret) = r.unwrap();
                            assert_eq!(k.tenant_id.as_ref(), Some(own));
                            owned[who].keys.push((k.id, secret, false));
                        } else {
                            refused("create_admin_key", r);
                        }
                    }
                    Op::RevokeKey { target, idx } => {
                        let keys = &owned[target].keys;
                        // Never the key the caller itself uses.
                        let idx = 1 + idx % keys.len();
                        let Some((id, _, _)) = keys.get(idx).cloned() else { continue };
                        let r = idp.revoke_admin_key(c, Some(&tenants[target]), &id).await;
                        if target == who {
                            r.unwrap();
                            owned[who].keys[idx].2 = true;
                        } else {
                            refused("revoke_admin_key", r);
                            // Naming no tenant is for operators, whatever the key.
                            let r = idp.revoke_admin_key(c, None, &id).await;
                            assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
                        }
                    }
                    Op::Token { idx } => {
                        let Some(id) = agent_of(&owned, who, idx) else { continue };
                        let a = owned[who].agents.iter().find(|a| a.0 == id).unwrap();
                        let Some(secret) = a.1.clone() else { continue };
                        let r = idp.issue_token(&token_request(&id, &secret), &Default::default()).await;
                        if a.2 == LifecycleState::Active {
                            let t = r.unwrap();
                            let claims = idp.verify_access_token(&t.access_token, None).unwrap();
                            assert_eq!(claims.tenant_id, own.to_string());
                            owned[who].tokens += 1;
                        } else {
                            assert!(r.is_err(), "a token for a {:?} agent", a.2);
                        }
                    }
                    Op::ReadOther => read_other(&idp, c, &tenants[1 - who], &owned[1 - who]).await,
                }
                // Keys of the other tenant still authenticate, and still as
                // that tenant's.
                for (i, mine) in owned.iter().enumerate() {
                    for (_, secret, revoked) in &mine.keys {
                        let r = idp.authenticate_admin(secret, &Default::default()).await;
                        match (revoked, r) {
                            (false, Ok(k)) => assert_eq!(k.tenant_id.as_ref(), Some(&tenants[i])),
                            (true, Err(_)) => {}
                            (revoked, r) => panic!("key of tenant {i} (revoked: {revoked}): {r:?}"),
                        }
                    }
                }
                check_views(&idp, &callers, &tenants, &owned, &mut tails).await;
            }
        });
    }
}

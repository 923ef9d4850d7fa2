//! Property: a tenant-bound caller never sees another tenant's agents,
//! whatever the sequence of registrations and queries.

use proptest::prelude::*;
use sentryagent_core::{AdminScope, Caller, Error, Idp, NewAgent, NewTenant, PageRequest, Tier};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn no_query_crosses_tenants(ops in proptest::collection::vec((0usize..3, 0usize..4), 1..24)) {
        runtime().block_on(async move {
            let idp = Idp::builder("https://idp.example").build().await.unwrap();
            let sys = Caller::system();
            let mut tenants = vec![];
            let mut callers = vec![];
            for i in 0..3 {
                let t = idp.create_tenant(&sys, NewTenant { name: format!("T{i}"), tier: Some(Tier::Enterprise), ..Default::default() }).await.unwrap();
                let (_, secret) = idp.create_admin_key(&sys, Some(&t.id), "k", Some(vec![AdminScope::Admin])).await.unwrap();
                let key = idp.authenticate_admin(&secret, &Default::default()).await.unwrap();
                callers.push(Caller::from_key(&key, Default::default()));
                tenants.push(t);
            }
            let mut owned: Vec<Vec<sentryagent_core::AgentId>> = vec![vec![]; 3];
            for (n, (who, what)) in ops.into_iter().enumerate() {
                let caller = &callers[who];
                let own = &tenants[who].id;
                match what {
                    0 | 1 => {
                        let r = idp.register_agent(caller, own, NewAgent { name: format!("a{n}"), ..Default::default() }).await.unwrap();
                        owned[who].push(r.agent.id);
                    }
                    _ => {}
                }
                // Every query of every caller sees exactly its own agents.
                for (i, c) in callers.iter().enumerate() {
                    let list = idp.list_agents(c, &tenants[i].id, &PageRequest::first(500)).await.unwrap();
                    let ids: Vec<_> = list.items.iter().map(|a| a.id.clone()).collect();
                    assert_eq!(ids.len(), owned[i].len());
                    assert!(ids.iter().all(|id| owned[i].contains(id)));
                    for (j, other) in owned.iter().enumerate() {
                        if i == j { continue; }
                        assert!(matches!(idp.list_agents(c, &tenants[j].id, &PageRequest::first(5)).await, Err(Error::NotFound { .. })));
                        for id in other {
                            assert!(matches!(idp.get_agent(c, id).await, Err(Error::NotFound { .. })));
                            assert!(matches!(idp.did_document(Some(c), id).await, Err(Error::NotFound { .. })));
                        }
                    }
                }
            }
        });
    }
}

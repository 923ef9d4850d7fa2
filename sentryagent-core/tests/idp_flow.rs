//! The `Idp` flow tests (module `flow`) on the in-memory store.

mod flow;

use std::sync::Arc;

use sentryagent_core::{MemoryStore, StoreParts};

/// A fresh in-memory store for each test.
async fn store_parts() -> Option<StoreParts> {
    Some(StoreParts::from(Arc::new(MemoryStore::new())))
}

/// Counts the calls an `Idp` makes into the agent, marker and tenant parts
/// of a memory store (one object for the three, as a bundle is).
mod store_calls {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use sentryagent_core::conformance::kit::secret_request;
    use sentryagent_core::{
        Agent, AgentId, AgentStore, Backend, Caller, ClientRecord, ClientSecret, Idp,
        IntrospectionRecord, MarkerStore, MarketplaceQuery, MemoryStore, NewAgent, NewTenant, Page,
        PageRequest, Result, StoreParts, Tenant, TenantId, TenantStore, Tier, Timestamp,
    };

    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        calls: AtomicU32,
    }

    impl Counting {
        fn count(&self) {
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Backend for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
    }

    #[async_trait]
    impl TenantStore for Counting {
        async fn create_tenant(&self, t: &Tenant) -> Result<()> {
            self.count();
            self.inner.create_tenant(t).await
        }
        async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
            self.count();
            self.inner.get_tenant(id).await
        }
        async fn get_tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
            self.count();
            self.inner.get_tenant_by_slug(slug).await
        }
        async fn update_tenant(&self, t: &Tenant) -> Result<Tenant> {
            self.count();
            self.inner.update_tenant(t).await
        }
        async fn list_tenants(&self, p: &PageRequest) -> Result<Page<Tenant>> {
            self.count();
            self.inner.list_tenants(p).await
        }
    }

    #[async_trait]
    impl MarkerStore for Counting {
        async fn put_marker(&self, ns: &str, k: &str, e: Timestamp, n: Timestamp) -> Result<bool> {
            self.count();
            self.inner.put_marker(ns, k, e, n).await
        }
        async fn has_marker(&self, ns: &str, k: &str, n: Timestamp) -> Result<bool> {
            self.count();
            self.inner.has_marker(ns, k, n).await
        }
        async fn purge_markers(&self, n: Timestamp) -> Result<u64> {
            self.count();
            self.inner.purge_markers(n).await
        }
    }

    #[async_trait]
    impl AgentStore for Counting {
        async fn create_agent(
            &self,
            a: &Agent,
            s: Option<&ClientSecret>,
            max: Option<u64>,
        ) -> Result<()> {
            self.count();
            self.inner.create_agent(a, s, max).await
        }
        async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
            self.count();
            self.inner.get_agent(id).await
        }
        async fn get_agent_by_name(&self, t: &TenantId, name: &str) -> Result<Agent> {
            self.count();
            self.inner.get_agent_by_name(t, name).await
        }
        async fn update_agent(&self, a: &Agent) -> Result<Agent> {
            self.count();
            self.inner.update_agent(a).await
        }
        async fn list_agents(&self, t: &TenantId, p: &PageRequest) -> Result<Page<Agent>> {
            self.count();
            self.inner.list_agents(t, p).await
        }
        async fn count_agents(&self, t: &TenantId) -> Result<u64> {
            self.count();
            self.inner.count_agents(t).await
        }
        async fn search_marketplace(
            &self,
            q: &MarketplaceQuery,
            p: &PageRequest,
        ) -> Result<Page<Agent>> {
            self.count();
            self.inner.search_marketplace(q, p).await
        }
        async fn list_client_secrets(&self, a: &AgentId) -> Result<Vec<ClientSecret>> {
            self.count();
            self.inner.list_client_secrets(a).await
        }
        async fn rotate_client_secret(
            &self,
            a: &AgentId,
            s: &ClientSecret,
            until: Timestamp,
        ) -> Result<()> {
            self.count();
            self.inner.rotate_client_secret(a, s, until).await
        }
        async fn revoke_client_secrets(&self, a: &AgentId, at: Timestamp) -> Result<u64> {
            self.count();
            self.inner.revoke_client_secrets(a, at).await
        }
        async fn get_client(&self, id: &AgentId) -> Result<ClientRecord> {
            self.count();
            self.inner.get_client(id).await
        }
        async fn introspection_record(
            &self,
            caller: &AgentId,
            subject: &AgentId,
            marker: (&str, &str),
            now: Timestamp,
        ) -> Result<IntrospectionRecord> {
            self.count();
            self.inner
                .introspection_record(caller, subject, marker, now)
                .await
        }
    }

    /// Introspection is one call into the store (the caller, the token's
    /// agent, its revocation marker and the caller's tenant at once), for
    /// an active token, a revoked one and one of another agent. A token
    /// that does not verify costs the caller's authentication only (here
    /// two calls: the memory store reads the tenant apart from the agent).
    #[tokio::test]
    async fn introspection_is_one_store_call() {
        let counting = Arc::new(Counting::default());
        let parts = StoreParts::from(Arc::new(MemoryStore::new()))
            .with_agents(counting.clone())
            .with_markers(counting.clone())
            .with_tenants(counting.clone());
        let idp = Idp::builder("https://idp.example")
            .store_parts(parts)
            .build()
            .await
            .unwrap();
        let op = Caller::system();
        let t = idp
            .create_tenant(
                &op,
                NewTenant {
                    name: "Acme".into(),
                    tier: Some(Tier::Pro),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let register = |name: &str| {
            idp.register_agent(
                &op,
                &t.id,
                NewAgent {
                    name: name.into(),
                    ..Default::default()
                },
            )
        };
        let bot = register("bot").await.unwrap();
        let rs = register("resource-server").await.unwrap();
        let meta = Default::default();
        let token = |a| {
            let idp = &idp;
            let meta = &meta;
            async move {
                idp.issue_token(&secret_request(a, None), meta)
                    .await
                    .unwrap()
                    .access_token
            }
        };
        let bots = token(&bot).await;
        let own = token(&rs).await;
        let revoked = token(&bot).await;
        idp.revoke(&secret_request(&bot, None).client, &revoked, &meta)
            .await
            .unwrap();
        let rs_creds = secret_request(&rs, None).client;
        for (what, tok, active) in [
            ("another agent's token", bots.as_str(), true),
            ("its own token", own.as_str(), true),
            ("a revoked token", revoked.as_str(), false),
            ("garbage", "garbage", false),
        ] {
            let expected = if tok == "garbage" { 2 } else { 1 };
            let before = counting.calls.load(Ordering::Relaxed);
            let i = idp.introspect(&rs_creds, tok, &meta).await.unwrap();
            let calls = counting.calls.load(Ordering::Relaxed) - before;
            assert_eq!(i.active, active, "{what}");
            assert_eq!(calls, expected, "{what}: {calls} store calls");
        }
    }
}

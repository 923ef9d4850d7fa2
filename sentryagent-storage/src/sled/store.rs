//! [`SledStore`]: every store trait on sled (layout and rules in the
//! [module docs](super)).

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::sled::IVec;
use ::sled::transaction::Transactional;
use async_trait::async_trait;

use sentryagent_core::BackendHealth;
use sentryagent_core::marketplace_index::{self, IndexKind};
use sentryagent_core::store::{NewAgentRecord, agent_batch_tenants, check_agent_batch};
use sentryagent_core::{AdminKey, ClientSecret};
use sentryagent_core::{
    AdminKeyId, Agent, AgentId, AgentStateCounts, Error, LifecycleState, LimitKind,
    MarketplaceQuery, Result, Tenant, TenantId, Timestamp,
};
use sentryagent_core::{
    AdminKeyStore, AgentStore, AuditLog, Backend, IntrospectionRecord, MarkerStore, SettingStore,
    SigningKeyRecord, SigningKeyStore, TenantStore,
};
use sentryagent_core::{AuditEvent, AuditQuery, ChainHead, NewAuditEvent};
use sentryagent_core::{Page, PageRequest};

use super::Shared;
use super::bulk::{self, BatchRow, market_words};
use super::cache::DecodedCache;
use super::codec::{
    OrAbort, SEP, TxResult, abort, after_sep, counter, decode, encode, i64_from_key, i64_key, key,
    prefix, push_sized, sled_error, tx_error,
};
use super::marketplace::{
    edit_agent_keys, edit_agent_words, write_key_counts, write_publisher_keys,
};
use super::postings::PostingEdits;

pub(super) const EMPTY: &[u8] = &[];

/// Markers removed per transaction by `purge_markers`.
const PURGE_CHUNK: usize = 256;

/// The store (every store trait) of a [`SledBackend`](super::SledBackend). Every write
/// is durable when its method returns.
#[derive(Clone)]
pub struct SledStore {
    pub(super) shared: Arc<Shared>,
    hot: Arc<HotRecords>,
}

/// Decoded copies of what the token endpoint reads per request.
struct HotRecords {
    agents: DecodedCache<Agent>,
    tenants: DecodedCache<Tenant>,
    secrets: DecodedCache<Vec<ClientSecret>>,
    /// The database generation the copies were made from: after a reopen
    /// (see `Shared::open`) every copy is dropped.
    generation: AtomicU64,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// A read of a sled tree, mapped onto core errors.
pub(super) fn read(tree: &::sled::Tree, k: &[u8], what: &'static str) -> Result<Option<IVec>> {
    tree.get(k)
        .map_err(|e| sled_error(&format!("read of a {what}"), e))
}

/// A record by key, decoded.
pub(super) fn record<T: serde::de::DeserializeOwned>(
    tree: &::sled::Tree,
    k: &[u8],
    what: &'static str,
) -> Result<Option<T>> {
    read(tree, k, what)?.map(|v| decode(what, &v)).transpose()
}

/// An index entry whose record is missing: the database is inconsistent.
pub(super) fn dangling(what: &'static str) -> Error {
    Error::Internal {
        message: format!("sled: an index names a {what} that does not exist"),
        source: None,
    }
}

pub(super) fn iter_error(what: &'static str) -> impl Fn(::sled::Error) -> Error {
    move |e| sled_error(&format!("scan of {what}"), e)
}

/// The first `size` items of a listing already ordered and past the cursor,
/// with the cursor of the next page (`items` may hold one more than `size`).
pub(super) fn page_of<T>(mut items: Vec<(String, T)>, size: usize) -> Page<T> {
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(_, v)| v).collect(),
        next_cursor,
    }
}

/// The lower bound of a listing under `prefix` continuing after `cursor`.
pub(super) fn start_after(prefix: &[u8], cursor: Option<&str>) -> Bound<Vec<u8>> {
    match cursor {
        Some(c) => {
            let mut k = prefix.to_vec();
            k.extend_from_slice(c.as_bytes());
            Bound::Excluded(k)
        }
        None => Bound::Included(prefix.to_vec()),
    }
}

/// The first key after every key starting with `part` + `SEP`.
pub(super) fn prefix_end(part: &[u8]) -> Bound<Vec<u8>> {
    let mut k = part.to_vec();
    k.push(SEP + 1);
    Bound::Excluded(k)
}

/// The audit chain key of a tenant (`None`: the system chain).
fn chain_of(tenant: Option<&TenantId>) -> &[u8] {
    tenant.map_or(&[][..], |t| t.as_str().as_bytes())
}

fn audit_key(chain: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix(chain);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn marker_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + namespace.len() + key.len());
    push_sized(&mut k, namespace.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn marker_expiry_key(expires: i64, marker: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + marker.len());
    k.extend_from_slice(&i64_key(expires));
    k.extend_from_slice(marker);
    k
}

fn corrupt(what: &str) -> Error {
    Error::Internal {
        message: format!("sled: corrupt {what}"),
        source: None,
    }
}

impl SledStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        SledStore {
            shared,
            hot: Arc::new(HotRecords {
                agents: DecodedCache::new(),
                tenants: DecodedCache::new(),
                secrets: DecodedCache::new(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The decoded copies, emptied first if the database was reopened
    /// since they were made.
    fn hot(&self) -> &HotRecords {
        let now = self.shared.generation();
        if self.hot.generation.load(Ordering::Acquire) != now {
            self.hot.agents.clear();
            self.hot.tenants.clear();
            self.hot.secrets.clear();
            self.hot.generation.store(now, Ordering::Release);
        }
        &self.hot
    }

    pub(super) async fn durable(&self) -> Result<()> {
        self.shared.flush().await
    }

    fn agent(&self, id: &[u8]) -> Result<Option<Agent>> {
        record(&self.shared.open()?.t.agents, id, "agent")
    }

    /// Agents by the ids of an ordered index, past the cursor, filtered.
    fn agents_by_ids(
        &self,
        ids: impl Iterator<Item = Result<Vec<u8>>>,
        size: usize,
        keep: impl Fn(&Agent) -> bool,
    ) -> Result<Page<Agent>> {
        let mut out = Vec::with_capacity(size + 1);
        for id in ids {
            let id = id?;
            let agent = self.agent(&id)?.ok_or_else(|| dangling("agent"))?;
            if keep(&agent) {
                out.push((agent.id.to_string(), agent));
                if out.len() > size {
                    break;
                }
            }
        }
        Ok(page_of(out, size))
    }
}

#[async_trait]
impl Backend for SledStore {
    fn name(&self) -> &'static str {
        "sled"
    }

    async fn health(&self) -> BackendHealth {
        self.shared.health("store")
    }
}

#[async_trait]
impl TenantStore for SledStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = tenant.id.as_str().as_bytes();
        let slug = tenant.slug.as_bytes();
        let value = encode("tenant", tenant)?;
        let publisher_keys = marketplace_index::publisher_keys(tenant);
        (&t.tenants, &t.tenants_by_slug, &t.marketplace_publishers)
            .transaction(|(tenants, slugs, publishers)| -> TxResult<()> {
                if tenants.get(id)?.is_some() || slugs.get(slug)?.is_some() {
                    return abort(Error::already_exists("tenant"));
                }
                tenants.insert(id, value.clone())?;
                slugs.insert(slug, id)?;
                write_publisher_keys(publishers, id, &BTreeSet::new(), &publisher_keys)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_tenant", e))?;
        self.durable().await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        let k = id.as_str().as_bytes();
        let raw =
            read(&self.shared.open()?.t.tenants, k, "tenant")?.ok_or(Error::not_found("tenant"))?;
        self.hot().tenants.decode("tenant", k, &raw)
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        let t = &self.shared.open()?.t;
        let id = read(&t.tenants_by_slug, slug.as_bytes(), "tenant slug")?
            .ok_or(Error::not_found("tenant"))?;
        record(&t.tenants, &id, "tenant")?.ok_or_else(|| dangling("tenant"))
    }

    async fn update_tenant(&self, tenant: &Tenant) -> Result<Tenant> {
        let id = tenant.id.as_str().as_bytes();
        let mut next = tenant.clone();
        next.revision += 1;
        let value = encode("tenant", &next)?;
        let new_keys = marketplace_index::publisher_keys(&next);
        let open = self.shared.open()?;
        let t = &open.t;
        (&t.tenants, &t.marketplace_publishers)
            .transaction(|(tenants, publishers)| -> TxResult<()> {
                let Some(raw) = tenants.get(id)? else {
                    return abort(Error::not_found("tenant"));
                };
                let stored: Tenant = decode("tenant", &raw).or_abort()?;
                if stored.revision != tenant.revision {
                    return abort(Error::conflict("tenant was changed concurrently"));
                }
                if stored.slug != tenant.slug {
                    return abort(Error::invalid("slug", "cannot change"));
                }
                let old_keys = marketplace_index::publisher_keys(&stored);
                write_publisher_keys(publishers, id, &old_keys, &new_keys)?;
                tenants.insert(id, value.clone())?;
                Ok(())
            })
            .map_err(|e| tx_error("update_tenant", e))?;
        self.durable().await?;
        Ok(next)
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let size = page.size();
        let start = start_after(&[], page.cursor.as_deref());
        let mut out = Vec::with_capacity(size + 1);
        for item in self
            .shared
            .open()?
            .t
            .tenants
            .range((start, Bound::Unbounded))
        {
            let (_, v) = item.map_err(iter_error("tenants"))?;
            let tenant: Tenant = decode("tenant", &v)?;
            out.push((tenant.id.to_string(), tenant));
            if out.len() > size {
                break;
            }
        }
        Ok(page_of(out, size))
    }
}

#[async_trait]
impl AgentStore for SledStore {
    async fn introspection_record(
        &self,
        caller: &AgentId,
        subject: &AgentId,
        marker: (&str, &str),
        now: Timestamp,
    ) -> Result<IntrospectionRecord> {
        sentryagent_core::store::introspection_record_in_process(self, caller, subject, marker, now)
            .await
    }

    async fn create_agent(
        &self,
        agent: &Agent,
        secret: Option<&ClientSecret>,
        max_agents: Option<u64>,
    ) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = agent.id.as_str().as_bytes();
        let tenant = agent.tenant_id.as_str().as_bytes();
        let value = encode("agent", agent)?;
        let secrets = encode(
            "client secrets",
            &secret.into_iter().cloned().collect::<Vec<_>>(),
        )?;
        let name_key = key(&[tenant, agent.name.as_bytes()]);
        let tenant_key = key(&[tenant, id]);
        let live = agent.state != LifecycleState::Retired;
        let in_market = agent.is_in_marketplace();
        let words = market_words(agent);
        let index_keys = marketplace_index::agent_keys(agent);
        let none = BTreeSet::new();
        let mut word_edits = PostingEdits::default();
        edit_agent_words(&mut word_edits, id, &none, &words);
        let mut key_edits = PostingEdits::default();
        edit_agent_keys(&mut key_edits, id, &none, &index_keys);
        let writing = self.shared.agent_writes();
        let word_edits = word_edits.locate(&t.marketplace_terms)?;
        let key_edits = key_edits.locate(&t.marketplace_keys)?;
        (
            &t.agents,
            &t.agents_by_name,
            &t.agents_by_tenant,
            &t.live_agents,
            &t.client_secrets,
            &t.marketplace,
            &t.marketplace_terms,
            &t.marketplace_keys,
            &t.marketplace_key_counts,
        )
            .transaction(
                |(
                    agents,
                    names,
                    by_tenant,
                    live_agents,
                    client_secrets,
                    market,
                    terms,
                    keys,
                    counts,
                )|
                 -> TxResult<()> {
                    if agents.get(id)?.is_some() || names.get(name_key.as_slice())?.is_some() {
                        return abort(Error::already_exists("agent"));
                    }
                    let used =
                        counter("live agents", live_agents.get(tenant)?.as_deref()).or_abort()?;
                    if let Some(max) = max_agents
                        && used >= max
                    {
                        return abort(Error::QuotaExceeded {
                            limit_kind: LimitKind::Agents,
                            tier: String::new(),
                            used,
                            limit: max,
                        });
                    }
                    agents.insert(id, value.clone())?;
                    names.insert(name_key.as_slice(), id)?;
                    by_tenant.insert(tenant_key.as_slice(), EMPTY)?;
                    if live {
                        live_agents.insert(tenant, &(used + 1).to_be_bytes())?;
                    }
                    client_secrets.insert(id, secrets.clone())?;
                    if in_market {
                        market.insert(id, EMPTY)?;
                    }
                    word_edits.apply(terms)?;
                    key_edits.apply(keys)?;
                    write_key_counts(counts, &none, &index_keys)?;
                    Ok(())
                },
            )
            .map_err(|e| tx_error("create_agent", e))?;
        drop(writing);
        self.durable().await
    }

    /// Small transactions under the agent-write lock, rolled back on
    /// failure: see the `bulk` module.
    async fn create_agents(&self, batch: &[NewAgentRecord]) -> Result<()> {
        check_agent_batch(batch)?;
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch
            .iter()
            .map(BatchRow::new)
            .collect::<Result<Vec<_>>>()?;
        let tenants: Vec<TenantId> = agent_batch_tenants(batch).into_iter().cloned().collect();
        {
            let open = self.shared.open()?;
            let _writing = self.shared.agent_writes();
            bulk::register(&open.t, batch, &rows, &tenants)?;
        }
        self.durable().await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        let k = id.as_str().as_bytes();
        let raw =
            read(&self.shared.open()?.t.agents, k, "agent")?.ok_or(Error::not_found("agent"))?;
        self.hot().agents.decode("agent", k, &raw)
    }

    async fn get_agent_by_name(&self, tenant: &TenantId, name: &str) -> Result<Agent> {
        let k = key(&[tenant.as_str().as_bytes(), name.as_bytes()]);
        let id = read(&self.shared.open()?.t.agents_by_name, &k, "agent name")?
            .ok_or(Error::not_found("agent"))?;
        self.agent(&id)?.ok_or_else(|| dangling("agent"))
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent> {
        let t = &self.shared.open()?.t;
        let id = agent.id.as_str().as_bytes();
        let tenant = agent.tenant_id.as_str().as_bytes();
        let mut next = agent.clone();
        next.revision += 1;
        let value = encode("agent", &next)?;
        let new_words = market_words(agent);
        let in_market = agent.is_in_marketplace();
        let live = agent.state != LifecycleState::Retired;
        let new_keys = marketplace_index::agent_keys(&next);
        let writing = self.shared.agent_writes();
        // The stored agent, read before the transaction to locate the
        // index blocks its change edits; no agent write can come between
        // (the agent-write lock), which the transaction checks.
        let Some(before) = read(&t.agents, id, "agent")? else {
            return Err(Error::not_found("agent"));
        };
        let stored: Agent = decode("agent", &before)?;
        let old_keys = marketplace_index::agent_keys(&stored);
        let mut word_edits = PostingEdits::default();
        edit_agent_words(&mut word_edits, id, &market_words(&stored), &new_words);
        let word_edits = word_edits.locate(&t.marketplace_terms)?;
        let mut key_edits = PostingEdits::default();
        edit_agent_keys(&mut key_edits, id, &old_keys, &new_keys);
        let key_edits = key_edits.locate(&t.marketplace_keys)?;
        (
            &t.agents,
            &t.agents_by_name,
            &t.live_agents,
            &t.marketplace,
            &t.marketplace_terms,
            &t.marketplace_keys,
            &t.marketplace_key_counts,
        )
            .transaction(
                |(agents, names, live_agents, market, terms, keys, counts)| -> TxResult<()> {
                    let Some(raw) = agents.get(id)? else {
                        return abort(Error::not_found("agent"));
                    };
                    if raw != before {
                        return abort(Error::conflict("agent was changed concurrently"));
                    }
                    if stored.revision != agent.revision {
                        return abort(Error::conflict("agent was changed concurrently"));
                    }
                    if stored.tenant_id != agent.tenant_id {
                        return abort(Error::invalid("tenant_id", "cannot change"));
                    }
                    if stored.name != agent.name {
                        let new_name = key(&[tenant, agent.name.as_bytes()]);
                        if names.get(new_name.as_slice())?.is_some() {
                            return abort(Error::already_exists("agent"));
                        }
                        names.remove(key(&[tenant, stored.name.as_bytes()]))?;
                        names.insert(new_name, id)?;
                    }
                    let was_live = stored.state != LifecycleState::Retired;
                    if was_live != live {
                        let n = counter("live agents", live_agents.get(tenant)?.as_deref())
                            .or_abort()?;
                        let n = if live { n + 1 } else { n.saturating_sub(1) };
                        live_agents.insert(tenant, &n.to_be_bytes())?;
                    }
                    word_edits.apply(terms)?;
                    match (stored.is_in_marketplace(), in_market) {
                        (false, true) => {
                            market.insert(id, EMPTY)?;
                        }
                        (true, false) => {
                            market.remove(id)?;
                        }
                        _ => {}
                    }
                    key_edits.apply(keys)?;
                    write_key_counts(counts, &old_keys, &new_keys)?;
                    agents.insert(id, value.clone())?;
                    Ok(())
                },
            )
            .map_err(|e| tx_error("update_agent", e))?;
        drop(writing);
        self.durable().await?;
        Ok(next)
    }

    async fn list_agents(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Agent>> {
        let p = prefix(tenant.as_str().as_bytes());
        let start = start_after(&p, page.cursor.as_deref());
        let ids = self
            .shared
            .open()?
            .t
            .agents_by_tenant
            .range((start, prefix_end(tenant.as_str().as_bytes())))
            .keys()
            .map(|k| {
                k.map(|k| after_sep(&k).to_vec())
                    .map_err(iter_error("agents of a tenant"))
            });
        self.agents_by_ids(ids, page.size(), |_| true)
    }

    async fn count_agents(&self, tenant: &TenantId) -> Result<u64> {
        let v = read(
            &self.shared.open()?.t.live_agents,
            tenant.as_str().as_bytes(),
            "live agent count",
        )?;
        counter("live agents", v.as_deref())
    }

    /// One scan of the agents, reading only each record's state.
    async fn agents_by_state(&self, _tenants: &dyn TenantStore) -> Result<AgentStateCounts> {
        #[derive(serde::Deserialize)]
        struct StateOnly {
            state: LifecycleState,
        }
        let mut counts = AgentStateCounts::default();
        for raw in self.shared.open()?.t.agents.iter().values() {
            let raw = raw.map_err(iter_error("agents"))?;
            counts.add(decode::<StateOnly>("agent", &raw)?.state, 1);
        }
        Ok(counts)
    }

    async fn search_marketplace(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        self.market_search(query, page)
    }

    /// From the `marketplace_key_counts` tree.
    async fn marketplace_counts(&self, kind: IndexKind) -> Result<Vec<(String, u64)>> {
        self.key_counts(kind)
    }

    async fn list_client_secrets(&self, agent: &AgentId) -> Result<Vec<ClientSecret>> {
        let k = agent.as_str().as_bytes();
        match read(&self.shared.open()?.t.client_secrets, k, "client secrets")? {
            Some(raw) => self.hot().secrets.decode("client secrets", k, &raw),
            None => Ok(Vec::new()),
        }
    }

    async fn rotate_client_secret(
        &self,
        agent: &AgentId,
        new: &ClientSecret,
        old_valid_until: Timestamp,
    ) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = agent.as_str().as_bytes();
        (&t.agents, &t.client_secrets)
            .transaction(|(agents, secrets)| -> TxResult<()> {
                if agents.get(id)?.is_none() {
                    return abort(Error::not_found("agent"));
                }
                let mut list: Vec<ClientSecret> = match secrets.get(id)? {
                    Some(v) => decode("client secrets", &v).or_abort()?,
                    None => Vec::new(),
                };
                for old in list.iter_mut().filter(|x| x.revoked_at.is_none()) {
                    old.expires_at = Some(
                        old.expires_at
                            .map_or(old_valid_until, |e| e.min(old_valid_until)),
                    );
                }
                list.push(new.clone());
                secrets.insert(id, encode("client secrets", &list).or_abort()?)?;
                Ok(())
            })
            .map_err(|e| tx_error("rotate_client_secret", e))?;
        self.durable().await
    }

    async fn revoke_client_secrets(&self, agent: &AgentId, at: Timestamp) -> Result<u64> {
        let t = &self.shared.open()?.t;
        let id = agent.as_str().as_bytes();
        let n = (&t.agents, &t.client_secrets)
            .transaction(|(agents, secrets)| -> TxResult<u64> {
                if agents.get(id)?.is_none() {
                    return abort(Error::not_found("agent"));
                }
                let mut list: Vec<ClientSecret> = match secrets.get(id)? {
                    Some(v) => decode("client secrets", &v).or_abort()?,
                    None => Vec::new(),
                };
                let mut n = 0;
                for x in list.iter_mut().filter(|x| x.revoked_at.is_none()) {
                    x.revoked_at = Some(at);
                    n += 1;
                }
                if n > 0 {
                    secrets.insert(id, encode("client secrets", &list).or_abort()?)?;
                }
                Ok(n)
            })
            .map_err(|e| tx_error("revoke_client_secrets", e))?;
        if n > 0 {
            self.durable().await?;
        }
        Ok(n)
    }
}

#[async_trait]
impl AdminKeyStore for SledStore {
    async fn create_admin_key(&self, k: &AdminKey) -> Result<()> {
        let t = &self.shared.open()?.t;
        let id = k.id.as_str().as_bytes();
        let value = encode("admin key", k)?;
        let reach = key(&[chain_of(k.tenant_id.as_ref()), id]);
        (
            &t.admin_keys,
            &t.admin_keys_by_prefix,
            &t.admin_keys_by_tenant,
        )
            .transaction(|(keys, prefixes, by_tenant)| -> TxResult<()> {
                if keys.get(id)?.is_some() || prefixes.get(k.prefix.as_bytes())?.is_some() {
                    return abort(Error::already_exists("api_key"));
                }
                keys.insert(id, value.clone())?;
                prefixes.insert(k.prefix.as_bytes(), id)?;
                by_tenant.insert(reach.as_slice(), EMPTY)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_admin_key", e))?;
        self.durable().await
    }

    async fn get_admin_key_by_prefix(&self, p: &str) -> Result<AdminKey> {
        let t = &self.shared.open()?.t;
        let id = read(&t.admin_keys_by_prefix, p.as_bytes(), "admin key prefix")?
            .ok_or(Error::not_found("api_key"))?;
        record(&t.admin_keys, &id, "admin key")?.ok_or_else(|| dangling("admin key"))
    }

    async fn list_admin_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AdminKey>> {
        let t = &self.shared.open()?.t;
        let mut out = Vec::new();
        for k in t
            .admin_keys_by_tenant
            .scan_prefix(prefix(chain_of(tenant)))
            .keys()
        {
            let k = k.map_err(iter_error("admin keys"))?;
            let key: AdminKey = record(&t.admin_keys, after_sep(&k), "admin key")?
                .ok_or_else(|| dangling("admin key"))?;
            out.push(key);
        }
        Ok(out)
    }

    async fn revoke_admin_key(
        &self,
        id: &AdminKeyId,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Result<()> {
        self.change_admin_key(id, |k| {
            if k.revoked_at.is_none() {
                k.revoked_at = Some(at);
                k.revocation_reason = reason.map(str::to_owned);
            }
        })
        .await
    }

    async fn touch_admin_key(&self, id: &AdminKeyId, at: Timestamp, requests: u64) -> Result<()> {
        self.change_admin_key(id, |k| {
            k.last_used_at = Some(at);
            k.request_count = k.request_count.saturating_add(requests);
        })
        .await
    }
}

#[async_trait]
impl SigningKeyStore for SledStore {
    async fn put_signing_key(&self, k: &SigningKeyRecord) -> Result<()> {
        let value = encode("signing key", k)?;
        match self
            .shared
            .open()?
            .t
            .signing_keys
            .compare_and_swap(k.kid.as_bytes(), None::<&[u8]>, Some(value))
            .map_err(|e| sled_error("insert of a signing key", e))?
        {
            Ok(()) => self.durable().await,
            Err(_) => Err(Error::already_exists("signing_key")),
        }
    }

    async fn update_signing_key(&self, k: &SigningKeyRecord) -> Result<()> {
        let value = encode("signing key", k)?;
        let kid = k.kid.as_bytes();
        self.shared
            .open()?
            .t
            .signing_keys
            .transaction(|keys| -> TxResult<()> {
                if keys.get(kid)?.is_none() {
                    return abort(Error::not_found("signing_key"));
                }
                keys.insert(kid, value.clone())?;
                Ok(())
            })
            .map_err(|e| tx_error("update_signing_key", e))?;
        self.durable().await
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.shared
            .open()?
            .t
            .signing_keys
            .iter()
            .values()
            .map(|v| decode("signing key", &v.map_err(iter_error("signing keys"))?))
            .collect()
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<()> {
        let removed = self
            .shared
            .open()?
            .t
            .signing_keys
            .remove(kid.as_bytes())
            .map_err(|e| sled_error("delete of a signing key", e))?;
        if removed.is_some() {
            self.durable().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SettingStore for SledStore {
    async fn setting_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        let settings = &self.shared.open()?.t.settings;
        let stored = loop {
            match settings
                .compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(value))
                .map_err(|e| sled_error("insert of a setting", e))?
            {
                Ok(()) => break value.to_vec(),
                Err(found) => {
                    if let Some(current) = found.current {
                        break current.to_vec();
                    }
                    // Absent again: try the insert once more.
                }
            }
        };
        // Whoever inserted it may not have flushed yet; the value must be
        // durable before anyone uses it.
        self.durable().await?;
        Ok(stored)
    }
}

#[async_trait]
impl AuditLog for SledStore {
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let t = &self.shared.open()?.t;
        let chain = chain_of(event.tenant_id.as_ref());
        let at = i64_key(event.at.unix_micros());
        let sealed = (&t.audit, &t.audit_heads, &t.audit_by_time)
            .transaction(|(audit, heads, by_time)| -> TxResult<AuditEvent> {
                let head: Option<ChainHead> = match heads.get(chain)? {
                    Some(v) => Some(decode("audit head", &v).or_abort()?),
                    None => None,
                };
                let sealed = AuditEvent::seal(event.clone(), head.as_ref());
                audit.insert(
                    audit_key(chain, sealed.seq),
                    encode("audit event", &sealed).or_abort()?,
                )?;
                heads.insert(chain, encode("audit head", &sealed.head()).or_abort()?)?;
                let mut tk = prefix(chain);
                tk.extend_from_slice(&at);
                tk.extend_from_slice(&sealed.seq.to_be_bytes());
                by_time.insert(tk, EMPTY)?;
                Ok(sealed)
            })
            .map_err(|e| tx_error("append_audit", e))?;
        self.durable().await?;
        Ok(sealed)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let t = &self.shared.open()?.t;
        let after = query.after_seq()?;
        let size = query.page_size();
        let chain = chain_of(query.tenant_id.as_ref());
        let p = prefix(chain);
        let mut items = Vec::with_capacity(size + 1);
        let mut keep = |e: AuditEvent| {
            if query.matches(&e) {
                items.push((e.seq.to_string(), e));
            }
            items.len() > size
        };
        if query.from.is_some() || query.to.is_some() {
            // The time index bounds the scan; its hits are then read by seq.
            let lo = {
                let mut k = p.clone();
                if let Some(f) = query.from {
                    k.extend_from_slice(&i64_key(f.unix_micros()));
                }
                Bound::Included(k)
            };
            let hi = match query.to {
                Some(to) => {
                    let mut k = p.clone();
                    k.extend_from_slice(&i64_key(to.unix_micros()));
                    Bound::Excluded(k)
                }
                None => prefix_end(chain),
            };
            let mut seqs = Vec::new();
            for k in t.audit_by_time.range((lo, hi)).keys() {
                let k = k.map_err(iter_error("audit time index"))?;
                let seq = k
                    .len()
                    .checked_sub(8)
                    .and_then(|i| super::codec::u64_value(&k[i..]))
                    .ok_or_else(|| corrupt("audit time index key"))?;
                if seq > after {
                    seqs.push(seq);
                }
            }
            seqs.sort_unstable();
            for seq in seqs {
                let e: AuditEvent = record(&t.audit, &audit_key(chain, seq), "audit event")?
                    .ok_or_else(|| dangling("audit event"))?;
                if keep(e) {
                    break;
                }
            }
        } else if let Some(first) = after.checked_add(1) {
            let start = Bound::Included(audit_key(chain, first));
            for v in t.audit.range((start, prefix_end(chain))).values() {
                let v = v.map_err(iter_error("audit events"))?;
                if keep(decode("audit event", &v)?) {
                    break;
                }
            }
        }
        Ok(page_of(items, size))
    }

    async fn audit_head(&self, tenant: Option<&TenantId>) -> Result<Option<ChainHead>> {
        record(
            &self.shared.open()?.t.audit_heads,
            chain_of(tenant),
            "audit head",
        )
    }
}

#[async_trait]
impl MarkerStore for SledStore {
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let t = &self.shared.open()?.t;
        let mk = marker_key(namespace, key);
        let expires = expires_at.unix_micros();
        let stored = (&t.markers, &t.markers_by_expiry)
            .transaction(|(markers, by_expiry)| -> TxResult<bool> {
                if let Some(v) = markers.get(mk.as_slice())? {
                    let Some(exp) = i64_from_key(&v) else {
                        return abort(corrupt("marker"));
                    };
                    if exp > now.unix_micros() {
                        return Ok(false);
                    }
                    by_expiry.remove(marker_expiry_key(exp, &mk))?;
                }
                markers.insert(mk.as_slice(), &i64_key(expires))?;
                by_expiry.insert(marker_expiry_key(expires, &mk), EMPTY)?;
                Ok(true)
            })
            .map_err(|e| tx_error("put_marker", e))?;
        if stored {
            self.durable().await?;
        }
        Ok(stored)
    }

    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool> {
        match read(
            &self.shared.open()?.t.markers,
            &marker_key(namespace, key),
            "marker",
        )? {
            None => Ok(false),
            Some(v) => {
                let exp = i64_from_key(&v).ok_or_else(|| corrupt("marker"))?;
                Ok(exp > now.unix_micros())
            }
        }
    }

    async fn purge_markers(&self, now: Timestamp) -> Result<u64> {
        let t = &self.shared.open()?.t;
        let limit = i64_key(now.unix_micros());
        let mut purged = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(PURGE_CHUNK);
            for k in t.markers_by_expiry.iter().keys() {
                let k = k.map_err(iter_error("marker expiry index"))?;
                if k.len() < 8 || k[..8] > limit[..] || chunk.len() == PURGE_CHUNK {
                    break;
                }
                chunk.push(k);
            }
            if chunk.is_empty() {
                break;
            }
            purged += (&t.markers, &t.markers_by_expiry)
                .transaction(|(markers, by_expiry)| -> TxResult<u64> {
                    let mut n = 0;
                    for k in &chunk {
                        let (exp, mk) = k.split_at(8);
                        if markers.get(mk)?.as_deref() == Some(exp) {
                            markers.remove(mk)?;
                            n += 1;
                        }
                        by_expiry.remove(k)?;
                    }
                    Ok(n)
                })
                .map_err(|e| tx_error("purge_markers", e))?;
        }
        if purged > 0 {
            self.durable().await?;
        }
        Ok(purged)
    }
}

impl SledStore {
    /// Changes an admin key in place; `NotFound` if absent.
    async fn change_admin_key(
        &self,
        id: &AdminKeyId,
        change: impl Fn(&mut AdminKey),
    ) -> Result<()> {
        let id = id.as_str().as_bytes();
        self.shared
            .open()?
            .t
            .admin_keys
            .transaction(|keys| -> TxResult<()> {
                let Some(raw) = keys.get(id)? else {
                    return abort(Error::not_found("api_key"));
                };
                let mut k: AdminKey = decode("admin key", &raw).or_abort()?;
                change(&mut k);
                keys.insert(id, encode("admin key", &k).or_abort()?)?;
                Ok(())
            })
            .map_err(|e| tx_error("admin key change", e))?;
        self.durable().await
    }
}

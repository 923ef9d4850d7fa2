//! The marketplace directory on sled: the index trees of
//! [`sentryagent_core::marketplace_index`], kept in the transactions that
//! write agents and tenants, built at open for databases written before
//! them, and the search over them.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `marketplace_keys` | index key (`kind:value`), 0, agent id | ∅ |
//! | `marketplace_key_counts` | index key | u64: marketplace agents with it |
//! | `marketplace_publishers` | publisher key, 0, tenant id | ∅ |
//!
//! A search picks, among its filters, the one with the fewest agents (the
//! counts tree says; a prefix is the union of the values it covers) and
//! walks that filter's agents in id order from the cursor, merging the
//! ranges of a union; every candidate is checked against the other exact
//! filters in the index, then read and checked with
//! [`MarketplaceQuery::matches_listing`]. Publisher filters (`author`,
//! `verified`, publisher annotations) resolve to the matching tenants
//! first, whose `publisher` keys then act as one filter.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;

use ::sled::transaction::TransactionalTree;
use sentryagent_core::marketplace_index::{IndexKind, KeyMatch, agent_keys, publisher_keys};
use sentryagent_core::{Agent, Error, MarketplaceQuery, Page, PageRequest, Result, Tenant};

use super::Trees;
use super::codec::{TxResult, counter, decode, key, prefix, sled_error};
use super::store::{EMPTY, SledStore, iter_error, page_of, prefix_end, record};

/// The meta key holding the version of the index layout.
const INDEX_META: &str = "marketplace_index";

/// The version of the index layout (and of the keys' derivation): a
/// database whose meta key holds another value has its index rebuilt at
/// open.
const INDEX_VERSION: &[u8] = b"1";

/// Distinct values a prefix filter may cover and still be merged range by
/// range; a wider prefix collects its agents instead.
const MAX_MERGED_RANGES: usize = 512;

/// Applies the change of an agent's index keys from `old` to `new`, in a
/// transaction over `marketplace_keys` and `marketplace_key_counts`.
pub(super) fn write_agent_keys(
    keys: &TransactionalTree,
    counts: &TransactionalTree,
    id: &[u8],
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> TxResult<()> {
    for k in old.difference(new) {
        keys.remove(key(&[k.as_bytes(), id]))?;
        let n = counter("marketplace key", counts.get(k.as_bytes())?.as_deref())
            .map_err(::sled::transaction::ConflictableTransactionError::Abort)?;
        if n <= 1 {
            counts.remove(k.as_bytes())?;
        } else {
            counts.insert(k.as_bytes(), &(n - 1).to_be_bytes())?;
        }
    }
    for k in new.difference(old) {
        keys.insert(key(&[k.as_bytes(), id]), EMPTY)?;
        let n = counter("marketplace key", counts.get(k.as_bytes())?.as_deref())
            .map_err(::sled::transaction::ConflictableTransactionError::Abort)?;
        counts.insert(k.as_bytes(), &(n + 1).to_be_bytes())?;
    }
    Ok(())
}

/// Applies the change of a tenant's publisher keys, in a transaction over
/// `marketplace_publishers`.
pub(super) fn write_publisher_keys(
    publishers: &TransactionalTree,
    id: &[u8],
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> TxResult<()> {
    for k in old.difference(new) {
        publishers.remove(key(&[k.as_bytes(), id]))?;
    }
    for k in new.difference(old) {
        publishers.insert(key(&[k.as_bytes(), id]), EMPTY)?;
    }
    Ok(())
}

/// Builds the index trees from the agents and tenants unless they hold the
/// current layout: at open, before any handle exists, for databases
/// written before the index (or by another layout). Each tree is written
/// in one atomic batch; the version is recorded last, so an interrupted
/// build is redone at the next open.
pub(super) fn build_index(t: &Trees) -> Result<()> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: ::sled::Error| sled_error(&format!("marketplace index build: {what}"), e)
    };
    if t.meta.get(INDEX_META).map_err(err("meta"))?.as_deref() == Some(INDEX_VERSION) {
        return Ok(());
    }
    t.marketplace_keys.clear().map_err(err("clear"))?;
    t.marketplace_key_counts.clear().map_err(err("clear"))?;
    t.marketplace_publishers.clear().map_err(err("clear"))?;
    let mut keys = ::sled::Batch::default();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for raw in t.agents.iter().values() {
        let raw = raw.map_err(err("agents"))?;
        let agent: Agent = decode("agent", &raw)?;
        for k in agent_keys(&agent) {
            keys.insert(key(&[k.as_bytes(), agent.id.as_str().as_bytes()]), EMPTY);
            *counts.entry(k).or_default() += 1;
        }
    }
    let mut count_batch = ::sled::Batch::default();
    for (k, n) in counts {
        count_batch.insert(k.as_bytes(), &n.to_be_bytes());
    }
    let mut publishers = ::sled::Batch::default();
    for raw in t.tenants.iter().values() {
        let raw = raw.map_err(err("tenants"))?;
        let tenant: Tenant = decode("tenant", &raw)?;
        for k in publisher_keys(&tenant) {
            publishers.insert(key(&[k.as_bytes(), tenant.id.as_str().as_bytes()]), EMPTY);
        }
    }
    t.marketplace_keys.apply_batch(keys).map_err(err("keys"))?;
    t.marketplace_key_counts
        .apply_batch(count_batch)
        .map_err(err("counts"))?;
    t.marketplace_publishers
        .apply_batch(publishers)
        .map_err(err("publishers"))?;
    t.meta
        .insert(INDEX_META, INDEX_VERSION)
        .map_err(err("meta"))?;
    Ok(())
}

/// Index keys with their counts.
type KeyCounts = Vec<(Vec<u8>, u64)>;

/// Where a search takes its candidates from.
enum Driver {
    /// The agents of one index key.
    Key(Vec<u8>),
    /// The agents of any of these index keys.
    Union(Vec<Vec<u8>>),
    /// Agents collected beforehand, ascending (past the cursor).
    Collected(BTreeSet<Vec<u8>>),
}

/// A merge, ascending and without repeats, of sorted id streams.
struct Merge<I: Iterator<Item = Result<Vec<u8>>>> {
    heads: BinaryHeap<std::cmp::Reverse<(Vec<u8>, usize)>>,
    streams: Vec<I>,
    last: Option<Vec<u8>>,
    failed: Option<Error>,
}

impl<I: Iterator<Item = Result<Vec<u8>>>> Merge<I> {
    fn new(streams: Vec<I>) -> Self {
        let mut m = Merge {
            heads: BinaryHeap::new(),
            streams,
            last: None,
            failed: None,
        };
        for i in 0..m.streams.len() {
            m.pull(i);
        }
        m
    }

    fn pull(&mut self, i: usize) {
        match self.streams[i].next() {
            Some(Ok(id)) => self.heads.push(std::cmp::Reverse((id, i))),
            Some(Err(e)) => self.failed = Some(e),
            None => {}
        }
    }
}

impl<I: Iterator<Item = Result<Vec<u8>>>> Iterator for Merge<I> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.failed.take() {
                return Some(Err(e));
            }
            let std::cmp::Reverse((id, i)) = self.heads.pop()?;
            self.pull(i);
            if self.last.as_ref() != Some(&id) {
                self.last = Some(id.clone());
                return Some(Ok(id));
            }
        }
    }
}

impl SledStore {
    /// Agents with index key `k` past `cursor`, ascending.
    fn key_ids<'a>(
        t: &'a Trees,
        k: &'a [u8],
        cursor: Option<&str>,
    ) -> impl Iterator<Item = Result<Vec<u8>>> + 'a {
        let p = prefix(k);
        let start = match cursor {
            Some(c) => {
                let mut s = p.clone();
                s.extend_from_slice(c.as_bytes());
                Bound::Excluded(s)
            }
            None => Bound::Included(p.clone()),
        };
        let skip = p.len();
        t.marketplace_keys
            .range((start, prefix_end(k)))
            .keys()
            .map(move |r| {
                r.map(|key| key[skip..].to_vec())
                    .map_err(iter_error("marketplace keys"))
            })
    }

    /// How many marketplace agents have index key `k`.
    fn key_count(&self, k: &[u8]) -> Result<u64> {
        let v = self
            .shared
            .open()?
            .t
            .marketplace_key_counts
            .get(k)
            .map_err(|e| sled_error("read of a marketplace key count", e))?;
        counter("marketplace key", v.as_deref())
    }

    /// The index keys starting with `p` (from the counts tree) with their
    /// counts; `None` when there are more than `max`.
    fn keys_with_prefix(&self, p: &str, max: usize) -> Result<Option<KeyCounts>> {
        let mut out = Vec::new();
        for item in self
            .shared
            .open()?
            .t
            .marketplace_key_counts
            .scan_prefix(p.as_bytes())
        {
            let (k, v) = item.map_err(iter_error("marketplace key counts"))?;
            if out.len() == max {
                return Ok(None);
            }
            out.push((k.to_vec(), counter("marketplace key", Some(&v))?));
        }
        Ok(Some(out))
    }

    /// The tenants whose publisher keys satisfy every filter.
    fn publishers_matching(&self, filters: &[KeyMatch]) -> Result<BTreeSet<Vec<u8>>> {
        let mut found: Option<BTreeSet<Vec<u8>>> = None;
        for f in filters {
            let scan = match f {
                KeyMatch::Exact(k) => prefix(k.as_bytes()),
                KeyMatch::Prefix(p) => p.as_bytes().to_vec(),
            };
            let mut hits = BTreeSet::new();
            for k in self
                .shared
                .open()?
                .t
                .marketplace_publishers
                .scan_prefix(scan)
            {
                let k = k.map_err(iter_error("marketplace publishers"))?.0;
                let id = k
                    .iter()
                    .rposition(|&b| b == super::codec::SEP)
                    .map_or(&k[..], |i| &k[i + 1..]);
                if found.as_ref().is_none_or(|f| f.contains(id)) {
                    hits.insert(id.to_vec());
                }
            }
            found = Some(hits);
        }
        Ok(found.unwrap_or_default())
    }

    /// The agents of the keys of `matches`, past the cursor, collected.
    fn collect_ids(&self, m: &KeyMatch, cursor: Option<&str>) -> Result<BTreeSet<Vec<u8>>> {
        let scan = match m {
            KeyMatch::Exact(k) => prefix(k.as_bytes()),
            KeyMatch::Prefix(p) => p.as_bytes().to_vec(),
        };
        let mut out = BTreeSet::new();
        for k in self
            .shared
            .open()?
            .t
            .marketplace_keys
            .scan_prefix(scan)
            .keys()
        {
            let k = k.map_err(iter_error("marketplace keys"))?;
            let id = k
                .iter()
                .rposition(|&b| b == super::codec::SEP)
                .map_or(&k[..], |i| &k[i + 1..]);
            if cursor.is_none_or(|c| id > c.as_bytes()) {
                out.insert(id.to_vec());
            }
        }
        Ok(out)
    }

    /// A search with index filters (see the module docs); `None` when the
    /// query has none.
    pub(super) fn directory_search(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Option<Page<Agent>>> {
        let plan = query.index_plan();
        if plan.is_empty() {
            return Ok(None);
        }
        let open = self.shared.open()?;
        let t = &open.t;
        let size = page.size();
        let cursor = page.cursor.as_deref();
        let empty = || {
            Ok(Some(Page {
                items: vec![],
                next_cursor: None,
            }))
        };
        // Candidate drivers with their estimated sizes.
        let mut best: Option<(u64, Driver)> = None;
        let mut consider = |n: u64, d: Driver| {
            if best.as_ref().is_none_or(|(m, _)| n < *m) {
                best = Some((n, d));
            }
        };
        for m in &plan.agent {
            match m {
                KeyMatch::Exact(k) => {
                    let n = self.key_count(k.as_bytes())?;
                    if n == 0 {
                        return empty();
                    }
                    consider(n, Driver::Key(k.as_bytes().to_vec()));
                }
                KeyMatch::Prefix(p) => match self.keys_with_prefix(p, MAX_MERGED_RANGES)? {
                    Some(keys) if keys.is_empty() => return empty(),
                    Some(keys) => {
                        let n = keys.iter().map(|(_, n)| n).sum();
                        consider(n, Driver::Union(keys.into_iter().map(|(k, _)| k).collect()));
                    }
                    None => consider(u64::MAX - 1, Driver::Collected(BTreeSet::new())),
                },
            }
        }
        if !plan.publisher.is_empty() {
            let tenants = self.publishers_matching(&plan.publisher)?;
            if tenants.is_empty() {
                return empty();
            }
            let mut keys = Vec::with_capacity(tenants.len());
            let mut n = 0u64;
            for t in &tenants {
                let mut k = IndexKind::Publisher.prefix().into_bytes();
                k.extend_from_slice(t);
                n = n.saturating_add(self.key_count(&k)?);
                keys.push(k);
            }
            if n == 0 {
                return empty();
            }
            consider(n, Driver::Union(keys));
        }
        let Some((_, mut driver)) = best else {
            return Ok(None);
        };
        if let Driver::Collected(_) = driver {
            // Every filter is a wide prefix: collect the first one's agents.
            let first = plan.agent.first().ok_or_else(|| Error::Internal {
                message: "sled: a marketplace plan without agent filters".into(),
                source: None,
            })?;
            driver = Driver::Collected(self.collect_ids(first, cursor)?);
        }
        let driver_key = match &driver {
            Driver::Key(k) => Some(k.clone()),
            _ => None,
        };
        // Exact filters checked in the index before reading the agent.
        let exact: Vec<&[u8]> = plan
            .agent
            .iter()
            .filter_map(|m| match m {
                KeyMatch::Exact(k) if Some(k.as_bytes()) != driver_key.as_deref() => {
                    Some(k.as_bytes())
                }
                _ => None,
            })
            .collect();
        let ids: Box<dyn Iterator<Item = Result<Vec<u8>>> + '_> = match &driver {
            Driver::Key(k) => Box::new(Self::key_ids(t, k, cursor)),
            Driver::Union(keys) => Box::new(Merge::new(
                keys.iter().map(|k| Self::key_ids(t, k, cursor)).collect(),
            )),
            Driver::Collected(ids) => Box::new(ids.iter().cloned().map(Ok)),
        };
        let matcher = query.matcher();
        let needs_tenant = matcher.filters_publisher();
        let mut tenants: HashMap<String, Option<Tenant>> = HashMap::new();
        let mut out = Vec::with_capacity(size + 1);
        'candidates: for id in ids {
            let id = id?;
            for k in &exact {
                let hit = t
                    .marketplace_keys
                    .contains_key(key(&[k, &id]))
                    .map_err(|e| sled_error("read of a marketplace key", e))?;
                if !hit {
                    continue 'candidates;
                }
            }
            // The index may name an agent changed since: read and re-check.
            let Some(agent) = record::<Agent>(&t.agents, &id, "agent")? else {
                continue;
            };
            let tenant = if needs_tenant {
                let tid = agent.tenant_id.as_str().to_owned();
                if !tenants.contains_key(&tid) {
                    let t = record::<Tenant>(&t.tenants, tid.as_bytes(), "tenant")?;
                    tenants.insert(tid.clone(), t);
                }
                tenants.get(&tid).and_then(Option::as_ref)
            } else {
                None
            };
            if matcher.matches_listing(&agent, tenant) {
                out.push((agent.id.to_string(), agent));
                if out.len() > size {
                    break;
                }
            }
        }
        Ok(Some(page_of(out, size)))
    }

    /// Marketplace agents per key of `kind`, from the counts tree.
    pub(super) fn key_counts(&self, kind: IndexKind) -> Result<Vec<(String, u64)>> {
        let p = kind.prefix();
        let mut out = Vec::new();
        for item in self
            .shared
            .open()?
            .t
            .marketplace_key_counts
            .scan_prefix(p.as_bytes())
        {
            let (k, v) = item.map_err(iter_error("marketplace key counts"))?;
            let n = counter("marketplace key", Some(&v))?;
            if n > 0 {
                let value = String::from_utf8_lossy(&k[p.len()..]).into_owned();
                out.push((value, n));
            }
        }
        Ok(out)
    }
}

//! The marketplace directory on sled: the index trees of
//! [`sentryagent_core::marketplace_index`], kept in the transactions that
//! write agents and tenants, built at open for databases written before
//! them, and the search over them.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `marketplace_terms` | search word, 0, first agent id of the block | a block: up to 32 agent ids, ascending, joined by 0 |
//! | `marketplace_keys` | index key (`kind:value`), 0, first agent id of the block | a block, as above |
//! | `marketplace_key_counts` | index key of a counted kind | u64: marketplace agents with it |
//! | `marketplace_publishers` | publisher key, 0, tenant id | ∅ |
//!
//! The blocks (layout version 2; see the `postings` module) replace the
//! first layout's one key per word or key and agent: sled's memory grows
//! with its number of keys, and most of an agent's keys were postings of
//! words and keys shared with many others. For the same reason the kinds
//! whose keys are (nearly) unique to an agent (`agent`, `name`, `locator`,
//! `annotation`: [`UNCOUNTED`]) have no count: a search sizes such a key
//! from its first blocks, and [`SledStore::key_counts`] of such a kind
//! reads its blocks. And the keys an agent has by its id alone
//! (`agent:<id>`, its two `locator:` paths and its `sentryagent.agent_id`
//! annotation) are not stored when the id has no upper-case letter: a
//! filter on them is answered from the `marketplace` tree, which is keyed
//! by id (an exact id is one read, an id prefix a range; a prefix that
//! every agent's keys share filters nothing), together with the stored
//! keys of the agents whose ids have upper-case letters.
//!
//! A search turns each filter into a posting (its agents in id order, see
//! the `postings` module): an exact key is the blocks of one key of
//! `marketplace_keys`; a key prefix the blocks of the keys it covers (the
//! counts tree names them, or for an uncounted kind one seek per key);
//! publisher filters (`author`, `verified`, publisher annotations) the
//! blocks of the `publisher` keys of the matching tenants; a word of the
//! text the blocks of `marketplace_terms` of the words starting with it
//! (one seek per word). The postings are intersected by leapfrogging from
//! the cursor, and every id they agree on is read and checked with
//! [`MarketplaceQuery::matches_listing`] until the page (and one more, to
//! know whether there is a next page) is full. A search thus reads index
//! blocks up to the end of its page, not the whole posting list of a
//! common word.
//!
//! A filter covering more than `MAX_MERGED_RANGES` words or keys is
//! collected instead (its ids past the cursor, at most
//! `MAX_COLLECTED`); one with more ids still is not intersected but
//! left to the re-check. When no filter is left (no filter at all, or
//! only such wide ones), the search walks the `marketplace` tree in id
//! order from the cursor and re-checks each agent: a wide filter matches
//! many agents, so a page fills after about its size divided by the
//! share of agents matching.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use ::sled::transaction::TransactionalTree;
use sentryagent_core::marketplace_index::{
    IndexKind, KeyMatch, agent_keys, locator_paths, publisher_keys,
};
use sentryagent_core::{Agent, MarketplaceQuery, Page, PageRequest, Result, Tenant};

use super::Trees;
use super::bulk::market_words;
use super::codec::{SEP, TxResult, counter, decode, key, prefix, sled_error};
use super::postings::{
    Intersection, MAX_BLOCK, Posting, PostingEdits, Sub, block_ids, block_value,
};
use super::store::{EMPTY, SledStore, iter_error, page_of, record, start_after};

/// The meta key holding the version of the index layout.
const INDEX_META: &str = "marketplace_index";

/// The version of the index layout (and of the keys' derivation): a
/// database whose meta key holds another value has its index rebuilt at
/// open.
const INDEX_VERSION: &[u8] = b"2";

/// Distinct values (words, keys, publishers) a filter may cover and still
/// be merged range by range; a wider filter collects its agents instead.
/// (Smaller in unit tests, so that small stores take every path.)
const MAX_MERGED_RANGES: usize = if cfg!(test) { 16 } else { 512 };

/// Index entries a wide filter may read to collect its agents; a filter
/// with more is not intersected, only re-checked on each candidate.
const MAX_COLLECTED: usize = if cfg!(test) { 100 } else { 50_000 };

/// The change of an agent's index keys from `old` to `new`, as posting
/// edits.
pub(super) fn edit_agent_keys(
    keys: &mut PostingEdits,
    id: &[u8],
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) {
    let derived = derived_keys(id);
    let stored = |k: &&String| !derived.contains(k);
    for k in old.difference(new).filter(stored) {
        keys.remove(k.as_bytes(), id);
    }
    for k in new.difference(old).filter(stored) {
        keys.add(k.as_bytes(), id);
    }
}

/// Where every agent's locator paths start ([`locator_paths`]).
const LOCATOR_ENTRY: &str = "/v1/marketplace/agents/";
/// What the card's locator path adds to the entry's.
const LOCATOR_CARD: &str = "/agent-card.json";

/// The index keys that agent `id` has by its id alone (`agent:<id>`, its
/// two `locator:` paths and its `sentryagent.agent_id` annotation), when
/// they can be read back from the id: the id has no upper-case letter
/// (keys are lower-cased). These keys are not stored: the `marketplace`
/// tree, keyed by id, answers them (see [`Derived`]). An id with
/// upper-case letters has them stored.
fn derived_keys(id: &[u8]) -> Vec<String> {
    let Ok(id) = std::str::from_utf8(id) else {
        return Vec::new();
    };
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        return Vec::new();
    }
    let mut keys = vec![
        IndexKind::Agent.key(id),
        IndexKind::Annotation.key(&format!("{ID_ANNOTATION}{id}")),
    ];
    keys.extend(
        locator_paths(id)
            .iter()
            .map(|p| IndexKind::Locator.key(&p.to_lowercase())),
    );
    keys
}

/// The annotation every marketplace agent has with its id as value
/// ([`oasf::agent_annotations`](sentryagent_core::oasf::agent_annotations)),
/// up to the id.
const ID_ANNOTATION: &str = "sentryagent.agent_id=";

/// The agents a filter of kind `agent` or `locator`, or on the
/// `sentryagent.agent_id` annotation, matches through their derived
/// (unstored) keys.
#[derive(Debug, PartialEq)]
enum Derived {
    /// None (no id gives such a key).
    Nothing,
    /// The agent with this id.
    Id(Vec<u8>),
    /// The agents whose ids start with this.
    IdPrefix(Vec<u8>),
    /// Every agent.
    All,
}

/// What `m` matches through derived keys; `None` when it can match no
/// derived key (other kinds, other annotations).
fn derived_match(m: &KeyMatch) -> Option<Derived> {
    let (value, exact) = match m {
        KeyMatch::Exact(k) => (k.as_str(), true),
        KeyMatch::Prefix(p) => (p.as_str(), false),
    };
    let id_ok = |id: &str| !id.is_empty() && !id.contains('/');
    if let Some(v) = value.strip_prefix(&IndexKind::Annotation.prefix()) {
        return match v.strip_prefix(ID_ANNOTATION) {
            Some(id) if exact && id_ok(id) => Some(Derived::Id(id.as_bytes().to_vec())),
            Some(_) if exact => Some(Derived::Nothing),
            Some("") => Some(Derived::All),
            Some(id) => Some(Derived::IdPrefix(id.as_bytes().to_vec())),
            // Every agent has the annotation: a prefix of its name
            // matches them all.
            None if !exact && ID_ANNOTATION.starts_with(v) => Some(Derived::All),
            None => None,
        };
    }
    if let Some(v) = value.strip_prefix(&IndexKind::Agent.prefix()) {
        return Some(match (exact, v.is_empty()) {
            (true, _) if id_ok(v) => Derived::Id(v.as_bytes().to_vec()),
            (true, _) => Derived::Nothing,
            (false, true) => Derived::All,
            (false, false) => Derived::IdPrefix(v.as_bytes().to_vec()),
        });
    }
    let v = value.strip_prefix(&IndexKind::Locator.prefix())?;
    let Some(rest) = v.strip_prefix(LOCATOR_ENTRY) else {
        return Some(if !exact && LOCATOR_ENTRY.starts_with(v) {
            Derived::All
        } else {
            Derived::Nothing
        });
    };
    Some(match rest.find('/') {
        // An id, then a tail: the card's path (or, for a prefix, its start).
        Some(slash) => {
            let (id, tail) = rest.split_at(slash);
            let fits = if exact {
                tail == LOCATOR_CARD
            } else {
                LOCATOR_CARD.starts_with(tail)
            };
            if fits && id_ok(id) {
                Derived::Id(id.as_bytes().to_vec())
            } else {
                Derived::Nothing
            }
        }
        None if exact && id_ok(rest) => Derived::Id(rest.as_bytes().to_vec()),
        None if exact => Derived::Nothing,
        None if rest.is_empty() => Derived::All,
        None => Derived::IdPrefix(rest.as_bytes().to_vec()),
    })
}

/// The kinds whose keys are (nearly) unique to an agent: their agents are
/// not counted in `marketplace_key_counts` (a count per agent would cost
/// a sled key per agent and key for counts that are almost all 1; see the
/// module docs). Searches size them from their blocks instead.
const UNCOUNTED: [IndexKind; 4] = [
    IndexKind::Agent,
    IndexKind::Name,
    IndexKind::Locator,
    IndexKind::Annotation,
];

/// Whether index key (or key prefix) `k` has its agents counted in
/// `marketplace_key_counts`: its kind is not in [`UNCOUNTED`]. A prefix
/// that does not name its kind whole (no `:`) is not.
fn counted(k: &[u8]) -> bool {
    let Some(colon) = k.iter().position(|&b| b == b':') else {
        return false;
    };
    let kind = &k[..colon];
    !UNCOUNTED.iter().any(|u| u.as_str().as_bytes() == kind)
}

/// The change of an agent's index keys from `old` to `new` in their
/// counts (the counted kinds), in a transaction over
/// `marketplace_key_counts`.
pub(super) fn write_key_counts(
    counts: &TransactionalTree,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> TxResult<()> {
    for k in old.difference(new).filter(|k| counted(k.as_bytes())) {
        let n = counter("marketplace key", counts.get(k.as_bytes())?.as_deref())
            .map_err(::sled::transaction::ConflictableTransactionError::Abort)?;
        if n <= 1 {
            counts.remove(k.as_bytes())?;
        } else {
            counts.insert(k.as_bytes(), &(n - 1).to_be_bytes())?;
        }
    }
    for k in new.difference(old).filter(|k| counted(k.as_bytes())) {
        let n = counter("marketplace key", counts.get(k.as_bytes())?.as_deref())
            .map_err(::sled::transaction::ConflictableTransactionError::Abort)?;
        counts.insert(k.as_bytes(), &(n + 1).to_be_bytes())?;
    }
    Ok(())
}

/// The change of an agent's search words from `old` to `new`, as posting
/// edits.
pub(super) fn edit_agent_words(
    terms: &mut PostingEdits,
    id: &[u8],
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) {
    for w in old.difference(new) {
        terms.remove(w.as_bytes(), id);
    }
    for w in new.difference(old) {
        terms.add(w.as_bytes(), id);
    }
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

/// Blocks written per batch while the index is built.
const BUILD_BATCH: usize = 10_000;

/// The blocks of one index tree while it is built from the agents in id
/// order: each part's open block, written out when full.
struct BlockBuilder<'a> {
    tree: &'a ::sled::Tree,
    open: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    batch: ::sled::Batch,
    queued: usize,
}

impl<'a> BlockBuilder<'a> {
    fn new(tree: &'a ::sled::Tree) -> Self {
        BlockBuilder {
            tree,
            open: HashMap::new(),
            batch: ::sled::Batch::default(),
            queued: 0,
        }
    }

    /// Adds `id`, greater than every id added before, to `part`.
    fn push(&mut self, part: &[u8], id: &[u8]) -> ::sled::Result<()> {
        let block = self.open.entry(part.to_vec()).or_default();
        block.push(id.to_vec());
        if block.len() == MAX_BLOCK {
            let ids = std::mem::take(block);
            self.queue(part, &ids)?;
        }
        Ok(())
    }

    fn queue(&mut self, part: &[u8], ids: &[Vec<u8>]) -> ::sled::Result<()> {
        self.batch.insert(key(&[part, &ids[0]]), block_value(ids));
        self.queued += 1;
        if self.queued == BUILD_BATCH {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.queued = 0;
        }
        Ok(())
    }

    /// Writes the blocks still open.
    fn finish(mut self) -> ::sled::Result<()> {
        for (part, ids) in std::mem::take(&mut self.open) {
            if !ids.is_empty() {
                self.queue(&part, &ids)?;
            }
        }
        self.tree.apply_batch(self.batch)
    }
}

/// Builds the index trees (words, directory keys, counts, publishers) from
/// the agents and tenants unless they hold the current layout: at open,
/// before any handle exists, for databases written before the index or by
/// another layout (version 1 kept one key per word or key and agent). The
/// trees are cleared first and the version is recorded last, so an
/// interrupted build is redone from the start at the next open.
pub(super) fn build_index(t: &Trees) -> Result<()> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: ::sled::Error| sled_error(&format!("marketplace index build: {what}"), e)
    };
    if t.meta.get(INDEX_META).map_err(err("meta"))?.as_deref() == Some(INDEX_VERSION) {
        return Ok(());
    }
    t.marketplace_terms.clear().map_err(err("clear"))?;
    t.marketplace_keys.clear().map_err(err("clear"))?;
    t.marketplace_key_counts.clear().map_err(err("clear"))?;
    t.marketplace_publishers.clear().map_err(err("clear"))?;
    let mut words = BlockBuilder::new(&t.marketplace_terms);
    let mut keys = BlockBuilder::new(&t.marketplace_keys);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    // The agents tree is in id order, so each part's ids come ascending.
    for raw in t.agents.iter().values() {
        let raw = raw.map_err(err("agents"))?;
        let agent: Agent = decode("agent", &raw)?;
        let id = agent.id.as_str().as_bytes();
        for w in market_words(&agent) {
            words.push(w.as_bytes(), id).map_err(err("words"))?;
        }
        let derived = derived_keys(id);
        for k in agent_keys(&agent) {
            if !derived.contains(&k) {
                keys.push(k.as_bytes(), id).map_err(err("keys"))?;
            }
            if counted(k.as_bytes()) {
                *counts.entry(k).or_default() += 1;
            }
        }
    }
    words.finish().map_err(err("words"))?;
    keys.finish().map_err(err("keys"))?;
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

impl SledStore {
    /// How many marketplace agents have index key `k`: counted, or for
    /// an [`UNCOUNTED`] kind read from its first blocks (exact up to
    /// [`SIZED_BLOCKS`] blocks; past them a lower bound).
    fn key_count(&self, k: &[u8]) -> Result<u64> {
        let t = &self.shared.open()?.t;
        if !counted(k) {
            return part_size(&t.marketplace_keys, k);
        }
        let v = t
            .marketplace_key_counts
            .get(k)
            .map_err(|e| sled_error("read of a marketplace key count", e))?;
        counter("marketplace key", v.as_deref())
    }

    /// The index keys starting with `p` with their counts (from the counts
    /// tree, or for an [`UNCOUNTED`] kind from the keys' blocks, one seek
    /// per key); `None` when there are more than `max`.
    fn keys_with_prefix(&self, p: &str, max: usize) -> Result<Option<KeyCounts>> {
        let t = &self.shared.open()?.t;
        if !counted(p.as_bytes()) {
            let Some(parts) = parts_with_prefix(&t.marketplace_keys, p.as_bytes(), max)? else {
                return Ok(None);
            };
            return parts
                .into_iter()
                .map(|k| {
                    let n = part_size(&t.marketplace_keys, &k)?;
                    Ok((k, n))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some);
        }
        let mut out = Vec::new();
        for item in t.marketplace_key_counts.scan_prefix(p.as_bytes()) {
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

    /// The ids ≥ `from` of the blocks yielded by `blocks`, or `None` once
    /// more than [`MAX_COLLECTED`] ids were read.
    fn collect_ids(
        blocks: impl Iterator<Item = ::sled::Result<(::sled::IVec, ::sled::IVec)>>,
        from: &[u8],
        read: &mut usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<bool> {
        for block in blocks {
            let (_, value) = block.map_err(iter_error("marketplace index"))?;
            for id in block_ids(&value) {
                *read += 1;
                if *read > MAX_COLLECTED {
                    return Ok(false);
                }
                if id >= from {
                    out.push(id.to_vec());
                }
            }
        }
        Ok(true)
    }

    /// The posting of the parts `parts` of `tree` (or of every part
    /// starting with `scan_prefix`): merged when they are few, else
    /// collected when they hold at most [`MAX_COLLECTED`] ids, else `None`
    /// (the filter is left to the re-check).
    fn posting_of(
        tree: &::sled::Tree,
        parts: Option<&[Vec<u8>]>,
        scan_prefix: &[u8],
        from: &[u8],
    ) -> Result<Option<Posting>> {
        if let Some(parts) = parts.filter(|p| p.len() <= MAX_MERGED_RANGES) {
            return Posting::merged(tree, parts, from).map(Some);
        }
        let mut read = 0;
        let mut ids = Vec::new();
        let complete = match parts {
            Some(parts) => {
                let mut complete = true;
                for p in parts {
                    let mut sub = Sub::new(tree, p, from)?;
                    while let Some(id) = sub.pull()? {
                        read += 1;
                        if read > MAX_COLLECTED {
                            complete = false;
                            break;
                        }
                        ids.push(id);
                    }
                    if !complete {
                        break;
                    }
                }
                complete
            }
            None => Self::collect_ids(tree.scan_prefix(scan_prefix), from, &mut read, &mut ids)?,
        };
        Ok(complete.then(|| Posting::collected(ids)))
    }

    /// The ids ≥ `from` that filter `m` (of kind `agent` or `locator`)
    /// matches: through derived keys (`derived`, from the `marketplace`
    /// tree), and stored ones (agents whose ids have upper-case letters);
    /// `None` when they are too many to collect (the filter is left to the
    /// re-check).
    fn derived_posting(
        t: &Trees,
        m: &KeyMatch,
        derived: Derived,
        from: &[u8],
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let mut ids = Vec::new();
        match derived {
            Derived::Nothing => {}
            Derived::All => return Ok(None),
            Derived::Id(id) => {
                let listed = t
                    .marketplace
                    .contains_key(&id)
                    .map_err(|e| sled_error("read of the marketplace", e))?;
                if listed && id.as_slice() >= from {
                    ids.push(id);
                }
            }
            Derived::IdPrefix(p) => {
                let lo = if p.as_slice() > from {
                    p.clone()
                } else {
                    from.to_vec()
                };
                for k in t.marketplace.range(lo..).keys() {
                    let k = k.map_err(iter_error("marketplace"))?;
                    if !k.starts_with(&p) {
                        break;
                    }
                    if ids.len() == MAX_COLLECTED {
                        return Ok(None);
                    }
                    ids.push(k.to_vec());
                }
            }
        }
        let parts = match m {
            KeyMatch::Exact(k) => Some(vec![k.as_bytes().to_vec()]),
            KeyMatch::Prefix(p) => {
                parts_with_prefix(&t.marketplace_keys, p.as_bytes(), MAX_MERGED_RANGES)?
            }
        };
        let Some(parts) = parts else {
            return Ok(None);
        };
        for part in parts {
            let mut sub = Sub::new(&t.marketplace_keys, &part, from)?;
            while let Some(id) = sub.pull()? {
                if ids.len() == MAX_COLLECTED {
                    return Ok(None);
                }
                ids.push(id);
            }
        }
        Ok(Some(ids))
    }

    /// A marketplace search (see the module docs).
    pub(super) fn market_search(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let plan = query.index_plan();
        let open = self.shared.open()?;
        let t = &open.t;
        let size = page.size();
        let cursor = page.cursor.as_deref().map(str::as_bytes);
        // Every id from here on is ≥ `from` (after the cursor).
        let from = cursor.map_or_else(Vec::new, |c| key(&[c, &[]]));
        let empty = || {
            Ok(Page {
                items: vec![],
                next_cursor: None,
            })
        };
        // Postings with their estimated sizes (text words: unknown).
        let mut postings: Vec<(u64, Posting)> = Vec::new();
        for m in &plan.agent {
            if let Some(derived) = derived_match(m) {
                match Self::derived_posting(t, m, derived, &from)? {
                    None => {}
                    Some(ids) if ids.is_empty() => return empty(),
                    Some(ids) => postings.push((ids.len() as u64, Posting::collected(ids))),
                }
                continue;
            }
            match m {
                KeyMatch::Exact(k) => {
                    let n = self.key_count(k.as_bytes())?;
                    if n == 0 {
                        return empty();
                    }
                    let parts = [k.as_bytes().to_vec()];
                    if let Some(p) =
                        Self::posting_of(&t.marketplace_keys, Some(&parts), &[], &from)?
                    {
                        postings.push((n, p));
                    }
                }
                KeyMatch::Prefix(p) => {
                    let keys = self.keys_with_prefix(p, MAX_MERGED_RANGES)?;
                    if keys.as_ref().is_some_and(Vec::is_empty) {
                        return empty();
                    }
                    let n = keys
                        .as_ref()
                        .map_or(u64::MAX - 1, |k| k.iter().map(|(_, n)| n).sum());
                    let parts: Option<Vec<Vec<u8>>> =
                        keys.map(|k| k.into_iter().map(|(k, _)| k).collect());
                    if let Some(posting) = Self::posting_of(
                        &t.marketplace_keys,
                        parts.as_deref(),
                        p.as_bytes(),
                        &from,
                    )? {
                        postings.push((n, posting));
                    }
                }
            }
        }
        if !plan.publisher.is_empty() {
            let tenants = self.publishers_matching(&plan.publisher)?;
            if tenants.is_empty() {
                return empty();
            }
            let mut parts = Vec::with_capacity(tenants.len());
            let mut n = 0u64;
            for tenant in &tenants {
                let mut k = IndexKind::Publisher.prefix().into_bytes();
                k.extend_from_slice(tenant);
                if tenants.len() <= MAX_MERGED_RANGES {
                    n = n.saturating_add(self.key_count(&k)?);
                }
                parts.push(k);
            }
            if tenants.len() <= MAX_MERGED_RANGES && n == 0 {
                return empty();
            }
            if tenants.len() > MAX_MERGED_RANGES {
                n = u64::MAX - 1;
            }
            if let Some(p) = Self::posting_of(&t.marketplace_keys, Some(&parts), &[], &from)? {
                postings.push((n, p));
            }
        }
        let terms: BTreeSet<String> = query.terms().into_iter().collect();
        for term in &terms {
            let words =
                parts_with_prefix(&t.marketplace_terms, term.as_bytes(), MAX_MERGED_RANGES)?;
            if words.as_ref().is_some_and(Vec::is_empty) {
                return empty();
            }
            if let Some(p) = Self::posting_of(
                &t.marketplace_terms,
                words.as_deref(),
                term.as_bytes(),
                &from,
            )? {
                postings.push((u64::MAX, p));
            }
        }
        // The smallest postings lead the leapfrog.
        postings.sort_by_key(|(n, _)| *n);
        let ids: Box<dyn Iterator<Item = Result<Vec<u8>>> + '_> = if postings.is_empty() {
            // No filter, or only filters too wide to intersect: walk the
            // marketplace in id order; the re-check does the filtering.
            let start = start_after(&[], page.cursor.as_deref());
            Box::new(
                t.marketplace
                    .range((start, Bound::Unbounded))
                    .keys()
                    .map(|k| k.map(|k| k.to_vec()).map_err(iter_error("marketplace"))),
            )
        } else {
            Box::new(Intersection::new(
                postings.into_iter().map(|(_, p)| p).collect(),
                &from,
            ))
        };
        let matcher = query.matcher();
        let needs_tenant = matcher.filters_publisher();
        let mut tenants: HashMap<String, Option<Tenant>> = HashMap::new();
        let mut out = Vec::with_capacity(size + 1);
        for id in ids {
            let id = id?;
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
        Ok(page_of(out, size))
    }

    /// Marketplace agents per key of `kind`: from the counts tree, or for
    /// an [`UNCOUNTED`] kind by reading every block of its keys.
    pub(super) fn key_counts(&self, kind: IndexKind) -> Result<Vec<(String, u64)>> {
        let p = kind.prefix();
        let t = &self.shared.open()?.t;
        let mut out: Vec<(String, u64)> = Vec::new();
        if UNCOUNTED.contains(&kind) {
            let mut found: BTreeMap<String, u64> = BTreeMap::new();
            for item in t.marketplace_keys.scan_prefix(p.as_bytes()) {
                let (k, v) = item.map_err(iter_error("marketplace keys"))?;
                let part = k.split(|&b| b == SEP).next().unwrap_or(&k[..]);
                let value = String::from_utf8_lossy(&part[p.len()..]).into_owned();
                *found.entry(value).or_default() += block_ids(&v).count() as u64;
            }
            if matches!(
                kind,
                IndexKind::Agent | IndexKind::Locator | IndexKind::Annotation
            ) {
                for id in t.marketplace.iter().keys() {
                    let id = id.map_err(iter_error("marketplace"))?;
                    for k in derived_keys(&id) {
                        if let Some(value) = k.strip_prefix(p.as_str()) {
                            *found.entry(value.to_owned()).or_default() += 1;
                        }
                    }
                }
            }
            return Ok(found.into_iter().collect());
        }
        for item in t.marketplace_key_counts.scan_prefix(p.as_bytes()) {
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

/// Blocks [`part_size`] reads before it stops counting.
const SIZED_BLOCKS: usize = 4;

/// The agents of `part` in `tree`, counted from its blocks: exact when it
/// has at most [`SIZED_BLOCKS`] blocks, else those blocks' ids plus one
/// million (a key with so many agents leads no intersection).
fn part_size(tree: &::sled::Tree, part: &[u8]) -> Result<u64> {
    let mut n = 0u64;
    for (i, item) in tree.scan_prefix(prefix(part)).enumerate() {
        if i == SIZED_BLOCKS {
            return Ok(n.saturating_add(1_000_000));
        }
        let (_, v) = item.map_err(iter_error("marketplace index"))?;
        n += block_ids(&v).count() as u64;
    }
    Ok(n)
}

/// The distinct parts (words or keys) of `tree` starting with `start`
/// (one seek per part); `None` when there are more than `max`.
fn parts_with_prefix(
    tree: &::sled::Tree,
    start: &[u8],
    max: usize,
) -> Result<Option<Vec<Vec<u8>>>> {
    let mut parts = Vec::new();
    let mut from = start.to_vec();
    loop {
        let next = tree
            .range((Bound::Included(from), Bound::Unbounded))
            .keys()
            .next();
        let Some(k) = next else { break };
        let k = k.map_err(iter_error("marketplace index"))?;
        if !k.starts_with(start) {
            break;
        }
        if parts.len() == max {
            return Ok(None);
        }
        let part = k.split(|&b| b == SEP).next().unwrap_or(&k[..]).to_vec();
        from = part.clone();
        from.push(SEP + 1);
        parts.push(part);
    }
    Ok(Some(parts))
}

#[cfg(test)]
mod tests {
    use sentryagent_core::conformance::{sample_agent, sample_secret, sample_tenant};
    use sentryagent_core::marketplace_index::{IndexKind, KeyMatch, agent_keys};
    use sentryagent_core::{
        Agent, AgentId, AgentStore, LifecycleState, MarketplaceQuery, PageRequest, TenantStore,
        Visibility,
    };

    use super::{Derived, derived_keys, derived_match};

    use super::super::{SledBackend, SledStore};

    /// Every page of a search, checked page by page against the matcher's
    /// answer in id order.
    async fn check_pages(store: &SledStore, q: &MarketplaceQuery, all: &[Agent], size: usize) {
        let want: Vec<&Agent> = all.iter().filter(|a| q.matches(a)).collect();
        let mut req = PageRequest::first(size);
        let mut at = 0;
        loop {
            let p = store.search_marketplace(q, &req).await.unwrap();
            let end = (at + size).min(want.len());
            let expected: Vec<&Agent> = want[at..end].to_vec();
            assert_eq!(
                p.items.iter().collect::<Vec<_>>(),
                expected,
                "query {q:?}, page of {size} from {at}"
            );
            at = end;
            match p.next_cursor {
                Some(c) => {
                    assert!(at < want.len(), "a next page only when there is one");
                    assert_eq!(Some(c.as_str()), p.items.last().map(|a| a.id.as_str()));
                    req.cursor = Some(c);
                }
                None => {
                    assert_eq!(at, want.len(), "every match, for {q:?}");
                    break;
                }
            }
        }
        // A cursor that is no agent's id: the agents after it.
        if let Some(mid) = want.get(want.len() / 2) {
            let cursor = format!("{}-", &mid.id.as_str()[..mid.id.as_str().len() - 1]);
            let mut req = PageRequest::first(500);
            req.cursor = Some(cursor.clone());
            let p = store.search_marketplace(q, &req).await.unwrap();
            let after: Vec<&Agent> = want
                .iter()
                .copied()
                .filter(|a| a.id.as_str() > cursor.as_str())
                .collect();
            assert_eq!(
                p.items.iter().collect::<Vec<_>>(),
                after,
                "{q:?} after {cursor}"
            );
        }
    }

    /// Terms covering one word, a few words (merged), many words (collected)
    /// and more entries than may be collected (a walk of the marketplace),
    /// alone, together and with filters: the same agents as the matcher,
    /// in id order, page after page.
    #[tokio::test]
    async fn searches_page_like_the_matcher_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledBackend::open(dir.path()).unwrap().store();
        let ten = sample_tenant("Postings");
        store.create_tenant(&ten).await.unwrap();
        let mut all = Vec::new();
        for i in 0..120 {
            let mut a = sample_agent(&ten.id, &format!("agent {i}"));
            if i % 40 == 5 {
                // Ids with upper-case letters keep their id keys stored.
                a.id = AgentId::parse(&format!("agt_Mixed{i:03}")).unwrap();
            }
            a.visibility = if i % 11 == 0 {
                Visibility::Private
            } else {
                Visibility::Public
            };
            a.state = LifecycleState::Listed;
            a.description = format!(
                "w{i:03} common {} {}",
                if i % 3 == 0 { "alpha" } else { "beta" },
                if i % 7 == 0 { "gamma" } else { "delta" }
            );
            a.capabilities = vec![
                if i % 2 == 0 {
                    "pdf.extract"
                } else {
                    "web.search"
                }
                .into(),
            ];
            store
                .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
                .await
                .unwrap();
            all.push(a);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let q = |text: &str, capability: Option<&str>, name: Option<&str>| MarketplaceQuery {
            text: (!text.is_empty()).then(|| text.to_owned()),
            capability: capability.map(str::to_owned),
            name: name.map(str::to_owned),
            ..Default::default()
        };
        let by_id = |agent: Option<String>, locator: Option<String>| MarketplaceQuery {
            agent,
            locator,
            ..Default::default()
        };
        let plain = all
            .iter()
            .find(|a| a.is_in_marketplace() && !a.id.as_str().contains('M'))
            .unwrap()
            .id
            .to_string();
        let entry = |id: &str| format!("/v1/marketplace/agents/{id}");
        let by_ann = |annotation: String| MarketplaceQuery {
            annotation: Some(annotation),
            ..Default::default()
        };
        let queries = [
            q("", None, None),
            q("gamma", None, None),
            q("alpha gamma", None, None),
            q("w00", None, None),
            q("w0", None, None),
            q("w", None, None),
            q("w0 alpha", None, None),
            q("w alpha", None, None),
            q("common w1", Some("pdf.extract"), None),
            q("a", None, None),
            q("d gam", Some("web.search"), None),
            q("zzz", None, None),
            q("", Some("pdf.extract"), None),
            q("alpha", None, Some("agent 1*")),
            q("", None, Some("agent *")),
            by_id(Some(plain.clone()), None),
            by_id(Some(plain.to_uppercase()), None),
            by_id(Some("agt_mixed045".into()), None),
            by_id(Some("AGT_MIXED0*".into()), None),
            by_id(Some("agt_*".into()), None),
            by_id(Some("*".into()), None),
            by_id(Some("agt_nobody".into()), None),
            by_id(None, Some(entry(&plain))),
            by_id(None, Some(format!("{}/agent-card.json", entry(&plain)))),
            by_id(
                None,
                Some(format!("{}/agent-card.json", entry("agt_Mixed085"))),
            ),
            by_id(None, Some(format!("{}/agent-*", entry("agt_Mixed085")))),
            by_id(None, Some(format!("{}/other", entry(&plain)))),
            by_id(None, Some(format!("{}*", entry("agt_m")))),
            by_id(None, Some(format!("{}*", entry("")))),
            by_id(None, Some("/v1/mark*".into())),
            by_id(None, Some("/elsewhere".into())),
            by_id(None, Some("/elsewhere*".into())),
            by_ann(format!("sentryagent.agent_id={plain}")),
            by_ann("sentryagent.agent_id=AGT_MIXED085".into()),
            by_ann("sentryagent.agent_id=agt_m*".into()),
            by_ann("sentryagent.agent_id=*".into()),
            by_ann("sentryagent.a*".into()),
            by_ann("sentryagent.state=listed".into()),
            by_ann("sentryagent.state=l*".into()),
        ];
        for query in &queries {
            for size in [1, 4, 50] {
                check_pages(&store, query, &all, size).await;
            }
        }
        // Counts of a counted kind come from the counts tree, those of an
        // uncounted kind from the blocks (here many per key).
        let public: Vec<&Agent> = all.iter().filter(|a| a.is_in_marketplace()).collect();
        let pdf = public
            .iter()
            .filter(|a| a.capabilities[0] == "pdf.extract")
            .count() as u64;
        let capabilities = store
            .marketplace_counts(IndexKind::Capability)
            .await
            .unwrap();
        assert!(
            capabilities.contains(&("pdf.extract".to_owned(), pdf)),
            "{capabilities:?}"
        );
        let annotations = store
            .marketplace_counts(IndexKind::Annotation)
            .await
            .unwrap();
        assert!(
            annotations.contains(&("sentryagent.state=listed".to_owned(), public.len() as u64)),
            "{annotations:?}"
        );
        for a in &public {
            let id = format!("sentryagent.agent_id={}", a.id.as_str().to_lowercase());
            assert!(annotations.contains(&(id, 1)), "{annotations:?}");
        }
        let ids = store.marketplace_counts(IndexKind::Agent).await.unwrap();
        let mut want: Vec<(String, u64)> = public
            .iter()
            .map(|a| (a.id.as_str().to_lowercase(), 1))
            .collect();
        want.sort();
        assert_eq!(ids, want, "derived and stored id keys");
        let locators = store.marketplace_counts(IndexKind::Locator).await.unwrap();
        assert_eq!(locators.len(), 2 * public.len());
        let names = store.marketplace_counts(IndexKind::Name).await.unwrap();
        let mut want: Vec<(String, u64)> =
            public.iter().map(|a| (a.name.to_lowercase(), 1)).collect();
        want.sort();
        assert_eq!(names, want);
    }

    /// Every derived key of an agent is one of its index keys and is read
    /// back to its id; filters of the two kinds map to the right agents.
    #[test]
    fn derived_keys_match_the_index_and_read_back() {
        let ten = sample_tenant("Derived");
        let mut a = sample_agent(&ten.id, "derived");
        a.visibility = Visibility::Public;
        a.state = LifecycleState::Listed;
        let id = a.id.as_str().to_owned();
        let keys = derived_keys(id.as_bytes());
        assert_eq!(keys.len(), 4);
        let all = agent_keys(&a);
        for k in &keys {
            assert!(all.contains(k), "{k} is an index key of the agent");
            assert_eq!(
                derived_match(&KeyMatch::Exact(k.clone())),
                Some(Derived::Id(id.clone().into_bytes())),
                "{k}"
            );
        }
        a.id = AgentId::parse("agt_Upper").unwrap();
        assert!(derived_keys(a.id.as_str().as_bytes()).is_empty());
        let p = |s: &str| derived_match(&KeyMatch::Prefix(s.into()));
        let e = |s: &str| derived_match(&KeyMatch::Exact(s.into()));
        let id_of = |s: &str| Some(Derived::Id(s.as_bytes().to_vec()));
        assert_eq!(p("agent:"), Some(Derived::All));
        assert_eq!(
            p("agent:agt_01"),
            Some(Derived::IdPrefix(b"agt_01".to_vec()))
        );
        assert_eq!(e("agent:"), Some(Derived::Nothing));
        assert_eq!(p("locator:/v1/mark"), Some(Derived::All));
        assert_eq!(p("locator:/v1/marketplace/agents/"), Some(Derived::All));
        assert_eq!(
            p("locator:/v1/marketplace/agents/agt_7"),
            Some(Derived::IdPrefix(b"agt_7".to_vec()))
        );
        assert_eq!(
            p("locator:/v1/marketplace/agents/agt_7/agent-"),
            id_of("agt_7")
        );
        assert_eq!(p("locator:/v1/marketplace/agents/agt_7/"), id_of("agt_7"));
        assert_eq!(
            p("locator:/v1/marketplace/agents/agt_7/x"),
            Some(Derived::Nothing)
        );
        assert_eq!(
            e("locator:/v1/marketplace/agents/agt_7/agent-"),
            Some(Derived::Nothing)
        );
        assert_eq!(e("locator:/v1/marketplace/agents/"), Some(Derived::Nothing));
        assert_eq!(e("locator:/elsewhere"), Some(Derived::Nothing));
        assert_eq!(p("locator:/x"), Some(Derived::Nothing));
        assert_eq!(p("name:agt"), None);
        assert_eq!(e("annotation:sentryagent.agent_id=agt_7"), id_of("agt_7"));
        assert_eq!(
            p("annotation:sentryagent.agent_id=agt_"),
            Some(Derived::IdPrefix(b"agt_".to_vec()))
        );
        assert_eq!(p("annotation:sentryagent.agent_id="), Some(Derived::All));
        assert_eq!(p("annotation:sentryagent.a"), Some(Derived::All));
        assert_eq!(p("annotation:"), Some(Derived::All));
        assert_eq!(
            e("annotation:sentryagent.agent_id="),
            Some(Derived::Nothing)
        );
        assert_eq!(e("annotation:sentryagent.state=listed"), None);
        assert_eq!(p("annotation:sentryagent.state"), None);
    }
}

//! Posting lists of the marketplace indexes, stored in blocks and read
//! lazily in id order.
//!
//! The inverted indexes (`marketplace_terms` by word, `marketplace_keys` by
//! directory key) hold, for each word or key (a *part*), its agents in
//! ascending id order, in **blocks**: the key is the part, 0, and the first
//! id of the block; the value is the block's ids joined by 0 (ids never
//! contain it), at most [`MAX_BLOCK`] of them. The blocks of a part
//! partition its ids: a block holds the ids from its first one up to the
//! next block's first. A word shared by many agents thus takes one sled
//! key per [`MAX_BLOCK`] agents instead of one per agent; sled keeps an
//! in-memory page-table entry per tree node of at most 16 keys, so the
//! number of keys, not their size, is what a large database costs in
//! memory (docs/benchmarks.md, "sled at one million agents").
//!
//! Writes go through [`PostingEdits`]: the ids to add to and remove from
//! each part, collected over a whole transaction (one agent, or a chunk of
//! a batch) and applied once per part at its end. Finding the block of an
//! id needs an ordered read, which sled transactions do not offer; the
//! edits read the block keys from the tree itself. That is consistent
//! because every writer of these trees holds the agent-write lock
//! ([`Shared::agent_writes`](super::Shared)) and sled runs one
//! transaction at a time, and because each block is read and written once
//! per transaction (the edits of a part are applied together). The block
//! values themselves are read through the transaction.
//!
//! A [`Posting`] is the agents of one filter: the union of the parts the
//! filter covers, merged through a heap, or a set collected beforehand
//! when the filter covers too many parts to merge. [`Intersection`] yields
//! the ids present in every posting by leapfrogging: each posting in turn
//! seeks the first id at or after the largest id seen so far, so a search
//! reads about as many index blocks as its most selective filter has up to
//! the end of the page, never a whole posting list.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;

use ::sled::IVec;
use ::sled::transaction::TransactionalTree;
use sentryagent_core::{Error, Result};

use super::codec::{SEP, TxResult, abort, prefix};
use super::store::iter_error;

/// Ids per block at most. (Smaller in unit tests, so that small stores
/// split, merge and re-key blocks.)
pub(super) const MAX_BLOCK: usize = if cfg!(test) { 4 } else { 32 };

/// Blocks read forward from a sub-range before a seek opens a new range at
/// the target instead (a short gap is cheaper to walk than to seek).
const STEPS_BEFORE_SEEK: usize = 2;

/// The ids of a block value, ascending.
pub(super) fn block_ids(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == SEP).filter(|id| !id.is_empty())
}

/// A block value: `ids` (ascending) joined by [`SEP`].
pub(super) fn block_value<I: AsRef<[u8]>>(ids: &[I]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ids.iter().map(|i| i.as_ref().len() + 1).sum());
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            v.push(SEP);
        }
        v.extend_from_slice(id.as_ref());
    }
    v
}

/// The key of the block of `part` starting at `first`.
fn block_key(part_prefix: &[u8], first: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(part_prefix.len() + first.len());
    k.extend_from_slice(part_prefix);
    k.extend_from_slice(first);
    k
}

/// The first key after every key of a part (its prefix ends with `SEP`).
fn part_end(part_prefix: &[u8]) -> Vec<u8> {
    let mut hi = part_prefix.to_vec();
    if let Some(last) = hi.last_mut() {
        *last = SEP + 1;
    }
    hi
}

/// The key of the block of the part with prefix `part_prefix` that holds
/// (or would hold) `id`: the last block starting at or before it, else the
/// part's first block; `None` when the part has no block.
fn block_of(tree: &::sled::Tree, part_prefix: &[u8], id: &[u8]) -> Result<Option<IVec>> {
    let at = block_key(part_prefix, id);
    let before = tree
        .range((Bound::Included(part_prefix.to_vec()), Bound::Included(at)))
        .keys()
        .next_back()
        .transpose()
        .map_err(iter_error("marketplace index"))?;
    if before.is_some() {
        return Ok(before);
    }
    tree.range((
        Bound::Included(part_prefix.to_vec()),
        Bound::Excluded(part_end(part_prefix)),
    ))
    .keys()
    .next()
    .transpose()
    .map_err(iter_error("marketplace index"))
}

/// The ids to add to and remove from one part.
#[derive(Default)]
struct PartEdits {
    add: BTreeSet<Vec<u8>>,
    remove: BTreeSet<Vec<u8>>,
}

/// Changes to the posting lists of one tree, collected for one transaction
/// (see the module docs).
#[derive(Default)]
pub(super) struct PostingEdits {
    parts: BTreeMap<Vec<u8>, PartEdits>,
}

impl PostingEdits {
    /// `id` joins `part` (a no-op when it is there).
    pub(super) fn add(&mut self, part: &[u8], id: &[u8]) {
        let e = self.parts.entry(part.to_vec()).or_default();
        e.remove.remove(id);
        e.add.insert(id.to_vec());
    }

    /// `id` leaves `part` (a no-op when it is not there).
    pub(super) fn remove(&mut self, part: &[u8], id: &[u8]) {
        let e = self.parts.entry(part.to_vec()).or_default();
        e.add.remove(id);
        e.remove.insert(id.to_vec());
    }

    /// Finds the block of every edited id in `tree`, before the
    /// transaction that applies them: the caller holds the agent-write
    /// lock until that transaction ends (see the module docs). Each part's
    /// ids are taken in order along one walk of its blocks.
    pub(super) fn locate(&self, tree: &::sled::Tree) -> Result<LocatedEdits> {
        let mut blocks = Vec::new();
        for (part, edits) in &self.parts {
            let mut changes: Vec<(&[u8], bool)> = edits
                .add
                .iter()
                .map(|id| (id.as_slice(), true))
                .chain(edits.remove.iter().map(|id| (id.as_slice(), false)))
                .collect();
            changes.sort_unstable();
            let Some(first) = changes.first() else {
                continue;
            };
            let part_prefix = prefix(part);
            // One id (an agent's own write), or a part with no block yet:
            // one block takes every change.
            let start = match block_of(tree, &part_prefix, first.0)? {
                Some(k) if changes.len() > 1 => k,
                block => {
                    blocks.push(BlockEdits {
                        part_prefix,
                        block,
                        changes: changes.iter().map(|(id, a)| (id.to_vec(), *a)).collect(),
                    });
                    continue;
                }
            };
            let mut later = tree
                .range((
                    Bound::Excluded(start.to_vec()),
                    Bound::Excluded(part_end(&part_prefix)),
                ))
                .keys();
            let mut current = Some(start);
            let mut next = later
                .next()
                .transpose()
                .map_err(iter_error("marketplace index"))?;
            let mut edits: Vec<BlockEdits> = Vec::new();
            for (id, adding) in changes {
                while let Some(n) = next.as_ref().filter(|n| n[part_prefix.len()..] <= *id) {
                    current = Some(n.clone());
                    next = later
                        .next()
                        .transpose()
                        .map_err(iter_error("marketplace index"))?;
                }
                if edits.last().is_none_or(|e| e.block != current) {
                    edits.push(BlockEdits {
                        part_prefix: part_prefix.clone(),
                        block: current.clone(),
                        changes: Vec::new(),
                    });
                }
                if let Some(e) = edits.last_mut() {
                    e.changes.push((id.to_vec(), adding));
                }
            }
            blocks.extend(edits);
        }
        Ok(LocatedEdits { blocks })
    }
}

/// The edits of one block (`None`: the part has no block yet).
struct BlockEdits {
    part_prefix: Vec<u8>,
    block: Option<IVec>,
    /// Ids to add (`true`) or remove (`false`).
    changes: Vec<(Vec<u8>, bool)>,
}

/// [`PostingEdits`] with the block of each id found.
pub(super) struct LocatedEdits {
    blocks: Vec<BlockEdits>,
}

impl LocatedEdits {
    /// Writes the edited blocks through `tx`: each block is read, changed,
    /// split into pieces of at most [`MAX_BLOCK`] ids (full ones first, so
    /// that agents registered in id order fill their blocks) and written
    /// under the first id of each piece; an emptied block is removed.
    pub(super) fn apply(&self, tx: &TransactionalTree) -> TxResult<()> {
        for edit in &self.blocks {
            let mut ids: BTreeSet<Vec<u8>> = BTreeSet::new();
            if let Some(k) = &edit.block {
                let Some(value) = tx.get(k)? else {
                    return abort(Error::Internal {
                        message: "sled: a marketplace index block vanished".into(),
                        source: None,
                    });
                };
                ids.extend(block_ids(&value).map(<[u8]>::to_vec));
                tx.remove(k)?;
            }
            for (id, adding) in &edit.changes {
                if *adding {
                    ids.insert(id.clone());
                } else {
                    ids.remove(id);
                }
            }
            let ids: Vec<Vec<u8>> = ids.into_iter().collect();
            for piece in ids.chunks(MAX_BLOCK) {
                tx.insert(block_key(&edit.part_prefix, &piece[0]), block_value(piece))?;
            }
        }
        Ok(())
    }
}

/// One part's agents: the blocks `prefix` + first id of one tree, read one
/// block at a time; the ids of a block are taken out as they are needed.
pub(super) struct Sub {
    tree: ::sled::Tree,
    /// The part followed by [`SEP`].
    prefix: Vec<u8>,
    /// The blocks after the current one.
    iter: ::sled::Iter,
    /// The current block, and where its next id starts.
    block: Option<::sled::IVec>,
    at: usize,
    /// Ids below this are skipped (the lower bound of the last range).
    from: Vec<u8>,
    /// The largest id of the blocks before the current one: the current
    /// block's ids are above it unless a writer split a block between two
    /// reads, and such repeats are skipped.
    below: Vec<u8>,
    /// The largest id of the blocks read so far.
    high: Vec<u8>,
}

impl Sub {
    pub(super) fn new(tree: &::sled::Tree, part: &[u8], from: &[u8]) -> Result<Self> {
        let prefix = prefix(part);
        let iter = Self::range(tree, &prefix, from)?;
        Ok(Sub {
            tree: tree.clone(),
            prefix,
            iter,
            block: None,
            at: 0,
            from: from.to_vec(),
            below: Vec::new(),
            high: Vec::new(),
        })
    }

    /// The blocks that may hold ids ≥ `from`: the one holding `from`, and
    /// those after it.
    fn range(tree: &::sled::Tree, prefix: &[u8], from: &[u8]) -> Result<::sled::Iter> {
        let start = block_of(tree, prefix, from)?.map_or_else(|| prefix.to_vec(), |k| k.to_vec());
        Ok(tree.range((Bound::Included(start), Bound::Excluded(part_end(prefix)))))
    }

    /// Makes the next block current; false when none is left.
    fn next_block(&mut self) -> Result<bool> {
        match self.iter.next() {
            None => {
                self.block = None;
                Ok(false)
            }
            Some(item) => {
                let (_, value) = item.map_err(iter_error("marketplace index"))?;
                self.below = std::mem::take(&mut self.high);
                self.high = match block_ids(&value).next_back() {
                    Some(last) if last > self.below.as_slice() => last.to_vec(),
                    _ => self.below.clone(),
                };
                self.block = Some(value);
                self.at = 0;
                Ok(true)
            }
        }
    }

    /// The next id ≥ `min` of the current block (ids below it are passed
    /// over), without reading another block.
    fn next_in_block(&mut self, min: &[u8]) -> Option<Vec<u8>> {
        let block = self.block.as_ref()?;
        while self.at < block.len() {
            let end = block[self.at..]
                .iter()
                .position(|&b| b == SEP)
                .map_or(block.len(), |i| self.at + i);
            let id = &block[self.at..end];
            self.at = end + 1;
            if !id.is_empty()
                && id >= min
                && id >= self.from.as_slice()
                && id > self.below.as_slice()
            {
                return Some(id.to_vec());
            }
        }
        None
    }

    /// The next id, ascending.
    pub(super) fn pull(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(id) = self.next_in_block(&[]) {
                return Ok(Some(id));
            }
            if !self.next_block()? {
                return Ok(None);
            }
        }
    }

    /// The first id ≥ `target`: within the current block, then a few
    /// blocks forward, then a new range.
    fn seek(&mut self, target: &[u8]) -> Result<Option<Vec<u8>>> {
        for step in 0..=STEPS_BEFORE_SEEK {
            if let Some(id) = self.next_in_block(target) {
                return Ok(Some(id));
            }
            if step == STEPS_BEFORE_SEEK {
                break;
            }
            if !self.next_block()? {
                return Ok(None);
            }
        }
        self.from = target.to_vec();
        self.block = None;
        self.iter = Self::range(&self.tree, &self.prefix, target)?;
        self.pull()
    }
}

/// The agents of one filter, ascending and without repeats, from a lower
/// bound on.
pub(super) enum Posting {
    /// A union of ranges, merged by their current heads.
    Merged {
        subs: Vec<Sub>,
        heads: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    },
    /// Ids collected beforehand, ascending, and the position reached.
    Collected { ids: Vec<Vec<u8>>, at: usize },
}

impl Posting {
    /// The union of the ranges of `parts` (words or keys) in `tree`, each
    /// from `from` on.
    pub(super) fn merged(tree: &::sled::Tree, parts: &[Vec<u8>], from: &[u8]) -> Result<Self> {
        let mut subs = Vec::with_capacity(parts.len());
        let mut heads = BinaryHeap::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let mut sub = Sub::new(tree, p, from)?;
            if let Some(id) = sub.pull()? {
                heads.push(Reverse((id, i)));
            }
            subs.push(sub);
        }
        Ok(Posting::Merged { subs, heads })
    }

    /// Ids collected beforehand (sorted and deduplicated here).
    pub(super) fn collected(mut ids: Vec<Vec<u8>>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Posting::Collected { ids, at: 0 }
    }

    /// The first id ≥ `target` (the posting moves there); `None` when none
    /// is left.
    fn seek(&mut self, target: &[u8]) -> Result<Option<&[u8]>> {
        match self {
            Posting::Merged { subs, heads } => {
                while let Some(Reverse((id, i))) = heads.peek() {
                    if id.as_slice() >= target {
                        break;
                    }
                    let i = *i;
                    heads.pop();
                    if let Some(next) = subs[i].seek(target)? {
                        heads.push(Reverse((next, i)));
                    }
                }
                Ok(heads.peek().map(|Reverse((id, _))| id.as_slice()))
            }
            Posting::Collected { ids, at } => {
                *at += ids[*at..].partition_point(|id| id.as_slice() < target);
                Ok(ids.get(*at).map(Vec::as_slice))
            }
        }
    }
}

/// The ids present in every posting, ascending, after a lower bound.
pub(super) struct Intersection {
    postings: Vec<Posting>,
    /// Every id yielded from now on is ≥ this.
    lower: Vec<u8>,
    done: bool,
}

impl Intersection {
    /// The ids ≥ `from` in every posting (none when there is no posting).
    pub(super) fn new(postings: Vec<Posting>, from: &[u8]) -> Self {
        Intersection {
            done: postings.is_empty(),
            postings,
            lower: from.to_vec(),
        }
    }

    fn advance(&mut self) -> Result<Option<Vec<u8>>> {
        let n = self.postings.len();
        let mut agreed = 0;
        let mut i = 0;
        loop {
            let Some(id) = self.postings[i].seek(&self.lower)? else {
                return Ok(None);
            };
            if id == self.lower.as_slice() {
                agreed += 1;
            } else {
                self.lower = id.to_vec();
                agreed = 1;
            }
            if agreed == n {
                let found = self.lower.clone();
                self.lower = after(&found);
                return Ok(Some(found));
            }
            i = (i + 1) % n;
        }
    }
}

/// The smallest key after `id` (ids never contain [`SEP`]).
fn after(id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 1);
    k.extend_from_slice(id);
    k.push(SEP);
    k
}

impl Iterator for Intersection {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(id)) => Some(Ok(id)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    type Model = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

    /// Every block is non-empty, at most `MAX_BLOCK` ids, ascending, keyed
    /// by its first id, after the previous block of its part; the ids of
    /// each part are the model's.
    fn check_blocks(tree: &::sled::Tree, model: &Model) {
        let mut found: Model = BTreeMap::new();
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            let sep = k.iter().position(|&b| b == SEP).unwrap();
            let (part, first) = (&k[..sep], &k[sep + 1..]);
            let ids: Vec<&[u8]> = block_ids(&v).collect();
            assert!(!ids.is_empty() && ids.len() <= MAX_BLOCK, "block size");
            assert_eq!(ids[0], first, "a block is keyed by its first id");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending ids");
            let seen = found.entry(part.to_vec()).or_default();
            if let Some(last) = seen.last() {
                assert!(last.as_slice() < ids[0], "blocks of a part do not overlap");
            }
            seen.extend(ids.iter().map(|id| id.to_vec()));
        }
        let want: Model = model
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(p, ids)| (p.clone(), ids.clone()))
            .collect();
        assert_eq!(found, want);
    }

    /// Random edits of three parts, applied in transactions, against a
    /// model: the blocks stay well formed, and reads from any lower bound
    /// (and seeks) yield the model's ids.
    #[test]
    fn edits_keep_blocks_well_formed_and_reads_match_a_model() {
        let db = ::sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("postings").unwrap();
        let parts: [&[u8]; 3] = [b"alpha", b"alphabet", b"beta"];
        let mut model: Model = BTreeMap::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let id = |n: u64| format!("agt_{n:03}").into_bytes();
        for round in 0..400u64 {
            let mut edits = PostingEdits::default();
            for _ in 0..=rng.below(12) {
                let part = parts[rng.below(3) as usize];
                // Mostly ids above the rest (registration order), some
                // anywhere.
                let n = if rng.below(3) == 0 {
                    rng.below(80)
                } else {
                    round / 5 + rng.below(8)
                };
                let set = model.entry(part.to_vec()).or_default();
                if rng.below(4) == 0 {
                    edits.remove(part, &id(n));
                    set.remove(&id(n));
                } else {
                    edits.add(part, &id(n));
                    set.insert(id(n));
                }
            }
            let located = edits.locate(&tree).unwrap();
            tree.transaction(|tx| located.apply(tx)).unwrap();
            check_blocks(&tree, &model);
            for part in parts {
                let want = model.get(part).cloned().unwrap_or_default();
                for from in [
                    Vec::new(),
                    id(rng.below(90)),
                    b"agt_04".to_vec(),
                    b"zzz".to_vec(),
                ] {
                    let mut sub = Sub::new(&tree, part, &from).unwrap();
                    let mut got = Vec::new();
                    while let Some(i) = sub.pull().unwrap() {
                        got.push(i);
                    }
                    let expected: Vec<Vec<u8>> = want.range(from.clone()..).cloned().collect();
                    assert_eq!(got, expected, "round {round}, from {from:?}");
                }
                let mut sub = Sub::new(&tree, part, b"").unwrap();
                let mut target = Vec::new();
                for _ in 0..6 {
                    let t = id(rng.below(90));
                    if t > target {
                        target = t;
                    }
                    let expected = want.range(target.clone()..).next().cloned();
                    assert_eq!(sub.seek(&target).unwrap(), expected, "seek {target:?}");
                    if let Some(e) = expected {
                        target = e;
                        target.push(SEP);
                    }
                }
            }
        }
    }

    /// Removing an id that is not there, or adding one that is, changes
    /// nothing.
    #[test]
    fn edits_are_idempotent() {
        let db = ::sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("postings").unwrap();
        let run = |edits: &PostingEdits| {
            let located = edits.locate(&tree).unwrap();
            tree.transaction(|tx| located.apply(tx)).unwrap();
        };
        let mut e = PostingEdits::default();
        for n in 0..10 {
            e.add(b"w", format!("id{n}").as_bytes());
        }
        run(&e);
        run(&e);
        let before: Vec<_> = tree.iter().map(Result::unwrap).collect();
        let mut gone = PostingEdits::default();
        gone.remove(b"w", b"id99");
        gone.remove(b"other", b"id1");
        run(&gone);
        let after: Vec<_> = tree.iter().map(Result::unwrap).collect();
        assert_eq!(before, after);
    }
}

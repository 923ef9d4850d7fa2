//! Posting lists of the marketplace indexes, read lazily in id order.
//!
//! The inverted indexes (`marketplace_terms`: word, 0, agent id;
//! `marketplace_keys`: directory key, 0, agent id) hold, for each word or
//! key, its agents in ascending id order. A [`Posting`] is the agents of
//! one filter: the union of the ranges of the words (or keys) the filter
//! covers, merged through a heap, or a set collected beforehand when the
//! filter covers too many words to merge. [`Intersection`] yields the ids
//! present in every posting by leapfrogging: each posting in turn seeks
//! the first id at or after the largest id seen so far, so a search reads
//! about as many index entries as its most selective filter has up to the
//! end of the page, never a whole posting list.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;

use sentryagent_core::Result;

use super::codec::SEP;
use super::store::iter_error;

/// Entries read forward from a sub-range before a seek opens a new range
/// at the target instead (a short gap is cheaper to walk than to seek).
const STEPS_BEFORE_SEEK: usize = 4;

/// One word's (or key's) agents: the keys `prefix` + id of one tree.
pub(super) struct Sub {
    tree: ::sled::Tree,
    /// The word or key followed by [`SEP`].
    prefix: Vec<u8>,
    iter: ::sled::Iter,
}

impl Sub {
    fn new(tree: &::sled::Tree, part: &[u8], from: &[u8]) -> Self {
        let mut prefix = part.to_vec();
        prefix.push(SEP);
        let iter = Self::range(tree, &prefix, from);
        Sub {
            tree: tree.clone(),
            prefix,
            iter,
        }
    }

    /// The keys `prefix` + id with id ≥ `from`.
    fn range(tree: &::sled::Tree, prefix: &[u8], from: &[u8]) -> ::sled::Iter {
        let mut lo = prefix.to_vec();
        lo.extend_from_slice(from);
        let mut hi = prefix.to_vec();
        if let Some(last) = hi.last_mut() {
            *last = SEP + 1;
        }
        tree.range((Bound::Included(lo), Bound::Excluded(hi)))
    }

    fn pull(&mut self) -> Result<Option<Vec<u8>>> {
        match self.iter.next() {
            None => Ok(None),
            Some(k) => {
                let k = k.map_err(iter_error("marketplace index"))?.0;
                Ok(Some(k[self.prefix.len()..].to_vec()))
            }
        }
    }

    /// The first id ≥ `target`: a few steps forward, then a new range.
    fn seek(&mut self, target: &[u8]) -> Result<Option<Vec<u8>>> {
        for _ in 0..STEPS_BEFORE_SEEK {
            match self.pull()? {
                Some(id) if id.as_slice() < target => {}
                other => return Ok(other),
            }
        }
        self.iter = Self::range(&self.tree, &self.prefix, target);
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
            let mut sub = Sub::new(tree, p, from);
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

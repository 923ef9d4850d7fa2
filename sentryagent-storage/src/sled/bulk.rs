//! Bulk registration on sled ([`AgentStore::create_agents`](sentryagent_core::AgentStore::create_agents)):
//! a batch of up to [`MAX_AGENT_BATCH`](sentryagent_core::MAX_AGENT_BATCH)
//! agents, stored whole or not at all.
//!
//! One sled transaction over the nine agent trees for a whole batch (about
//! eight keys per marketplace agent, 80,000 for a full batch: its record,
//! name, tenant listing, secrets and marketplace entry, the postings of its
//! own words and keys, and its share of the blocks of the words and keys
//! it has in common with others; see the `postings` module) holds sled's
//! process-wide transaction lock, one epoch guard and one log reservation
//! for seconds: every other transaction of the process (audit appends,
//! markers, secret rotations) waits that long, and nothing written
//! meanwhile can be reclaimed or made stable. Every write in a transaction
//! also first reads the key's old value. Splitting the batch bounds all of
//! that by a chunk. It does not remove the main cost of a write in sled
//! 0.34 (a copy of the tree node written to, which grows with the tree):
//! see docs/benchmarks.md, "One million agents".
//!
//! So a batch is written in steps, each a small transaction:
//!
//! 1. **Check and reserve** (agents, names, live-agent counters, `meta`):
//!    no id or name of the batch is stored, the limits hold
//!    ([`check_agent_batch_limits`]); the counters take the batch's
//!    agents, and the `meta` key `bulk_registration` records the batch (its
//!    agent ids, what it added to each counter).
//! 2. **Chunks** of [`CHUNK`] agents, each one transaction over the nine
//!    trees that also sets the `meta` key `bulk_registration_done` to the
//!    number of chunks stored.
//! 3. **Done**: both `meta` keys are removed.
//!
//! While a batch is written, the writers that could contradict its checks
//! (`create_agent`, `update_agent`, another batch) wait for it: they take
//! the same lock ([`Shared::agent_writes`](super::Shared)). Readers may see
//! part of a batch while it is being written (each agent whole: its chunk
//! is a transaction). If writing fails, or the process stops, before step
//! 3, the batch is rolled back ([`roll_back`]): by the failing call, or at
//! the next open for a crash. The roll-back removes the stored chunks last
//! to first, each in one transaction that also lowers the chunk count,
//! then gives the counters back and removes the record: every step is
//! atomic and the whole can be re-run, so an interrupted roll-back is
//! finished at the next open. A batch is thus stored whole or not at all,
//! as it was with one transaction.

use std::collections::{BTreeMap, BTreeSet};

use ::sled::IVec;
use ::sled::transaction::Transactional;
use serde::{Deserialize, Serialize};

use sentryagent_core::agent::agent_search_terms;
use sentryagent_core::marketplace_index;
use sentryagent_core::store::{NewAgentRecord, check_agent_batch_limits};
use sentryagent_core::{Agent, Error, Result, TenantId};

use super::Trees;
use super::codec::{OrAbort, TxResult, abort, counter, decode, encode, key, tx_error};
use super::marketplace::{edit_agent_keys, edit_agent_words, write_key_counts};
use super::postings::PostingEdits;
use super::store::EMPTY;

/// Agents per chunk transaction.
pub(super) const CHUNK: usize = 500;

/// The `meta` key recording a batch being written.
const PENDING: &str = "bulk_registration";
/// The `meta` key holding how many of its chunks are stored.
const PENDING_DONE: &str = "bulk_registration_done";

/// A batch being written (the `meta` key [`PENDING`]).
#[derive(Serialize, Deserialize)]
struct Pending {
    /// The batch's agent ids, in order.
    ids: Vec<String>,
    /// Agents per chunk.
    chunk: usize,
    /// What the batch added to each tenant's live-agent counter.
    live: Vec<(String, u64)>,
}

/// What is written for one agent, encoded before the transactions.
pub(super) struct BatchRow<'a> {
    id: &'a [u8],
    value: IVec,
    secrets: IVec,
    name_key: Vec<u8>,
    tenant_key: Vec<u8>,
    in_market: bool,
    words: BTreeSet<String>,
    index_keys: BTreeSet<String>,
}

impl<'a> BatchRow<'a> {
    pub(super) fn new(r: &'a NewAgentRecord) -> Result<Self> {
        let agent = &r.agent;
        let id = agent.id.as_str().as_bytes();
        let tenant = agent.tenant_id.as_str().as_bytes();
        Ok(BatchRow {
            id,
            value: encode("agent", agent)?.into(),
            secrets: encode(
                "client secrets",
                &r.secret.iter().cloned().collect::<Vec<_>>(),
            )?
            .into(),
            name_key: key(&[tenant, agent.name.as_bytes()]),
            tenant_key: key(&[tenant, id]),
            in_market: agent.is_in_marketplace(),
            words: market_words(agent),
            index_keys: marketplace_index::agent_keys(agent),
        })
    }
}

/// The words under which an agent is indexed (none outside the
/// marketplace).
pub(super) fn market_words(agent: &Agent) -> BTreeSet<String> {
    if agent.is_in_marketplace() {
        agent_search_terms(agent).into_iter().collect()
    } else {
        BTreeSet::new()
    }
}

/// Stores a checked, non-empty batch (see the module docs). The caller
/// holds the agent-write lock; nothing is flushed here.
pub(super) fn register(
    t: &Trees,
    batch: &[NewAgentRecord],
    rows: &[BatchRow<'_>],
    tenants: &[TenantId],
) -> Result<()> {
    // A record left by a failed roll-back of this process: finish it first.
    roll_back(t)?;
    reserve(t, batch, rows, tenants)?;
    let written = rows
        .chunks(CHUNK)
        .enumerate()
        .try_for_each(|(i, chunk)| write_chunk(t, chunk, i));
    let finished = written.and_then(|()| {
        t.meta
            .transaction(|meta| -> TxResult<()> {
                meta.remove(PENDING)?;
                meta.remove(PENDING_DONE)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_agents", e))
    });
    if let Err(e) = finished {
        // Best effort: when it fails too, the next open rolls back.
        let _ = roll_back(t);
        return Err(e);
    }
    Ok(())
}

/// Step 1: the checks, the counters and the record, in one transaction.
fn reserve(
    t: &Trees,
    batch: &[NewAgentRecord],
    rows: &[BatchRow<'_>],
    tenants: &[TenantId],
) -> Result<()> {
    let ids: Vec<String> = batch.iter().map(|r| r.agent.id.to_string()).collect();
    (&t.agents, &t.agents_by_name, &t.live_agents, &t.meta)
        .transaction(|(agents, names, live_agents, meta)| -> TxResult<()> {
            for r in rows {
                if agents.get(r.id)?.is_some() || names.get(r.name_key.as_slice())?.is_some() {
                    return abort(Error::already_exists("agent"));
                }
            }
            let mut stored = BTreeMap::new();
            for tenant in tenants {
                let k = tenant.as_str().as_bytes();
                let n = counter("live agents", live_agents.get(k)?.as_deref()).or_abort()?;
                stored.insert(tenant.clone(), n);
            }
            let after = check_agent_batch_limits(batch, &stored).or_abort()?;
            let mut live = Vec::new();
            for (tenant, n) in &after {
                let before = stored.get(tenant).copied().unwrap_or(0);
                if *n != before {
                    live_agents.insert(tenant.as_str().as_bytes(), &n.to_be_bytes())?;
                    live.push((tenant.to_string(), n - before));
                }
            }
            let pending = Pending {
                ids: ids.clone(),
                chunk: CHUNK,
                live,
            };
            meta.insert(PENDING, encode("bulk registration", &pending).or_abort()?)?;
            meta.insert(PENDING_DONE, &0u64.to_be_bytes())?;
            Ok(())
        })
        .map_err(|e| tx_error("create_agents", e))
}

/// The trees a chunk writes (and its roll-back removes from), in the order
/// the transactions below name them.
type ChunkTrees<'a> = (
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
    &'a ::sled::Tree,
);

fn chunk_trees(t: &Trees) -> ChunkTrees<'_> {
    (
        &t.agents,
        &t.agents_by_name,
        &t.agents_by_tenant,
        &t.client_secrets,
        &t.marketplace,
        &t.marketplace_terms,
        &t.marketplace_keys,
        &t.marketplace_key_counts,
        &t.meta,
    )
}

/// Step 2: chunk `index` of the batch, in one transaction.
fn write_chunk(t: &Trees, rows: &[BatchRow<'_>], index: usize) -> Result<()> {
    let done = (index as u64 + 1).to_be_bytes();
    let none = BTreeSet::new();
    let mut word_edits = PostingEdits::default();
    let mut key_edits = PostingEdits::default();
    for r in rows {
        edit_agent_words(&mut word_edits, r.id, &none, &r.words);
        edit_agent_keys(&mut key_edits, r.id, &none, &r.index_keys);
    }
    let word_edits = word_edits.locate(&t.marketplace_terms)?;
    let key_edits = key_edits.locate(&t.marketplace_keys)?;
    chunk_trees(t)
        .transaction(
            |(agents, names, by_tenant, client_secrets, market, terms, keys, counts, meta)|
             -> TxResult<()> {
                for r in rows {
                    agents.insert(r.id, r.value.clone())?;
                    names.insert(r.name_key.as_slice(), r.id)?;
                    by_tenant.insert(r.tenant_key.as_slice(), EMPTY)?;
                    client_secrets.insert(r.id, r.secrets.clone())?;
                    if r.in_market {
                        market.insert(r.id, EMPTY)?;
                    }
                    write_key_counts(counts, &none, &r.index_keys)?;
                }
                word_edits.apply(terms)?;
                key_edits.apply(keys)?;
                meta.insert(PENDING_DONE, &done)?;
                Ok(())
            },
        )
        .map_err(|e| tx_error("create_agents", e))
}

/// Rolls back the batch recorded in `meta`, if any (see the module docs):
/// at open, and when writing a batch failed.
pub(super) fn roll_back(t: &Trees) -> Result<()> {
    let what = |e| super::codec::sled_error("read of a bulk registration record", e);
    let Some(raw) = t.meta.get(PENDING).map_err(what)? else {
        return Ok(());
    };
    let pending: Pending = decode("bulk registration", &raw)?;
    let done = counter(
        "bulk registration chunks",
        t.meta.get(PENDING_DONE).map_err(what)?.as_deref(),
    )?;
    let chunks: Vec<&[String]> = pending.ids.chunks(pending.chunk.max(1)).collect();
    for index in (0..(done as usize).min(chunks.len())).rev() {
        remove_chunk(t, chunks[index], index)?;
    }
    (&t.live_agents, &t.meta)
        .transaction(|(live_agents, meta)| -> TxResult<()> {
            for (tenant, added) in &pending.live {
                let k = tenant.as_bytes();
                let n = counter("live agents", live_agents.get(k)?.as_deref()).or_abort()?;
                live_agents.insert(k, &n.saturating_sub(*added).to_be_bytes())?;
            }
            meta.remove(PENDING)?;
            meta.remove(PENDING_DONE)?;
            Ok(())
        })
        .map_err(|e| tx_error("bulk registration roll-back", e))
}

/// Removes the agents of stored chunk `index` and everything written with
/// them, and records that only the chunks before it remain.
fn remove_chunk(t: &Trees, ids: &[String], index: usize) -> Result<()> {
    let done = (index as u64).to_be_bytes();
    // The chunk's agents, read before the transaction to locate their index
    // blocks (the caller holds the agent-write lock, or the database is
    // being opened; the transaction checks that they did not change).
    let mut stored = Vec::new();
    let none = BTreeSet::new();
    let mut word_edits = PostingEdits::default();
    let mut key_edits = PostingEdits::default();
    for id in ids {
        let read = |e| super::codec::sled_error("read of an agent to roll back", e);
        let Some(raw) = t.agents.get(id.as_bytes()).map_err(read)? else {
            continue;
        };
        let agent: Agent = decode("agent", &raw)?;
        let id = id.as_bytes();
        edit_agent_words(&mut word_edits, id, &market_words(&agent), &none);
        edit_agent_keys(
            &mut key_edits,
            id,
            &marketplace_index::agent_keys(&agent),
            &none,
        );
        stored.push((raw, agent));
    }
    let word_edits = word_edits.locate(&t.marketplace_terms)?;
    let key_edits = key_edits.locate(&t.marketplace_keys)?;
    chunk_trees(t)
        .transaction(
            |(agents, names, by_tenant, client_secrets, market, terms, keys, counts, meta)|
             -> TxResult<()> {
                for (raw, agent) in &stored {
                    let id = agent.id.as_str().as_bytes();
                    if agents.get(id)?.as_ref() != Some(raw) {
                        return abort(Error::conflict(
                            "an agent of a batch being rolled back was changed",
                        ));
                    }
                    let tenant = agent.tenant_id.as_str().as_bytes();
                    agents.remove(id)?;
                    let name_key = key(&[tenant, agent.name.as_bytes()]);
                    if names.get(name_key.as_slice())?.as_deref() == Some(id) {
                        names.remove(name_key)?;
                    }
                    by_tenant.remove(key(&[tenant, id]))?;
                    client_secrets.remove(id)?;
                    if agent.is_in_marketplace() {
                        market.remove(id)?;
                    }
                    write_key_counts(counts, &marketplace_index::agent_keys(agent), &none)?;
                }
                word_edits.apply(terms)?;
                key_edits.apply(keys)?;
                meta.insert(PENDING_DONE, &done)?;
                Ok(())
            },
        )
        .map_err(|e| tx_error("bulk registration roll-back", e))
}

#[cfg(test)]
mod tests {
    use sentryagent_core::conformance::{sample_agent, sample_secret, sample_tenant};
    use sentryagent_core::marketplace_index::IndexKind;
    use sentryagent_core::store::agent_batch_tenants;
    use sentryagent_core::{
        AgentStore, Error, LifecycleState, MarketplaceQuery, NewAgentRecord, PageRequest, TenantId,
        TenantStore, Visibility,
    };

    use super::super::SledBackend;
    use super::*;

    fn listed_batch(tenant: &TenantId, n: usize) -> Vec<NewAgentRecord> {
        (0..n)
            .map(|i| {
                let mut a = sample_agent(tenant, &format!("bulk agent {i}"));
                a.visibility = Visibility::Public;
                a.state = LifecycleState::Listed;
                a.description = "rollbackword".into();
                a.category = Some("finance".into());
                let s = sample_secret(&a.id, 1);
                NewAgentRecord::new(a, Some(s))
            })
            .collect()
    }

    /// A batch whose writing stopped after some of its chunks (a crash) is
    /// rolled back when the database is opened again: no agent, name,
    /// secret, index entry or count of it is left, and it can be
    /// registered again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_batch_is_rolled_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let ten = sample_tenant("Bulk Crash");
        let batch = listed_batch(&ten.id, 2 * CHUNK + 7);
        let (kept, categories) = {
            let backend = SledBackend::open(dir.path()).unwrap();
            let store = backend.store();
            store.create_tenant(&ten).await.unwrap();
            let mut kept = sample_agent(&ten.id, "kept");
            kept.visibility = Visibility::Public;
            kept.state = LifecycleState::Listed;
            kept.category = Some("finance".into());
            store.create_agent(&kept, None, None).await.unwrap();
            let categories = store.marketplace_counts(IndexKind::Category).await.unwrap();
            let open = backend.shared.open().unwrap();
            let rows: Vec<BatchRow<'_>> = batch.iter().map(|r| BatchRow::new(r).unwrap()).collect();
            let tenants: Vec<TenantId> = agent_batch_tenants(&batch).into_iter().cloned().collect();
            {
                let _writing = backend.shared.agent_writes();
                reserve(&open.t, &batch, &rows, &tenants).unwrap();
                write_chunk(&open.t, &rows[..CHUNK], 0).unwrap();
                write_chunk(&open.t, &rows[CHUNK..2 * CHUNK], 1).unwrap();
            }
            assert_eq!(
                store.count_agents(&ten.id).await.unwrap(),
                1 + batch.len() as u64
            );
            assert!(store.get_agent(&batch[CHUNK].agent.id).await.is_ok());
            backend.flush().await.unwrap();
            (kept, categories)
        };
        let store = SledBackend::open(dir.path()).unwrap().store();
        assert_eq!(store.count_agents(&ten.id).await.unwrap(), 1);
        for r in &batch {
            assert!(matches!(
                store.get_agent(&r.agent.id).await,
                Err(Error::NotFound { .. })
            ));
            assert!(
                store
                    .list_client_secrets(&r.agent.id)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                store
                    .get_agent_by_name(&ten.id, &r.agent.name)
                    .await
                    .is_err()
            );
        }
        let listed = store
            .list_agents(&ten.id, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(listed.items, vec![kept.clone()]);
        let q = MarketplaceQuery {
            text: Some("rollbackword".into()),
            ..Default::default()
        };
        let found = store
            .search_marketplace(&q, &PageRequest::first(10))
            .await
            .unwrap();
        assert!(found.items.is_empty(), "no word of the batch is indexed");
        let q = MarketplaceQuery {
            category: Some("finance".into()),
            ..Default::default()
        };
        let found = store
            .search_marketplace(&q, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(found.items, vec![kept]);
        assert_eq!(
            store.marketplace_counts(IndexKind::Category).await.unwrap(),
            categories,
            "the counts are as before the batch"
        );
        let open = store.shared.open().unwrap();
        assert!(open.t.meta.get(PENDING).unwrap().is_none());
        assert!(open.t.meta.get(PENDING_DONE).unwrap().is_none());
        drop(open);
        store.create_agents(&batch).await.unwrap();
        assert_eq!(
            store.count_agents(&ten.id).await.unwrap(),
            1 + batch.len() as u64
        );
        let q = MarketplaceQuery {
            text: Some("rollbackword".into()),
            ..Default::default()
        };
        let found = store
            .search_marketplace(&q, &PageRequest::first(500))
            .await
            .unwrap();
        assert_eq!(found.items.len(), 500);
        assert!(found.next_cursor.is_some());
    }
}

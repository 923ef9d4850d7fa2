//! The audit trail: append-only, hash-chained per tenant.
//!
//! Every state change, credential event and authentication failure becomes an
//! [`AuditEvent`]. Events of one chain (a tenant, or the system chain for
//! events with no tenant, such as a failed authentication by an unknown
//! client) carry consecutive sequence numbers starting at 1, and each event's
//! `hash` is SHA-256 over the previous event's hash and the event's own
//! content. [`verify_chain`] detects a changed event (its hash no longer
//! matches), a deleted one (a gap, or a broken link) and reordering. A deleted
//! *tail* is found by comparing with a head ([`ChainHead`]) kept elsewhere.
//! Secrets never enter an event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hex::encode as hex;
use crate::{TenantId, Timestamp};

/// Success or failure of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused or failed.
    Failure,
}

/// Facts about the request that caused an event (never credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestMeta {
    /// Request id (from the HTTP adapter).
    pub request_id: Option<String>,
    /// Peer address.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
}

/// An event before it joins its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAuditEvent {
    /// Chain: the tenant, or `None` for the system chain.
    pub tenant_id: Option<TenantId>,
    /// When it happened.
    pub at: Timestamp,
    /// Who acted: `admin_key:<id>`, `agent:<id>`, `client:<claimed id>`,
    /// `billing`, `system`.
    pub actor: String,
    /// What: dotted name such as `agent.registered`.
    pub action: String,
    /// On what (an id).
    pub target: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Request facts.
    pub request: RequestMeta,
    /// Further facts (never secrets).
    pub details: BTreeMap<String, String>,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in its chain, from 1.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// Hash of the previous event of the chain (zeros for the first), hex.
    pub prev_hash: String,
    /// This event's hash, hex.
    pub hash: String,
}

/// The hash preceding the first event of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `event` at position `seq` after `prev_hash`.
pub fn event_hash(seq: u64, prev_hash: &str, event: &NewAuditEvent) -> String {
    let mut h = Sha256::new();
    h.update(b"sentryagent-audit-v1\0");
    h.update(seq.to_be_bytes());
    h.update(prev_hash.as_bytes());
    // serde_json writes struct fields in declaration order and BTreeMap keys
    // sorted, so this is canonical for a given event.
    let body = serde_json::to_vec(event).unwrap_or_default();
    h.update((body.len() as u64).to_be_bytes());
    h.update(&body);
    hex(&h.finalize())
}

impl AuditEvent {
    /// Seals `event` as the chain's next event after `prev` (`None` for the
    /// first). Backends call this inside the transaction that appends.
    pub fn seal(event: NewAuditEvent, prev: Option<&ChainHead>) -> AuditEvent {
        let (seq, prev_hash) = match prev {
            Some(p) => (p.seq + 1, p.hash.clone()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = event_hash(seq, &prev_hash, &event);
        AuditEvent {
            seq,
            event,
            prev_hash,
            hash,
        }
    }

    /// This event as a chain head.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// The last event of a chain: its position and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainHead {
    /// Sequence number.
    pub seq: u64,
    /// Hash, hex.
    pub hash: String,
}

/// Why a chain failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// An event's content does not match its hash (changed).
    #[error("event {seq} was changed")]
    Changed {
        /// Sequence number.
        seq: u64,
    },
    /// A sequence number is missing (deleted) or out of order.
    #[error("expected event {expected}, found {found}")]
    Gap {
        /// Expected sequence number.
        expected: u64,
        /// Found sequence number.
        found: u64,
    },
    /// An event does not link to its predecessor.
    #[error("event {seq} does not link to its predecessor")]
    BrokenLink {
        /// Sequence number.
        seq: u64,
    },
    /// The chain ends before, or differs from, the expected head.
    #[error("chain does not reach the expected head {expected_seq}")]
    HeadMismatch {
        /// The expected head's sequence number.
        expected_seq: u64,
    },
}

/// Verifies a whole chain (all events of one tenant, in order, from seq 1),
/// and, when given, that it ends at `expected_head`.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    expected_head: Option<&ChainHead>,
) -> Result<Option<ChainHead>, ChainError> {
    let mut prev: Option<ChainHead> = None;
    for e in events {
        let expected = prev.as_ref().map_or(1, |p| p.seq + 1);
        if e.seq != expected {
            return Err(ChainError::Gap {
                expected,
                found: e.seq,
            });
        }
        let prev_hash = prev.as_ref().map_or(GENESIS_HASH, |p| p.hash.as_str());
        if e.prev_hash != prev_hash {
            return Err(ChainError::BrokenLink { seq: e.seq });
        }
        if event_hash(e.seq, &e.prev_hash, &e.event) != e.hash {
            return Err(ChainError::Changed { seq: e.seq });
        }
        prev = Some(e.head());
    }
    if let Some(h) = expected_head
        && prev.as_ref() != Some(h)
    {
        return Err(ChainError::HeadMismatch {
            expected_seq: h.seq,
        });
    }
    Ok(prev)
}

/// A query over one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// The chain: a tenant, or `None` for the system chain.
    pub tenant_id: Option<TenantId>,
    /// Events at or after this time.
    pub from: Option<Timestamp>,
    /// Events before this time.
    pub to: Option<Timestamp>,
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size (1..=1000; default 100).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// The page size to use.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// The sequence number after which to continue.
    pub fn after_seq(&self) -> crate::Result<u64> {
        match &self.cursor {
            None => Ok(0),
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| crate::Error::invalid("cursor", "not a cursor from this listing")),
        }
    }

    /// Whether `e` passes the filters (not the cursor).
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.from.is_none_or(|f| e.event.at >= f)
            && self.to.is_none_or(|t| e.event.at < t)
            && self.action.as_ref().is_none_or(|a| &e.event.action == a)
            && self.actor.as_ref().is_none_or(|a| &e.event.actor == a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u32) -> NewAuditEvent {
        NewAuditEvent {
            tenant_id: None,
            at: Timestamp::from_unix_secs(i64::from(i)),
            actor: "system".into(),
            action: "test.event".into(),
            target: Some(format!("t{i}")),
            outcome: Outcome::Success,
            request: RequestMeta::default(),
            details: BTreeMap::new(),
        }
    }

    fn chain(n: u32) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = Vec::new();
        for i in 0..n {
            let head = out.last().map(AuditEvent::head);
            out.push(AuditEvent::seal(ev(i), head.as_ref()));
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = verify_chain(&c, None).unwrap().unwrap();
        assert_eq!(head.seq, 5);
        verify_chain(&c, Some(&head)).unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let mut c = chain(5);
        c[2].event.target = Some("evil".into());
        assert_eq!(verify_chain(&c, None), Err(ChainError::Changed { seq: 3 }));

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify_chain(&c, None),
            Err(ChainError::Gap {
                expected: 2,
                found: 3
            })
        );

        let c = chain(5);
        let head = c[4].head();
        assert!(matches!(
            verify_chain(&c[..4], Some(&head)),
            Err(ChainError::HeadMismatch { .. })
        ));

        // Rewriting an event and re-hashing it breaks the next link.
        let mut c = chain(5);
        c[1].event.actor = "mallory".into();
        c[1].hash = event_hash(c[1].seq, &c[1].prev_hash, &c[1].event);
        assert_eq!(
            verify_chain(&c, None),
            Err(ChainError::BrokenLink { seq: 3 })
        );
    }
}

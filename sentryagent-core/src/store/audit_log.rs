//! [`AuditLog`]: the hash-chained audit trail.

use async_trait::async_trait;

use super::Backend;
use crate::audit::{AuditEvent, AuditQuery, ChainHead, NewAuditEvent};
use crate::page::Page;
use crate::{Result, TenantId};

/// The audit trail: one hash chain per tenant plus the system chain.
#[async_trait]
pub trait AuditLog: Backend {
    /// Appends to the event's chain: seals it after the chain's head
    /// ([`AuditEvent::seal`]) and stores it, atomically with respect to other
    /// appends to the same chain.
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent>;
    /// Events of one chain matching the query, by sequence number; the cursor
    /// is the last returned sequence number.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>>;
    /// The head of a chain, `None` when empty.
    async fn audit_head(&self, tenant: Option<&TenantId>) -> Result<Option<ChainHead>>;
}

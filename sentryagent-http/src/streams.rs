//! Caps on live audit streams: each holds a connection and a subscription
//! for as long as the client stays, so a node bounds how many a tenant, and
//! all tenants together, may hold open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderValue, StatusCode, header};
use sentryagent_core::TenantId;

use crate::problem::Problem;

/// Default cap on live audit streams per tenant, per node.
pub const DEFAULT_AUDIT_STREAMS_PER_TENANT: usize = 4;
/// Default cap on live audit streams per node, all tenants together.
pub const DEFAULT_AUDIT_STREAMS: usize = 256;

/// The open streams of a node.
#[derive(Debug)]
pub(crate) struct StreamSlots {
    per_tenant: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_tenant: HashMap<TenantId, usize>,
}

/// One open stream's place; given back when dropped (the stream ended, the
/// client left or the server drained).
#[derive(Debug)]
pub(crate) struct StreamSlot {
    slots: Arc<StreamSlots>,
    tenant: Option<TenantId>,
}

impl StreamSlots {
    pub(crate) fn new(per_tenant: usize, total: usize) -> Arc<Self> {
        Arc::new(StreamSlots {
            per_tenant,
            total,
            open: Mutex::default(),
        })
    }

    /// Takes a place for a stream of `tenant`'s caller (`None`: an operator,
    /// bound by the node's total only): 429 past the tenant's cap, 503 past
    /// the node's.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        tenant: Option<&TenantId>,
    ) -> Result<StreamSlot, Problem> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            let p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            )
            .detail(format!(
                "this server holds its maximum of {} live audit streams; retry later",
                self.total
            ))
            .header(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(p);
        }
        if let Some(t) = tenant {
            let n = open.by_tenant.entry(t.clone()).or_default();
            if *n >= self.per_tenant {
                return Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-streams",
                    "Too many live streams",
                )
                .detail(format!(
                    "the tenant already holds {} live audit streams on this server; close one first",
                    self.per_tenant
                )));
            }
            *n += 1;
        }
        open.total += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            tenant: tenant.cloned(),
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(t) = &self.tenant
            && let Some(n) = open.by_tenant.get_mut(t)
        {
            *n -= 1;
            if *n == 0 {
                open.by_tenant.remove(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse as _;

    #[test]
    fn slots_are_capped_per_tenant_and_in_total_and_come_back_on_drop() {
        let slots = StreamSlots::new(2, 3);
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let a1 = slots.acquire(Some(&a)).unwrap();
        let _a2 = slots.acquire(Some(&a)).unwrap();
        let p = slots.acquire(Some(&a)).unwrap_err();
        assert_eq!(p.into_response().status(), StatusCode::TOO_MANY_REQUESTS);
        let _b1 = slots.acquire(Some(&b)).unwrap();
        // The node's three are taken: an operator is refused too.
        let p = slots.acquire(None).unwrap_err();
        assert_eq!(p.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        assert_eq!(slots.open(), 2);
        let _a3 = slots.acquire(Some(&a)).unwrap();
        assert_eq!(slots.open(), 3);
    }
}

//! What an [`Idp`](crate::Idp) reports as it works, for a host's metrics:
//! [`IdpEvent`]s handed to the [`IdpObserver`]s registered with
//! [`Idp::add_observer`](crate::Idp::add_observer).
//!
//! The HTTP adapter registers one that feeds its Prometheus metrics; a
//! library host registers its own. An observer is called inline, on the
//! request's task, after the step it reports: it must be quick and must not
//! block (count, do not write to a network).

use crate::{LifecycleState, LimitKind, Tier};

/// Something the identity provider did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdpEvent {
    /// An agent moved from one lifecycle state to another (stored).
    LifecycleTransition {
        /// The state before.
        from: LifecycleState,
        /// The state after.
        to: LifecycleState,
    },
    /// A tier limit was checked for a request (an agent registration, a
    /// management API call, a token issuance), whether the request was then
    /// admitted or refused with `QuotaExceeded`.
    QuotaChecked {
        /// The tenant's tier.
        tier: Tier,
        /// Which limit.
        kind: LimitKind,
        /// The use before this request (agents held, calls today, tokens
        /// this month).
        used: u64,
        /// The limit.
        limit: u64,
        /// Whether the limit let the request through.
        admitted: bool,
    },
}

impl IdpEvent {
    /// For [`QuotaChecked`](IdpEvent::QuotaChecked): the use the request
    /// would bring the limit to, as a fraction of it, `(used + 1) / limit`.
    /// At most 1 when admitted, above 1 when refused (infinite for a limit
    /// of 0). `None` for other events.
    pub fn quota_ratio(&self) -> Option<f64> {
        match *self {
            IdpEvent::QuotaChecked { used, limit, .. } => Some(if limit == 0 {
                f64::INFINITY
            } else {
                (used as f64 + 1.0) / limit as f64
            }),
            _ => None,
        }
    }
}

/// Receives [`IdpEvent`]s (see the [module docs](self)).
pub trait IdpObserver: Send + Sync + std::fmt::Debug {
    /// Called once per event.
    fn observe(&self, event: &IdpEvent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_ratio_counts_the_request_being_admitted() {
        let ev = |used, limit, admitted| IdpEvent::QuotaChecked {
            tier: Tier::Free,
            kind: LimitKind::ApiCallsPerDay,
            used,
            limit,
            admitted,
        };
        assert_eq!(ev(0, 4, true).quota_ratio(), Some(0.25));
        assert_eq!(ev(3, 4, true).quota_ratio(), Some(1.0));
        assert_eq!(ev(4, 4, false).quota_ratio(), Some(1.25));
        assert_eq!(ev(0, 0, false).quota_ratio(), Some(f64::INFINITY));
        let t = IdpEvent::LifecycleTransition {
            from: LifecycleState::Active,
            to: LifecycleState::Paused,
        };
        assert_eq!(t.quota_ratio(), None);
    }
}

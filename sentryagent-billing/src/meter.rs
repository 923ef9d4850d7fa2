//! [`MeterReporter`]: usage of paid tenants, reported to the billing provider
//! as hourly meter events.
//!
//! For each tenant on a paid tier with a billing customer, each closed UTC
//! hour of the lookback window with a non-zero count of API calls or token
//! issuances becomes one [`UsageReport`]:
//! `identifier = "{tenant}:{kind}:{hour start, Unix seconds}"`
//! (`kind` is `api_call` or `token_issued`; an identifier over Stripe's 100
//! characters is replaced by its SHA-256), value = the hour's count,
//! timestamp = the hour's start, event name from [`MeterEventNames`].
//!
//! Never counted twice: an hour is sent once, then remembered with a store
//! marker (namespace [`MARKER_NAMESPACE`], key = the identifier) that lives
//! as long as the hour stays in the window. A crash between sending and
//! marking re-sends the same identifier with the same idempotency key, which
//! Stripe deduplicates.
//!
//! Delay: only hours that ended at least [`settle`](MeterReporter::settle)
//! ago (default 5 minutes) are sent, so usage that nodes buffered near the
//! end of an hour has been flushed to the meter by then. Usage flushed into
//! an hour after it was reported is not billed (counts are under-reported
//! rather than ever counted twice). Hours older than the
//! [`lookback`](MeterReporter::lookback) (default 7 days; Stripe accepts
//! meter events up to 35 days old) are not sent, and a tenant that is no
//! longer on a paid tier is not reported.
//!
//! Call [`MeterReporter::run`] from a host timer (every few minutes).

use std::time::Duration;

use sentryagent_core::PageRequest;
use sentryagent_core::UsageReport;
use sentryagent_core::{Error, Idp, Result, Tenant, Tier, Timestamp};
use sentryagent_core::{UsageKind, usage::hour_start};
use sha2::{Digest, Sha256};

use crate::config::MeterEventNames;

/// Marker namespace of hours already reported.
pub const MARKER_NAMESPACE: &str = "meter_report";

/// Reports per call of [`report_usage`](sentryagent_core::BillingProvider::report_usage).
const CHUNK: usize = 100;

const HOUR: Duration = Duration::from_secs(3600);

/// Longest lookback: Stripe refuses meter events older than 35 days.
const MAX_LOOKBACK: Duration = Duration::from_secs(30 * 24 * 3600);

/// The meter event identifier of a tenant's use of `kind` in the hour
/// starting at `hour`.
pub fn meter_identifier(tenant: &str, kind: UsageKind, hour: Timestamp) -> String {
    let id = format!("{tenant}:{}:{}", kind.as_str(), hour.unix_secs());
    if id.len() <= 100 {
        id
    } else {
        Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What one [`MeterReporter::run`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MeterRun {
    /// Paid tenants with a billing customer that were looked at.
    pub tenants: usize,
    /// Reports recorded by the provider in this run.
    pub sent: usize,
    /// Hours skipped because they were reported before.
    pub already_sent: usize,
    /// Reports whose sending failed (retried on the next run).
    pub failed: usize,
    /// The first failure, if any.
    pub error: Option<Error>,
}

/// Reports the usage of paid tenants through the `Idp`'s billing provider.
#[derive(Debug, Clone)]
pub struct MeterReporter {
    idp: Idp,
    names: MeterEventNames,
    lookback: Duration,
    settle: Duration,
}

impl MeterReporter {
    /// A reporter for `idp` (its store, meter, clock and billing provider).
    pub fn new(idp: Idp, names: MeterEventNames) -> Self {
        MeterReporter {
            idp,
            names,
            lookback: Duration::from_secs(7 * 24 * 3600),
            settle: Duration::from_secs(300),
        }
    }

    /// How far back hours are reported (at most 30 days). Default 7 days.
    pub fn lookback(mut self, lookback: Duration) -> Self {
        self.lookback = lookback.min(MAX_LOOKBACK);
        self
    }

    /// How long after its end an hour is reported. Default 5 minutes.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    fn window(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        let to = hour_start(now.minus(self.settle));
        (to.minus(self.lookback), to)
    }

    fn event_name(&self, kind: UsageKind) -> &str {
        match kind {
            UsageKind::ApiCall => &self.names.api_calls,
            UsageKind::TokenIssued => &self.names.token_issuances,
        }
    }

    /// The reports not sent yet for one tenant (empty unless it is on a paid
    /// tier with a billing customer), oldest first, with how many hours were
    /// skipped as already sent.
    pub async fn pending_for(&self, tenant: &Tenant) -> Result<(Vec<UsageReport>, usize)> {
        let Some(customer) = &tenant.billing.customer_id else {
            return Ok((Vec::new(), 0));
        };
        if tenant.tier == Tier::Free {
            return Ok((Vec::new(), 0));
        }
        let now = self.idp.clock().now();
        let (from, to) = self.window(now);
        let mut out = Vec::new();
        let mut skipped = 0;
        for kind in [UsageKind::ApiCall, UsageKind::TokenIssued] {
            for (hour, count) in self.idp.meter().hourly(&tenant.id, kind, from, to).await? {
                if count == 0 {
                    continue;
                }
                let identifier = meter_identifier(tenant.id.as_str(), kind, hour);
                if self
                    .idp
                    .store()
                    .markers
                    .has_marker(MARKER_NAMESPACE, &identifier, now)
                    .await?
                {
                    skipped += 1;
                    continue;
                }
                out.push(UsageReport {
                    identifier,
                    customer_id: customer.clone(),
                    event_name: self.event_name(kind).to_owned(),
                    value: count,
                    timestamp: hour,
                });
            }
        }
        out.sort_by_key(|r| r.timestamp);
        Ok((out, skipped))
    }

    /// Sends every pending report of every paid tenant. Failures of some
    /// reports do not stop the others; they are counted in the result and
    /// retried on the next run. Errors reading the store or the meter end
    /// the run.
    pub async fn run(&self) -> Result<MeterRun> {
        let mut run = MeterRun::default();
        let billing = self.idp.billing();
        if !billing.enabled() {
            return Ok(run);
        }
        let mut page = PageRequest::first(200);
        loop {
            let tenants = self.idp.store().tenants.list_tenants(&page).await?;
            for tenant in &tenants.items {
                if tenant.tier == Tier::Free || tenant.billing.customer_id.is_none() {
                    continue;
                }
                run.tenants += 1;
                let (reports, skipped) = self.pending_for(tenant).await?;
                run.already_sent += skipped;
                for chunk in reports.chunks(CHUNK) {
                    match billing.report_usage(chunk).await {
                        Ok(()) => {
                            for r in chunk {
                                let expires =
                                    r.timestamp.plus(self.lookback + self.settle + 2 * HOUR);
                                self.idp
                                    .store()
                                    .markers
                                    .put_marker(
                                        MARKER_NAMESPACE,
                                        &r.identifier,
                                        expires,
                                        self.idp.clock().now(),
                                    )
                                    .await?;
                            }
                            run.sent += chunk.len();
                        }
                        Err(e) => {
                            run.failed += chunk.len();
                            run.error.get_or_insert(e);
                        }
                    }
                }
            }
            match tenants.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_stable_and_bounded() {
        let h = Timestamp::from_unix_secs(1_763_697_600);
        assert_eq!(
            meter_identifier("tnt_1", UsageKind::ApiCall, h),
            "tnt_1:api_call:1763697600"
        );
        let long = "t".repeat(128);
        let id = meter_identifier(&long, UsageKind::TokenIssued, h);
        assert_eq!(id.len(), 64);
        assert_eq!(id, meter_identifier(&long, UsageKind::TokenIssued, h));
        assert_ne!(id, meter_identifier(&long, UsageKind::ApiCall, h));
    }
}

//! Prometheus metrics. Every label has a bounded set of values: route
//! templates (never raw paths), methods, status codes, OAuth error codes,
//! tiers, limit kinds, lifecycle states, webhook outcomes, backend names.
//! Never a tenant, agent or key id.
//!
//! Most figures are counted as requests are served; the lifecycle
//! transitions and tier limit checks come from the [`Idp`]'s events
//! ([`IdpObserver`]); the agents by state and the backend gauges are read at
//! scrape time.
//!
//! [`Idp`]: sentryagent_core::Idp

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sentryagent_core::{AgentStateCounts, BackendHealth, HealthStatus, IdpEvent, IdpObserver};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    scope: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    tier: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStatLabels {
    backend: String,
    stat: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Upper bounds of the quota use ratio's buckets: `le="1"` holds every
/// admitted request, `+Inf` minus it the refused ones.
pub(crate) const QUOTA_RATIO_BUCKETS: [f64; 7] = [0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0];

/// The largest quota use ratio recorded (a refusal by a limit of zero would
/// be infinite, and would make the histogram's sum useless).
pub(crate) const QUOTA_RATIO_MAX: f64 = 2.0;

fn quota_histogram() -> Histogram {
    Histogram::new(QUOTA_RATIO_BUCKETS)
}

/// The metrics of one router.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    tokens_issued: Counter,
    token_errors: Family<ErrorLabels, Counter>,
    rate_limit: Family<DecisionLabels, Counter>,
    api_calls: Family<TierLabels, Counter>,
    agents: Family<StateLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    quota_ratio: Family<QuotaLabels, Histogram, fn() -> Histogram>,
    webhooks: Family<OutcomeLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    backend_latency: Family<BackendLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    backend_stats: Family<BackendStatLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("sentryagent");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route template and method",
            latency.clone(),
        );
        let tokens_issued = Counter::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued",
            tokens_issued.clone(),
        );
        let token_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "token_errors",
            "Token requests refused, by OAuth error code",
            token_errors.clone(),
        );
        let rate_limit = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by scope (token, api) and outcome (allowed, limited)",
            rate_limit.clone(),
        );
        let api_calls = Family::<TierLabels, Counter>::default();
        registry.register(
            "api_calls",
            "Admitted management API calls of tenant keys, by tier",
            api_calls.clone(),
        );
        let agents = Family::<StateLabels, Gauge>::default();
        registry.register(
            "agents",
            "Agents of every tenant by lifecycle state, from the store (read at scrape, \
             at most once per agent_counts_max_age)",
            agents.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "agent_lifecycle_transitions",
            "Agent lifecycle transitions made through this node, by from and to state",
            transitions.clone(),
        );
        let quota_ratio = Family::<QuotaLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            quota_histogram,
        );
        registry.register(
            "quota_use_ratio",
            "Tier limit checks by tier and kind: (use before the request + 1) / limit; \
             at most 1 when admitted, above 1 when refused (recorded at most 2)",
            quota_ratio.clone(),
        );
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "billing_webhooks",
            "Billing webhook deliveries by outcome (applied, duplicate, stale, \
             other_subscription, unknown_tenant, ignored, bad_signature, invalid, \
             not_configured, error)",
            webhooks.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_up",
            "1 when the backend answers, 0 when it is down (probed at scrape)",
            backend_up.clone(),
        );
        let backend_latency = Family::default();
        registry.register(
            "backend_ping_seconds",
            "Round trip of the backend's health ping",
            backend_latency.clone(),
        );
        let backend_stats = Family::default();
        registry.register(
            "backend_pool",
            "Numeric pool figures of the backend (size, idle, waiting...)",
            backend_stats.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            tokens_issued,
            token_errors,
            rate_limit,
            api_calls,
            agents,
            transitions,
            quota_ratio,
            webhooks,
            backend_up,
            backend_latency,
            backend_stats,
        }
    }

    pub(crate) fn observe_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    pub(crate) fn token_error(&self, code: &'static str) {
        self.token_errors
            .get_or_create(&ErrorLabels {
                error: code.to_owned(),
            })
            .inc();
    }

    pub(crate) fn rate_limit(&self, scope: &'static str, allowed: bool) {
        self.rate_limit
            .get_or_create(&DecisionLabels {
                scope: scope.to_owned(),
                outcome: if allowed { "allowed" } else { "limited" }.to_owned(),
            })
            .inc();
    }

    pub(crate) fn api_call(&self, tier: &'static str) {
        self.api_calls
            .get_or_create(&TierLabels {
                tier: tier.to_owned(),
            })
            .inc();
    }

    /// Sets the agents-by-state gauges; `None` (the store could not be read)
    /// removes them, so a scrape shows no figures rather than stale ones.
    pub(crate) fn agents(&self, counts: Option<&AgentStateCounts>) {
        let Some(counts) = counts else {
            self.agents.clear();
            return;
        };
        for (state, n) in counts.iter() {
            self.agents
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a billing webhook delivery by outcome.
    pub(crate) fn webhook(&self, outcome: &'static str) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records an event of the Idp.
    fn event(&self, event: &IdpEvent) {
        match *event {
            IdpEvent::LifecycleTransition { from, to } => {
                self.transitions
                    .get_or_create(&TransitionLabels {
                        from: from.as_str().to_owned(),
                        to: to.as_str().to_owned(),
                    })
                    .inc();
            }
            IdpEvent::QuotaChecked { tier, kind, .. } => {
                if let Some(ratio) = event.quota_ratio() {
                    self.quota_ratio
                        .get_or_create(&QuotaLabels {
                            tier: tier.as_str().to_owned(),
                            kind: kind.as_str().to_owned(),
                        })
                        .observe(ratio.min(QUOTA_RATIO_MAX));
                }
            }
            _ => {}
        }
    }

    /// An observer of the Idp's events feeding these metrics, for as long
    /// as they exist (a dropped router leaves a no-op behind, not its
    /// registry).
    pub(crate) fn observer(self: &Arc<Self>) -> Arc<dyn IdpObserver> {
        Arc::new(MetricsObserver(Arc::downgrade(self)))
    }

    /// Sets the backend gauges from a health probe.
    pub(crate) fn backends(&self, health: &[BackendHealth]) {
        for h in health {
            let labels = BackendLabels {
                backend: h.backend.clone(),
            };
            self.backend_up
                .get_or_create(&labels)
                .set(i64::from(h.status != HealthStatus::Down));
            if let Some(us) = h.latency_us {
                self.backend_latency
                    .get_or_create(&labels)
                    .set(us as f64 / 1e6);
            }
            for (k, v) in &h.details {
                if let Some(n) = v.as_f64() {
                    self.backend_stats
                        .get_or_create(&BackendStatLabels {
                            backend: h.backend.clone(),
                            stat: k.clone(),
                        })
                        .set(n);
                }
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Feeds [`Metrics`] with the Idp's events.
#[derive(Debug)]
struct MetricsObserver(Weak<Metrics>);

impl IdpObserver for MetricsObserver {
    fn observe(&self, event: &IdpEvent) {
        if let Some(m) = self.0.upgrade() {
            m.event(event);
        }
    }
}

//! Backend health, for `/health/detailed` and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a backend answers.
///
/// Closed on purpose: up, degraded or down is what probes
/// and load balancers act on; details go in `BackendHealth::details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Answering.
    Up,
    /// Answering, but something is wrong (e.g. failing open).
    Degraded,
    /// Not answering.
    Down,
}

/// One backend's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendHealth {
    /// Backend name (`memory`, `sled`, `postgres`, `redis`).
    pub backend: String,
    /// Status.
    pub status: HealthStatus,
    /// Round trip of a ping, microseconds.
    pub latency_us: Option<u64>,
    /// Backend specific figures (pool size, idle, waiting...).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: BTreeMap<String, serde_json::Value>,
    /// Error text when not up.
    pub error: Option<String>,
}

impl BackendHealth {
    /// An up backend with a measured latency.
    pub fn up(backend: impl Into<String>, latency: Duration) -> Self {
        BackendHealth {
            backend: backend.into(),
            status: HealthStatus::Up,
            latency_us: Some(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
            details: BTreeMap::new(),
            error: None,
        }
    }

    /// A down backend.
    pub fn down(backend: impl Into<String>, error: impl std::fmt::Display) -> Self {
        BackendHealth {
            backend: backend.into(),
            status: HealthStatus::Down,
            latency_us: None,
            details: BTreeMap::new(),
            error: Some(error.to_string()),
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

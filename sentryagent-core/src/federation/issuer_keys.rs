//! [`IssuerKeys`]: where the keys of another identity provider come from.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::subject::IssuerKeySet;
use crate::store::Backend;
use crate::{Error, Result};

/// The public keys of the issuers that trust policies name. The core holds
/// no HTTP client: a host passes an implementation to
/// [`IdpBuilder::issuer_keys`](crate::IdpBuilder::issuer_keys), such as the
/// HTTP adapter's fetcher (OIDC discovery and JWKS, cached), or
/// [`StaticIssuerKeys`] for key sets known in advance.
///
/// Its [`Backend::health`] is reported in `/health/detailed` (a fetcher
/// says there when it serves an issuer's last good keys after a failed
/// refresh).
#[async_trait]
pub trait IssuerKeys: Backend {
    /// The keys of `issuer`, for a token whose header names key `kid`. An
    /// implementation that caches fetches again when the cached set has no
    /// key `kid` (within its own bounds, so that tokens with made-up `kid`s
    /// cannot make it fetch on every request).
    ///
    /// Errors: [`Error::NotFound`] for an issuer it knows nothing of,
    /// [`Error::Unavailable`] when the keys cannot be had.
    async fn issuer_keys(&self, issuer: &str, kid: Option<&str>) -> Result<Arc<IssuerKeySet>>;
}

/// Key sets given by the host, by issuer (no fetching): for issuers whose
/// keys are known in advance (a Kubernetes cluster's service-account
/// issuer, tests), and the default of an [`Idp`](crate::Idp) (empty: no
/// exchange succeeds until keys are given).
#[derive(Debug, Default)]
pub struct StaticIssuerKeys {
    sets: RwLock<HashMap<String, Arc<IssuerKeySet>>>,
}

impl StaticIssuerKeys {
    /// No issuer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the keys of `issuer`.
    pub fn insert(&self, issuer: impl Into<String>, keys: IssuerKeySet) {
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(issuer.into(), Arc::new(keys));
    }

    /// Forgets `issuer`.
    pub fn remove(&self, issuer: &str) {
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(issuer);
    }
}

#[async_trait]
impl Backend for StaticIssuerKeys {
    fn name(&self) -> &'static str {
        "static-issuer-keys"
    }
}

#[async_trait]
impl IssuerKeys for StaticIssuerKeys {
    async fn issuer_keys(&self, issuer: &str, _kid: Option<&str>) -> Result<Arc<IssuerKeySet>> {
        self.sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(issuer)
            .cloned()
            .ok_or(Error::not_found("issuer"))
    }
}

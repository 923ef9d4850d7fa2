//! [`SigningKeyStore`]: the token signing key ring.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Backend;
use crate::jose::Algorithm;
use crate::{Result, Timestamp};

/// A signing key of the token key ring, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// The private key (32 bytes), raw unless `sealed`. Protecting the store
    /// at rest is the host's responsibility (see the `Idp` docs on keys).
    pub secret: Vec<u8>,
    /// Whether `secret` is encrypted under a key-encryption key. This
    /// version writes only unsealed keys and refuses to load sealed ones.
    pub sealed: bool,
    /// Creation time; the newest key of an algorithm signs.
    pub created_at: Timestamp,
    /// No longer used for signing after this time (set when rotated out).
    pub retire_at: Option<Timestamp>,
    /// Removed from the JWKS after this time (every token it signed has
    /// expired by then).
    pub expire_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("sealed", &self.sealed)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish_non_exhaustive()
    }
}

/// The signing keys of the token key ring (private keys: protect the store
/// at rest, see the `Idp` docs on keys).
#[async_trait]
pub trait SigningKeyStore: Backend {
    /// Inserts a signing key; `AlreadyExists` on a taken kid.
    async fn put_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;
    /// Replaces a signing key's record (same kid); `NotFound` if absent.
    async fn update_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;
    /// Every signing key.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Deletes a signing key (idempotent).
    async fn delete_signing_key(&self, kid: &str) -> Result<()>;
}

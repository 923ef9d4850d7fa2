//! The token signing key ring.
//!
//! One current key per configured algorithm signs; keys rotated out stay in
//! the JWKS until every token they signed has expired (`expire_at` = time of
//! rotation + longest token lifetime + leeway), then they are deleted.
//! Rotation happens on schedule (`key_rotation_period`) when
//! [`Idp::maintenance`](crate::Idp::maintenance) runs, or at once through
//! [`Idp::rotate_signing_keys`](crate::Idp::rotate_signing_keys). Several
//! nodes may rotate at the same moment: each new key is valid, and every node
//! signs with the newest one it has loaded.
//!
//! Private keys are persisted through the [`AgentStore`](crate::AgentStore)
//! as raw bytes. Protecting them at rest is the host's responsibility: keep
//! the store's files or database encrypted and access-controlled, as you
//! would for any signing key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::jose::{Algorithm, JwkSet, KeySet, SigningKey};
use crate::store::{SigningKeyRecord, SigningKeyStore};
use crate::{Error, Result, Timestamp};

/// The loaded ring: signers and the verification set.
#[derive(Debug)]
pub(crate) struct KeyRing {
    pub(crate) signers: HashMap<Algorithm, Arc<SigningKey>>,
    /// When each signer was created.
    pub(crate) signer_since: HashMap<Algorithm, Timestamp>,
    pub(crate) verify: KeySet,
    pub(crate) jwks: JwkSet,
}

impl KeyRing {
    pub(crate) fn signer(&self, alg: Algorithm) -> Result<&Arc<SigningKey>> {
        self.signers.get(&alg).ok_or_else(|| Error::NotConfigured {
            message: format!("no {} signing key (algorithm not enabled)", alg.as_str()),
        })
    }
}

fn new_kid(alg: Algorithm, now: Timestamp) -> String {
    let rand: [u8; 6] = crate::secret::random_bytes();
    let mut s = format!("{}-{}-", alg.as_str().to_ascii_lowercase(), now.unix_secs());
    for b in rand {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Brings the stored ring up to date at `now` (rotating keys that are due,
/// deleting expired ones) and loads it.
pub(crate) async fn refresh(
    store: &dyn SigningKeyStore,
    algorithms: &[Algorithm],
    rotation_period: Duration,
    retention: Duration,
    force_rotate: bool,
    now: Timestamp,
) -> Result<KeyRing> {
    let mut records = store.list_signing_keys().await?;
    let mut created_any = false;
    for alg in algorithms {
        let current = records
            .iter()
            .filter(|r| r.alg == *alg && r.retire_at.is_none_or(|t| t > now))
            .max_by_key(|r| (r.created_at, r.kid.clone()))
            .cloned();
        let due = match &current {
            None => true,
            Some(c) => force_rotate || c.created_at.plus(rotation_period) <= now,
        };
        if !due {
            continue;
        }
        let key = SigningKey::generate(*alg, new_kid(*alg, now))
            .map_err(|e| Error::internal("generate signing key", e))?;
        let record = SigningKeyRecord {
            kid: key.kid().to_owned(),
            alg: *alg,
            secret: key.secret_bytes().to_vec(),
            sealed: false,
            created_at: now,
            retire_at: None,
            expire_at: None,
        };
        store.put_signing_key(&record).await?;
        for old in records
            .iter_mut()
            .filter(|r| r.alg == *alg && r.retire_at.is_none())
        {
            old.retire_at = Some(now);
            old.expire_at = Some(now.plus(retention));
            store.update_signing_key(old).await?;
        }
        records.push(record);
        created_any = true;
    }
    if created_any {
        // Another node may have rotated at the same moment: read the ring
        // back so every key any node signs with is in our verification set.
        records = store.list_signing_keys().await?;
    }
    let mut signers: HashMap<Algorithm, (Timestamp, Arc<SigningKey>)> = HashMap::new();
    let mut verify = KeySet::default();
    let mut jwks = JwkSet { keys: Vec::new() };
    records.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
    for r in &records {
        if r.expire_at.is_some_and(|t| t <= now) {
            store.delete_signing_key(&r.kid).await?;
            continue;
        }
        if r.sealed {
            return Err(Error::Internal {
                message: format!(
                    "signing key {} is sealed and no key-encryption key is configured",
                    r.kid
                ),
                source: None,
            });
        }
        let key = SigningKey::from_secret_bytes(r.alg, r.kid.clone(), &r.secret)
            .map_err(|e| Error::internal(format!("stored signing key {} is corrupt", r.kid), e))?;
        jwks.keys.push(key.public_jwk());
        verify.insert(r.kid.clone(), key.verifying_key());
        let signing = r.retire_at.is_none_or(|t| t > now) && algorithms.contains(&r.alg);
        if signing {
            let newer = signers.get(&r.alg).is_none_or(|(t, _)| *t <= r.created_at);
            if newer {
                signers.insert(r.alg, (r.created_at, Arc::new(key)));
            }
        }
    }
    Ok(KeyRing {
        signer_since: signers.iter().map(|(a, (t, _))| (*a, *t)).collect(),
        signers: signers.into_iter().map(|(a, (_, k))| (a, k)).collect(),
        verify,
        jwks,
    })
}

//! Generated secrets (client secrets, admin API keys) and their keyed hashes.
//!
//! A generated secret carries 256 bits from the operating system's random
//! source, so a fast keyed hash is enough to store it: there is nothing to
//! brute-force, and a slow password hash (bcrypt, argon2) would only cap
//! token throughput. Stored form: HMAC-SHA256 under the deployment's secret
//! hashing key. Comparison is constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Random bytes in a generated secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::TryRng as _;
    let mut buf = [0u8; N];
    // The OS source failing is not recoverable for an identity provider.
    rand::rngs::SysRng
        .try_fill_bytes(&mut buf)
        .unwrap_or_else(|e| panic!("operating system random source failed: {e}"));
    buf
}

/// Random bytes for identifiers that must be unique and unpredictable but
/// are not secrets (the `jti` of access tokens): from `rand`'s thread-local
/// generator (ChaCha12, seeded from the operating system's source and
/// reseeded from it after every 64 KiB of output), which saves a system call
/// per token. Secrets and keys use [`random_bytes`], straight from the
/// operating system.
///
/// The thread-local generator is not reseeded when the process forks: a
/// child forked from a thread that already drew from it would repeat its
/// parent's stream until the next reseed. Hosts run the `Idp` in a
/// multi-threaded runtime, where continuing after `fork` without `exec` is
/// not supported anyway.
pub(crate) fn unique_id_bytes<const N: usize>() -> [u8; N] {
    use rand::Rng as _;
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// `prefix` followed by 256 random bits in base64url (43 characters).
pub fn generate_secret(prefix: &str) -> String {
    let bytes: [u8; SECRET_BYTES] = random_bytes();
    let mut s = String::with_capacity(prefix.len() + 43);
    s.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s
}

/// Whether a presented secret equals the expected one, in time that tells
/// neither: both are hashed (SHA-256) and the digests compared in constant
/// time, so the timing shows neither how much of the secret matched nor its
/// length. For secrets held in clear by the host, such as a metrics bearer
/// token read from the environment.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    use sha2::Digest as _;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// A keyed hash of a secret. Debug and serde show base64url only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let v = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)?;
        let arr: [u8; 32] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("secret hash must be 32 bytes"))?;
        Ok(SecretHash(arr))
    }
}

/// Hashes and verifies generated secrets under one key.
#[derive(Clone)]
pub struct SecretHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    /// A hasher keyed with `key` (keep it secret and stable: changing it
    /// invalidates every stored secret).
    pub fn new(key: &[u8; 32]) -> Self {
        SecretHasher {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
        }
    }

    /// The keyed hash of `secret`.
    pub fn hash(&self, secret: &str) -> SecretHash {
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        SecretHash(mac.finalize().into_bytes().into())
    }

    /// Whether `secret` hashes to `expected`, compared in constant time.
    pub fn verify(&self, secret: &str, expected: &SecretHash) -> bool {
        self.hash(secret).0.ct_eq(&expected.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match(
            "metrics-token-0123456789",
            "metrics-token-0123456789"
        ));
        for other in [
            "",
            "metrics-token-012345678",
            "metrics-token-0123456789x",
            "Metrics-token-0123456789",
        ] {
            assert!(
                !secrets_match(other, "metrics-token-0123456789"),
                "{other:?}"
            );
        }
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = generate_secret("sa_cs_");
        let b = generate_secret("sa_cs_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a[6..]).unwrap().len(), 32);
    }

    #[test]
    fn unique_ids_differ_within_and_across_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(unique_id_bytes::<16>()));
        }
        let other: Vec<[u8; 16]> =
            std::thread::spawn(|| (0..10_000).map(|_| unique_id_bytes()).collect())
                .join()
                .unwrap();
        for id in other {
            assert!(seen.insert(id));
        }
        assert_ne!(unique_id_bytes::<16>(), [0u8; 16]);
    }

    #[test]
    fn hash_verifies_only_the_secret_under_the_key() {
        let h = SecretHasher::new(&[7; 32]);
        let s = generate_secret("x");
        let hash = h.hash(&s);
        assert!(h.verify(&s, &hash));
        assert!(!h.verify(&format!("{s}a"), &hash));
        assert!(!SecretHasher::new(&[8; 32]).verify(&s, &hash));
        let json = serde_json::to_string(&hash).unwrap();
        assert!(!json.contains(&s));
        assert_eq!(serde_json::from_str::<SecretHash>(&json).unwrap(), hash);
    }
}

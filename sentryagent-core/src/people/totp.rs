//! The second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second
//! steps, one step of skew either way, each step accepted once) and
//! single-use recovery codes.
//!
//! The TOTP seed must be read back to check codes, so it cannot be hashed:
//! it is stored sealed, XORed with a pad that is HMAC-SHA256 under the
//! deployment's secret hashing key of a random 128-bit nonce (a stream
//! cipher with HMAC as its PRF). Whoever reads the store without that key
//! learns nothing of the seed. Recovery codes are stored as keyed hashes
//! only and shown once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::secret::{SecretHash, SecretHasher};
use crate::{Error, Result, Timestamp};

/// Bytes of a TOTP seed (160 bits, RFC 4226's recommendation).
const SEED_BYTES: usize = 20;
/// Recovery codes made at once.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Characters of the alphabet of recovery codes (RFC 4648 base32, lower
/// case).
const CODE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A TOTP seed, sealed: XORed with HMAC-SHA256 of a random nonce under the
/// deployment's secret hashing key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Random nonce, base64url.
    pub nonce: String,
    /// The seed XOR the pad, base64url.
    pub sealed: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// A person's second factor (stored form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    /// The sealed seed.
    pub seed: SealedSecret,
    /// Whether a code proved the authenticator has the seed (only then is
    /// the factor required at sign-in).
    pub confirmed: bool,
    /// The last time step accepted (a code is accepted once).
    pub last_step: Option<u64>,
    /// Keyed hashes of the unused recovery codes.
    pub recovery_codes: Vec<SecretHash>,
    /// When the factor was confirmed.
    pub enabled_at: Option<Timestamp>,
}

/// A TOTP seed in clear (never stored so).
pub(crate) struct Seed(pub(crate) [u8; SEED_BYTES]);

impl Seed {
    pub(crate) fn generate() -> Seed {
        Seed(crate::secret::random_bytes())
    }

    fn pad(hasher: &SecretHasher, nonce: &str) -> [u8; 32] {
        hasher.hash(&format!("totp-seed\0{nonce}")).0
    }

    /// The seed sealed under the hasher's key.
    pub(crate) fn seal(&self, hasher: &SecretHasher) -> SealedSecret {
        let nonce = URL_SAFE_NO_PAD.encode(crate::secret::random_bytes::<16>());
        let pad = Seed::pad(hasher, &nonce);
        let sealed: Vec<u8> = self.0.iter().zip(pad).map(|(a, b)| a ^ b).collect();
        SealedSecret {
            nonce,
            sealed: URL_SAFE_NO_PAD.encode(sealed),
        }
    }

    /// Opens a sealed seed.
    pub(crate) fn open(sealed: &SealedSecret, hasher: &SecretHasher) -> Result<Seed> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.sealed.as_bytes())
            .ok()
            .filter(|b| b.len() == SEED_BYTES)
            .ok_or_else(|| Error::Internal {
                message: "a stored TOTP seed is corrupt".into(),
                source: None,
            })?;
        let pad = Seed::pad(hasher, &sealed.nonce);
        let mut seed = [0u8; SEED_BYTES];
        for (i, b) in bytes.iter().enumerate() {
            seed[i] = b ^ pad[i];
        }
        Ok(Seed(seed))
    }

    fn totp(&self) -> Result<totp_rs::Totp> {
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::from(self.0))
            .build()
            .map_err(|e| Error::internal("TOTP", std::io::Error::other(e.to_string())))
    }

    /// The seed in base32 (for an authenticator app).
    pub(crate) fn base32(&self) -> String {
        totp_rs::Secret::from(self.0).to_base32()
    }

    /// A seed from its base32 form.
    #[cfg(any(test, feature = "conformance"))]
    pub(crate) fn from_base32(s: &str) -> Option<Seed> {
        let bytes = totp_rs::Secret::try_from_base32(s).ok()?;
        let seed: [u8; SEED_BYTES] = bytes.as_bytes().try_into().ok()?;
        Some(Seed(seed))
    }

    /// The code of the step containing `at` (for tests and tools).
    #[cfg(any(test, feature = "conformance"))]
    pub(crate) fn code_at(&self, at: Timestamp) -> Result<String> {
        let secs = u64::try_from(at.unix_secs()).unwrap_or(0);
        Ok(self.totp()?.generate(secs).to_string())
    }
}

/// The time step a 6-digit `code` is valid for at `now` (the step before,
/// at or after), if any.
pub(crate) fn totp_code_step(seed: &Seed, code: &str, now: Timestamp) -> Result<Option<u64>> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let secs = u64::try_from(now.unix_secs()).unwrap_or(0);
    Ok(seed.totp()?.check(code, secs))
}

/// A fresh recovery code (`xxxxx-xxxxx`, 50 random bits) and its keyed hash.
pub(crate) fn recovery_code(hasher: &SecretHasher) -> (String, SecretHash) {
    let bytes: [u8; 10] = crate::secret::random_bytes();
    let chars: String = bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(b % 32)]))
        .collect();
    let code = format!("{}-{}", &chars[..5], &chars[5..]);
    let hash = recovery_hash(hasher, &code);
    (code, hash)
}

/// The keyed hash of a recovery code as typed (case, dashes and spaces do
/// not matter).
pub(crate) fn recovery_hash(hasher: &SecretHasher, code: &str) -> SecretHash {
    let canonical: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hasher.hash(&format!("recovery-code\0{canonical}"))
}

impl TotpState {
    /// The index of the unused recovery code matching `code`, compared in
    /// constant time against each.
    pub(crate) fn recovery_index(&self, hasher: &SecretHasher, code: &str) -> Option<usize> {
        let h = recovery_hash(hasher, code);
        let mut found = None;
        for (i, stored) in self.recovery_codes.iter().enumerate() {
            if bool::from(stored.0.ct_eq(&h.0)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, seed "12345678901234567890", 8 digits
        // there; the 6-digit codes are their last six digits.
        let seed = Seed(*b"12345678901234567890");
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(
                seed.code_at(Timestamp::from_unix_secs(t)).unwrap(),
                code,
                "{t}"
            );
        }
    }

    #[test]
    fn codes_are_checked_with_one_step_of_skew() {
        let seed = Seed::generate();
        let now = Timestamp::from_unix_secs(1_763_700_000);
        let code = seed.code_at(now).unwrap();
        let step = totp_code_step(&seed, &code, now).unwrap().unwrap();
        assert_eq!(step, 1_763_700_000 / 30);
        assert!(
            totp_code_step(&seed, &code, now.plus(std::time::Duration::from_secs(30)))
                .unwrap()
                .is_some()
        );
        assert!(
            totp_code_step(&seed, &code, now.plus(std::time::Duration::from_secs(90)))
                .unwrap()
                .is_none()
        );
        assert!(totp_code_step(&seed, "12345", now).unwrap().is_none());
        assert!(totp_code_step(&seed, "abcdef", now).unwrap().is_none());
    }

    #[test]
    fn sealed_seeds_open_only_under_their_key() {
        let h = SecretHasher::new(&[3; 32]);
        let seed = Seed::generate();
        let sealed = seed.seal(&h);
        assert_ne!(
            URL_SAFE_NO_PAD.decode(&sealed.sealed).unwrap(),
            seed.0.to_vec()
        );
        assert_eq!(Seed::open(&sealed, &h).unwrap().0, seed.0);
        let other = SecretHasher::new(&[4; 32]);
        assert_ne!(Seed::open(&sealed, &other).unwrap().0, seed.0);
        let twice = seed.seal(&h);
        assert_ne!(twice.sealed, sealed.sealed, "a fresh nonce each time");
        let corrupt = SealedSecret {
            nonce: sealed.nonce.clone(),
            sealed: "AAAA".into(),
        };
        assert!(Seed::open(&corrupt, &h).is_err());
        assert_eq!(format!("{sealed:?}"), "SealedSecret(..)");
        assert_eq!(seed.base32().len(), 32);
    }

    #[test]
    fn recovery_codes_match_as_typed() {
        let h = SecretHasher::new(&[3; 32]);
        let (a, ha) = recovery_code(&h);
        let (_, hb) = recovery_code(&h);
        assert_eq!(a.len(), 11);
        let state = TotpState {
            seed: Seed::generate().seal(&h),
            confirmed: true,
            last_step: None,
            recovery_codes: vec![hb, ha],
            enabled_at: None,
        };
        assert_eq!(state.recovery_index(&h, &a), Some(1));
        assert_eq!(
            state.recovery_index(&h, &a.to_uppercase().replace('-', " ")),
            Some(1)
        );
        assert_eq!(state.recovery_index(&h, "aaaaa-aaaaa"), None);
    }
}

//! People's passwords: the strength rule, argon2id hashing with the OWASP
//! parameters, and verification that takes the same time for an account
//! that does not exist.
//!
//! Argon2 is for human passwords only: generated secrets (client secrets,
//! admin keys, session secrets, link tokens) carry 256 random bits and keep
//! their fast keyed hash ([`SecretHasher`](crate::secret::SecretHasher)).

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::PasswordHash;
use crate::{Error, Result};

/// Shortest password, in characters.
pub(crate) const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password, in characters.
pub(crate) const MAX_PASSWORD_CHARS: usize = 128;
/// The lowest zxcvbn score accepted (0 to 4).
const MIN_SCORE: u8 = 3;

/// A hash with the same parameters as every stored one, of a password
/// nobody knows: verified against when the account does not exist, so the
/// answer takes as long as for a real account. (Its salt is public, which
/// is fine: it protects nothing.)
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VudHJ5YWdlbnQtZHVtbXk$qWYQbF6mHbw8JQpCE7Qy+Z1pUx2wXl8s9UR2Hb1aWJc";

/// The OWASP parameters (argon2id, 19 MiB, 2 passes, 1 lane): argon2's
/// defaults.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
            None,
        )
        .unwrap_or_default(),
    )
}

/// `Invalid` (field `password`) unless the password is 10 to 128
/// characters and zxcvbn, checked offline with the person's own words
/// (`user_inputs`: email, name, tenant name) as a dictionary, scores it at
/// least 3 of 4.
pub(crate) fn check_strength(password: &str, user_inputs: &[&str]) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(Error::invalid(
            "password",
            format!("{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    // The estimate's cost grows with the length; like zxcvbn's reference
    // implementation, judge the first 100 characters (a password strong
    // there is strong).
    let head: String = password.chars().take(100).collect();
    let entropy = zxcvbn::zxcvbn(&head, user_inputs);
    let score = u8::from(entropy.score());
    if score < MIN_SCORE {
        let hint = entropy
            .feedback()
            .and_then(|f| f.warning().map(|w| format!(": {w}")))
            .unwrap_or_default();
        return Err(Error::invalid(
            "password",
            format!(
                "too easy to guess (strength {score} of 4, at least {MIN_SCORE} needed){hint}; a few unrelated words make a strong one"
            ),
        ));
    }
    Ok(())
}

fn hash_now(password: &str) -> Result<PasswordHash> {
    let salt_bytes: [u8; 16] = crate::secret::random_bytes();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::internal("password salt", std::io::Error::other(e.to_string())))?;
    let hash = argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::internal("password hash", std::io::Error::other(e.to_string())))?;
    Ok(PasswordHash(hash.to_string()))
}

fn verify_now(password: &str, hash: &str) -> bool {
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Hashes and verifies passwords off the async threads (on Tokio's
/// blocking pool when there is a runtime), a few at a time: each costs
/// 19 MiB and tens of milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct PasswordHasher {
    slots: Arc<Semaphore>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordHasher {
            slots: Arc::new(Semaphore::new(cpus * 2)),
        }
    }
}

impl PasswordHasher {
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| Error::internal("password hashing closed", e))?;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(f)
                .await
                .map_err(|e| Error::internal("password hashing task failed", e)),
            Err(_) => Ok(f()),
        }
    }

    /// The argon2id hash of `password` (a fresh random salt).
    pub(crate) async fn hash(&self, password: &str) -> Result<PasswordHash> {
        let p = zeroize::Zeroizing::new(password.to_owned());
        self.run(move || hash_now(&p)).await?
    }

    /// Whether `password` matches `hash`; with `None` (no such account) a
    /// hash of the same cost is verified anyway and the answer is false.
    pub(crate) async fn verify(&self, password: &str, hash: Option<&PasswordHash>) -> Result<bool> {
        let p = zeroize::Zeroizing::new(password.to_owned());
        let (h, real) = match hash {
            Some(h) => (h.0.clone(), true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let ok = self.run(move || verify_now(&p, &h)).await?;
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_rule() {
        for weak in [
            "short",
            "password123",
            "qwertyuiop",
            "aaaaaaaaaaaaaaaa",
            "ada@example.com!",
        ] {
            assert!(
                check_strength(weak, &["ada@example.com", "ada", "Acme"]).is_err(),
                "{weak}"
            );
        }
        assert!(check_strength(&"x".repeat(129), &[]).is_err());
        check_strength("correct horse battery staple", &[]).unwrap();
        check_strength("plum-Orbit-7-kettle", &["ada@example.com"]).unwrap();
        // The person's own words do not count as strength.
        assert!(check_strength("acmeacmeacme1", &["acme"]).is_err());
        let e = check_strength("password123", &[]).unwrap_err().to_string();
        assert!(e.contains("strength") && !e.contains("password123"), "{e}");
    }

    #[tokio::test]
    async fn hash_verifies_only_its_password_with_owasp_parameters() {
        let h = PasswordHasher::default();
        let hash = h.hash("correct horse battery staple").await.unwrap();
        assert!(
            hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.0
        );
        assert!(
            h.verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !h.verify("correct horse battery stapler", Some(&hash))
                .await
                .unwrap()
        );
        let again = h.hash("correct horse battery staple").await.unwrap();
        assert_ne!(hash, again, "salted");
        assert!(!h.verify("anything", None).await.unwrap());
        assert!(
            !h.verify("x", Some(&PasswordHash("not a hash".into())))
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let dummy = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        let real_s = hash_now("whatever it is").unwrap();
        let real = argon2::PasswordHash::new(&real_s.0).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(!verify_now("", DUMMY_HASH));
    }
}

//! Stripe webhook signatures (`Stripe-Signature`), verified by the project's
//! own code.
//!
//! A Stripe webhook carries a header such as
//! `t=1763700000,v1=5257a869...,v0=6ffbb59b...`. The signed payload is
//! `"{t}.{raw body}"`, with `t` in decimal without leading zeros (as Stripe
//! and its libraries write it, whatever digits the header shows), and each
//! `v1` is the lowercase hex HMAC-SHA256 of it, keyed by the endpoint's whole
//! signing secret (`whsec_...`, as UTF-8 bytes, prefix included).
//!
//! [`verify_signature`] accepts a delivery when:
//! - the header is at most [`MAX_HEADER_LEN`] bytes and has exactly one `t`
//!   (decimal Unix seconds);
//! - some `v1` equals the HMAC under some configured secret (several `v1`
//!   values appear while a secret is being rolled in the dashboard, and a
//!   host may configure several secrets: any match passes). Comparisons are
//!   constant-time. A `v1` that is not 64 hex digits can never match and is
//!   skipped; `v0` (Stripe's test-mode legacy scheme) and unknown schemes are
//!   ignored, so a header with only `v0` fails;
//! - `|now - t| <= tolerance` (300 s by default, [`DEFAULT_TOLERANCE`]), with
//!   `now` injected. Stripe's own libraries reject only timestamps that are
//!   too old; this check also rejects timestamps more than the tolerance in
//!   the future, because a signature with a far-future `t` would otherwise
//!   stay replayable for as long as that lies ahead. A timestamp exactly at
//!   the tolerance passes.
//!
//! It never panics, whatever the header and body. [`sign`] and
//! [`signature_header`] produce signatures the same way, for tests and fakes.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sentryagent_core::Timestamp;
use sentryagent_core::hex::digit as hex_value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's default tolerance between the signed timestamp and now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Longest `Stripe-Signature` header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Name of the HTTP header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No webhook signing secret is configured.
    #[error("no webhook signing secret is configured")]
    NoSecret,
    /// The header is longer than [`MAX_HEADER_LEN`].
    #[error("signature header too long")]
    HeaderTooLong,
    /// The header has no `t=` timestamp.
    #[error("signature header has no timestamp")]
    NoTimestamp,
    /// The timestamp is not decimal Unix seconds, or appears more than once.
    #[error("signature header has a malformed timestamp")]
    BadTimestamp,
    /// The header has no `v1` signature.
    #[error("signature header has no v1 signature")]
    NoSignature,
    /// No `v1` matches the body under any configured secret.
    #[error("no signature matches the payload")]
    Mismatch,
    /// The signature matches, but its timestamp is outside the tolerance.
    #[error("signature timestamp outside the tolerance")]
    OutsideTolerance,
}

/// The `Stripe-Signature` header, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedHeader {
    timestamp: i64,
    /// `v1` values that are 32 bytes of hex; malformed ones are dropped.
    v1: Vec<[u8; 32]>,
    /// Whether any `v1` appeared at all (even malformed).
    any_v1: bool,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::HeaderTooLong);
    }
    let mut timestamp: Option<i64> = None;
    let mut v1 = Vec::new();
    let mut any_v1 = false;
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim_matches(|c: char| c.is_ascii_whitespace());
        let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::BadTimestamp);
                }
                let ok =
                    (1..=15).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
                let secs = if ok { value.parse::<i64>().ok() } else { None };
                let Some(secs) = secs else {
                    return Err(SignatureError::BadTimestamp);
                };
                timestamp = Some(secs);
            }
            "v1" => {
                any_v1 = true;
                if let Some(sig) = decode_hex_32(value) {
                    v1.push(sig);
                }
            }
            // v0 (legacy test-mode scheme) and unknown schemes are ignored.
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::NoTimestamp);
    };
    Ok(ParsedHeader {
        timestamp,
        v1,
        any_v1,
    })
}

fn decode_hex_32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(out)
}

/// The HMAC of `"{t}.{body}"`, `t` in canonical decimal: the value, not the
/// header's text (`t=0100` signs `100.`, as Stripe's libraries do).
fn mac(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies a `Stripe-Signature` header against the raw request body (see
/// the module docs for the rules).
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[impl AsRef<str>],
    now: Timestamp,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let parsed = parse_header(header)?;
    if !parsed.any_v1 {
        return Err(SignatureError::NoSignature);
    }
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let expected = mac(secret.as_ref(), parsed.timestamp, body);
        for candidate in &parsed.v1 {
            matched |= expected.ct_eq(candidate);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    let age = i128::from(now.unix_secs()) - i128::from(parsed.timestamp);
    let tolerance = i128::from(tolerance.as_secs());
    if age.abs() > tolerance {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(())
}

/// The `v1` signature (lowercase hex) of `body` at Unix second `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    sentryagent_core::hex::encode(&mac(secret, t, body))
}

/// A complete `Stripe-Signature` header value, `t={t},v1={signature}`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_unit";
    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_secs(secs)
    }

    fn check(header: &str, now: i64) -> Result<(), SignatureError> {
        verify_signature(header, BODY, &[SECRET], at(now), DEFAULT_TOLERANCE)
    }

    #[test]
    fn signs_and_verifies() {
        let h = signature_header(SECRET, 1000, BODY);
        assert_eq!(check(&h, 1000), Ok(()));
        assert_eq!(
            verify_signature(&h, b"other", &[SECRET], at(1000), DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn items_in_any_order_with_spaces_and_unknown_schemes() {
        let sig = sign(SECRET, 1000, BODY);
        assert_eq!(check(&format!("v1={sig},t=1000"), 1000), Ok(()));
        assert_eq!(check(&format!(" t=1000 , v1={sig} "), 1000), Ok(()));
        assert_eq!(check(&format!("t=1000,v9=abc,x,v1={sig},=,"), 1000), Ok(()));
        assert_eq!(
            check(&format!("t=1000,v1={}", sig.to_uppercase()), 1000),
            Ok(())
        );
    }

    #[test]
    fn malformed_v1_values_are_skipped_not_fatal() {
        let sig = sign(SECRET, 1000, BODY);
        let short = &sig[..62];
        assert_eq!(
            check(&format!("t=1000,v1=zz,v1={short},v1={sig}"), 1000),
            Ok(())
        );
        assert_eq!(
            check(&format!("t=1000,v1=zz,v1={short}"), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("t=1000,v1={sig}00"), 1000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamp_rules() {
        let sig = sign(SECRET, 1000, BODY);
        assert_eq!(
            check(&format!("v1={sig}"), 1000),
            Err(SignatureError::NoTimestamp)
        );
        assert_eq!(check("t=,v1=00", 1000), Err(SignatureError::BadTimestamp));
        assert_eq!(check("t=-5,v1=00", 1000), Err(SignatureError::BadTimestamp));
        assert_eq!(check("t=+5,v1=00", 1000), Err(SignatureError::BadTimestamp));
        assert_eq!(
            check("t=99999999999999999999,v1=00", 1000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            check(&format!("t=1000,t=1000,v1={sig}"), 1000),
            Err(SignatureError::BadTimestamp)
        );
        // Symmetric tolerance, inclusive at the edge.
        assert_eq!(check(&format!("t=1000,v1={sig}"), 1300), Ok(()));
        assert_eq!(check(&format!("t=1000,v1={sig}"), 700), Ok(()));
        assert_eq!(
            check(&format!("t=1000,v1={sig}"), 1301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check(&format!("t=1000,v1={sig}"), 699),
            Err(SignatureError::OutsideTolerance)
        );
        // Extreme clocks do not overflow.
        assert_eq!(
            verify_signature(
                &format!("t=1000,v1={sig}"),
                BODY,
                &[SECRET],
                Timestamp::from_unix_micros(i64::MIN),
                Duration::MAX
            ),
            Ok(())
        );
    }

    #[test]
    fn the_timestamp_is_signed_as_its_value_not_its_text() {
        // Stripe's libraries parse `t` and sign its decimal value.
        let sig = sign(SECRET, 1000, BODY);
        assert_eq!(check(&format!("t=0001000,v1={sig}"), 1000), Ok(()));
        assert_eq!(
            check(&format!("t=08,v1={}", sign(SECRET, 8, BODY)), 8),
            Ok(())
        );
        // A signature of the header's text with its leading zeros is not one.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
        m.update(b"01000.");
        m.update(BODY);
        let text_sig: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            check(&format!("t=01000,v1={text_sig}"), 1000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_v1_secret_or_oversized_header() {
        assert_eq!(check("t=1000", 1000), Err(SignatureError::NoSignature));
        assert_eq!(
            check(&format!("t=1000,v0={}", sign(SECRET, 1000, BODY)), 1000),
            Err(SignatureError::NoSignature)
        );
        let none: [&str; 0] = [];
        assert_eq!(
            verify_signature("t=1", BODY, &none, at(1), DEFAULT_TOLERANCE),
            Err(SignatureError::NoSecret)
        );
        let long = format!(
            "t=1000,v1={},{}",
            sign(SECRET, 1000, BODY),
            "x".repeat(MAX_HEADER_LEN)
        );
        assert_eq!(check(&long, 1000), Err(SignatureError::HeaderTooLong));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = signature_header("whsec_new", 1000, BODY);
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        assert_eq!(
            verify_signature(&h, BODY, &secrets, at(1000), DEFAULT_TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify_signature(&h, BODY, &secrets[..1], at(1000), DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_key_is_the_whole_secret_string() {
        let h = signature_header("whsec_abc", 1000, BODY);
        assert_eq!(
            verify_signature(&h, BODY, &["abc"], at(1000), DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }
}

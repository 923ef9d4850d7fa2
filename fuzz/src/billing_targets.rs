//! Fuzz harness of `sentryagent-billing`: `stripe_signature`.
//!
//! `fuzz_targets/stripe_signature.rs` calls [`stripe_signature`]
//! (re-exported by the fuzz crate's `lib.rs`), and
//! `sentryagent-billing/tests/fuzz_corpus_replay.rs` compiles this file as a
//! module to replay every committed input on the stable toolchain. It uses
//! nothing but `sentryagent-billing` (without its `stripe` feature: the
//! webhook code does not need it) and `sentryagent-core`.

use sentryagent_billing::webhook::{
    DEFAULT_TOLERANCE, MAX_HEADER_LEN, SignatureError, sign, signature_header, verify_signature,
};
use sentryagent_core::Timestamp;

/// The signing secret of the shared Stripe-Signature vectors.
pub const SECRET: &str = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc";
/// A second configured secret (a secret being rolled), that signs nothing.
const OTHER_SECRET: &str = "whsec_test_rolled_out";
/// The time used when the input's first line is not a number: the
/// timestamp of the vectors.
pub const DEFAULT_NOW: i64 = 1_763_700_000;

/// The parts of a `stripe_signature` input.
struct Input<'a> {
    now: i64,
    header: String,
    body: &'a [u8],
}

/// Splits an input into lines: the first is `now` (decimal Unix seconds;
/// anything else is [`DEFAULT_NOW`]), the second the `Stripe-Signature`
/// header (invalid UTF-8 replaced, as a header must be text), and the rest,
/// after the second `\n`, the raw body.
fn split(data: &[u8]) -> Input<'_> {
    let line = |d: &'_ [u8]| -> (usize, usize) {
        d.iter()
            .position(|&b| b == b'\n')
            .map_or((d.len(), d.len()), |i| (i, i + 1))
    };
    let (end, next) = line(data);
    let now = std::str::from_utf8(&data[..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(DEFAULT_NOW);
    let rest = &data[next..];
    let (end, next) = line(rest);
    Input {
        now,
        header: String::from_utf8_lossy(&rest[..end]).into_owned(),
        body: &rest[next..],
    }
}

/// `stripe_signature`: a `Stripe-Signature` header and a body (laid out as
/// `split` says) through `webhook::verify_signature` under the vectors'
/// secret and the default tolerance, at the input's `now`.
///
/// Asserted: the result is deterministic and is exactly what an independent
/// model of the documented rules gives (same error, in the same order of
/// checks), the model computing the expected `v1` with `webhook::sign`: it
/// verifies only when the header has one well-formed `t`, some `v1` equal to
/// `sign(secret, t, body)` and `|now - t|` within the tolerance. With a
/// second secret configured, it verifies when either secret alone does.
/// Nearly every mutation breaks the signature, so when the input has a `t`
/// but no matching `v1`, the harness replaces each of its `v1` values with
/// the right one and checks that header too, and checks that a header
/// freshly built by `webhook::signature_header` for the same body and time
/// verifies (within the tolerance): this is what reaches the success path.
/// Returns whether the input's header verified.
pub fn stripe_signature(data: &[u8]) -> bool {
    let input = split(data);
    // The clock saturates far from the epoch: the model uses what it says.
    let now = Timestamp::from_unix_secs(input.now).unix_secs();
    let verified = check(&input.header, input.body, now);
    if !verified {
        let t = model_timestamp(&input.header);
        if let Ok(t) = t {
            let resigned = resign(&input.header, t, input.body);
            check(&resigned, input.body, now);
        }
        // A header for `now` when the input has no usable `t` (not before
        // the epoch: a `t` is digits only).
        let t = t.unwrap_or(now.max(0));
        let fresh = signature_header(SECRET, t, input.body);
        let within =
            (i128::from(now) - i128::from(t)).abs() <= i128::from(DEFAULT_TOLERANCE.as_secs());
        assert_eq!(
            check(&fresh, input.body, now),
            within,
            "a fresh signature_header {fresh:?} at {now}"
        );
    }
    verified
}

/// Verifies and compares with the model; returns whether it verified.
fn check(header: &str, body: &[u8], now: i64) -> bool {
    let at = Timestamp::from_unix_secs(now);
    let got = verify_signature(header, body, &[SECRET], at, DEFAULT_TOLERANCE);
    assert_eq!(
        got,
        verify_signature(header, body, &[SECRET], at, DEFAULT_TOLERANCE),
        "not deterministic"
    );
    assert_eq!(
        got,
        model(header, body, now),
        "header {header:?} at {now} against the rules"
    );
    let other = verify_signature(header, body, &[OTHER_SECRET], at, DEFAULT_TOLERANCE);
    let both = verify_signature(header, body, &[OTHER_SECRET, SECRET], at, DEFAULT_TOLERANCE);
    assert_eq!(
        both.is_ok(),
        got.is_ok() || other.is_ok(),
        "two secrets disagree with each alone for {header:?}"
    );
    got.is_ok()
}

/// The header's `name=value` items, trimmed of ASCII whitespace; items
/// without `=` are not items.
fn items(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim_ascii(), v.trim_ascii()))
}

/// The model's timestamp: one `t`, of 1 to 15 decimal digits.
fn model_timestamp(header: &str) -> Result<i64, SignatureError> {
    let mut ts = items(header).filter(|(k, _)| *k == "t").map(|(_, v)| v);
    let (Some(t), None) = (ts.next(), ts.next()) else {
        return Err(if items(header).any(|(k, _)| k == "t") {
            SignatureError::BadTimestamp
        } else {
            SignatureError::NoTimestamp
        });
    };
    if t.is_empty() || t.len() > 15 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    Ok(t.bytes().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

/// The model of `verify_signature` with the one secret [`SECRET`].
fn model(header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::HeaderTooLong);
    }
    let t = model_timestamp(header)?;
    let mut v1 = items(header).filter(|(k, _)| *k == "v1").peekable();
    if v1.peek().is_none() {
        return Err(SignatureError::NoSignature);
    }
    let expected = sign(SECRET, t, body);
    if !v1.any(|(_, v)| v.eq_ignore_ascii_case(&expected)) {
        return Err(SignatureError::Mismatch);
    }
    if (i128::from(now) - i128::from(t)).abs() > i128::from(DEFAULT_TOLERANCE.as_secs()) {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(())
}

/// The header with every `v1` value replaced by the right signature for
/// timestamp `t`, everything else kept as it was.
fn resign(header: &str, t: i64, body: &[u8]) -> String {
    let good = sign(SECRET, t, body);
    header
        .split(',')
        .map(|item| match item.split_once('=') {
            Some((k, _)) if k.trim_ascii() == "v1" => format!("{k}={good}"),
            _ => item.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

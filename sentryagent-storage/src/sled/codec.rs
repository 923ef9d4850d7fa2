//! Keys and values of the sled backend: record encoding, ordered key
//! encodings and the mapping of sled errors onto core errors.
//!
//! Values are JSON (`serde_json`): every stored type already has a serde
//! form, JSON keeps the files inspectable with a generic sled dump, and the
//! records are small. Numbers that take part in ordering (audit sequence
//! numbers, timestamps, counters) are fixed-width big-endian integers, so
//! sled's byte order is their numeric order.

use std::sync::atomic::{AtomicU64, Ordering};

use ::sled::transaction::{ConflictableTransactionError, TransactionError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use sentryagent_core::{Error, Result};

/// Separator between the parts of a composite key. Ids (`[A-Za-z0-9_.:-]`)
/// and search words (alphanumeric) never contain it, so a key part followed
/// by `SEP` is never a prefix of another part.
pub(crate) const SEP: u8 = 0;

/// Result of a closure run inside a sled transaction.
pub(crate) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// Ends a transaction with a core error (nothing of it is written).
pub(crate) fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Turns a core result into a transaction result (an `Err` aborts).
pub(crate) trait OrAbort<T> {
    /// `Err(e)` becomes an abort with `e`.
    fn or_abort(self) -> TxResult<T>;
}

impl<T> OrAbort<T> for Result<T> {
    fn or_abort(self) -> TxResult<T> {
        self.map_err(ConflictableTransactionError::Abort)
    }
}

/// I/O errors met by any sled database of this process.
static IO_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The number of sled I/O errors mapped so far (each database compares it
/// with the number it saw, and checks itself when it grew).
pub(crate) fn io_errors() -> u64 {
    IO_ERRORS.load(Ordering::Relaxed)
}

/// Maps a sled error: I/O failures are `Unavailable` (retry may help), the
/// rest (corruption, a sled bug, an unsupported operation) is `Internal`;
/// the sled error is kept as the source either way. An I/O failure is
/// counted (see [`io_errors`]).
pub(crate) fn sled_error(what: &str, e: ::sled::Error) -> Error {
    match e {
        ::sled::Error::Io(_) => {
            IO_ERRORS.fetch_add(1, Ordering::Relaxed);
            Error::unavailable(format!("sled: {what}"), e)
        }
        other => Error::internal(format!("sled: {what}"), other),
    }
}

/// Maps the outcome of a transaction: an abort carries the core error.
pub(crate) fn tx_error(what: &str, e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => sled_error(what, e),
    }
}

/// A record as stored.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("sled: cannot encode a {what} record"), e))
}

/// A stored record; unreadable bytes are reported as corrupt data.
pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::internal(format!("sled: corrupt {what} record"), e))
}

/// An `i64` as 8 bytes whose byte order is the numeric order (the sign bit
/// flipped, big-endian).
pub(crate) fn i64_key(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`i64_key`]; `None` unless exactly 8 bytes.
pub(crate) fn i64_from_key(bytes: &[u8]) -> Option<i64> {
    let b: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// A `u64` stored big-endian.
pub(crate) fn u64_value(bytes: &[u8]) -> Option<u64> {
    let b: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// A stored counter, or a corrupt-data error.
pub(crate) fn counter(what: &'static str, bytes: Option<&[u8]>) -> Result<u64> {
    match bytes {
        None => Ok(0),
        Some(b) => u64_value(b).ok_or_else(|| Error::Internal {
            message: format!("sled: corrupt {what} counter"),
            source: None,
        }),
    }
}

/// Concatenates key parts with [`SEP`] between them (not after the last).
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// `part` followed by [`SEP`]: the prefix of every key that starts with it.
pub(crate) fn prefix(part: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(part.len() + 1);
    k.extend_from_slice(part);
    k.push(SEP);
    k
}

/// The part of `key` after its first [`SEP`] (the whole key if none).
pub(crate) fn after_sep(key: &[u8]) -> &[u8] {
    match key.iter().position(|&b| b == SEP) {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

/// A length-prefixed string part (u32 big-endian length, then the bytes),
/// for parts that may contain any byte.
pub(crate) fn push_sized(k: &mut Vec<u8>, part: &[u8]) {
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&part[..len as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_keys_sort_numerically_and_round_trip() {
        let values = [i64::MIN, -1_000_000, -1, 0, 1, 42, 1_763_700_000, i64::MAX];
        let keys: Vec<[u8; 8]> = values.iter().map(|v| i64_key(*v)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (v, k) in values.iter().zip(&keys) {
            assert_eq!(i64_from_key(k), Some(*v));
        }
        assert_eq!(i64_from_key(&[1, 2, 3]), None);
    }

    #[test]
    fn composite_keys() {
        let k = key(&[b"tnt_a", b"name"]);
        assert_eq!(k, b"tnt_a\0name");
        assert!(k.starts_with(&prefix(b"tnt_a")));
        assert!(!k.starts_with(&prefix(b"tnt_")));
        assert_eq!(after_sep(&k), b"name");
        assert_eq!(after_sep(b"plain"), b"plain");
        let mut s = Vec::new();
        push_sized(&mut s, b"a\0b");
        assert_eq!(s, [0, 0, 0, 3, b'a', 0, b'b']);
    }

    #[test]
    fn counters_and_corrupt_records() {
        assert_eq!(counter("x", None).unwrap(), 0);
        assert_eq!(counter("x", Some(&7u64.to_be_bytes())).unwrap(), 7);
        assert!(matches!(
            counter("x", Some(b"abc")),
            Err(Error::Internal { .. })
        ));
        let r: Result<sentryagent_core::Tenant> = decode("tenant", b"{not json");
        assert!(matches!(r, Err(Error::Internal { .. })));
    }
}

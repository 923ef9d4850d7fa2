//! [`DecodedCache`]: decoded copies of hot records, each checked against the
//! stored bytes on every read.

use std::collections::HashMap;
use std::sync::Mutex;

use ::sled::IVec;
use serde::de::DeserializeOwned;

use sentryagent_core::Result;

use super::codec::decode;

/// Decoded copies of the records the token endpoint reads on every request
/// (the agent, its client secrets, its tenant), so a request does not parse
/// their JSON each time.
///
/// A read still reads the tree: the copy is used only when the stored bytes
/// are identical to the bytes it was decoded from (decoding is a pure
/// function of the bytes), so any write, by any handle or transaction, is
/// seen by the next read exactly as without the cache. At most
/// [`CAPACITY`](Self::CAPACITY) records are kept; a new one beyond that
/// replaces an arbitrary one.
pub(crate) struct DecodedCache<T> {
    entries: Mutex<HashMap<IVec, (IVec, T)>>,
}

impl<T: Clone + DeserializeOwned> DecodedCache<T> {
    /// Most records kept.
    pub(crate) const CAPACITY: usize = 4096;

    pub(crate) fn new() -> Self {
        DecodedCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The record stored under `key` as `raw`, decoded (a `what` record).
    pub(crate) fn decode(&self, what: &'static str, key: &[u8], raw: &IVec) -> Result<T> {
        if let Ok(entries) = self.entries.lock()
            && let Some((stored, value)) = entries.get(key)
            && stored == raw
        {
            return Ok(value.clone());
        }
        let value: T = decode(what, raw)?;
        // A poisoned lock only means no caching: the value is still right.
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::CAPACITY
                && !entries.contains_key(key)
                && let Some(old) = entries.keys().next().cloned()
            {
                entries.remove(&old);
            }
            entries.insert(IVec::from(key), (raw.clone(), value.clone()));
        }
        Ok(value)
    }

    /// Drops every copy (after the database was reopened).
    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Records kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, serde::Deserialize)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn a_changed_record_is_decoded_again() {
        let c = DecodedCache::<Rec>::new();
        let v1 = IVec::from(&br#"{"n":1}"#[..]);
        let v2 = IVec::from(&br#"{"n":2}"#[..]);
        assert_eq!(c.decode("rec", b"k", &v1).unwrap(), Rec { n: 1 });
        assert_eq!(c.decode("rec", b"k", &v1).unwrap(), Rec { n: 1 });
        assert_eq!(c.decode("rec", b"k", &v2).unwrap(), Rec { n: 2 });
        assert_eq!(c.decode("rec", b"k", &v1).unwrap(), Rec { n: 1 });
        assert_eq!(c.decode("rec", b"other", &v2).unwrap(), Rec { n: 2 });
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn corrupt_records_are_errors_and_not_kept() {
        let c = DecodedCache::<Rec>::new();
        let bad = IVec::from(&b"{"[..]);
        assert!(c.decode("rec", b"k", &bad).is_err());
        assert!(c.decode("rec", b"k", &bad).is_err());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn size_is_bounded() {
        let c = DecodedCache::<Rec>::new();
        let v = IVec::from(&br#"{"n":7}"#[..]);
        for i in 0..(DecodedCache::<Rec>::CAPACITY + 100) {
            let key = i.to_be_bytes();
            assert_eq!(c.decode("rec", &key, &v).unwrap(), Rec { n: 7 });
        }
        assert_eq!(c.len(), DecodedCache::<Rec>::CAPACITY);
    }
}

//! did:key.

//! [`SettingStore`]: named deployment settings.

use async_trait::async_trait;

use super::Backend;
use crate::Result;

/// Named values a deployment creates once and keeps (the generated secret
/// hashing key, [`SECRET_HASH_KEY_SETTING`](crate::SECRET_HASH_KEY_SETTING);
/// the owners of agent badge status indexes, `badge-index:<n>`, at most
/// [`STATUS_LIST_BITS`](crate::STATUS_LIST_BITS) of them).
/// Durable: losing a setting invalidates every secret hashed under it.
#[async_trait]
pub trait SettingStore: Backend {
    /// Returns the stored value of a setting, first storing `value` if the
    /// setting is absent (atomically: concurrent callers all get the winner).
    async fn setting_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;
}

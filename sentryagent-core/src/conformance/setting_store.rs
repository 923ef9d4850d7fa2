//! The [`SettingStore`] conformance suite.

use std::sync::Arc;

use super::unique;
use crate::store::SettingStore;

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn SettingStore>) {
    settings(store.as_ref()).await;
}

/// Settings: the first value wins.
pub async fn settings(store: &dyn SettingStore) {
    let name = format!("setting-{}", unique());
    check!(
        store,
        store.setting_get_or_insert(&name, b"one").await.unwrap() == b"one",
        "first insert"
    );
    check!(
        store,
        store.setting_get_or_insert(&name, b"two").await.unwrap() == b"one",
        "second insert returns the first"
    );
}

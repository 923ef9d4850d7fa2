//! Every store suite at once, for a backend that keeps everything
//! ([`IdpStore`]), plus what only such a backend can promise.

use std::sync::Arc;

use super::{
    admin_key_store, agent_store, audit_log, invitation_store, marker_store, membership_store,
    sample_agent, sample_secret, sample_tenant, session_store, setting_store, signing_key_store,
    tenant_store, trust_policy_store, user_store,
};
use crate::store::IdpStore;

/// Runs the suite of each store trait, then [`client_record_tenant`].
pub async fn run_all(store: Arc<dyn IdpStore>) {
    tenant_store::run_all(store.clone()).await;
    agent_store::run_all(store.clone()).await;
    admin_key_store::run_all(store.clone()).await;
    signing_key_store::run_all(store.clone()).await;
    setting_store::run_all(store.clone()).await;
    audit_log::run_all(store.clone()).await;
    marker_store::run_all(store.clone()).await;
    user_store::run_all(store.clone()).await;
    membership_store::run_all(store.clone()).await;
    session_store::run_all(store.clone()).await;
    invitation_store::run_all(store.clone()).await;
    trust_policy_store::run_all(store.clone()).await;
    client_record_tenant(store.as_ref()).await;
}

/// A client record that carries its tenant carries the stored tenant.
pub async fn client_record_tenant(store: &dyn IdpStore) {
    let mut ten = sample_tenant("Client Record");
    store.create_tenant(&ten).await.unwrap();
    ten.name = "Client Record Renamed".into();
    let ten = store.update_tenant(&ten).await.unwrap();
    let a = sample_agent(&ten.id, "record");
    store
        .create_agent(&a, Some(&sample_secret(&a.id, 1)), None)
        .await
        .unwrap();
    let record = store.get_client(&a.id).await.unwrap();
    check!(
        store,
        record.agent == a && record.secrets.len() == 1,
        "get_client reads the agent and its secret: {record:?}"
    );
    check!(
        store,
        record.tenant.is_none() || record.tenant.as_ref() == Some(&ten),
        "a tenant read with the agent is the stored tenant: {record:?}"
    );
}

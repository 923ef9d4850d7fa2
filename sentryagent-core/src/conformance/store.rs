//! Every store suite at once, for a backend that keeps everything
//! ([`IdpStore`]), plus what only such a backend can promise.

use std::sync::Arc;

use super::{
    admin_key_store, agent_store, audit_log, invitation_store, marker_store, marketplace,
    membership_store, sample_agent, sample_secret, sample_tenant, session_store, setting_store,
    signing_key_store, tenant_store, trust_policy_store, user_store,
};
use crate::store::IdpStore;

/// Runs the suite of each store trait and the marketplace directory suite
/// ([`marketplace`]), then [`client_record_tenant`].
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
    marketplace::run_all(store.clone()).await;
    client_record_tenant(store.as_ref()).await;
    introspection_record(store.as_ref()).await;
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

/// [`introspection_record`](crate::AgentStore::introspection_record) reads
/// what the separate reads read: the caller as `get_client`, the subject as
/// `get_agent`, missing agents as `None`, and a marker (when the backend
/// answers it) as `has_marker` at the same time, expired markers excluded.
pub async fn introspection_record(store: &dyn IdpStore) {
    use crate::Timestamp;
    let ten = sample_tenant("Introspection Record");
    store.create_tenant(&ten).await.unwrap();
    let caller = sample_agent(&ten.id, "introspector");
    store
        .create_agent(&caller, Some(&sample_secret(&caller.id, 1)), None)
        .await
        .unwrap();
    let subject = sample_agent(&ten.id, "introspected");
    store.create_agent(&subject, None, None).await.unwrap();
    let ghost = crate::AgentId::generate();
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let ns = "introspection_conformance";
    let live = format!("live-{}", ghost.as_str());
    let old = format!("old-{}", ghost.as_str());
    store
        .put_marker(ns, &live, now.plus(std::time::Duration::from_secs(60)), now)
        .await
        .unwrap();
    store
        .put_marker(ns, &old, now.plus(std::time::Duration::from_secs(1)), now)
        .await
        .unwrap();
    let later = now.plus(std::time::Duration::from_secs(2));

    let r = store
        .introspection_record(&caller.id, &subject.id, (ns, &live), later)
        .await
        .unwrap();
    let client = store.get_client(&caller.id).await.unwrap();
    check!(
        store,
        r.caller.as_ref().map(|c| (&c.agent, &c.secrets)) == Some((&client.agent, &client.secrets)),
        "the caller as get_client reads it: {r:?}"
    );
    check!(
        store,
        r.caller
            .as_ref()
            .is_some_and(|c| c.tenant.is_none() || c.tenant.as_ref() == Some(&ten)),
        "a tenant read with the caller is the stored tenant: {r:?}"
    );
    check!(
        store,
        r.subject.as_ref() == Some(&subject),
        "the subject as stored: {r:?}"
    );
    check!(
        store,
        r.revoked.is_none_or(|v| v),
        "an unexpired marker is present: {r:?}"
    );

    let r = store
        .introspection_record(&caller.id, &caller.id, (ns, &old), later)
        .await
        .unwrap();
    check!(
        store,
        r.subject.as_ref() == Some(&caller) && r.revoked.is_none_or(|v| !v),
        "the caller as its own subject; an expired marker is absent: {r:?}"
    );

    let r = store
        .introspection_record(&ghost, &ghost, (ns, "absent"), later)
        .await
        .unwrap();
    check!(
        store,
        r.caller.is_none() && r.subject.is_none() && r.revoked.is_none_or(|v| !v),
        "missing agents and markers are None and false: {r:?}"
    );
    let r = store
        .introspection_record(&ghost, &subject.id, (ns, &live), later)
        .await
        .unwrap();
    check!(
        store,
        r.caller.is_none() && r.subject.as_ref() == Some(&subject) && r.revoked.is_none_or(|v| v),
        "a missing caller leaves the subject and the marker: {r:?}"
    );
}

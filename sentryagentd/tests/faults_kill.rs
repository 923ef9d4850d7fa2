//! Fault suite: `kill -9` of the server during concurrent registrations,
//! secret rotations and the audit writes they make, on sled and on
//! Postgres. After a restart on the same store every acknowledged agent
//! exists and its acknowledged secret works, every listed agent is whole,
//! and the audit chain verifies.

mod daemon;
mod faults;

use std::time::Duration;

use daemon::{Daemon, key};
use faults::{Tenant, WriteLoad, check_nothing_lost, spawn, tiers_file};

async fn start(store: &str, tiers: &str, op: &str) -> Daemon {
    spawn(
        &["--store", store, "--limiter", "memory://", "--tiers", tiers],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", op)],
    )
    .await
}

/// Load, `kill -9` in the middle of it, restart, check.
async fn kill_during_writes(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tiers = tiers_file(dir.path());
    let op = key();
    let mut d = start(store, &tiers, &op).await;
    let t = Tenant::create(&d, &op, "kill").await;
    for round in 0..2 {
        let load = WriteLoad::start(&d.base, &t.key, 4, true);
        // Until enough writes are acknowledged (bounded), then a little
        // more so that writes are in flight at the kill.
        let deadline = load.now() + Duration::from_secs(15);
        while load.acked.lock().unwrap().len() < 20 && load.now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        // Kill while writes are under way: the workers pause 5 ms between
        // requests, which a fast server's answers can rival.
        let busy = load.wait_in_flight(2, Duration::from_secs(5)).await;
        d.child.kill().unwrap(); // SIGKILL
        d.child.wait().unwrap();
        let (acked, samples) = load.finish().await;
        assert!(
            acked.len() >= 20,
            "acknowledged before the kill: {}",
            acked.len()
        );
        assert!(busy, "no two writes were ever in flight at once");
        assert!(
            samples.iter().any(|s| s.status == 0),
            "requests were in flight at the kill: {samples:?}"
        );
        assert!(
            samples.iter().all(|s| matches!(s.status, 0 | 200 | 201)),
            "before the kill only successes: {:?}",
            samples
                .iter()
                .filter(|s| !matches!(s.status, 0 | 200 | 201))
                .collect::<Vec<_>>()
        );
        d = start(store, &tiers, &op).await;
        let listed = check_nothing_lost(&d.base, &t.key, &acked).await;
        assert!(listed >= acked.len());
    }
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_loses_nothing_acknowledged_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled://{}", dir.path().join("data").display());
    kill_during_writes(&store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_loses_nothing_acknowledged_on_postgres() {
    sentryagent_storage::testing::with_schema(
        "kill_9_during_writes_loses_nothing_acknowledged_on_postgres",
        |store, _| async move { kill_during_writes(&store).await },
    )
    .await;
}

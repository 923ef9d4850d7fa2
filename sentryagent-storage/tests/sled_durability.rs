//! Acknowledged writes survive `kill -9`.
//!
//! The test re-runs its own binary as a child (selected by an environment
//! variable) that writes to a sled directory in a loop: registrations,
//! secret rotations, revocations, updates, audit appends and markers. It
//! prints one `ACK ...` line per write *after* the store call returned. The
//! parent reads those lines, kills the child with SIGKILL mid-stream, reopens
//! the directory and checks that every acknowledged write is there. Three
//! rounds on the same directory, so recovery after a kill is also written
//! over and killed again.
//!
//! The same mechanism checks that a directory held by another process is
//! refused with a clear error.
#![cfg(all(feature = "sled", unix))]

use sentryagent_core::{AgentStore, AuditLog, MarkerStore, TenantStore};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::conformance::{sample_agent, sample_secret, sample_tenant};
use sentryagent_core::{AgentId, Error, TenantId, Timestamp};
use sentryagent_core::{AuditQuery, NewAuditEvent, Outcome, verify_chain};
use sentryagent_storage::sled::{SledBackend, SledStore};

/// Set in the child: the directory to write to.
const CHILD_DIR: &str = "SENTRYAGENT_SLED_DURABILITY_DIR";
const TEST_NAME: &str = "sled_acknowledged_writes_survive_kill_9";
/// Most agents a child registers (it is normally killed long before).
const MAX_AGENTS: usize = 20_000;
/// How long a round may take before the test gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(EPOCH.unix_secs() + secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_acknowledged_writes_survive_kill_9() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => writer(Path::new(&dir)).await,
        None => parent().await,
    }
}

fn ack(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // A closed pipe means the parent is gone: stop writing.
    if writeln!(out, "ACK {line}")
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Opens the directory, waiting (bounded) while a previous holder of its
/// lock is still going away.
fn open_retrying(dir: &Path) -> SledBackend {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledBackend::open(dir) {
            Ok(b) => return b,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying open: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    }
}

/// The child: writes and acknowledges until killed.
async fn writer(dir: &Path) {
    let store = open_retrying(dir).store();
    let tenant = sample_tenant("Durable");
    store.create_tenant(&tenant).await.unwrap();
    ack(format_args!("tenant {}", tenant.id));
    for i in 0..MAX_AGENTS {
        let i64i = i64::try_from(i).unwrap();
        let agent = sample_agent(&tenant.id, &format!("agent-{i}"));
        let first = sample_secret(&agent.id, 1);
        store
            .create_agent(&agent, Some(&first), None)
            .await
            .unwrap();
        ack(format_args!("registered {} {}", agent.id, first.id));

        let second = sample_secret(&agent.id, 2);
        store
            .rotate_client_secret(&agent.id, &second, t(i64i))
            .await
            .unwrap();
        ack(format_args!("rotated {} {}", agent.id, second.id));

        if i % 2 == 0 {
            let n = store
                .revoke_client_secrets(&agent.id, t(i64i))
                .await
                .unwrap();
            ack(format_args!("revoked {} {n}", agent.id));
        } else {
            let mut changed = agent.clone();
            changed.description = format!("changed {i}");
            let stored = store.update_agent(&changed).await.unwrap();
            ack(format_args!("updated {} {}", agent.id, stored.revision));
        }

        let e = store
            .append_audit(NewAuditEvent {
                tenant_id: Some(tenant.id.clone()),
                at: t(i64i),
                actor: "system".into(),
                action: "agent.registered".into(),
                target: Some(agent.id.to_string()),
                outcome: Outcome::Success,
                request: Default::default(),
                details: Default::default(),
            })
            .await
            .unwrap();
        ack(format_args!("audit {} {} {}", tenant.id, e.seq, e.hash));

        let jti = format!("jti-{}", agent.id);
        assert!(
            store
                .put_marker("revoked", &jti, t(1_000_000), t(0))
                .await
                .unwrap()
        );
        ack(format_args!("marker {jti}"));
    }
}

/// The acknowledgement in a line of the child's output. The test harness
/// prints `test <name> ... ` before the first line of a test's output, on
/// the same line.
fn acknowledged(line: &str) -> Option<String> {
    line.find("ACK ").map(|i| line[i + 4..].to_owned())
}

/// Runs one child until it acknowledged `kill_after` writes, kills it with
/// SIGKILL and returns every line it acknowledged (including those printed
/// between the decision and the kill).
fn run_child(dir: &Path, kill_after: usize) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + ROUND_TIMEOUT;
    let mut acks = Vec::new();
    while acks.len() < kill_after {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if let Some(a) = acknowledged(&line) {
                    acks.push(a);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the writer acknowledged {} writes in {ROUND_TIMEOUT:?}",
                    acks.len()
                );
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!("the writer stopped after {} writes: {status}", acks.len());
            }
        }
    }
    // Mid-stream: the child is still writing.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    // Lines already written to the pipe were acknowledged before the kill.
    acks.extend(rx.iter().filter_map(|l| acknowledged(&l)));
    reader.join().unwrap();
    acks
}

fn agent_id(s: &str) -> AgentId {
    AgentId::parse(s).unwrap()
}

/// Checks every acknowledged write against the reopened store.
async fn verify(store: &SledStore, acks: &[String]) {
    let mut heads: std::collections::BTreeMap<String, u64> = Default::default();
    for line in acks {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["tenant", id] => {
                store
                    .get_tenant(&TenantId::parse(id).unwrap())
                    .await
                    .unwrap();
            }
            ["registered", agent, secret] | ["rotated", agent, secret] => {
                let agent = agent_id(agent);
                store.get_agent(&agent).await.unwrap();
                let secrets = store.list_client_secrets(&agent).await.unwrap();
                assert!(
                    secrets.iter().any(|s| s.id.as_str() == *secret),
                    "lost secret {secret} of {agent}: {line}"
                );
                if parts[0] == "rotated" {
                    assert!(
                        secrets
                            .iter()
                            .filter(|s| s.id.as_str() != *secret)
                            .all(|s| s.expires_at.is_some() || s.revoked_at.is_some()),
                        "lost the grace period of a rotation: {line}"
                    );
                }
            }
            ["revoked", agent, n] => {
                let secrets = store.list_client_secrets(&agent_id(agent)).await.unwrap();
                assert!(n.parse::<usize>().unwrap() >= 1);
                assert!(
                    secrets.iter().all(|s| s.revoked_at.is_some()),
                    "lost a revocation: {line}"
                );
            }
            ["updated", agent, revision] => {
                let a = store.get_agent(&agent_id(agent)).await.unwrap();
                assert!(
                    a.revision >= revision.parse::<u64>().unwrap(),
                    "lost an update: {line}"
                );
            }
            ["audit", tenant, seq, hash] => {
                let seq: u64 = seq.parse().unwrap();
                let page = store
                    .query_audit(&AuditQuery {
                        tenant_id: Some(TenantId::parse(tenant).unwrap()),
                        cursor: Some((seq - 1).to_string()),
                        limit: Some(1),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert!(
                    page.items
                        .first()
                        .is_some_and(|e| e.seq == seq && e.hash == *hash),
                    "lost audit event: {line}"
                );
                let h = heads.entry((*tenant).to_owned()).or_default();
                *h = (*h).max(seq);
            }
            ["marker", key] => {
                assert!(
                    store.has_marker("revoked", key, t(0)).await.unwrap(),
                    "lost marker: {line}"
                );
            }
            _ => panic!("unexpected acknowledgement {line:?}"),
        }
    }
    // Every chain verifies and reaches at least its last acknowledged event.
    for (tenant, acked) in heads {
        let tenant = TenantId::parse(&tenant).unwrap();
        let all = store
            .query_audit(&AuditQuery {
                tenant_id: Some(tenant.clone()),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        let head = store.audit_head(Some(&tenant)).await.unwrap().unwrap();
        assert!(head.seq >= acked);
        if all.next_cursor.is_none() {
            verify_chain(&all.items, Some(&head)).unwrap();
        }
    }
}

async fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut acks = Vec::new();
    for kill_after in [40, 150, 400] {
        let round = run_child(dir.path(), kill_after);
        assert!(round.len() >= kill_after);
        assert!(
            round[0].starts_with("tenant "),
            "first acknowledgement: {}",
            round[0]
        );
        acks.extend(round);
        let backend = open_retrying(dir.path());
        verify(&backend.store(), &acks).await;
        // Still writable after the recovery.
        let after = sample_tenant("After recovery");
        backend.store().create_tenant(&after).await.unwrap();
        drop(backend);
    }
    // And the directory still opens cleanly.
    let r = SledBackend::open(dir.path()).map(drop);
    assert!(!matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
}

/// Set in the child of the lock test: the directory to hold open.
const HOLD_DIR: &str = "SENTRYAGENT_SLED_HOLD_DIR";
const HOLD_TEST: &str = "sled_directory_held_by_another_process_is_refused";

#[tokio::test]
async fn sled_directory_held_by_another_process_is_refused() {
    if let Some(dir) = std::env::var_os(HOLD_DIR) {
        // The child: hold the database open until stdin closes.
        let _backend = SledBackend::open(Path::new(&dir)).unwrap();
        println!("OPEN");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", HOLD_TEST, "--nocapture", "--test-threads=1"])
        .env(HOLD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            // After the harness's `test <name> ... ` on the same line.
            Ok(line) if line.ends_with("OPEN") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the holder did not open the database: {e}");
            }
        }
    }
    let shown = dir.path().display().to_string();
    match SledBackend::open(dir.path()) {
        Err(Error::Unavailable { message, source }) => {
            assert!(
                message.contains("in use by another process") && message.contains(&shown),
                "{message}"
            );
            assert!(source.is_some());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Once the holder is gone, the directory opens.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    SledBackend::open(dir.path()).unwrap();
}

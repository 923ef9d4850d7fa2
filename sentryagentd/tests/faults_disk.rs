//! Fault suite: sled on a full disk. The data directory sits on a small
//! tmpfs of the test's own (mounted, and unmounted by a drop guard, also
//! when the test fails); a filler file takes the rest of its space.
//!
//! Promises: writes fail with a clear problem document (503 or 507, never
//! 500, no panic); reads keep working; once space is freed writes succeed
//! again within a few seconds, without a restart (the sled backend reopens
//! its database once the disk has room); nothing acknowledged is missing and
//! the audit chain verifies, on the same node and after a restart.
//!
//! Mounting needs root (`mount -t tmpfs`); without it the case is skipped,
//! or fails under `SENTRYAGENT_REQUIRE_SERVICES=1`.

mod daemon;
mod faults;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{Daemon, client, key};
use faults::{Acked, Tenant, check_nothing_lost, get, spawn, tiers_file, within};
use serde_json::{Value, json};

const TEST: &str = "sled_on_a_full_disk_refuses_writes_clearly_and_recovers";
/// Time writes have to come back once space is freed (the backend checks
/// every second).
const RECOVERY: Duration = Duration::from_secs(10);

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    // The last partial chunk, byte by byte in small pieces.
    while f.write_all(&chunk[..512]).is_ok() {
        n += 512;
    }
    let _ = f.sync_all();
    n
}

/// Registers an agent: the status and the body.
async fn register(d: &Daemon, key: &str, name: &str) -> (u16, String, Value) {
    let r = client()
        .post(format!("{}/v1/agents", d.base))
        .bearer_auth(key)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ctype, r.json().await.unwrap_or_default())
}

fn acked(body: &Value) -> Acked {
    Acked {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_on_a_full_disk_refuses_writes_clearly_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    let _tmpfs = match Tmpfs::mount(&mnt, "16m") {
        Ok(t) => t,
        Err(e) => {
            sentryagent_storage::testing::unreachable(TEST, "tmpfs", "mount -t tmpfs", &e);
            return;
        }
    };
    let tiers = tiers_file(root.path());
    let store = format!("sled://{}", mnt.join("data").display());
    let op = key();
    let args = [
        "--store",
        &store,
        "--limiter",
        "memory://",
        "--tiers",
        &tiers,
    ];
    let mut d = spawn(&args, &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)]).await;
    let t = Tenant::create(&d, &op, "disk").await;
    let mut kept = vec![Acked {
        id: t.client_id.clone(),
        secret: t.secret.clone(),
    }];
    for i in 0..5 {
        let (st, _, body) = register(&d, &t.key, &format!("before-{i}")).await;
        assert_eq!(st, 201, "{body}");
        kept.push(acked(&body));
    }

    // Fill the disk; writes are refused, clearly.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    let mut refusals = Vec::new();
    for i in 0..40 {
        let (st, ctype, body) = register(&d, &t.key, &format!("full-{i}")).await;
        match st {
            201 => kept.push(acked(&body)),
            503 | 507 => {
                assert!(ctype.starts_with("application/problem+json"), "{ctype}");
                assert_eq!(body["status"], st, "{body}");
                refusals.push(body);
                if refusals.len() >= 3 {
                    break;
                }
            }
            _ => panic!("a write on a full disk: {st} {body}"),
        }
    }
    assert!(
        refusals.len() >= 3,
        "writes on a full disk are refused ({} acknowledged)",
        kept.len()
    );
    // Reads keep working: each acknowledged agent, the list, the JWKS.
    for a in &kept {
        let (st, _, body) = get(&format!("{}/v1/agents/{}", d.base, a.id), Some(&t.key)).await;
        assert_eq!(st, 200, "a read on a full disk: {body}");
    }
    let (st, _, list) = get(&format!("{}/v1/agents", d.base), Some(&t.key)).await;
    assert_eq!(st, 200, "{list}");
    let (st, _, jwks) = get(&format!("{}/.well-known/jwks.json", d.base), None).await;
    assert_eq!(st, 200, "{jwks}");
    assert!(
        !d.log_text().contains("panicked"),
        "no panic: {}",
        d.log_text()
    );

    // The backend reports the degradation.
    let degraded = within(Duration::from_secs(5), || async {
        let (_, _, detailed) = get(&format!("{}/health/detailed", d.base), Some(&op)).await;
        detailed.to_string().contains("degraded")
    })
    .await;
    assert!(
        degraded.is_some(),
        "/health/detailed names the degraded store"
    );

    eprintln!("sled full disk: first refusal {}", refusals[0]);

    // Space freed: writes succeed again on the same process, within a few
    // seconds (the backend reopens the database), with no restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut n = 0;
    let back = loop {
        n += 1;
        let (st, ctype, body) = register(&d, &t.key, &format!("after-{n}")).await;
        match st {
            201 => {
                kept.push(acked(&body));
                break freed.elapsed();
            }
            503 | 507 => assert!(ctype.starts_with("application/problem+json"), "{ctype}"),
            _ => panic!("a write after space was freed: {st} {body}"),
        }
        assert!(
            freed.elapsed() < RECOVERY,
            "writes again within {RECOVERY:?} of freeing space, without a restart: {st} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("sled full disk: writes again {back:?} after space was freed, no restart");
    for i in 0..3 {
        let (st, _, body) = register(&d, &t.key, &format!("recovered-{i}")).await;
        assert_eq!(st, 201, "a write once recovered: {body}");
        kept.push(acked(&body));
    }
    let (st, _, ready) = get(&format!("{}/health/ready", d.base), None).await;
    assert_eq!(st, 200, "ready again: {ready}");
    assert!(
        !d.log_text().contains("panicked"),
        "no panic: {}",
        d.log_text()
    );

    // Nothing is corrupted: on the same node, then after a restart, every
    // acknowledged agent is there, its secret works, and the audit chain
    // verifies.
    check_nothing_lost(&d.base, &t.key, &kept).await;
    d.stop();
    d = spawn(&args, &[]).await;
    check_nothing_lost(&d.base, &t.key, &kept).await;
    d.stop();
    let mut d = spawn(&args, &[]).await;
    check_nothing_lost(&d.base, &t.key, &kept).await;
    d.stop();
}

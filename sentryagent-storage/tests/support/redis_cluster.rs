//! A local three-master Redis Cluster for tests: `redis-server` processes
//! on free loopback ports, joined by `redis-cli --cluster create`, killed
//! when dropped. Every wait is bounded.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `redis-server` and `redis-cli` can run; otherwise skips `test`
/// (or fails it when services are required).
pub(crate) fn tools_available(test: &str) -> bool {
    for tool in ["redis-server", "redis-cli"] {
        if let Err(e) = Command::new(tool).arg("--version").output() {
            sentryagent_core::conformance::kit::skip_or_fail(test, tool, "PATH", &e.to_string());
            return false;
        }
    }
    true
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 50_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// A running cluster; its processes are killed on drop.
pub(crate) struct LocalCluster {
    pub(crate) ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl LocalCluster {
    /// Starts three masters and creates the cluster; waits (at most 30 s)
    /// until every node reports `cluster_state:ok`.
    pub(crate) fn start() -> LocalCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        let mut children = Vec::new();
        while ports.len() < 3 {
            let port = free_port();
            if ports.contains(&port) {
                continue;
            }
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            ports.push(port);
            children.push(child);
        }
        let cluster = LocalCluster {
            ports,
            children,
            _dir: dir,
        };
        for &port in &cluster.ports {
            cluster.wait_for(&format!("node {port} answers"), || {
                cli(port, &["ping"]).trim() == "PONG"
            });
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &port in &cluster.ports {
            cluster.wait_for(&format!("node {port} sees the cluster ok"), || {
                cli(port, &["cluster", "info"]).contains("cluster_state:ok")
            });
        }
        cluster
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+cluster://` URL of the seed nodes, with a key prefix.
    pub(crate) fn url(&self, prefix: &str) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}?prefix={prefix}", nodes.join(","))
    }

    /// `redis-cli` against the node on `port`.
    pub(crate) fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// The node id of `port`.
    pub(crate) fn id(&self, port: u16) -> String {
        cli(port, &["cluster", "myid"]).trim().to_owned()
    }

    /// The slot of `key`.
    pub(crate) fn slot(&self, key: &str) -> u16 {
        cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// The port of the master serving `slot`, from `CLUSTER NODES` as the
    /// node on `ask` sees it.
    pub(crate) fn owner(&self, ask: u16, slot: u16) -> u16 {
        for line in cli(ask, &["cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") {
                continue;
            }
            let port: u16 = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &f[8..] {
                if range.starts_with('[') {
                    continue;
                }
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (u16, u16) = (a.parse().unwrap(), b.parse().unwrap());
                if (a..=b).contains(&slot) {
                    return port;
                }
            }
        }
        panic!("no owner of slot {slot}");
    }
}

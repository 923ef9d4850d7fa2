//! The built `sentryagentd` binary as a test spawns it: on a free loopback
//! port, with a cleared environment, its logs and stdout collected.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running server and the lines it logged so far.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// `http://<addr>`.
    pub base: String,
    /// The listening address.
    pub addr: String,
    /// Its stderr lines (the logs).
    pub logs: Arc<Mutex<Vec<String>>>,
    /// Its stdout.
    pub stdout: Arc<Mutex<String>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client with a TLS provider installed (the workspace's reqwest has
/// none by default; these loopback tests use plain HTTP).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Spawns the `sentryagentd` that cargo built for these tests.
pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
    spawn_bin(Path::new(env!("CARGO_BIN_EXE_sentryagentd")), args, env).await
}

/// Spawns the server binary at `bin` on a free loopback port and waits
/// until `/health` answers.
pub async fn spawn_bin(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = Command::new(bin);
    c.env_clear()
        .args(["--listen", &addr])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = stdout.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });
    let base = format!("http://{addr}");
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start: {:?}",
            logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Daemon {
        child,
        base,
        addr,
        logs,
        stdout,
    }
}

impl Daemon {
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; the time it took and whether it was a success.
    pub fn wait_exit(&mut self, limit: Duration) -> (Duration, bool) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (start.elapsed(), s.success());
            }
            assert!(
                start.elapsed() < limit,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits (at most 20 s) for a successful exit.
    pub fn stop(&mut self) {
        self.sigterm();
        let (_, ok) = self.wait_exit(Duration::from_secs(20));
        assert!(ok, "a clean exit: {}", self.log_text());
    }
}

pub fn key() -> String {
    let mut k = String::from("sa_ak_");
    let id = format!(
        "{:x}{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    k.push_str(&id);
    while k.len() < 48 {
        k.push_str("Zq9_x-");
    }
    k
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(req: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    req.header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
}

pub async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

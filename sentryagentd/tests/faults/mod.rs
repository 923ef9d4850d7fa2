//! Plumbing of the fault suite (`tests/faults_*.rs`): a private
//! `redis-server`, a TCP proxy that can cut a backend, a token load
//! generator, and the calls every case makes.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::daemon::{Daemon, client, free_port, post, spawn_bin};

/// The server binary the fault cases and the soak start: the path in
/// `SENTRYAGENT_SERVER_BIN` (CI sets it to the release build), else the
/// debug build cargo made for these tests.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("SENTRYAGENT_SERVER_BIN") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SENTRYAGENT_SERVER_BIN names no file: {}",
                p.display()
            );
            p
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_sentryagentd")),
    }
}

/// Starts [`server_bin`] on a free loopback port (see
/// [`crate::daemon::spawn_bin`]).
pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
    spawn_bin(&server_bin(), args, env).await
}

/// Limits high enough that a fault case's load never meets them (the
/// token quota of the pro tier stays, so the meter is read on every token).
pub const GENEROUS_TIERS: &str = r#"{"pro": {"max_agents": null, "requests_per_minute": 1000000, "client_requests_per_minute": 1000000}}"#;

/// Writes [`GENEROUS_TIERS`] into `dir`; returns the file's path.
pub fn tiers_file(dir: &Path) -> String {
    let p = dir.join("tiers.json");
    std::fs::write(&p, GENEROUS_TIERS).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A `redis-server` of the test's own, on a free loopback port, with an
/// append-only file in a temporary directory (so a stop and start keeps
/// its data, as a restarted Redis with persistence does). Never the shared
/// one.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    /// `None` (after the skip-or-fail rule) when `redis-server` is not
    /// installed.
    pub fn start(test: &str, dir: &Path) -> Option<PrivateRedis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            sentryagent_storage::testing::unreachable(
                test,
                "redis-server",
                "PATH",
                "not installed",
            );
            return None;
        }
        let mut r = PrivateRedis {
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        r.up();
        Some(r)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it answers PING.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "PING"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGTERM: it writes its append-only file and
    /// exits) and waits for the exit.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback TCP proxy in front of a backend that the test can cut and
/// restore. A cut closes every open connection and stops listening, so new
/// connections are refused (`ECONNREFUSED`), as when a database is stopped
/// or restarting; a restore listens again on the same address.
pub struct CutProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    /// The forwarding tasks of open connections (aborted by a cut).
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The accept loop (it owns the listener) while not cut.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = Self::serve(listener, target, conns.clone());
        CutProxy {
            addr,
            target,
            conns,
            accept: Mutex::new(Some(accept)),
        }
    }

    fn serve(
        listener: TcpListener,
        target: SocketAddr,
        conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut c = conns.lock().unwrap();
                c.retain(|t| !t.is_finished());
                c.push(task);
            }
        })
    }

    /// Closes every open connection and stops listening: new connections
    /// are refused.
    pub fn cut(&self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
        }
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same address (waiting for the aborted
    /// listener to be closed).
    pub async fn restore(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            match socket.bind(self.addr).and_then(|()| socket.listen(1024)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let accept = Self::serve(listener, self.target, self.conns.clone());
        *self.accept.lock().unwrap() = Some(accept);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
        }
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// One answer of a load run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent, since the load started.
    pub at: Duration,
    /// How long the answer took.
    pub took: Duration,
    /// The status, or 0 when the request failed (connection, timeout).
    pub status: u16,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
}

/// Token requests by `workers` loops until stopped.
pub struct TokenLoad {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TokenLoad {
    pub fn start(base: &str, client_id: &str, secret: &str, workers: usize) -> TokenLoad {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let tasks = (0..workers)
            .map(|_| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let url = format!("{base}/oauth2/token");
                let (id, secret) = (client_id.to_owned(), secret.to_owned());
                tokio::spawn(async move {
                    let http = client();
                    while !stop.load(Ordering::SeqCst) {
                        let t0 = Instant::now();
                        let r = http
                            .post(&url)
                            .basic_auth(&id, Some(&secret))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body("grant_type=client_credentials")
                            .send()
                            .await;
                        let (status, retry_after) = match r {
                            Ok(r) => (r.status().as_u16(), r.headers().contains_key("retry-after")),
                            Err(_) => (0, false),
                        };
                        samples.lock().unwrap().push(Sample {
                            at: t0 - started,
                            took: t0.elapsed(),
                            status,
                            retry_after,
                        });
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        TokenLoad {
            started,
            stop,
            samples,
            tasks,
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the workers; every answer.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// Answers sent in `[from, to)`.
pub fn between(samples: &[Sample], from: Duration, to: Duration) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect()
}

/// A tenant (tier pro), its key and an agent with a secret.
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub client_id: String,
    pub secret: String,
}

impl Tenant {
    pub async fn create(d: &Daemon, operator: &str, name: &str) -> Tenant {
        let http = client();
        let b = &d.base;
        let t = post(
            &http,
            format!("{b}/v1/tenants"),
            operator,
            json!({"name": name, "tier": "pro"}),
        )
        .await;
        let id = t["id"].as_str().unwrap().to_owned();
        let k = post(
            &http,
            format!("{b}/v1/tenants/{id}/api-keys"),
            operator,
            json!({"name": "faults"}),
        )
        .await;
        let key = k["key"].as_str().unwrap().to_owned();
        let a = post(
            &http,
            format!("{b}/v1/agents"),
            &key,
            json!({"name": format!("{name}-bot")}),
        )
        .await;
        Tenant {
            id,
            key,
            client_id: a["client_id"].as_str().unwrap().to_owned(),
            secret: a["client_secret"].as_str().unwrap().to_owned(),
        }
    }
}

/// A token by `client_secret_basic`: the status (0: no answer).
pub async fn token_status(base: &str, id: &str, secret: &str) -> u16 {
    client()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// `GET` with an optional bearer key: status, `Retry-After` present, body.
pub async fn get(url: &str, key: Option<&str>) -> (u16, bool, Value) {
    let mut req = client().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r.headers().contains_key("retry-after");
            (status, retry, r.json().await.unwrap_or_default())
        }
        Err(_) => (0, false, Value::Null),
    }
}

/// Polls `cond` every 100 ms until it holds; the time it took, or `None`
/// after `limit`.
pub async fn within<F, Fut>(limit: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// An acknowledged agent: its id and the last secret the server
/// acknowledged for it (at registration, or by a rotation's 200).
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    pub secret: String,
}

/// Registrations (and, with `rotate`, rotations of agents registered
/// before) by a tenant key, in `workers` loops, until stopped: every
/// acknowledged write is kept, and every answer's status and time.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    /// Requests sent and not yet answered in full.
    in_flight: Arc<AtomicUsize>,
    pub acked: Arc<Mutex<Vec<Acked>>>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl WriteLoad {
    pub fn start(base: &str, key: &str, workers: usize, rotate: bool) -> WriteLoad {
        let started = Instant::now();
        // Agent names are unique in a tenant: each load names its own.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let tasks = (0..workers)
            .map(|w| {
                let (stop, acked, samples) = (stop.clone(), acked.clone(), samples.clone());
                let in_flight = in_flight.clone();
                let (base, key) = (base.to_owned(), key.to_owned());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(20))
                        .build()
                        .unwrap();
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let t0 = Instant::now();
                        // Odd rounds of a rotating worker rotate an agent
                        // acknowledged earlier; the others register.
                        let target = if rotate && n % 2 == 1 {
                            let a = acked.lock().unwrap();
                            (!a.is_empty()).then(|| a[(n as usize / 2) % a.len()].id.clone())
                        } else {
                            None
                        };
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let r = match &target {
                            Some(id) => {
                                http.post(format!("{base}/v1/agents/{id}/credentials/rotate"))
                                    .bearer_auth(&key)
                                    .send()
                                    .await
                            }
                            None => {
                                http.post(format!("{base}/v1/agents"))
                                    .bearer_auth(&key)
                                    .json(&json!({"name": format!("w{w}-{n}-{run:x}")}))
                                    .send()
                                    .await
                            }
                        };
                        let (status, retry_after) = match r {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let retry = r.headers().contains_key("retry-after");
                                // An acknowledgement counts only once its
                                // body is read in full.
                                if let Ok(body) = r.json::<Value>().await {
                                    let secret = body["client_secret"].as_str();
                                    match (&target, status, secret) {
                                        (None, 201, Some(s)) => {
                                            acked.lock().unwrap().push(Acked {
                                                id: body["client_id"].as_str().unwrap().to_owned(),
                                                secret: s.to_owned(),
                                            });
                                        }
                                        (Some(id), 200, Some(s)) => {
                                            let mut a = acked.lock().unwrap();
                                            if let Some(x) = a.iter_mut().find(|x| &x.id == id) {
                                                x.secret = s.to_owned();
                                            }
                                        }
                                        _ => {}
                                    }
                                }
                                (status, retry)
                            }
                            Err(_) => (0, false),
                        };
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        samples.lock().unwrap().push(Sample {
                            at: t0 - started,
                            took: t0.elapsed(),
                            status,
                            retry_after,
                        });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        WriteLoad {
            stop,
            in_flight,
            acked,
            samples,
            tasks,
            started,
        }
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (at most `limit`, polling every millisecond) until at least
    /// `n` requests are in flight; whether they were. A fault injected
    /// right after this meets writes under way rather than workers that
    /// happen to sit between requests (a fast server answers a write in
    /// about the time a worker pauses between two).
    pub async fn wait_in_flight(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.in_flight.load(Ordering::SeqCst) < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// Stops the workers; the acknowledged agents and every answer.
    pub async fn finish(self) -> (Vec<Acked>, Vec<Sample>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let a = self.acked.lock().unwrap().clone();
        let s = self.samples.lock().unwrap().clone();
        (a, s)
    }
}

/// Every acknowledged agent exists and its acknowledged secret gets a
/// token; every agent the tenant lists is whole (readable, with a name, a
/// state and a DID); the tenant's audit chain verifies. Returns the number of
/// listed agents.
pub async fn check_nothing_lost(base: &str, key: &str, acked: &[Acked]) -> usize {
    let http = client();
    for a in acked {
        let r = http
            .get(format!("{base}/v1/agents/{}", a.id))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged agent {} is missing", a.id);
        assert_eq!(
            token_status(base, &a.id, &a.secret).await,
            200,
            "the acknowledged secret of {} works",
            a.id
        );
    }
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/agents?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (st, _, page) = get(&url, Some(key)).await;
        assert_eq!(st, 200, "{page}");
        for agent in page["items"].as_array().unwrap() {
            listed += 1;
            let id = agent["id"].as_str().unwrap();
            assert!(
                agent["name"].is_string() && agent["state"].is_string() && agent["did"].is_string(),
                "a whole agent: {agent}"
            );
            let (st, _, one) = get(&format!("{base}/v1/agents/{id}"), Some(key)).await;
            assert_eq!(st, 200, "a listed agent is readable: {one}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        listed >= acked.len(),
        "{listed} listed, {} acknowledged",
        acked.len()
    );
    let (st, _, head) = get(&format!("{base}/v1/audit/verify"), Some(key)).await;
    assert_eq!(st, 200, "the audit chain verifies: {head}");
    listed
}

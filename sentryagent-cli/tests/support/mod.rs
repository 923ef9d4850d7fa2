//! A real SentryAgent server on a loopback port (sled in a temporary
//! directory, or, with the `postgres` feature, a fresh Postgres schema) and
//! the `sentryagent` binary pointed at it with a private home directory.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use sentryagent::storage::{BackendUrls, open};
use sentryagent::{Clock, Idp, SystemClock};
use serde_json::Value;

/// A server running on its own runtime thread until dropped.
pub struct Server {
    /// Base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// An operator key.
    pub operator_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _data: Storage,
}

/// What the server's storage lives in, removed when the server goes.
enum Storage {
    /// A temporary directory (sled).
    Dir(tempfile::TempDir),
    /// A Postgres schema.
    #[cfg(feature = "postgres")]
    Schema(sentryagent_storage::testing::SchemaGuard),
}

impl Server {
    /// Starts a server with sled storage in a fresh temporary directory.
    pub fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let store = format!("sled://{}", data.path().display());
        Server::start_on(store, Storage::Dir(data))
    }

    /// Starts a server on a fresh Postgres schema; `None` (after the
    /// `SKIPPED` line) when Postgres is unreachable, a panic instead when
    /// `SENTRYAGENT_REQUIRE_SERVICES=1`.
    #[cfg(feature = "postgres")]
    pub fn start_postgres(test: &str) -> Option<Server> {
        use sentryagent_storage::testing::{SchemaGuard, postgres};
        let url = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(postgres(test))?;
        let (store, guard) = SchemaGuard::fresh(&url);
        Some(Server::start_on(store, Storage::Schema(guard)))
    }

    fn start_on(store: String, data: Storage) -> Server {
        let operator_key = format!(
            "sa_ak_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let key = operator_key.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                // One node: its own rate limiter, whatever the store.
                let urls = BackendUrls {
                    store,
                    limiter: Some("memory://".into()),
                    meter: None,
                };
                let backends = open(&urls, clock.clone()).await.unwrap();
                // Domain proofs: the production policy, with the test
                // domain resolving to loopback (refused) without DNS.
                let proofs = sentryagent::http::HttpDomainProofFetcher::new(
                    sentryagent::http::DomainProofFetcherConfig::default()
                        .host("proof.localhost", SocketAddr::from(([127, 0, 0, 1], 9))),
                )
                .unwrap();
                let idp = backends
                    .apply(Idp::builder(&url))
                    .clock(clock)
                    .domain_proofs(Arc::new(proofs))
                    .build()
                    .await
                    .unwrap();
                idp.ensure_operator_key(&key).await.unwrap();
                let config = sentryagent::http::RouterConfig::default()
                    .sse_keep_alive(Duration::from_secs(1));
                let app = axum::Router::new().merge(sentryagent::http::router_with(idp, config));
                ready_tx.send(url).unwrap();
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let url = ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Server {
            url,
            operator_key,
            stop: Some(stop_tx),
            thread: Some(thread),
            _data: data,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open streams (the audit tail) end with the runtime; do not wait.
        drop(self.thread.take());
    }
}

/// A server and a private home directory for the command.
pub struct Env {
    pub server: Server,
    pub home: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env::on(Server::start())
    }

    /// An environment around `server`.
    pub fn on(server: Server) -> Env {
        Env {
            server,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// An environment on a fresh Postgres schema; `None` when skipped.
    #[cfg(feature = "postgres")]
    pub fn postgres(test: &str) -> Option<Env> {
        Server::start_postgres(test).map(Env::on)
    }

    /// `~/.sentryagent` of this environment.
    pub fn dot_dir(&self) -> PathBuf {
        self.home.path().join(".sentryagent")
    }

    /// The command with HOME here and no inherited SENTRYAGENT_* or NO_COLOR.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sentryagent"));
        c.env("HOME", self.home.path())
            .env_remove("SENTRYAGENT_CONFIG")
            .env_remove("SENTRYAGENT_URL")
            .env_remove("SENTRYAGENT_API_KEY")
            .env_remove("SENTRYAGENT_PROFILE")
            .env_remove("SENTRYAGENT_TENANT")
            .env_remove("SENTRYAGENT_CLIENT_SECRET")
            .env_remove("NO_COLOR")
            .timeout(Duration::from_secs(60));
        c
    }

    /// The command with the server URL and the operator key in the
    /// environment.
    pub fn op(&self) -> Command {
        let mut c = self.cmd();
        c.env("SENTRYAGENT_URL", &self.server.url)
            .env("SENTRYAGENT_API_KEY", &self.server.operator_key);
        c
    }

    /// The command as a tenant key.
    pub fn as_key(&self, key: &str) -> Command {
        let mut c = self.cmd();
        c.env("SENTRYAGENT_URL", &self.server.url)
            .env("SENTRYAGENT_API_KEY", key);
        c
    }

    /// A new tenant (through the command) and an admin key for it:
    /// `(tenant id, key)`.
    pub fn tenant(&self, name: &str) -> (String, String) {
        self.tenant_on(name, "free")
    }

    /// [`Env::tenant`] on a tier.
    pub fn tenant_on(&self, name: &str, tier: &str) -> (String, String) {
        let t = json_out(self.op().args([
            "tenants", "create", "--name", name, "--tier", tier, "--json",
        ]));
        let id = t["id"].as_str().unwrap().to_owned();
        let k = json_out(self.op().args([
            "api-keys", "create", "--tenant", &id, "--name", "cli-test", "--json",
        ]));
        (id, k["key"].as_str().unwrap().to_owned())
    }
}

/// Runs `cmd`, asserts success, parses stdout as JSON.
pub fn json_out(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "command failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `cmd`, asserts success, returns stdout.
pub fn text_out(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "command failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd`, expects exit `code`; returns stderr.
pub fn fails_with(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}; stderr: {stderr}; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

//! Shared test plumbing: an IdP served over real HTTP on an ephemeral
//! loopback port, a client, and shortcuts for the common setup steps.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sentryagent_core::{
    AdminScope, Caller, Clock, Idp, IdpBuilder, IdpConfig, ManualClock, SystemClock,
};
use sentryagent_http::{JwksFetcher, JwksFetcherConfig, RouterConfig};
use sentryagent_storage::{BackendUrls, open};
use serde_json::{Value, json};

/// Which backends a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `SENTRYAGENT_HTTP_TEST_STORE`, default `memory://`.
    FromEnv,
    /// sled in a fresh temporary directory (store, limiter and meter).
    Sled,
    /// Postgres (store, fresh schema) + Redis (limiter and meter, fresh key
    /// prefix), from `SENTRYAGENT_TEST_POSTGRES_URL` and
    /// `SENTRYAGENT_TEST_REDIS_URL`.
    PostgresRedis,
}

pub use sentryagent_storage::testing::{postgres_url, redis_url};

/// `url` with one more query parameter.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// Whether Postgres and Redis answer. When they do not, prints a skip line
/// and returns false, or panics when `SENTRYAGENT_REQUIRE_SERVICES=1` (the
/// storage crate's test plumbing).
pub async fn services_available(test: &str) -> bool {
    sentryagent_storage::testing::postgres(test).await.is_some()
        && sentryagent_storage::testing::redis(test).await.is_some()
}

/// How a test server is set up.
pub struct Setup {
    /// Backends.
    pub backend: Backend,
    /// Nest prefix (`/idp`), or "" for the root.
    pub prefix: &'static str,
    /// Changes to the IdP configuration.
    pub configure: Box<dyn FnOnce(&mut IdpConfig) + Send>,
    /// Changes to the builder (billing provider...).
    pub build: Box<dyn FnOnce(IdpBuilder) -> IdpBuilder + Send>,
    /// Router options.
    pub router: RouterConfig,
    /// Issuer keys fetched over HTTP (token exchange) with these settings,
    /// on the server's clock.
    pub fetcher: Option<JwksFetcherConfig>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            backend: Backend::FromEnv,
            prefix: "",
            configure: Box::new(|_| {}),
            build: Box::new(|b| b),
            router: RouterConfig::default(),
            fetcher: None,
        }
    }
}

/// A running server.
pub struct Server {
    /// The issuer (base URL including the prefix).
    pub base: String,
    /// The host root URL.
    pub root: String,
    /// The IdP behind it.
    pub idp: Idp,
    /// The clock (starts at the current time; tests may advance it).
    pub clock: ManualClock,
    /// An operator key.
    pub op: String,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The issuer key fetcher, when the setup asked for one.
    pub fetcher: Option<JwksFetcher>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
    /// The Postgres schema and Redis key prefix of a `PostgresRedis`
    /// server, dropped with it.
    services: Option<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        // The schema and the keys go with the server: on a thread of its
        // own with a runtime of its own (a drop cannot await, and may run
        // inside the test's runtime).
        if let Some((schema, prefix)) = self.services.take() {
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    sentryagent_storage::testing::drop_schema(&postgres_url(), &schema).await;
                    sentryagent_storage::testing::delete_prefix(&redis_url(), &prefix).await;
                });
            });
            let _ = cleanup.join();
        }
    }
}

/// A server at the root with default settings.
pub async fn start() -> Server {
    start_with(Setup::default()).await
}

/// The store the tests run on: `SENTRYAGENT_HTTP_TEST_STORE` (any URL
/// `sentryagent_storage::open` knows, e.g. a sled directory or Postgres),
/// default `memory://`. Every test makes its own tenants, so a shared store
/// is fine.
fn test_store() -> String {
    std::env::var("SENTRYAGENT_HTTP_TEST_STORE").unwrap_or_else(|_| "memory://".into())
}

/// A server as `setup` says, on the test store, with a host app around it
/// when nested.
pub async fn start_with(setup: Setup) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let root = format!("http://{addr}");
    let base = format!("{root}{}", setup.prefix);
    let clock = ManualClock::new(SystemClock.now());
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut dir = None;
    let mut services = None;
    let urls = match setup.backend {
        Backend::FromEnv => BackendUrls {
            store: test_store(),
            ..Default::default()
        },
        Backend::Sled => {
            let d = tempfile::tempdir().unwrap();
            let url = format!("sled://{}", d.path().display());
            dir = Some(d);
            BackendUrls {
                store: url,
                ..Default::default()
            }
        }
        Backend::PostgresRedis => {
            let (schema, prefix) = (
                format!("http_test_{unique}"),
                format!("http-test-{unique}:"),
            );
            let redis = with_param(&redis_url(), "prefix", &prefix);
            let store = with_param(&postgres_url(), "schema", &schema);
            services = Some((schema, prefix));
            BackendUrls {
                store,
                limiter: Some(redis.clone()),
                meter: Some(redis),
            }
        }
    };
    let backends = open(&urls, shared.clone()).await.unwrap();
    let fetcher = setup
        .fetcher
        .map(|c| JwksFetcher::new(c, shared.clone()).unwrap());
    let mut builder = backends
        .apply(Idp::builder(&base))
        .clock(shared)
        .configure(setup.configure);
    if let Some(f) = &fetcher {
        builder = builder.issuer_keys(Arc::new(f.clone()));
    }
    let idp = (setup.build)(builder).build().await.unwrap();
    let (_, op) = idp
        .create_admin_key(
            &Caller::system(),
            None,
            "test operator",
            Some(vec![AdminScope::Admin]),
        )
        .await
        .unwrap();
    let router = sentryagent_http::router_with(idp.clone(), setup.router);
    let app = if setup.prefix.is_empty() {
        axum::Router::new().merge(router)
    } else {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "host" }))
            .nest(setup.prefix, router)
            .merge(sentryagent_http::well_known_router(idp.clone()))
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    // reqwest is built without a default TLS provider in this workspace;
    // loopback tests use plain HTTP, but a client still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        base,
        root,
        idp,
        clock,
        op,
        http,
        fetcher,
        task,
        _dir: dir,
        services,
    }
}

impl Server {
    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an optional admin key.
    pub fn req(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// GET with a key; the status and JSON body.
    pub async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        json_of(self.req(Method::GET, path, key).send().await.unwrap()).await
    }

    /// A JSON request with a key; the status and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        json_of(self.req(method, path, key).json(body).send().await.unwrap()).await
    }

    /// POST JSON with a key.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, key, body).await
    }

    /// A tenant and an admin key of it: `(tenant id, key)`.
    pub async fn tenant(&self, name: &str, tier: &str) -> (String, String) {
        let (s, t) = self
            .post(
                "/v1/tenants",
                Some(&self.op),
                &json!({"name": name, "tier": tier}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let (s, k) = self
            .post(
                &format!("/v1/tenants/{id}/api-keys"),
                Some(&self.op),
                &json!({"name": "test"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        (id, k["key"].as_str().unwrap().to_owned())
    }

    /// Registers an agent with `key`; the registration answer.
    pub async fn agent(&self, key: &str, body: Value) -> Value {
        let (s, a) = self.post("/v1/agents", Some(key), &body).await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        a
    }

    /// A token by `client_secret_post`; the status and body.
    pub async fn token_post(
        &self,
        id: &str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        form.extend_from_slice(extra);
        let body = serde_urlencoded(&form);
        json_of(
            self.http
                .post(self.url("/oauth2/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A raw form POST (body as given) with optional extra headers.
    pub async fn form(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Response {
        let mut r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Form-encodes pairs.
pub fn serde_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Status and JSON body (Null when the body is not JSON).
pub async fn json_of(r: Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a problem document of `status` (type, title, status, detail).
pub async fn assert_problem(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(
        v["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:sentryagent:problem:")
    );
    assert!(v["title"].is_string());
    v
}

/// Asserts an RFC 6749 error of `status` and `code`, not cacheable, with a
/// `WWW-Authenticate` challenge on 401.
pub async fn assert_oauth_error(r: Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    if status == 401 {
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"sentryagent\""
        );
    }
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], code, "{v}");
}

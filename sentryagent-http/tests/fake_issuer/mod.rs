//! A fake OpenID Connect issuer on loopback for token exchange tests: it
//! serves a discovery document and a JWKS from a `TestIssuer`'s keys, signs
//! subject tokens, counts requests, and misbehaves on demand (errors,
//! redirects, oversized or slow answers, another discovery document).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::conformance::kit::TestIssuer;
use serde_json::{Value, json};

/// How the JWKS endpoint answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Mode {
    /// The keys.
    #[default]
    Normal,
    /// 500.
    Fail,
    /// 302 to the same path.
    Redirect,
    /// A body larger than 256 KiB.
    Huge,
    /// No answer for 5 seconds.
    Slow,
}

struct Shared {
    url: String,
    keys: Mutex<TestIssuer>,
    mode: Mutex<Mode>,
    cache_control: Mutex<Option<String>>,
    /// Replaces the discovery document.
    discovery: Mutex<Option<Value>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

/// A running fake issuer.
pub struct FakeIssuer {
    /// Its issuer URL (`http://127.0.0.1:<port>`).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    // Concurrent requests pile up behind one fetch meanwhile.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let doc = s.discovery.lock().unwrap().clone().unwrap_or_else(|| {
        json!({
            "issuer": s.url,
            "jwks_uri": format!("{}/.well-known/jwks", s.url),
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository"],
            "scopes_supported": ["openid"]
        })
    });
    Json(doc).into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let mode = s.mode.lock().unwrap().clone();
    match mode {
        Mode::Normal => {}
        Mode::Fail => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Redirect => {
            return (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    HeaderValue::from_static("/.well-known/jwks"),
                )],
            )
                .into_response();
        }
        Mode::Huge => {
            let pad = "x".repeat(300 * 1024);
            return Json(json!({"keys": [], "pad": pad})).into_response();
        }
        Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
    }
    let body = s.keys.lock().unwrap().jwks();
    let mut res = Json(body).into_response();
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(&cc).unwrap());
    }
    res
}

impl FakeIssuer {
    /// Starts an issuer; `keys` gets an issuer of its URL and adds its keys.
    pub async fn start(keys: impl FnOnce(TestIssuer) -> TestIssuer) -> FakeIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            keys: Mutex::new(keys(TestIssuer::new(url.clone()))),
            url: url.clone(),
            mode: Mutex::new(Mode::Normal),
            cache_control: Mutex::new(None),
            discovery: Mutex::new(None),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/.well-known/jwks", axum::routing::get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIssuer { url, shared, task }
    }

    /// Signs `claims` with key `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        self.shared.keys.lock().unwrap().sign(kid, claims)
    }

    /// Changes the keys it publishes and signs with.
    pub fn set_keys(&self, f: impl FnOnce(TestIssuer) -> TestIssuer) {
        let mut k = self.shared.keys.lock().unwrap();
        let old = std::mem::replace(&mut *k, TestIssuer::new(self.url.clone()));
        *k = f(old);
    }

    /// How the JWKS endpoint answers from now on.
    pub fn set_mode(&self, m: Mode) {
        *self.shared.mode.lock().unwrap() = m;
    }

    /// The `Cache-Control` of the JWKS answer.
    pub fn set_cache_control(&self, v: Option<&str>) {
        *self.shared.cache_control.lock().unwrap() = v.map(str::to_owned);
    }

    /// Replaces the discovery document.
    pub fn set_discovery(&self, doc: Value) {
        *self.shared.discovery.lock().unwrap() = Some(doc);
    }

    /// Discovery requests so far.
    pub fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    /// JWKS requests so far.
    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }
}

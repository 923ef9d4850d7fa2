//! Publisher domain proofs over HTTP: a publisher starts a proof, serves
//! the token at `/.well-known/sentryagent-publisher.txt` of its domain (a
//! loopback web server here, reached over plain HTTP through names under
//! `localhost` with the development flag on), and the IdP verifies it with
//! the guarded client of issuer discovery: success, wrong or foreign or
//! expired tokens, missing files, redirects, oversized files, refused
//! addresses with the flag off; the badge, the publisher page and the
//! marketplace entry say how the publisher was verified.

mod http_helpers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_helpers::{Backend, Server, Setup, start_with};
use reqwest::Method;
use sentryagent_http::{DomainProofFetcherConfig, HttpDomainProofFetcher};
use serde_json::{Value, json};

/// How the web server answers for a host.
#[derive(Clone)]
enum Answer {
    /// 200 with this body.
    Body(String),
    /// A redirect to the same path.
    Redirect,
}

/// A loopback web server answering per `Host` (404 for unknown hosts).
struct Website {
    addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Website {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Website {
    async fn start() -> Website {
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let shared = answers.clone();
        let app = axum::Router::new().route(
            "/.well-known/sentryagent-publisher.txt",
            axum::routing::get(move |headers: HeaderMap| {
                let shared = shared.clone();
                async move {
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let answer = shared.lock().unwrap().get(&host).cloned();
                    let r: Response = match answer {
                        Some(Answer::Body(b)) => {
                            ([(header::CONTENT_TYPE, "text/plain")], b).into_response()
                        }
                        Some(Answer::Redirect) => (
                            StatusCode::FOUND,
                            [(header::LOCATION, "/.well-known/sentryagent-publisher.txt")],
                        )
                            .into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    };
                    r
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Website {
            addr,
            answers,
            task,
        }
    }

    fn serve(&self, host: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(host.to_owned(), answer);
    }
}

/// An IdP whose proof fetcher resolves each of `names` to `to` (with the
/// development flag as given).
async fn idp(dev: bool, names: &[&str], to: SocketAddr) -> Server {
    idp_on(Backend::FromEnv, dev, names, to).await
}

/// [`idp`] on `backend`.
async fn idp_on(backend: Backend, dev: bool, names: &[&str], to: SocketAddr) -> Server {
    let mut config = DomainProofFetcherConfig::default().allow_http_loopback(dev);
    for n in names {
        config = config.host(*n, to);
    }
    let fetcher = Arc::new(HttpDomainProofFetcher::new(config).unwrap());
    start_with(Setup {
        backend,
        build: Box::new(move |b| b.domain_proofs(fetcher)),
        ..Default::default()
    })
    .await
}

/// A tenant whose publisher website is on `domain`: `(id, key)`.
async fn publisher(s: &Server, name: &str, domain: &str) -> (String, String) {
    let (id, key) = s.tenant(name, "pro").await;
    let (st, t) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{id}/publisher"),
            Some(&key),
            &json!({"display_name": name, "website": format!("https://{domain}/")}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    (id, key)
}

async fn start_proof(s: &Server, id: &str, key: &str, domain: &str) -> Value {
    let (st, c) = s
        .post(
            &format!("/v1/tenants/{id}/publisher/domain-proofs"),
            Some(key),
            &json!({"domain": domain}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    c
}

async fn verify(s: &Server, id: &str, key: &str, domain: &str) -> (StatusCode, Value) {
    s.post(
        &format!("/v1/tenants/{id}/publisher/domain-proofs/verify"),
        Some(key),
        &json!({"domain": domain}),
    )
    .await
}

/// A failed verification: 422 problem+json whose reason names `code`.
async fn fails(s: &Server, id: &str, key: &str, domain: &str, code: &str) -> Value {
    let (st, p) = verify(s, id, key, domain).await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["field"], "domain", "{p}");
    let reason = p["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("domain proof failed ({code})")),
        "{reason}"
    );
    assert!(!reason.contains("127.0.0.1"), "no addresses: {reason}");
    p
}

async fn audit_actions(s: &Server, tenant: &str) -> Vec<(String, Value)> {
    let (st, page) = s
        .get(
            &format!("/v1/audit?tenant_id={tenant}&limit=1000"),
            Some(&s.op),
        )
        .await;
    assert_eq!(st, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["details"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_domain_proof_verifies_the_publisher_and_its_badge() {
    verifies_the_publisher_and_its_badge(Backend::FromEnv).await;
}

#[tokio::test]
async fn a_domain_proof_verifies_the_publisher_and_its_badge_on_sled() {
    verifies_the_publisher_and_its_badge(Backend::Sled).await;
}

#[tokio::test]
async fn a_domain_proof_verifies_the_publisher_and_its_badge_on_postgres() {
    if !http_helpers::services_available("domain_proof_on_postgres").await {
        return;
    }
    verifies_the_publisher_and_its_badge(Backend::PostgresRedis).await;
}

async fn verifies_the_publisher_and_its_badge(backend: Backend) {
    let web = Website::start().await;
    let s = idp_on(backend, true, &["acme.localhost"], web.addr).await;
    let (id, key) = publisher(&s, "Acme Proofs", "acme.localhost").await;
    let agent = s
        .agent(
            &key,
            json!({"name": "Proven", "visibility": "public", "capabilities": ["invoices.search"]}),
        )
        .await;
    let agent_id = agent["id"].as_str().unwrap();
    let badge_path = format!("/v1/marketplace/agents/{agent_id}/badge");
    let (_, before) = s.get(&badge_path, None).await;
    assert_eq!(before["credentialSubject"]["publisher"]["verified"], false);
    assert!(before["credentialSubject"]["publisher"]["verification"].is_null());

    let c = start_proof(&s, &id, &key, "Acme.Localhost").await;
    assert_eq!(c["domain"], "acme.localhost");
    assert_eq!(
        c["url"],
        "https://acme.localhost/.well-known/sentryagent-publisher.txt"
    );
    let token = c["token"].as_str().unwrap();
    assert!(
        token.starts_with("sa_dp_") && token.len() >= 6 + 43,
        "{token}"
    );
    assert!(
        c["instructions"]
            .as_str()
            .unwrap()
            .contains("acme.localhost")
    );
    assert!(c["expires_at"].is_string());

    // Not served yet: 404.
    fails(&s, &id, &key, "acme.localhost", "not_found").await;
    // A file without the token, then with another token.
    web.serve("acme.localhost", Answer::Body("hello\n".into()));
    fails(&s, &id, &key, "acme.localhost", "token_absent").await;
    web.serve(
        "acme.localhost",
        Answer::Body("sa_dp_AAAAAGlQ1pBQ5y1N3m9HnE6dWl2S3k0qvH2o6Xg0b9Q\n".into()),
    );
    fails(&s, &id, &key, "acme.localhost", "token_absent").await;
    // A redirect is not followed.
    web.serve("acme.localhost", Answer::Redirect);
    fails(&s, &id, &key, "acme.localhost", "bad_answer").await;

    // The token on a line of its own among others.
    web.serve(
        "acme.localhost",
        Answer::Body(format!(
            "# SentryAgent publisher proof\r\n  {token}  \nother\n"
        )),
    );
    let (st, t) = verify(&s, &id, &key, "acme.localhost").await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["publisher"]["verified"], true);
    let v = &t["publisher"]["verification"];
    assert_eq!(v["method"], "domain");
    assert_eq!(v["domain"], "acme.localhost");
    let verified_at = v["verified_at"].as_str().unwrap().to_owned();

    // The publisher page and the marketplace entry show it.
    let slug = t["slug"].as_str().unwrap();
    let (st, page) = s.get(&format!("/v1/publishers/{slug}"), None).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["publisher"]["verified"], true);
    assert_eq!(page["publisher"]["verification"], *v);
    let (_, entry) = s
        .get(&format!("/v1/marketplace/agents/{agent_id}"), None)
        .await;
    assert_eq!(entry["publisher"]["verification"], *v);

    // The badge is re-issued, saying how and when.
    let (_, after) = s.get(&badge_path, None).await;
    let p = &after["credentialSubject"]["publisher"];
    assert_eq!(p["verified"], true);
    assert_eq!(
        p["verification"],
        json!({"method": "domain", "domain": "acme.localhost", "verifiedAt": verified_at})
    );
    assert_ne!(after["id"], before["id"], "a new badge");
    let (_, check) = s.post("/v1/credentials/verify", None, &after).await;
    assert_eq!(check["verified"], true, "{check}");
    let (_, old) = s.post("/v1/credentials/verify", None, &before).await;
    assert_eq!(old["status"], "revoked", "{old}");

    // Audited: started, failed (with the reason), verified.
    let events = audit_actions(&s, &id).await;
    let of = |a: &str| events.iter().filter(|(x, _)| x == a).collect::<Vec<_>>();
    assert_eq!(of("tenant.publisher_domain_proof_started").len(), 1);
    let failed = of("tenant.publisher_domain_proof_failed");
    assert_eq!(failed.len(), 4);
    assert!(
        failed
            .iter()
            .any(|(_, d)| d["reason"] == "not_found" && d["domain"] == "acme.localhost")
    );
    let verified = of("tenant.publisher_domain_proof_verified");
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].1["domain"], "acme.localhost");

    // The display name may change; the website's host may not keep it.
    let (st, t) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{id}/publisher"),
            Some(&key),
            &json!({"display_name": "Acme Renamed", "website": "https://acme.localhost/about"}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["publisher"]["verification"]["method"], "domain");
    let (st, t) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{id}/publisher"),
            Some(&key),
            &json!({"display_name": "Acme Renamed", "website": "https://elsewhere.example/"}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["publisher"]["verified"], false);
    assert!(t["publisher"].get("verification").is_none(), "{t}");
    let (_, moved) = s.get(&badge_path, None).await;
    assert_eq!(moved["credentialSubject"]["publisher"]["verified"], false);
    assert!(
        moved["credentialSubject"]["publisher"]["verification"].is_null(),
        "{moved}"
    );

    // An operator's verification is recorded as such.
    let (st, t) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{id}/publisher"),
            Some(&s.op),
            &json!({"display_name": "Acme Renamed", "website": "https://elsewhere.example/", "verified": true}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["publisher"]["verification"]["method"], "operator");
    assert!(t["publisher"]["verification"]["verified_at"].is_string());
    assert!(t["publisher"]["verification"].get("domain").is_none());
}

#[tokio::test]
async fn tokens_are_bound_to_their_tenant_and_expire() {
    let web = Website::start().await;
    let s = idp(true, &["shared.localhost", "late.localhost"], web.addr).await;
    let (a, key_a) = publisher(&s, "Owner Co", "shared.localhost").await;
    let (b, key_b) = publisher(&s, "Squatter Co", "shared.localhost").await;
    let c = start_proof(&s, &a, &key_a, "shared.localhost").await;
    web.serve(
        "shared.localhost",
        Answer::Body(format!("{}\n", c["token"].as_str().unwrap())),
    );
    // Another tenant's token proves nothing for this one.
    fails(&s, &b, &key_b, "shared.localhost", "token_absent").await;
    let (st, _) = verify(&s, &a, &key_a, "shared.localhost").await;
    assert_eq!(st, 200);
    // A tenant key reaches only its own tenant.
    let (st, _) = s
        .post(
            &format!("/v1/tenants/{a}/publisher/domain-proofs"),
            Some(&key_b),
            &json!({"domain": "shared.localhost"}),
        )
        .await;
    assert!(st == 403 || st == 404, "{st}");

    // Expired after seven days.
    let (l, key_l) = publisher(&s, "Late Co", "late.localhost").await;
    let c = start_proof(&s, &l, &key_l, "late.localhost").await;
    web.serve(
        "late.localhost",
        Answer::Body(format!("{}\n", c["token"].as_str().unwrap())),
    );
    s.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    fails(&s, &l, &key_l, "late.localhost", "token_expired").await;
    let c = start_proof(&s, &l, &key_l, "late.localhost").await;
    web.serve(
        "late.localhost",
        Answer::Body(format!("{}\n", c["token"].as_str().unwrap())),
    );
    let (st, t) = verify(&s, &l, &key_l, "late.localhost").await;
    assert_eq!(st, 200, "{t}");
}

#[tokio::test]
async fn fetches_are_guarded_and_bounded() {
    let web = Website::start().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = idp(true, &["big.localhost", "many.localhost"], web.addr).await;
    let (id, key) = publisher(&s, "Big Co", "big.localhost").await;
    let token = start_proof(&s, &id, &key, "big.localhost").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    web.serve(
        "big.localhost",
        Answer::Body(format!("{token}\n{}", "x".repeat(70 * 1024))),
    );
    fails(&s, &id, &key, "big.localhost", "too_large").await;

    // Nothing listening.
    let down = idp(true, &["down.localhost"], closed).await;
    let (id, key) = publisher(&down, "Down Co", "down.localhost").await;
    fails(&down, &id, &key, "down.localhost", "unreachable").await;

    // Without the development flag, a name resolving to 127.0.0.1 is
    // refused (over HTTPS, and whatever its name).
    let strict = idp(false, &["acme.example", "acme.localhost"], web.addr).await;
    for domain in ["acme.example", "acme.localhost"] {
        let (id, key) = publisher(&strict, domain, domain).await;
        let token = start_proof(&strict, &id, &key, domain).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        web.serve(domain, Answer::Body(token));
        fails(&strict, &id, &key, domain, "refused").await;
        let events = audit_actions(&strict, &id).await;
        let failed = events
            .iter()
            .find(|(a, _)| a == "tenant.publisher_domain_proof_failed")
            .unwrap();
        assert_eq!(failed.1["reason"], "refused");
        assert!(
            failed.1["detail"].as_str().unwrap().contains("address"),
            "{}",
            failed.1
        );
    }

    // Attempts are limited per tenant.
    let (id, key) = publisher(&s, "Many Co", "many.localhost").await;
    let mut limited = false;
    for _ in 0..12 {
        let (st, p) = verify(&s, &id, &key, "many.localhost").await;
        if st == 429 {
            assert!(p["type"].as_str().unwrap().contains("rate"), "{p}");
            limited = true;
            break;
        }
        assert_eq!(st, 422, "{p}");
    }
    assert!(limited, "verification attempts are rate limited");
}

#[tokio::test]
async fn bad_domains_are_refused() {
    let web = Website::start().await;
    let s = idp(true, &[], web.addr).await;
    let (id, key) = publisher(&s, "Input Co", "acme.example").await;
    for bad in [
        "127.0.0.1",
        "[::1]",
        "acme.example:8443",
        "https://acme.example",
        "acme",
        "zürich.example",
        "",
        "a..example",
    ] {
        let (st, p) = s
            .post(
                &format!("/v1/tenants/{id}/publisher/domain-proofs"),
                Some(&key),
                &json!({"domain": bad}),
            )
            .await;
        assert_eq!(st, 422, "{bad}: {p}");
        assert_eq!(p["field"], "domain", "{p}");
    }
    // Not the website's host.
    let (st, p) = s
        .post(
            &format!("/v1/tenants/{id}/publisher/domain-proofs"),
            Some(&key),
            &json!({"domain": "other.example"}),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, p) = verify(&s, &id, &key, "other.example").await;
    assert_eq!(st, 422, "{p}");
    // Unknown fields, missing body.
    let (st, p) = s
        .post(
            &format!("/v1/tenants/{id}/publisher/domain-proofs"),
            Some(&key),
            &json!({"domain": "acme.example", "token": "x"}),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("unknown field"),
        "{p}"
    );
    let (st, _) = s
        .post(
            &format!("/v1/tenants/{id}/publisher/domain-proofs"),
            None,
            &json!({"domain": "acme.example"}),
        )
        .await;
    assert_eq!(st, 401);
}

//! The main flows over real HTTP on each persistent deployment shape: sled
//! (the standalone default) and Postgres + Redis (several nodes).

mod http_helpers;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_helpers::{Backend, Server, Setup, assert_oauth_error, json_of, start_with};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use sentryagent_core::jose::{Algorithm as Alg, SigningKey};
use serde_json::{Value, json};

async fn verify_with_jsonwebtoken(s: &Server, token: &str) -> Value {
    let jwks: JwkSet = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[&s.base]);
    v.set_audience(&[&s.base]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

async fn basic_token(s: &Server, id: &str, secret: &str) -> reqwest::Response {
    s.http
        .post(s.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
}

async fn flows(backend: Backend) {
    let s = start_with(Setup {
        backend,
        ..Default::default()
    })
    .await;
    let (tenant, key) = s.tenant("Acme", "pro").await;
    let a = s
        .agent(&key, json!({"name": "bot", "description": "Summarizes invoices", "capabilities": ["summarize"], "visibility": "public"}))
        .await;
    let id = a["client_id"].as_str().unwrap().to_owned();
    let secret = a["client_secret"].as_str().unwrap().to_owned();

    // client_secret_basic, verified by a JWT library from the JWKS.
    let r = basic_token(&s, &id, &secret).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let tok: Value = r.json().await.unwrap();
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let claims = verify_with_jsonwebtoken(&s, &access).await;
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["tenant_id"], tenant);
    assert_eq!(claims["did"], a["did"]);

    // private_key_jwt with the key generated at registration.
    let d = URL_SAFE_NO_PAD
        .decode(a["private_jwk"]["d"].as_str().unwrap())
        .unwrap();
    let k = SigningKey::from_secret_bytes(Alg::EdDSA, "", &d).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let assertion = k
        .sign_compact(None, json!({"iss": id, "sub": id, "aud": s.url("/oauth2/token"), "jti": "a-1", "iat": now, "exp": now + 60}).to_string().as_bytes())
        .unwrap();
    let form = http_helpers::serde_urlencoded(&[
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ]);
    let r = s.form("/oauth2/token", &form, &[]).await;
    assert_eq!(r.status(), 200, "private_key_jwt");
    let r = s.form("/oauth2/token", &form, &[]).await;
    assert_oauth_error(r, 401, "invalid_client").await;

    // Introspection, then revocation seen at once.
    let intro = |token: String| {
        let body = http_helpers::serde_urlencoded(&[("token", &token)]);
        let (id, secret) = (id.clone(), secret.clone());
        let s = &s;
        async move {
            let r = s
                .http
                .post(s.url("/oauth2/introspect"))
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            json_of(r).await.1
        }
    };
    assert_eq!(intro(access.clone()).await["active"], true);
    let r = s
        .http
        .post(s.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_helpers::serde_urlencoded(&[("token", &access)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(intro(access.clone()).await, json!({"active": false}));

    // Rotation keeps the old secret for the grace period; revocation ends all.
    let (st, rot) = s
        .post(
            &format!("/v1/agents/{id}/credentials/rotate"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(st, 200, "{rot}");
    let new_secret = rot["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(basic_token(&s, &id, &secret).await.status(), 200);
    assert_eq!(basic_token(&s, &id, &new_secret).await.status(), 200);

    // Lifecycle: paused agents get no token.
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "paused"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_oauth_error(
        basic_token(&s, &id, &new_secret).await,
        400,
        "unauthorized_client",
    )
    .await;
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "listed"}),
        )
        .await;
    assert_eq!(st, 200);

    // The marketplace shows it, with its DID document.
    let (st, found) = s
        .get(
            "/v1/marketplace/agents?q=invoices&capability=summarize",
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let (st, doc) = s.get(&format!("/v1/agents/{id}/did.json"), None).await;
    assert_eq!(st, 200);
    assert_eq!(doc["id"], a["did"]);

    let r = s
        .req(
            Method::POST,
            &format!("/v1/agents/{id}/credentials/revoke"),
            Some(&key),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_oauth_error(
        basic_token(&s, &id, &new_secret).await,
        401,
        "invalid_client",
    )
    .await;

    // The audit trail holds it all, and verifies.
    let (st, audit) = s.get("/v1/audit?limit=100", Some(&key)).await;
    assert_eq!(st, 200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "tenant.created",
        "agent.registered",
        "credential.rotated",
        "agent.state_changed",
        "credential.revoked",
        "token.revoked",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }

    // Free tier: the fourth agent is refused with 402; 61 tokens a minute get 429.
    let (_, free) = s.tenant("Small", "free").await;
    let mut first = None;
    for i in 0..3 {
        first.get_or_insert(s.agent(&free, json!({"name": format!("f{i}")})).await);
    }
    let (st, body) = s
        .post("/v1/agents", Some(&free), &json!({"name": "f3"}))
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{body}");
    let f = first.unwrap();
    let (fid, fsecret) = (
        f["client_id"].as_str().unwrap(),
        f["client_secret"].as_str().unwrap(),
    );
    let mut limited = None;
    for _ in 0..70 {
        let r = basic_token(&s, fid, fsecret).await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("the free tier's 60 requests a minute hold");
    assert!(r.headers().contains_key("retry-after"));
    // Introspection and revocation count against the same limits: refused
    // the same way (RFC 6749 error JSON, `Retry-After`).
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let r = s
            .http
            .post(s.url(path))
            .basic_auth(fid, Some(fsecret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=not-a-token")
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("retry-after"), "{path}");
        assert_eq!(r.headers()["ratelimit-remaining"], "0", "{path}");
        assert_oauth_error(r, 429, "slow_down").await;
    }

    let (st, health) = s.get("/health/detailed", None).await;
    assert_eq!(st, 200, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_http_flows() {
    flows(Backend::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_http_flows() {
    if !http_helpers::services_available("postgres_redis_http_flows").await {
        return;
    }
    flows(Backend::PostgresRedis).await;
}

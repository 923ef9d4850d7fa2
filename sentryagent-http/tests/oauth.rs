//! The OAuth endpoints over real HTTP, driven by the `oauth2` client crate
//! and checked with the `jsonwebtoken` library against the served JWKS.

mod http_helpers;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_helpers::{Setup, assert_oauth_error, start, start_with};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, IntrospectionUrl, Scope, TokenIntrospectionResponse,
    TokenResponse, TokenUrl,
};
use serde_json::{Value, json};

/// The `oauth2` crate's HTTP hook, served by reqwest.
async fn send(
    client: reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, std::io::Error> {
    let req = reqwest::Request::try_from(req).map_err(std::io::Error::other)?;
    let res = client.execute(req).await.map_err(std::io::Error::other)?;
    let mut out = oauth2::http::Response::builder().status(res.status().as_u16());
    for (k, v) in res.headers() {
        out = out.header(k.as_str(), v.as_bytes());
    }
    let body = res.bytes().await.map_err(std::io::Error::other)?;
    out.body(body.to_vec()).map_err(std::io::Error::other)
}

/// Verifies an access token with `jsonwebtoken` against the served JWKS.
async fn verify(s: &http_helpers::Server, token: &str, audience: &str) -> Value {
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
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[&s.base]);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

async fn registered(s: &http_helpers::Server) -> (String, Value) {
    let (_, key) = s.tenant("Acme", "pro").await;
    let a = s
        .agent(
            &key,
            json!({"name": "bot", "capabilities": ["search"], "allowed_scopes": ["read", "write"]}),
        )
        .await;
    (key, a)
}

#[tokio::test]
async fn discovery_documents_derive_every_url_from_the_issuer() {
    for prefix in ["", "/idp"] {
        let s = start_with(Setup {
            prefix,
            ..Default::default()
        })
        .await;
        for doc in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let (st, m) = s.get(doc, None).await;
            assert_eq!(st, 200);
            assert_eq!(m["issuer"], s.base);
            assert_eq!(m["token_endpoint"], s.url("/oauth2/token"));
            assert_eq!(m["jwks_uri"], s.url("/.well-known/jwks.json"));
            assert_eq!(m["introspection_endpoint"], s.url("/oauth2/introspect"));
            assert_eq!(m["revocation_endpoint"], s.url("/oauth2/revoke"));
            assert_eq!(
                m["grant_types_supported"],
                json!([
                    "client_credentials",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ])
            );
            assert_eq!(
                m["token_endpoint_auth_methods_supported"],
                json!([
                    "client_secret_basic",
                    "client_secret_post",
                    "private_key_jwt"
                ])
            );
            assert_eq!(
                m["token_endpoint_auth_signing_alg_values_supported"],
                json!(["EdDSA"])
            );
            assert_eq!(m["response_types_supported"], json!([]));
        }
        let jwks = s
            .http
            .get(s.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(jwks.status(), 200);
        assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
        let set: Value = jwks.json().await.unwrap();
        assert_eq!(set["keys"][0]["kty"], "OKP");
        assert!(set["keys"][0].get("d").is_none());
        if !prefix.is_empty() {
            // The host's own routes still answer, and RFC 8414's inserted
            // location works at the host root.
            let host = s.http.get(&s.root).send().await.unwrap();
            assert_eq!(host.text().await.unwrap(), "host");
            let inserted: Value = s
                .http
                .get(format!(
                    "{}/.well-known/oauth-authorization-server/idp",
                    s.root
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(inserted["issuer"], s.base);
        }
    }
}

#[tokio::test]
async fn client_secret_basic_and_post_tokens_verify_against_the_jwks() {
    let s = start_with(Setup {
        prefix: "/idp",
        ..Default::default()
    })
    .await;
    let (_, a) = registered(&s).await;
    let id = a["client_id"].as_str().unwrap();
    let secret = a["client_secret"].as_str().unwrap();
    let http = s.http.clone();
    let client_fn = move |r| send(http.clone(), r);

    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new(id.into()))
            .set_client_secret(ClientSecret::new(secret.into()))
            .set_token_uri(TokenUrl::new(s.url("/oauth2/token")).unwrap())
            .set_auth_type(auth.clone());
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("read".into()))
            .request_async(&client_fn)
            .await
            .unwrap();
        assert_eq!(token.scopes().unwrap(), &vec![Scope::new("read".into())]);
        assert!(token.expires_in().unwrap().as_secs() > 0);
        let claims = verify(&s, token.access_token().secret(), &s.base).await;
        assert_eq!(claims["sub"], id);
        assert_eq!(claims["client_id"], id);
        assert_eq!(claims["scope"], "read");
        assert_eq!(claims["did"], a["did"]);
    }

    // The token response is not cacheable.
    let r = s
        .form(
            "/oauth2/token",
            &http_helpers::serde_urlencoded(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ]),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
}

/// An Ed25519 seed as a PKCS#8 v1 document (RFC 8410), for `jsonwebtoken`.
fn pkcs8(seed: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

fn assertion(id: &str, aud: &str, private_jwk: &Value, jti: &str) -> String {
    let seed = URL_SAFE_NO_PAD
        .decode(private_jwk["d"].as_str().unwrap())
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": id, "sub": id, "aud": aud, "iat": now, "exp": now + 60, "jti": jti});
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_der(&pkcs8(&seed)),
    )
    .unwrap()
}

#[tokio::test]
async fn private_key_jwt_gets_a_token_once_per_assertion() {
    let s = start().await;
    let (_, a) = registered(&s).await;
    let id = a["client_id"].as_str().unwrap();
    let jwt = assertion(id, &s.url("/oauth2/token"), &a["private_jwk"], "a-1");
    let http = s.http.clone();
    let client_fn = move |r| send(http.clone(), r);
    let client = BasicClient::new(ClientId::new(id.into()))
        .set_token_uri(TokenUrl::new(s.url("/oauth2/token")).unwrap())
        .set_auth_type(AuthType::RequestBody);
    let token = client
        .exchange_client_credentials()
        .add_extra_param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .add_extra_param("client_assertion", jwt.clone())
        .request_async(&client_fn)
        .await
        .unwrap();
    let claims = verify(&s, token.access_token().secret(), &s.base).await;
    assert_eq!(claims["sub"], id);

    // The same assertion again is refused (jti replay).
    let r = s
        .form(
            "/oauth2/token",
            &http_helpers::serde_urlencoded(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &jwt),
            ]),
            &[],
        )
        .await;
    assert_oauth_error(r, 401, "invalid_client").await;
}

#[tokio::test]
async fn introspection_and_revocation_with_the_oauth2_client() {
    let s = start().await;
    let (key, a) = registered(&s).await;
    let id = a["client_id"].as_str().unwrap();
    let secret = a["client_secret"].as_str().unwrap();
    let http = s.http.clone();
    let client_fn = move |r| send(http.clone(), r);
    let client = BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(s.url("/oauth2/token")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(s.url("/oauth2/introspect")).unwrap());
    let token = client
        .exchange_client_credentials()
        .request_async(&client_fn)
        .await
        .unwrap();
    let access = token.access_token().clone();

    let info = client
        .introspect(&access)
        .request_async(&client_fn)
        .await
        .unwrap();
    assert!(info.active());
    assert_eq!(info.client_id().unwrap().as_str(), id);
    assert_eq!(info.iss().unwrap(), s.base);

    // A client of another tenant sees nothing.
    let (_, other_key) = s.tenant("Other", "free").await;
    let other = s.agent(&other_key, json!({"name": "o"})).await;
    let r = s
        .form(
            "/oauth2/introspect",
            &format!("token={}", access.secret()),
            &[(
                "authorization",
                &format!(
                    "Basic {}",
                    STANDARD.encode(format!(
                        "{}:{}",
                        other["client_id"].as_str().unwrap(),
                        other["client_secret"].as_str().unwrap()
                    ))
                ),
            )],
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));

    // The oauth2 crate revokes only over https; revoke by hand (Basic).
    let auth = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let r = s
        .form(
            "/oauth2/revoke",
            &format!("token={}&token_type_hint=access_token", access.secret()),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let info = client
        .introspect(&access)
        .request_async(&client_fn)
        .await
        .unwrap();
    assert!(!info.active());

    // Revoking garbage is fine (RFC 7009 §2.2); a bad client is not.
    let r = s
        .form(
            "/oauth2/revoke",
            "token=garbage",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status(), 200);
    // Revocation and introspection are rate limited like token requests,
    // and say so.
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(r.headers().contains_key(name), "revocation: {name}");
    }
    let r = s
        .form(
            "/oauth2/introspect",
            "token=garbage",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status(), 200);
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(r.headers().contains_key(name), "introspection: {name}");
    }
    let r = s
        .form(
            "/oauth2/revoke",
            &format!("token=x&client_id={id}&client_secret=wrong"),
            &[],
        )
        .await;
    assert_oauth_error(r, 401, "invalid_client").await;
    let r = s
        .form(
            "/oauth2/introspect",
            &format!("client_id={id}&client_secret={secret}"),
            &[],
        )
        .await;
    assert_oauth_error(r, 400, "invalid_request").await;
    let _ = key;
}

/// A request body, its extra headers, and the expected status and code.
type Case = (String, Vec<(&'static str, String)>, u16, &'static str);

#[tokio::test]
async fn every_token_endpoint_error_has_its_code_status_and_headers() {
    let s = start_with(Setup {
        configure: Box::new(|c| c.tiers.pro.requests_per_minute = 20),
        ..Default::default()
    })
    .await;
    let (key, a) = registered(&s).await;
    let id = a["client_id"].as_str().unwrap().to_owned();
    let secret = a["client_secret"].as_str().unwrap().to_owned();
    let basic = |i: &str, sec: &str| format!("Basic {}", STANDARD.encode(format!("{i}:{sec}")));
    let good = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let cases: Vec<Case> = vec![
        // No client authentication at all.
        (
            "grant_type=client_credentials".into(),
            vec![],
            401,
            "invalid_client",
        ),
        // Wrong secret by Basic, by post; unknown client.
        (
            "grant_type=client_credentials".into(),
            vec![("authorization", basic(&id, "wrong"))],
            401,
            "invalid_client",
        ),
        (
            format!("grant_type=client_credentials&client_id={id}&client_secret=wrong"),
            vec![],
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials&client_id=agt_nobody&client_secret=x".into(),
            vec![],
            401,
            "invalid_client",
        ),
        // Malformed Basic credentials; a scheme that is not Basic.
        (
            "grant_type=client_credentials".into(),
            vec![("authorization", "Basic !!!".into())],
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials".into(),
            vec![("authorization", "Bearer abc".into())],
            401,
            "invalid_client",
        ),
        // Two authentication methods.
        (
            good.clone(),
            vec![("authorization", basic(&id, &secret))],
            400,
            "invalid_request",
        ),
        // Missing and unsupported grant types.
        (
            format!("client_id={id}&client_secret={secret}"),
            vec![],
            400,
            "invalid_request",
        ),
        (
            format!("grant_type=authorization_code&client_id={id}&client_secret={secret}"),
            vec![],
            400,
            "unsupported_grant_type",
        ),
        // Repeated parameters.
        (
            format!("{good}&scope=read&scope=write"),
            vec![],
            400,
            "invalid_request",
        ),
        (
            format!("{good}&grant_type=client_credentials"),
            vec![],
            400,
            "invalid_request",
        ),
        // Scope and audience not allowed.
        (format!("{good}&scope=admin"), vec![], 400, "invalid_scope"),
        (
            format!("{good}&resource=https%3A%2F%2Fevil.example"),
            vec![],
            400,
            "invalid_target",
        ),
        // Half an assertion.
        (
            format!("grant_type=client_credentials&client_id={id}&client_assertion=x"),
            vec![],
            400,
            "invalid_request",
        ),
        // Malformed encoding.
        (format!("{good}&scope=%zz"), vec![], 400, "invalid_request"),
    ];
    for (body, headers, status, code) in cases {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s.form("/oauth2/token", &body, &hs).await;
        assert_oauth_error(r, status, code).await;
    }

    // Wrong content type.
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;

    // Repeated resources are fine (RFC 8707), the issuer is always allowed.
    let r = s
        .form(
            "/oauth2/token",
            &format!(
                "{good}&resource={0}&audience={0}",
                http_helpers::serde_urlencoded(&[("x", &s.base)]).trim_start_matches("x=")
            ),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);

    // A paused agent is an unauthorized client.
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "paused"}),
        )
        .await;
    assert_eq!(st, 200);
    let r = s.form("/oauth2/token", &good, &[]).await;
    assert_oauth_error(r, 400, "unauthorized_client").await;
    s.post(
        &format!("/v1/agents/{id}/lifecycle"),
        Some(&key),
        &json!({"state": "active"}),
    )
    .await;

    // The tenant's rate limit (20 a minute): every answer carries its
    // `RateLimit-*` headers; the refusal is 429 slow_down with Retry-After.
    let header = |r: &reqwest::Response, name: &str| -> u64 {
        r.headers()[name].to_str().unwrap().parse().unwrap()
    };
    let mut limited = None;
    let mut last_remaining = u64::MAX;
    for _ in 0..40 {
        let r = s.form("/oauth2/token", &good, &[]).await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit"), 20);
        let remaining = header(&r, "ratelimit-remaining");
        assert!(
            remaining < last_remaining,
            "{remaining} after {last_remaining}"
        );
        last_remaining = remaining;
        assert!(header(&r, "ratelimit-reset") >= 1);
    }
    assert_eq!(
        last_remaining, 0,
        "the last admitted request used the last one"
    );
    let r = limited.expect("the rate limit refuses within 40 requests");
    let retry = header(&r, "retry-after");
    assert!(retry >= 1);
    assert_eq!(header(&r, "ratelimit-limit"), 20);
    assert_eq!(header(&r, "ratelimit-remaining"), 0);
    assert_eq!(header(&r, "ratelimit-reset"), retry);
    assert_oauth_error(r, 429, "slow_down").await;
}

//! `/openapi.json` is a contract: every request body and response has a
//! schema, every documented example matches its schema, and what the server
//! actually answers matches the schema documented for its status.

mod fake_issuer;
mod http_helpers;

use http_helpers::*;
use reqwest::Method;
use serde_json::{Map, Value, json};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The OpenAPI document and a JSON Schema validator over its components.
struct Contract {
    doc: Value,
}

impl Contract {
    async fn of(s: &Server) -> Contract {
        let (st, doc) = s.get("/openapi.json", None).await;
        assert_eq!(st, 200);
        Contract { doc }
    }

    /// A validator of `schema`, its `$ref`s resolved against
    /// `components.schemas` (the document root is the validator's root).
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("invalid schema {schema}: {e}"))
    }

    /// The errors of `instance` against `schema` (empty: it matches).
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema)
            .iter_errors(instance)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect()
    }

    fn assert_valid(&self, what: &str, schema: &Value, instance: &Value) {
        let errors = self.errors(schema, instance);
        assert!(
            errors.is_empty(),
            "{what}: {instance}\ndoes not match {schema}:\n{errors:#?}"
        );
    }

    /// A component schema by its `$ref`, or the schema itself.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unexpected $ref {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "dangling $ref {r}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// Checks an answer against the schema documented for its status and
    /// content type; returns the status and the JSON body.
    async fn answer(&self, method: &str, template: &str, r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let text = r.text().await.unwrap();
        let what = format!("{} {template} -> {status}", method.to_uppercase());
        let response = &self.operation(method, template)["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{what}: status not documented; body {text}"
        );
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            assert!(text.is_empty(), "{what}: documented without a body: {text}");
            return (status, Value::Null);
        };
        let ct = ct.unwrap_or_else(|| panic!("{what}: no content type"));
        let media = content
            .get(&ct)
            .unwrap_or_else(|| panic!("{what}: content type {ct} not documented"));
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
        self.assert_valid(&what, &media["schema"], &body);
        (status, body)
    }

    /// Checks a JSON request body against the documented request schema.
    fn request(&self, method: &str, template: &str, body: &Value) {
        let schema = &self.operation(method, template)["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(schema.is_object(), "{method} {template}: no JSON body");
        self.assert_valid(&format!("request {method} {template}"), schema, body);
    }
}

/// Every operation, with its method and path.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_owned(), path.clone(), op));
            }
        }
    }
    out
}

/// Whether a body schema says what the body is: a `$ref`, or a schema with
/// a type and, for objects, properties (or a composition of such).
fn typed(c: &Contract, schema: &Value) -> bool {
    let s = c.resolve(schema);
    if ["allOf", "oneOf", "anyOf"]
        .iter()
        .any(|k| s.get(*k).and_then(Value::as_array).is_some())
    {
        return true;
    }
    let is_object = match &s["type"] {
        Value::String(t) => t == "object",
        Value::Array(ts) => ts.iter().any(|t| t == "object"),
        Value::Null => return s.get("properties").is_some(),
        _ => false,
    };
    !is_object
        || s.get("properties").is_some()
        || s.get("additionalProperties").is_some_and(Value::is_object)
}

#[tokio::test]
async fn every_body_has_a_schema_and_errors_are_problems_or_oauth_errors() {
    let s = start().await;
    let c = Contract::of(&s).await;
    let ops = operations(&c.doc);
    assert!(ops.len() >= 43, "{} operations", ops.len());
    let mut untyped = Vec::new();
    for (m, path, op) in &ops {
        let oauth = path.starts_with("/oauth2/");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{m} {path}: no success response"
        );
        assert!(
            responses.keys().any(|k| k.starts_with('4') || k == "503"),
            "{m} {path}: no error response"
        );
        for (status, r) in responses {
            let content = r.get("content").and_then(Value::as_object);
            for (ct, media) in content.into_iter().flatten() {
                if !typed(&c, &media["schema"]) {
                    untyped.push(format!("{m} {path} {status} {ct}: {}", media["schema"]));
                }
                if status.starts_with('4') || status.starts_with('5') {
                    let expected = if oauth && ct == "application/json" {
                        "#/components/schemas/OAuthErrorDoc"
                    } else if ct == "application/problem+json" {
                        "#/components/schemas/ProblemDoc"
                    } else {
                        // 503 of the health checks: the health document.
                        assert!(path.starts_with("/health/"), "{m} {path} {status} {ct}");
                        continue;
                    };
                    assert_eq!(
                        media["schema"]["$ref"], expected,
                        "{m} {path} {status} {ct}"
                    );
                }
            }
            // A 304 has no body by definition (RFC 9110 §15.4.5).
            if status == "304" {
                assert!(
                    content.is_none_or(|c| c.is_empty()),
                    "{m} {path} 304 with a body"
                );
            } else if !status.starts_with('2') {
                assert!(
                    content.is_some_and(|c| !c.is_empty()),
                    "{m} {path} {status}: an error without a body schema"
                );
            }
        }
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object().unwrap();
            assert!(!content.is_empty(), "{m} {path}: empty request body");
            for (ct, media) in content {
                if !typed(&c, &media["schema"]) {
                    untyped.push(format!("{m} {path} request {ct}: {}", media["schema"]));
                }
            }
            if oauth {
                assert!(
                    content.contains_key("application/x-www-form-urlencoded"),
                    "{m} {path}"
                );
            }
        }
    }
    assert!(untyped.is_empty(), "untyped bodies:\n{untyped:#?}");
}

/// Every `example`/`examples` in the document, with the schema it
/// illustrates.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    fn walk_schema(at: String, schema: &Value, out: &mut Vec<(String, Value, Value)>) {
        match schema {
            Value::Object(m) => {
                if let Some(e) = m.get("example") {
                    out.push((at.clone(), schema.clone(), e.clone()));
                }
                if let Some(Value::Array(es)) = m.get("examples") {
                    for e in es {
                        out.push((at.clone(), schema.clone(), e.clone()));
                    }
                }
                for (k, v) in m {
                    if k != "example" && k != "examples" {
                        walk_schema(format!("{at}/{k}"), v, out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk_schema(format!("{at}/{i}"), v, out);
                }
            }
            _ => {}
        }
    }
    fn media(
        at: &str,
        content: Option<&Map<String, Value>>,
        out: &mut Vec<(String, Value, Value)>,
    ) {
        for (ct, m) in content.into_iter().flatten() {
            let at = format!("{at} {ct}");
            if let Some(e) = m.get("example") {
                out.push((at.clone(), m["schema"].clone(), e.clone()));
            }
            for (name, e) in m
                .get("examples")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.push((
                    format!("{at} {name}"),
                    m["schema"].clone(),
                    e["value"].clone(),
                ));
            }
            walk_schema(at, &m["schema"], out);
        }
    }
    let mut out = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        walk_schema(format!("#/components/schemas/{name}"), schema, &mut out);
    }
    for (m, path, op) in operations(doc) {
        let at = format!("{m} {path}");
        media(
            &format!("{at} request"),
            op["requestBody"]["content"].as_object(),
            &mut out,
        );
        for (status, r) in op["responses"].as_object().unwrap() {
            media(
                &format!("{at} {status}"),
                r["content"].as_object(),
                &mut out,
            );
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            walk_schema(format!("{at} {}", p["name"]), &p["schema"], &mut out);
        }
    }
    out
}

#[tokio::test]
async fn every_documented_example_matches_its_schema() {
    let s = start().await;
    let c = Contract::of(&s).await;
    let all = examples(&c.doc);
    assert!(all.len() >= 10, "only {} examples", all.len());
    let mut bad = Vec::new();
    for (at, schema, example) in &all {
        let errors = c.errors(schema, example);
        if !errors.is_empty() {
            bad.push(format!("{at}: {example}: {errors:?}"));
        }
    }
    assert!(bad.is_empty(), "examples that do not match:\n{bad:#?}");

    // The validator does refuse what does not match.
    let problem = json!({"$ref": "#/components/schemas/ProblemDoc"});
    assert!(
        !c.errors(&problem, &json!({"title": "x", "status": 400}))
            .is_empty()
    );
    let ts = json!({"$ref": "#/components/schemas/Tenant"});
    assert!(
        !c.errors(&ts, &json!({"id": "ten_1", "tier": "gold"}))
            .is_empty()
    );
}

/// A request through the contract.
async fn call(
    s: &Server,
    c: &Contract,
    method: Method,
    template: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let m = method.as_str().to_ascii_lowercase();
    let mut r = s.req(method, path, key);
    if let Some(b) = body {
        c.request(&m, template, b);
        r = r.json(b);
    }
    c.answer(&m, template, r.send().await.unwrap()).await
}

/// Asserts an answer's status, showing its body when it differs.
fn status(expected: u16, (got, body): (u16, Value)) -> Value {
    assert_eq!(got, expected, "{body}");
    body
}

/// A form request through the contract (OAuth endpoints).
async fn form(
    s: &Server,
    c: &Contract,
    template: &str,
    pairs: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut r = s
        .http
        .post(s.url(template))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded(pairs));
    if let Some((u, p)) = basic {
        r = r.basic_auth(u, Some(p));
    }
    c.answer("post", template, r.send().await.unwrap()).await
}

#[tokio::test]
async fn live_answers_match_the_documented_schemas() {
    use Method as M;
    let s = start().await;
    let c = Contract::of(&s).await;
    let op = s.op.clone();
    let op = Some(op.as_str());

    // Discovery.
    for p in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        status(200, call(&s, &c, M::GET, p, p, None, None).await);
    }

    // Tenants and keys.
    let new = json!({"name": "Schema Co", "tier": "pro", "website": "https://schema.example"});
    let (st, tenant) = call(
        &s,
        &c,
        M::POST,
        "/v1/tenants",
        "/v1/tenants",
        op,
        Some(&new),
    )
    .await;
    assert_eq!(st, 201);
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let slug = tenant["slug"].as_str().unwrap().to_owned();
    let same = json!({"name": "Other", "slug": slug});
    let (st, _) = call(
        &s,
        &c,
        M::POST,
        "/v1/tenants",
        "/v1/tenants",
        op,
        Some(&same),
    )
    .await;
    assert_eq!(st, 409);
    status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/v1/tenants",
            "/v1/tenants?limit=2",
            op,
            None,
        )
        .await,
    );
    let t = format!("/v1/tenants/{tid}");
    status(
        200,
        call(&s, &c, M::GET, "/v1/tenants/{id}", &t, op, None).await,
    );
    let patch = json!({"status": "active", "tier": "pro"});
    status(
        200,
        call(&s, &c, M::PATCH, "/v1/tenants/{id}", &t, op, Some(&patch)).await,
    );
    let publisher =
        json!({"display_name": "Schema Co", "website": "https://schema.example", "verified": true});
    let p = format!("{t}/publisher");
    status(
        200,
        call(
            &s,
            &c,
            M::PUT,
            "/v1/tenants/{id}/publisher",
            &p,
            op,
            Some(&publisher),
        )
        .await,
    );
    let proofs = format!("{t}/publisher/domain-proofs");
    let proof = json!({"domain": "schema.example"});
    status(
        201,
        call(
            &s,
            &c,
            M::POST,
            "/v1/tenants/{id}/publisher/domain-proofs",
            &proofs,
            op,
            Some(&proof),
        )
        .await,
    );
    status(
        422,
        call(
            &s,
            &c,
            M::POST,
            "/v1/tenants/{id}/publisher/domain-proofs",
            &proofs,
            op,
            Some(&json!({"domain": "10.0.0.1"})),
        )
        .await,
    );
    // No fetcher in this server: not configured.
    status(
        501,
        call(
            &s,
            &c,
            M::POST,
            "/v1/tenants/{id}/publisher/domain-proofs/verify",
            &format!("{proofs}/verify"),
            op,
            Some(&proof),
        )
        .await,
    );
    let keys = format!("{t}/api-keys");
    let (st, k) = call(
        &s,
        &c,
        M::POST,
        "/v1/tenants/{id}/api-keys",
        &keys,
        op,
        Some(&json!({"name": "ci", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(st, 201);
    let key = k["key"].as_str().unwrap().to_owned();
    let key = Some(key.as_str());
    let (st, k2) = call(
        &s,
        &c,
        M::POST,
        "/v1/tenants/{id}/api-keys",
        &keys,
        op,
        Some(&json!({"name": "tmp"})),
    )
    .await;
    assert_eq!(st, 201);
    status(
        200,
        call(&s, &c, M::GET, "/v1/tenants/{id}/api-keys", &keys, op, None).await,
    );
    let del = format!("{keys}/{}", k2["id"].as_str().unwrap());
    status(
        204,
        call(
            &s,
            &c,
            M::DELETE,
            "/v1/tenants/{id}/api-keys/{key_id}",
            &del,
            op,
            None,
        )
        .await,
    );
    let (st, ops_key) = call(
        &s,
        &c,
        M::POST,
        "/v1/api-keys",
        "/v1/api-keys",
        op,
        Some(&json!({"name": "ops"})),
    )
    .await;
    assert_eq!(st, 201);
    let del = format!("/v1/api-keys/{}", ops_key["id"].as_str().unwrap());
    status(
        204,
        call(&s, &c, M::DELETE, "/v1/api-keys/{key_id}", &del, op, None).await,
    );
    status(
        200,
        call(&s, &c, M::GET, "/v1/api-keys", "/v1/api-keys", op, None).await,
    );

    // Agents: a generated key, and one that brings its own DID.
    let new_agent = json!({"name": "Schema Bot", "description": "checks schemas",
        "capabilities": ["schemas.check"], "tags": ["qa"], "category": "testing",
        "visibility": "public", "allowed_scopes": ["read"], "custom_claims": {"team": "qa"}});
    let (st, agent) = call(
        &s,
        &c,
        M::POST,
        "/v1/agents",
        "/v1/agents",
        key,
        Some(&new_agent),
    )
    .await;
    assert_eq!(st, 201);
    assert!(agent["private_jwk"].is_object());
    let aid = agent["id"].as_str().unwrap().to_owned();
    let secret = agent["client_secret"].as_str().unwrap().to_owned();
    let (st, _) = call(
        &s,
        &c,
        M::POST,
        "/v1/agents",
        "/v1/agents",
        key,
        Some(&json!({"name": "Own Key", "did": agent["did"]})),
    )
    .await;
    assert_eq!(st, 201);
    status(
        200,
        call(&s, &c, M::GET, "/v1/agents", "/v1/agents", key, None).await,
    );
    let a = format!("/v1/agents/{aid}");
    status(
        200,
        call(&s, &c, M::GET, "/v1/agents/{id}", &a, key, None).await,
    );
    let ap = json!({"version": "1.2.0", "token_algorithm": "EdDSA"});
    status(
        200,
        call(&s, &c, M::PATCH, "/v1/agents/{id}", &a, key, Some(&ap)).await,
    );
    let lc = format!("{a}/lifecycle");
    status(
        200,
        call(
            &s,
            &c,
            M::POST,
            "/v1/agents/{id}/lifecycle",
            &lc,
            key,
            Some(&json!({"state": "listed"})),
        )
        .await,
    );
    status(
        409,
        call(
            &s,
            &c,
            M::POST,
            "/v1/agents/{id}/lifecycle",
            &lc,
            key,
            Some(&json!({"state": "draft"})),
        )
        .await,
    );

    // OAuth.
    let (st, tok) = form(
        &s,
        &c,
        "/oauth2/token",
        &[("grant_type", "client_credentials"), ("scope", "read")],
        Some((&aid, &secret)),
    )
    .await;
    assert_eq!(st, 200);
    let token = tok["access_token"].as_str().unwrap().to_owned();
    let (st, intro) = form(
        &s,
        &c,
        "/oauth2/introspect",
        &[("token", &token)],
        Some((&aid, &secret)),
    )
    .await;
    assert_eq!((st, &intro["active"]), (200, &json!(true)));
    status(
        200,
        form(
            &s,
            &c,
            "/oauth2/revoke",
            &[("token", &token)],
            Some((&aid, &secret)),
        )
        .await,
    );
    let (st, intro) = form(
        &s,
        &c,
        "/oauth2/introspect",
        &[("token", &token)],
        Some((&aid, &secret)),
    )
    .await;
    assert_eq!((st, &intro), (200, &json!({"active": false})));
    let (st, e) = form(
        &s,
        &c,
        "/oauth2/token",
        &[("grant_type", "client_credentials")],
        Some((&aid, "wrong")),
    )
    .await;
    assert_eq!((st, &e["error"]), (401, &json!("invalid_client")));
    let (st, _) = form(
        &s,
        &c,
        "/oauth2/token",
        &[("grant_type", "password")],
        Some((&aid, &secret)),
    )
    .await;
    assert_eq!(st, 400);
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/oauth2/token", r).await.0, 400);

    // Credentials.
    let rot = format!("{a}/credentials/rotate");
    status(
        200,
        call(
            &s,
            &c,
            M::POST,
            "/v1/agents/{id}/credentials/rotate",
            &rot,
            key,
            None,
        )
        .await,
    );
    status(
        200,
        call(
            &s,
            &c,
            M::POST,
            "/v1/agents/{id}/credentials/rotate",
            &rot,
            key,
            Some(&json!({"grace_seconds": 60})),
        )
        .await,
    );
    let rev = format!("{a}/credentials/revoke");
    let (st, n) = call(
        &s,
        &c,
        M::POST,
        "/v1/agents/{id}/credentials/revoke",
        &rev,
        key,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(n["revoked"].as_u64().unwrap() >= 1);

    // Audit and analytics.
    let (st, page) = call(&s, &c, M::GET, "/v1/audit", "/v1/audit?limit=50", key, None).await;
    assert_eq!(st, 200);
    assert!(!page["items"].as_array().unwrap().is_empty());
    let (st, v) = call(
        &s,
        &c,
        M::GET,
        "/v1/audit/verify",
        "/v1/audit/verify",
        key,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["head"].is_object());
    let ops_chain = call(
        &s,
        &c,
        M::GET,
        "/v1/audit/verify",
        "/v1/audit/verify",
        op,
        None,
    )
    .await;
    assert_eq!(ops_chain.0, 200);
    for (t, p) in [
        (
            "/v1/analytics/tokens/daily",
            "/v1/analytics/tokens/daily?days=7",
        ),
        ("/v1/analytics/heatmap", "/v1/analytics/heatmap"),
        ("/v1/analytics/agents", "/v1/analytics/agents"),
    ] {
        let (st, body) = call(&s, &c, M::GET, t, p, key, None).await;
        assert_eq!(st, 200, "{p}: {body}");
    }

    // Billing (no provider on this server).
    status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/billing/usage",
            "/billing/usage",
            key,
            None,
        )
        .await,
    );
    let (st, sub) = call(
        &s,
        &c,
        M::GET,
        "/billing/subscription",
        "/billing/subscription",
        key,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(sub["upgrade_url"].is_string());
    for t in ["/billing/checkout", "/api/tiers/upgrade"] {
        status(
            501,
            call(
                &s,
                &c,
                M::POST,
                t,
                t,
                key,
                Some(&json!({"tier": "enterprise"})),
            )
            .await,
        );
    }
    // No billing account yet: refused before the provider is asked.
    status(
        409,
        call(
            &s,
            &c,
            M::POST,
            "/billing/portal",
            "/billing/portal",
            key,
            None,
        )
        .await,
    );
    let r = s
        .http
        .post(s.url("/billing/webhook"))
        .json(&json!({"id": "evt_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/billing/webhook", r).await.0, 400);

    // Public.
    let (st, found) = call(
        &s,
        &c,
        M::GET,
        "/v1/marketplace/agents",
        "/v1/marketplace/agents?q=schema",
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let m = format!("/v1/marketplace/agents/{aid}");
    status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/v1/marketplace/agents/{id}",
            &m,
            None,
            None,
        )
        .await,
    );
    let card = format!("/v1/marketplace/agents/{aid}/agent-card.json");
    let signed = status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/v1/marketplace/agents/{id}/agent-card.json",
            &card,
            None,
            None,
        )
        .await,
    );
    assert_eq!(signed["signatures"].as_array().unwrap().len(), 1);
    status(
        404,
        call(
            &s,
            &c,
            M::GET,
            "/v1/marketplace/agents/{id}/agent-card.json",
            "/v1/marketplace/agents/agt_00000000000000000000000000/agent-card.json",
            None,
            None,
        )
        .await,
    );
    let rec = format!("/v1/marketplace/agents/{aid}/oasf.json");
    let record = status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/v1/marketplace/agents/{id}/oasf.json",
            &rec,
            None,
            None,
        )
        .await,
    );
    assert_eq!(record["modules"][0]["name"], "integration/a2a");
    let p = "/v1/marketplace/categories";
    let cats = status(200, call(&s, &c, M::GET, p, p, None, None).await);
    assert!(!cats["skills"].as_array().unwrap().is_empty() || cats["categories"].is_array());
    let b = format!("/v1/marketplace/agents/{aid}/badge");
    let badge = status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/v1/marketplace/agents/{id}/badge",
            &b,
            None,
            None,
        )
        .await,
    );
    let p = "/v1/credentials/status/revocation";
    status(200, call(&s, &c, M::GET, p, p, None, None).await);
    let p = "/v1/credentials/verify";
    let v = status(200, call(&s, &c, M::POST, p, p, None, Some(&badge)).await);
    assert_eq!(v["verified"], true);
    let r = s
        .req(M::POST, p, None)
        .json(&json!("not a credential"))
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", p, r).await.0, 422);
    for p in ["/.well-known/did.json", "/did.json"] {
        let doc = status(200, call(&s, &c, M::GET, p, p, None, None).await);
        assert!(doc["id"].as_str().unwrap().starts_with("did:web:"));
    }
    let d = format!("{a}/did.json");
    status(
        200,
        call(&s, &c, M::GET, "/v1/agents/{id}/did.json", &d, None, None).await,
    );
    let p = format!("/v1/publishers/{slug}");
    status(
        200,
        call(&s, &c, M::GET, "/v1/publishers/{slug}", &p, None, None).await,
    );

    // Operations.
    for p in ["/health", "/health/ready"] {
        status(200, call(&s, &c, M::GET, p, p, None, None).await);
    }
    let (st, h) = call(
        &s,
        &c,
        M::GET,
        "/health/detailed",
        "/health/detailed",
        op,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(!h["backends"].as_array().unwrap().is_empty());
    status(
        200,
        call(
            &s,
            &c,
            M::GET,
            "/health/detailed",
            "/health/detailed",
            None,
            None,
        )
        .await,
    );
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        c.operation("get", "/metrics")["responses"]["200"]["content"]
            .get(ct.split(';').next().unwrap())
            .is_some()
    );

    // Errors.
    status(
        401,
        call(&s, &c, M::GET, "/v1/agents", "/v1/agents", None, None).await,
    );
    status(
        401,
        call(
            &s,
            &c,
            M::GET,
            "/v1/agents",
            "/v1/agents",
            Some("sa_ak_nope"),
            None,
        )
        .await,
    );
    status(
        404,
        call(
            &s,
            &c,
            M::GET,
            "/v1/agents/{id}",
            "/v1/agents/agt_nope",
            key,
            None,
        )
        .await,
    );
    status(
        400,
        call(
            &s,
            &c,
            M::GET,
            "/v1/agents",
            "/v1/agents?bogus=1",
            key,
            None,
        )
        .await,
    );
    status(
        422,
        call(
            &s,
            &c,
            M::GET,
            "/v1/analytics/agents",
            "/v1/analytics/agents?month=2026/11",
            key,
            None,
        )
        .await,
    );
    let r = s
        .req(M::POST, "/v1/agents", key)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/v1/agents", r).await.0, 415);
    let r = s
        .req(M::POST, "/v1/agents", key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/v1/agents", r).await.0, 400);
    let r = s
        .req(M::POST, "/v1/agents", key)
        .json(&json!({"name": "x", "bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/v1/agents", r).await.0, 422);
    let big = json!({"name": "x".repeat(100 * 1024)});
    let r = s
        .req(M::POST, "/v1/agents", key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/v1/agents", r).await.0, 413);
    let r = s
        .req(M::POST, "/v1/tenants", key)
        .json(&json!({"name": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.answer("post", "/v1/tenants", r).await.0, 403);
}

#[tokio::test]
async fn quota_and_rate_limit_refusals_match_the_schemas() {
    use Method as M;
    let s = start().await;
    let c = Contract::of(&s).await;
    let (_, key) = s.tenant("Tiny", "free").await;
    let key = Some(key.as_str());
    let mut refused = None;
    for i in 0..10 {
        let (st, _) = call(
            &s,
            &c,
            M::POST,
            "/v1/agents",
            "/v1/agents",
            key,
            Some(&json!({"name": format!("a{i}")})),
        )
        .await;
        if st == 402 {
            refused = Some(i);
            break;
        }
        assert_eq!(st, 201);
    }
    assert!(
        refused.is_some(),
        "the free tier's agent limit never refused"
    );
    let mut limited = false;
    for _ in 0..200 {
        let (st, _) = call(&s, &c, M::GET, "/v1/agents", "/v1/agents", key, None).await;
        if st == 429 {
            limited = true;
            break;
        }
        assert!(st == 200 || st == 402, "{st}");
    }
    assert!(limited, "the free tier's rate limit never refused");
}

/// A request with a session (cookie and CSRF token) through the contract;
/// the status, the JSON body and the session cookie it sets, if any.
async fn call_session(
    s: &Server,
    c: &Contract,
    method: Method,
    template: &str,
    path: &str,
    session: Option<(&str, &str)>,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let m = method.as_str().to_ascii_lowercase();
    let mut r = s.http.request(method, s.url(path));
    if let Some((cookie, csrf)) = session {
        r = r.header("cookie", cookie).header("x-csrf-token", csrf);
    }
    if let Some(b) = body {
        c.request(&m, template, b);
        r = r.json(b);
    }
    let res = r.send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sentryagent_session=sa_ss_"))
        .map(|v| v.split(';').next().unwrap().to_owned());
    let (st, body) = c.answer(&m, template, res).await;
    (st, body, cookie)
}

#[tokio::test]
async fn people_answers_match_the_documented_schemas() {
    use Method as M;
    use sentryagent_core::Clock as _;
    let s = start().await;
    let c = Contract::of(&s).await;
    let op = s.op.clone();
    let pw = "correct horse battery staple";
    let email = format!(
        "schema-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let up = json!({"email": email, "password": pw, "tenant_name": "Schema People"});
    let (st, me, cookie) =
        call_session(&s, &c, M::POST, "/v1/signup", "/v1/signup", None, Some(&up)).await;
    assert_eq!(st, 201);
    let mut sess = (
        cookie.unwrap(),
        me["csrf_token"].as_str().unwrap().to_owned(),
    );
    let tenant = me["session"]["tenant_id"].as_str().unwrap().to_owned();
    let (st, ..) = call_session(&s, &c, M::POST, "/v1/signup", "/v1/signup", None, Some(&up)).await;
    assert_eq!(st, 409);
    let weak = json!({"email": "weak@example.com", "password": "password1", "tenant_name": "W"});
    assert_eq!(
        call_session(
            &s,
            &c,
            M::POST,
            "/v1/signup",
            "/v1/signup",
            None,
            Some(&weak)
        )
        .await
        .0,
        422
    );
    let bad = json!({"email": email, "password": "wrong password here"});
    assert_eq!(
        call_session(
            &s,
            &c,
            M::POST,
            "/v1/sessions",
            "/v1/sessions",
            None,
            Some(&bad)
        )
        .await
        .0,
        401
    );
    let good = json!({"email": email, "password": pw});
    let (st, _, second) = call_session(
        &s,
        &c,
        M::POST,
        "/v1/sessions",
        "/v1/sessions",
        None,
        Some(&good),
    )
    .await;
    assert_eq!(st, 201);
    let second = second.unwrap();

    let me_s = Some((sess.0.as_str(), sess.1.as_str()));
    assert_eq!(
        call_session(&s, &c, M::GET, "/v1/me", "/v1/me", me_s, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call_session(&s, &c, M::GET, "/v1/me", "/v1/me", None, None)
            .await
            .0,
        401
    );
    let (st, list, _) = call_session(
        &s,
        &c,
        M::GET,
        "/v1/me/sessions",
        "/v1/me/sessions",
        me_s,
        None,
    )
    .await;
    assert_eq!((st, list.as_array().unwrap().len()), (200, 2));
    let other = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = "/v1/me/sessions/{id}";
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, "/v1/me/sessions/ses_nope", me_s, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call_session(
            &s,
            &c,
            M::DELETE,
            t,
            &format!("/v1/me/sessions/{other}"),
            me_s,
            None
        )
        .await
        .0,
        204
    );
    let _ = second;
    let (st, ended, _) = call_session(
        &s,
        &c,
        M::DELETE,
        "/v1/me/sessions",
        "/v1/me/sessions",
        me_s,
        None,
    )
    .await;
    assert_eq!((st, ended["ended"].as_u64()), (200, Some(0)));
    let switch = json!({"tenant_id": "tnt_elsewhere"});
    let t = "/v1/sessions/current/tenant";
    assert_eq!(
        call_session(&s, &c, M::PUT, t, t, me_s, Some(&switch))
            .await
            .0,
        404
    );

    // Second factor.
    let (st, enrol, _) =
        call_session(&s, &c, M::POST, "/v1/me/totp", "/v1/me/totp", me_s, None).await;
    assert_eq!(st, 201);
    let t = "/v1/me/totp/confirm";
    assert_eq!(
        call_session(
            &s,
            &c,
            M::POST,
            t,
            t,
            me_s,
            Some(&json!({"code": "000000"}))
        )
        .await
        .0,
        422
    );
    let code = sentryagent_core::conformance::kit::totp_code(
        enrol["secret"].as_str().unwrap(),
        s.clock.now(),
    );
    let (st, on, cookie) =
        call_session(&s, &c, M::POST, t, t, me_s, Some(&json!({"code": code}))).await;
    assert_eq!(st, 200);
    sess = (
        cookie.unwrap(),
        on["csrf_token"].as_str().unwrap().to_owned(),
    );
    let me_s = Some((sess.0.as_str(), sess.1.as_str()));
    assert_eq!(
        call_session(&s, &c, M::POST, "/v1/me/totp", "/v1/me/totp", me_s, None)
            .await
            .0,
        409
    );
    let t = "/v1/me/totp";
    assert_eq!(
        call_session(
            &s,
            &c,
            M::DELETE,
            t,
            t,
            me_s,
            Some(&json!({"password": pw}))
        )
        .await
        .0,
        200
    );
    let t = "/v1/me/password";
    let wrong =
        json!({"current_password": "not it at all", "new_password": "orbit plum kettle seventeen"});
    assert_eq!(
        call_session(&s, &c, M::POST, t, t, me_s, Some(&wrong))
            .await
            .0,
        403
    );
    let change = json!({"current_password": pw, "new_password": "orbit plum kettle seventeen"});
    let (st, me, cookie) = call_session(&s, &c, M::POST, t, t, me_s, Some(&change)).await;
    assert_eq!(st, 200);
    sess = (
        cookie.unwrap(),
        me["csrf_token"].as_str().unwrap().to_owned(),
    );
    let me_s = Some((sess.0.as_str(), sess.1.as_str()));

    // Members, invitations, resets, settings.
    let members = format!("/v1/tenants/{tenant}/members");
    assert_eq!(
        call_session(
            &s,
            &c,
            M::GET,
            "/v1/tenants/{id}/members",
            &members,
            me_s,
            None
        )
        .await
        .0,
        200
    );
    let invs = format!("/v1/tenants/{tenant}/invitations");
    let t = "/v1/tenants/{id}/invitations";
    let new = json!({"email": "guest@example.com", "role": "developer"});
    let (st, inv, _) = call_session(&s, &c, M::POST, t, &invs, me_s, Some(&new)).await;
    assert_eq!(st, 201);
    let revoke = json!({"email": "later@example.com", "role": "viewer"});
    let (_, inv2, _) = call_session(&s, &c, M::POST, t, &invs, me_s, Some(&revoke)).await;
    assert_eq!(
        call_session(&s, &c, M::GET, t, &invs, me_s, None).await.0,
        200
    );
    let t = "/v1/tenants/{id}/invitations/{invitation_id}";
    let one = format!("{invs}/{}", inv2["id"].as_str().unwrap());
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, &one, me_s, None).await.0,
        204
    );
    let accept = json!({"token": inv["token"], "password": pw});
    let t = "/v1/invitations/accept";
    let (st, guest, _) = call_session(&s, &c, M::POST, t, t, None, Some(&accept)).await;
    assert_eq!(st, 201);
    assert_eq!(
        call_session(&s, &c, M::POST, t, t, None, Some(&accept))
            .await
            .0,
        409
    );
    let gid = guest["user"]["id"].as_str().unwrap().to_owned();
    let t = "/v1/tenants/{id}/members/{user_id}";
    let member = format!("{members}/{gid}");
    let (st, ..) = call_session(
        &s,
        &c,
        M::PATCH,
        t,
        &member,
        me_s,
        Some(&json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(st, 200);
    let t = "/v1/tenants/{id}/members/{user_id}/password-reset";
    let (st, link, _) = call_session(
        &s,
        &c,
        M::POST,
        t,
        &format!("{member}/password-reset"),
        me_s,
        None,
    )
    .await;
    assert_eq!(st, 201);
    let t = "/v1/password-resets/accept";
    let weak = json!({"token": link["token"], "password": "password1"});
    assert_eq!(
        call_session(&s, &c, M::POST, t, t, None, Some(&weak))
            .await
            .0,
        422
    );
    let reset = json!({"token": link["token"], "password": "lantern glacier mosaic thirty"});
    assert_eq!(
        call_session(&s, &c, M::POST, t, t, None, Some(&reset))
            .await
            .0,
        204
    );
    let t = "/v1/tenants/{id}/members/{user_id}";
    let owner = format!("{members}/{}", me["user"]["id"].as_str().unwrap());
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, &owner, me_s, None)
            .await
            .0,
        409
    );
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, &member, me_s, None)
            .await
            .0,
        204
    );
    let t = "/v1/tenants/{id}/settings";
    let settings = format!("/v1/tenants/{tenant}/settings");
    let body = json!({"require_totp_for_admins": false});
    assert_eq!(
        call_session(&s, &c, M::PATCH, t, &settings, me_s, Some(&body))
            .await
            .0,
        200
    );
    let op = Some(op.as_str());
    let find = format!("/v1/users?email={email}");
    let (st, acct) = call(&s, &c, M::GET, "/v1/users", &find, op, None).await;
    assert_eq!(st, 200);
    let t = "/v1/users/{user_id}/password-reset";
    let p = format!("/v1/users/{}/password-reset", acct["id"].as_str().unwrap());
    assert_eq!(call(&s, &c, M::POST, t, &p, op, None).await.0, 201);
    assert_eq!(
        call(
            &s,
            &c,
            M::GET,
            "/v1/users",
            "/v1/users?email=nobody@example.com",
            op,
            None
        )
        .await
        .0,
        404
    );

    let t = "/v1/sessions/current";
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, t, me_s, None).await.0,
        204
    );
    assert_eq!(
        call_session(&s, &c, M::DELETE, t, t, me_s, None).await.0,
        401
    );
}

#[tokio::test]
async fn trust_policy_and_token_exchange_answers_match_the_documented_schemas() {
    use Method as M;
    use sentryagent_core::Clock as _;
    use sentryagent_core::conformance::kit::github_claims;
    let s = start_with(Setup {
        fetcher: Some(sentryagent_http::JwksFetcherConfig::default().allow_http_loopback(true)),
        ..Default::default()
    })
    .await;
    let c = Contract::of(&s).await;
    let gh = fake_issuer::FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tid, key) = s.tenant("Policies", "pro").await;
    let agent = s.agent(&key, json!({"name": "deployer"})).await;
    let key = Some(key.as_str());
    let aid = agent["id"].as_str().unwrap().to_owned();
    let new = json!({
        "name": "deploy from main",
        "issuer": gh.url,
        "audience": s.base,
        "conditions": {"repository_id": "74", "ref": "refs/heads/main"},
        "grant": {"agent_id": aid},
        "max_token_ttl_seconds": 600,
        "single_use": false
    });
    let path = "/v1/trust-policies";
    let (st, p) = call(&s, &c, M::POST, path, path, key, Some(&new)).await;
    assert_eq!(st, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_owned();
    let mgmt = json!({
        "name": "registrar",
        "issuer": gh.url,
        "audience": s.base,
        "conditions": {"repository_owner_id": "65"},
        "grant": {"admin_scopes": ["agents_write"]}
    });
    assert_eq!(
        call(&s, &c, M::POST, path, path, key, Some(&mgmt)).await.0,
        201
    );
    let unpinned = json!({
        "name": "too broad",
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": s.base,
        "conditions": {"ref": "refs/heads/main"},
        "grant": {"agent_id": aid}
    });
    let (st, e) = call(&s, &c, M::POST, path, path, key, Some(&unpinned)).await;
    assert_eq!(st, 422);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("any repository on GitHub"),
        "{e}"
    );
    let op = Some(s.op.as_str());
    let (st, page) = call(
        &s,
        &c,
        M::GET,
        path,
        &format!("{path}?tenant_id={tid}&limit=1"),
        op,
        None,
    )
    .await;
    assert_eq!((st, page["items"].as_array().unwrap().len()), (200, 1));
    let one = format!("{path}/{pid}");
    let tmpl = "/v1/trust-policies/{id}";
    assert_eq!(call(&s, &c, M::GET, tmpl, &one, key, None).await.0, 200);
    let patch = json!({"conditions": {"repository_id": "74", "ref": "refs/heads/*"}, "max_token_ttl_seconds": 300});
    let (st, changed) = call(&s, &c, M::PATCH, tmpl, &one, key, Some(&patch)).await;
    assert_eq!((st, &changed["revision"]), (200, &json!(1)));
    let bad = json!({"max_token_ttl_seconds": 3601});
    assert_eq!(
        call(&s, &c, M::PATCH, tmpl, &one, key, Some(&bad)).await.0,
        422
    );
    assert_eq!(
        call(&s, &c, M::GET, tmpl, &format!("{path}/tp_none"), key, None)
            .await
            .0,
        404
    );

    // The exchange's answers.
    let subject = gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    let (st, body) = exchange_form(&s, &c, ("client_id", &aid), &subject).await;
    assert_eq!(
        (st, &body["issued_token_type"]),
        (200, &json!("urn:ietf:params:oauth:token-type:access_token"))
    );
    let (st, body) = exchange_form(&s, &c, ("tenant", &tid), &subject).await;
    assert_eq!(st, 200, "{body}");
    let (st, e) = exchange_form(&s, &c, ("client_id", &aid), "x.y.z").await;
    assert_eq!((st, &e["error"]), (400, &json!("invalid_grant")));
    assert_eq!(call(&s, &c, M::DELETE, tmpl, &one, key, None).await.0, 204);
    assert_eq!(call(&s, &c, M::DELETE, tmpl, &one, key, None).await.0, 404);
}

/// A token exchange request through the contract.
async fn exchange_form(
    s: &Server,
    c: &Contract,
    target: (&str, &str),
    subject: &str,
) -> (u16, Value) {
    use sentryagent_core::federation::{ID_TOKEN_TYPE, TOKEN_EXCHANGE};
    let pairs = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token_type", ID_TOKEN_TYPE),
        ("subject_token", subject),
        target,
    ];
    form(s, c, "/oauth2/token", &pairs, None).await
}

/// The events of a Server-Sent Events text, as an event source hands them
/// over: `{event, id, data}` objects (comments and blank events left out;
/// the last `id` carries over, as the SSE parsing rules say).
fn sse_events(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut last_id: Option<String> = None;
    for block in text.split("\n\n") {
        let mut event = Map::new();
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => {}
                "data" => data.push(value),
                "event" => {
                    event.insert("event".into(), value.into());
                }
                "id" => last_id = Some(value.to_owned()),
                _ => {}
            }
        }
        if data.is_empty() {
            continue;
        }
        event.insert("data".into(), data.join("\n").into());
        if let Some(id) = &last_id {
            event.insert("id".into(), id.clone().into());
        }
        out.push(Value::Object(event));
    }
    out
}

/// Found by schemathesis: the stream was documented as one string, while a
/// client validates each event; each event now matches the documented
/// event schema, and its `data` is an audit event.
#[tokio::test]
async fn audit_stream_events_match_the_documented_event_schema() {
    let s = start().await;
    let c = Contract::of(&s).await;
    let (_, key) = s.tenant("Streamed", "pro").await;
    let media =
        &c.operation("get", "/v1/audit/stream")["responses"]["200"]["content"]["text/event-stream"];
    assert!(media["schema"].is_object(), "{media}");
    let mut r = s
        .req(Method::GET, "/v1/audit/stream", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Something to see: two registrations.
    s.agent(&key, json!({"name": "one"})).await;
    s.agent(&key, json!({"name": "two"})).await;
    let mut text = String::new();
    while sse_events(&text).len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), r.chunk())
            .await
            .expect("events within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    for event in sse_events(&text) {
        c.assert_valid("audit stream event", &media["schema"], &event);
        assert_eq!(event["event"], "audit");
        let audit: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
        assert_eq!(audit["action"], "agent.registered", "{audit}");
        let id = event["id"].as_str().unwrap();
        assert!(id.ends_with(&format!(":{}", audit["seq"])), "{id}");
    }
    // A value of the old documentation, one string, does not pass.
    assert!(
        !c.errors(&media["schema"], &json!("event: audit"))
            .is_empty()
    );
}

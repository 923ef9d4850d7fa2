//! The built `sentryagentd` binary, spawned on a loopback port: a full flow
//! whose logs never show a secret, and a graceful shutdown with an open
//! audit stream and requests in flight.

mod daemon;

use std::time::{Duration, Instant};

use daemon::{client, form, key, post, spawn};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A pro tenant named `name`, a key of it and an agent `bot` it registered:
/// `(tenant id, tenant key, registration answer)`.
async fn tenant_with_agent(
    http: &reqwest::Client,
    base: &str,
    op: &str,
    name: &str,
) -> (String, String, Value) {
    let tenant = post(
        http,
        format!("{base}/v1/tenants"),
        op,
        json!({"name": name, "tier": "pro"}),
    )
    .await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let k = post(
        http,
        format!("{base}/v1/tenants/{tid}/api-keys"),
        op,
        json!({"name": "ci"}),
    )
    .await;
    let tkey = k["key"].as_str().unwrap().to_owned();
    let agent = post(
        http,
        format!("{base}/v1/agents"),
        &tkey,
        json!({"name": "bot"}),
    )
    .await;
    (tid, tkey, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_flow_logs_one_json_line_per_request_and_no_secret() {
    let op = key();
    let mut d = spawn(
        &["--store", "memory://", "--log-format", "json"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op), ("RUST_LOG", "debug")],
    )
    .await;
    let http = client();
    let b = &d.base;
    let (tid, tkey, agent) = tenant_with_agent(&http, b, &op, "Acme").await;
    let id = agent["client_id"].as_str().unwrap().to_owned();
    let secret = agent["client_secret"].as_str().unwrap().to_owned();
    let private_d = agent
        .pointer("/private_jwk/d")
        .and_then(Value::as_str)
        .map(str::to_owned);

    let mut secrets = vec![op.clone(), tkey.clone(), secret.clone()];
    secrets.extend(private_d);

    // Tokens by client_secret_basic and client_secret_post.
    let mut tokens = Vec::new();
    for post_form in [false, true] {
        let req = http.post(format!("{b}/oauth2/token"));
        let req = if post_form {
            form(
                req,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ],
            )
        } else {
            form(
                req.basic_auth(&id, Some(&secret)),
                &[("grant_type", "client_credentials")],
            )
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    // A wrong secret, an introspection, a revocation, a rotation.
    let wrong = format!("{secret}x");
    let r = http
        .post(format!("{b}/oauth2/token"))
        .basic_auth(&id, Some(&wrong));
    let r = form(r, &[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{b}/oauth2/introspect"))
        .basic_auth(&id, Some(&secret));
    let r = form(r, &[("token", &tokens[0])]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{b}/oauth2/revoke"))
        .basic_auth(&id, Some(&secret));
    let r = form(r, &[("token", &tokens[1])]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rotated = post(
        &http,
        format!("{b}/v1/agents/{id}/credentials/rotate"),
        &tkey,
        json!({}),
    )
    .await;
    if let Some(s) = rotated["client_secret"].as_str() {
        secrets.push(s.to_owned());
    }
    let r = http
        .get(format!("{b}/v1/agents/{id}"))
        .bearer_auth(&tkey)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    secrets.push(wrong);
    secrets.extend(tokens.iter().cloned());

    d.sigterm();
    let (_, ok) = d.wait_exit(Duration::from_secs(20));
    assert!(ok);
    std::thread::sleep(Duration::from_millis(100));
    let logs = d.log_text();
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret, key or token is in the logs"
        );
        // Nor its distinctive middle part (e.g. inside an encoded header).
        let mid = &s[s.len() / 3..s.len() / 3 + 16];
        assert!(!logs.contains(mid), "part of a secret is in the logs");
    }
    let lines: Vec<Value> = d
        .logs
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let responses: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "response")
        .collect();
    // One line per request: 3 management creations, 3 token requests,
    // introspection, revocation, rotation, the agent read, and the health
    // polls of the start.
    assert!(responses.len() >= 10, "{responses:?}");
    let token_ok = responses
        .iter()
        .find(|l| l["span"]["route"] == "/oauth2/token" && l["status"] == 200)
        .expect("a token line");
    assert_eq!(token_ok["span"]["method"], "POST");
    assert_eq!(token_ok["span"]["client_id"], id.as_str());
    assert!(token_ok["latency_ms"].is_u64());
    assert_eq!(token_ok["span"]["request_id"].as_str().unwrap().len(), 32);
    let read = responses
        .iter()
        .find(|l| l["span"]["route"] == "/v1/agents/{id}")
        .expect("the agent read, by its route template");
    assert_eq!(read["span"]["tenant_id"], tid.as_str());
    assert!(
        !logs.contains(&format!("/v1/agents/{id}")),
        "raw paths are not logged"
    );
    // Text is the default elsewhere; never colour in a pipe.
    assert!(!logs.contains('\u{1b}'));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_have_no_colour_in_a_pipe() {
    let mut d = spawn(&["--store", "memory://"], &[]).await;
    let op_out = d.stdout.clone();
    d.sigterm();
    let (_, ok) = d.wait_exit(Duration::from_secs(20));
    assert!(ok);
    std::thread::sleep(Duration::from_millis(100));
    let logs = d.log_text();
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in piped logs");
    // The first start prints the operator key on stdout, not in the logs.
    let out = op_out.lock().unwrap().clone();
    let printed = out
        .split_whitespace()
        .find(|w| w.starts_with("sa_ak_"))
        .expect("the initial operator key on stdout");
    assert!(!logs.contains(printed));
}

/// Writes a request head and part of its body; the rest is sent later.
async fn start_request(addr: &str, body: &str, sent: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..sent]).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_streams_finishes_requests_flushes_and_exits() {
    let op = key();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled://{}", dir.path().display());
    let mut d = spawn(
        &["--store", &store, "--shutdown-timeout", "10"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let http = client();
    let b = d.base.clone();
    let (_, tkey, agent) = tenant_with_agent(&http, &b, &op, "A").await;
    let id = agent["client_id"].as_str().unwrap().to_owned();
    let secret = agent["client_secret"].as_str().unwrap().to_owned();

    // An open audit stream.
    let stream = http
        .get(format!("{b}/v1/audit/stream"))
        .bearer_auth(&tkey)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    // A token request in flight: head and half of the body sent.
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let mut in_flight = start_request(&d.addr, &form, form.len() / 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    d.sigterm();

    // The audit stream ends cleanly and soon.
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = events.next().await {
            chunk.expect("a clean end of the stream");
        }
    })
    .await
    .expect("the audit stream ended");
    // No new connections.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(&d.addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener still accepts connections");
    // The request in flight finishes with its token.
    in_flight
        .write_all(&form.as_bytes()[form.len() / 2..])
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), in_flight.read_to_end(&mut answer))
        .await
        .expect("the in-flight answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"), "{answer}");

    let (_, ok) = d.wait_exit(Duration::from_secs(10));
    assert!(ok);
    assert!(signalled.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let logs = d.log_text();
    assert!(logs.contains("usage flushed"), "{logs}");
    assert!(!logs.contains("shutdown timeout reached"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_timeout_bounds_the_exit_with_a_client_stuck() {
    let mut d = spawn(&["--store", "memory://", "--shutdown-timeout", "2"], &[]).await;
    // A request that never completes its body.
    let _stuck = start_request(&d.addr, "grant_type=client_credentials&client_id=x", 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.sigterm();
    let (took, ok) = d.wait_exit(Duration::from_secs(8));
    assert!(ok);
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    std::thread::sleep(Duration::from_millis(100));
    let logs = d.log_text();
    assert!(logs.contains("shutdown timeout reached"), "{logs}");
    assert!(logs.contains("usage flushed"), "{logs}");
}

/// Sends raw bytes and reads the answer until the server closes or 5 s.
async fn raw(addr: &str, bytes: &[u8]) -> (String, Duration) {
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn request_limits_are_enforced_before_the_handlers() {
    let d = spawn(
        &[
            "--store",
            "memory://",
            "--header-read-timeout",
            "1",
            "--max-header-bytes",
            "8192",
            "--body-limit",
            "1024",
        ],
        &[],
    )
    .await;
    // A slow client that never finishes its head is disconnected.
    let (answer, took) = raw(&d.addr, b"GET /health HTTP/1.1\r\nhost: x\r\n").await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    // An oversized head: 431 without reaching the router.
    let big = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (answer, _) = raw(&d.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A body announced larger than the limit: 413 at once, before it is
    // sent.
    let head = "POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 10000000\r\n\r\ngrant_type=client_credentials";
    let (answer, took) = raw(&d.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

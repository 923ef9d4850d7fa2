//! Abuse against the built `sentryagentd` on a loopback port: a 100 MB
//! upload, 10,000 query parameters, 64 KB of headers, invalid UTF-8, 500
//! slow connections and hundreds of audit streams. Each is refused with a
//! clear answer (or a closed connection), and the server keeps serving.

mod daemon;

use std::time::{Duration, Instant};

use daemon::{Daemon, client, key, post, spawn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The resident memory of a process in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Writes `bytes` on a fresh connection and reads until the server closes
/// it (or 20 s pass): the whole answer as text.
async fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The JSON body of a raw answer (after the blank line).
fn body_of(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// `/health` answers 200.
async fn healthy(d: &Daemon) {
    let r = client().get(format!("{}/health", d.base)).send().await;
    assert_eq!(r.unwrap().status(), 200, "{}", d.log_text());
}

/// Sends `head` and then up to 100 MB of body bytes (`chunk` makes each
/// piece, e.g. with chunked framing) while reading the answer; returns the
/// answer and how many body bytes the server took before it answered and
/// closed the connection.
async fn upload_100_mb(addr: &str, head: String, chunk: fn(&[u8]) -> Vec<u8>) -> (String, u64) {
    const TOTAL: u64 = 100 * 1024 * 1024;
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let piece = chunk(&[b'a'; 64 * 1024]);
        let mut sent = 0u64;
        if wr.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        while sent < TOTAL {
            if wr.write_all(&piece).await.is_err() {
                break;
            }
            sent += 64 * 1024;
        }
        sent
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut answer)).await;
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the upload ends once the server closed the connection")
        .unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_upload_is_refused_early_and_memory_stays_flat() {
    let op = key();
    let d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let pid = d.child.id();
    // Settle the allocator with ordinary traffic before the first reading.
    let http = client();
    for i in 0..20 {
        post(
            &http,
            format!("{}/v1/tenants", d.base),
            &op,
            json!({"name": format!("warm-{i}")}),
        )
        .await;
    }
    let before = rss_kib(pid);

    // Announced: 413 before any of the body is read.
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {op}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024 * 1024
    );
    let (answer, sent) = upload_100_mb(&d.addr, head, |b| b.to_vec()).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(body_of(&answer)["limit_bytes"], 65536);
    assert!(sent < 100 * 1024 * 1024, "the server took the whole body");

    // Chunked (no length): cut at the limit while read.
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {op}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (answer, sent) = upload_100_mb(&d.addr, head, |b| {
        let mut c = format!("{:x}\r\n", b.len()).into_bytes();
        c.extend_from_slice(b);
        c.extend_from_slice(b"\r\n");
        c
    })
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(sent < 100 * 1024 * 1024, "the server took the whole body");

    // The same on the OAuth endpoint (RFC 6749 error JSON) and the webhook
    // (its own 1 MiB limit).
    for (path, ctype) in [
        ("/oauth2/token", "application/x-www-form-urlencoded"),
        ("/billing/webhook", "application/json"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n\
             Content-Length: {}\r\n\r\n",
            100 * 1024 * 1024
        );
        let (answer, sent) = upload_100_mb(&d.addr, head, |b| b.to_vec()).await;
        assert_eq!(status_of(&answer), 413, "{path}: {answer}");
        assert!(
            sent < 100 * 1024 * 1024,
            "{path}: the server took the whole body"
        );
    }

    let after = rss_kib(pid);
    // 100 MB held anywhere would show; a few MiB of allocator noise may not.
    assert!(
        after < before + 16 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    healthy(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_query_parameters_are_refused_clearly() {
    let op = key();
    // 10,000 distinct pairs `<3 characters>=1` (60 KB) and 10,000 pairs
    // `p<i>=<i>` (98 KB, more than a URI may hold).
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let name = |i: usize| -> String {
        [i / (62 * 62), i / 62 % 62, i % 62]
            .iter()
            .map(|d| DIGITS[*d] as char)
            .collect()
    };
    let short: Vec<String> = (0..10_000).map(|i| format!("{}=1", name(i))).collect();
    let short = short.join("&");
    let long: Vec<String> = (0..10_000).map(|i| format!("p{i}={i}")).collect();
    let long = long.join("&");
    let get = |query: &str| {
        format!("GET /v1/tenants?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    };

    // With the default head limit (16 KiB) the head is too large: 431.
    let d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let answer = raw(&d.addr, get(&short).as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    healthy(&d).await;
    drop(d);

    // With a head limit that lets them through, a URI over 64 KiB is 414,
    // and the query parser meets the rest: 400 problems.
    let d = spawn(
        &["--store", "memory://", "--max-header-bytes", "1048576"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let answer = raw(&d.addr, get(&long).as_bytes()).await;
    assert_eq!(status_of(&answer), 414, "{answer}");
    let http = client();
    let repeated = vec!["x"; 10_000].join("&");
    for q in [&short, &repeated] {
        let r = http
            .get(format!("{}/v1/tenants?{q}", d.base))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:sentryagent:problem:bad-request", "{p}");
    }
    // 10,000 form fields on the token endpoint: RFC 6749 invalid_request
    // (at most 64 parameters).
    let r = http
        .post(format!("{}/oauth2/token", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&{short}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_request", "{e}");
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("more than 64 parameters"),
        "{e}"
    );
    healthy(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_kb_of_headers_are_refused_with_431() {
    let d = spawn(&["--store", "memory://"], &[]).await;
    let one_big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let many: String = (0..1024)
        .map(|i| format!("X-H{i:04}: {}\r\n", "b".repeat(56)))
        .collect();
    let many = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert!(many.len() >= 64 * 1024);
    for req in [one_big, many] {
        let answer = raw(&d.addr, req.as_bytes()).await;
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
    healthy(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_json_forms_queries_and_headers_is_a_clear_400_or_401() {
    let op = key();
    let d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let http = client();
    let send = |method: reqwest::Method, path: &str, ctype: &str, body: Vec<u8>| {
        http.request(method, format!("{}{path}", d.base))
            .bearer_auth(&op)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    // JSON: raw bytes that are not UTF-8, and an escaped lone surrogate.
    for body in [
        b"{\"name\": \"\xff\xfe\"}".to_vec(),
        b"{\"name\": \"ok\xc3\"}".to_vec(),
        br#"{"name": "\udc00"}"#.to_vec(),
    ] {
        let r = send(
            reqwest::Method::POST,
            "/v1/tenants",
            "application/json",
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:sentryagent:problem:bad-request", "{p}");
    }
    // Forms: raw and percent-encoded bytes that are not UTF-8.
    for body in [
        b"grant_type=client_credentials&client_id=\xff\xfe&client_secret=x".to_vec(),
        b"grant_type=client_credentials&client_id=%FF%FE&client_secret=x".to_vec(),
    ] {
        let r = http
            .post(format!("{}/oauth2/token", d.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request", "{e}");
    }
    // A query string and a path segment.
    let r = http
        .get(format!("{}/v1/agents?tenant_id=%FF%FE", d.base))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{}/v1/agents/%FF%FE", d.base))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert!([400, 404].contains(&r.status().as_u16()), "{}", r.status());
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "a problem document"
    );
    // An Authorization header of bytes that are not UTF-8.
    let answer = raw(
        &d.addr,
        b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    healthy(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_slow_connections_do_not_starve_a_fresh_client() {
    let d = spawn(&["--store", "memory://", "--header-read-timeout", "2"], &[]).await;
    // 500 clients that send a head one byte at a time, a byte every 200 ms,
    // never finishing it.
    let mut slow = Vec::new();
    for _ in 0..500 {
        let addr = d.addr.clone();
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let start = Instant::now();
            let head = b"GET /health HTTP/1.1\r\nX-Slow: ";
            let mut i = 0usize;
            loop {
                let b = head.get(i).copied().unwrap_or(b'a');
                i += 1;
                if s.write_all(&[b]).await.is_err() {
                    return start.elapsed();
                }
                // The server answers 408 or closes: either ends the client.
                let mut buf = [0u8; 256];
                if tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
                    .await
                    .is_ok()
                {
                    return start.elapsed();
                }
                if start.elapsed() > Duration::from_secs(30) {
                    return start.elapsed();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A fresh client is served at once, every time (the bound is generous:
    // what matters is that it does not wait for the slow ones).
    let http = client();
    for _ in 0..5 {
        let start = Instant::now();
        let r = http.get(format!("{}/health", d.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "/health took {:?} beside 500 slow clients",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every slow client is cut off after the header read timeout (2 s),
    // none lingers.
    for h in slow {
        let held = h.await.unwrap();
        assert!(
            held < Duration::from_secs(10),
            "a slow client stayed connected for {held:?}"
        );
    }
    healthy(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_audit_streams_are_refused_past_the_caps() {
    let op = key();
    let d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let http = client();
    let tenant = post(
        &http,
        format!("{}/v1/tenants", d.base),
        &op,
        json!({"name": "Streamer", "tier": "enterprise"}),
    )
    .await;
    let tid = tenant["id"].as_str().unwrap();
    let tkey = post(
        &http,
        format!("{}/v1/tenants/{tid}/api-keys", d.base),
        &op,
        json!({"name": "s"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let open = |key: String| {
        let req = http
            .get(format!("{}/v1/audit/stream", d.base))
            .bearer_auth(key);
        async move { req.send().await.unwrap() }
    };
    let count = |rs: &[reqwest::Response], code: u16| {
        rs.iter().filter(|r| r.status().as_u16() == code).count()
    };

    // 300 at once by one tenant key: its cap (4) are served, the rest 429.
    let tenant_streams: Vec<_> =
        futures_util::future::join_all((0..300).map(|_| open(tkey.clone()))).await;
    assert_eq!(count(&tenant_streams, 200), 4);
    assert_eq!(count(&tenant_streams, 429), 296);
    // 300 at once by the operator: the node's cap (256) less the tenant's 4
    // are served, the rest 503 with Retry-After.
    let op_streams: Vec<_> =
        futures_util::future::join_all((0..300).map(|_| open(op.clone()))).await;
    assert_eq!(count(&op_streams, 200), 252);
    assert_eq!(count(&op_streams, 503), 48);
    let refused = op_streams
        .iter()
        .find(|r| r.status() == 503)
        .expect("a refusal");
    assert_eq!(refused.headers()["retry-after"], "5");
    // The server still answers everything else.
    healthy(&d).await;
    let r = http
        .get(format!("{}/v1/agents", d.base))
        .bearer_auth(&tkey)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_webhook_posts_without_billing_writes_no_error_line() {
    let d = spawn(
        &["--store", "memory://", "--log-format", "json"],
        &[("RUST_LOG", "info")],
    )
    .await;
    let http = client();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..300 {
        let mut req = http
            .post(format!("{}/billing/webhook", d.base))
            .header("content-type", "application/json")
            .body(format!(r#"{{"id": "evt_{i}", "type": "invoice.paid"}}"#));
        if i % 2 == 0 {
            req = req.header("stripe-signature", format!("t=1,v1={i:064x}"));
        }
        let r = req.send().await.unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    // Signed: 501 (no billing here); unsigned: 400.
    assert_eq!(statuses, [(400, 150), (501, 150)].into_iter().collect());
    healthy(&d).await;
    let logs = d.logs.lock().unwrap().clone();
    let lines: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 300, "one JSON line per request at least");
    let errors: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "ERROR" || l["level"] == "WARN")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The refusals: one line for the first, the rest held back (one a
    // minute).
    let refusals: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "billing webhook refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert_eq!(refusals[0]["level"], "INFO");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_token_from_the_environment_closes_metrics() {
    let token = "scrape-token-0123456789";
    let d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_METRICS_TOKEN", token)],
    )
    .await;
    let http = client();
    let url = format!("{}/metrics", d.base);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!d.log_text().contains(token), "the token is never logged");

    // A malformed token stops the start with a clear line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sentryagentd"))
        .env_clear()
        .args(["--store", "memory://", "--listen", "127.0.0.1:0"])
        .env("SENTRYAGENT_METRICS_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the metrics token must be 16 to 256"), "{err}");
    assert!(!err.contains("short\""), "{err}");
}

//! What the files of `deploy/` rely on, against the built binary: the
//! metric names (and their labels) the alert rules and the dashboard use are
//! the ones the server exports, and `--healthcheck` (the image's
//! `HEALTHCHECK`) tells a ready server from an absent one.

mod daemon;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use daemon::{client, free_port, key, post, spawn};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Series names of a scrape, each with the label names seen on it.
fn exported(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let inner = &line[end + 1..line.find('}').unwrap_or(line.len())];
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                labels.insert(pair.split('=').next().unwrap_or_default().to_owned());
            }
        }
    }
    out
}

/// Every `sentryagent_*` name in a PromQL text, with the label names of the
/// selector right after it (when there is one).
fn used(promql: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = promql;
    while let Some(at) = rest.find("sentryagent_") {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        rest = &rest[end..];
        let mut labels = Vec::new();
        if let Some(sel) = rest.strip_prefix('{') {
            let close = sel.find('}').expect("a closed selector");
            for matcher in sel[..close].split(',') {
                let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                if !label.is_empty() {
                    labels.push(label.to_owned());
                }
            }
        }
        out.push((name, labels));
    }
    out
}

/// The PromQL expressions of the dashboard.
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Runs a flow on a sled-backed server that gives every metric family a
/// sample: tenant-key calls on the free tier, an agent, tokens (one
/// refused), a lifecycle change, a webhook.
async fn scrape_after_a_flow() -> String {
    let op = key();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled://{}", dir.path().display());
    let d = spawn(
        &["--store", &store],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", op.as_str())],
    )
    .await;
    let http = client();
    let b = &d.base;
    let t = post(
        &http,
        format!("{b}/v1/tenants"),
        &op,
        json!({"name": "Acme", "tier": "free"}),
    )
    .await;
    let tid = t["id"].as_str().unwrap();
    let k = post(
        &http,
        format!("{b}/v1/tenants/{tid}/api-keys"),
        &op,
        json!({"name": "ci"}),
    )
    .await;
    let tkey = k["key"].as_str().unwrap();
    let a = post(
        &http,
        format!("{b}/v1/agents"),
        tkey,
        json!({"name": "bot"}),
    )
    .await;
    let (id, secret) = (
        a["client_id"].as_str().unwrap(),
        a["client_secret"].as_str().unwrap(),
    );
    for s in [secret, "wrong"] {
        http.post(format!("{b}/oauth2/token"))
            .basic_auth(id, Some(s))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
    }
    post(
        &http,
        format!("{b}/v1/agents/{id}/lifecycle"),
        tkey,
        json!({"state": "paused"}),
    )
    .await;
    let r = http
        .post(format!("{b}/billing/webhook"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let r = http.get(format!("{b}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_rules_and_dashboard_use_only_exported_metrics_and_labels() {
    let scrape = scrape_after_a_flow().await;
    let series = exported(&scrape);
    // Every family has a sample after the flow (so that its labels are
    // known).
    let families: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for f in [
        "sentryagent_http_requests",
        "sentryagent_http_request_duration_seconds",
        "sentryagent_tokens_issued",
        "sentryagent_token_errors",
        "sentryagent_rate_limit_decisions",
        "sentryagent_api_calls",
        "sentryagent_agents",
        "sentryagent_agent_lifecycle_transitions",
        "sentryagent_quota_use_ratio",
        "sentryagent_billing_webhooks",
        "sentryagent_backend_up",
        "sentryagent_backend_ping_seconds",
        "sentryagent_backend_pool",
    ] {
        assert!(families.contains(f), "{f} missing from\n{scrape}");
    }

    let mut sources = vec![
        (
            "deploy/prometheus/alerts.yml",
            read("deploy/prometheus/alerts.yml"),
        ),
        (
            "deploy/prometheus/alerts.test.yml",
            read("deploy/prometheus/alerts.test.yml"),
        ),
    ];
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/sentryagent.json")).expect("dashboard JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "{exprs:?}");
    sources.push(("deploy/grafana/sentryagent.json", exprs.join("\n")));

    // Labels Prometheus adds, and the histogram's bucket bound.
    let target = ["job", "instance"];
    let mut checked = BTreeSet::new();
    for (file, text) in &sources {
        let uses = used(text);
        assert!(!uses.is_empty(), "{file} names no metric");
        for (name, labels) in uses {
            let Some(known) = series.get(&name) else {
                panic!(
                    "{file}: {name} is not exported; the scrape has {:?}",
                    series.keys()
                );
            };
            for l in &labels {
                assert!(
                    known.contains(l) || target.contains(&l.as_str()),
                    "{file}: {name} has no label {l} (it has {known:?})"
                );
            }
            checked.insert(name);
        }
    }
    // The rules and the dashboard between them watch every family.
    for f in &families {
        assert!(
            checked.iter().any(|n| n.starts_with(f)),
            "neither the rules nor the dashboard use {f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_tells_a_ready_server_from_an_absent_one() {
    let mut d = spawn(&["--store", "memory://"], &[]).await;
    let port = d.addr.rsplit(':').next().unwrap().to_owned();
    // A server on every interface is asked on the loopback address.
    for listen in [d.addr.clone(), format!("0.0.0.0:{port}")] {
        let out = Command::new(env!("CARGO_BIN_EXE_sentryagentd"))
            .env_clear()
            .args(["--healthcheck", "--listen", &listen])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains(&format!(
                "ready: http://127.0.0.1:{port}/health/ready answered 200"
            )),
            "{stdout}"
        );
    }
    // The environment's address, as in a container.
    let out = Command::new(env!("CARGO_BIN_EXE_sentryagentd"))
        .env_clear()
        .env("SENTRYAGENT_LISTEN", &d.addr)
        .arg("--healthcheck")
        .output()
        .unwrap();
    assert!(out.status.success());
    d.stop();

    let nobody = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sentryagentd"))
        .env_clear()
        .args(["--healthcheck", "--listen", &nobody])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("not ready: http://{nobody}/health/ready")),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

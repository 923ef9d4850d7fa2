//! Server time of every console page with 1,000 public agents and 30 days
//! of usage: the public pages (home, pricing, docs, SDKs, marketplace
//! search, a listing, a publisher, sign-in and sign-up), the tenant pages
//! (agents, the wizard, an agent, API keys, members, audit, profile) and the
//! dashboard (`/usage`, `/usage.json`, `/settings/billing`,
//! `/settings/tier`, `/analytics` and its two charts), each a full request
//! through the console router (session check, core calls, rendering).
//!
//! `cargo bench --bench console --features console`; ids under the group
//! `console/` (figures in docs/benchmarks.md). Before criterion's runs the
//! bench times 1,000 requests of each page and prints their p50, p99 and
//! maximum, the figures the console's budget (p99 under 20 ms) is about.
//! In-memory store and meter; the usage is written to the meter as the
//! core's flush writes it: each agent's token issuances of each of the last
//! 30 days, at hours spread over the day, plus the tenant's API calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use sentryagent::http::console::{ConsoleConfig, router};
use sentryagent::{
    Caller, Idp, NewAgent, RequestMeta, SignUp, SignupMode, UsageBatch, UsageIncrement, UsageKind,
    Visibility,
};
use tower::ServiceExt as _;

const ISSUER: &str = "http://127.0.0.1:8080";
const AGENTS: usize = 1_000;
const DAYS: i64 = 30;
/// The dashboard pages; [`pages`] adds the others.
const DASHBOARD: [&str; 7] = [
    "/usage",
    "/usage.json",
    "/settings/billing",
    "/settings/tier",
    "/analytics",
    "/analytics/token-trend.svg",
    "/analytics/heatmap.svg",
];

/// Every page as (bench id, path): one agent and its publisher stand for
/// the pages with an id in their path.
fn pages(agent: &str, publisher: &str) -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = DASHBOARD
        .iter()
        .map(|p| (p.trim_start_matches('/').replace('/', "_"), p.to_string()))
        .collect();
    for (id, path) in [
        ("home", "/".to_owned()),
        ("pricing", "/pricing".to_owned()),
        ("docs", "/docs".to_owned()),
        ("sdks", "/sdks".to_owned()),
        ("marketplace", "/marketplace".to_owned()),
        ("marketplace_search", "/marketplace?q=agent-0042".to_owned()),
        ("marketplace_agent", format!("/marketplace/agents/{agent}")),
        ("publisher", format!("/publishers/{publisher}")),
        ("login", "/login".to_owned()),
        ("signup", "/signup".to_owned()),
        ("agents", "/agents".to_owned()),
        ("agents_new", "/agents/new".to_owned()),
        ("agent", format!("/agents/{agent}")),
        ("api_keys", "/api-keys".to_owned()),
        ("members", "/members".to_owned()),
        ("audit", "/audit".to_owned()),
        ("settings_profile", "/settings/profile".to_owned()),
    ] {
        pages.push((id.to_owned(), path));
    }
    pages
}

struct Setup {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    cookie: String,
    pages: Vec<(String, String)>,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (idp, cookie, agent) = rt.block_on(async {
        let idp = Idp::builder(ISSUER)
            .configure(|c| {
                c.people.signup = SignupMode::Open;
                c.tiers.free.max_agents = None;
                c.tiers.free.requests_per_minute = u32::MAX;
            })
            .build()
            .await
            .expect("idp");
        let signed = idp
            .sign_up(
                &SignUp {
                    email: "bench@example.com".into(),
                    password: "correct horse battery staple".into(),
                    tenant_name: "Bench".into(),
                    display_name: None,
                },
                &RequestMeta::default(),
                None,
            )
            .await
            .expect("sign-up");
        let tenant = signed.me.memberships[0].tenant_id.clone();
        let op = Caller::system();
        let now = idp.clock().now();
        let mut increments = Vec::new();
        let mut first = None;
        for i in 0..AGENTS {
            let a = idp
                .register_agent(
                    &op,
                    &tenant,
                    NewAgent {
                        name: format!("agent-{i:04}"),
                        capabilities: vec!["search".into()],
                        visibility: Some(Visibility::Public),
                        ..Default::default()
                    },
                )
                .await
                .expect("agent");
            first.get_or_insert_with(|| a.agent.id.to_string());
            for d in 0..DAYS {
                let hour = (i as i64 * 7 + d * 5) % 24;
                let at = now.minus(Duration::from_secs((d * 86_400 + hour * 3_600) as u64));
                increments.push(UsageIncrement {
                    tenant_id: tenant.clone(),
                    agent_id: Some(a.agent.id.clone()),
                    kind: UsageKind::TokenIssued,
                    at,
                    count: 1 + (i as u64 % 13) + d as u64 % 5,
                });
            }
        }
        for d in 0..DAYS {
            increments.push(UsageIncrement {
                tenant_id: tenant.clone(),
                agent_id: None,
                kind: UsageKind::ApiCall,
                at: now.minus(Duration::from_secs((d * 86_400) as u64)),
                count: 500,
            });
        }
        for (n, chunk) in increments.chunks(5_000).enumerate() {
            idp.meter()
                .record(&UsageBatch {
                    idempotency_key: format!("bench-{n}"),
                    increments: chunk.to_vec(),
                })
                .await
                .expect("usage");
        }
        let cookie = format!(
            "{}={}",
            sentryagent::http::cookie_name(ISSUER),
            signed.secret.expose()
        );
        (idp, cookie, first.expect("an agent"))
    });
    let app = router(idp, ConsoleConfig::default());
    let listing = rt.block_on(fetch(
        &app,
        &cookie,
        &format!("/marketplace/agents/{agent}"),
    ));
    let listing = String::from_utf8_lossy(&listing);
    let publisher = listing
        .split("href=\"/publishers/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a publisher link on the listing")
        .to_owned();
    let pages = pages(&agent, &publisher);
    Setup {
        rt,
        app,
        cookie,
        pages,
    }
}

async fn get(app: &axum::Router, cookie: &str, path: &str) -> usize {
    fetch(app, cookie, path).await.len()
}

async fn fetch(app: &axum::Router, cookie: &str, path: &str) -> axum::body::Bytes {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body")
}

fn bench(c: &mut Criterion) {
    let s = Arc::new(setup());
    // The p99 of 1,000 requests of each page.
    for (_, path) in &s.pages {
        let path = path.as_str();
        let bytes = s.rt.block_on(get(&s.app, &s.cookie, path));
        let mut times: Vec<Duration> = (0..1_000)
            .map(|_| {
                let t = Instant::now();
                s.rt.block_on(get(&s.app, &s.cookie, path));
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "console {path}: {bytes} bytes; p50 {:?}, p99 {:?}, max {:?} (1,000 requests)",
            times[499], times[989], times[999]
        );
    }
    let mut g = c.benchmark_group("console");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    for (id, path) in &s.pages {
        let path = path.as_str();
        g.bench_function(id, |b| {
            b.to_async(&s.rt).iter(|| get(&s.app, &s.cookie, path));
        });
    }
    g.finish();
}

criterion_group!(console, bench);
criterion_main!(console);

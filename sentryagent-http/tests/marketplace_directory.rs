//! `GET /v1/marketplace/agents` with the directory query kinds (agent,
//! name, version, skill_id, skill_name, locator, domain, author, verified,
//! annotation), AND, cursor paging, the 422s of bad values, and the counts
//! of `GET /v1/marketplace/categories`.

mod http_helpers;

use std::collections::BTreeSet;

use http_helpers::{Server, assert_problem, serde_urlencoded, start};
use reqwest::Method;
use serde_json::{Value, json};

/// The names found by a search with these query pairs, every page of
/// `limit` followed; checks ids ascend and `next_cursor` is present.
async fn names(s: &Server, pairs: &[(&str, &str)], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut q: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        q.push(("limit", limit.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s
            .req(Method::GET, &search_path(&q), None)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{pairs:?}");
        let page: Value = r.json().await.unwrap();
        assert!(page.get("next_cursor").is_some(), "{page}");
        for a in page["items"].as_array().unwrap() {
            out.push(a["name"].as_str().unwrap().to_owned());
            ids.push(a["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(
                    ids.windows(2).all(|w| w[0] < w[1]),
                    "ids ascend, no repeats"
                );
                out.sort();
                return out;
            }
        }
    }
    panic!("paging does not end");
}

/// Query pairs.
type Pairs = Vec<(&'static str, String)>;

fn search_path(pairs: &[(&str, &str)]) -> String {
    format!("/v1/marketplace/agents?{}", serde_urlencoded(pairs))
}

fn set(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_directory_query_kind_over_http() {
    let s = start().await;
    let u = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (verified_id, verified_key) = s.tenant(&format!("Dir Verified {u}"), "pro").await;
    let (_, plain_key) = s.tenant(&format!("Dir Plain {u}"), "pro").await;
    let (st, _) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{verified_id}/publisher"),
            Some(&s.op),
            &json!({"display_name": format!("Dir Verified {u}"), "verified": true}),
        )
        .await;
    assert_eq!(st, 200);
    let tag = format!("dir{u}");
    let mut ids = Vec::new();
    for (key, name, version, caps, category) in [
        (
            &verified_key,
            "alpha",
            "1.0.0",
            json!(["agent_memory"]),
            "finance",
        ),
        (
            &plain_key,
            "alphabet",
            "1.5.0",
            json!(["invoices.search"]),
            "finance",
        ),
        (
            &verified_key,
            "beta",
            "2.0.0",
            json!(["agent_memory", "x"]),
            "other",
        ),
    ] {
        let a = s
            .agent(
                key,
                json!({
                    "name": format!("{name}-{u}"),
                    "version": version,
                    "visibility": "public",
                    "capabilities": caps,
                    "tags": [tag],
                    "category": category,
                }),
            )
            .await;
        ids.push(
            a["agent"]["id"]
                .as_str()
                .or(a["id"].as_str())
                .unwrap()
                .to_owned(),
        );
    }
    let alpha = format!("alpha-{u}");
    let alphabet = format!("alphabet-{u}");
    let beta = format!("beta-{u}");
    let scoped = |extra: &[(&'static str, String)]| {
        let mut v: Vec<(&'static str, String)> = vec![("tag", tag.clone())];
        v.extend(extra.iter().cloned());
        v
    };
    let cases: Vec<(Pairs, Vec<String>)> = vec![
        (scoped(&[]), set(&[&alpha, &alphabet, &beta])),
        (
            scoped(&[("agent", ids[1].to_uppercase())]),
            set(&[&alphabet]),
        ),
        (scoped(&[("name", format!("ALPHA-{u}"))]), set(&[&alpha])),
        (
            scoped(&[("name", "alpha*".into())]),
            set(&[&alpha, &alphabet]),
        ),
        (
            scoped(&[("version", "1.*".into())]),
            set(&[&alpha, &alphabet]),
        ),
        (
            scoped(&[("skill_id", "70804".into())]),
            set(&[&alpha, &beta]),
        ),
        (
            scoped(&[(
                "skill_name",
                "ai_ml_engineering/agent_development/agent_memory".into(),
            )]),
            set(&[&alpha, &beta]),
        ),
        (
            scoped(&[(
                "locator",
                format!("{}/v1/marketplace/agents/{}", s.base, ids[2]),
            )]),
            set(&[&beta]),
        ),
        (
            scoped(&[(
                "locator",
                format!(
                    "{}/v1/marketplace/agents/{}/agent-card.json",
                    s.base, ids[0]
                ),
            )]),
            set(&[&alpha]),
        ),
        (
            scoped(&[("locator", "https://elsewhere.example/x".into())]),
            set(&[]),
        ),
        (
            scoped(&[("author", format!("dir plain {u}"))]),
            set(&[&alphabet]),
        ),
        (
            scoped(&[("author", "Dir Verified*".into())]),
            set(&[&alpha, &beta]),
        ),
        (
            scoped(&[("verified", "true".into())]),
            set(&[&alpha, &beta]),
        ),
        (scoped(&[("verified", "false".into())]), set(&[&alphabet])),
        (
            scoped(&[(
                "annotation",
                "sentryagent.unmapped_capabilities=invoices*".into(),
            )]),
            set(&[&alphabet]),
        ),
        (
            scoped(&[
                ("verified", "true".into()),
                ("version", "2*".into()),
                ("skill_id", "708*".into()),
                ("q", "beta".into()),
            ]),
            set(&[&beta]),
        ),
    ];
    for (pairs, want) in cases {
        let pairs_ref: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for limit in [1, 50] {
            assert_eq!(names(&s, &pairs_ref, limit).await, want, "{pairs:?}");
        }
    }
    // `domain`: the category `finance` maps to an OASF domain when the
    // taxonomy has one by that leaf; either way, the filter agrees with the
    // OASF records.
    let (_, record) = s
        .get(
            &format!("/v1/marketplace/agents/{}/oasf.json", ids[0]),
            None,
        )
        .await;
    if let Some(d) = record["domains"].as_array().and_then(|d| d.first()) {
        let by_name = names(
            &s,
            &[("tag", &tag), ("domain", d["name"].as_str().unwrap())],
            50,
        )
        .await;
        assert_eq!(by_name, set(&[&alpha, &alphabet]));
        let id = d["id"].to_string();
        assert_eq!(
            names(&s, &[("tag", &tag), ("domain", &id)], 50).await,
            set(&[&alpha, &alphabet])
        );
    }
}

#[tokio::test]
async fn bad_directory_values_are_422_naming_the_rule() {
    let s = start().await;
    let long = "x".repeat(201);
    for (k, v, field) in [
        ("name", "", "name"),
        ("author", "*", "author"),
        ("version", long.as_str(), "version"),
        ("skill_id", "abc", "skill_id"),
        ("annotation", "novalue", "annotation"),
        ("annotation", "=x", "annotation"),
        ("cursor", "not a cursor!", "cursor"),
    ] {
        let r = s
            .req(Method::GET, &search_path(&[(k, v)]), None)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 422).await;
        assert!(
            p.to_string().contains(field),
            "{k}={v:?}: the problem names {field}: {p}"
        );
    }
    // Not a boolean.
    let r = s
        .req(Method::GET, &search_path(&[("verified", "maybe")]), None)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_ne!(r.status(), 500);
}

#[tokio::test]
async fn categories_count_oasf_skills() {
    let s = start().await;
    let u = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (_, key) = s.tenant(&format!("Skill Counts {u}"), "pro").await;
    let (_, before) = s.get("/v1/marketplace/categories", None).await;
    let count = |doc: &Value, name: &str| -> u64 {
        doc["oasf_skills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map_or(0, |e| e["count"].as_u64().unwrap())
    };
    let memory = "ai_ml_engineering/agent_development/agent_memory";
    for (name, visibility) in [("s1", "public"), ("s2", "public"), ("s3", "private")] {
        s.agent(
            &key,
            json!({"name": format!("{name}-{u}"), "visibility": visibility,
                   "capabilities": ["agent_memory", "oasf:70804"]}),
        )
        .await;
    }
    let (st, after) = s.get("/v1/marketplace/categories", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        count(&after, memory),
        count(&before, memory) + 2,
        "two listed agents, each counted once for the skill: {after}"
    );
    let entry = after["oasf_skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == memory)
        .unwrap();
    assert_eq!(entry["id"], 70804);
    let names: BTreeSet<&str> = after["oasf_skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), after["oasf_skills"].as_array().unwrap().len());
}

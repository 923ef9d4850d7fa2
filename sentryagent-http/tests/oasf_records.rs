//! Every marketplace agent's OASF record (`/v1/marketplace/agents/{id}/oasf.json`)
//! checked against the OASF record shape (agntcy/oasf `types/v1/record.proto`
//! field names, the required members of `schema/objects/record.json`) and the
//! shipped taxonomy data, read here on its own: every capability is an OASF
//! skill of the taxonomy or annotated, none is dropped.

mod http_helpers;

use std::collections::{BTreeSet, HashMap};

use http_helpers::{Server, assert_problem, start};
use reqwest::Method;
use serde_json::{Value, json};

/// The fields of `agntcy.oasf.types.v1.Record`.
const RECORD_FIELDS: [&str; 11] = [
    "annotations",
    "name",
    "version",
    "schema_version",
    "description",
    "authors",
    "created_at",
    "locators",
    "skills",
    "domains",
    "modules",
];
/// Required by `schema/objects/record.json`.
const REQUIRED: [&str; 7] = [
    "name",
    "version",
    "schema_version",
    "description",
    "authors",
    "created_at",
    "skills",
];
/// The `LocatorType` values of `types/v1/locator.proto`.
const LOCATOR_TYPES: [&str; 7] = [
    "unspecified",
    "helm_chart",
    "container_image",
    "package",
    "source_code",
    "binary",
    "url",
];

struct Taxonomy {
    doc: Value,
}

impl Taxonomy {
    fn load() -> Taxonomy {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sentryagent-core/data/oasf/taxonomy.json"
        );
        Taxonomy {
            doc: serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
        }
    }

    fn classes(&self, family: &str) -> HashMap<u64, String> {
        self.doc[family]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_u64().unwrap(),
                    c["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The skill a capability names by the documented rules, on the raw
    /// data: full name, `oasf:<id>`, or a last segment no other skill has.
    fn skill_for(&self, capability: &str) -> Option<(u64, String)> {
        let skills = self.classes("skills");
        let lower = capability.to_ascii_lowercase();
        if let Some(id) = lower.strip_prefix("oasf:").and_then(|i| i.parse().ok()) {
            return skills.get(&id).map(|n| (id, n.clone()));
        }
        if let Some((id, n)) = skills.iter().find(|(_, n)| n.to_ascii_lowercase() == lower) {
            return Some((*id, n.clone()));
        }
        let leaf: Vec<_> = skills
            .iter()
            .filter(|(_, n)| n.rsplit('/').next().unwrap().to_ascii_lowercase() == lower)
            .collect();
        (leaf.len() == 1).then(|| (*leaf[0].0, leaf[0].1.clone()))
    }
}

/// Checks `record` against the record shape and the taxonomy, and that it
/// accounts for every capability and the category of `agent`.
fn check_record(t: &Taxonomy, s: &Server, agent: &Value, record: &Value) {
    let obj = record.as_object().expect("a record is an object");
    for k in obj.keys() {
        assert!(RECORD_FIELDS.contains(&k.as_str()), "unknown field {k}");
    }
    for k in REQUIRED {
        assert!(obj.contains_key(k), "missing {k}");
    }
    for k in [
        "name",
        "version",
        "schema_version",
        "description",
        "created_at",
    ] {
        assert!(record[k].is_string(), "{k}");
    }
    assert_eq!(record["schema_version"], t.doc["schema_version"]);
    assert_eq!(record["name"], agent["name"]);
    assert_eq!(record["version"], agent["version"]);
    assert!(
        sentryagent_core::Timestamp::parse_rfc3339(record["created_at"].as_str().unwrap())
            .is_some()
    );
    let authors = record["authors"].as_array().unwrap();
    assert!(!authors.is_empty() && authors.iter().all(Value::is_string));

    let annotations = record["annotations"].as_object().unwrap();
    assert!(annotations.values().all(Value::is_string));
    assert_eq!(annotations["sentryagent.agent_id"], agent["id"]);
    assert_eq!(annotations["sentryagent.did"], agent["did"]);

    let check_classes = |field: &str, family: &str| -> Vec<(u64, String)> {
        let known = t.classes(family);
        record[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let o = c.as_object().unwrap();
                assert!(
                    o.keys()
                        .all(|k| ["id", "name", "annotations"].contains(&k.as_str()))
                );
                let id = c["id"].as_u64().unwrap();
                let name = c["name"].as_str().unwrap().to_owned();
                assert_eq!(known.get(&id), Some(&name), "{field}: {id} {name}");
                (id, name)
            })
            .collect()
    };
    let skills = check_classes("skills", "skills");
    let domains = check_classes("domains", "domains");

    // Every capability: an OASF skill of the record, or annotated.
    let unmapped: BTreeSet<&str> = annotations
        .get("sentryagent.unmapped_capabilities")
        .map(|v| v.as_str().unwrap().split(' ').collect())
        .unwrap_or_default();
    for c in agent["capabilities"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        match t.skill_for(c) {
            Some(skill) => {
                assert!(skills.contains(&skill), "{c}: {skill:?} not in {skills:?}");
                assert!(!unmapped.contains(c));
            }
            None => assert!(unmapped.contains(c), "{c} dropped: {annotations:?}"),
        }
    }
    assert!(skills.len() + unmapped.len() <= agent["capabilities"].as_array().unwrap().len());
    match agent["category"].as_str() {
        Some(cat) => {
            if domains.is_empty() {
                assert_eq!(annotations["sentryagent.unmapped_category"], cat);
            } else {
                assert_eq!(domains.len(), 1);
                assert!(
                    domains[0]
                        .1
                        .to_ascii_lowercase()
                        .ends_with(&cat.to_ascii_lowercase())
                );
            }
        }
        None => assert!(domains.is_empty()),
    }

    let id = agent["id"].as_str().unwrap();
    let entry = s.url(&format!("/v1/marketplace/agents/{id}"));
    let card_url = format!("{entry}/agent-card.json");
    let locators = record["locators"].as_array().unwrap();
    assert!(!locators.is_empty());
    for l in locators {
        assert!(LOCATOR_TYPES.contains(&l["type"].as_str().unwrap()));
        let urls = l["urls"].as_array().unwrap();
        assert!(!urls.is_empty());
        assert!(urls.iter().all(|u| u.as_str().unwrap().starts_with("http")));
    }
    assert!(
        locators
            .iter()
            .any(|l| l["urls"].as_array().unwrap().contains(&json!(entry)))
    );

    let modules = t.classes("modules");
    let a2a: Vec<&Value> = record["modules"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|m| {
            let id = m["id"].as_u64().unwrap();
            assert_eq!(modules.get(&id).map(String::as_str), m["name"].as_str());
            assert!(m["data"].is_object(), "module data is required");
        })
        .filter(|m| m["name"] == "integration/a2a")
        .collect();
    assert_eq!(a2a.len(), 1);
    assert_eq!(a2a[0]["data"]["card_schema_version"], "v1.0.0");
    assert_eq!(a2a[0]["artifact"]["urls"][0], card_url);
    let card = &a2a[0]["data"]["card_data"];
    assert_eq!(card["name"], agent["name"]);
    assert_eq!(card["signatures"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_listed_agent_has_an_oasf_record_of_the_shape_and_taxonomy() {
    let t = Taxonomy::load();
    let s = start().await;
    let (_, key) = s.tenant("Record Labs", "pro").await;
    let some_skill = t.doc["skills"][17].clone();
    let agents = [
        json!({"name": "Mapped", "visibility": "public", "category": "finance_and_business",
               "capabilities": ["agent_memory", format!("oasf:{}", some_skill["id"]),
                                "AI_ML_Engineering/Agent_Development", "invoices.search", "custom-thing",
                                "agent_memory"]}),
        json!({"name": "Unmapped", "visibility": "public", "category": "accounting",
               "capabilities": ["invoices.search", "invoices.read"], "tags": ["finance"]}),
        json!({"name": "Bare", "visibility": "public"}),
    ];
    let mut created = Vec::new();
    for body in agents {
        created.push(s.agent(&key, body).await);
    }
    // The directory view: every agent the marketplace lists.
    let (_, page) = s.get("/v1/marketplace/agents?q=", None).await;
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    for agent in &created {
        let id = agent["id"].as_str().unwrap();
        assert!(listed.contains(&id));
        let r = s
            .http
            .get(s.url(&format!("/v1/marketplace/agents/{id}/oasf.json")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "public, max-age=60");
        let record: Value = r.json().await.unwrap();
        check_record(&t, &s, agent, &record);
    }

    // The first agent's mappings, spelled out.
    let id = created[0]["id"].as_str().unwrap();
    let (_, r) = s
        .get(&format!("/v1/marketplace/agents/{id}/oasf.json"), None)
        .await;
    let names: Vec<&str> = r["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ai_ml_engineering/agent_development/agent_memory",
            some_skill["name"].as_str().unwrap(),
            "ai_ml_engineering/agent_development",
        ]
    );
    assert_eq!(
        r["annotations"]["sentryagent.unmapped_capabilities"],
        "invoices.search custom-thing"
    );
    assert_eq!(
        r["domains"],
        json!([{"id": 2, "name": "finance_and_business"}])
    );
    assert_eq!(r["annotations"]["sentryagent.publisher_verified"], "false");

    // Not in the marketplace: no record.
    let private = s.agent(&key, json!({"name": "Hidden"})).await;
    let r = s
        .req(
            Method::GET,
            &format!(
                "/v1/marketplace/agents/{}/oasf.json",
                private["id"].as_str().unwrap()
            ),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "paused"}),
        )
        .await;
    assert_eq!(st, 200);
    let r = s
        .req(
            Method::GET,
            &format!("/v1/marketplace/agents/{id}/oasf.json"),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
}

#[tokio::test]
async fn categories_and_skills_with_counts() {
    let s = start().await;
    let (_, key) = s.tenant("Category Labs", "pro").await;
    // Counts are over the whole marketplace (other tests share the store):
    // compare before and after.
    let (st, before) = s.get("/v1/marketplace/categories", None).await;
    assert_eq!(st, 200);
    let count = |doc: &Value, list: &str, field: &str, name: &str| -> u64 {
        doc[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[field] == name)
            .map_or(0, |e| e["count"].as_u64().unwrap())
    };
    let cat = "cat-counted-zz";
    for (name, caps, visibility) in [
        ("C1", json!(["agent_memory", "cap.counted.zz"]), "public"),
        ("C2", json!(["cap.counted.zz"]), "public"),
        ("C3", json!(["cap.counted.zz"]), "private"),
    ] {
        s.agent(
            &key,
            json!({"name": name, "visibility": visibility, "category": cat, "capabilities": caps}),
        )
        .await;
    }
    let (st, after) = s.get("/v1/marketplace/categories", None).await;
    assert_eq!(st, 200);
    assert_eq!(count(&after, "categories", "name", cat), 2);
    assert_eq!(count(&after, "skills", "capability", "cap.counted.zz"), 2);
    assert_eq!(
        count(&after, "skills", "capability", "agent_memory"),
        count(&before, "skills", "capability", "agent_memory") + 1
    );
    let memory = after["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["capability"] == "agent_memory")
        .unwrap();
    assert_eq!(
        memory["oasf"],
        json!({"id": 70804, "name": "ai_ml_engineering/agent_development/agent_memory"})
    );
    let counted = after["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["capability"] == "cap.counted.zz")
        .unwrap();
    assert_eq!(counted["oasf"], Value::Null);
    // Most used first.
    let counts: Vec<u64> = after["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
}

//! Agent badges over HTTP on memory, sled and Postgres: issued per
//! marketplace agent with an `eddsa-jcs-2022` proof by the IdP's did:web,
//! re-issued when the listing changes, revoked in the Bitstring Status List
//! when the agent leaves the marketplace or its listing changes, and
//! verified by `POST /v1/credentials/verify` (signature, status, expiry).

mod http_helpers;

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use http_helpers::{Backend, Server, Setup, assert_problem, start_with};
use reqwest::Method;
use sentryagent_core::did::DidDocument;
use serde_json::{Value, json};

async fn get_vc(s: &Server, path: &str) -> Value {
    let r = s.http.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(r.headers()["content-type"], "application/vc");
    r.json().await.unwrap()
}

/// Checks the proof with the key the IdP's did:web document (fetched over
/// HTTP) lists for the proof's verification method.
async fn proof_verifies(s: &Server, vc: &Value) -> bool {
    let (_, did) = s.get("/.well-known/did.json", None).await;
    let doc: DidDocument = serde_json::from_value(did).unwrap();
    vc["issuer"] == doc.id.as_str()
        && sentryagent_core::vc::verify(vc, |m| doc.assertion_ed25519_key(m)).is_ok()
}

/// The bit of the status list at `index`, decoded as the Bitstring Status
/// List spec says (multibase base64url, GZIP, most significant bit first).
async fn status_bit(s: &Server, index: u64) -> bool {
    let list = get_vc(s, "/v1/credentials/status/revocation").await;
    assert!(proof_verifies(s, &list).await, "status list proof");
    let subject = &list["credentialSubject"];
    assert_eq!(subject["type"], "BitstringStatusList");
    assert_eq!(subject["statusPurpose"], "revocation");
    let encoded = subject["encodedList"].as_str().unwrap();
    let gz = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.strip_prefix('u').unwrap())
        .unwrap();
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut bits)
        .unwrap();
    assert!(bits.len() * 8 >= 131_072, "at least 16 KB of bits");
    bits[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
}

fn index_of(badge: &Value) -> u64 {
    badge["credentialStatus"]["statusListIndex"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn verify(s: &Server, vc: &Value) -> Value {
    let (st, v) = s.post("/v1/credentials/verify", None, vc).await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn lifecycle(s: &Server, key: &str, id: &str, state: &str) {
    let (st, v) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(key),
            &json!({"state": state}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

async fn badges(backend: Backend) {
    let s = start_with(Setup {
        backend,
        ..Default::default()
    })
    .await;
    let (tenant, key) = s.tenant("Badge Labs", "pro").await;
    let agent = s
        .agent(
            &key,
            json!({"name": "Badged", "visibility": "public", "capabilities": ["invoices.search", "agent_memory"]}),
        )
        .await;
    let id = agent["id"].as_str().unwrap();
    let path = format!("/v1/marketplace/agents/{id}/badge");

    // Issued, well formed, verifiable from the did:web, stable.
    let badge = get_vc(&s, &path).await;
    assert_eq!(badge["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(badge["type"], json!(["VerifiableCredential", "AgentBadge"]));
    assert!(badge["issuer"].as_str().unwrap().starts_with("did:web:"));
    let subject = &badge["credentialSubject"];
    assert_eq!(subject["id"], agent["did"]);
    assert_eq!(subject["name"], "Badged");
    assert_eq!(subject["publisher"]["name"], "Badge Labs");
    assert_eq!(subject["publisher"]["verified"], false);
    assert_eq!(
        subject["capabilities"],
        json!(["invoices.search", "agent_memory"])
    );
    assert!(subject["listedAt"].is_string());
    assert_eq!(badge["proof"]["cryptosuite"], "eddsa-jcs-2022");
    assert_eq!(
        badge["credentialStatus"]["type"],
        "BitstringStatusListEntry"
    );
    assert_eq!(
        badge["credentialStatus"]["statusListCredential"],
        s.url("/v1/credentials/status/revocation")
    );
    assert!(proof_verifies(&s, &badge).await);
    assert_eq!(
        get_vc(&s, &path).await,
        badge,
        "the same listing, the same badge"
    );
    let first = index_of(&badge);
    assert!(!status_bit(&s, first).await);
    assert_eq!(
        verify(&s, &badge).await,
        json!({"verified": true, "signature": "valid", "status": "valid", "expiry": "valid"})
    );

    // Altered or foreign: the signature is invalid; not an object: 422.
    let mut forged = badge.clone();
    forged["credentialSubject"]["publisher"]["verified"] = json!(true);
    assert!(!proof_verifies(&s, &forged).await);
    assert_eq!(
        verify(&s, &forged).await,
        json!({"verified": false, "signature": "invalid", "status": "unchecked", "expiry": "unchecked"})
    );
    let mut foreign = badge.clone();
    foreign["issuer"] = json!("did:web:elsewhere.example");
    assert_eq!(verify(&s, &foreign).await["signature"], "invalid");
    let r = s
        .req(Method::POST, "/v1/credentials/verify", None)
        .json(&json!([1, 2]))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;

    // The listing changes: a new badge, the old one revoked.
    let r = s
        .req(Method::PATCH, &format!("/v1/agents/{id}"), Some(&key))
        .json(&json!({"capabilities": ["invoices.search"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = get_vc(&s, &path).await;
    assert_ne!(second, badge);
    assert_eq!(
        second["credentialSubject"]["capabilities"],
        json!(["invoices.search"])
    );
    let second_index = index_of(&second);
    assert_ne!(second_index, first);
    assert!(status_bit(&s, first).await);
    assert!(!status_bit(&s, second_index).await);
    assert_eq!(verify(&s, &badge).await["status"], "revoked");
    assert_eq!(verify(&s, &second).await["verified"], true);

    // Paused: no badge served, the current one revoked at the next fetch
    // of the list; resuming issues a new one and the old stays revoked.
    lifecycle(&s, &key, id, "paused").await;
    let r = s.req(Method::GET, &path, None).send().await.unwrap();
    assert_problem(r, 404).await;
    assert!(status_bit(&s, second_index).await);
    assert_eq!(
        verify(&s, &second).await,
        json!({"verified": false, "signature": "valid", "status": "revoked", "expiry": "valid"})
    );
    lifecycle(&s, &key, id, "listed").await;
    let third = get_vc(&s, &path).await;
    assert_ne!(index_of(&third), second_index);
    assert!(status_bit(&s, second_index).await);
    assert!(!status_bit(&s, index_of(&third)).await);

    // Retired: revoked for good.
    lifecycle(&s, &key, id, "retired").await;
    assert!(status_bit(&s, index_of(&third)).await);
    assert_eq!(verify(&s, &third).await["status"], "revoked");

    // Expiry: a badge is valid for at most two renewal periods.
    let other = s
        .agent(&key, json!({"name": "Lasting", "visibility": "public"}))
        .await;
    let path = format!(
        "/v1/marketplace/agents/{}/badge",
        other["id"].as_str().unwrap()
    );
    let lasting = get_vc(&s, &path).await;
    assert_eq!(verify(&s, &lasting).await["verified"], true);
    s.clock.advance(Duration::from_secs(61 * 24 * 3600));
    assert_eq!(
        verify(&s, &lasting).await,
        json!({"verified": false, "signature": "valid", "status": "valid", "expiry": "expired"})
    );
    // Renewed: the same status index, a later validity.
    let renewed = get_vc(&s, &path).await;
    assert_eq!(index_of(&renewed), index_of(&lasting));
    assert_eq!(verify(&s, &renewed).await["verified"], true);

    // The publisher suspended: its badges revoked, none served.
    let (st, t) = s
        .send(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(&s.op),
            &json!({"status": "suspended", "reason": "payment overdue"}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(status_bit(&s, index_of(&renewed)).await);
    assert_eq!(verify(&s, &renewed).await["status"], "revoked");
    let r = s.req(Method::GET, &path, None).send().await.unwrap();
    assert_problem(r, 404).await;
}

#[tokio::test]
async fn badges_on_the_test_store() {
    badges(Backend::FromEnv).await;
}

#[tokio::test]
async fn badges_on_sled() {
    badges(Backend::Sled).await;
}

#[tokio::test]
async fn badges_on_postgres() {
    if !http_helpers::services_available("badges_on_postgres").await {
        return;
    }
    badges(Backend::PostgresRedis).await;
}

//! A marketplace listing verified by code nobody on the project wrote: the
//! signed A2A agent card with Python's `rfc8785` (RFC 8785) and `joserfc`
//! (JWS), the IdP's `did:web` document against its JWKS, and the badge's
//! `eddsa-jcs-2022` proof and status bit with `rfc8785` and
//! `cryptography` (Ed25519). The packages
//! are installed in a virtual environment under the target directory
//! (`tests/interop/requirements.txt`). Without python3, venv or the package
//! index the test prints a `SKIPPED` line, and fails instead under
//! `SENTRYAGENT_REQUIRE_SERVICES=1`.

mod http_helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use http_helpers::{Server, Setup, start_with};
use serde_json::{Value, json};

const TEST: &str = "listing_interop";

fn required() -> bool {
    std::env::var("SENTRYAGENT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    if required() {
        panic!("{TEST}: python verifier unavailable (SENTRYAGENT_REQUIRE_SERVICES=1): {why}");
    }
    eprintln!("SKIPPED {TEST}: python verifier unavailable: {why}");
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python with the pinned packages, made once per test binary
/// (the tests share it) and kept in the target directory while the
/// requirements do not change; `Err` says why it could not be made.
fn python() -> Result<PathBuf, String> {
    static PYTHON: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            make_venv().or_else(|first| {
                // A half-made venv (an interrupted run): start afresh once.
                let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
                let _ = std::fs::remove_dir_all(&venv);
                make_venv().map_err(|again| format!("{first}; then {again}"))
            })
        })
        .clone()
}

fn make_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let python = venv.join("bin/python");
    let requirements = interop_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) && python.exists() {
        return Ok(python);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&marker, wanted).map_err(|e| e.to_string())?;
    Ok(python)
}

/// Runs the verifier; `(success, output line)`.
fn verify(python: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(python)
        .arg(interop_dir().join("verify_listing.py"))
        .args(args)
        .output()
        .expect("run the python verifier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

async fn fetch(s: &Server, path: &str) -> (String, Value) {
    let r = s.http.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

#[tokio::test]
async fn card_signature_and_did_web_verify_with_independent_python_code() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let s = start_with(Setup::default()).await;
    let (_, key) = s.tenant("Ünïcode Labs", "pro").await;
    // Text that canonicalization can get wrong: non-ASCII, escapes,
    // control characters, astral plane, key order.
    let agent = s
        .agent(
            &key,
            json!({"name": "Fïnder € \"quoted\"", "description": "line\nnext, emoji 🦀, <tag> & \u{2028} \\ / é",
                   "version": "2.1.0-rc.1", "capabilities": ["invoices.search", "zeta", "Alpha", "ünï"],
                   "tags": ["finance", "b", "a"], "visibility": "public"}),
        )
        .await;
    let id = agent["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (jwks_text, _) = fetch(&s, "/.well-known/jwks.json").await;
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, &jwks_text).unwrap();
    let jwks = jwks_path.to_str().unwrap();

    // The card served on its own and the one in the marketplace entry.
    let (card_text, card) =
        fetch(&s, &format!("/v1/marketplace/agents/{id}/agent-card.json")).await;
    let (_, entry) = fetch(&s, &format!("/v1/marketplace/agents/{id}")).await;
    assert_eq!(entry["agent_card"], card);
    assert_eq!(
        entry["agent_card_url"],
        s.url(&format!("/v1/marketplace/agents/{id}/agent-card.json"))
    );
    let card_path = dir.path().join("card.json");
    std::fs::write(&card_path, &card_text).unwrap();
    let (ok, line) = verify(&python, &["card", card_path.to_str().unwrap(), jwks]);
    assert!(ok, "{line}");
    assert!(line.starts_with("verified card signed by "), "{line}");

    // Any change to the card breaks the signature for the independent
    // verifier too.
    for (pointer, value) in [
        ("/name", json!("Finder")),
        ("/skills/0/id", json!("invoices.write")),
        (
            "/securitySchemes/oauth2/oauth2SecurityScheme/flows/clientCredentials/tokenUrl",
            json!("https://evil.example/token"),
        ),
    ] {
        let mut tampered = card.clone();
        *tampered.pointer_mut(pointer).unwrap() = value;
        let path = dir.path().join("tampered.json");
        std::fs::write(&path, serde_json::to_vec(&tampered).unwrap()).unwrap();
        let (ok, line) = verify(&python, &["card", path.to_str().unwrap(), jwks]);
        assert!(!ok, "{pointer}: {line}");
        assert!(line.starts_with("FAILED"), "{line}");
    }
    // A key that is not the IdP's does not verify it either.
    let other = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                                  "kid": card_kid(&card), "alg": "EdDSA", "use": "sig"}]});
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let (ok, line) = verify(
        &python,
        &[
            "card",
            card_path.to_str().unwrap(),
            other_path.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{line}");

    // The IdP's did:web lists the same keys.
    let (did_text, did) = fetch(&s, "/.well-known/did.json").await;
    let expected = format!(
        "did:web:{}",
        s.base.strip_prefix("http://").unwrap().replace(':', "%3A")
    );
    assert_eq!(did["id"], expected);
    let did_path = dir.path().join("did.json");
    std::fs::write(&did_path, &did_text).unwrap();
    let (ok, line) = verify(
        &python,
        &["did", did_path.to_str().unwrap(), jwks, &expected],
    );
    assert!(ok, "{line}");
    assert!(line.starts_with("verified did:web document"), "{line}");
    let (ok, line) = verify(
        &python,
        &[
            "did",
            did_path.to_str().unwrap(),
            other_path.to_str().unwrap(),
            &expected,
        ],
    );
    assert!(!ok, "{line}");
}

#[tokio::test]
async fn badge_proof_and_status_verify_with_independent_python_code() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let s = start_with(Setup::default()).await;
    let (_, key) = s.tenant("Badge Interop", "pro").await;
    let agent = s
        .agent(
            &key,
            json!({"name": "Bädge € \"holder\"", "visibility": "public",
                   "capabilities": ["invoices.search", "agent_memory", "ünï"]}),
        )
        .await;
    let id = agent["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (did_text, _) = fetch(&s, "/.well-known/did.json").await;
    let did = write("did.json", &did_text);
    let (badge_text, badge) = fetch(&s, &format!("/v1/marketplace/agents/{id}/badge")).await;
    let badge_path = write("badge.json", &badge_text);
    let (list_text, _) = fetch(&s, "/v1/credentials/status/revocation").await;
    let list = write("list.json", &list_text);
    let (ok, line) = verify(&python, &["badge", &badge_path, &did, &list]);
    assert!(ok, "{line}");
    assert_eq!(line, "verified badge status=valid");

    // A changed claim breaks the proof for the independent verifier.
    let mut forged = badge.clone();
    forged["credentialSubject"]["publisher"]["verified"] = json!(true);
    let forged = write("forged.json", &forged.to_string());
    let (ok, line) = verify(&python, &["badge", &forged, &did, &list]);
    assert!(!ok, "{line}");

    // Unlisted (paused): the next status list says revoked.
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "paused"}),
        )
        .await;
    assert_eq!(st, 200);
    let (list_text, _) = fetch(&s, "/v1/credentials/status/revocation").await;
    let list = write("list2.json", &list_text);
    let (ok, line) = verify(&python, &["badge", &badge_path, &did, &list]);
    assert!(ok, "{line}");
    assert_eq!(line, "verified badge status=revoked");
}

fn card_kid(card: &Value) -> String {
    use base64::Engine as _;
    let protected = card["signatures"][0]["protected"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(protected)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

//! JOSE against published vectors (RFC 8037, RFC 7638) and the project's JWT
//! verification cases, plus property tests.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use sentryagent_core::Timestamp;
use sentryagent_core::jose::{
    Algorithm, Audience, JoseError, Jwk, JwkSet, KeySet, MAX_TOKEN_LEN, RegisteredClaims,
    SigningKey, Validation, VerifyingKey, encode_claims, parse_compact, verify_compact, verify_jwt,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const RFC8037: &str = include_str!("data/jws-eddsa-rfc8037.json");
const JWT_CASES: &str = include_str!("data/jwt-verification-cases.json");

/// Number of cases in `jwt-verification-cases.json`.
const JWT_CASE_COUNT: usize = 19;

fn rfc8037() -> Value {
    serde_json::from_str(RFC8037).unwrap()
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing"))
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn rfc8037_signing_key(kid: &str) -> SigningKey {
    let v = rfc8037();
    let d = b64(str_of(&v["private_jwk"], "d"));
    SigningKey::from_secret_bytes(Algorithm::EdDSA, kid, &d).unwrap()
}

#[test]
fn rfc8037_a4_verifies_and_signing_is_reproduced() {
    let v = rfc8037();
    let public: Jwk = serde_json::from_value(v["public_jwk"].clone()).unwrap();
    let compact = str_of(&v, "compact_jws");
    let payload = str_of(&v, "payload_utf8");

    // A.3 thumbprint.
    assert_eq!(
        public.thumbprint().unwrap(),
        str_of(&v, "rfc7638_thumbprint")
    );

    // A.4 verifies with the A.1 public key (no kid: a one-key set).
    let mut keys = KeySet::new();
    keys.insert("a1", VerifyingKey::from_jwk(&public).unwrap());
    let (header, body) = verify_compact(compact, &keys).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid, None);
    assert_eq!(header.typ, None);
    assert_eq!(body, payload.as_bytes());

    // Ed25519 is deterministic: the A.1 private key reproduces A.4 exactly.
    let key = rfc8037_signing_key("");
    assert_eq!(key.sign_compact(None, payload.as_bytes()).unwrap(), compact);
    assert_eq!(
        key.verifying_key(),
        VerifyingKey::from_jwk(&public).unwrap()
    );
    assert_eq!(
        key.secret_bytes().as_slice(),
        b64(str_of(&v["private_jwk"], "d")).as_slice()
    );

    // The private JWK is refused where a public key is expected.
    assert!(serde_json::from_value::<Jwk>(v["private_jwk"].clone()).is_err());

    // A one-byte change anywhere in the signature breaks it.
    let (input, sig) = compact.rsplit_once('.').unwrap();
    let mut sig = b64(sig);
    sig[10] ^= 1;
    let forged = format!("{input}.{}", sentryagent_b64(&sig));
    assert_eq!(
        verify_compact(&forged, &keys).unwrap_err(),
        JoseError::BadSignature
    );
}

fn sentryagent_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Cases {
    keys: KeySet,
    validation: Validation,
    cases: Vec<(String, String, bool)>,
}

fn cases() -> Cases {
    let v: Value = serde_json::from_str(JWT_CASES).unwrap();
    let jwk: Jwk = serde_json::from_value(v["trusted_key"]["jwk"].clone()).unwrap();
    let mut keys = KeySet::new();
    keys.insert(
        str_of(&v["trusted_key"], "kid"),
        VerifyingKey::from_jwk(&jwk).unwrap(),
    );
    let validation = Validation {
        issuer: str_of(&v, "issuer").to_owned(),
        audience: Some(str_of(&v, "audience").to_owned()),
        leeway: Duration::ZERO,
        now: Timestamp::from_unix_secs(v["now"].as_i64().unwrap()),
        required_typ: None,
    };
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                str_of(c, "name").to_owned(),
                str_of(c, "token").to_owned(),
                c["valid"].as_bool().unwrap(),
            )
        })
        .collect();
    Cases {
        keys,
        validation,
        cases,
    }
}

#[test]
fn every_jwt_case_behaves_as_stated() {
    let Cases {
        keys,
        validation,
        cases,
    } = cases();
    assert_eq!(cases.len(), JWT_CASE_COUNT);
    let names: HashSet<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names.len(), JWT_CASE_COUNT, "case names are unique");
    assert_eq!(cases.iter().filter(|c| c.2).count(), 1);

    for (name, token, valid) in &cases {
        let result = verify_jwt::<RegisteredClaims, _>(token, &keys, &validation);
        assert_eq!(result.is_ok(), *valid, "case {name}: {result:?}");
        // The same verdict from the raw JWS layer (the invalid cases are
        // all invalid as signatures, not as claims).
        assert_eq!(verify_compact(token, &keys).is_ok(), *valid, "case {name}");

        let expected = match name.as_str() {
            "alg_confusion_hs256_keyed_with_public_key"
            | "alg_confusion_hs256_keyed_with_jwk_json" => Some(JoseError::UnsupportedAlgorithm),
            "signature_of_other_payload" => Some(JoseError::BadSignature),
            "unknown_critical_header" => Some(JoseError::CriticalHeader),
            "unknown_kid" => Some(JoseError::UnknownKey),
            "jwk_embedded_in_header" => Some(JoseError::EmbeddedKey),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(result.unwrap_err(), expected, "case {name}");
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct AccessClaims {
    #[serde(flatten)]
    registered: RegisteredClaims,
    scope: String,
}

#[test]
fn valid_case_claims_and_typ() {
    let Cases {
        keys,
        mut validation,
        cases,
    } = cases();
    let token = &cases.iter().find(|c| c.0 == "valid").unwrap().1;
    let (header, claims) = verify_jwt::<AccessClaims, _>(token, &keys, &validation).unwrap();
    assert_eq!(header.kid.as_deref(), Some("rfc8037"));
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims.scope, "read");
    assert_eq!(claims.registered.sub.as_deref(), Some("agent_01"));
    assert_eq!(claims.registered.jti.as_deref(), Some("tok_1"));
    assert!(claims.registered.aud.contains("https://api.example"));

    for (typ, ok) in [
        ("at+jwt", true),
        ("application/at+jwt", true),
        ("AT+JWT", true),
        ("JWT", false),
        ("application/jwt", false),
    ] {
        validation.required_typ = Some(typ.to_owned());
        assert_eq!(
            verify_jwt::<RegisteredClaims, _>(token, &keys, &validation).is_ok(),
            ok,
            "typ {typ}"
        );
    }
    validation.required_typ = None;

    // The vector's time window: nbf 1763700000, exp 1763703600.
    validation.now = Timestamp::from_unix_secs(1_763_703_600);
    assert_eq!(
        verify_jwt::<RegisteredClaims, _>(token, &keys, &validation).unwrap_err(),
        JoseError::Expired
    );
    validation.now = Timestamp::from_unix_secs(1_763_699_999);
    assert_eq!(
        verify_jwt::<RegisteredClaims, _>(token, &keys, &validation).unwrap_err(),
        JoseError::NotYetValid
    );
    validation.now = Timestamp::from_unix_secs(1_763_700_000);
    assert!(verify_jwt::<RegisteredClaims, _>(token, &keys, &validation).is_ok());

    // A payload of the wrong shape for the caller's type.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct NeedsRoles {
        roles: Vec<String>,
    }
    assert!(matches!(
        verify_jwt::<NeedsRoles, _>(token, &keys, &validation).unwrap_err(),
        JoseError::Claims(_)
    ));
}

// ---------------------------------------------------------------------------
// Own tokens: ES256, algorithm confusion, claim checks.
// ---------------------------------------------------------------------------

const ISS: &str = "https://idp.example";
const AUD: &str = "https://api.example";
const NOW: i64 = 1_800_000_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Claims {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

fn claims() -> Claims {
    Claims {
        iss: Some(ISS.into()),
        sub: Some("agent_1".into()),
        aud: Some(AUD.into()),
        exp: Some(NOW + 300),
        nbf: Some(NOW - 10),
        iat: Some(NOW - 10),
        scope: Some("read write".into()),
    }
}

fn validation(now_secs: i64, leeway_secs: u64) -> Validation {
    Validation {
        issuer: ISS.into(),
        audience: Some(AUD.into()),
        leeway: Duration::from_secs(leeway_secs),
        now: Timestamp::from_unix_secs(now_secs),
        required_typ: Some("at+jwt".into()),
    }
}

fn ed_key() -> SigningKey {
    SigningKey::from_secret_bytes(Algorithm::EdDSA, "k1", &[5u8; 32]).unwrap()
}

fn set_of(key: &SigningKey) -> KeySet {
    let mut s = KeySet::new();
    s.insert(key.kid(), key.verifying_key());
    s
}

fn check(key: &SigningKey, c: &Claims, v: &Validation) -> Result<Claims, JoseError> {
    let token = encode_claims(key, "at+jwt", c).unwrap();
    verify_jwt::<Claims, _>(&token, &set_of(key), v).map(|(_, c)| c)
}

#[test]
fn es256_round_trip() {
    let key = SigningKey::generate(Algorithm::ES256, "es-1").unwrap();
    let token = encode_claims(&key, "at+jwt", &claims()).unwrap();
    let c = parse_compact(&token).unwrap();
    assert_eq!(c.header().alg, Algorithm::ES256);
    assert_eq!(c.header().kid.as_deref(), Some("es-1"));
    assert_eq!(c.signature().len(), 64);

    // Keys travel as a JWKS.
    let jwks: JwkSet = serde_json::from_str(
        &serde_json::to_string(&JwkSet {
            keys: vec![key.public_jwk()],
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks.keys[0].kty, "EC");
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let (_, got) = verify_jwt::<Claims, _>(&token, &keys, &validation(NOW, 0)).unwrap();
    assert_eq!(got, claims());

    // Persisted secret bytes restore the same key.
    let again =
        SigningKey::from_secret_bytes(Algorithm::ES256, "es-1", key.secret_bytes().as_slice())
            .unwrap();
    let token2 = encode_claims(&again, "at+jwt", &claims()).unwrap();
    assert!(verify_jwt::<Claims, _>(&token2, &keys, &validation(NOW, 0)).is_ok());
}

#[test]
fn algorithm_confusion_is_refused() {
    let ed = SigningKey::generate(Algorithm::EdDSA, "shared").unwrap();
    let es = SigningKey::generate(Algorithm::ES256, "shared").unwrap();
    let t_ed = encode_claims(&ed, "at+jwt", &claims()).unwrap();
    let t_es = encode_claims(&es, "at+jwt", &claims()).unwrap();
    let v = validation(NOW, 0);

    // An EdDSA-keyed set refuses an ES256 token, and vice versa.
    assert_eq!(
        verify_jwt::<Claims, _>(&t_es, &set_of(&ed), &v).unwrap_err(),
        JoseError::UnknownKey
    );
    assert_eq!(
        verify_jwt::<Claims, _>(&t_ed, &set_of(&es), &v).unwrap_err(),
        JoseError::UnknownKey
    );
    assert!(verify_jwt::<Claims, _>(&t_ed, &set_of(&ed), &v).is_ok());
    assert!(verify_jwt::<Claims, _>(&t_es, &set_of(&es), &v).is_ok());

    // Relabelling the header's alg does not help: the signature no longer
    // matches, or the key refuses the algorithm.
    let (h, rest) = t_ed.split_once('.').unwrap();
    let header = String::from_utf8(b64(h)).unwrap().replace("EdDSA", "ES256");
    let relabelled = format!("{}.{rest}", sentryagent_b64(header.as_bytes()));
    assert!(verify_jwt::<Claims, _>(&relabelled, &set_of(&ed), &v).is_err());
    assert!(verify_jwt::<Claims, _>(&relabelled, &set_of(&es), &v).is_err());

    // A JWK whose alg contradicts its key type is unusable.
    let mut jwk = ed.public_jwk();
    jwk.alg = Some("ES256".into());
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
}

#[test]
fn time_claims_with_leeway_edges() {
    let key = ed_key();
    let c = claims(); // exp NOW+300, nbf NOW-10, iat NOW-10
    let exp = NOW + 300;

    // exp: accepted while now < exp + leeway.
    assert!(check(&key, &c, &validation(exp - 1, 0)).is_ok());
    assert_eq!(
        check(&key, &c, &validation(exp, 0)),
        Err(JoseError::Expired)
    );
    assert!(check(&key, &c, &validation(exp + 59, 60)).is_ok());
    assert_eq!(
        check(&key, &c, &validation(exp + 60, 60)),
        Err(JoseError::Expired)
    );
    // Sub-second precision: one microsecond before expiry is fine.
    let mut v = validation(0, 0);
    v.now = Timestamp::from_unix_micros(exp * 1_000_000 - 1);
    assert!(check(&key, &c, &v).is_ok());

    // nbf: accepted once now + leeway >= nbf.
    let mut future = claims();
    future.nbf = Some(NOW + 100);
    future.iat = None;
    assert_eq!(
        check(&key, &future, &validation(NOW + 99, 0)),
        Err(JoseError::NotYetValid)
    );
    assert!(check(&key, &future, &validation(NOW + 100, 0)).is_ok());
    assert!(check(&key, &future, &validation(NOW + 70, 30)).is_ok());
    assert_eq!(
        check(&key, &future, &validation(NOW + 69, 30)),
        Err(JoseError::NotYetValid)
    );

    // iat: at most leeway in the future.
    let mut issued_later = claims();
    issued_later.iat = Some(NOW + 20);
    issued_later.nbf = None;
    assert!(matches!(
        check(&key, &issued_later, &validation(NOW, 0)),
        Err(JoseError::Claims(_))
    ));
    assert!(check(&key, &issued_later, &validation(NOW, 20)).is_ok());
    assert!(check(&key, &issued_later, &validation(NOW, 19)).is_err());

    // exp is required.
    let mut no_exp = claims();
    no_exp.exp = None;
    assert_eq!(
        check(&key, &no_exp, &validation(NOW, 0)),
        Err(JoseError::Claims("missing exp"))
    );

    // Extreme values do not overflow.
    let mut extreme = claims();
    extreme.exp = Some(i64::MAX);
    extreme.nbf = Some(i64::MIN);
    extreme.iat = Some(i64::MIN);
    assert!(check(&key, &extreme, &validation(NOW, u64::MAX)).is_ok());
    extreme.exp = Some(i64::MIN);
    assert_eq!(
        check(&key, &extreme, &validation(NOW, 0)),
        Err(JoseError::Expired)
    );
}

#[test]
fn issuer_audience_and_typ() {
    let key = ed_key();
    let v = validation(NOW, 0);
    let mut c = claims();
    c.iss = Some("https://evil.example".into());
    assert_eq!(check(&key, &c, &v), Err(JoseError::Claims("wrong issuer")));
    c.iss = None;
    assert_eq!(check(&key, &c, &v), Err(JoseError::Claims("wrong issuer")));

    let mut c = claims();
    c.aud = Some("https://other.example".into());
    assert_eq!(
        check(&key, &c, &v),
        Err(JoseError::Claims("wrong audience"))
    );
    c.aud = None;
    assert_eq!(
        check(&key, &c, &v),
        Err(JoseError::Claims("wrong audience"))
    );
    c.aud = Some(Audience::Many(vec![
        "https://other.example".into(),
        AUD.into(),
    ]));
    assert!(check(&key, &c, &v).is_ok());
    c.aud = Some(Audience::Many(vec![]));
    assert!(check(&key, &c, &v).is_err());
    // Audience check off.
    let mut no_aud_check = v.clone();
    no_aud_check.audience = None;
    c.aud = None;
    assert!(check(&key, &c, &no_aud_check).is_ok());

    // typ required but absent, or different.
    let token = encode_claims(&key, "", &claims()).unwrap();
    assert_eq!(
        verify_jwt::<Claims, _>(&token, &set_of(&key), &v).unwrap_err(),
        JoseError::Claims("wrong typ")
    );
    let token = encode_claims(&key, "JWT", &claims()).unwrap();
    assert!(verify_jwt::<Claims, _>(&token, &set_of(&key), &v).is_err());
    let token = encode_claims(&key, "application/at+jwt", &claims()).unwrap();
    assert!(verify_jwt::<Claims, _>(&token, &set_of(&key), &v).is_ok());
}

#[test]
fn payload_shape_rules() {
    let key = ed_key();
    let v = validation(NOW, 0);
    let keys = set_of(&key);
    let sign = |payload: &str| {
        key.sign_compact(Some("at+jwt"), payload.as_bytes())
            .unwrap()
    };

    // Not an object (arrays would otherwise be read positionally).
    let array = format!(r#"["{ISS}",null,null,{}]"#, NOW + 60);
    assert!(verify_jwt::<Value, _>(&sign(&array), &keys, &v).is_err());
    assert!(verify_jwt::<Value, _>(&sign("42"), &keys, &v).is_err());
    assert!(verify_jwt::<Value, _>(&sign("not json"), &keys, &v).is_err());
    // Duplicate or mistyped registered claims.
    let base = format!(r#""iss":"{ISS}","aud":"{AUD}","exp":{}"#, NOW + 60);
    assert!(verify_jwt::<Value, _>(&sign(&format!("{{{base}}}")), &keys, &v).is_ok());
    assert!(verify_jwt::<Value, _>(&sign(&format!(r#" {{{base}}} "#)), &keys, &v).is_ok());
    for bad in [
        format!(r#"{{{base},"exp":{}}}"#, NOW + 60),
        format!(r#"{{{base},"iss":"{ISS}"}}"#),
        format!(r#"{{{base},"sub":"a","sub":"b"}}"#),
        format!(r#"{{{base},"sub":1}}"#),
        format!(r#"{{{base},"nbf":"0"}}"#),
        format!(r#"{{{base},"iat":1.5}}"#),
        format!(r#"{{"iss":"{ISS}","aud":[1],"exp":{}}}"#, NOW + 60),
        format!(r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{}.5}}"#, NOW + 60),
        format!(r#"{{{base}}} {{}}"#),
    ] {
        assert!(
            verify_jwt::<Value, _>(&sign(&bad), &keys, &v).is_err(),
            "{bad}"
        );
    }
    // Escaped strings are compared unescaped.
    let escaped = format!(
        r#"{{"iss":"https:\/\/idp.example","aud":["x","https:\/\/api.example"],"exp":{}}}"#,
        NOW + 60
    );
    assert!(verify_jwt::<Value, _>(&sign(&escaped), &keys, &v).is_ok());

    // encode_claims refuses non-objects.
    assert!(encode_claims(&key, "at+jwt", &[1, 2]).is_err());
    assert!(encode_claims(&key, "at+jwt", "x").is_err());
}

#[test]
fn token_size_limit() {
    let key = ed_key();
    let mut c = claims();
    c.scope = Some("s".repeat(MAX_TOKEN_LEN));
    assert_eq!(
        encode_claims(&key, "at+jwt", &c).unwrap_err(),
        JoseError::TooLarge
    );
    // The largest payload that fits still verifies.
    let mut lo = 0usize;
    let mut hi = MAX_TOKEN_LEN;
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        c.scope = Some("s".repeat(mid));
        if encode_claims(&key, "at+jwt", &c).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    c.scope = Some("s".repeat(lo));
    let token = encode_claims(&key, "at+jwt", &c).unwrap();
    assert!(token.len() <= MAX_TOKEN_LEN && token.len() > MAX_TOKEN_LEN - 4);
    assert!(verify_jwt::<Claims, _>(&token, &set_of(&key), &validation(NOW, 0)).is_ok());
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

fn b64url_and_dots() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_.=+/-]{0,300}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse_compact(&s);
        let _ = verify_compact(&s, &set_of(&ed_key()));
    }

    #[test]
    fn parse_never_panics_on_token_alphabet(s in b64url_and_dots()) {
        let _ = parse_compact(&s);
        let _ = verify_jwt::<Value, _>(&s, &set_of(&ed_key()), &validation(NOW, 0));
    }

    #[test]
    fn parse_never_panics_on_near_tokens(
        header in proptest::string::string_regex(r#"\{("[a-z0-9]{1,4}":("[A-Za-z0-9]{0,6}"|[0-9]{1,3}|true|false|null|\[\]|\{\}),?){0,4}\}"#).unwrap(),
        payload in any::<Vec<u8>>(),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let t = format!("{}.{}.{}", sentryagent_b64(header.as_bytes()), sentryagent_b64(&payload), sentryagent_b64(&sig));
        let r = verify_jwt::<Value, _>(&t, &set_of(&ed_key()), &validation(NOW, 0));
        prop_assert!(r.is_err());
    }

    #[test]
    fn token_round_trip(
        es in any::<bool>(),
        sub in "\\PC{0,40}",
        scope in any::<String>().prop_map(|s| s.chars().take(60).collect::<String>()),
        iat in (NOW - 1_000_000)..NOW,
        ttl in 1i64..1_000_000,
        aud_many in any::<bool>(),
    ) {
        let key = if es {
            SigningKey::from_secret_bytes(Algorithm::ES256, "p", &[9u8; 32]).unwrap()
        } else {
            ed_key()
        };
        let c = Claims {
            iss: Some(ISS.into()),
            sub: Some(sub),
            aud: Some(if aud_many { Audience::Many(vec!["x".into(), AUD.into()]) } else { AUD.into() }),
            exp: Some(NOW + ttl),
            nbf: None,
            iat: Some(iat),
            scope: Some(scope),
        };
        let token = encode_claims(&key, "at+jwt", &c).unwrap();
        let (header, got) = verify_jwt::<Claims, _>(&token, &set_of(&key), &validation(NOW, 0)).unwrap();
        prop_assert_eq!(header.alg, key.alg());
        prop_assert_eq!(got, c);
    }

    #[test]
    fn any_one_character_change_is_refused(pos in any::<prop::sample::Index>(), repl in proptest::string::string_regex("[A-Za-z0-9_.-]").unwrap()) {
        let key = ed_key();
        let token = encode_claims(&key, "at+jwt", &claims()).unwrap();
        let i = pos.index(token.len());
        prop_assume!(token.get(i..i + 1) != Some(repl.as_str()));
        let mut mutated = token.clone();
        mutated.replace_range(i..i + 1, &repl);
        prop_assert!(verify_jwt::<Claims, _>(&mutated, &set_of(&key), &validation(NOW, 0)).is_err());
    }
}

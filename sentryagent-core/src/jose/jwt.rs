//! JSON Web Tokens (RFC 7519) over compact JWS, validated per RFC 8725.
//!
//! [`verify_jwt`] verifies the signature first (see [`verify_compact`]) and
//! then the registered claims:
//!
//! * the payload must be a JSON object, without duplicate registered claims;
//! * `exp` is **required**, and the token is accepted while
//!   `now < exp + leeway`;
//! * `nbf`, if present, must satisfy `now + leeway >= nbf`;
//! * `iat`, if present, must not be more than `leeway` in the future;
//! * `iss` must equal [`Validation::issuer`];
//! * `aud` (a string or an array of strings) must contain
//!   [`Validation::audience`] when that is set;
//! * the header `typ` must match [`Validation::required_typ`] when that is
//!   set, compared case-insensitively and with an optional `application/`
//!   prefix (`at+jwt` matches `application/at+jwt`).
//!
//! Time claims are integers (NumericDate seconds); fractional values are
//! refused.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::JoseError;
use super::jws::{Header, KeyResolver, SigningKey, verify_compact};
use crate::Timestamp;

/// What a JWT must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The required `iss`.
    pub issuer: String,
    /// The audience that `aud` must contain; `None` skips the check.
    pub audience: Option<String>,
    /// Tolerated clock skew, applied to `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The current time.
    pub now: Timestamp,
    /// The required header `typ` (e.g. `at+jwt`); `None` skips the check.
    pub required_typ: Option<String>,
}

impl Validation {
    /// Validation for `issuer` at `now`: no audience or `typ` check, no
    /// leeway.
    pub fn new(issuer: impl Into<String>, now: Timestamp) -> Validation {
        Validation {
            issuer: issuer.into(),
            audience: None,
            leeway: Duration::ZERO,
            now,
            required_typ: None,
        }
    }
}

/// The `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Audience {
    /// A single audience (a JSON string).
    One(String),
    /// Several audiences (a JSON array of strings).
    Many(Vec<String>),
}

impl Default for Audience {
    /// No audience (an empty array, omitted when serialized in
    /// [`RegisteredClaims`]).
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

impl Audience {
    /// Whether `audience` is one of the audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(v) => v.iter().any(|a| a == audience),
        }
    }

    /// Whether there is no audience.
    pub fn is_empty(&self) -> bool {
        matches!(self, Audience::Many(v) if v.is_empty())
    }

    /// The audiences.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(v) => v,
        };
        slice.iter().map(String::as_str)
    }
}

impl From<String> for Audience {
    fn from(a: String) -> Self {
        Audience::One(a)
    }
}

impl From<&str> for Audience {
    fn from(a: &str) -> Self {
        Audience::One(a.to_owned())
    }
}

impl From<Vec<String>> for Audience {
    fn from(v: Vec<String>) -> Self {
        Audience::Many(v)
    }
}

/// The registered claims of RFC 7519 §4.1. Use it as the claims type, or
/// `#[serde(flatten)]` it into your own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredClaims {
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience(s).
    #[serde(default, skip_serializing_if = "Audience::is_empty")]
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

// ---------------------------------------------------------------------------
// Zero-copy view of the registered claims, for validation.
// ---------------------------------------------------------------------------

/// A JSON string, borrowed from the payload when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }
}

/// `aud` as a string or an array of strings.
enum AudRef<'a> {
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

impl AudRef<'_> {
    fn contains(&self, audience: &str) -> bool {
        match self {
            AudRef::One(a) => a.0 == audience,
            AudRef::Many(v) => v.iter().any(|a| a.0 == audience),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AudRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AudVisitor;
        impl<'de> Visitor<'de> for AudVisitor {
            type Value = AudRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<AudRef<'de>, E> {
                StrVisitor.visit_borrowed_str(v).map(AudRef::One)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AudRef<'de>, E> {
                StrVisitor.visit_str(v).map(AudRef::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AudRef<'de>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(a) = seq.next_element::<Str<'de>>()? {
                    v.push(a);
                }
                Ok(AudRef::Many(v))
            }
        }
        d.deserialize_any(AudVisitor)
    }
}

/// The claims that validation reads. Unknown members are left to the
/// caller's type; `sub` and `jti` are listed so that their type is checked
/// and duplicates are refused.
#[derive(Deserialize)]
struct ClaimsRef<'a> {
    #[serde(borrow, default)]
    iss: Option<Str<'a>>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    sub: Option<Str<'a>>,
    #[serde(borrow, default)]
    aud: Option<AudRef<'a>>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    jti: Option<Str<'a>>,
}

/// `application/` prefix, compared case-insensitively.
const APPLICATION: &str = "application/";

/// A media type without the `application/` prefix when the rest has no `/`
/// (RFC 7515 §4.1.9).
fn short_media_type(s: &str) -> &str {
    match (s.get(..APPLICATION.len()), s.get(APPLICATION.len()..)) {
        (Some(prefix), Some(rest))
            if prefix.eq_ignore_ascii_case(APPLICATION) && !rest.contains('/') =>
        {
            rest
        }
        _ => s,
    }
}

/// Whether two `typ` values name the same media type.
fn typ_matches(required: &str, actual: &str) -> bool {
    short_media_type(required).eq_ignore_ascii_case(short_media_type(actual))
}

/// Seconds to microseconds, saturating.
fn secs_to_micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

fn check_claims(payload: &[u8], header: &Header, v: &Validation) -> Result<(), JoseError> {
    if let Some(required) = v.required_typ.as_deref() {
        match header.typ.as_deref() {
            Some(typ) if typ_matches(required, typ) => {}
            _ => return Err(JoseError::Claims("wrong typ")),
        }
    }
    let first = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(JoseError::Claims("payload is not a JSON object"));
    }
    // The claims set is UTF-8 JSON (RFC 7519 §7.2); serde_json does not check
    // the UTF-8 of the members it skips, so the whole text is checked first.
    let payload =
        std::str::from_utf8(payload).map_err(|_| JoseError::Claims("payload is not UTF-8"))?;
    let claims: ClaimsRef<'_> =
        serde_json::from_str(payload).map_err(|_| JoseError::Claims("invalid claims"))?;

    let now = v.now.unix_micros();
    let leeway = i64::try_from(v.leeway.as_micros()).unwrap_or(i64::MAX);
    let exp = claims.exp.ok_or(JoseError::Claims("missing exp"))?;
    if now >= secs_to_micros(exp).saturating_add(leeway) {
        return Err(JoseError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(leeway) < secs_to_micros(nbf)
    {
        return Err(JoseError::NotYetValid);
    }
    if let Some(iat) = claims.iat
        && secs_to_micros(iat) > now.saturating_add(leeway)
    {
        return Err(JoseError::Claims("iat is in the future"));
    }
    match &claims.iss {
        Some(iss) if iss.0 == v.issuer => {}
        _ => return Err(JoseError::Claims("wrong issuer")),
    }
    if let Some(audience) = v.audience.as_deref() {
        match &claims.aud {
            Some(aud) if aud.contains(audience) => {}
            _ => return Err(JoseError::Claims("wrong audience")),
        }
    }
    Ok(())
}

/// Verifies a JWT: signature (see [`verify_compact`]), then the claims
/// against `v` (see the [module rules](self)), then deserializes the payload
/// as `T`.
///
/// # Errors
/// Any [`verify_compact`] error; [`JoseError::Expired`],
/// [`JoseError::NotYetValid`], or [`JoseError::Claims`] for a claim that is
/// missing, mistyped or wrong, or a payload that is not a `T`.
pub fn verify_jwt<T: DeserializeOwned, R: KeyResolver + ?Sized>(
    token: &str,
    keys: &R,
    v: &Validation,
) -> Result<(Header, T), JoseError> {
    let (header, payload) = verify_compact(token, keys)?;
    check_claims(&payload, &header, v)?;
    let claims = serde_json::from_slice(&payload)
        .map_err(|_| JoseError::Claims("claims do not match the expected type"))?;
    Ok((header, claims))
}

/// Signs `claims` as a JWT with header `typ` (omitted if empty).
///
/// # Errors
/// [`JoseError::Claims`] if `claims` does not serialize to a JSON object;
/// [`JoseError::TooLarge`] if the token would exceed
/// [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN).
pub fn encode_claims<T: Serialize + ?Sized>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, JoseError> {
    let json =
        serde_json::to_vec(claims).map_err(|_| JoseError::Claims("claims do not serialize"))?;
    if json.first() != Some(&b'{') {
        return Err(JoseError::Claims("claims must be a JSON object"));
    }
    key.sign_compact((!typ.is_empty()).then_some(typ), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, KeySet};

    #[test]
    fn claims_must_be_utf8_even_in_unknown_members() {
        // Found by the `jws_verify` fuzz target: a signed payload with
        // invalid UTF-8 inside a member that validation skips was accepted
        // by a claims type that ignores that member.
        let key = SigningKey::from_secret_bytes(Algorithm::EdDSA, "k", &[1u8; 32]).unwrap();
        let mut keys = KeySet::new();
        keys.insert("k", key.verifying_key());
        let v = Validation::new("https://idp.example", Timestamp::from_unix_secs(100));
        let ok = br#"{"iss":"https://idp.example","exp":200,"scope":"read"}"#;
        let token = key.sign_compact(None, ok).unwrap();
        assert!(verify_jwt::<RegisteredClaims, _>(&token, &keys, &v).is_ok());
        // Only the value of `scope` changes: "r\xe5ad".
        let mut bad_scope = ok.to_vec();
        let at = bad_scope.len() - 5;
        assert_eq!(bad_scope[at], b'e');
        bad_scope[at] = 0xe5;
        let token = key.sign_compact(None, &bad_scope).unwrap();
        assert_eq!(
            verify_jwt::<RegisteredClaims, _>(&token, &keys, &v).unwrap_err(),
            JoseError::Claims("payload is not UTF-8")
        );
    }

    #[test]
    fn typ_comparison() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("at+jwt", "AT+JWT"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(typ_matches("Application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("at+jwt", "jwt"));
        assert!(!typ_matches("at+jwt", "application/"));
        assert!(!typ_matches("foo/bar", "application/foo/bar"));
        assert!(typ_matches("application/foo/bar", "APPLICATION/foo/bar"));
        assert!(!typ_matches("at+jwt", "applicatio\u{e9}at+jwt"));
    }

    #[test]
    fn audience() {
        let one: Audience = serde_json::from_str(r#""a""#).unwrap();
        assert!(one.contains("a") && !one.contains("b"));
        let many: Audience = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert!(many.contains("b"));
        assert_eq!(many.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(Audience::default().is_empty());
        let rc = RegisteredClaims::default();
        assert_eq!(serde_json::to_string(&rc).unwrap(), "{}");
        let rc: RegisteredClaims = serde_json::from_str(r#"{"aud":["x"],"exp":1}"#).unwrap();
        assert_eq!(rc.aud, Audience::Many(vec!["x".into()]));
    }
}

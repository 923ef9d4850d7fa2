//! JSON Web Keys (RFC 7517), public keys only.
//!
//! A [`Jwk`] models the public members of an `OKP` (RFC 8037) or `EC`
//! (RFC 7518 §6.2) key. Deserialization refuses any JWK that carries private
//! or symmetric key material (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`),
//! so a private key can never be accepted where a public one is expected.
//! Other unknown members (`key_ops`, `x5c`, ...) are tolerated and dropped.

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use super::{JoseError, b64_decode_array, b64_encode};

/// A public JSON Web Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    /// Key type: `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public key (OKP) or x coordinate (EC), base64url without padding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (EC only), base64url without padding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm the key is meant for (`EdDSA`, `ES256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use (`sig`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// What a JWK looks like on the wire, including the private members that
/// must be refused.
#[derive(Deserialize)]
struct JwkRepr {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default, deserialize_with = "present")]
    d: bool,
    #[serde(default, deserialize_with = "present")]
    p: bool,
    #[serde(default, deserialize_with = "present")]
    q: bool,
    #[serde(default, deserialize_with = "present")]
    dp: bool,
    #[serde(default, deserialize_with = "present")]
    dq: bool,
    #[serde(default, deserialize_with = "present")]
    qi: bool,
    #[serde(default, deserialize_with = "present")]
    oth: bool,
    #[serde(default, deserialize_with = "present")]
    k: bool,
}

/// `true` when the member is present, whatever its value (even `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

impl<'de> Deserialize<'de> for Jwk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = JwkRepr::deserialize(d)?;
        if r.d || r.p || r.q || r.dp || r.dq || r.qi || r.oth || r.k {
            return Err(de::Error::custom(
                "JWK carries private or symmetric key material",
            ));
        }
        Ok(Jwk {
            kty: r.kty,
            crv: r.crv,
            x: r.x,
            y: r.y,
            kid: r.kid,
            alg: r.alg,
            use_: r.use_,
        })
    }
}

/// The RFC 7638 thumbprint of an OKP key; `crv` and `x` must be
/// JSON-string-safe (checked by the caller or known to be base64url).
fn okp_thumbprint(crv_json: &str, x_json: &str) -> String {
    let canonical = format!(r#"{{"crv":{crv_json},"kty":"OKP","x":{x_json}}}"#);
    b64_encode(&Sha256::digest(canonical.as_bytes()))
}

/// A string as a JSON string literal.
fn json_str(s: &str) -> Result<String, JoseError> {
    serde_json::to_string(s).map_err(|_| JoseError::Malformed("JWK member"))
}

impl Jwk {
    /// The JWK of an Ed25519 public key: `kty` `OKP`, `crv` `Ed25519`, `x` the
    /// key in base64url. No `kid`, `alg` or `use`.
    pub fn ed25519(public: &[u8; 32]) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: Some("Ed25519".to_owned()),
            x: Some(b64_encode(public)),
            y: None,
            kid: None,
            alg: None,
            use_: None,
        }
    }

    /// The RFC 7638 thumbprint: base64url (no padding) of the SHA-256 of the
    /// canonical JSON of the required members in lexicographic order
    /// (`crv`, `kty`, `x` for OKP; `crv`, `kty`, `x`, `y` for EC).
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] for another key type or a missing member.
    pub fn thumbprint(&self) -> Result<String, JoseError> {
        let crv = self
            .crv
            .as_deref()
            .ok_or(JoseError::InvalidKey("missing crv"))?;
        let x = self
            .x
            .as_deref()
            .ok_or(JoseError::InvalidKey("missing x"))?;
        match self.kty.as_str() {
            "OKP" => Ok(okp_thumbprint(&json_str(crv)?, &json_str(x)?)),
            "EC" => {
                let y = self
                    .y
                    .as_deref()
                    .ok_or(JoseError::InvalidKey("missing y"))?;
                let canonical = format!(
                    r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                    json_str(crv)?,
                    json_str(x)?,
                    json_str(y)?
                );
                Ok(b64_encode(&Sha256::digest(canonical.as_bytes())))
            }
            _ => Err(JoseError::InvalidKey("unsupported key type")),
        }
    }

    /// The Ed25519 public key bytes of an `OKP`/`Ed25519` JWK.
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] unless `kty` is `OKP`, `crv` is `Ed25519`,
    /// `x` is strict base64url of exactly 32 bytes, and those bytes are a
    /// valid Ed25519 point that is not of small order.
    pub fn ed25519_public_key(&self) -> Result<[u8; 32], JoseError> {
        if self.kty != "OKP" {
            return Err(JoseError::InvalidKey("not an OKP key"));
        }
        if self.crv.as_deref() != Some("Ed25519") {
            return Err(JoseError::InvalidKey("not an Ed25519 key"));
        }
        let x = self
            .x
            .as_deref()
            .ok_or(JoseError::InvalidKey("missing x"))?;
        let bytes = b64_decode_array::<32>(x).map_err(|_| JoseError::InvalidKey("bad x"))?;
        check_ed25519_point(&bytes)?;
        Ok(bytes)
    }

    /// The RFC 7638 thumbprint of an Ed25519 public key (cannot fail).
    pub(crate) fn ed25519_thumbprint(public: &[u8; 32]) -> String {
        // Base64url needs no JSON escaping.
        okp_thumbprint("\"Ed25519\"", &format!("\"{}\"", b64_encode(public)))
    }
}

/// Checks that 32 bytes are a usable Ed25519 public key: a valid point, not
/// of small order.
pub(crate) fn check_ed25519_point(
    bytes: &[u8; 32],
) -> Result<ed25519_dalek::VerifyingKey, JoseError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|_| JoseError::InvalidKey("not a valid Ed25519 point"))?;
    if key.is_weak() {
        return Err(JoseError::InvalidKey("small-order Ed25519 point"));
    }
    Ok(key)
}

/// A JWK Set (RFC 7517 §5): the document served at a `jwks_uri`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn rfc8037_thumbprint() {
        let jwk: Jwk = serde_json::from_str(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
        ))
        .unwrap();
        assert_eq!(
            jwk.thumbprint().unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let key = jwk.ed25519_public_key().unwrap();
        assert_eq!(Jwk::ed25519(&key), jwk);
        assert_eq!(
            Jwk::ed25519_thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_private_material_tolerates_public_extras() {
        let private = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}}"#
        );
        assert!(serde_json::from_str::<Jwk>(&private).is_err());
        let null_d = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":null}}"#);
        assert!(serde_json::from_str::<Jwk>(&null_d).is_err());
        assert!(serde_json::from_str::<Jwk>(r#"{"kty":"oct","k":"AAAA"}"#).is_err());
        let set = format!(r#"{{"keys":[{private}]}}"#);
        assert!(serde_json::from_str::<JwkSet>(&set).is_err());

        let extras = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","key_ops":["verify"],"x5c":[],"use":"sig","kid":"a"}}"#
        );
        let jwk: Jwk = serde_json::from_str(&extras).unwrap();
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
        assert_eq!(jwk.kid.as_deref(), Some("a"));
        let back = serde_json::to_string(&jwk).unwrap();
        assert!(back.contains(r#""use":"sig""#));
        assert!(!back.contains("key_ops"));
        // Duplicate members are refused.
        assert!(serde_json::from_str::<Jwk>(r#"{"kty":"OKP","kty":"EC"}"#).is_err());
    }

    #[test]
    fn ed25519_key_checks() {
        let mut jwk = Jwk::ed25519(&[0u8; 32]);
        // The all-zero encoding is a small-order point.
        assert!(jwk.ed25519_public_key().is_err());
        jwk.x = Some(format!("{RFC8037_X}A"));
        assert!(jwk.ed25519_public_key().is_err());
        jwk.x = Some(RFC8037_X.to_owned());
        assert!(jwk.ed25519_public_key().is_ok());
        jwk.crv = Some("X25519".to_owned());
        assert!(jwk.ed25519_public_key().is_err());
        jwk.crv = Some("Ed25519".to_owned());
        jwk.kty = "EC".to_owned();
        assert!(jwk.ed25519_public_key().is_err());
        jwk.kty = "RSA".to_owned();
        assert!(jwk.thumbprint().is_err());
    }
}

//! `issue-token`: client credentials against `/oauth2/token`, by client
//! secret (client_secret_basic) or by an assertion signed with the agent's
//! private key (private_key_jwt), and verification against the JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use sentryagent_core::jose::{self, Algorithm, JwkSet, KeySet, SigningKey, Validation};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::session::read_secret_stdin;
use crate::Ctx;
use crate::cli::{AuthMethod, IssueTokenArgs};
use crate::client::enc;
use crate::config::SavedCredentials;
use crate::error::CliError;
use crate::output::{print_json, s};

/// RFC 7523 client assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of a client assertion.
const ASSERTION_LIFETIME_SECS: i64 = 60;

/// How the client authenticates.
enum ClientAuth {
    Secret(Zeroizing<String>),
    PrivateKey(Value),
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The server's issuer (from its RFC 8414 metadata): the audience of
/// client assertions and the `iss` of tokens.
async fn issuer(ctx: &Ctx) -> Result<String, CliError> {
    let req = ctx
        .client
        .public(Method::GET, "/.well-known/oauth-authorization-server");
    let meta = ctx.client.json(req).await?;
    let iss = s(&meta, "issuer");
    if iss.is_empty() {
        return Err(CliError::other(format!(
            "the server at {} publishes no issuer in its metadata",
            ctx.client.base()
        )));
    }
    Ok(iss.to_owned())
}

/// Signs a client assertion with an Ed25519 private JWK, using the core's
/// JOSE signer.
fn assertion(jwk: &Value, client_id: &str, audience: &str) -> Result<String, CliError> {
    let bad = |why: &str| CliError::other(format!("the private key cannot sign: {why}"));
    if s(jwk, "kty") != "OKP" || s(jwk, "crv") != "Ed25519" {
        return Err(bad("only Ed25519 (OKP) keys are supported"));
    }
    let d = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(s(jwk, "d"))
            .map_err(|_| bad("\"d\" is not base64url"))?,
    );
    let key = SigningKey::from_secret_bytes(Algorithm::EdDSA, s(jwk, "kid"), &d)
        .map_err(|_| bad("\"d\" is not an Ed25519 key"))?;
    let now = now_secs();
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    jose::encode_claims(&key, "", &claims).map_err(|e| bad(&e.to_string()))
}

/// Verifies `token` against the server's JWKS and issuer with the core's
/// verifier; returns its header and claims.
async fn verify(ctx: &Ctx, token: &str, issuer: &str) -> Result<(Value, Value), CliError> {
    let req = ctx.client.public(Method::GET, "/.well-known/jwks.json");
    let jwks: JwkSet = serde_json::from_value(ctx.client.json(req).await?)
        .map_err(|e| CliError::other(format!("the server's JWKS is not valid: {e}")))?;
    let keys = KeySet::from_jwks(&jwks)
        .map_err(|e| CliError::other(format!("the server's JWKS is not usable: {e}")))?;
    let now = sentryagent_core::Timestamp::from_unix_secs(now_secs());
    let v = Validation::new(issuer, now);
    let (header, claims) = jose::verify_jwt::<Value, _>(token, &keys, &v)
        .map_err(|e| CliError::other(format!("the token does not verify: {e}")))?;
    let header = serde_json::to_value(&header).unwrap_or(Value::Null);
    Ok((header, claims))
}

/// `issue-token`.
pub(crate) async fn issue(ctx: &mut Ctx, a: IssueTokenArgs) -> Result<(), CliError> {
    let (client_id, auth) = match (&a.agent, &a.client_id) {
        (Some(agent), _) => {
            let creds = SavedCredentials::load(agent)?;
            let auth = match a.auth {
                AuthMethod::Secret => ClientAuth::Secret(Zeroizing::new(
                    creds.client_secret.clone().ok_or_else(|| {
                        CliError::usage(format!(
                            "no client secret saved for agent {agent}; rotate-credentials {agent} --save"
                        ))
                    })?,
                )),
                AuthMethod::PrivateKeyJwt => {
                    ClientAuth::PrivateKey(creds.private_jwk.clone().ok_or_else(|| {
                        CliError::usage(format!(
                            "no private key saved for agent {agent} (the server generates one only when the agent brings no key)"
                        ))
                    })?)
                }
            };
            (creds.client_id, auth)
        }
        (None, Some(id)) => {
            let auth = match a.auth {
                AuthMethod::Secret => {
                    let secret = if a.client_secret_stdin {
                        read_secret_stdin("client secret")?
                    } else {
                        match std::env::var("SENTRYAGENT_CLIENT_SECRET") {
                            Ok(s) if !s.is_empty() => Zeroizing::new(s),
                            _ => {
                                return Err(CliError::usage(
                                    "no client secret: pipe it with --client-secret-stdin or set SENTRYAGENT_CLIENT_SECRET",
                                ));
                            }
                        }
                    };
                    ClientAuth::Secret(secret)
                }
                AuthMethod::PrivateKeyJwt => {
                    let path = a.private_key.as_ref().ok_or_else(|| {
                        CliError::usage(
                            "--auth private-key-jwt with --client-id needs --private-key FILE",
                        )
                    })?;
                    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                        CliError::usage(format!("cannot read {}: {e}", path.display()))
                    })?);
                    let jwk: Value = serde_json::from_str(&text).map_err(|_| {
                        CliError::usage(format!("{} is not a JWK (JSON)", path.display()))
                    })?;
                    ClientAuth::PrivateKey(jwk)
                }
            };
            (id.clone(), auth)
        }
        (None, None) => return Err(CliError::usage("give --agent ID or --client-id ID")),
    };

    let iss = if matches!(auth, ClientAuth::PrivateKey(_)) || a.decode {
        Some(issuer(ctx).await?)
    } else {
        None
    };
    let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
    let scope = a
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    if !scope.is_empty() {
        form.push(("scope", scope));
    }
    for aud in &a.audiences {
        form.push(("audience", aud.clone()));
    }
    let mut req = ctx.client.public(Method::POST, "/oauth2/token");
    match &auth {
        ClientAuth::Secret(secret) => {
            // RFC 6749 §2.3.1: form-encode both before Basic.
            req = req.basic_auth(enc(&client_id), Some(enc(secret)));
        }
        ClientAuth::PrivateKey(jwk) => {
            let audience = iss.clone().unwrap_or_default();
            form.push(("client_id", client_id.clone()));
            form.push(("client_assertion_type", JWT_BEARER.into()));
            form.push(("client_assertion", assertion(jwk, &client_id, &audience)?));
        }
    }
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let req = req
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    let token = ctx
        .ui
        .spin("requesting a token", ctx.client.json(req))
        .await?;
    let access = s(&token, "access_token").to_owned();
    if a.decode {
        let (header, claims) = verify(ctx, &access, iss.as_deref().unwrap_or_default()).await?;
        if ctx.ui.json {
            print_json(&json!({"token": token, "header": header, "claims": claims}));
        } else {
            eprintln!(
                "{}",
                ctx.ui
                    .dim("signature and claims verified against the server's JWKS")
            );
            print_json(&claims);
        }
        return Ok(());
    }
    if ctx.ui.json {
        print_json(&token);
    } else {
        println!("{access}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_verifies_with_the_public_half() {
        let key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
        let d = URL_SAFE_NO_PAD.encode(*key.secret_bytes());
        let public = key.public_jwk();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": public.x, "d": d, "kid": "k1"});
        let jwt = assertion(&jwk, "agent-1", "https://id.example.com").unwrap();
        let mut keys = KeySet::new();
        keys.insert("k1", key.verifying_key());
        let now = sentryagent_core::Timestamp::from_unix_secs(now_secs());
        let (_, claims) =
            jose::verify_jwt::<Value, _>(&jwt, &keys, &Validation::new("agent-1", now)).unwrap();
        assert_eq!(claims["sub"], "agent-1");
        assert_eq!(claims["aud"], "https://id.example.com");
        assert!(assertion(&json!({"kty": "RSA"}), "a", "b").is_err());
    }
}

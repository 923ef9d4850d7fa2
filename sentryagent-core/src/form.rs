//! How the OAuth endpoints read a request, with no HTTP framework in it:
//! the strict `application/x-www-form-urlencoded` body parser, HTTP Basic
//! client credentials (RFC 6749 §2.3.1) and the client authentication rules
//! of the token, introspection and revocation endpoints.
//!
//! `sentryagent-http` reads every OAuth request with these functions, so an
//! adapter for another HTTP stack reads requests exactly as it does, and
//! answers a bad request with the same RFC 6749 §5.2 error:
//!
//! ```
//! use sentryagent_core::form::{FormParams, token_request};
//!
//! let body = b"grant_type=client_credentials&scope=read+write&resource=https%3A%2F%2Fapi.example";
//! let params = FormParams::parse(body, 64 * 1024)?;
//! assert_eq!(params.get("scope"), Some("read write"));
//!
//! // HTTP Basic: `agt_1:s3cret`.
//! let request = token_request(Some("Basic YWd0XzE6czNjcmV0".as_bytes()), &params)?;
//! assert_eq!(request.scope.as_deref(), Some("read write"));
//! assert_eq!(request.resources, ["https://api.example"]);
//!
//! let err = FormParams::parse(b"scope=a&scope=b", 1024).unwrap_err();
//! assert_eq!((err.error, err.status), ("invalid_request", 400));
//! # Ok::<(), sentryagent_core::OAuthError>(())
//! ```
//!
//! The rules:
//! - the body is `&`-separated `name=value` pairs (a pair without `=` has an
//!   empty value; empty pairs are skipped); in names and values `+` is a
//!   space and `%XX` (two hex digits) a byte, and the decoded bytes must be
//!   UTF-8: a bad escape or invalid UTF-8 is `invalid_request`;
//! - a parameter with an empty value counts as absent (RFC 6749 §3.2);
//! - at most [`MAX_PARAMS`] parameters (with a value): more is
//!   `invalid_request`;
//! - no parameter may appear twice (RFC 6749 §3.2), except `resource` and
//!   its alias `audience` (RFC 8707 §2): `invalid_request`;
//! - a body longer than the limit is `invalid_request` with status 413;
//! - the client authenticates with exactly one of HTTP Basic (id and secret
//!   form-urlencoded inside, RFC 6749 §2.3.1), `client_id` +
//!   `client_secret` in the body, or `client_assertion_type` +
//!   `client_assertion` (RFC 7523, with an optional `client_id`): more than
//!   one method, a `client_id` in the body that differs from the Basic user,
//!   a secret without id or half an assertion is `invalid_request`; no
//!   method, another scheme than Basic or a malformed `Authorization` header
//!   is `invalid_client` (status 401);
//! - a token request needs `grant_type`; `client_credentials` is read by
//!   [`token_request`], token exchange (RFC 8693) by [`exchange_request`],
//!   anything else is `unsupported_grant_type`.
//!
//! Nothing here panics, whatever the bytes.

use crate::{CLIENT_CREDENTIALS, ClientCredentials, Error, OAuthError, TokenRequest};
use base64::Engine as _;
// One hex digit; not `u8::from_str_radix`, which takes a sign (`%+1` is not
// an escape).
use crate::hex::digit as hex_value;

/// Parameters that may appear more than once (RFC 8707 §2).
pub const REPEATABLE: &[&str] = &["resource", "audience"];

/// The most parameters a body may carry (a token request needs a handful;
/// the core accepts at most 10 resources). More is `invalid_request`: the
/// check for repeated names then stays cheap whatever the body.
pub const MAX_PARAMS: usize = 64;

/// The parameters of an `application/x-www-form-urlencoded` request body,
/// parsed strictly (see the [module docs](self) for the rules), in the order
/// of the body. Values are never empty, and only the [`REPEATABLE`]
/// parameters appear more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormParams(Vec<(String, String)>);

impl FormParams {
    /// Parses a body of at most `limit` bytes.
    pub fn parse(body: &[u8], limit: usize) -> Result<FormParams, OAuthError> {
        if body.len() > limit {
            return Err(too_large(limit));
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for piece in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match piece.iter().position(|b| *b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &b""[..]),
            };
            let k =
                decode_component(k).ok_or_else(|| invalid_request("malformed form encoding"))?;
            let v =
                decode_component(v).ok_or_else(|| invalid_request("malformed form encoding"))?;
            if v.is_empty() {
                continue;
            }
            if out.len() == MAX_PARAMS {
                return Err(invalid_request(format!(
                    "more than {MAX_PARAMS} parameters"
                )));
            }
            if !REPEATABLE.contains(&k.as_str()) && out.iter().any(|(x, _)| *x == k) {
                return Err(invalid_request(format!(
                    "parameter `{}` is repeated",
                    k.chars().take(64).collect::<String>()
                )));
            }
            out.push((k, v));
        }
        Ok(FormParams(out))
    }

    /// The value of `name`, if present (the first one for a repeatable
    /// parameter).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter as `(name, value)`, in the order of the body.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of parameters (repeated ones counted each time).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space, `%XX` a byte; a bad escape or invalid UTF-8 is `None`.
fn decode_component(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let (hi, lo) = (raw.get(i + 1)?, raw.get(i + 2)?);
                out.push(hex_value(*hi)? << 4 | hex_value(*lo)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client's credentials, from the raw value of the `Authorization`
/// header (if the request has one) and the body's parameters (see the
/// [module docs](self) for the rules). Errors are `invalid_request` (400) or
/// `invalid_client` (401).
pub fn client_credentials(
    authorization: Option<&[u8]>,
    params: &FormParams,
) -> Result<ClientCredentials, OAuthError> {
    let basic = match authorization {
        None => None,
        Some(raw) => {
            let v =
                header_text(raw).ok_or_else(|| invalid_client("malformed Authorization header"))?;
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(invalid_client(
                    "use HTTP Basic, client_secret_post or private_key_jwt",
                ));
            }
            Some(
                decode_basic(rest.trim())
                    .ok_or_else(|| invalid_client("malformed HTTP Basic credentials"))?,
            )
        }
    };
    let body_id = params.get("client_id");
    let post_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let assertion_type = params.get("client_assertion_type");
    let methods = usize::from(basic.is_some())
        + usize::from(post_secret.is_some())
        + usize::from(assertion.is_some() || assertion_type.is_some());
    if methods > 1 {
        return Err(invalid_request(
            "use exactly one client authentication method",
        ));
    }
    if let Some((id, secret)) = basic {
        if body_id.is_some_and(|b| b != id) {
            return Err(invalid_request(
                "client_id differs from the HTTP Basic user",
            ));
        }
        return Ok(ClientCredentials::Secret {
            client_id: id,
            client_secret: secret,
        });
    }
    if let Some(secret) = post_secret {
        let id = body_id.ok_or_else(|| invalid_request("client_secret without client_id"))?;
        return Ok(ClientCredentials::Secret {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        });
    }
    match (assertion_type, assertion) {
        (Some(t), Some(a)) => Ok(ClientCredentials::Assertion {
            client_id: body_id.map(str::to_owned),
            assertion_type: t.to_owned(),
            assertion: a.to_owned(),
        }),
        (None, None) => Err(invalid_client("client authentication is required")),
        _ => Err(invalid_request(
            "client_assertion and client_assertion_type go together",
        )),
    }
}

/// A token request, from the raw value of the `Authorization` header (if the
/// request has one) and the body's parameters: the client's credentials as
/// [`client_credentials`] reads them, `grant_type` (required, and only
/// `client_credentials` is supported), `scope`, and the `resource` values
/// then the `audience` values. Errors are `invalid_request` (400),
/// `invalid_client` (401) or `unsupported_grant_type` (400).
pub fn token_request(
    authorization: Option<&[u8]>,
    params: &FormParams,
) -> Result<TokenRequest, OAuthError> {
    let client = client_credentials(authorization, params)?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    if grant_type != CLIENT_CREDENTIALS {
        return Err(OAuthError::from(&Error::UnsupportedGrantType));
    }
    Ok(TokenRequest {
        grant_type: grant_type.to_owned(),
        client,
        scope: params.get("scope").map(str::to_owned),
        resources: params
            .get_all("resource")
            .chain(params.get_all("audience"))
            .map(str::to_owned)
            .collect(),
    })
}

/// A token exchange request (RFC 8693 §2.1), from the raw value of the
/// `Authorization` header (if any) and the body's parameters:
/// `grant_type` must be [`TOKEN_EXCHANGE`](crate::federation::TOKEN_EXCHANGE);
/// `subject_token` and `subject_token_type` are required; exactly one of
/// `client_id` (an agent's token) and `tenant` (a management token) names
/// the target; `requested_token_type`, if given, is the access token type;
/// `scope`, `resource` and `audience` as in a token request. There is no
/// client authentication (the subject token is the credential): an
/// `Authorization` header, a client secret or assertion, or an actor token
/// is `invalid_request`, as is anything missing or repeated.
pub fn exchange_request(
    authorization: Option<&[u8]>,
    params: &FormParams,
) -> Result<crate::federation::ExchangeRequest, OAuthError> {
    use crate::federation::{ACCESS_TOKEN_TYPE, ExchangeRequest, ExchangeTarget, TOKEN_EXCHANGE};
    if params.get("grant_type") != Some(TOKEN_EXCHANGE) {
        return Err(invalid_request(format!(
            "grant_type must be {TOKEN_EXCHANGE}"
        )));
    }
    if authorization.is_some()
        || ["client_secret", "client_assertion", "client_assertion_type"]
            .iter()
            .any(|p| params.get(p).is_some())
    {
        return Err(invalid_request(
            "a token exchange takes no client authentication: the subject token is the credential",
        ));
    }
    if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
        return Err(invalid_request("actor tokens are not supported"));
    }
    if params
        .get("requested_token_type")
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(invalid_request(format!(
            "requested_token_type can only be {ACCESS_TOKEN_TYPE}"
        )));
    }
    let subject_token = params
        .get("subject_token")
        .ok_or_else(|| invalid_request("subject_token is required"))?;
    let subject_token_type = params
        .get("subject_token_type")
        .ok_or_else(|| invalid_request("subject_token_type is required"))?;
    let target = match (params.get("client_id"), params.get("tenant")) {
        (Some(agent), None) => ExchangeTarget::Agent(agent.to_owned()),
        (None, Some(tenant)) => ExchangeTarget::Tenant(tenant.to_owned()),
        _ => {
            return Err(invalid_request(
                "name exactly one target: client_id (an agent's token) or tenant (a management token)",
            ));
        }
    };
    Ok(ExchangeRequest {
        subject_token: subject_token.to_owned(),
        subject_token_type: subject_token_type.to_owned(),
        target,
        scope: params.get("scope").map(str::to_owned),
        resources: params
            .get_all("resource")
            .chain(params.get_all("audience"))
            .map(str::to_owned)
            .collect(),
    })
}

/// A header value as text, if it is visible ASCII (spaces and tabs allowed),
/// as `HeaderValue::to_str` reads it.
fn header_text(raw: &[u8]) -> Option<&str> {
    if raw.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let raw = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()?;
    let i = raw.iter().position(|b| *b == b':')?;
    let id = decode_component(&raw[..i])?;
    let secret = decode_component(&raw[i + 1..])?;
    (!id.is_empty()).then_some((id, secret))
}

/// An `invalid_request` (400) with this description.
pub fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_request", 400, description)
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::new("invalid_client", 401, description)
}

/// The `invalid_request` (413) of a body larger than `limit` bytes.
pub fn too_large(limit: usize) -> OAuthError {
    OAuthError::new(
        "invalid_request",
        413,
        format!("the body is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<FormParams, OAuthError> {
        FormParams::parse(body.as_bytes(), 1000)
    }

    #[test]
    fn forms_are_strict() {
        let p =
            form("grant_type=client_credentials&scope=a+b&resource=x&resource=y&empty=").unwrap();
        assert_eq!(p.get("scope"), Some("a b"));
        assert_eq!(p.get_all("resource").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.len(), 4);
        assert_eq!(
            form("scope=a&scope=b").unwrap_err().error,
            "invalid_request"
        );
        assert!(form("x=%zz").is_err());
        assert!(form("x=%ff").is_err());
        assert!(form("x=%4").is_err());
        assert!(form("%4=x").is_err());
        assert!(form("").unwrap().is_empty());
        assert_eq!(form("a=%2B+%25&&b").unwrap().get("a"), Some("+ %"));
    }

    #[test]
    fn at_most_max_params_parameters() {
        let body = |n: usize| {
            (0..n)
                .map(|i| format!("p{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(form(&body(MAX_PARAMS)).unwrap().len(), MAX_PARAMS);
        let e = FormParams::parse(body(MAX_PARAMS + 1).as_bytes(), 64 * 1024).unwrap_err();
        assert_eq!((e.error, e.status), ("invalid_request", 400));
        // Empty values do not count: they are absent.
        let with_empty = format!("{}&{}", body(MAX_PARAMS), "q=&r=");
        assert_eq!(form(&with_empty).unwrap().len(), MAX_PARAMS);
    }

    #[test]
    fn escapes_are_two_hex_digits_and_nothing_else() {
        for bad in ["x=%+1", "x=%+f", "%+e", "x=%-1", "x=% 1", "x=%1 ", "x=%1"] {
            assert_eq!(form(bad).unwrap_err().error, "invalid_request", "{bad}");
        }
        assert_eq!(form("x=%0a%0D%7e").unwrap().get("x"), Some("\n\r~"));
        // Inside HTTP Basic too: base64 of "%+1:x".
        assert_eq!(decode_basic("JSsxOng="), None);
    }

    #[test]
    fn the_body_limit_holds() {
        assert!(FormParams::parse(b"a=b", 3).is_ok());
        let err = FormParams::parse(b"a=bc", 3).unwrap_err();
        assert_eq!((err.error, err.status), ("invalid_request", 413));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let raw = base64::engine::general_purpose::STANDARD.encode("agt%3A1:s%2Bc+x");
        assert_eq!(
            decode_basic(&raw),
            Some(("agt:1".to_owned(), "s+c x".to_owned()))
        );
        assert_eq!(decode_basic("!!!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("abc");
        assert_eq!(decode_basic(&no_colon), None);
    }

    #[test]
    fn one_client_authentication_method() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("agt_1:s")
        );
        let creds = |auth: Option<&str>, body: &str| {
            client_credentials(auth.map(str::as_bytes), &form(body).unwrap())
        };
        assert_eq!(
            creds(Some(&basic), "client_id=agt_1"),
            Ok(ClientCredentials::Secret {
                client_id: "agt_1".into(),
                client_secret: "s".into()
            })
        );
        for (auth, body, error) in [
            (Some(basic.as_str()), "client_id=agt_2", "invalid_request"),
            (Some(basic.as_str()), "client_secret=s", "invalid_request"),
            (
                None,
                "client_id=a&client_secret=s&client_assertion=x",
                "invalid_request",
            ),
            (None, "client_secret=s", "invalid_request"),
            (None, "client_assertion=x", "invalid_request"),
            (None, "client_id=a", "invalid_client"),
            (Some("Bearer x"), "", "invalid_client"),
            (Some("Basic !!!"), "", "invalid_client"),
            (Some("Basic \u{e9}"), "", "invalid_client"),
        ] {
            assert_eq!(creds(auth, body).unwrap_err().error, error, "{body}");
        }
    }

    #[test]
    fn exchange_requests() {
        const GT: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
        const ST: &str = "subject_token=a.b.c&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token";
        let ok = |body: &str| exchange_request(None, &form(body).unwrap());
        let r = ok(&format!(
            "{GT}&{ST}&client_id=agt_1&scope=read&audience=x&resource=y"
        ))
        .unwrap();
        assert_eq!(
            r.target,
            crate::federation::ExchangeTarget::Agent("agt_1".into())
        );
        assert_eq!(r.subject_token, "a.b.c");
        assert_eq!(r.resources, ["y", "x"]);
        assert_eq!(r.scope.as_deref(), Some("read"));
        let r = ok(&format!(
            "{GT}&{ST}&tenant=tnt_1&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        ))
        .unwrap();
        assert_eq!(
            r.target,
            crate::federation::ExchangeTarget::Tenant("tnt_1".into())
        );
        for bad in [
            format!("{ST}&client_id=a"),
            format!("grant_type=client_credentials&{ST}&client_id=a"),
            format!("{GT}&{ST}"),
            format!("{GT}&{ST}&client_id=a&tenant=t"),
            format!("{GT}&subject_token=x&client_id=a"),
            format!("{GT}&subject_token_type=x&client_id=a"),
            format!("{GT}&{ST}&client_id=a&client_secret=s"),
            format!("{GT}&{ST}&client_id=a&client_assertion=s&client_assertion_type=t"),
            format!("{GT}&{ST}&client_id=a&actor_token=x&actor_token_type=y"),
            format!(
                "{GT}&{ST}&client_id=a&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token"
            ),
        ] {
            let e = ok(&bad).unwrap_err();
            assert_eq!((e.error, e.status), ("invalid_request", 400), "{bad}");
        }
        let e = exchange_request(
            Some(b"Basic YTpi"),
            &form(&format!("{GT}&{ST}&client_id=a")).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.error, "invalid_request");
    }

    #[test]
    fn token_requests() {
        let p = form(
            "grant_type=client_credentials&client_id=a&client_secret=s\
             &audience=z&resource=x&resource=y&scope=read",
        )
        .unwrap();
        let r = token_request(None, &p).unwrap();
        assert_eq!(r.resources, ["x", "y", "z"]);
        assert_eq!(r.scope.as_deref(), Some("read"));
        let p = form("grant_type=password&client_id=a&client_secret=s").unwrap();
        assert_eq!(
            token_request(None, &p).unwrap_err().error,
            "unsupported_grant_type"
        );
        let p = form("client_id=a&client_secret=s").unwrap();
        assert_eq!(
            token_request(None, &p).unwrap_err().error,
            "invalid_request"
        );
    }
}

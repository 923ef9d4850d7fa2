//! Fuzz harness of `sentryagent-http`: `token_form`.
//!
//! `fuzz_targets/token_form.rs` calls [`token_form`] (re-exported by the fuzz
//! crate's `lib.rs`), and `sentryagent-http/tests/fuzz_corpus_replay.rs`
//! compiles this file as a module to replay every committed input on the
//! stable toolchain. It uses nothing but `sentryagent-http`,
//! `sentryagent-core`, `base64` and `form_urlencoded`, which that crate
//! already depends on.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sentryagent_core::ClientCredentials;
use sentryagent_core::form::{FormParams, REPEATABLE, client_credentials, token_request};

/// The body limit when bit 1 of the mode byte is set, small enough for the
/// fuzzer to cross.
pub const SMALL_LIMIT: usize = 64;
/// The body limit otherwise: the router's default.
pub const LIMIT: usize = sentryagent_http::DEFAULT_BODY_LIMIT;

/// The parts of a `token_form` input.
struct Input<'a> {
    authorization: Option<&'a [u8]>,
    body: &'a [u8],
    limit: usize,
}

/// Splits an input: the first byte is the mode (bit 0: the request has an
/// `Authorization` header, whose raw value runs to the first `\n`, the body
/// being what follows; bit 1: the body limit is [`SMALL_LIMIT`]), the rest
/// is the request. The ASCII digits `0` to `3` are the four modes.
fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&mode, rest) = data.split_first()?;
    let (authorization, body) = if mode & 1 != 0 {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &b""[..]),
        }
    } else {
        (None, rest)
    };
    let limit = if mode & 2 != 0 { SMALL_LIMIT } else { LIMIT };
    Some(Input {
        authorization,
        body,
        limit,
    })
}

/// `token_form`: a token request (the raw `Authorization` header and the
/// `application/x-www-form-urlencoded` body, laid out as `split` says)
/// through `FormParams::parse`, `client_credentials` and `token_request`,
/// each compared with an independent model of the documented rules.
/// Asserted: the parse, the credentials and the token request are exactly
/// those of the model (same parameters, or the same error code and status:
/// `invalid_request` 400 or 413, `invalid_client` 401,
/// `unsupported_grant_type` 400, never another); an accepted body yields the
/// same pairs from `form_urlencoded`'s lenient parser, and the same
/// parameters once re-encoded by `form_urlencoded` and parsed again; Basic
/// credentials re-encoded give the same credentials. Returns whether a token
/// request was read.
pub fn token_form(data: &[u8]) -> bool {
    let Some(input) = split(data) else {
        return false;
    };
    let parsed = FormParams::parse(input.body, input.limit);
    assert_eq!(
        parsed,
        FormParams::parse(input.body, input.limit),
        "not deterministic"
    );
    let params = match (&parsed, model_parse(input.body, input.limit)) {
        (Ok(params), Ok(pairs)) => {
            check_params(input.body, params, &pairs);
            params
        }
        (Err(e), Err(status)) => {
            assert_eq!(e.error, "invalid_request", "form refused with {e:?}");
            assert_eq!(e.status, status, "form refused with {e:?}");
            return false;
        }
        (got, model) => panic!("form parse gave {got:?}, the rules say {model:?}"),
    };

    let creds = client_credentials(input.authorization, params);
    let model = model_credentials(input.authorization, params);
    match (&creds, &model) {
        (Ok(got), Ok(want)) => assert!(got == want, "credentials differ from the rules"),
        (Err(e), Err(code)) => {
            assert_eq!(e.error, *code, "credentials refused with {e:?}");
            let status = if *code == "invalid_client" { 401 } else { 400 };
            assert_eq!(e.status, status, "credentials refused with {e:?}");
        }
        (got, _) => panic!(
            "credentials {:?}, the rules say {model:?}",
            got.as_ref().map_err(|e| e.error)
        ),
    }
    if let Ok(ClientCredentials::Secret {
        client_id,
        client_secret,
    }) = &creds
        && input.authorization.is_some()
    {
        // The same credentials, encoded again as client_secret_basic.
        let userpass = format!(
            "{}:{}",
            form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(client_secret.as_bytes()).collect::<String>()
        );
        let again = format!("Basic {}", STANDARD.encode(userpass));
        assert!(
            client_credentials(Some(again.as_bytes()), params).as_ref() == creds.as_ref(),
            "Basic credentials changed when encoded again"
        );
    }

    let request = token_request(input.authorization, params);
    match (&request, creds) {
        (Ok(r), Ok(c)) => {
            assert!(r.client == c, "token request with other credentials");
            assert_eq!(r.grant_type, "client_credentials");
            assert_eq!(params.get("grant_type"), Some("client_credentials"));
            assert_eq!(r.scope.as_deref(), params.get("scope"));
            let resources: Vec<&str> = params
                .get_all("resource")
                .chain(params.get_all("audience"))
                .collect();
            assert_eq!(r.resources, resources, "resources lost or reordered");
            true
        }
        (Err(e), Err(c)) => {
            assert_eq!(e, &c, "token request and credentials refused differently");
            false
        }
        (Err(e), Ok(_)) => {
            let want = match params.get("grant_type") {
                None => ("invalid_request", 400),
                Some(_) => ("unsupported_grant_type", 400),
            };
            assert_eq!((e.error, e.status), want, "grant_type refused with {e:?}");
            false
        }
        (Ok(_), Err(_)) => panic!("token request read with refused credentials"),
    }
}

/// Checks an accepted body's parameters against the model's pairs and
/// `form_urlencoded`, and that they survive a round trip.
fn check_params(body: &[u8], params: &FormParams, model: &[(String, String)]) {
    let got: Vec<(&str, &str)> = params.iter().collect();
    let want: Vec<(&str, &str)> = model
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want, "parameters differ from the rules");
    assert_eq!(params.len(), got.len());
    assert_eq!(params.is_empty(), got.is_empty());
    for (i, (k, v)) in got.iter().enumerate() {
        assert!(!v.is_empty(), "empty value of {k:?} kept");
        assert!(
            REPEATABLE.contains(k) || got[..i].iter().all(|(x, _)| x != k),
            "parameter {k:?} repeated"
        );
        assert_eq!(params.get(k), got.iter().find(|(x, _)| x == k).map(|p| p.1));
    }
    // A well-formed body reads the same with a lenient parser.
    let lenient: Vec<(String, String)> = form_urlencoded::parse(body)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(lenient, model, "form_urlencoded reads the body otherwise");
    // Re-encoded and parsed again: the same parameters.
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    encoded.extend_pairs(params.iter());
    let encoded = encoded.finish();
    let again = FormParams::parse(encoded.as_bytes(), usize::MAX)
        .unwrap_or_else(|e| panic!("re-encoded parameters refused: {e:?} ({encoded:?})"));
    assert_eq!(&again, params, "parameters changed in a round trip");
}

/// The model of a form component: `+` is a space, `%` and two hex digits a
/// byte, and the result UTF-8.
fn model_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(*bytes.next()?).to_digit(16)?;
                let lo = char::from(*bytes.next()?).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// The model of the body parser: the pairs, or the HTTP status of the
/// (`invalid_request`) refusal.
fn model_parse(body: &[u8], limit: usize) -> Result<Vec<(String, String)>, u16> {
    if body.len() > limit {
        return Err(413);
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in body.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let mut kv = piece.splitn(2, |&b| b == b'=');
        let k = model_decode(kv.next().unwrap_or_default()).ok_or(400u16)?;
        let v = model_decode(kv.next().unwrap_or_default()).ok_or(400u16)?;
        if v.is_empty() {
            continue;
        }
        if pairs.len() == 64 {
            return Err(400);
        }
        if !matches!(k.as_str(), "resource" | "audience") && pairs.iter().any(|(x, _)| *x == k) {
            return Err(400);
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// The model of client authentication: the credentials, or the error code.
fn model_credentials(
    authorization: Option<&[u8]>,
    params: &FormParams,
) -> Result<ClientCredentials, &'static str> {
    let basic = match authorization {
        None => None,
        Some(raw) => Some(model_basic(raw).ok_or("invalid_client")?),
    };
    let id = params.get("client_id");
    let secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let assertion_type = params.get("client_assertion_type");
    let has_assertion = assertion.is_some() || assertion_type.is_some();
    match (basic, secret, has_assertion) {
        (Some((user, password)), None, false) => {
            if id.is_some_and(|id| id != user) {
                return Err("invalid_request");
            }
            Ok(ClientCredentials::Secret {
                client_id: user,
                client_secret: password,
            })
        }
        (None, Some(secret), false) => Ok(ClientCredentials::Secret {
            client_id: id.ok_or("invalid_request")?.to_owned(),
            client_secret: secret.to_owned(),
        }),
        (None, None, true) => match (assertion_type, assertion) {
            (Some(t), Some(a)) => Ok(ClientCredentials::Assertion {
                client_id: id.map(str::to_owned),
                assertion_type: t.to_owned(),
                assertion: a.to_owned(),
            }),
            _ => Err("invalid_request"),
        },
        (None, None, false) => Err("invalid_client"),
        _ => Err("invalid_request"),
    }
}

/// The model of an `Authorization: Basic` header: visible ASCII, scheme
/// `Basic` (any case) and one space, base64 of `id:secret` (padded or not),
/// each form-urlencoded, the id not empty.
fn model_basic(raw: &[u8]) -> Option<(String, String)> {
    if !raw
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || b.is_ascii_graphic())
    {
        return None;
    }
    let space = raw.iter().position(|&b| b == b' ');
    let (scheme, rest) = match space {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let rest = rest.trim_ascii();
    let decoded = STANDARD
        .decode(rest)
        .or_else(|_| STANDARD_NO_PAD.decode(rest))
        .ok()?;
    let mut parts = decoded.splitn(2, |&b| b == b':');
    let user = model_decode(parts.next()?)?;
    let password = model_decode(parts.next()?)?;
    (!user.is_empty()).then_some((user, password))
}

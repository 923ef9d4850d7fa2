//! Policy matching: claim conditions and the exactly-one-policy rule.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::policy::TrustPolicy;
use super::subject::VerifiedSubject;
use crate::{Timestamp, TrustPolicyId};

/// Whether `value` matches `pattern`: every character of the pattern
/// matches itself, except `*`, which matches any run of characters (none
/// included). A pattern without `*` is an exact comparison.
///
/// Linear in the lengths (each literal piece is searched once, leftmost
/// first, which is optimal when `*` is the only wildcard), so a hostile
/// pattern or claim cannot make it slow.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut pieces = pattern.split('*');
    // `split` always yields at least one piece.
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let mut middle: Vec<&str> = pieces.collect();
    let Some(last) = middle.pop() else {
        // No `*`: the whole value must be the literal.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The text a condition compares: a string claim as it is, a number or a
/// boolean as its JSON text (`74`, `true`); `None` for anything else (null,
/// arrays, objects), which no condition matches.
pub fn claim_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

/// Whether every condition holds on `claims`. A condition names a claim
/// (or, starting with `/`, a JSON pointer into the claims); a claim that is
/// absent, or not a string, number or boolean, fails its condition.
pub fn conditions_match(
    conditions: &BTreeMap<String, String>,
    claims: &Map<String, Value>,
) -> bool {
    conditions.iter().all(|(name, pattern)| {
        let value = if name.starts_with('/') {
            pointer(claims, name)
        } else {
            claims.get(name)
        };
        value
            .and_then(claim_text)
            .is_some_and(|text| glob_match(pattern, &text))
    })
}

/// RFC 6901 pointer lookup in an object.
fn pointer<'a>(claims: &'a Map<String, Value>, p: &str) -> Option<&'a Value> {
    let mut tokens = p.strip_prefix('/')?.split('/');
    let first = unescape(tokens.next()?);
    let mut v = claims.get(first.as_str())?;
    for t in tokens {
        v = match v {
            Value::Object(m) => m.get(unescape(t).as_str())?,
            Value::Array(a) => a.get(array_index(t)?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// An RFC 6901 array index: `0`, or digits without a leading zero (no
/// sign, no `01`, no `-`).
fn array_index(t: &str) -> Option<usize> {
    let canonical = t == "0" || (!t.starts_with('0') && !t.is_empty());
    if !canonical || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn unescape(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// Why no policy was selected (for the audit trail, never the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No policy names the token's issuer.
    UntrustedIssuer,
    /// The token's audience is none of the policies' audiences.
    Audience,
    /// The token is older than the policies allow.
    TooOld,
    /// The claims meet no policy's conditions.
    Conditions,
    /// Several policies match: a configuration error of the tenant.
    Ambiguous(Vec<TrustPolicyId>),
}

impl Refusal {
    /// A short reason for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UntrustedIssuer => "no trust policy names the token's issuer",
            Refusal::Audience => "the token's audience matches no trust policy",
            Refusal::TooOld => "the token is older than the trust policies allow",
            Refusal::Conditions => "the token's claims meet no trust policy's conditions",
            Refusal::Ambiguous(_) => {
                "several trust policies match the token (configuration error: make them exclusive)"
            }
        }
    }
}

/// The one policy among `candidates` that accepts `subject` at `now`: same
/// issuer, the policy's audience among the token's, the token's age (`now -
/// iat`) within the policy's maximum, and every condition met. None or
/// several is a [`Refusal`] naming the furthest check that failed.
pub fn select_policy<'a>(
    candidates: &'a [TrustPolicy],
    subject: &VerifiedSubject,
    now: Timestamp,
) -> Result<&'a TrustPolicy, Refusal> {
    let age = now.unix_secs().saturating_sub(subject.iat);
    let mut furthest = Refusal::UntrustedIssuer;
    let mut matched: Vec<&TrustPolicy> = Vec::new();
    for p in candidates.iter().filter(|p| p.issuer == subject.iss) {
        if !subject.aud.contains(&p.audience) {
            if furthest == Refusal::UntrustedIssuer {
                furthest = Refusal::Audience;
            }
            continue;
        }
        if u64::try_from(age).unwrap_or(0) > p.max_subject_token_age_seconds {
            if matches!(furthest, Refusal::UntrustedIssuer | Refusal::Audience) {
                furthest = Refusal::TooOld;
            }
            continue;
        }
        if !conditions_match(&p.conditions, &subject.claims) {
            furthest = Refusal::Conditions;
            continue;
        }
        matched.push(p);
    }
    match matched.as_slice() {
        [one] => Ok(one),
        [] => Err(furthest),
        many => Err(Refusal::Ambiguous(
            many.iter().map(|p| p.id.clone()).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        for (p, v) in [
            ("", ""),
            ("abc", "abc"),
            ("*", ""),
            ("*", "anything at all"),
            ("a*", "a"),
            ("a*", "abc"),
            ("*c", "abc"),
            ("a*c", "ac"),
            ("a*c", "abbbc"),
            ("a*b*c", "axxbyyc"),
            ("a*b*c", "abc"),
            ("**", "x"),
            ("a**b", "ab"),
            (
                "repo:octo-org/*:ref:refs/heads/main",
                "repo:octo-org/x:ref:refs/heads/main",
            ),
            ("*a*a*", "aa"),
            ("é*ü", "éxyzü"),
        ] {
            assert!(glob_match(p, v), "{p:?} should match {v:?}");
        }
        for (p, v) in [
            ("", "a"),
            ("abc", "abd"),
            ("abc", "abcd"),
            ("abc", "ab"),
            ("a*", "b"),
            ("*c", "cb"),
            ("a*c", "ab"),
            ("a*b*c", "acb"),
            ("*a*a*", "a"),
            ("ab*ba", "aba"),
            (
                "repo:octo-org/*:ref:refs/heads/main",
                "repo:octo-org/x:ref:refs/heads/mainx",
            ),
            ("octo-org/octo-agent", "octo-org/octo-agent2"),
        ] {
            assert!(!glob_match(p, v), "{p:?} should not match {v:?}");
        }
    }

    #[test]
    fn array_indexes_follow_rfc_6901() {
        let claims = json!({"list": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]});
        let claims = claims.as_object().unwrap();
        for (p, want) in [("/list/0", "a"), ("/list/1", "b"), ("/list/10", "k")] {
            assert_eq!(pointer(claims, p), Some(&json!(want)), "{p}");
        }
        for p in [
            "/list/+1", "/list/01", "/list/00", "/list/-", "/list/", "/list/1a", "/list/11",
        ] {
            assert_eq!(pointer(claims, p), None, "{p}");
        }
    }

    #[test]
    fn globs_stay_linear_on_hostile_input() {
        let value = "a".repeat(100_000);
        let pattern = format!("{}b", "*a".repeat(256));
        assert!(!glob_match(&pattern, &value));
        let pattern = "*a".repeat(256);
        assert!(glob_match(&pattern, &value));
    }

    #[test]
    fn conditions_read_strings_numbers_booleans_and_pointers() {
        let claims = json!({
            "sub": "system:serviceaccount:ci:deployer",
            "repository_id": "74",
            "run_number": 10,
            "flag": true,
            "none": null,
            "list": ["a"],
            "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "deployer"}},
            "a/b": {"~c": "x"}
        });
        let claims = claims.as_object().unwrap();
        let cond = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        for ok in [
            cond(&[]),
            cond(&[("repository_id", "74")]),
            cond(&[("run_number", "10")]),
            cond(&[("run_number", "1*")]),
            cond(&[("flag", "true")]),
            cond(&[("sub", "system:serviceaccount:ci:*")]),
            cond(&[("/kubernetes.io/namespace", "ci")]),
            cond(&[("/kubernetes.io/serviceaccount/name", "deployer")]),
            cond(&[("/list/0", "a")]),
            cond(&[("/a~1b/~0c", "x")]),
            cond(&[("repository_id", "74"), ("/kubernetes.io/namespace", "c*")]),
        ] {
            assert!(conditions_match(&ok, claims), "{ok:?}");
        }
        for bad in [
            cond(&[("repository_id", "75")]),
            cond(&[("missing", "*")]),
            cond(&[("none", "*")]),
            cond(&[("list", "*")]),
            cond(&[("kubernetes.io", "*")]),
            cond(&[("/kubernetes.io/missing", "*")]),
            cond(&[("/list/1", "*")]),
            cond(&[("/list/x", "*")]),
            cond(&[("/sub/x", "*")]),
            cond(&[("flag", "True")]),
            cond(&[("repository_id", "74"), ("sub", "x")]),
        ] {
            assert!(!conditions_match(&bad, claims), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod selection_tests {
    use super::*;
    use crate::conformance::kit::EPOCH;
    use crate::federation::{NewTrustPolicy, SubjectAlgorithm, TrustGrant};
    use crate::{AgentId, TenantId};

    const ISS: &str = "https://token.actions.githubusercontent.com";

    fn policy(aud: &str, conditions: &[(&str, &str)], max_age: u64) -> TrustPolicy {
        TrustPolicy::new(
            TenantId::generate(),
            NewTrustPolicy {
                name: "p".into(),
                issuer: ISS.into(),
                audience: aud.into(),
                conditions: conditions
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                grant: TrustGrant::AgentId(AgentId::generate()),
                max_token_ttl_seconds: None,
                max_subject_token_age_seconds: Some(max_age),
                single_use: false,
            },
            EPOCH,
        )
    }

    fn subject(iss: &str, aud: &str, iat: i64) -> VerifiedSubject {
        let claims = serde_json::json!({"repository_id": "74", "ref": "refs/heads/main"});
        VerifiedSubject {
            iss: iss.into(),
            sub: "repo:octo-org/octo-agent:ref:refs/heads/main".into(),
            aud: vec![aud.into()],
            exp: iat + 300,
            nbf: None,
            iat,
            jti: None,
            alg: SubjectAlgorithm::RS256,
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn exactly_one_policy_must_match() {
        let now = EPOCH;
        let t = EPOCH.unix_secs();
        let main = policy(
            "aud",
            &[("repository_id", "74"), ("ref", "refs/heads/main")],
            600,
        );
        let tags = policy(
            "aud",
            &[("repository_id", "74"), ("ref", "refs/tags/*")],
            600,
        );
        let other_aud = policy("aud2", &[("repository_id", "74")], 600);
        let set = vec![main.clone(), tags, other_aud];
        let s = subject(ISS, "aud", t - 10);
        assert_eq!(select_policy(&set, &s, now).unwrap().id, main.id);

        assert_eq!(
            select_policy(&set, &subject("https://other.example", "aud", t), now).unwrap_err(),
            Refusal::UntrustedIssuer
        );
        assert_eq!(
            select_policy(&set, &subject(ISS, "aud3", t), now).unwrap_err(),
            Refusal::Audience
        );
        assert_eq!(
            select_policy(&set, &subject(ISS, "aud", t - 601), now).unwrap_err(),
            Refusal::TooOld
        );
        assert!(select_policy(&set, &subject(ISS, "aud", t - 600), now).is_ok());
        let mut s = subject(ISS, "aud", t);
        s.claims.insert("ref".into(), "refs/heads/dev".into());
        assert_eq!(
            select_policy(&set, &s, now).unwrap_err(),
            Refusal::Conditions
        );
        assert_eq!(
            select_policy(&[], &subject(ISS, "aud", t), now).unwrap_err(),
            Refusal::UntrustedIssuer
        );

        let broad = policy("aud", &[("repository_id", "74")], 600);
        let both = vec![main.clone(), broad.clone()];
        match select_policy(&both, &subject(ISS, "aud", t), now).unwrap_err() {
            Refusal::Ambiguous(ids) => {
                assert_eq!(ids, vec![main.id.clone(), broad.id.clone()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Refusal::Ambiguous(vec![])
                .reason()
                .contains("configuration")
        );
    }
}

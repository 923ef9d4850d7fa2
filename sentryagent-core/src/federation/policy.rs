//! Trust policies: what a tenant trusts, and what it grants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::credentials::AdminScope;
use crate::{AgentId, Error, Result, TenantId, Timestamp, TrustPolicyId};

/// The issuer of GitHub Actions ID tokens. An issuer under it
/// (`.../<enterprise>`, GitHub Enterprise Cloud's own issuer) is GitHub's
/// too.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The issuer of GitLab.com CI ID tokens.
pub const GITLAB_ISSUER: &str = "https://gitlab.com";
/// Claims of a GitHub Actions token that name the repository; a GitHub
/// policy must pin one of them.
pub const GITHUB_REPOSITORY_CLAIMS: &[&str] = &[
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
];
/// Claims of a GitLab CI token that name the project; a gitlab.com policy
/// must pin one of them.
pub const GITLAB_PROJECT_CLAIMS: &[&str] = &[
    "sub",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
];
/// Default lifetime of the tokens a policy grants (15 minutes).
pub const DEFAULT_MAX_TOKEN_TTL_SECONDS: u64 = 900;
/// Longest lifetime of the tokens a policy may grant (1 hour).
pub const MAX_TOKEN_TTL_SECONDS: u64 = 3600;
/// Default largest age (`now - iat`) of an accepted subject token.
pub const DEFAULT_MAX_SUBJECT_TOKEN_AGE_SECONDS: u64 = 600;
/// Largest `max_subject_token_age_seconds` (24 hours).
pub const MAX_SUBJECT_TOKEN_AGE_SECONDS: u64 = 24 * 3600;
/// Most conditions of a policy.
pub const MAX_CONDITIONS: usize = 32;
/// Most admin scopes a policy grants.
const MAX_ADMIN_SCOPES: usize = 16;
/// Longest issuer URL.
const MAX_ISSUER_LEN: usize = 512;
/// Longest audience.
const MAX_AUDIENCE_LEN: usize = 512;
/// Longest claim name (or JSON pointer) of a condition.
const MAX_CLAIM_NAME_LEN: usize = 128;
/// Longest pattern of a condition.
const MAX_PATTERN_LEN: usize = 512;
/// Claims a condition may not name: the policy's own fields and the
/// verifier check them.
const CHECKED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat"];

/// What a trust policy grants: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", try_from = "GrantRepr")]
pub enum TrustGrant {
    /// `{"agent_id": "..."}`: the exchange yields that agent's access token.
    AgentId(AgentId),
    /// `{"admin_scopes": ["agents_write", ...]}`: the exchange yields a
    /// short-lived management token of the tenant with these scopes
    /// (`agents.write` is accepted for `agents_write`, and so on).
    AdminScopes(Vec<AdminScope>),
}

/// A grant as written: one object with exactly one of the two members (so
/// that a wrong shape is a clear input error).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRepr {
    #[serde(default)]
    agent_id: Option<AgentId>,
    #[serde(default)]
    admin_scopes: Option<Vec<AdminScope>>,
}

impl TryFrom<GrantRepr> for TrustGrant {
    type Error = &'static str;

    fn try_from(r: GrantRepr) -> std::result::Result<Self, Self::Error> {
        match (r.agent_id, r.admin_scopes) {
            (Some(a), None) => Ok(TrustGrant::AgentId(a)),
            (None, Some(s)) => Ok(TrustGrant::AdminScopes(s)),
            _ => Err("grant holds exactly one of agent_id and admin_scopes"),
        }
    }
}

impl TrustGrant {
    /// The agent granted, if this grants an agent's token.
    pub fn agent(&self) -> Option<&AgentId> {
        match self {
            TrustGrant::AgentId(a) => Some(a),
            TrustGrant::AdminScopes(_) => None,
        }
    }

    /// The admin scopes granted, if this grants a management token.
    pub fn admin_scopes(&self) -> Option<&[AdminScope]> {
        match self {
            TrustGrant::AgentId(_) => None,
            TrustGrant::AdminScopes(s) => Some(s),
        }
    }
}

/// A tenant's trust policy: tokens of `issuer` for `audience` whose claims
/// meet `conditions` may be exchanged for what `grant` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustPolicy {
    /// Id.
    pub id: TrustPolicyId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Label (1 to 100 characters).
    pub name: String,
    /// The subject token's exact `iss` (an `https` URL; `http` only on a
    /// loopback host, for development).
    pub issuer: String,
    /// The audience the subject token must carry (exact).
    pub audience: String,
    /// Claim name to pattern: an exact string, or a glob where `*` matches
    /// any run of characters. A name starting with `/` is a JSON pointer
    /// into the claims (`/kubernetes.io/namespace`). Every condition must
    /// hold.
    pub conditions: BTreeMap<String, String>,
    /// What the exchange yields.
    pub grant: TrustGrant,
    /// Lifetime of the issued token, in seconds (1 to 3600).
    pub max_token_ttl_seconds: u64,
    /// Largest age of the subject token (`now - iat`), in seconds.
    pub max_subject_token_age_seconds: u64,
    /// Whether a subject token (its `jti`) is accepted only once.
    pub single_use: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Optimistic concurrency revision.
    pub revision: u64,
}

/// Input for creating a trust policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "deploy from main",
    "issuer": "https://token.actions.githubusercontent.com",
    "audience": "https://idp.example",
    "conditions": {
        "repository_id": "74",
        "ref": "refs/heads/main",
        "workflow_ref": "octo-org/octo-agent/.github/workflows/deploy.yml@*"
    },
    "grant": {"agent_id": "agt_0193a1c2d3e47f00a1b2c3d4e5f60718"},
    "max_token_ttl_seconds": 900
})))]
#[serde(deny_unknown_fields)]
pub struct NewTrustPolicy {
    /// Label (1 to 100 characters).
    pub name: String,
    /// The subject token's exact `iss`.
    pub issuer: String,
    /// The audience the subject token must carry (exact).
    pub audience: String,
    /// Claim name (or JSON pointer) to pattern (exact, or a glob with `*`).
    #[serde(default)]
    pub conditions: BTreeMap<String, String>,
    /// What the exchange yields.
    pub grant: TrustGrant,
    /// Lifetime of the issued token in seconds (default 900, at most 3600).
    #[serde(default)]
    pub max_token_ttl_seconds: Option<u64>,
    /// Largest age of the subject token in seconds (default 600).
    #[serde(default)]
    pub max_subject_token_age_seconds: Option<u64>,
    /// Accept each subject token (`jti`) once (default false).
    #[serde(default)]
    pub single_use: bool,
}

/// Changes to a trust policy; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "conditions": {"repository_id": "74", "ref": "refs/tags/v*"},
    "max_token_ttl_seconds": 600
})))]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyPatch {
    /// Label.
    #[serde(default)]
    pub name: Option<String>,
    /// Issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Audience.
    #[serde(default)]
    pub audience: Option<String>,
    /// Conditions (replaced as a whole).
    #[serde(default)]
    pub conditions: Option<BTreeMap<String, String>>,
    /// Grant.
    #[serde(default)]
    pub grant: Option<TrustGrant>,
    /// Token lifetime in seconds.
    #[serde(default)]
    pub max_token_ttl_seconds: Option<u64>,
    /// Largest subject token age in seconds.
    #[serde(default)]
    pub max_subject_token_age_seconds: Option<u64>,
    /// Single use.
    #[serde(default)]
    pub single_use: Option<bool>,
}

impl TrustPolicy {
    /// A policy of `tenant` from its input, with the defaults filled in (not
    /// yet validated: see [`TrustPolicy::validate`]).
    pub fn new(tenant: TenantId, new: NewTrustPolicy, now: Timestamp) -> TrustPolicy {
        TrustPolicy {
            id: TrustPolicyId::generate(),
            tenant_id: tenant,
            name: new.name,
            issuer: new.issuer,
            audience: new.audience,
            conditions: new.conditions,
            grant: new.grant,
            max_token_ttl_seconds: new
                .max_token_ttl_seconds
                .unwrap_or(DEFAULT_MAX_TOKEN_TTL_SECONDS),
            max_subject_token_age_seconds: new
                .max_subject_token_age_seconds
                .unwrap_or(DEFAULT_MAX_SUBJECT_TOKEN_AGE_SECONDS),
            single_use: new.single_use,
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }

    /// Applies a patch (not yet validated).
    pub fn apply(&mut self, patch: TrustPolicyPatch) {
        let TrustPolicyPatch {
            name,
            issuer,
            audience,
            conditions,
            grant,
            max_token_ttl_seconds,
            max_subject_token_age_seconds,
            single_use,
        } = patch;
        if let Some(v) = name {
            self.name = v;
        }
        if let Some(v) = issuer {
            self.issuer = v;
        }
        if let Some(v) = audience {
            self.audience = v;
        }
        if let Some(v) = conditions {
            self.conditions = v;
        }
        if let Some(v) = grant {
            self.grant = v;
        }
        if let Some(v) = max_token_ttl_seconds {
            self.max_token_ttl_seconds = v;
        }
        if let Some(v) = max_subject_token_age_seconds {
            self.max_subject_token_age_seconds = v;
        }
        if let Some(v) = single_use {
            self.single_use = v;
        }
    }

    /// Checks every field, and that a policy for a shared CI issuer pins
    /// the repository (GitHub Actions) or project (gitlab.com): with such an
    /// issuer, a policy without that pin would let any repository or
    /// project on the service get tokens. Removes repeated admin scopes.
    ///
    /// Whether a granted agent exists in the tenant is the
    /// [`Idp`](crate::Idp)'s check, not this one.
    pub fn validate(&mut self) -> Result<()> {
        if self.name.trim().is_empty()
            || self.name.chars().count() > 100
            || self.name.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "name",
                "1 to 100 characters, no control characters",
            ));
        }
        validate_issuer(&self.issuer)?;
        if self.audience.is_empty()
            || self.audience.len() > MAX_AUDIENCE_LEN
            || self.audience.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "audience",
                format!("1 to {MAX_AUDIENCE_LEN} bytes, no control characters"),
            ));
        }
        validate_conditions(&self.conditions)?;
        if let TrustGrant::AdminScopes(scopes) = &mut self.grant {
            let mut seen = Vec::with_capacity(scopes.len());
            scopes.retain(|s| {
                let fresh = !seen.contains(s);
                seen.push(*s);
                fresh
            });
            if scopes.is_empty() || scopes.len() > MAX_ADMIN_SCOPES {
                return Err(Error::invalid(
                    "grant",
                    format!("admin_scopes holds 1 to {MAX_ADMIN_SCOPES} scopes"),
                ));
            }
        }
        if !(1..=MAX_TOKEN_TTL_SECONDS).contains(&self.max_token_ttl_seconds) {
            return Err(Error::invalid(
                "max_token_ttl_seconds",
                format!("1 to {MAX_TOKEN_TTL_SECONDS}"),
            ));
        }
        if !(1..=MAX_SUBJECT_TOKEN_AGE_SECONDS).contains(&self.max_subject_token_age_seconds) {
            return Err(Error::invalid(
                "max_subject_token_age_seconds",
                format!("1 to {MAX_SUBJECT_TOKEN_AGE_SECONDS}"),
            ));
        }
        if is_github(&self.issuer) && !pins(&self.conditions, GITHUB_REPOSITORY_CLAIMS) {
            return Err(Error::invalid(
                "conditions",
                "a policy for GitHub Actions must pin the repository: give one of sub, \
                 repository, repository_id, repository_owner or repository_owner_id a value \
                 that does not start with `*` (for sub, more than `repo:`), best repository_id \
                 or repository_owner_id exactly; otherwise any repository on GitHub could get \
                 tokens from this policy",
            ));
        }
        if is_gitlab_com(&self.issuer) && !pins(&self.conditions, GITLAB_PROJECT_CLAIMS) {
            return Err(Error::invalid(
                "conditions",
                "a policy for gitlab.com must pin the project: give one of sub, project_path, \
                 project_id, namespace_path or namespace_id a value that does not start with \
                 `*` (for sub, more than `project_path:`), best project_id or namespace_id \
                 exactly; otherwise any project on gitlab.com could get tokens from this policy",
            ));
        }
        Ok(())
    }
}

/// Whether `issuer` is GitHub Actions' (or an enterprise issuer under it).
fn is_github(issuer: &str) -> bool {
    issuer == GITHUB_ACTIONS_ISSUER
        || issuer
            .strip_prefix(GITHUB_ACTIONS_ISSUER)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn is_gitlab_com(issuer: &str) -> bool {
    issuer.trim_end_matches('/') == GITLAB_ISSUER
}

/// Whether one of `claims` has a condition whose literal start (before any
/// `*`) names something: not empty, and for `sub` more than the fixed
/// `repo:` / `project_path:` lead.
fn pins(conditions: &BTreeMap<String, String>, claims: &[&str]) -> bool {
    conditions.iter().any(|(name, pattern)| {
        if !claims.contains(&name.as_str()) {
            return false;
        }
        let literal = pattern.split('*').next().unwrap_or_default();
        let lead = match name.as_str() {
            "sub" if literal.starts_with("repo:") => "repo:".len(),
            "sub" if literal.starts_with("project_path:") => "project_path:".len(),
            _ => 0,
        };
        literal.len() > lead
    })
}

/// An issuer URL: `https://host[:port][/path]`, or `http://` on a loopback
/// host (`localhost`, `127.0.0.1`, `[::1]`); no user info, query or
/// fragment.
fn validate_issuer(issuer: &str) -> Result<()> {
    let bad = || {
        Error::invalid(
            "issuer",
            format!(
                "an https URL (http only on localhost, 127.0.0.1 or [::1]) of at most \
                 {MAX_ISSUER_LEN} bytes, without user info, query or fragment"
            ),
        )
    };
    if issuer.len() > MAX_ISSUER_LEN
        || issuer
            .bytes()
            .any(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#' | b'\\'))
    {
        return Err(bad());
    }
    let (scheme, rest) = issuer.split_once("://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad());
    }
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        _ => Err(bad()),
    }
}

fn validate_conditions(conditions: &BTreeMap<String, String>) -> Result<()> {
    if conditions.len() > MAX_CONDITIONS {
        return Err(Error::invalid(
            "conditions",
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    for (name, pattern) in conditions {
        let shown: String = name.chars().take(64).collect();
        if name.is_empty() || name.len() > MAX_CLAIM_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "conditions",
                format!("claim names are 1 to {MAX_CLAIM_NAME_LEN} bytes, no control characters"),
            ));
        }
        if CHECKED_CLAIMS.contains(&name.as_str()) {
            return Err(Error::invalid(
                "conditions",
                format!(
                    "`{shown}` is checked by the policy itself (issuer, audience, token times); \
                     it cannot be a condition"
                ),
            ));
        }
        if name.starts_with('/') && !valid_pointer(name) {
            return Err(Error::invalid(
                "conditions",
                format!(
                    "`{shown}` is not a JSON pointer: `~` must be followed by 0 or 1 \
                     (`~0` is `~`, `~1` is `/`)"
                ),
            ));
        }
        if pattern.len() > MAX_PATTERN_LEN || pattern.chars().any(char::is_control) {
            return Err(Error::invalid(
                "conditions",
                format!(
                    "the pattern of `{shown}` is at most {MAX_PATTERN_LEN} bytes, \
                     no control characters"
                ),
            ));
        }
    }
    Ok(())
}

/// An RFC 6901 JSON pointer: every `~` is followed by `0` or `1`.
fn valid_pointer(p: &str) -> bool {
    let b = p.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::kit::EPOCH;

    fn policy(issuer: &str, conditions: &[(&str, &str)]) -> TrustPolicy {
        TrustPolicy::new(
            TenantId::generate(),
            NewTrustPolicy {
                name: "p".into(),
                issuer: issuer.into(),
                audience: "https://idp.example".into(),
                conditions: conditions
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                grant: TrustGrant::AgentId(AgentId::generate()),
                max_token_ttl_seconds: None,
                max_subject_token_age_seconds: None,
                single_use: false,
            },
            EPOCH,
        )
    }

    fn field_of(r: Result<()>) -> Option<&'static str> {
        match r {
            Err(Error::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn defaults() {
        let p = policy("https://issuer.example", &[]);
        assert_eq!(p.max_token_ttl_seconds, 900);
        assert_eq!(p.max_subject_token_age_seconds, 600);
        assert!(!p.single_use);
    }

    #[test]
    fn github_policies_must_pin_the_repository() {
        for ok in [
            vec![("repository_id", "74")],
            vec![("repository_owner_id", "65"), ("ref", "refs/heads/main")],
            vec![("repository", "octo-org/octo-agent")],
            vec![("repository", "octo-org/*")],
            vec![("sub", "repo:octo-org/octo-agent:ref:refs/heads/main")],
            vec![("sub", "repo:octo-org/*")],
            vec![("repository_owner", "octo-org")],
        ] {
            let mut p = policy(GITHUB_ACTIONS_ISSUER, &ok);
            assert!(p.validate().is_ok(), "{ok:?}");
            let mut p = policy(&format!("{GITHUB_ACTIONS_ISSUER}/octo-enterprise"), &ok);
            assert!(p.validate().is_ok(), "{ok:?}");
        }
        for bad in [
            vec![],
            vec![("ref", "refs/heads/main")],
            vec![("repository", "*")],
            vec![("repository_id", "*")],
            vec![("repository", "**")],
            vec![("repository", "*/octo-agent")],
            vec![("sub", "repo:*")],
            vec![("sub", "*")],
            vec![("sub", "*octo-org/octo-agent*")],
            vec![("repository_owner", "*"), ("workflow", "deploy")],
            vec![("/repository", "octo-org/octo-agent")],
        ] {
            let mut p = policy(GITHUB_ACTIONS_ISSUER, &bad);
            let e = p.validate().unwrap_err();
            assert!(
                e.to_string().contains("any repository on GitHub"),
                "{bad:?}: {e}"
            );
        }
        // Another issuer is not held to the GitHub rule.
        let mut p = policy(
            "https://token.actions.githubusercontent.com.evil.example",
            &[],
        );
        assert!(p.validate().is_ok());
    }

    #[test]
    fn gitlab_com_policies_must_pin_the_project() {
        let mut p = policy(GITLAB_ISSUER, &[("ref", "main")]);
        assert!(p.validate().unwrap_err().to_string().contains("gitlab.com"));
        let mut p = policy(GITLAB_ISSUER, &[("sub", "project_path:*")]);
        assert!(p.validate().is_err());
        let mut p = policy(GITLAB_ISSUER, &[("project_id", "42")]);
        assert!(p.validate().is_ok());
        let mut p = policy("https://gitlab.example.com", &[]);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn every_field_is_checked() {
        let mut ok = policy("https://issuer.example", &[("sub", "x")]);
        assert!(ok.validate().is_ok());
        for issuer in [
            "http://issuer.example",
            "issuer.example",
            "https://",
            "https://user@issuer.example",
            "https://issuer.example?x",
            "https://issuer.example#x",
            "https://issuer .example",
            "ftp://issuer.example",
            "http://localhost.evil.example",
            "http://[::2]:8080",
        ] {
            let mut p = policy(issuer, &[]);
            assert_eq!(field_of(p.validate()), Some("issuer"), "{issuer}");
        }
        for issuer in [
            "http://127.0.0.1:8080",
            "http://localhost:1/x",
            "http://[::1]:9",
            "https://k8s.example/",
        ] {
            let mut p = policy(issuer, &[]);
            assert!(p.validate().is_ok(), "{issuer}");
        }
        let mut p = ok.clone();
        p.name = " ".into();
        assert_eq!(field_of(p.validate()), Some("name"));
        let mut p = ok.clone();
        p.audience = String::new();
        assert_eq!(field_of(p.validate()), Some("audience"));
        let mut p = ok.clone();
        p.audience = "a\nb".into();
        assert_eq!(field_of(p.validate()), Some("audience"));
        for (name, pattern) in [
            ("", "x"),
            ("exp", "1"),
            ("aud", "x"),
            ("iss", "x"),
            ("/a~2", "x"),
            ("/a~", "x"),
            ("sub", "a\u{0}"),
        ] {
            let mut p = ok.clone();
            p.conditions.insert(name.into(), pattern.into());
            assert_eq!(field_of(p.validate()), Some("conditions"), "{name}");
        }
        let mut p = ok.clone();
        p.conditions = (0..=MAX_CONDITIONS)
            .map(|i| (format!("c{i}"), "x".into()))
            .collect();
        assert_eq!(field_of(p.validate()), Some("conditions"));
        let mut p = ok.clone();
        p.conditions
            .insert("/kubernetes.io/namespace".into(), "ci".into());
        p.conditions.insert("/a~1b/~0c".into(), String::new());
        assert!(p.validate().is_ok());
        for ttl in [0, 3601] {
            let mut p = ok.clone();
            p.max_token_ttl_seconds = ttl;
            assert_eq!(field_of(p.validate()), Some("max_token_ttl_seconds"));
        }
        let mut p = ok.clone();
        p.max_token_ttl_seconds = 3600;
        assert!(p.validate().is_ok());
        for age in [0, MAX_SUBJECT_TOKEN_AGE_SECONDS + 1] {
            let mut p = ok.clone();
            p.max_subject_token_age_seconds = age;
            assert_eq!(
                field_of(p.validate()),
                Some("max_subject_token_age_seconds")
            );
        }
        let mut p = ok.clone();
        p.grant = TrustGrant::AdminScopes(vec![]);
        assert_eq!(field_of(p.validate()), Some("grant"));
        ok.grant = TrustGrant::AdminScopes(vec![
            AdminScope::AgentsWrite,
            AdminScope::AgentsWrite,
            AdminScope::AuditRead,
        ]);
        ok.validate().unwrap();
        assert_eq!(
            ok.grant.admin_scopes(),
            Some(&[AdminScope::AgentsWrite, AdminScope::AuditRead][..])
        );
    }

    #[test]
    fn grants_read_as_the_api_writes_them() {
        let g: TrustGrant = serde_json::from_str(r#"{"agent_id": "agt_1"}"#).unwrap();
        assert_eq!(g.agent().map(AgentId::as_str), Some("agt_1"));
        let g: TrustGrant =
            serde_json::from_str(r#"{"admin_scopes": ["agents.write", "audit_read"]}"#).unwrap();
        assert_eq!(
            g.admin_scopes(),
            Some(&[AdminScope::AgentsWrite, AdminScope::AuditRead][..])
        );
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"admin_scopes":["agents_write","audit_read"]}"#
        );
        for bad in [
            r#"{}"#,
            r#"{"agent_id": "agt_1", "admin_scopes": ["admin"]}"#,
            r#"{"agent_id": "a b"}"#,
            r#"{"admin_scopes": ["root"]}"#,
            r#"{"tenant": "t"}"#,
        ] {
            assert!(serde_json::from_str::<TrustGrant>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_apply_field_by_field() {
        let mut p = policy("https://issuer.example", &[("sub", "x")]);
        let before = p.clone();
        p.apply(TrustPolicyPatch::default());
        assert_eq!(p, before);
        p.apply(TrustPolicyPatch {
            audience: Some("aud2".into()),
            single_use: Some(true),
            ..Default::default()
        });
        assert_eq!(p.audience, "aud2");
        assert!(p.single_use);
        assert_eq!(p.issuer, before.issuer);
    }
}

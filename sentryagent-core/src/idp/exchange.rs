//! Token exchange (RFC 8693): a token of another identity provider, under a
//! tenant's trust policies, for an agent's access token or a management
//! token. No HTTP here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Idp;
use super::tokens::{MAX_SCOPE_LEN, granted_scope};
use crate::audit::{Outcome, RequestMeta};
use crate::credentials::AdminScope;
use crate::federation::{
    ACCESS_TOKEN_TYPE, Actor, ExchangeRequest, ExchangeResponse, ExchangeTarget, ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE, TrustPolicy, VerifiedSubject, parse_subject_token, select_policy,
};
use crate::usage::UsageKind;
use crate::{Agent, AgentId, Error, Result, Tenant, TenantId, TenantStatus};

/// Marker namespace of subject-token `jti`s used with a single-use policy.
const NS_SUBJECT_JTI: &str = "subject_jti";

/// Claims of a GitHub Actions token copied into the audit trail of an
/// exchange (with `sub`): which repository, workflow and run it was.
const GITHUB_AUDIT_CLAIMS: &[&str] = &["repository", "repository_id", "workflow_ref", "run_id"];

/// A refused exchange: recorded in the tenant's audit trail (the system's
/// when no tenant is known), answered with a bare `invalid_grant`.
struct Refused {
    tenant: Option<TenantId>,
    reason: String,
    details: BTreeMap<String, String>,
}

impl Refused {
    fn new(tenant: Option<&TenantId>, reason: impl Into<String>) -> Self {
        Refused {
            tenant: tenant.cloned(),
            reason: reason.into(),
            details: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        let mut v: String = value.into();
        // At most 512 characters, cut on a character boundary (a value
        // that short already is kept as it is, without a copy).
        if let Some((at, _)) = v.char_indices().nth(512) {
            v.truncate(at);
        }
        self.details.insert(key.to_owned(), v);
        self
    }
}

/// Why an exchange stopped: refused (audited, `invalid_grant`), or an error
/// the caller sees as it is (a malformed request, a rate limit, a backend).
enum Stop {
    Refused(Refused),
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

impl From<Refused> for Stop {
    fn from(r: Refused) -> Self {
        Stop::Refused(r)
    }
}

/// Who the exchange is for.
enum Target {
    Agent(Box<Agent>, Tenant),
    Tenant(Tenant),
}

impl Target {
    fn tenant(&self) -> &Tenant {
        match self {
            Target::Agent(_, t) | Target::Tenant(t) => t,
        }
    }

    /// Whether a policy grants what this target asks for.
    fn granted_by(&self, p: &TrustPolicy) -> bool {
        match self {
            Target::Agent(a, _) => p.grant.agent() == Some(&a.id),
            Target::Tenant(_) => p.grant.admin_scopes().is_some(),
        }
    }
}

/// The admin scopes a management token gets: the requested ones (names,
/// space separated), each covered by one the policy grants; all the
/// policy's when none are requested.
fn management_scopes(granted: &[AdminScope], requested: Option<&str>) -> Result<Vec<AdminScope>> {
    let Some(req) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(granted.to_vec());
    };
    let mut out: Vec<AdminScope> = Vec::new();
    for name in req.split(' ').filter(|s| !s.is_empty()) {
        let scope = AdminScope::from_name(name).ok_or_else(|| Error::InvalidScope {
            message: format!(
                "`{}` is not an admin scope",
                name.chars().take(64).collect::<String>()
            ),
        })?;
        if !granted.iter().any(|g| g.covers(scope)) {
            return Err(Error::InvalidScope {
                message: format!("`{}` is not granted by the trust policy", scope.as_str()),
            });
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

impl Idp {
    /// Token exchange (RFC 8693): verifies the subject token against its
    /// issuer's keys and the target tenant's trust policies, then issues
    /// what the one matching policy grants: the agent's access token (with
    /// `act` naming the subject) or a management token of the tenant.
    ///
    /// Only the policies of the target's tenant are evaluated: those that
    /// grant the agent named by `client_id`, or those with admin scopes for
    /// `tenant`. The request's issuer must be one of theirs, exactly; then
    /// the signature (RS256, ES256 or EdDSA, the algorithm matching the
    /// key), `exp`, `nbf`, `iat` (60 s leeway), the policy's audience and
    /// maximum age, and its conditions; exactly one policy must match.
    ///
    /// Every refusal is [`Error::InvalidToken`] (`invalid_grant`, with no
    /// detail), and is recorded in the tenant's audit trail
    /// (`token.exchange_failed` with the reason). A malformed request is
    /// `Invalid`, a scope or target the grant does not allow
    /// `InvalidScope`/`InvalidTarget`; rate limits and the tier's token
    /// quota apply as to a token request. A success is audited
    /// (`token.exchanged`, with the policy, issuer, `sub` and, for GitHub,
    /// repository, workflow ref and run id) and counted as a token issued.
    pub async fn exchange_token(
        &self,
        req: &ExchangeRequest,
        request: &RequestMeta,
    ) -> Result<ExchangeResponse> {
        if req.subject_token_type != ID_TOKEN_TYPE && req.subject_token_type != JWT_TOKEN_TYPE {
            return Err(Error::invalid(
                "subject_token_type",
                format!("{ID_TOKEN_TYPE} or {JWT_TOKEN_TYPE}"),
            ));
        }
        if req.scope.as_ref().is_some_and(|s| s.len() > MAX_SCOPE_LEN) {
            return Err(Error::invalid("scope", "too long"));
        }
        if req.resources.len() > 10 {
            return Err(Error::invalid("resource", "at most 10 resources"));
        }
        match self.try_exchange(req, request).await {
            Ok(r) => Ok(r),
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::Refused(r)) => {
                let target = match &req.target {
                    ExchangeTarget::Agent(a) | ExchangeTarget::Tenant(a) => {
                        a.chars().take(128).collect::<String>()
                    }
                };
                let mut ev = self.event(
                    r.tenant.as_ref(),
                    "token_exchange",
                    "token.exchange_failed",
                    Some(&target),
                    Outcome::Failure,
                    request,
                );
                ev.details = r.details;
                ev.details.insert("reason".into(), r.reason);
                self.audit_failure(ev).await?;
                Err(Error::InvalidToken { reason: None })
            }
        }
    }

    /// Reads the target: the agent and its tenant, or the tenant.
    async fn exchange_target(&self, target: &ExchangeTarget) -> Result<Target, Stop> {
        let missing = |kind: &str| Refused::new(None, format!("no such {kind}"));
        Ok(match target {
            ExchangeTarget::Agent(id) => {
                let Ok(id) = AgentId::parse(id) else {
                    return Err(missing("agent").into());
                };
                let agent = match self.inner.store.agents.get_agent(&id).await {
                    Ok(a) => a,
                    Err(Error::NotFound { .. }) => return Err(missing("agent").into()),
                    Err(e) => return Err(e.into()),
                };
                let tenant = self
                    .inner
                    .store
                    .tenants
                    .get_tenant(&agent.tenant_id)
                    .await?;
                Target::Agent(Box::new(agent), tenant)
            }
            ExchangeTarget::Tenant(id) => {
                let Ok(id) = TenantId::parse(id) else {
                    return Err(missing("tenant").into());
                };
                match self.inner.store.tenants.get_tenant(&id).await {
                    Ok(t) => Target::Tenant(t),
                    Err(Error::NotFound { .. }) => return Err(missing("tenant").into()),
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    async fn try_exchange(
        &self,
        req: &ExchangeRequest,
        request: &RequestMeta,
    ) -> Result<ExchangeResponse, Stop> {
        let target = self.exchange_target(&req.target).await?;
        let tenant = target.tenant();
        let refuse = |reason: &str| Refused::new(Some(&tenant.id), reason);
        if tenant.status == TenantStatus::Suspended {
            return Err(refuse("the tenant is suspended").into());
        }
        // Requests for a target are limited before any work on the token.
        let rate_limit = match &target {
            Target::Agent(agent, t) => {
                if !agent.state.bears_tokens() {
                    return Err(refuse("the agent is not in a token-bearing state")
                        .with("agent_state", agent.state.to_string())
                        .into());
                }
                self.admit_client_request(t, &agent.id).await?
            }
            Target::Tenant(t) => self.admit_tenant_request(t).await?,
        };
        let mut policies: Vec<TrustPolicy> = self.all_trust_policies(&tenant.id).await?;
        policies.retain(|p| target.granted_by(p));
        if policies.is_empty() {
            return Err(refuse("no trust policy grants this target").into());
        }
        let parsed = parse_subject_token(&req.subject_token)
            .map_err(|e| refuse("the subject token is malformed").with("error", e.to_string()))?;
        let issuer = parsed.issuer().to_owned();
        if !policies.iter().any(|p| p.issuer == issuer) {
            return Err(refuse("no trust policy names the token's issuer")
                .with("issuer", issuer)
                .into());
        }
        let kid = parsed.kid().map(str::to_owned);
        let keys = match self
            .inner
            .issuer_keys
            .issuer_keys(&issuer, kid.as_deref())
            .await
        {
            Ok(k) => k,
            Err(e) => {
                return Err(refuse("the issuer's keys are unavailable")
                    .with("issuer", issuer)
                    .with("error", e.to_string())
                    .into());
            }
        };
        let now = self.now();
        let subject = parsed.verify(&keys, now).map_err(|e| {
            let r = refuse("the subject token does not verify")
                .with("issuer", issuer.clone())
                .with("error", e.to_string());
            match &kid {
                Some(k) => r.with("kid", k.clone()),
                None => r,
            }
        })?;
        let with_subject = |r: Refused| subject_details(r, &subject);
        let policy = select_policy(&policies, &subject, now).map_err(|refusal| {
            let r = with_subject(refuse(refusal.reason()));
            match &refusal {
                crate::federation::Refusal::Ambiguous(ids) => r.with(
                    "policies",
                    ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(" "),
                ),
                _ => r,
            }
        })?;
        if policy.single_use {
            let Some(jti) = subject
                .jti
                .as_deref()
                .filter(|j| !j.is_empty() && j.len() <= 256)
            else {
                return Err(with_subject(refuse("a single-use policy needs a jti"))
                    .with("policy", policy.id.as_str())
                    .into());
            };
            let until =
                crate::Timestamp::from_unix_secs(subject.exp).plus(crate::federation::LEEWAY);
            let fresh = self
                .inner
                .store
                .markers
                .put_marker(NS_SUBJECT_JTI, &format!("{}:{jti}", policy.id), until, now)
                .await?;
            if !fresh {
                return Err(with_subject(refuse("the subject token was used before"))
                    .with("policy", policy.id.as_str())
                    .with("subject_jti", jti)
                    .into());
            }
        }
        self.check_token_quota(tenant, now).await?;
        let ttl = Duration::from_secs(policy.max_token_ttl_seconds);
        let act = Actor {
            iss: subject.iss.clone(),
            sub: subject.sub.clone(),
        };
        let (access_token, jti, scope, agent) = match &target {
            Target::Agent(agent, t) => {
                let scope = granted_scope(agent, req.scope.as_deref())?;
                let aud = self.audience(t, &req.resources)?;
                let (token, jti) =
                    self.sign_agent_token(agent, t, scope.clone(), aud, ttl, Some(&act), now)?;
                (token, jti, scope, Some(&agent.id))
            }
            Target::Tenant(t) => {
                if !req.resources.is_empty() {
                    return Err(Error::InvalidTarget {
                        message: "a management token has no resource or audience to choose".into(),
                    }
                    .into());
                }
                let granted = policy.grant.admin_scopes().unwrap_or_default();
                let scopes = management_scopes(granted, req.scope.as_deref())?;
                let (token, jti) =
                    self.sign_management_token(t, policy, &scopes, ttl, &act, now)?;
                let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                (token, jti, Some(names.join(" ")), None)
            }
        };
        self.count_usage(&tenant.id, agent, UsageKind::TokenIssued, now)
            .await;
        let target_id = match &target {
            Target::Agent(a, _) => a.id.to_string(),
            Target::Tenant(t) => t.id.to_string(),
        };
        let mut ev = self.event(
            Some(&tenant.id),
            &format!("trust_policy:{}", policy.id),
            "token.exchanged",
            Some(&target_id),
            Outcome::Success,
            request,
        );
        let done = subject_details(Refused::new(None, ""), &subject)
            .with("policy", policy.id.as_str())
            .with("jti", jti);
        ev.details = done.details;
        if let Some(s) = &scope {
            ev.details.insert("scope".into(), s.clone());
        }
        self.audit(ev).await?;
        Ok(ExchangeResponse {
            access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            scope,
            rate_limit: Some(rate_limit),
        })
    }

    /// Admits a request for a tenant's management token under the tenant's
    /// rate limit; answers the admitting decision.
    async fn admit_tenant_request(&self, tenant: &Tenant) -> Result<crate::Decision> {
        let d = self
            .inner
            .limiter
            .check(
                &super::tokens::tenant_limit_key(tenant),
                &super::tokens::tenant_quota(self, tenant),
                1,
            )
            .await?;
        if d.allowed {
            Ok(d)
        } else {
            Err(Error::RateLimited {
                retry_after: d.retry_after,
                limit: u64::from(d.limit),
            })
        }
    }
}

/// Adds the verified subject's identifying claims to an audit record:
/// issuer, `sub`, `jti`, and for GitHub the repository, workflow and run.
fn subject_details(mut r: Refused, s: &VerifiedSubject) -> Refused {
    r = r.with("issuer", s.iss.clone()).with("sub", s.sub.clone());
    if let Some(j) = &s.jti {
        r = r.with("subject_jti", j.clone());
    }
    for name in GITHUB_AUDIT_CLAIMS {
        if let Some(v) = s.claims.get(*name).and_then(crate::federation::claim_text) {
            r = r.with(name, v.into_owned());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_scopes_are_a_subset_of_the_grant() {
        let granted = [AdminScope::AgentsWrite, AdminScope::AuditRead];
        assert_eq!(management_scopes(&granted, None).unwrap(), granted);
        assert_eq!(management_scopes(&granted, Some(" ")).unwrap(), granted);
        assert_eq!(
            management_scopes(&granted, Some("agents.read agents_read")).unwrap(),
            [AdminScope::AgentsRead]
        );
        assert!(matches!(
            management_scopes(&granted, Some("admin")),
            Err(Error::InvalidScope { .. })
        ));
        assert!(matches!(
            management_scopes(&granted, Some("root")),
            Err(Error::InvalidScope { .. })
        ));
    }
}

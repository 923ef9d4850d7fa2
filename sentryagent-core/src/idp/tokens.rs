//! The token protocol: client authentication, issuance, verification,
//! introspection and revocation. No HTTP here.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Idp;
use crate::audit::{Outcome, RequestMeta};
use crate::credentials::ClientSecret;
use crate::jose::jwt::{Validation, verify_jwt};
use crate::jose::{Algorithm, KeySet, VerifyingKey};
use crate::ratelimit::{Decision, Quota};
use crate::token::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, Audience, AuthenticatedClient, CLIENT_CREDENTIALS,
    ClientAuthMethod, ClientCredentials, Introspection, IntrospectionClaims,
    JWT_BEARER_ASSERTION_TYPE, TokenRequest, TokenResponse,
};
use crate::usage::UsageKind;
use crate::{Agent, AgentId, Error, LimitKind, Result, Tenant, TenantStatus};

/// What authenticating a client read: its agent, secrets and tenant.
struct Client {
    agent: Agent,
    secrets: Vec<ClientSecret>,
    tenant: Tenant,
}

/// A client's record read ahead of its authentication (introspection reads
/// it with the token's agent and revocation marker, in one store call).
struct Known {
    id: AgentId,
    record: Option<crate::store::ClientRecord>,
}

/// What introspection read about the token, ahead of the authentication:
/// the token's agent (by its `sub`) and, when the agent store keeps
/// markers too, whether the token is revoked there.
struct TokenRead {
    subject: AgentId,
    agent: Option<Agent>,
    revoked: Option<bool>,
}

/// Marker namespace of client-assertion `jti`s already used.
const NS_ASSERTION_JTI: &str = "assertion_jti";
/// Marker namespace of revoked access tokens.
const NS_REVOKED: &str = "revoked_token";
/// Largest accepted `scope` parameter.
pub(super) const MAX_SCOPE_LEN: usize = 2048;

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    jti: Option<String>,
    exp: Option<i64>,
}

/// Most `did:key` verifying keys an `Idp` keeps decoded.
pub(crate) const DID_KEY_CACHE: usize = 4096;

/// The per-tenant rate limit key.
pub(crate) fn tenant_limit_key(t: &Tenant) -> String {
    format!("tenant:{}", t.id)
}

/// The per-tenant quota of its tier.
pub(crate) fn tenant_quota(idp: &Idp, t: &Tenant) -> Quota {
    let rpm = idp
        .inner
        .config
        .tiers
        .limits(t.tier)
        .requests_per_minute
        .max(1);
    Quota {
        limit: rpm,
        period: Duration::from_secs(60),
        burst: rpm,
    }
}

impl Idp {
    /// Admits one request of a client (token, introspection, revocation)
    /// under its own per-client limit, when the tier sets one, and its
    /// tenant's rate limit, in one [`RateLimiter::check_all`] call (one
    /// round trip to a shared limiter): [`Error::RateLimited`] with the
    /// refusing decision's figures otherwise.
    ///
    /// The call is all-or-nothing: a request either limit refuses costs
    /// neither anything, so a client hammering past its own limit cannot eat
    /// the budget of the tenant's other clients, and a tenant out of budget
    /// does not drain its clients' limits.
    ///
    /// The client's key is `tenant:<tenant id>/client:<agent id>`, under the
    /// tenant's key `tenant:<tenant id>`, so that a backend that partitions
    /// keys (Redis Cluster) keeps both in one place.
    ///
    /// Answers the decision to report to the client (its `RateLimit-*`
    /// headers): of the limits that admitted the request, the one with the
    /// fewest requests left.
    ///
    /// [`RateLimiter::check_all`]: crate::RateLimiter::check_all
    pub(super) async fn admit_client_request(
        &self,
        tenant: &Tenant,
        agent: &AgentId,
    ) -> Result<Decision> {
        let per_client = self
            .inner
            .config
            .tiers
            .limits(tenant.tier)
            .client_requests_per_minute;
        let tenant_key = tenant_limit_key(tenant);
        let tenant_quota = tenant_quota(self, tenant);
        // The client's key is made only when its tier limits clients; the
        // checks live on the stack (this runs on every token request).
        let client = per_client.map(|n| {
            let quota = Quota {
                limit: n.max(1),
                period: Duration::from_secs(60),
                burst: n.max(1),
            };
            (format!("{tenant_key}/client:{agent}"), quota)
        });
        let tenant_check = (tenant_key.as_str(), &tenant_quota, 1);
        let both;
        let checks: &[_] = match &client {
            Some((key, quota)) => {
                both = [(key.as_str(), quota, 1), tenant_check];
                &both
            }
            None => std::slice::from_ref(&tenant_check),
        };
        let all = self.inner.limiter.check_all(checks).await?;
        if let Some(d) = all.refusal() {
            return Err(Error::RateLimited {
                retry_after: d.retry_after,
                limit: u64::from(d.limit),
            });
        }
        // On a tie, the tenant's (the last) decision.
        all.decisions
            .into_iter()
            .rev()
            .min_by_key(|d| (d.remaining, std::cmp::Reverse(d.reset_after)))
            .ok_or_else(|| Error::Internal {
                message: "the rate limiter answered no decision".into(),
                source: None,
            })
    }
}

impl Idp {
    /// Authenticates a client by secret or by `private_key_jwt`. Every failure
    /// is the same [`Error::Unauthenticated`] (an unknown client, a wrong, an
    /// expired or a revoked secret, a bad assertion), and is audited.
    pub async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
        request: &RequestMeta,
    ) -> Result<(AuthenticatedClient, Agent)> {
        let (client, record) = self.authenticate(creds, request).await?;
        Ok((client, record.agent))
    }

    /// [`authenticate_client`](Self::authenticate_client), keeping
    /// everything read about the client (its secrets and tenant too).
    async fn authenticate(
        &self,
        creds: &ClientCredentials,
        request: &RequestMeta,
    ) -> Result<(AuthenticatedClient, Client)> {
        self.authenticate_known(creds, request, None).await
    }

    /// [`authenticate`](Self::authenticate) with the client's record
    /// possibly read already (`known`, used when it is the client's).
    async fn authenticate_known(
        &self,
        creds: &ClientCredentials,
        request: &RequestMeta,
        known: Option<Known>,
    ) -> Result<(AuthenticatedClient, Client)> {
        match self.try_authenticate(creds, known).await {
            Ok(found) => Ok(found),
            Err(Failure::Backend(e)) => Err(e),
            Err(Failure::Auth {
                claimed,
                tenant,
                reason,
            }) => {
                let mut ev = self.event(
                    tenant.as_ref(),
                    &format!("client:{}", claimed.chars().take(128).collect::<String>()),
                    "client.authentication_failed",
                    None,
                    Outcome::Failure,
                    request,
                );
                ev.details.insert("reason".into(), reason.into());
                self.audit_failure(ev).await?;
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Records a failed authentication in its chain, unless that chain
    /// already recorded its [`auth_failure_audits_per_minute`] (then only
    /// counts it); a recorded one carries the count of those before it that
    /// were not (`unrecorded_before`).
    ///
    /// [`auth_failure_audits_per_minute`]: crate::IdpConfig::auth_failure_audits_per_minute
    pub(super) async fn audit_failure(&self, mut ev: crate::audit::NewAuditEvent) -> Result<()> {
        let per_minute = self.inner.config.auth_failure_audits_per_minute.max(1);
        let quota = Quota {
            limit: per_minute,
            period: Duration::from_secs(60),
            burst: per_minute,
        };
        let key = match &ev.tenant_id {
            Some(t) => format!("audit-auth-failures:{t}"),
            None => "audit-auth-failures:system".to_owned(),
        };
        // A limiter that fails answers "record": losing the bound for a
        // while is better than losing audit events.
        let record = self
            .inner
            .limiter
            .check(&key, &quota, 1)
            .await
            .map_or(true, |d| d.allowed);
        let chain = ev.tenant_id.clone();
        let unrecorded = {
            let mut counts = self
                .inner
                .unrecorded_failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !record {
                *counts.entry(chain).or_default() += 1;
                return Ok(());
            }
            counts.remove(&chain).unwrap_or(0)
        };
        if unrecorded > 0 {
            ev.details
                .insert("unrecorded_before".into(), unrecorded.to_string());
        }
        if let Err(e) = self.audit(ev).await {
            // Not recorded after all: counted for the next one.
            let mut counts = self
                .inner
                .unrecorded_failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *counts.entry(chain).or_default() += unrecorded + 1;
            return Err(e);
        }
        Ok(())
    }

    async fn try_authenticate(
        &self,
        creds: &ClientCredentials,
        known: Option<Known>,
    ) -> Result<(AuthenticatedClient, Client), Failure> {
        match creds {
            ClientCredentials::Secret {
                client_id,
                client_secret,
            } => {
                let Some(record) = self.load_client_record(client_id, known).await? else {
                    // Hash anyway so an unknown client costs the same time.
                    let _ = self.inner.hasher.hash(client_secret);
                    return Err(Failure::auth(client_id, None, "unknown client"));
                };
                let agent = &record.agent;
                let now = self.now();
                let hash = self.inner.hasher.hash(client_secret);
                let mut ok = false;
                for s in &record.secrets {
                    let eq: bool = subtle::ConstantTimeEq::ct_eq(&hash.0[..], &s.hash.0[..]).into();
                    ok |= eq && s.is_usable(now);
                }
                if !ok {
                    return Err(Failure::auth(
                        client_id,
                        Some(agent.tenant_id.clone()),
                        "bad secret",
                    ));
                }
                Ok((
                    AuthenticatedClient {
                        agent_id: agent.id.clone(),
                        tenant_id: agent.tenant_id.clone(),
                        method: ClientAuthMethod::ClientSecret,
                    },
                    record,
                ))
            }
            ClientCredentials::Assertion {
                client_id,
                assertion_type,
                assertion,
            } => {
                let claimed = client_id.clone().unwrap_or_default();
                if assertion_type != JWT_BEARER_ASSERTION_TYPE {
                    return Err(Failure::auth(&claimed, None, "unsupported assertion type"));
                }
                self.verify_assertion(client_id.as_deref(), assertion, known)
                    .await
            }
        }
    }

    /// The verifying key of a `did:key` (decoded once, then cached: the
    /// decoding checks the encoding and the point, about a seventh of a
    /// `private_key_jwt` request). `None` if it is not a usable key.
    fn did_verifying_key(&self, did: &str) -> Option<VerifyingKey> {
        let cache = || {
            self.inner
                .did_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(key) = cache().get(did) {
            return Some(key.clone());
        }
        let public = crate::did::ed25519_from_did_key(did).ok()?;
        let key = VerifyingKey::ed25519(&public).ok()?;
        let mut keys = cache();
        if keys.len() >= DID_KEY_CACHE {
            keys.clear();
        }
        keys.insert(did.to_owned(), key.clone());
        Some(key)
    }

    /// The client's agent, secrets and tenant; `None` for an unknown client.
    /// The client's agent, secrets and tenant (`known` when it is this
    /// client's record, read already); `None` for an unknown client.
    async fn load_client_record(
        &self,
        client_id: &str,
        known: Option<Known>,
    ) -> Result<Option<Client>, Failure> {
        let Ok(id) = AgentId::parse(client_id) else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let record = match known.filter(|k| k.id == id) {
            Some(Known {
                record: Some(r), ..
            }) => r,
            Some(Known { record: None, .. }) => return Ok(None),
            None => match store.agents.get_client(&id).await {
                Ok(r) => r,
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(Failure::Backend(e)),
            },
        };
        let tenant = match record.tenant {
            Some(t) if store.tenants_beside_agents() => t,
            _ => store
                .tenants
                .get_tenant(&record.agent.tenant_id)
                .await
                .map_err(Failure::Backend)?,
        };
        Ok(Some(Client {
            agent: record.agent,
            secrets: record.secrets,
            tenant,
        }))
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Agent>, Failure> {
        let Ok(id) = AgentId::parse(client_id) else {
            return Ok(None);
        };
        match self.inner.store.agents.get_agent(&id).await {
            Ok(a) => Ok(Some(a)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Failure::Backend(e)),
        }
    }

    async fn verify_assertion(
        &self,
        client_id: Option<&str>,
        assertion: &str,
        known: Option<Known>,
    ) -> Result<(AuthenticatedClient, Client), Failure> {
        let claimed = client_id.unwrap_or_default().to_owned();
        // The subject names the client; read it before trusting anything.
        let parsed = crate::jose::parse_compact(assertion)
            .map_err(|_| Failure::auth(&claimed, None, "malformed assertion"))?;
        let unverified: AssertionClaims = serde_json::from_slice(parsed.payload())
            .map_err(|_| Failure::auth(&claimed, None, "malformed assertion claims"))?;
        let Some(sub) = unverified.sub.clone() else {
            return Err(Failure::auth(&claimed, None, "assertion without sub"));
        };
        if client_id.is_some_and(|c| c != sub) {
            return Err(Failure::auth(
                &claimed,
                None,
                "client_id differs from assertion sub",
            ));
        }
        let Some(record) = self.load_client_record(&sub, known).await? else {
            return Err(Failure::auth(&sub, None, "unknown client"));
        };
        let agent = &record.agent;
        let tenant = Some(agent.tenant_id.clone());
        let fail = |why: &'static str| Failure::auth(&sub, tenant.clone(), why);
        let key = self
            .did_verifying_key(&agent.did)
            .ok_or_else(|| fail("agent key unusable"))?;
        let mut keys = KeySet::default();
        keys.insert(
            parsed
                .header()
                .kid
                .clone()
                .unwrap_or_else(|| agent.did.clone()),
            key,
        );
        let now = self.now();
        let c = &self.inner.config;
        // One signature check; the audience may be the token endpoint or the
        // issuer (RFC 7523 §3), checked below.
        let v = Validation {
            issuer: sub.clone(),
            audience: None,
            leeway: c.leeway,
            now,
            required_typ: None,
        };
        let (_, claims) = verify_jwt::<AssertionClaims, _>(assertion, &keys, &v)
            .map_err(|_| fail("assertion signature or claims invalid"))?;
        let audience_ok = claims
            .aud
            .as_ref()
            .is_some_and(|a| a.contains(&c.token_endpoint) || a.contains(&c.issuer));
        if !audience_ok {
            return Err(fail(
                "assertion audience is neither the token endpoint nor the issuer",
            ));
        }
        if claims.iss.as_deref() != Some(sub.as_str()) {
            return Err(fail("assertion iss differs from sub"));
        }
        let exp = claims.exp.ok_or_else(|| fail("assertion without exp"))?;
        let max_exp = now.plus(c.max_assertion_lifetime + c.leeway).unix_secs();
        if exp > max_exp {
            return Err(fail("assertion lives too long"));
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| fail("assertion without jti"))?;
        let fresh = self
            .inner
            .store
            .markers
            .put_marker(
                NS_ASSERTION_JTI,
                &format!("{sub}:{jti}"),
                crate::Timestamp::from_unix_secs(exp).plus(c.leeway),
                now,
            )
            .await?;
        if !fresh {
            return Err(fail("assertion jti replayed"));
        }
        Ok((
            AuthenticatedClient {
                agent_id: agent.id.clone(),
                tenant_id: agent.tenant_id.clone(),
                method: ClientAuthMethod::PrivateKeyJwt,
            },
            record,
        ))
    }

    /// The token endpoint: `client_credentials` with client authentication,
    /// scope and audience checks, the tenant's rate limit and monthly quota,
    /// then a signed RFC 9068 access token.
    pub async fn issue_token(
        &self,
        req: &TokenRequest,
        request: &RequestMeta,
    ) -> Result<TokenResponse> {
        if req.grant_type != CLIENT_CREDENTIALS {
            return Err(Error::UnsupportedGrantType);
        }
        if req.scope.as_ref().is_some_and(|s| s.len() > MAX_SCOPE_LEN) {
            return Err(Error::invalid("scope", "too long"));
        }
        if req.resources.len() > 10 {
            return Err(Error::invalid("resource", "at most 10 resources"));
        }
        let (_client, Client { agent, tenant, .. }) =
            self.authenticate(&req.client, request).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(Error::TenantSuspended);
        }
        if !agent.state.bears_tokens() {
            return Err(Error::AgentNotActive { state: agent.state });
        }
        let scope = granted_scope(&agent, req.scope.as_deref())?;
        let aud = self.audience(&tenant, &req.resources)?;

        let rate_limit = self.admit_client_request(&tenant, &agent.id).await?;
        let now = self.now();
        self.check_token_quota(&tenant, now).await?;
        let ttl = self.inner.config.token_ttl;
        let (access_token, _) =
            self.sign_agent_token(&agent, &tenant, scope.clone(), aud, ttl, None, now)?;
        self.count_usage(&tenant.id, Some(&agent.id), UsageKind::TokenIssued, now)
            .await;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            scope,
            rate_limit: Some(rate_limit),
        })
    }

    /// `QuotaExceeded` when the tenant's tier allows no more token
    /// issuances this month.
    pub(super) async fn check_token_quota(
        &self,
        tenant: &Tenant,
        now: crate::Timestamp,
    ) -> Result<()> {
        if let Some(limit) = self
            .inner
            .config
            .tiers
            .limits(tenant.tier)
            .token_issuances_per_month
        {
            let used = self
                .usage_in_period(&tenant.id, UsageKind::TokenIssued, now)
                .await?;
            self.emit(crate::IdpEvent::QuotaChecked {
                tier: tenant.tier,
                kind: LimitKind::TokenIssuancesPerMonth,
                used,
                limit,
                admitted: used < limit,
            });
            if used >= limit {
                return Err(Error::QuotaExceeded {
                    limit_kind: LimitKind::TokenIssuancesPerMonth,
                    tier: tenant.tier.to_string(),
                    used,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// Signs an RFC 9068 access token of `agent` living `ttl` from `now`,
    /// with the agent's custom claims and, for an exchanged token, `act`.
    /// Returns the token and its `jti`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sign_agent_token(
        &self,
        agent: &Agent,
        tenant: &Tenant,
        scope: Option<String>,
        aud: Audience,
        ttl: Duration,
        act: Option<&crate::federation::Actor>,
        now: crate::Timestamp,
    ) -> Result<(String, String)> {
        let c = &self.inner.config;
        let iat = now.unix_secs();
        let exp = iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let jti_bytes: [u8; 16] = crate::secret::unique_id_bytes();
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);
        let mut extra = agent.custom_claims.clone();
        if let Some(act) = act {
            // `act` is a reserved claim: no custom claim can hold it.
            extra.insert(
                "act".into(),
                serde_json::to_value(act).map_err(|e| Error::internal("encode act", e))?,
            );
        }
        let claims = AccessTokenClaims {
            iss: c.issuer.clone(),
            sub: agent.id.as_str().to_owned(),
            aud,
            client_id: agent.id.as_str().to_owned(),
            iat,
            nbf: iat,
            exp,
            jti: jti.clone(),
            scope,
            tenant_id: tenant.id.as_str().to_owned(),
            did: agent.did.clone(),
            extra,
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|e| Error::internal("encode claims", e))?;
        let ring = self.ring();
        let signer = ring.signer(agent.token_algorithm.unwrap_or(c.algorithms[0]))?;
        let access_token = signer
            .sign_compact(Some(ACCESS_TOKEN_TYP), &payload)
            .map_err(|e| Error::internal("sign access token", e))?;
        Ok((access_token, jti))
    }

    pub(super) fn audience(&self, tenant: &Tenant, resources: &[String]) -> Result<Audience> {
        let issuer = &self.inner.config.issuer;
        if resources.is_empty() {
            return Ok(Audience::One(issuer.clone()));
        }
        let mut out: Vec<String> = Vec::with_capacity(resources.len());
        for r in resources {
            let r = r.trim_end_matches('/');
            if r != issuer
                && !tenant
                    .allowed_audiences
                    .iter()
                    .any(|a| a.trim_end_matches('/') == r)
            {
                return Err(Error::InvalidTarget {
                    message: format!(
                        "`{}` is not an allowed audience",
                        r.chars().take(200).collect::<String>()
                    ),
                });
            }
            if !out.iter().any(|o| o == r) {
                out.push(r.to_owned());
            }
        }
        Ok(if out.len() == 1 {
            Audience::One(out.remove(0))
        } else {
            Audience::Many(out)
        })
    }

    /// Verifies an access token issued here, offline: signature against the
    /// key ring, `typ`, `iss`, `exp`/`nbf` with leeway and, when given, that
    /// `audience` is among its audiences. Does not consult revocation: see
    /// [`Idp::introspect`].
    pub fn verify_access_token(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<AccessTokenClaims> {
        let ring = self.ring();
        let c = &self.inner.config;
        let v = Validation {
            issuer: c.issuer.clone(),
            audience: audience.map(str::to_owned),
            leeway: c.leeway,
            now: self.now(),
            required_typ: Some(ACCESS_TOKEN_TYP.to_owned()),
        };
        let (_, claims) = verify_jwt::<AccessTokenClaims, _>(token, &ring.verify, &v)?;
        Ok(claims)
    }

    /// Token introspection (RFC 7662) for an authenticated client. Active only
    /// when the token verifies, is not revoked, belongs to the caller's
    /// tenant, its agent still bears tokens and has not ended it (its
    /// secrets revoked or a pause since it was issued:
    /// [`Agent::tokens_not_before`]), and its tenant is not suspended.
    /// Everything else is just `{"active": false}`.
    pub async fn introspect(
        &self,
        caller: &ClientCredentials,
        token: &str,
        request: &RequestMeta,
    ) -> Result<Introspection> {
        // The token is verified first (offline), so that the caller's
        // record, the token's agent and its revocation marker are read in
        // one store call (`AgentStore::introspection_record`; one query on
        // Postgres).
        let claims = self.verify_access_token(token, None).ok();
        let mut known = None;
        let mut read = None;
        if let Some(c) = &claims
            && let Some(caller_id) = claimed_client_id(caller)
            && let Ok(caller_id) = AgentId::parse(&caller_id)
            && let Ok(subject) = AgentId::parse(&c.sub)
        {
            let r = self
                .inner
                .store
                .agents
                .introspection_record(&caller_id, &subject, (NS_REVOKED, &c.jti), self.now())
                .await?;
            known = Some(Known {
                id: caller_id,
                record: r.caller,
            });
            read = Some(TokenRead {
                subject,
                agent: r.subject,
                revoked: r.revoked,
            });
        }
        let (client, Client { tenant, .. }) =
            self.authenticate_known(caller, request, known).await?;
        let rate_limit = self.admit_client_request(&tenant, &client.agent_id).await?;
        let mut answer = self
            .introspect_admitted(&client, &tenant, claims, read)
            .await?;
        answer.rate_limit = Some(rate_limit);
        Ok(answer)
    }

    /// The introspection answer for an admitted caller.
    async fn introspect_admitted(
        &self,
        client: &AuthenticatedClient,
        tenant: &Tenant,
        claims: Option<AccessTokenClaims>,
        read: Option<TokenRead>,
    ) -> Result<Introspection> {
        let Some(claims) = claims else {
            return Ok(Introspection::inactive());
        };
        if claims.tenant_id != client.tenant_id.as_str() {
            return Ok(Introspection::inactive());
        }
        let read = read.filter(|r| r.subject.as_str() == claims.sub);
        // A marker read with the agents counts only if the marker store is
        // that backend.
        let stored = read
            .as_ref()
            .and_then(|r| r.revoked)
            .filter(|_| self.inner.store.markers_beside_agents());
        let revoked = match stored {
            Some(true) => true,
            Some(false) => match &self.inner.revocations {
                Some(cache) => cache.is_revoked(&claims.jti).await?,
                None => false,
            },
            None => self.is_revoked(&claims.jti).await?,
        };
        if revoked {
            return Ok(Introspection::inactive());
        }
        let agent = match read {
            Some(r) => r.agent,
            None => self
                .load_client(&claims.sub)
                .await
                .map_err(Failure::into_error)?,
        };
        let Some(agent) = agent else {
            return Ok(Introspection::inactive());
        };
        // The token's tenant is the caller's (checked above).
        if !agent.state.bears_tokens()
            || agent.ended_token(claims.iat)
            || tenant.status == TenantStatus::Suspended
        {
            return Ok(Introspection::inactive());
        }
        Ok(Introspection {
            active: true,
            claims: Some(IntrospectionClaims {
                scope: claims.scope,
                client_id: claims.client_id,
                token_type: "Bearer".into(),
                exp: claims.exp,
                iat: claims.iat,
                nbf: claims.nbf,
                sub: claims.sub,
                aud: claims.aud,
                iss: claims.iss,
                jti: claims.jti,
                tenant_id: claims.tenant_id,
                did: claims.did,
            }),
            rate_limit: None,
        })
    }

    /// Token revocation (RFC 7009) by the client the token was issued to.
    /// Unknown, invalid or foreign tokens are not an error (nothing happens).
    /// Answers the rate-limit decision that admitted the request (for its
    /// `RateLimit-*` headers).
    pub async fn revoke(
        &self,
        caller: &ClientCredentials,
        token: &str,
        request: &RequestMeta,
    ) -> Result<Decision> {
        let (client, Client { tenant, .. }) = self.authenticate(caller, request).await?;
        let rate_limit = self.admit_client_request(&tenant, &client.agent_id).await?;
        self.revoke_admitted(&client, token, request).await?;
        Ok(rate_limit)
    }

    /// Revokes `token` for an admitted caller.
    async fn revoke_admitted(
        &self,
        client: &AuthenticatedClient,
        token: &str,
        request: &RequestMeta,
    ) -> Result<()> {
        let ring = self.ring();
        let v = Validation {
            issuer: self.inner.config.issuer.clone(),
            audience: None,
            leeway: Duration::from_secs(365 * 24 * 3600),
            now: self.now(),
            required_typ: Some(ACCESS_TOKEN_TYP.to_owned()),
        };
        let Ok((_, claims)) = verify_jwt::<AccessTokenClaims, _>(token, &ring.verify, &v) else {
            return Ok(());
        };
        if claims.client_id != client.agent_id.as_str() {
            return Ok(());
        }
        let now = self.now();
        let until = crate::Timestamp::from_unix_secs(claims.exp).plus(self.inner.config.leeway);
        if until <= now {
            return Ok(());
        }
        self.inner
            .store
            .markers
            .put_marker(NS_REVOKED, &claims.jti, until, now)
            .await?;
        if let Some(cache) = &self.inner.revocations {
            cache.revoke(&claims.jti, until).await?;
        }
        let mut ev = self.event(
            Some(&client.tenant_id),
            &format!("agent:{}", client.agent_id),
            "token.revoked",
            Some(&claims.jti),
            Outcome::Success,
            request,
        );
        ev.details.insert("exp".into(), claims.exp.to_string());
        self.audit(ev).await?;
        Ok(())
    }

    /// Whether a token id was revoked (for resource servers that verify
    /// offline and check revocation separately).
    pub async fn is_revoked(&self, jti: &str) -> Result<bool> {
        if let Some(cache) = &self.inner.revocations
            && cache.is_revoked(jti).await?
        {
            return Ok(true);
        }
        self.inner
            .store
            .markers
            .has_marker(NS_REVOKED, jti, self.now())
            .await
    }

    /// The algorithms tokens can be signed with.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.inner.config.algorithms
    }
}

/// The client id credentials claim: `client_id`, or for an assertion
/// without it, the assertion's `sub` (not verified: only to read the
/// client's record ahead; authentication checks everything).
fn claimed_client_id(creds: &ClientCredentials) -> Option<String> {
    match creds {
        ClientCredentials::Secret { client_id, .. } => Some(client_id.clone()),
        ClientCredentials::Assertion {
            client_id: Some(id),
            ..
        } => Some(id.clone()),
        ClientCredentials::Assertion { assertion, .. } => {
            let parsed = crate::jose::parse_compact(assertion).ok()?;
            serde_json::from_slice::<AssertionClaims>(parsed.payload())
                .ok()?
                .sub
        }
    }
}

pub(super) fn granted_scope(agent: &Agent, requested: Option<&str>) -> Result<Option<String>> {
    let Some(req) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(if agent.allowed_scopes.is_empty() {
            None
        } else {
            Some(agent.allowed_scopes.join(" "))
        });
    };
    let mut granted: Vec<&str> = Vec::new();
    for s in req.split(' ').filter(|s| !s.is_empty()) {
        if !s
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(Error::invalid(
                "scope",
                "scope tokens are printable ASCII without \" or \\",
            ));
        }
        if !agent.allowed_scopes.iter().any(|a| a == s) {
            return Err(Error::InvalidScope {
                message: format!("`{s}` is not allowed for this client"),
            });
        }
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    Ok(Some(granted.join(" ")))
}

enum Failure {
    Auth {
        claimed: String,
        tenant: Option<crate::TenantId>,
        reason: &'static str,
    },
    Backend(Error),
}

impl Failure {
    fn auth(claimed: &str, tenant: Option<crate::TenantId>, reason: &'static str) -> Self {
        Failure::Auth {
            claimed: claimed.to_owned(),
            tenant,
            reason,
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Backend(e) => e,
            Failure::Auth { .. } => Error::Unauthenticated,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Backend(e)
    }
}

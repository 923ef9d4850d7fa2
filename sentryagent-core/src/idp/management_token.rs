//! Management tokens: what a token exchange for a tenant yields. A JWT
//! signed by the IdP's key ring (`typ` [`MANAGEMENT_TOKEN_TYP`]), short
//! lived, naming its tenant, its admin scopes and the trust policy that
//! granted it; accepted by the management API as `Authorization: Bearer`
//! ([`Idp::authenticate_bearer`]).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Caller, Idp};
use crate::audit::{Outcome, RequestMeta};
use crate::credentials::{ADMIN_KEY_PREFIX, AdminScope};
use crate::federation::{Actor, MANAGEMENT_TOKEN_TYP, TrustPolicy};
use crate::jose::jwt::{Validation, verify_jwt};
use crate::{Error, Result, Tenant, TrustPolicyId};

/// The claims of a management token.
#[derive(Debug, Serialize, Deserialize)]
struct ManagementClaims {
    iss: String,
    /// The trust policy that granted it.
    sub: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    tenant_id: String,
    /// Admin scopes, space separated.
    scope: String,
    act: Actor,
}

impl Idp {
    /// The audience of management tokens: the management API.
    fn management_audience(&self) -> String {
        format!("{}/v1", self.inner.config.issuer)
    }

    /// Signs a management token of `tenant` with `scopes`, granted by
    /// `policy` to `act`, living `ttl` from `now`. Returns it and its `jti`.
    pub(super) fn sign_management_token(
        &self,
        tenant: &Tenant,
        policy: &TrustPolicy,
        scopes: &[AdminScope],
        ttl: Duration,
        act: &Actor,
        now: crate::Timestamp,
    ) -> Result<(String, String)> {
        let iat = now.unix_secs();
        let jti = URL_SAFE_NO_PAD.encode(crate::secret::unique_id_bytes::<16>());
        let claims = ManagementClaims {
            iss: self.inner.config.issuer.clone(),
            sub: policy.id.to_string(),
            aud: self.management_audience(),
            iat,
            nbf: iat,
            exp: iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: jti.clone(),
            tenant_id: tenant.id.to_string(),
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            act: act.clone(),
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|e| Error::internal("encode claims", e))?;
        let ring = self.ring();
        let token = ring
            .signer(self.inner.config.algorithms[0])?
            .sign_compact(Some(MANAGEMENT_TOKEN_TYP), &payload)
            .map_err(|e| Error::internal("sign management token", e))?;
        Ok((token, jti))
    }

    /// Authenticates a management API bearer value: an admin key (see
    /// [`Idp::authenticate_admin`]) or a management token from a token
    /// exchange. A management token is accepted while it has not expired
    /// (with the configured leeway) and the trust policy that granted it
    /// still exists, still belongs to the token's tenant and still grants
    /// its scopes; its caller reaches that tenant only, with those scopes.
    /// Every failure is the same `Unauthenticated`, and is audited.
    pub async fn authenticate_bearer(&self, bearer: &str, request: &RequestMeta) -> Result<Caller> {
        if !bearer.starts_with(ADMIN_KEY_PREFIX)
            && bearer.bytes().filter(|b| *b == b'.').count() == 2
        {
            return self.authenticate_management_token(bearer, request).await;
        }
        let key = self.authenticate_admin(bearer, request).await?;
        Ok(Caller::from_key(&key, request.clone()))
    }

    async fn authenticate_management_token(
        &self,
        token: &str,
        request: &RequestMeta,
    ) -> Result<Caller> {
        match self.check_management_token(token).await {
            Ok((claims, scopes)) => Ok(Caller {
                actor: format!("trust_policy:{}", claims.sub),
                tenant: Some(crate::TenantId::parse(&claims.tenant_id)?),
                scopes,
                request: request.clone(),
            }),
            Err(Some(e)) => Err(e),
            Err(None) => {
                self.audit_failure(self.event(
                    None,
                    "anonymous",
                    "management_token.authentication_failed",
                    None,
                    Outcome::Failure,
                    request,
                ))
                .await?;
                Err(Error::Unauthenticated)
            }
        }
    }

    /// The claims and scopes of a valid management token; `Err(None)` when
    /// it does not authenticate, `Err(Some(_))` when a backend fails.
    async fn check_management_token(
        &self,
        token: &str,
    ) -> std::result::Result<(ManagementClaims, Vec<AdminScope>), Option<Error>> {
        let ring = self.ring();
        let c = &self.inner.config;
        let v = Validation {
            issuer: c.issuer.clone(),
            audience: Some(self.management_audience()),
            leeway: c.leeway,
            now: self.now(),
            required_typ: Some(MANAGEMENT_TOKEN_TYP.to_owned()),
        };
        let (_, claims) =
            verify_jwt::<ManagementClaims, _>(token, &ring.verify, &v).map_err(|_| None)?;
        let id = TrustPolicyId::parse(&claims.sub).map_err(|_| None)?;
        let policy = match self.inner.store.trust_policies.get_trust_policy(&id).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => return Err(None),
            Err(e) => return Err(Some(e)),
        };
        if policy.tenant_id.as_str() != claims.tenant_id {
            return Err(None);
        }
        let granted = policy.grant.admin_scopes().ok_or(None)?;
        let mut scopes = Vec::new();
        for name in claims.scope.split(' ').filter(|s| !s.is_empty()) {
            let s = AdminScope::from_name(name).ok_or(None)?;
            if !granted.iter().any(|g| g.covers(s)) {
                return Err(None);
            }
            scopes.push(s);
        }
        if scopes.is_empty() {
            return Err(None);
        }
        Ok((claims, scopes))
    }
}

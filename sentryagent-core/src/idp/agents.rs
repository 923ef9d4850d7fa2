//! Agent registration, changes, lifecycle, credentials and the marketplace.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::admin::validate_text;
use super::{Caller, Idp};
use crate::audit::Outcome;
use crate::credentials::{AdminScope, CLIENT_SECRET_PREFIX, ClientSecret};
use crate::did::{DidDocument, did_key_from_ed25519, ed25519_from_did_key};
use crate::jose::{Algorithm, Jwk, SigningKey};
use crate::page::{Page, PageRequest};
use crate::secret::generate_secret;
use crate::token::RESERVED_CLAIMS;
use crate::{
    Agent, AgentId, Error, IdpEvent, LifecycleState, LimitKind, MarketplaceQuery, Result, SecretId,
    Tenant, TenantId, TenantStatus, Timestamp, Visibility,
};

/// Largest number of capabilities, tags or scopes of an agent.
const MAX_LIST: usize = 64;

/// Input for registering an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Name, unique within the tenant (1 to 100 characters).
    pub name: String,
    /// Description (up to 2000 characters).
    #[serde(default)]
    pub description: String,
    /// Software version (default `1.0.0`).
    #[serde(default)]
    pub version: Option<String>,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Visibility (default private).
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// The agent's own public key as a `did:key`; the IdP never sees its
    /// private key. Give this or `public_jwk`, or neither to have a key
    /// generated.
    #[serde(default)]
    pub did: Option<String>,
    /// The agent's own public key as an Ed25519 JWK.
    #[serde(default)]
    pub public_jwk: Option<Jwk>,
    /// Initial state: `active` (default) or `draft`.
    #[serde(default)]
    pub state: Option<LifecycleState>,
    /// Scopes it may request.
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    /// Extra claims of its access tokens.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub custom_claims: serde_json::Map<String, serde_json::Value>,
    /// Algorithm of its access tokens (one the deployment enables).
    #[serde(default)]
    pub token_algorithm: Option<Algorithm>,
    /// Whether to issue a client secret (default true). `false` for an
    /// agent that authenticates only with its key (`private_key_jwt`) or
    /// gets its tokens by token exchange: no secret ever exists (until one
    /// is rotated in).
    #[serde(default)]
    pub issue_client_secret: Option<bool>,
}

/// Changes to an agent; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Capabilities.
    pub capabilities: Option<Vec<String>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Category (`null` is "leave"; use an empty string to clear).
    pub category: Option<String>,
    /// Visibility.
    pub visibility: Option<Visibility>,
    /// Allowed scopes.
    pub allowed_scopes: Option<Vec<String>>,
    /// Custom claims.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub custom_claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// Token algorithm.
    pub token_algorithm: Option<Algorithm>,
}

/// An Ed25519 private key as a JWK (RFC 8037), returned once at registration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ed25519PrivateJwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// Public key, base64url.
    pub x: String,
    /// Private key, base64url.
    pub d: String,
    /// The agent's DID as key id.
    pub kid: String,
}

impl std::fmt::Debug for Ed25519PrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519PrivateJwk")
            .field("x", &self.x)
            .finish_non_exhaustive()
    }
}

/// A registered agent and what is shown only once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredAgent {
    /// The stored agent.
    pub agent: Agent,
    /// Its client secret (store it now: it is kept only hashed); `None`
    /// when registered with `issue_client_secret: false`.
    pub client_secret: Option<String>,
    /// The generated private key, when the agent brought none.
    pub private_jwk: Option<Ed25519PrivateJwk>,
}

impl std::fmt::Debug for RegisteredAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredAgent")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

fn validate_list(field: &'static str, items: &[String]) -> Result<()> {
    if items.len() > MAX_LIST {
        return Err(Error::invalid(field, format!("at most {MAX_LIST} items")));
    }
    for i in items {
        if i.is_empty() || i.len() > 100 || i.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::invalid(
                field,
                "items are 1 to 100 characters without spaces",
            ));
        }
    }
    Ok(())
}

fn validate_description(d: &str) -> Result<()> {
    super::admin::check_length_and_controls("description", d, 2000, &['\n'])
}

fn validate_claims(max: usize, claims: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    for k in claims.keys() {
        if RESERVED_CLAIMS.contains(&k.as_str()) {
            return Err(Error::invalid(
                "custom_claims",
                format!("`{k}` is a reserved claim"),
            ));
        }
    }
    let size = serde_json::to_vec(claims)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max {
        return Err(Error::invalid(
            "custom_claims",
            format!("at most {max} bytes of JSON"),
        ));
    }
    Ok(())
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

impl Idp {
    fn validate_algorithm(&self, alg: Option<Algorithm>) -> Result<()> {
        match alg {
            Some(a) if !self.inner.config.algorithms.contains(&a) => Err(Error::invalid(
                "token_algorithm",
                format!("{} is not enabled on this deployment", a.as_str()),
            )),
            _ => Ok(()),
        }
    }

    fn new_client_secret(&self, agent: &AgentId, now: Timestamp) -> (ClientSecret, String) {
        let secret = generate_secret(CLIENT_SECRET_PREFIX);
        let record = ClientSecret {
            id: SecretId::generate(),
            agent_id: agent.clone(),
            hash: self.inner.hasher.hash(&secret),
            created_at: now,
            expires_at: None,
            revoked_at: None,
        };
        (record, secret)
    }

    /// Registers an agent in `tenant`: checks the tier's agent limit, stores
    /// the agent with its identity and a client secret, and audits it.
    pub async fn register_agent(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        new: NewAgent,
    ) -> Result<RegisteredAgent> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::AgentsWrite)?;
        validate_text("name", &new.name, 100)?;
        validate_description(&new.description)?;
        let version = new.version.clone().unwrap_or_else(|| "1.0.0".into());
        validate_text("version", &version, 50)?;
        validate_list("capabilities", &new.capabilities)?;
        validate_list("tags", &new.tags)?;
        validate_list("allowed_scopes", &new.allowed_scopes)?;
        if let Some(c) = &new.category {
            validate_text("category", c, 100)?;
        }
        validate_claims(
            self.inner.config.max_custom_claims_bytes,
            &new.custom_claims,
        )?;
        self.validate_algorithm(new.token_algorithm)?;
        let state = new.state.unwrap_or(LifecycleState::Active);
        if !matches!(state, LifecycleState::Active | LifecycleState::Draft) {
            return Err(Error::invalid(
                "state",
                "a new agent starts as active or draft",
            ));
        }
        let (did, private_jwk) = match (&new.did, &new.public_jwk) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("did", "give did or public_jwk, not both"));
            }
            (Some(did), None) => {
                ed25519_from_did_key(did)?;
                (did.clone(), None)
            }
            (None, Some(jwk)) => {
                let pk = jwk
                    .ed25519_public_key()
                    .map_err(|e| Error::invalid("public_jwk", e.to_string()))?;
                (did_key_from_ed25519(&pk), None)
            }
            (None, None) => {
                let key = SigningKey::generate(Algorithm::EdDSA, String::new())
                    .map_err(|e| Error::internal("generate agent key", e))?;
                let secret = key.secret_bytes();
                let pk = key
                    .verifying_key()
                    .to_jwk()
                    .ed25519_public_key()
                    .map_err(|e| Error::Internal {
                        message: format!("generated key: {e}"),
                        source: None,
                    })?;
                let did = did_key_from_ed25519(&pk);
                let jwk = Ed25519PrivateJwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(pk),
                    d: URL_SAFE_NO_PAD.encode(&secret[..]),
                    kid: did.clone(),
                };
                (did, Some(jwk))
            }
        };
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        let limits = self.inner.config.tiers.limits(t.tier);
        let now = self.now();
        let agent = Agent {
            id: AgentId::generate(),
            tenant_id: tenant.clone(),
            name: new.name,
            description: new.description,
            version,
            capabilities: dedup(new.capabilities),
            tags: dedup(new.tags),
            category: new.category,
            visibility: new.visibility.unwrap_or_default(),
            state,
            did,
            allowed_scopes: dedup(new.allowed_scopes),
            custom_claims: new.custom_claims,
            token_algorithm: new.token_algorithm,
            tokens_not_before: None,
            state_changed_at: Some(now),
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        let (secret_record, secret) = if new.issue_client_secret.unwrap_or(true) {
            let (record, secret) = self.new_client_secret(&agent.id, now);
            (Some(record), Some(secret))
        } else {
            (None, None)
        };
        match self
            .inner
            .store
            .agents
            .create_agent(&agent, secret_record.as_ref(), limits.max_agents)
            .await
        {
            Ok(()) => {
                // The store checked the limit with the insert; its count is
                // read again only for the observers, and the registration
                // stands whether that read succeeds or not.
                if let Some(limit) = limits.max_agents
                    && self.observed()
                    && let Ok(held) = self.agent_count(tenant).await
                {
                    self.emit(IdpEvent::QuotaChecked {
                        tier: t.tier,
                        kind: LimitKind::Agents,
                        used: held.saturating_sub(1),
                        limit,
                        admitted: true,
                    });
                }
            }
            Err(Error::QuotaExceeded {
                limit_kind,
                used,
                limit,
                ..
            }) => {
                self.emit(IdpEvent::QuotaChecked {
                    tier: t.tier,
                    kind: limit_kind,
                    used,
                    limit,
                    admitted: false,
                });
                let mut ev = self.event(
                    Some(tenant),
                    &caller.actor,
                    "agent.registration_refused",
                    None,
                    Outcome::Failure,
                    &caller.request,
                );
                ev.details.insert("reason".into(), "agent limit".into());
                self.audit(ev).await?;
                return Err(Error::QuotaExceeded {
                    limit_kind,
                    tier: t.tier.to_string(),
                    used,
                    limit,
                });
            }
            Err(e) => return Err(e),
        }
        let mut ev = self.event(
            Some(tenant),
            &caller.actor,
            "agent.registered",
            Some(agent.id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        ev.details.insert("state".into(), agent.state.to_string());
        ev.details.insert("did".into(), agent.did.clone());
        ev.details
            .insert("secret_issued".into(), secret.is_some().to_string());
        ev.details.insert(
            "key".into(),
            if private_jwk.is_some() {
                "generated"
            } else {
                "brought"
            }
            .into(),
        );
        self.audit(ev).await?;
        Ok(RegisteredAgent {
            agent,
            client_secret: secret,
            private_jwk,
        })
    }

    /// An agent the caller reaches.
    pub async fn get_agent(&self, caller: &Caller, id: &AgentId) -> Result<Agent> {
        caller.require(AdminScope::AgentsRead)?;
        let agent = self.inner.store.agents.get_agent(id).await?;
        caller.reach(&agent.tenant_id, "agent")?;
        Ok(agent)
    }

    /// A tenant's agents.
    pub async fn list_agents(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        self.list_agents_named(caller, tenant, None, page).await
    }

    /// A tenant's agents; with `name`, only the agent of that name (a page
    /// of none or one: names are unique in a tenant), to find an agent again
    /// by the name a deployment gave it.
    pub async fn list_agents_named(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        name: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::AgentsRead)?;
        let Some(name) = name else {
            return self.inner.store.agents.list_agents(tenant, page).await;
        };
        let items = match self
            .inner
            .store
            .agents
            .get_agent_by_name(tenant, name)
            .await
        {
            Ok(a) => vec![a],
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    async fn change_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        action: &str,
        mut change: impl FnMut(&mut Agent) -> Result<()>,
    ) -> Result<Agent> {
        caller.require(AdminScope::AgentsWrite)?;
        for _ in 0..16 {
            let mut agent = self.inner.store.agents.get_agent(id).await?;
            caller.reach(&agent.tenant_id, "agent")?;
            let before = agent.state;
            change(&mut agent)?;
            agent.updated_at = self.now();
            if agent.state != before {
                agent.state_changed_at = Some(agent.updated_at);
            }
            match self.inner.store.agents.update_agent(&agent).await {
                Ok(stored) => {
                    let mut ev = self.event(
                        Some(&stored.tenant_id),
                        &caller.actor,
                        action,
                        Some(id.as_str()),
                        Outcome::Success,
                        &caller.request,
                    );
                    let moved = before != stored.state;
                    if moved {
                        ev.details.insert("from".into(), before.to_string());
                        ev.details.insert("to".into(), stored.state.to_string());
                    }
                    self.audit(ev).await?;
                    if moved {
                        self.emit(IdpEvent::LifecycleTransition {
                            from: before,
                            to: stored.state,
                        });
                    }
                    return Ok(stored);
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict("agent is changing too often; try again"))
    }

    /// Changes an agent's description fields.
    pub async fn update_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        patch: AgentPatch,
    ) -> Result<Agent> {
        if let Some(n) = &patch.name {
            validate_text("name", n, 100)?;
        }
        if let Some(d) = &patch.description {
            validate_description(d)?;
        }
        if let Some(v) = &patch.version {
            validate_text("version", v, 50)?;
        }
        for (f, l) in [
            ("capabilities", &patch.capabilities),
            ("tags", &patch.tags),
            ("allowed_scopes", &patch.allowed_scopes),
        ] {
            if let Some(l) = l {
                validate_list(f, l)?;
            }
        }
        if let Some(c) = &patch.category
            && !c.is_empty()
        {
            validate_text("category", c, 100)?;
        }
        if let Some(c) = &patch.custom_claims {
            validate_claims(self.inner.config.max_custom_claims_bytes, c)?;
        }
        self.validate_algorithm(patch.token_algorithm)?;
        self.change_agent(caller, id, "agent.updated", |a| {
            let p = patch.clone();
            if let Some(v) = p.name {
                a.name = v;
            }
            if let Some(v) = p.description {
                a.description = v;
            }
            if let Some(v) = p.version {
                a.version = v;
            }
            if let Some(v) = p.capabilities {
                a.capabilities = dedup(v);
            }
            if let Some(v) = p.tags {
                a.tags = dedup(v);
            }
            if let Some(v) = p.category {
                a.category = if v.is_empty() { None } else { Some(v) };
            }
            if let Some(v) = p.visibility {
                a.visibility = v;
            }
            if let Some(v) = p.allowed_scopes {
                a.allowed_scopes = dedup(v);
            }
            if let Some(v) = p.custom_claims {
                a.custom_claims = v;
            }
            if let Some(v) = p.token_algorithm {
                a.token_algorithm = Some(v);
            }
            Ok(())
        })
        .await
    }

    /// Moves an agent through its lifecycle (see [`LifecycleState`] for the
    /// table); an illegal transition is `Conflict`.
    pub async fn transition_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        to: LifecycleState,
    ) -> Result<Agent> {
        let now = self.now();
        self.change_agent(caller, id, "agent.state_changed", |a| {
            if !a.state.can_transition_to(to) {
                return Err(Error::conflict(format!(
                    "an agent cannot go from {} to {to}",
                    a.state
                )));
            }
            // Tokens issued before a pause stay ended when it resumes.
            if a.state.bears_tokens() && !to.bears_tokens() {
                a.tokens_not_before = Some(now);
            }
            a.state = to;
            Ok(())
        })
        .await
    }

    /// Longest grace period of a rotation ([`Idp::rotate_client_secret`]):
    /// 30 days.
    pub const MAX_SECRET_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

    /// Issues a new client secret; the previous ones keep working for the
    /// grace period: `grace`, or [`IdpConfig::secret_grace_period`](super::IdpConfig)
    /// when `None`. A grace of zero ends the previous secrets at once; one
    /// longer than [`Idp::MAX_SECRET_GRACE`] is `Invalid`. Returns the new secret
    /// and the end of the grace period.
    pub async fn rotate_client_secret(
        &self,
        caller: &Caller,
        id: &AgentId,
        grace: Option<Duration>,
    ) -> Result<(String, Timestamp)> {
        if grace.is_some_and(|g| g > Self::MAX_SECRET_GRACE) {
            return Err(Error::invalid(
                "grace_seconds",
                format!(
                    "at most {} seconds (30 days)",
                    Self::MAX_SECRET_GRACE.as_secs()
                ),
            ));
        }
        let agent = self.get_agent(caller, id).await?;
        caller.require(AdminScope::AgentsWrite)?;
        if agent.state == LifecycleState::Retired {
            return Err(Error::conflict("a retired agent gets no new credentials"));
        }
        let grace = grace.unwrap_or(self.inner.config.secret_grace_period);
        let now = self.now();
        let until = now.plus(grace);
        let (record, secret) = self.new_client_secret(id, now);
        self.inner
            .store
            .agents
            .rotate_client_secret(id, &record, until)
            .await?;
        let mut ev = self.event(
            Some(&agent.tenant_id),
            &caller.actor,
            "credential.rotated",
            Some(id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        ev.details.insert("secret_id".into(), record.id.to_string());
        ev.details
            .insert("previous_valid_until".into(), until.to_string());
        ev.details
            .insert("grace_seconds".into(), grace.as_secs().to_string());
        self.audit(ev).await?;
        Ok((secret, until))
    }

    /// Revokes every client secret of an agent, at once, and ends the
    /// access tokens issued so far ([`Agent::tokens_not_before`]).
    pub async fn revoke_client_secrets(&self, caller: &Caller, id: &AgentId) -> Result<u64> {
        let agent = self.get_agent(caller, id).await?;
        caller.require(AdminScope::AgentsWrite)?;
        let now = self.now();
        // Tokens first: should the second step fail, the caller retries,
        // and nothing was left valid that the caller meant to end.
        self.end_tokens_issued_until(id, now).await?;
        let n = self
            .inner
            .store
            .agents
            .revoke_client_secrets(id, now)
            .await?;
        let mut ev = self.event(
            Some(&agent.tenant_id),
            &caller.actor,
            "credential.revoked",
            Some(id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        ev.details.insert("count".into(), n.to_string());
        self.audit(ev).await?;
        Ok(n)
    }

    /// Sets [`Agent::tokens_not_before`] to `now` (a later value already
    /// stored stays), retrying on concurrent changes.
    async fn end_tokens_issued_until(&self, id: &AgentId, now: Timestamp) -> Result<()> {
        for _ in 0..16 {
            let mut agent = self.inner.store.agents.get_agent(id).await?;
            if agent.tokens_not_before.is_some_and(|t| t >= now) {
                return Ok(());
            }
            agent.tokens_not_before = Some(now);
            agent.updated_at = now;
            match self.inner.store.agents.update_agent(&agent).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict("agent is changing too often; try again"))
    }

    // ---- public ----

    /// Searches the marketplace (public agents, listed or active, of
    /// tenants that are not suspended), by id. A page may hold fewer than
    /// its limit while a `next_cursor` follows: the agents of suspended
    /// tenants are left out of it.
    ///
    /// Refuses, with [`Error::Invalid`] naming the field, what
    /// [`MarketplaceQuery::validate`] refuses and a cursor that is not one
    /// this listing hands out. A `locator` may be an absolute URL under the
    /// issuer (the locators of the OASF record); one elsewhere matches
    /// nothing.
    pub async fn search_marketplace(
        &self,
        query: &MarketplaceQuery,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        query.validate()?;
        if let Some(c) = &page.cursor
            && AgentId::parse(c).is_err()
        {
            return Err(Error::invalid("cursor", "not a cursor of this listing"));
        }
        let mut query = std::borrow::Cow::Borrowed(query);
        if let Some(locator) = &query.locator {
            match locator_path(&self.config().issuer, locator) {
                LocatorPath::Path(p) => query.to_mut().locator = Some(p),
                LocatorPath::Everything => query.to_mut().locator = None,
                LocatorPath::Nothing => {
                    return Ok(Page {
                        items: vec![],
                        next_cursor: None,
                    });
                }
            }
        }
        let mut found = self
            .inner
            .store
            .agents
            .search_marketplace(&query, page)
            .await?;
        let publishers = self.listing_publishers(&found.items).await?;
        found
            .items
            .retain(|a| publishers.contains_key(&a.tenant_id));
        Ok(found)
    }

    /// The tenants of `agents` whose listings show, by id: those that are
    /// not suspended (while a suspension lasts its agents are gone from the
    /// marketplace: search, their own pages, the publisher's page and their
    /// badges). One store read for all of them.
    pub(crate) async fn listing_publishers(
        &self,
        agents: &[Agent],
    ) -> Result<std::collections::HashMap<TenantId, Tenant>> {
        let ids: std::collections::HashSet<&TenantId> =
            agents.iter().map(|a| &a.tenant_id).collect();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let ids: Vec<TenantId> = ids.into_iter().cloned().collect();
        Ok(self
            .inner
            .store
            .tenants
            .get_tenants(&ids)
            .await?
            .into_iter()
            .filter(|t| t.status != TenantStatus::Suspended)
            .map(|t| (t.id.clone(), t))
            .collect())
    }

    /// A marketplace agent with its publisher; `NotFound` unless public and
    /// listed or active.
    pub async fn marketplace_agent(&self, id: &AgentId) -> Result<(Agent, Tenant)> {
        let agent = self.inner.store.agents.get_agent(id).await?;
        if !agent.is_in_marketplace() {
            return Err(Error::not_found("agent"));
        }
        let tenant = self
            .inner
            .store
            .tenants
            .get_tenant(&agent.tenant_id)
            .await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(Error::not_found("agent"));
        }
        Ok((agent, tenant))
    }

    /// A publisher (tenant) by its slug, for its public profile;
    /// `NotFound` for an unknown slug or a suspended tenant.
    pub async fn publisher(&self, slug: &str) -> Result<Tenant> {
        if crate::tenant::validate_slug(slug).is_err() {
            return Err(Error::not_found("publisher"));
        }
        let tenant = match self.inner.store.tenants.get_tenant_by_slug(slug).await {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => return Err(Error::not_found("publisher")),
            Err(e) => return Err(e),
        };
        if tenant.status == TenantStatus::Suspended {
            return Err(Error::not_found("publisher"));
        }
        Ok(tenant)
    }

    /// The DID document of an agent: public for marketplace agents; others
    /// only for a caller reaching their tenant.
    pub async fn did_document(&self, caller: Option<&Caller>, id: &AgentId) -> Result<DidDocument> {
        let agent = self.inner.store.agents.get_agent(id).await?;
        let visible = agent.is_in_marketplace()
            || caller.is_some_and(|c| c.reach(&agent.tenant_id, "agent").is_ok());
        if !visible {
            return Err(Error::not_found("agent"));
        }
        Ok(DidDocument::from_did_key(&agent.did)?)
    }

    /// How many agents count against a tenant's limit (not retired).
    pub(crate) async fn agent_count(&self, tenant: &TenantId) -> Result<u64> {
        self.inner.store.agents.count_agents(tenant).await
    }
}

/// What a `locator` filter means below an issuer.
#[derive(Debug, PartialEq, Eq)]
enum LocatorPath {
    /// The filter on the path below the issuer (`*` kept).
    Path(String),
    /// Every listing's locators match (a prefix of the issuer itself).
    Everything,
    /// No listing's locator matches (another host).
    Nothing,
}

/// A `locator` filter as a path below `issuer`: paths (`/...`) stay; an
/// absolute URL loses the issuer, compared without regard to case.
fn locator_path(issuer: &str, locator: &str) -> LocatorPath {
    if locator.starts_with('/') {
        return LocatorPath::Path(locator.to_owned());
    }
    let issuer = issuer.trim_end_matches('/').to_lowercase();
    let lower = locator.to_lowercase();
    let (value, prefix) = match lower.strip_suffix('*') {
        Some(v) => (v, true),
        None => (lower.as_str(), false),
    };
    match value.strip_prefix(issuer.as_str()) {
        Some(rest) if rest.starts_with('/') => {
            LocatorPath::Path(format!("{rest}{}", if prefix { "*" } else { "" }))
        }
        Some("") if prefix => LocatorPath::Everything,
        _ if prefix && issuer.starts_with(value) => LocatorPath::Everything,
        _ => LocatorPath::Nothing,
    }
}

#[cfg(test)]
mod locator_tests {
    use super::{LocatorPath, locator_path};

    #[test]
    fn locators_become_paths_below_the_issuer() {
        let iss = "https://idp.example";
        assert_eq!(
            locator_path(iss, "HTTPS://idp.example/v1/marketplace/agents/agt_1"),
            LocatorPath::Path("/v1/marketplace/agents/agt_1".into())
        );
        assert_eq!(
            locator_path(iss, "https://idp.example/v1/marketplace/*"),
            LocatorPath::Path("/v1/marketplace/*".into())
        );
        assert_eq!(
            locator_path(iss, "https://idp.ex*"),
            LocatorPath::Everything
        );
        assert_eq!(
            locator_path(iss, "https://other.example/v1/marketplace/agents/agt_1"),
            LocatorPath::Nothing
        );
        assert_eq!(
            locator_path(iss, "https://idp.example.evil/v1/x"),
            LocatorPath::Nothing
        );
        assert_eq!(
            locator_path(iss, "/v1/marketplace/agents/x"),
            LocatorPath::Path("/v1/marketplace/agents/x".into())
        );
    }
}

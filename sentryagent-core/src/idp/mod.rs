//! [`Idp`]: the identity provider, assembled from its parts.

mod admin;
pub use admin::{AuditTail, PublisherUpdate, TenantUpdate};
mod agents;
mod attest;
pub use attest::ATTESTATION_TYP;
mod badges;
mod domain_proof;
pub use domain_proof::DOMAIN_PROOF_ATTEMPTS;
mod directory;
pub use badges::{
    BADGE_RENEWAL, BADGE_TYPE, CheckOutcome, CredentialVerification, STATUS_LIST_BITS,
    STATUS_LIST_PATH,
};
pub use directory::{CategoryCount, MarketplaceCategories, OasfSkillCount, SkillCount};
mod billing;
pub use billing::{BillingOutcome, Subscription};
mod accounts;
mod exchange;
mod management_token;
mod members;
mod tokens;
mod trust_policies;
pub use trust_policies::MAX_TRUST_POLICIES;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::audit::{AuditEvent, NewAuditEvent, Outcome, RequestMeta};
use crate::billing::{BillingProvider, NoBilling};
use crate::credentials::{AdminKey, AdminScope};
use crate::jose::Algorithm;
use crate::keys::KeyRing;
use crate::memory::{MemoryRateLimiter, MemoryStore, MemoryUsageMeter};
use crate::people::{PasswordHasher, PeopleConfig, Role};
use crate::ratelimit::RateLimiter;
use crate::secret::SecretHasher;
use crate::store::{IdpStore, StoreParts};
use crate::usage::UsageMeter;
use crate::{
    AgentStateCounts, Clock, Error, IdpEvent, IdpObserver, Result, SystemClock, TenantId,
    TierTable, Timestamp, UserId,
};

pub use agents::{AgentPatch, Ed25519PrivateJwk, NewAgent, RegisteredAgent};
pub use usage::{Admission, AgentUsageRow, DailyCount, LimitUsage, UsageSummary};

/// Settings of an [`Idp`]. Every duration has a documented default.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Issuer URL (`iss` of tokens; default audience). No trailing slash.
    pub issuer: String,
    /// Token endpoint URL, accepted as a client assertion's `aud` besides the
    /// issuer. Default `{issuer}/oauth2/token`.
    pub token_endpoint: String,
    /// Access token lifetime. Default 15 minutes.
    pub token_ttl: Duration,
    /// Longest accepted lifetime of a client assertion (`exp - now`).
    /// Default 5 minutes.
    pub max_assertion_lifetime: Duration,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`. Default 30 seconds.
    pub leeway: Duration,
    /// How long a rotated-out client secret keeps working. Default 24 hours.
    pub secret_grace_period: Duration,
    /// Age at which a signing key is rotated out. Default 30 days.
    pub key_rotation_period: Duration,
    /// Signing algorithms with a key in the ring (JWKS). The first is the
    /// default for access tokens; an agent may ask for another one of these.
    /// Default `[EdDSA]`; add `ES256` for relying parties without EdDSA.
    pub algorithms: Vec<Algorithm>,
    /// Tier limits.
    pub tiers: TierTable,
    /// Largest interval between usage flushes. Default 1 second.
    pub usage_flush_interval: Duration,
    /// Largest serialized size of an agent's custom claims. Default 4 KiB.
    pub max_custom_claims_bytes: usize,
    /// Failed client authentications recorded in each audit chain per
    /// minute, burst included (the tenant's chain when the claimed client
    /// exists, the system chain otherwise). Beyond it a failure is still
    /// refused the same way but not recorded one by one: the next recorded
    /// failure of that chain says how many went unrecorded before it
    /// (`details.unrecorded_before`). This bounds how fast unauthenticated
    /// traffic can grow the audit trail. Default 600.
    pub auth_failure_audits_per_minute: u32,
    /// How long [`Idp::agents_by_state`] answers from its last read of the
    /// store: a scrape storm on `/metrics` then costs the store one count
    /// per interval. Default 15 seconds.
    pub agent_counts_max_age: Duration,
    /// People: sign-up, sessions, sign-in throttling, invitation and reset
    /// links. Defaults in [`PeopleConfig::new`].
    pub people: PeopleConfig,
}

impl IdpConfig {
    /// Defaults for `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        IdpConfig {
            token_endpoint: format!("{issuer}/oauth2/token"),
            people: PeopleConfig::new(&issuer),
            issuer,
            token_ttl: Duration::from_secs(900),
            max_assertion_lifetime: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
            secret_grace_period: Duration::from_secs(24 * 3600),
            key_rotation_period: Duration::from_secs(30 * 24 * 3600),
            algorithms: vec![Algorithm::EdDSA],
            tiers: TierTable::default(),
            usage_flush_interval: Duration::from_secs(1),
            max_custom_claims_bytes: 4096,
            auth_failure_audits_per_minute: 600,
            agent_counts_max_age: Duration::from_secs(15),
        }
    }

    fn validate(&self) -> Result<()> {
        crate::tenant::validate_url("issuer", &self.issuer)?;
        crate::tenant::validate_url("token_endpoint", &self.token_endpoint)?;
        if self.algorithms.is_empty() {
            return Err(Error::invalid(
                "algorithms",
                "at least one signing algorithm",
            ));
        }
        if self.token_ttl.is_zero() || self.token_ttl > Duration::from_secs(24 * 3600) {
            return Err(Error::invalid("token_ttl", "between 1 second and 24 hours"));
        }
        if self.auth_failure_audits_per_minute == 0 {
            return Err(Error::invalid(
                "auth_failure_audits_per_minute",
                "at least 1",
            ));
        }
        self.people.validate()?;
        self.tiers.validate()
    }
}

/// Who is calling a management operation: an admin key's reach and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Audit actor (`admin_key:<id>`, `system`...).
    pub actor: String,
    /// The tenant the caller is bound to; `None` for an operator.
    pub tenant: Option<TenantId>,
    /// What it may do.
    pub scopes: Vec<AdminScope>,
    /// Request facts for the audit trail.
    pub request: RequestMeta,
}

impl Caller {
    /// The host itself (operator reach, every scope); for library use.
    pub fn system() -> Self {
        Caller {
            actor: "system".into(),
            tenant: None,
            scopes: vec![AdminScope::Admin],
            request: RequestMeta::default(),
        }
    }

    /// The caller an authenticated admin key stands for.
    pub fn from_key(key: &AdminKey, request: RequestMeta) -> Self {
        Caller {
            actor: format!("admin_key:{}", key.id),
            tenant: key.tenant_id.clone(),
            scopes: key.scopes.clone(),
            request,
        }
    }

    /// A signed-in member of `tenant` with `role`: the role's scopes
    /// ([`Role::scopes`]), bound to the tenant (never an operator).
    pub fn member(user: &UserId, tenant: &TenantId, role: Role, request: RequestMeta) -> Self {
        Caller {
            actor: format!("user:{user}"),
            tenant: Some(tenant.clone()),
            scopes: role.scopes().to_vec(),
            request,
        }
    }

    /// Whether this caller reaches every tenant.
    pub fn is_operator(&self) -> bool {
        self.tenant.is_none()
    }

    /// `Forbidden` unless a scope covers `needed`.
    pub fn require(&self, needed: AdminScope) -> Result<()> {
        if self.scopes.iter().any(|s| s.covers(needed)) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                message: format!("the caller lacks the {} scope", needed.as_str()),
            })
        }
    }

    /// `Forbidden` unless an operator.
    pub fn require_operator(&self) -> Result<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Error::Forbidden {
                message: "an operator key is required".into(),
            })
        }
    }

    /// `NotFound` when a tenant-bound caller looks at another tenant: the
    /// other tenant's data does not exist for it.
    pub fn reach(&self, tenant: &TenantId, kind: &'static str) -> Result<()> {
        match &self.tenant {
            Some(t) if t != tenant => Err(Error::not_found(kind)),
            _ => Ok(()),
        }
    }

    /// The caller's own tenant, or `tenant` for an operator; `Invalid` if an
    /// operator names none.
    pub fn tenant_or(&self, tenant: Option<&TenantId>) -> Result<TenantId> {
        match (&self.tenant, tenant) {
            (Some(own), Some(t)) if own != t => Err(Error::not_found("tenant")),
            (Some(own), _) => Ok(own.clone()),
            (None, Some(t)) => Ok(t.clone()),
            (None, None) => Err(Error::invalid(
                "tenant_id",
                "an operator key must name the tenant",
            )),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: IdpConfig,
    pub(crate) store: StoreParts,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) meter: Arc<dyn UsageMeter>,
    pub(crate) billing: Arc<dyn BillingProvider>,
    pub(crate) revocations: Option<Arc<dyn crate::RevocationCache>>,
    pub(crate) issuer_keys: Arc<dyn crate::federation::IssuerKeys>,
    pub(crate) domain_proofs: Option<Arc<dyn crate::domain_proof::DomainProofFetcher>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hasher: SecretHasher,
    pub(crate) keys: RwLock<Arc<KeyRing>>,
    pub(crate) usage: usage::UsageBuffer,
    pub(crate) audit_tx: broadcast::Sender<AuditEvent>,
    /// Failed authentications not recorded, by audit chain (`None`: the
    /// system chain), since that chain's last recorded one.
    pub(crate) unrecorded_failures: Mutex<HashMap<Option<TenantId>, u64>>,
    /// Verifying keys of agents' `did:key`s (a DID names its key, so an
    /// entry never goes stale); emptied when it reaches
    /// [`tokens::DID_KEY_CACHE`] entries.
    pub(crate) did_keys: Mutex<HashMap<String, crate::jose::VerifyingKey>>,
    /// Who hears about [`IdpEvent`]s.
    pub(crate) observers: RwLock<Vec<Arc<dyn IdpObserver>>>,
    /// The last read of [`Idp::agents_by_state`] and when it was made; the
    /// lock also makes concurrent callers wait for one read.
    pub(crate) agent_counts: tokio::sync::Mutex<Option<(Timestamp, AgentStateCounts)>>,
    /// People's passwords (argon2id, a few at a time, off the async
    /// threads).
    pub(crate) passwords: PasswordHasher,
    /// Uses of admin keys not yet written, with the last use's time.
    pub(crate) key_uses: Mutex<HashMap<crate::AdminKeyId, (u64, crate::Timestamp)>>,
}

/// The identity provider. Cheap to clone; clones share everything.
///
/// Build one with [`Idp::builder`]; every part defaults to its in-memory
/// implementation.
#[derive(Clone)]
pub struct Idp {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.inner.config.issuer)
            .field(
                "store",
                &self
                    .inner
                    .store
                    .backends()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>(),
            )
            .field("limiter", &self.inner.limiter.name())
            .field("meter", &self.inner.meter.name())
            .field("billing", &self.inner.billing.name())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Idp`].
#[derive(Debug)]
pub struct IdpBuilder {
    config: IdpConfig,
    store: Option<StoreParts>,
    limiter: Option<Arc<dyn RateLimiter>>,
    meter: Option<Arc<dyn UsageMeter>>,
    billing: Option<Arc<dyn BillingProvider>>,
    revocations: Option<Arc<dyn crate::RevocationCache>>,
    issuer_keys: Option<Arc<dyn crate::federation::IssuerKeys>>,
    domain_proofs: Option<Arc<dyn crate::domain_proof::DomainProofFetcher>>,
    clock: Option<Arc<dyn Clock>>,
    secret_hash_key: Option<[u8; 32]>,
}

/// Name of the stored setting holding the generated secret hashing key.
pub const SECRET_HASH_KEY_SETTING: &str = "secret_hash_key";

impl IdpBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: IdpConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut IdpConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// One backend for every store part (default: a [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn IdpStore>) -> Self {
        self.store = Some(StoreParts::from(store));
        self
    }

    /// The store parts, for a host that mixes backends:
    /// `StoreParts::from(postgres).with_markers(redis)`.
    pub fn store_parts(mut self, parts: StoreParts) -> Self {
        self.store = Some(parts);
        self
    }

    /// The rate limiter (default: [`MemoryRateLimiter`] on the clock).
    pub fn limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The usage meter (default: [`MemoryUsageMeter`]).
    pub fn meter(mut self, meter: Arc<dyn UsageMeter>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The billing provider (default: [`NoBilling`]).
    pub fn billing(mut self, billing: Arc<dyn BillingProvider>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// A revocation cache shared by the nodes (default: none; the store's
    /// records alone).
    pub fn revocations(mut self, cache: Arc<dyn crate::RevocationCache>) -> Self {
        self.revocations = Some(cache);
        self
    }

    /// How long a signed-in session lasts: `idle` without use (default 12
    /// hours) and `lifetime` after its sign-in at most (default 7 days).
    pub fn session_timeouts(mut self, idle: Duration, lifetime: Duration) -> Self {
        self.config.people.session_idle_timeout = idle;
        self.config.people.session_lifetime = lifetime;
        self
    }

    /// Where the keys of the issuers named by trust policies come from, for
    /// token exchange (default: an empty
    /// [`StaticIssuerKeys`](crate::federation::StaticIssuerKeys): no
    /// exchange succeeds).
    pub fn issuer_keys(mut self, keys: Arc<dyn crate::federation::IssuerKeys>) -> Self {
        self.issuer_keys = Some(keys);
        self
    }

    /// Sets how publisher domain proof files are fetched (the HTTP
    /// adapter's guarded fetcher, for one); without one,
    /// [`Idp::verify_publisher_domain`] is not configured.
    pub fn domain_proofs(
        mut self,
        fetcher: Arc<dyn crate::domain_proof::DomainProofFetcher>,
    ) -> Self {
        self.domain_proofs = Some(fetcher);
        self
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The key under which client secrets and admin keys are hashed. Without
    /// one, a random key is generated once and kept in the store (setting
    /// [`SECRET_HASH_KEY_SETTING`]); give one to keep it out of the store.
    pub fn secret_hash_key(mut self, key: [u8; 32]) -> Self {
        self.secret_hash_key = Some(key);
        self
    }

    /// Validates the configuration, loads (or creates) the signing keys and
    /// returns the IdP.
    pub async fn build(self) -> Result<Idp> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let store = self
            .store
            .unwrap_or_else(|| StoreParts::from(Arc::new(MemoryStore::new())));
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(MemoryRateLimiter::new(clock.clone())));
        let meter = self
            .meter
            .unwrap_or_else(|| Arc::new(MemoryUsageMeter::new()));
        let billing = self.billing.unwrap_or_else(|| Arc::new(NoBilling));
        let hash_key = match self.secret_hash_key {
            Some(k) => k,
            None => {
                let fresh: [u8; 32] = crate::secret::random_bytes();
                let stored = store
                    .settings
                    .setting_get_or_insert(SECRET_HASH_KEY_SETTING, &fresh)
                    .await?;
                stored.try_into().map_err(|_| Error::Internal {
                    message: "stored secret hashing key is not 32 bytes".into(),
                    source: None,
                })?
            }
        };
        let ring = crate::keys::refresh(
            store.signing_keys.as_ref(),
            &self.config.algorithms,
            self.config.key_rotation_period,
            key_retention(&self.config),
            false,
            clock.now(),
        )
        .await?;
        let (audit_tx, _) = broadcast::channel(1024);
        Ok(Idp {
            inner: Arc::new(Inner {
                config: self.config,
                store,
                limiter,
                meter,
                billing,
                revocations: self.revocations,
                issuer_keys: self
                    .issuer_keys
                    .unwrap_or_else(|| Arc::new(crate::federation::StaticIssuerKeys::new())),
                domain_proofs: self.domain_proofs,
                clock,
                hasher: SecretHasher::new(&hash_key),
                keys: RwLock::new(Arc::new(ring)),
                usage: usage::UsageBuffer::default(),
                audit_tx,
                unrecorded_failures: Mutex::new(HashMap::new()),
                did_keys: Mutex::new(HashMap::new()),
                observers: RwLock::new(Vec::new()),
                agent_counts: tokio::sync::Mutex::new(None),
                passwords: PasswordHasher::default(),
                key_uses: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// How long a rotated-out signing key stays in the JWKS: the longest
/// lifetime of a token it signed (the configured one, or a trust policy's,
/// up to [`MAX_TOKEN_TTL_SECONDS`](crate::federation::MAX_TOKEN_TTL_SECONDS))
/// plus the leeway and a minute.
fn key_retention(c: &IdpConfig) -> Duration {
    c.token_ttl.max(Duration::from_secs(
        crate::federation::MAX_TOKEN_TTL_SECONDS,
    )) + c.leeway
        + Duration::from_secs(60)
}

impl Idp {
    /// A builder with defaults for `issuer` and in-memory parts.
    pub fn builder(issuer: impl Into<String>) -> IdpBuilder {
        IdpBuilder {
            config: IdpConfig::new(issuer),
            store: None,
            limiter: None,
            meter: None,
            billing: None,
            revocations: None,
            issuer_keys: None,
            domain_proofs: None,
            clock: None,
            secret_hash_key: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IdpConfig {
        &self.inner.config
    }

    /// The store parts.
    pub fn store(&self) -> &StoreParts {
        &self.inner.store
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.inner.limiter
    }

    /// The usage meter.
    pub fn meter(&self) -> &Arc<dyn UsageMeter> {
        &self.inner.meter
    }

    /// The billing provider.
    pub fn billing(&self) -> &Arc<dyn BillingProvider> {
        &self.inner.billing
    }

    /// Where issuers' keys come from (token exchange).
    pub fn issuer_keys(&self) -> &Arc<dyn crate::federation::IssuerKeys> {
        &self.inner.issuer_keys
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub(crate) fn now(&self) -> crate::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn ring(&self) -> Arc<KeyRing> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The public signing keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> crate::jose::JwkSet {
        self.ring().jwks.clone()
    }

    /// Rotates every signing key now (old keys stay in the JWKS until the
    /// tokens they signed have expired).
    pub async fn rotate_signing_keys(&self) -> Result<()> {
        self.reload_keys(true).await
    }

    async fn reload_keys(&self, force: bool) -> Result<()> {
        let c = &self.inner.config;
        let ring = crate::keys::refresh(
            self.inner.store.signing_keys.as_ref(),
            &c.algorithms,
            c.key_rotation_period,
            key_retention(c),
            force,
            self.now(),
        )
        .await?;
        *self.inner.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// Periodic upkeep, for a host timer (every few seconds to a minute):
    /// flushes buffered usage and admin keys' request counts, rotates
    /// signing keys that are due and loads
    /// keys other nodes created, and purges expired markers and sessions.
    pub async fn maintenance(&self) -> Result<()> {
        self.flush_usage().await?;
        self.flush_key_uses().await?;
        self.reload_keys(false).await?;
        self.inner.store.markers.purge_markers(self.now()).await?;
        self.inner.store.sessions.purge_sessions(self.now()).await?;
        Ok(())
    }

    /// Registers an observer of [`IdpEvent`]s (lifecycle transitions, tier
    /// limit checks) for the life of this `Idp` and its clones. The HTTP
    /// router registers one for its metrics.
    pub fn add_observer(&self, observer: Arc<dyn IdpObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    /// Whether any observer listens (to skip work done only for them).
    pub(crate) fn observed(&self) -> bool {
        !self
            .inner
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Hands `event` to every observer.
    pub(crate) fn emit(&self, event: IdpEvent) {
        for o in self
            .inner
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            o.observe(&event);
        }
    }

    /// How many agents of every tenant are in each lifecycle state, from the
    /// store ([`AgentStore::agents_by_state`](crate::AgentStore::agents_by_state)),
    /// so every node of a deployment on a shared store gives the same
    /// figures. The store is read at most once per
    /// [`IdpConfig::agent_counts_max_age`]; in between, and for callers
    /// that arrive while a read is under way, the last figures are
    /// returned. A failed read is not cached.
    pub async fn agents_by_state(&self) -> Result<AgentStateCounts> {
        let mut last = self.inner.agent_counts.lock().await;
        let now = self.now();
        if let Some((at, counts)) = *last
            && at <= now
            && now.since(at) < self.inner.config.agent_counts_max_age
        {
            return Ok(counts);
        }
        let store = &self.inner.store;
        let counts = store.agents.agents_by_state(store.tenants.as_ref()).await?;
        *last = Some((self.now(), counts));
        Ok(counts)
    }

    /// Live tail of audit events appended through this `Idp` (this process).
    /// A slow receiver loses the oldest events (it sees `Lagged`); the stored
    /// trail is complete and can be queried.
    pub fn subscribe_audit(&self) -> broadcast::Receiver<AuditEvent> {
        self.inner.audit_tx.subscribe()
    }

    /// Appends an audit event and publishes it to subscribers.
    pub(crate) async fn audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let stored = self.inner.store.audit_log.append_audit(event).await?;
        let _ = self.inner.audit_tx.send(stored.clone());
        Ok(stored)
    }

    /// Shorthand for an audit event at now.
    pub(crate) fn event(
        &self,
        tenant_id: Option<&TenantId>,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: Outcome,
        request: &RequestMeta,
    ) -> NewAuditEvent {
        NewAuditEvent {
            tenant_id: tenant_id.cloned(),
            at: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome,
            request: request.clone(),
            details: Default::default(),
        }
    }
}

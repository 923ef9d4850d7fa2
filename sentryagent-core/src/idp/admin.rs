//! Tenants, admin API keys and the audit trail.

use std::time::Duration;

use super::{Caller, Idp};
use crate::audit::{AuditEvent, AuditQuery, ChainHead, Outcome, RequestMeta, verify_chain};
use crate::credentials::{ADMIN_KEY_PREFIX, ADMIN_KEY_VISIBLE_LEN, AdminKey, AdminScope};
use crate::domain_proof::website_host;
use crate::page::{Page, PageRequest};
use crate::secret::generate_secret;
use crate::tenant::{
    BillingInfo, NewTenant, Publisher, PublisherVerification, PublisherVerificationMethod, slugify,
    validate_slug, validate_url,
};
use crate::{AdminKeyId, Error, Result, Tenant, TenantId, TenantStatus, Tier, Timestamp};

/// How often `last_used_at` of an admin key is written at most.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) fn validate_text(field: &'static str, v: &str, max: usize) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    check_length_and_controls(field, v, max, &[])
}

/// At most `max` characters and no control character but those `allowed`:
/// the error names the rule that was broken (and where, for a control
/// character).
pub(crate) fn check_length_and_controls(
    field: &'static str,
    v: &str,
    max: usize,
    allowed: &[char],
) -> Result<()> {
    let n = v.chars().count();
    if n > max {
        return Err(Error::invalid(
            field,
            format!("at most {max} characters (this one has {n})"),
        ));
    }
    if let Some((i, c)) = v
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    {
        let also = if allowed.contains(&'\n') {
            " (line breaks are fine)"
        } else {
            ""
        };
        return Err(Error::invalid(
            field,
            format!(
                "control characters are not allowed{also}: U+{:04X} at character {}",
                u32::from(c),
                i + 1
            ),
        ));
    }
    Ok(())
}

impl Idp {
    /// Creates a tenant (operator only).
    pub async fn create_tenant(&self, caller: &Caller, new: NewTenant) -> Result<Tenant> {
        caller.require_operator()?;
        caller.require(AdminScope::Admin)?;
        self.insert_tenant(new, &caller.actor, &caller.request)
            .await
    }

    /// Validates and stores a new tenant, audited as `tenant.created` by
    /// `actor` (an operator, or a person signing up).
    pub(crate) async fn insert_tenant(
        &self,
        new: NewTenant,
        actor: &str,
        request: &RequestMeta,
    ) -> Result<Tenant> {
        validate_text("name", &new.name, 100)?;
        let slug = match &new.slug {
            Some(s) => s.clone(),
            None => slugify(&new.name),
        };
        validate_slug(&slug)?;
        if let Some(w) = &new.website {
            validate_url("website", w)?;
        }
        if new.allowed_audiences.len() > 20 {
            return Err(Error::invalid("allowed_audiences", "at most 20"));
        }
        for a in &new.allowed_audiences {
            validate_url("allowed_audiences", a)?;
        }
        let now = self.now();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: new.name.clone(),
            slug,
            tier: new.tier.unwrap_or(Tier::Free),
            status: TenantStatus::Active,
            billing: BillingInfo::default(),
            publisher: Publisher {
                display_name: new.name.clone(),
                website: new.website,
                verified: false,
                verification: None,
            },
            allowed_audiences: new.allowed_audiences,
            settings: Default::default(),
            suspended_at: None,
            suspension_reason: None,
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        let mut tenant = tenant;
        let mut attempt = 0;
        loop {
            match self.inner.store.tenants.create_tenant(&tenant).await {
                Ok(()) => break,
                // A derived slug that is taken gets a random suffix.
                Err(Error::AlreadyExists { .. }) if new.slug.is_none() && attempt < 5 => {
                    attempt += 1;
                    let suffix: [u8; 3] = crate::secret::random_bytes();
                    let base: String = slugify(&tenant.name).chars().take(40).collect();
                    tenant.slug = format!(
                        "{}-{:02x}{:02x}{:02x}",
                        base.trim_end_matches('-'),
                        suffix[0],
                        suffix[1],
                        suffix[2]
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let mut ev = self.event(
            Some(&tenant.id),
            actor,
            "tenant.created",
            Some(tenant.id.as_str()),
            Outcome::Success,
            request,
        );
        ev.details.insert("tier".into(), tenant.tier.to_string());
        self.audit(ev).await?;
        Ok(tenant)
    }

    /// A tenant the caller reaches.
    pub async fn get_tenant(&self, caller: &Caller, id: &TenantId) -> Result<Tenant> {
        caller.reach(id, "tenant")?;
        self.inner.store.tenants.get_tenant(id).await
    }

    /// Every tenant (operator only).
    pub async fn list_tenants(&self, caller: &Caller, page: &PageRequest) -> Result<Page<Tenant>> {
        caller.require_operator()?;
        self.inner.store.tenants.list_tenants(page).await
    }

    /// Applies `change` to a tenant with optimistic concurrency, retrying on
    /// conflicts, and records `action` in the audit trail.
    pub(crate) async fn change_tenant(
        &self,
        id: &TenantId,
        actor: &str,
        action: &str,
        request: &RequestMeta,
        change: impl FnMut(&mut Tenant) -> Result<bool>,
    ) -> Result<Tenant> {
        self.change_tenant_with(id, actor, action, request, &[], change)
            .await
    }

    /// [`change_tenant`](Self::change_tenant) with more details on the
    /// audit event.
    pub(crate) async fn change_tenant_with(
        &self,
        id: &TenantId,
        actor: &str,
        action: &str,
        request: &RequestMeta,
        details: &[(&str, &str)],
        mut change: impl FnMut(&mut Tenant) -> Result<bool>,
    ) -> Result<Tenant> {
        for _ in 0..16 {
            let mut t = self.inner.store.tenants.get_tenant(id).await?;
            let status_before = t.status;
            if !change(&mut t)? {
                return Ok(t);
            }
            t.updated_at = self.now();
            // A suspension records when; reactivation forgets it.
            if t.status != status_before {
                if t.status == TenantStatus::Suspended {
                    t.suspended_at = Some(t.updated_at);
                } else {
                    t.suspended_at = None;
                    t.suspension_reason = None;
                }
            }
            match self.inner.store.tenants.update_tenant(&t).await {
                Ok(stored) => {
                    let mut ev = self.event(
                        Some(id),
                        actor,
                        action,
                        Some(id.as_str()),
                        Outcome::Success,
                        request,
                    );
                    ev.details.insert("tier".into(), stored.tier.to_string());
                    ev.details.insert(
                        "status".into(),
                        format!("{:?}", stored.status).to_lowercase(),
                    );
                    if let Some(r) = &stored.suspension_reason {
                        ev.details.insert("reason".into(), r.clone());
                    }
                    for (k, v) in details {
                        ev.details.insert((*k).to_owned(), (*v).to_owned());
                    }
                    self.audit(ev).await?;
                    return Ok(stored);
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict("tenant is changing too often; try again"))
    }

    /// Changes a tenant's tier and status in one step (operator only;
    /// billing moves tiers on its own): one stored change and one audit
    /// event (`tenant.tier_changed`, `tenant.status_changed`, or
    /// `tenant.updated` when both are given). Fields left `None` keep
    /// their value; nothing to change returns the tenant as stored. A
    /// suspension records `suspended_at` and the `reason` given (only with
    /// a suspension); reactivation clears both.
    pub async fn update_tenant(
        &self,
        caller: &Caller,
        id: &TenantId,
        update: TenantUpdate,
    ) -> Result<Tenant> {
        caller.require_operator()?;
        if let Some(r) = &update.reason {
            if update.status != Some(TenantStatus::Suspended) {
                return Err(Error::invalid("reason", "only with status suspended"));
            }
            validate_text("reason", r, 500)?;
        }
        let action = match (update.tier, update.status) {
            (Some(_), None) => "tenant.tier_changed",
            (None, Some(_)) => "tenant.status_changed",
            _ => "tenant.updated",
        };
        self.change_tenant(id, &caller.actor, action, &caller.request, |t| {
            let before = (t.tier, t.status, t.suspension_reason.clone());
            if let Some(tier) = update.tier {
                t.tier = tier;
            }
            if let Some(status) = update.status {
                t.status = status;
            }
            if update.reason.is_some() {
                t.suspension_reason = update.reason.clone();
            }
            Ok((t.tier, t.status, t.suspension_reason.clone()) != before)
        })
        .await
    }

    /// Sets a tenant's tier ([`update_tenant`](Self::update_tenant) with
    /// the tier alone).
    pub async fn set_tenant_tier(
        &self,
        caller: &Caller,
        id: &TenantId,
        tier: Tier,
    ) -> Result<Tenant> {
        let update = TenantUpdate {
            tier: Some(tier),
            ..Default::default()
        };
        self.update_tenant(caller, id, update).await
    }

    /// Suspends or reactivates a tenant ([`update_tenant`](Self::update_tenant)
    /// with the status alone).
    pub async fn set_tenant_status(
        &self,
        caller: &Caller,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<Tenant> {
        let update = TenantUpdate {
            status: Some(status),
            ..Default::default()
        };
        self.update_tenant(caller, id, update).await
    }

    /// Changes a tenant's public profile. `verified` is set only by an
    /// operator; `None` keeps the stored flag, read in the same step as the
    /// write, so a concurrent verification by the operator is never undone.
    ///
    /// How it was verified follows: an operator turning the flag on records
    /// `verification` method `operator` (a domain proof already in place
    /// stays), turning it off clears it. A domain proof
    /// ([`verify_publisher_domain`](Self::verify_publisher_domain)) is kept
    /// only while the website's host is the proven domain: a website on
    /// another host (or none) drops the proof and the verified flag, unless
    /// an operator sets `verified: true` in the same change (then method
    /// `operator`). The display name may change without losing either.
    pub async fn update_publisher(
        &self,
        caller: &Caller,
        id: &TenantId,
        update: PublisherUpdate,
    ) -> Result<Tenant> {
        caller.reach(id, "tenant")?;
        caller.require(AdminScope::Admin)?;
        validate_text("display_name", &update.display_name, 100)?;
        if let Some(w) = &update.website {
            validate_url("website", w)?;
        }
        let operator = caller.is_operator();
        let now = Timestamp::from_unix_secs(self.now().unix_secs());
        self.change_tenant(
            id,
            &caller.actor,
            "tenant.publisher_changed",
            &caller.request,
            |t| {
                let mut verified = update.verified.unwrap_or(t.publisher.verified);
                if verified != t.publisher.verified && !operator {
                    return Err(Error::Forbidden {
                        message: "only an operator sets the verified flag".into(),
                    });
                }
                let mut verification = match (t.publisher.verified, verified) {
                    (false, true) => Some(PublisherVerification::operator(now)),
                    (_, false) => None,
                    (true, true) => t.publisher.verification.clone(),
                };
                let proof_moved = verification.as_ref().is_some_and(|v| {
                    v.method == PublisherVerificationMethod::Domain
                        && update.website.as_deref().and_then(website_host) != v.domain
                });
                if proof_moved {
                    if operator && update.verified == Some(true) {
                        verification = Some(PublisherVerification::operator(now));
                    } else {
                        verified = false;
                        verification = None;
                    }
                }
                t.publisher = Publisher {
                    display_name: update.display_name.clone(),
                    website: update.website.clone(),
                    verified,
                    verification,
                };
                Ok(true)
            },
        )
        .await
    }

    // ---- admin keys ----

    /// Creates an admin API key for `tenant` (or an operator key for `None`).
    /// Returns the stored key and the key itself, shown only this once.
    ///
    /// `scopes` default to the caller's own scopes ([`AdminScope::Admin`],
    /// every scope of the key's reach, for an operator or an owner); a
    /// tenant caller grants only scopes it holds itself. Needs
    /// [`AdminScope::ApiKeysWrite`].
    pub async fn create_admin_key(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        name: &str,
        scopes: Option<Vec<AdminScope>>,
    ) -> Result<(AdminKey, String)> {
        self.create_expiring_admin_key(caller, tenant, name, scopes, None)
            .await
    }

    /// [`create_admin_key`](Self::create_admin_key) with an end of
    /// validity (`None`: never), which must be in the future.
    pub async fn create_expiring_admin_key(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        name: &str,
        scopes: Option<Vec<AdminScope>>,
        expires_at: Option<Timestamp>,
    ) -> Result<(AdminKey, String)> {
        caller.require(AdminScope::ApiKeysWrite)?;
        if expires_at.is_some_and(|e| e <= self.now()) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let scopes = scopes.unwrap_or_else(|| caller.scopes.clone());
        match tenant {
            None => caller.require_operator()?,
            Some(t) => {
                caller.reach(t, "tenant")?;
                self.inner.store.tenants.get_tenant(t).await?;
            }
        }
        validate_text("name", name, 100)?;
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "at least one scope"));
        }
        if !caller.is_operator()
            && !scopes
                .iter()
                .all(|s| caller.scopes.iter().any(|c| c.covers(*s)))
        {
            return Err(Error::Forbidden {
                message: "a key cannot grant scopes it does not hold".into(),
            });
        }
        let secret = generate_secret(ADMIN_KEY_PREFIX);
        let key = AdminKey {
            id: AdminKeyId::generate(),
            prefix: secret[..ADMIN_KEY_VISIBLE_LEN].to_owned(),
            tenant_id: tenant.cloned(),
            name: name.to_owned(),
            scopes,
            hash: self.inner.hasher.hash(&secret),
            created_at: self.now(),
            last_used_at: None,
            revoked_at: None,
            expires_at,
            revocation_reason: None,
            request_count: 0,
        };
        self.inner.store.admin_keys.create_admin_key(&key).await?;
        let mut ev = self.event(
            tenant,
            &caller.actor,
            "api_key.created",
            Some(key.id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        if let Some(e) = expires_at {
            ev.details.insert("expires_at".into(), e.to_rfc3339());
        }
        self.audit(ev).await?;
        Ok((key, secret))
    }

    /// Makes `secret` an operator key, idempotently: a key that already
    /// exists with this value is left as it is. For bootstrapping a server
    /// from configuration. The value must look like a generated key
    /// (`sa_ak_` and at least 32 more URL-safe characters).
    pub async fn ensure_operator_key(&self, secret: &str) -> Result<AdminKey> {
        let ok = secret.len() >= ADMIN_KEY_PREFIX.len() + 32
            && secret.len() <= 256
            && secret.starts_with(ADMIN_KEY_PREFIX)
            && secret[ADMIN_KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::invalid(
                "bootstrap_key",
                "must start with sa_ak_ followed by at least 32 of A-Z a-z 0-9 - _",
            ));
        }
        let prefix = &secret[..ADMIN_KEY_VISIBLE_LEN];
        match self
            .inner
            .store
            .admin_keys
            .get_admin_key_by_prefix(prefix)
            .await
        {
            Ok(k) if self.inner.hasher.verify(secret, &k.hash) && k.revoked_at.is_none() => {
                return Ok(k);
            }
            Ok(_) => {
                return Err(Error::conflict(
                    "another key with this prefix exists; choose a different bootstrap key",
                ));
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let key = AdminKey {
            id: AdminKeyId::generate(),
            prefix: prefix.to_owned(),
            tenant_id: None,
            name: "bootstrap".into(),
            scopes: vec![AdminScope::Admin],
            hash: self.inner.hasher.hash(secret),
            created_at: self.now(),
            last_used_at: None,
            revoked_at: None,
            expires_at: None,
            revocation_reason: None,
            request_count: 0,
        };
        match self.inner.store.admin_keys.create_admin_key(&key).await {
            Ok(()) => {}
            // Another node bootstrapped the same key at the same moment.
            Err(Error::AlreadyExists { .. }) => {
                let k = self
                    .inner
                    .store
                    .admin_keys
                    .get_admin_key_by_prefix(prefix)
                    .await?;
                if self.inner.hasher.verify(secret, &k.hash) {
                    return Ok(k);
                }
                return Err(Error::conflict("another key with this prefix exists"));
            }
            Err(e) => return Err(e),
        }
        self.audit(self.event(
            None,
            "system",
            "api_key.bootstrapped",
            Some(key.id.as_str()),
            Outcome::Success,
            &RequestMeta::default(),
        ))
        .await?;
        Ok(key)
    }

    /// Authenticates an admin API key. Every failure is the same
    /// `Unauthenticated`, and is audited.
    pub async fn authenticate_admin(
        &self,
        secret: &str,
        request: &RequestMeta,
    ) -> Result<AdminKey> {
        let found = if secret.len() > ADMIN_KEY_VISIBLE_LEN
            && secret.len() <= 256
            && secret.starts_with(ADMIN_KEY_PREFIX)
            && secret.is_char_boundary(ADMIN_KEY_VISIBLE_LEN)
        {
            match self
                .inner
                .store
                .admin_keys
                .get_admin_key_by_prefix(&secret[..ADMIN_KEY_VISIBLE_LEN])
                .await
            {
                Ok(k) => Some(k),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        // Hash even when nothing was found, so timing does not tell.
        let candidate_ok = match &found {
            Some(k) => self.inner.hasher.verify(secret, &k.hash) && k.is_usable(self.now()),
            None => {
                let _ = self.inner.hasher.hash(secret);
                false
            }
        };
        let Some(key) = found.filter(|_| candidate_ok) else {
            self.audit(self.event(
                None,
                "anonymous",
                "api_key.authentication_failed",
                None,
                Outcome::Failure,
                request,
            ))
            .await?;
            return Err(Error::Unauthenticated);
        };
        let now = self.now();
        // Uses are counted here and written with the touch, at most once
        // a minute per key (and by the maintenance run).
        let pending = {
            let mut uses = self
                .inner
                .key_uses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = uses.entry(key.id.clone()).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
            if key
                .last_used_at
                .is_none_or(|t| now.since(t) >= TOUCH_INTERVAL)
            {
                uses.remove(&key.id).map_or(0, |(n, _)| n)
            } else {
                0
            }
        };
        if pending > 0 {
            self.write_key_uses(&key.id, now, pending).await?;
        }
        Ok(key)
    }

    /// Writes counted uses of a key; on failure they stay counted.
    async fn write_key_uses(&self, id: &AdminKeyId, at: Timestamp, n: u64) -> Result<()> {
        let r = self.inner.store.admin_keys.touch_admin_key(id, at, n).await;
        if r.is_err() {
            let mut uses = self
                .inner
                .key_uses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = uses.entry(id.clone()).or_insert((0, at));
            entry.0 += n;
            entry.1 = entry.1.max(at);
        }
        r
    }

    /// Writes every admin key's counted uses (for the maintenance run).
    pub(crate) async fn flush_key_uses(&self) -> Result<()> {
        let pending: Vec<(AdminKeyId, (u64, Timestamp))> = self
            .inner
            .key_uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        let mut first_error = None;
        for (id, (n, at)) in pending {
            match self.write_key_uses(&id, at, n).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lists admin keys of a tenant (or operator keys for `None`).
    pub async fn list_admin_keys(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<AdminKey>> {
        caller.require(AdminScope::ApiKeysWrite)?;
        match tenant {
            None => caller.require_operator()?,
            Some(t) => caller.reach(t, "tenant")?,
        }
        self.inner.store.admin_keys.list_admin_keys(tenant).await
    }

    /// Revokes an admin key the caller reaches (a tenant key may revoke keys
    /// of its own tenant).
    pub async fn revoke_admin_key(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        id: &AdminKeyId,
    ) -> Result<()> {
        self.revoke_admin_key_because(caller, tenant, id, None)
            .await
    }

    /// [`revoke_admin_key`](Self::revoke_admin_key) with a reason (1 to
    /// 500 characters), kept with the key and shown in listings.
    pub async fn revoke_admin_key_because(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        id: &AdminKeyId,
        reason: Option<&str>,
    ) -> Result<()> {
        caller.require(AdminScope::ApiKeysWrite)?;
        if let Some(r) = reason {
            validate_text("reason", r, 500)?;
        }
        let keys = self.list_admin_keys(caller, tenant).await?;
        if !keys.iter().any(|k| &k.id == id) {
            return Err(Error::not_found("api_key"));
        }
        self.inner
            .store
            .admin_keys
            .revoke_admin_key(id, self.now(), reason)
            .await?;
        let mut ev = self.event(
            tenant,
            &caller.actor,
            "api_key.revoked",
            Some(id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        if let Some(r) = reason {
            ev.details.insert("reason".into(), r.to_owned());
        }
        self.audit(ev).await?;
        Ok(())
    }

    // ---- audit ----

    /// Audit events of a chain the caller reaches. A tenant key sees its own
    /// tenant's chain; an operator may read any, including the system chain
    /// (`tenant_id: None`).
    pub async fn query_audit(
        &self,
        caller: &Caller,
        query: &AuditQuery,
    ) -> Result<Page<AuditEvent>> {
        caller.require(AdminScope::AuditRead)?;
        match (&caller.tenant, &query.tenant_id) {
            (Some(own), Some(t)) if own != t => return Err(Error::not_found("tenant")),
            (Some(own), None) => {
                let mut q = query.clone();
                q.tenant_id = Some(own.clone());
                return self.inner.store.audit_log.query_audit(&q).await;
            }
            _ => {}
        }
        self.inner.store.audit_log.query_audit(query).await
    }

    /// A live tail of the audit events the caller may read, appended through
    /// this `Idp` from now on: a tenant key sees its own tenant's events; an
    /// operator sees `tenant`'s events, or every event when `tenant` is
    /// `None`.
    pub fn audit_tail(&self, caller: &Caller, tenant: Option<&TenantId>) -> Result<AuditTail> {
        caller.require(AdminScope::AuditRead)?;
        let filter = match (&caller.tenant, tenant) {
            (Some(own), Some(t)) if own != t => return Err(Error::not_found("tenant")),
            (Some(own), _) => Some(own.clone()),
            (None, t) => t.cloned(),
        };
        Ok(AuditTail {
            rx: self.subscribe_audit(),
            tenant: filter,
            replay: None,
        })
    }

    /// Like [`Idp::audit_tail`], resuming after event `after` of `chain` (a
    /// tenant, or `None` for the system chain): the stored events of that
    /// chain after `after` come first, read from the audit log, then the live
    /// ones, without any of that chain at or before the last one replayed.
    /// Nothing appended in between is lost. A chain outside the tail's scope
    /// is `Invalid`.
    pub fn resume_audit_tail(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        chain: Option<&TenantId>,
        after: u64,
    ) -> Result<AuditTail> {
        // Subscribe before reading the log: an event appended meanwhile is
        // in both, and the live copy is skipped.
        let mut tail = self.audit_tail(caller, tenant)?;
        if tail.tenant.as_ref().is_some_and(|t| Some(t) != chain) {
            return Err(Error::invalid(
                "last_event_id",
                "names an audit chain outside this stream",
            ));
        }
        tail.replay = Some(Replay {
            idp: self.clone(),
            query: AuditQuery {
                tenant_id: chain.cloned(),
                cursor: Some(after.to_string()),
                limit: Some(1000),
                ..Default::default()
            },
            buf: std::collections::VecDeque::new(),
            more: true,
            chain: chain.cloned(),
            last: after,
        });
        Ok(tail)
    }

    /// Reads a whole chain and verifies it (see [`verify_chain`]); returns
    /// its head. Compare the head with one saved earlier to detect a deleted
    /// tail.
    pub async fn verify_audit(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
    ) -> Result<Option<ChainHead>> {
        caller.require(AdminScope::AuditRead)?;
        match tenant {
            None => caller.require_operator()?,
            Some(t) => caller.reach(t, "tenant")?,
        }
        let mut events = Vec::new();
        let mut q = AuditQuery {
            tenant_id: tenant.cloned(),
            limit: Some(1000),
            ..Default::default()
        };
        loop {
            let page = self.inner.store.audit_log.query_audit(&q).await?;
            events.extend(page.items);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let head = self.inner.store.audit_log.audit_head(tenant).await?;
        verify_chain(&events, head.as_ref()).map_err(|e| Error::Conflict {
            message: format!("audit chain verification failed: {e}"),
        })
    }
}

/// A filtered live tail of audit events (see [`Idp::audit_tail`] and
/// [`Idp::resume_audit_tail`]).
#[derive(Debug)]
pub struct AuditTail {
    rx: tokio::sync::broadcast::Receiver<AuditEvent>,
    tenant: Option<TenantId>,
    replay: Option<Replay>,
}

/// The stored events a resumed tail sends before the live ones.
#[derive(Debug)]
struct Replay {
    idp: Idp,
    /// The next page to read.
    query: AuditQuery,
    /// Read, not yet sent.
    buf: std::collections::VecDeque<AuditEvent>,
    /// Whether the log may hold more.
    more: bool,
    /// The chain replayed.
    chain: Option<TenantId>,
    /// The last sequence number of `chain` sent.
    last: u64,
}

impl Replay {
    /// The next stored event; `Err` when the log cannot be read.
    async fn next(&mut self) -> Result<Option<AuditEvent>> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                self.last = self.last.max(e.seq);
                return Ok(Some(e));
            }
            if !self.more {
                return Ok(None);
            }
            let page = self
                .idp
                .inner
                .store
                .audit_log
                .query_audit(&self.query)
                .await?;
            self.buf.extend(page.items);
            match page.next_cursor {
                Some(c) => self.query.cursor = Some(c),
                None => self.more = false,
            }
        }
    }
}

impl AuditTail {
    /// The next event the caller may read. `Err(n)` says `n` events were
    /// missed because the reader was slow (query the stored trail to fill
    /// the gap); `None` means the `Idp` is gone, or, while a resumed tail
    /// replays, that the audit log could not be read (resume again).
    pub async fn next(&mut self) -> Option<std::result::Result<AuditEvent, u64>> {
        use tokio::sync::broadcast::error::RecvError;
        if let Some(r) = &mut self.replay {
            match r.next().await {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => {}
                Err(_) => return None,
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(e) => {
                    let replayed = self
                        .replay
                        .as_ref()
                        .is_some_and(|r| r.chain == e.event.tenant_id && e.seq <= r.last);
                    if !replayed
                        && self
                            .tenant
                            .as_ref()
                            .is_none_or(|t| e.event.tenant_id.as_ref() == Some(t))
                    {
                        return Some(Ok(e));
                    }
                }
                Err(RecvError::Lagged(n)) => return Some(Err(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// A change of a tenant's tier and status ([`Idp::update_tenant`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUpdate {
    /// The new tier; `None` keeps it.
    pub tier: Option<Tier>,
    /// The new status; `None` keeps it.
    pub status: Option<TenantStatus>,
    /// Why the tenant is suspended (with `status: Some(Suspended)` only;
    /// 1 to 500 characters), shown to its members.
    pub reason: Option<String>,
}

/// A new public profile of a tenant ([`Idp::update_publisher`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherUpdate {
    /// Display name.
    pub display_name: String,
    /// Website URL.
    pub website: Option<String>,
    /// The verified flag (operators only); `None` keeps the stored one.
    pub verified: Option<bool>,
}

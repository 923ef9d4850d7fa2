//! People's own side: sign-up, sign-in (throttled), sessions (validity,
//! CSRF, rotation), the account's password and second factor.
//!
//! A session is a random 256-bit secret (`sa_ss_...`, the cookie's value)
//! stored only as its keyed hash, so every node finds it and ending it
//! takes effect everywhere at once. It ends after
//! [`PeopleConfig::session_idle_timeout`](crate::PeopleConfig::session_idle_timeout)
//! without use or
//! [`session_lifetime`](crate::PeopleConfig::session_lifetime) after its
//! sign-in. A new secret is issued at every sign-in (the one a request came
//! with is ended) and whenever the member's privileges change: a role
//! changed since the session was issued (rotated at the session's next
//! use), a tenant switch, a password change, a second factor turned on.
//!
//! The CSRF token of a session is HMAC-SHA256 of its secret under the
//! deployment key: bound to the session, known only to the server and the
//! page it was given to, and never stored. Every state-changing request
//! made with a session must present it (compared in constant time);
//! requests with an admin key never need one.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::Idp;
use super::admin::validate_text;
use crate::audit::{Outcome, RequestMeta};
use crate::people::{
    Account, Me, Membership, RECOVERY_CODES, Role, Secret, Seed, Session, SessionAuth,
    SessionCredentials, SessionInfo, SignIn, SignUp, SignedIn, SignupMode, TenantMembership,
    TotpEnrollment, TotpState, User, UserStatus, check_strength, normalize_email, recovery_code,
    totp_code_step,
};
use crate::secret::generate_secret;
use crate::{Caller, Error, NewTenant, Quota, Result, SessionId, TenantId, Timestamp, UserId};

/// Prefix of session secrets.
pub(crate) const SESSION_PREFIX: &str = "sa_ss_";
/// How often `last_seen_at` (and the idle end) of a session is written at
/// most.
const SESSION_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Whether `secret` is `prefix` and 43 base64url characters (256 bits).
pub(crate) fn well_formed(secret: &str, prefix: &str) -> bool {
    secret.len() == prefix.len() + 43
        && secret.starts_with(prefix)
        && secret[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a request of `method` changes state, and so needs the CSRF
/// token when made with a session: anything but `GET`, `HEAD` and
/// `OPTIONS`.
pub(crate) fn changes_state(method: &str) -> bool {
    !["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// The display name given, or the part of the email before `@`.
pub(crate) fn display_name(given: Option<&str>, email: &str) -> Result<String> {
    let name = match given {
        Some(n) => n.trim().to_owned(),
        None => email.split('@').next().unwrap_or(email).to_owned(),
    };
    validate_text("display_name", &name, 100)?;
    Ok(name)
}

fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

impl Idp {
    /// The CSRF token bound to a session secret.
    pub(crate) fn csrf_for(&self, secret: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.inner.hasher.hash(&format!("csrf\0{secret}")).0)
    }

    /// Consumes `cost` of `quota` for `key`; `RateLimited` when refused.
    pub(crate) async fn throttle(&self, key: &str, quota: &Quota, cost: u32) -> Result<()> {
        let d = self.inner.limiter.check(key, quota, cost).await?;
        if d.allowed {
            Ok(())
        } else {
            Err(Error::RateLimited {
                retry_after: d.retry_after,
                limit: u64::from(quota.limit),
            })
        }
    }

    /// The per-IP limiter key of `what` (requests without a known address
    /// share one key).
    pub(crate) fn ip_key(what: &str, request: &RequestMeta) -> String {
        let ip: String = request
            .ip
            .as_deref()
            .unwrap_or("unknown")
            .chars()
            .take(64)
            .collect();
        format!("people:{what}:ip:{ip}")
    }

    /// The limiter key of an account's failed sign-ins: a keyed hash of the
    /// email, so no address appears in the limiter's backend.
    fn account_key(&self, email: &str) -> String {
        let h = self.inner.hasher.hash(&format!("sign-in-account\0{email}"));
        format!("people:sign-in:account:{}", hex(&h.0[..16]))
    }

    /// Applies `change` to an account with optimistic concurrency, retrying
    /// on conflicts; `change` returns false to leave it as it is.
    pub(crate) async fn change_user(
        &self,
        id: &UserId,
        mut change: impl FnMut(&mut User) -> Result<bool>,
    ) -> Result<User> {
        for _ in 0..16 {
            let mut u = self.inner.store.users.get_user(id).await?;
            if !change(&mut u)? {
                return Ok(u);
            }
            match self.inner.store.users.update_user(&u).await {
                Ok(stored) => return Ok(stored),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "the account is changing too often; try again",
        ))
    }

    /// A person's memberships with the tenants' names, oldest first.
    pub(crate) async fn tenant_memberships(&self, user: &UserId) -> Result<Vec<TenantMembership>> {
        let mut out = Vec::new();
        for m in self.sorted_memberships(user).await? {
            match self.inner.store.tenants.get_tenant(&m.tenant_id).await {
                Ok(t) => out.push(TenantMembership {
                    tenant_id: m.tenant_id,
                    tenant_name: t.name,
                    role: m.role,
                    tenant_status: t.status,
                    suspended_at: t.suspended_at,
                    suspension_reason: t.suspension_reason,
                }),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn sorted_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        let mut ms = self.inner.store.memberships.list_memberships(user).await?;
        ms.sort_by(|a, b| (a.created_at, &a.tenant_id).cmp(&(b.created_at, &b.tenant_id)));
        Ok(ms)
    }

    /// Stores a new session of `user`; returns it and its secret.
    async fn open_session(
        &self,
        user: &UserId,
        tenant: Option<(TenantId, Role)>,
        signed_in_at: Timestamp,
        expires_at: Timestamp,
        request: &RequestMeta,
    ) -> Result<(Session, String)> {
        let now = self.now();
        let secret = generate_secret(SESSION_PREFIX);
        let idle = now
            .plus(self.inner.config.people.session_idle_timeout)
            .min(expires_at);
        let (tenant_id, role) = match tenant {
            Some((t, r)) => (Some(t), Some(r)),
            None => (None, None),
        };
        let session = Session {
            id: SessionId::generate(),
            token_hash: self.inner.hasher.hash(&secret),
            user_id: user.clone(),
            tenant_id,
            role,
            created_at: now,
            signed_in_at,
            last_seen_at: now,
            idle_expires_at: idle,
            expires_at,
            ip: request.ip.clone(),
            user_agent: request.user_agent.clone(),
        };
        self.inner.store.sessions.create_session(&session).await?;
        Ok((session, secret))
    }

    /// Replaces a session by a new one (new id and secret) continuing the
    /// same sign-in, acting in `tenant`.
    async fn rotate_session(
        &self,
        old: &Session,
        tenant: Option<(TenantId, Role)>,
        request: &RequestMeta,
    ) -> Result<(Session, String)> {
        let meta = RequestMeta {
            ip: old.ip.clone().or_else(|| request.ip.clone()),
            user_agent: old
                .user_agent
                .clone()
                .or_else(|| request.user_agent.clone()),
            request_id: request.request_id.clone(),
        };
        let fresh = self
            .open_session(
                &old.user_id,
                tenant,
                old.signed_in_at,
                old.expires_at,
                &meta,
            )
            .await?;
        self.inner.store.sessions.delete_session(&old.id).await?;
        Ok(fresh)
    }

    /// The answer of every sign-in: the session, its secret and the
    /// person's view.
    async fn signed_in(&self, user: &User, session: Session, secret: String) -> Result<SignedIn> {
        let me = Me {
            user: user.account(),
            memberships: self.tenant_memberships(&user.id).await?,
            csrf_token: self.csrf_for(&secret),
            session: session.info(true),
        };
        Ok(SignedIn {
            secret: Secret::new(secret),
            session,
            me,
        })
    }

    /// Ends the session a request came with, if it is one.
    async fn end_presented(&self, secret: Option<&str>) -> Result<()> {
        let Some(secret) = secret.filter(|s| well_formed(s, SESSION_PREFIX)) else {
            return Ok(());
        };
        match self
            .inner
            .store
            .sessions
            .get_session(&self.inner.hasher.hash(secret))
            .await
        {
            Ok(s) => {
                self.inner.store.sessions.delete_session(&s.id).await?;
                Ok(())
            }
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A fresh sign-in of `user` acting in `tenant` (default: its oldest
    /// membership); the session the request came with (`replaces`) ends.
    pub(crate) async fn start_session(
        &self,
        user: &User,
        tenant: Option<&TenantId>,
        request: &RequestMeta,
        replaces: Option<&str>,
    ) -> Result<SignedIn> {
        self.end_presented(replaces).await?;
        let memberships = self.sorted_memberships(&user.id).await?;
        let chosen =
            match tenant {
                Some(t) => Some(memberships.iter().find(|m| &m.tenant_id == t).ok_or_else(
                    || Error::invalid("tenant_id", "the account is not a member of this tenant"),
                )?),
                None => memberships.first(),
            };
        let now = self.now();
        let expires = now.plus(self.inner.config.people.session_lifetime);
        let (session, secret) = self
            .open_session(
                &user.id,
                chosen.map(|m| (m.tenant_id.clone(), m.role)),
                now,
                expires,
                request,
            )
            .await?;
        self.signed_in(user, session, secret).await
    }

    /// Audits a change a person made to their own account, in the chain of
    /// the tenant they act in (the system chain without one).
    async fn audit_own(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
        action: &str,
        request: &RequestMeta,
        details: &[(&str, String)],
    ) -> Result<()> {
        let mut ev = self.event(
            tenant,
            &format!("user:{user}"),
            action,
            Some(user.as_str()),
            Outcome::Success,
            request,
        );
        for (k, v) in details {
            ev.details.insert((*k).to_owned(), v.clone());
        }
        self.audit(ev).await?;
        Ok(())
    }

    /// A failed sign-in: counted against the account, audited (in the
    /// system chain, without the email or anything typed), and answered
    /// with the one generic `Unauthenticated`.
    pub(crate) async fn sign_in_failed(
        &self,
        user: Option<&User>,
        account_key: Option<&str>,
        reason: &str,
        request: &RequestMeta,
    ) -> Error {
        if let Some(k) = account_key {
            let quota = self.inner.config.people.sign_in_failures_per_account;
            if let Err(e) = self.inner.limiter.check(k, &quota, 1).await {
                return e;
            }
        }
        let mut ev = self.event(
            None,
            "anonymous",
            "user.sign_in_failed",
            user.map(|u| u.id.as_str()),
            Outcome::Failure,
            request,
        );
        ev.details.insert("reason".into(), reason.to_owned());
        if let Err(e) = self.audit_failure(ev).await {
            return e;
        }
        Error::Unauthenticated
    }

    /// Checks a second-factor code (a TOTP code of a step not used before,
    /// or an unused recovery code, which is then used up); returns the
    /// stored account and which kind matched, or `None` for a wrong code.
    pub(crate) async fn use_second_factor(
        &self,
        user: &UserId,
        code: &str,
    ) -> Result<Option<(User, &'static str)>> {
        let now = self.now();
        let hasher = &self.inner.hasher;
        let mut kind = None;
        let stored = self
            .change_user(user, |u| {
                kind = None;
                let Some(state) = u.totp.as_mut().filter(|t| t.confirmed) else {
                    return Ok(false);
                };
                let seed = Seed::open(&state.seed, hasher)?;
                if let Some(step) = totp_code_step(&seed, code, now)? {
                    if state.last_step.is_none_or(|last| step > last) {
                        state.last_step = Some(step);
                        kind = Some("totp");
                        return Ok(true);
                    }
                    return Ok(false);
                }
                if let Some(i) = state.recovery_index(hasher, code) {
                    state.recovery_codes.remove(i);
                    kind = Some("recovery_code");
                    return Ok(true);
                }
                Ok(false)
            })
            .await?;
        Ok(kind.map(|k| (stored, k)))
    }

    /// Verifies an account's password and, when it has one, its second
    /// factor, as sign-in does (throttled per account; failures generic and
    /// audited). Returns the stored account and the second factor used.
    pub(crate) async fn verify_credentials(
        &self,
        email: &str,
        password: &str,
        totp: Option<&str>,
        request: &RequestMeta,
    ) -> Result<(User, Option<&'static str>)> {
        let people = &self.inner.config.people;
        let email = normalize_email(email).ok();
        let account_key = email.as_deref().map(|e| self.account_key(e));
        if let Some(k) = &account_key {
            let d = self
                .inner
                .limiter
                .check(k, &people.sign_in_failures_per_account, 0)
                .await?;
            if !d.allowed {
                return Err(Error::RateLimited {
                    retry_after: d.retry_after,
                    limit: u64::from(people.sign_in_failures_per_account.limit),
                });
            }
        }
        let user = match &email {
            Some(e) => match self.inner.store.users.get_user_by_email(e).await {
                Ok(u) => Some(u),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        // The same argon2 work whether or not the account exists.
        let password_ok = self
            .inner
            .passwords
            .verify(password, user.as_ref().map(|u| &u.password_hash))
            .await?;
        let user = match user {
            Some(u) if password_ok && u.status == UserStatus::Active => u,
            other => {
                let reason = match &other {
                    None => "unknown_account",
                    Some(_) if !password_ok => "password",
                    Some(_) => "disabled",
                };
                return Err(self
                    .sign_in_failed(other.as_ref(), account_key.as_deref(), reason, request)
                    .await);
            }
        };
        let (user, factor) = if user.totp_enabled() {
            let Some(code) = totp.map(str::trim).filter(|c| !c.is_empty()) else {
                return Err(Error::invalid(
                    "totp",
                    "this account has a second factor: send its current one-time code (or a recovery code) as `totp`",
                ));
            };
            match self.use_second_factor(&user.id, code).await? {
                Some((u, kind)) => (u, Some(kind)),
                None => {
                    return Err(self
                        .sign_in_failed(
                            Some(&user),
                            account_key.as_deref(),
                            "second_factor",
                            request,
                        )
                        .await);
                }
            }
        } else {
            (user, None)
        };
        if let Some(k) = &account_key {
            // A success forgets earlier failures; a limiter failure here
            // only keeps them counted.
            let _ = self.inner.limiter.reset(k).await;
        }
        Ok((user, factor))
    }

    /// Signs a person in with email and password (and the second factor
    /// when the account has one), in `tenant_id` or the account's oldest
    /// membership. Throttled per client IP
    /// ([`sign_in_per_ip`](crate::PeopleConfig::sign_in_per_ip)) and per
    /// account ([`sign_in_failures_per_account`](crate::PeopleConfig::sign_in_failures_per_account)):
    /// a refusal is `RateLimited` with the wait. Every failure is the same
    /// `Unauthenticated` (an unknown email costs the same argon2 work as a
    /// wrong password) and is audited; a missing second factor is
    /// `Invalid` (field `totp`) so the page can ask for it. The session the
    /// request came with (`replaces`) ends: every sign-in gets a new one.
    pub async fn sign_in(
        &self,
        input: &SignIn,
        request: &RequestMeta,
        replaces: Option<&str>,
    ) -> Result<SignedIn> {
        let quota = self.inner.config.people.sign_in_per_ip;
        self.throttle(&Self::ip_key("sign-in", request), &quota, 1)
            .await?;
        let (user, factor) = self
            .verify_credentials(
                &input.email,
                &input.password,
                input.totp.as_deref(),
                request,
            )
            .await?;
        let now = self.now();
        let user = self
            .change_user(&user.id, |u| {
                u.last_sign_in_at = Some(now);
                Ok(true)
            })
            .await?;
        let signed = self
            .start_session(&user, input.tenant_id.as_ref(), request, replaces)
            .await?;
        let mut details = vec![("session_id", signed.session.id.to_string())];
        if let Some(f) = factor {
            details.push(("second_factor", f.to_owned()));
        }
        self.audit_own(
            &user.id,
            signed.session.tenant_id.as_ref(),
            "user.signed_in",
            request,
            &details,
        )
        .await?;
        Ok(signed)
    }

    /// Creates an account, a free-tier tenant it owns, and signs it in
    /// (when sign-up is [open](SignupMode::Open); `Forbidden` otherwise).
    /// Throttled per client IP
    /// ([`signup_per_ip`](crate::PeopleConfig::signup_per_ip)). The
    /// password must pass the strength rule; a taken email is
    /// `AlreadyExists`.
    pub async fn sign_up(
        &self,
        input: &SignUp,
        request: &RequestMeta,
        replaces: Option<&str>,
    ) -> Result<SignedIn> {
        let people = &self.inner.config.people;
        match people.signup {
            SignupMode::Open => {}
            SignupMode::Invite => {
                return Err(Error::Forbidden {
                    message: "sign-up is by invitation only on this deployment".into(),
                });
            }
            SignupMode::Closed => {
                return Err(Error::Forbidden {
                    message: "sign-up is closed on this deployment".into(),
                });
            }
        }
        self.throttle(&Self::ip_key("sign-up", request), &people.signup_per_ip, 1)
            .await?;
        let email = normalize_email(&input.email)?;
        validate_text("tenant_name", &input.tenant_name, 100)?;
        let name = display_name(input.display_name.as_deref(), &email)?;
        let local = email.split('@').next().unwrap_or_default().to_owned();
        check_strength(
            &input.password,
            &[&email, &local, &name, &input.tenant_name],
        )?;
        let hash = self.inner.passwords.hash(&input.password).await?;
        let now = self.now();
        let user = User {
            id: UserId::generate(),
            email,
            display_name: name,
            password_hash: hash,
            status: UserStatus::Active,
            created_at: now,
            last_sign_in_at: Some(now),
            password_changed_at: now,
            totp: None,
            revision: 0,
        };
        self.inner.store.users.create_user(&user).await?;
        let actor = format!("user:{}", user.id);
        let tenant = self
            .insert_tenant(
                NewTenant {
                    name: input.tenant_name.clone(),
                    ..Default::default()
                },
                &actor,
                request,
            )
            .await?;
        self.inner
            .store
            .memberships
            .add_membership(&Membership {
                tenant_id: tenant.id.clone(),
                user_id: user.id.clone(),
                role: Role::Owner,
                created_at: now,
            })
            .await?;
        self.audit_own(
            &user.id,
            Some(&tenant.id),
            "user.signed_up",
            request,
            &[("role", Role::Owner.to_string())],
        )
        .await?;
        self.start_session(&user, Some(&tenant.id), request, replaces)
            .await
    }

    /// Ends the session with this secret (nothing for an unknown one).
    pub async fn sign_out(&self, secret: &str, request: &RequestMeta) -> Result<()> {
        if !well_formed(secret, SESSION_PREFIX) {
            return Ok(());
        }
        let session = match self
            .inner
            .store
            .sessions
            .get_session(&self.inner.hasher.hash(secret))
            .await
        {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.inner
            .store
            .sessions
            .delete_session(&session.id)
            .await?;
        self.audit_own(
            &session.user_id,
            session.tenant_id.as_ref(),
            "user.signed_out",
            request,
            &[("session_id", session.id.to_string())],
        )
        .await
    }

    /// The session a request presents. `Unauthenticated` for an unknown,
    /// ended or expired session or a disabled account; `Forbidden` for a
    /// state-changing method without the session's CSRF token. A used
    /// session's idle end moves on (written at most once a minute). When
    /// the member's role changed since the session was issued, the session
    /// is rotated (`rotated`: the host sets the new secret and hands out the
    /// new CSRF token). `caller` is the member's role's scopes in the
    /// session's tenant, or `None` with the reason in `denied`.
    pub async fn authenticate_session(
        &self,
        presented: &SessionCredentials<'_>,
        request: &RequestMeta,
    ) -> Result<SessionAuth> {
        if !well_formed(presented.secret, SESSION_PREFIX) {
            return Err(Error::Unauthenticated);
        }
        let sessions = &self.inner.store.sessions;
        let mut session = match sessions
            .get_session(&self.inner.hasher.hash(presented.secret))
            .await
        {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Err(Error::Unauthenticated),
            Err(e) => return Err(e),
        };
        let now = self.now();
        if !session.is_live(now) {
            sessions.delete_session(&session.id).await?;
            return Err(Error::Unauthenticated);
        }
        if changes_state(presented.method) {
            let expected = self.csrf_for(presented.secret);
            let given = presented.csrf_token.unwrap_or("");
            let same: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
            if !same {
                return Err(Error::Forbidden {
                    message: "a request made with a session must carry the session's CSRF token \
                              (X-CSRF-Token; it comes with the sign-in and GET /v1/me)"
                        .into(),
                });
            }
        }
        let user = match self.inner.store.users.get_user(&session.user_id).await {
            Ok(u) if u.status == UserStatus::Active => u,
            Ok(_) | Err(Error::NotFound { .. }) => return Err(Error::Unauthenticated),
            Err(e) => return Err(e),
        };
        let membership = match &session.tenant_id {
            Some(t) => match self
                .inner
                .store
                .memberships
                .get_membership(t, &user.id)
                .await
            {
                Ok(m) => Some(m),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let mut secret = presented.secret.to_owned();
        let mut rotated = false;
        match &membership {
            Some(m) if session.role != Some(m.role) => {
                let (fresh, fresh_secret) = self
                    .rotate_session(&session, Some((m.tenant_id.clone(), m.role)), request)
                    .await?;
                session = fresh;
                secret = fresh_secret;
                rotated = true;
            }
            _ => {
                if now.since(session.last_seen_at) >= SESSION_TOUCH_INTERVAL {
                    let idle = now
                        .plus(self.inner.config.people.session_idle_timeout)
                        .min(session.expires_at);
                    sessions.touch_session(&session.id, now, idle).await?;
                    session.last_seen_at = now;
                    session.idle_expires_at = idle;
                }
            }
        }
        let (caller, denied) = match membership {
            None if session.tenant_id.is_some() => (
                None,
                Some("the account is no longer a member of the session's tenant".to_owned()),
            ),
            None => (None, Some("the account has no role in a tenant".to_owned())),
            Some(m) => {
                let needs_factor = matches!(m.role, Role::Owner | Role::Admin)
                    && !user.totp_enabled()
                    && self
                        .inner
                        .store
                        .tenants
                        .get_tenant(&m.tenant_id)
                        .await?
                        .settings
                        .require_totp_for_admins;
                if needs_factor {
                    (
                        None,
                        Some(
                            "the tenant requires a second factor for owners and admins: turn it \
                             on at POST /v1/me/totp"
                                .to_owned(),
                        ),
                    )
                } else {
                    (
                        Some(Caller::member(
                            &user.id,
                            &m.tenant_id,
                            m.role,
                            request.clone(),
                        )),
                        None,
                    )
                }
            }
        };
        Ok(SessionAuth {
            csrf_token: self.csrf_for(&secret),
            secret: Secret::new(secret),
            user,
            session,
            rotated,
            caller,
            denied,
        })
    }

    /// The signed-in person's view of themselves.
    pub async fn me(&self, auth: &SessionAuth) -> Result<Me> {
        Ok(Me {
            user: auth.user.account(),
            memberships: self.tenant_memberships(&auth.user.id).await?,
            csrf_token: auth.csrf_token.clone(),
            session: auth.session.info(true),
        })
    }

    /// The person's live sessions, oldest first; the request's own is
    /// marked `current`.
    pub async fn list_sessions(&self, auth: &SessionAuth) -> Result<Vec<SessionInfo>> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .sessions
            .list_sessions(&auth.user.id)
            .await?
            .into_iter()
            .filter(|s| s.is_live(now))
            .map(|s| {
                let current = s.id == auth.session.id;
                s.info(current)
            })
            .collect())
    }

    /// Ends one of the person's sessions (the current one too: that signs
    /// out). Another person's session is `NotFound`.
    pub async fn end_session(
        &self,
        auth: &SessionAuth,
        id: &SessionId,
        request: &RequestMeta,
    ) -> Result<()> {
        let mine = self
            .inner
            .store
            .sessions
            .list_sessions(&auth.user.id)
            .await?
            .into_iter()
            .any(|s| &s.id == id);
        if !mine || !self.inner.store.sessions.delete_session(id).await? {
            return Err(Error::not_found("session"));
        }
        self.audit_own(
            &auth.user.id,
            auth.session.tenant_id.as_ref(),
            "user.session_ended",
            request,
            &[("session_id", id.to_string())],
        )
        .await
    }

    /// Ends every session of the person but the current one; returns how
    /// many ended.
    pub async fn end_other_sessions(
        &self,
        auth: &SessionAuth,
        request: &RequestMeta,
    ) -> Result<u64> {
        let n = self
            .inner
            .store
            .sessions
            .delete_sessions(&auth.user.id, None, Some(&auth.session.id))
            .await?;
        self.audit_own(
            &auth.user.id,
            auth.session.tenant_id.as_ref(),
            "user.sessions_ended",
            request,
            &[("count", n.to_string())],
        )
        .await?;
        Ok(n)
    }

    /// Switches the session to another tenant of the person: a new session
    /// (rotation) continuing the same sign-in.
    pub async fn switch_tenant(
        &self,
        auth: &SessionAuth,
        tenant: &TenantId,
        request: &RequestMeta,
    ) -> Result<SignedIn> {
        let m = match self
            .inner
            .store
            .memberships
            .get_membership(tenant, &auth.user.id)
            .await
        {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => return Err(Error::not_found("tenant")),
            Err(e) => return Err(e),
        };
        let (session, secret) = self
            .rotate_session(&auth.session, Some((m.tenant_id.clone(), m.role)), request)
            .await?;
        self.audit_own(
            &auth.user.id,
            Some(tenant),
            "user.tenant_switched",
            request,
            &[("session_id", session.id.to_string())],
        )
        .await?;
        self.signed_in(&auth.user, session, secret).await
    }

    /// Changes the person's password: the current one must be given (a
    /// wrong one counts as a failed sign-in of the account and is
    /// `Forbidden`), the new one must pass the strength rule. Every session
    /// of the person ends, on every node; the answer is a new session.
    pub async fn change_password(
        &self,
        auth: &SessionAuth,
        current: &str,
        new: &str,
        request: &RequestMeta,
    ) -> Result<SignedIn> {
        let user = &auth.user;
        let ok = self
            .inner
            .passwords
            .verify(current, Some(&user.password_hash))
            .await?;
        if !ok {
            let key = self.account_key(&user.email);
            let e = self
                .sign_in_failed(Some(user), Some(&key), "password_change", request)
                .await;
            if matches!(e, Error::Unauthenticated) {
                return Err(Error::Forbidden {
                    message: "the current password is wrong".into(),
                });
            }
            return Err(e);
        }
        let local = user.email.split('@').next().unwrap_or_default().to_owned();
        check_strength(new, &[&user.email, &local, &user.display_name])?;
        let hash = self.inner.passwords.hash(new).await?;
        let now = self.now();
        let stored = self
            .change_user(&user.id, |u| {
                u.password_hash = hash.clone();
                u.password_changed_at = now;
                Ok(true)
            })
            .await?;
        self.inner
            .store
            .sessions
            .delete_sessions(&user.id, None, None)
            .await?;
        self.audit_own(
            &user.id,
            auth.session.tenant_id.as_ref(),
            "user.password_changed",
            request,
            &[],
        )
        .await?;
        self.start_session(&stored, auth.session.tenant_id.as_ref(), request, None)
            .await
    }

    /// Starts turning on the second factor: a new TOTP secret, shown once,
    /// to put into an authenticator app; [`confirm_totp`](Self::confirm_totp)
    /// with a code from it turns the factor on. `Conflict` when it is on
    /// already.
    pub async fn begin_totp(&self, auth: &SessionAuth) -> Result<TotpEnrollment> {
        let seed = Seed::generate();
        let sealed = seed.seal(&self.inner.hasher);
        self.change_user(&auth.user.id, |u| {
            if u.totp_enabled() {
                return Err(Error::conflict(
                    "the second factor is on already; turn it off first",
                ));
            }
            u.totp = Some(TotpState {
                seed: sealed.clone(),
                confirmed: false,
                last_step: None,
                recovery_codes: vec![],
                enabled_at: None,
            });
            Ok(true)
        })
        .await?;
        let secret = seed.base32();
        let host = crate::people::url_host(&self.inner.config.issuer).unwrap_or_default();
        let label = format!("SentryAgent ({host})");
        let uri = format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits=6&period=30",
            percent(&label),
            percent(&auth.user.email),
            percent(&label),
        );
        Ok(TotpEnrollment {
            secret,
            otpauth_uri: uri,
        })
    }

    /// Turns the second factor on with a code from the authenticator app
    /// (`Invalid` for a wrong one): returns the recovery codes, shown only
    /// here (each works once in place of a code), and a new session (the
    /// session is rotated).
    pub async fn confirm_totp(
        &self,
        auth: &SessionAuth,
        code: &str,
        request: &RequestMeta,
    ) -> Result<(Vec<String>, SignedIn)> {
        let now = self.now();
        let hasher = &self.inner.hasher;
        let codes: Vec<(String, crate::SecretHash)> =
            (0..RECOVERY_CODES).map(|_| recovery_code(hasher)).collect();
        let stored = self
            .change_user(&auth.user.id, |u| {
                let Some(state) = u.totp.as_mut().filter(|t| !t.confirmed) else {
                    return Err(Error::conflict(
                        "no second factor is being set up: POST /v1/me/totp first",
                    ));
                };
                let seed = Seed::open(&state.seed, hasher)?;
                let Some(step) = totp_code_step(&seed, code, now)? else {
                    return Err(Error::invalid(
                        "code",
                        "not the current code of the authenticator",
                    ));
                };
                state.confirmed = true;
                state.last_step = Some(step);
                state.enabled_at = Some(now);
                state.recovery_codes = codes.iter().map(|(_, h)| *h).collect();
                Ok(true)
            })
            .await?;
        self.audit_own(
            &stored.id,
            auth.session.tenant_id.as_ref(),
            "user.totp_enabled",
            request,
            &[],
        )
        .await?;
        let tenant = match (&auth.session.tenant_id, auth.session.role) {
            (Some(t), Some(r)) => Some((t.clone(), r)),
            _ => None,
        };
        let (session, secret) = self.rotate_session(&auth.session, tenant, request).await?;
        let signed = self.signed_in(&stored, session, secret).await?;
        Ok((codes.into_iter().map(|(c, _)| c).collect(), signed))
    }

    /// Turns the second factor off (the password must be given: a wrong one
    /// is `Forbidden` and counts as a failed sign-in).
    pub async fn disable_totp(
        &self,
        auth: &SessionAuth,
        password: &str,
        request: &RequestMeta,
    ) -> Result<Account> {
        let ok = self
            .inner
            .passwords
            .verify(password, Some(&auth.user.password_hash))
            .await?;
        if !ok {
            let key = self.account_key(&auth.user.email);
            let e = self
                .sign_in_failed(Some(&auth.user), Some(&key), "totp_disable", request)
                .await;
            if matches!(e, Error::Unauthenticated) {
                return Err(Error::Forbidden {
                    message: "the password is wrong".into(),
                });
            }
            return Err(e);
        }
        let stored = self
            .change_user(&auth.user.id, |u| {
                if u.totp.is_none() {
                    return Ok(false);
                }
                u.totp = None;
                Ok(true)
            })
            .await?;
        self.audit_own(
            &stored.id,
            auth.session.tenant_id.as_ref(),
            "user.totp_disabled",
            request,
            &[],
        )
        .await?;
        Ok(stored.account())
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_methods() {
        let s = generate_secret(SESSION_PREFIX);
        assert!(well_formed(&s, SESSION_PREFIX));
        assert!(!well_formed(&s[..s.len() - 1], SESSION_PREFIX));
        assert!(!well_formed(&format!("{s}x"), SESSION_PREFIX));
        assert!(!well_formed(&s.replace("sa_ss_", "sa_iv_"), SESSION_PREFIX));
        assert!(!well_formed(
            &format!("sa_ss_{}", "é".repeat(21)),
            SESSION_PREFIX
        ));
        for safe in ["GET", "get", "HEAD", "OPTIONS"] {
            assert!(!changes_state(safe), "{safe}");
        }
        for unsafe_ in ["POST", "PUT", "PATCH", "DELETE", "post", "BREW"] {
            assert!(changes_state(unsafe_), "{unsafe_}");
        }
        assert_eq!(
            percent("SentryAgent (a.b:8080)"),
            "SentryAgent%20%28a.b%3A8080%29"
        );
        assert_eq!(display_name(None, "ada@example.com").unwrap(), "ada");
        assert!(display_name(Some("  "), "ada@example.com").is_err());
    }
}

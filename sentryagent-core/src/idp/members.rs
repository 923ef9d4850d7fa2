//! A tenant's people: members and their roles, invitations, password reset
//! links, and the tenant's rules for them.
//!
//! Who may act on whom: [`AdminScope::MembersRead`] lists,
//! [`AdminScope::MembersWrite`] changes, and only for roles within the
//! caller's own scopes ([`Role::within`]): an admin manages developers,
//! viewers and other admins, never an owner. An operator reaches every
//! tenant and every role.
//!
//! A password reset link carries its own expiry, the account and a MAC
//! under the deployment key over them and the account's current password
//! hash: it stops working once used (the hash changes, and its nonce is
//! kept as a one-time marker until it expires) and is never stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::accounts::{display_name, well_formed};
use super::{Caller, Idp};
use crate::audit::{Outcome, RequestMeta};
use crate::credentials::AdminScope;
use crate::people::{
    AcceptInvitation, Account, CompletePasswordReset, CreatedInvitation, Invitation,
    InvitationInfo, InvitationStatus, Member, Membership, NewInvitation, PasswordResetLink, Role,
    Secret, SignedIn, SignupMode, User, UserStatus, check_strength, normalize_email,
};
use crate::secret::generate_secret;
use crate::{
    Error, InvitationId, Result, Tenant, TenantId, TenantSettingsPatch, Timestamp, UserId,
};

/// Prefix of invitation tokens.
pub(crate) const INVITATION_PREFIX: &str = "sa_iv_";
/// Prefix of password reset tokens.
pub(crate) const RESET_PREFIX: &str = "sa_pr_";
/// Marker namespace of used password reset links.
const RESET_MARKERS: &str = "password-reset";

/// `Forbidden` unless the caller's scopes cover every scope of `role`.
fn may_act_on(caller: &Caller, role: Role, what: &str) -> Result<()> {
    if caller.is_operator() || role.within(&caller.scopes) {
        Ok(())
    } else {
        Err(Error::Forbidden {
            message: format!(
                "{what} a member with the {role} role needs a role at least as strong"
            ),
        })
    }
}

/// The fields of a reset token (all but its MAC).
struct ResetClaims {
    user: UserId,
    expires_at: Timestamp,
    nonce: [u8; 16],
}

impl ResetClaims {
    fn body(&self) -> Vec<u8> {
        let id = self.user.as_str().as_bytes();
        let mut b = Vec::with_capacity(1 + id.len() + 8 + 16);
        b.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        b.extend_from_slice(&id[..id.len().min(255)]);
        b.extend_from_slice(&self.expires_at.unix_secs().to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b
    }

    fn parse(bytes: &[u8]) -> Option<(ResetClaims, &[u8])> {
        let (&len, rest) = bytes.split_first()?;
        let len = usize::from(len);
        if rest.len() != len + 8 + 16 + 32 {
            return None;
        }
        let user = UserId::parse(std::str::from_utf8(&rest[..len]).ok()?).ok()?;
        let exp = i64::from_be_bytes(rest[len..len + 8].try_into().ok()?);
        let nonce: [u8; 16] = rest[len + 8..len + 24].try_into().ok()?;
        Some((
            ResetClaims {
                user,
                expires_at: Timestamp::from_unix_secs(exp),
                nonce,
            },
            &rest[len + 24..],
        ))
    }
}

impl Idp {
    /// The MAC of a reset token: over its fields and the account's current
    /// password hash.
    fn reset_mac(&self, claims: &ResetClaims, user: &User) -> [u8; 32] {
        let body = URL_SAFE_NO_PAD.encode(claims.body());
        self.inner
            .hasher
            .hash(&format!("password-reset\0{body}\0{}", user.password_hash.0))
            .0
    }

    /// The tenant, after the caller's reach and scope are checked.
    async fn members_tenant(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        scope: AdminScope,
    ) -> Result<Tenant> {
        caller.reach(tenant, "tenant")?;
        caller.require(scope)?;
        self.inner.store.tenants.get_tenant(tenant).await
    }

    async fn member_view(&self, m: Membership) -> Result<Member> {
        let u = self.inner.store.users.get_user(&m.user_id).await?;
        Ok(Member {
            user_id: m.user_id,
            email: u.email,
            display_name: u.display_name,
            role: m.role,
            joined_at: m.created_at,
            last_sign_in_at: u.last_sign_in_at,
            totp_enabled: u.totp.as_ref().is_some_and(|t| t.confirmed),
        })
    }

    /// Audits a change to a tenant's people.
    async fn audit_members(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        action: &str,
        target: &str,
        details: &[(&str, String)],
    ) -> Result<()> {
        let mut ev = self.event(
            Some(tenant),
            &caller.actor,
            action,
            Some(target),
            Outcome::Success,
            &caller.request,
        );
        for (k, v) in details {
            ev.details.insert((*k).to_owned(), v.clone());
        }
        self.audit(ev).await?;
        Ok(())
    }

    /// A tenant's members ([`AdminScope::MembersRead`]).
    pub async fn list_members(&self, caller: &Caller, tenant: &TenantId) -> Result<Vec<Member>> {
        self.members_tenant(caller, tenant, AdminScope::MembersRead)
            .await?;
        let mut out = Vec::new();
        for m in self.inner.store.memberships.list_members(tenant).await? {
            out.push(self.member_view(m).await?);
        }
        Ok(out)
    }

    async fn membership_of(&self, tenant: &TenantId, user: &UserId) -> Result<Membership> {
        self.inner
            .store
            .memberships
            .get_membership(tenant, user)
            .await
    }

    /// Changes a member's role ([`AdminScope::MembersWrite`], for a member
    /// and a new role both within the caller's own scopes). The last owner
    /// keeps the role (`Conflict`). The member's sessions take the new
    /// role's scopes at once, and are rotated at their next use.
    pub async fn change_member_role(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
    ) -> Result<Member> {
        self.members_tenant(caller, tenant, AdminScope::MembersWrite)
            .await?;
        let current = self.membership_of(tenant, user).await?;
        may_act_on(caller, current.role, "changing the role of")?;
        may_act_on(caller, role, "making")?;
        let m = self
            .inner
            .store
            .memberships
            .set_role(tenant, user, role)
            .await?;
        if current.role != role {
            self.audit_members(
                caller,
                tenant,
                "member.role_changed",
                user.as_str(),
                &[("from", current.role.to_string()), ("to", role.to_string())],
            )
            .await?;
        }
        self.member_view(m).await
    }

    /// Removes a member ([`AdminScope::MembersWrite`], for a member within
    /// the caller's own scopes); the last owner stays (`Conflict`). The
    /// member's sessions in the tenant end.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<()> {
        self.members_tenant(caller, tenant, AdminScope::MembersWrite)
            .await?;
        let current = self.membership_of(tenant, user).await?;
        may_act_on(caller, current.role, "removing")?;
        self.inner
            .store
            .memberships
            .remove_membership(tenant, user)
            .await?;
        let ended = self
            .inner
            .store
            .sessions
            .delete_sessions(user, Some(tenant), None)
            .await?;
        self.audit_members(
            caller,
            tenant,
            "member.removed",
            user.as_str(),
            &[
                ("role", current.role.to_string()),
                ("sessions_ended", ended.to_string()),
            ],
        )
        .await
    }

    /// Invites `email` to the tenant with a role within the caller's own
    /// scopes ([`AdminScope::MembersWrite`]). Returns the invitation with
    /// its single-use token and link, shown only here (the token is stored
    /// as its keyed hash); valid for
    /// [`invitation_ttl`](crate::PeopleConfig::invitation_ttl). A person
    /// who is a member already is `Conflict`.
    pub async fn create_invitation(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        new: &NewInvitation,
    ) -> Result<CreatedInvitation> {
        self.members_tenant(caller, tenant, AdminScope::MembersWrite)
            .await?;
        may_act_on(caller, new.role, "inviting")?;
        let email = normalize_email(&new.email)?;
        match self.inner.store.users.get_user_by_email(&email).await {
            Ok(u) => match self.membership_of(tenant, &u.id).await {
                Ok(_) => return Err(Error::conflict("this person is a member already")),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            },
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let token = generate_secret(INVITATION_PREFIX);
        let now = self.now();
        let invitation = Invitation {
            id: InvitationId::generate(),
            tenant_id: tenant.clone(),
            email,
            role: new.role,
            token_hash: self.inner.hasher.hash(&token),
            invited_by: caller.actor.clone(),
            by_operator: caller.is_operator(),
            created_at: now,
            expires_at: now.plus(self.inner.config.people.invitation_ttl),
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
        };
        self.inner
            .store
            .invitations
            .create_invitation(&invitation)
            .await?;
        self.audit_members(
            caller,
            tenant,
            "invitation.created",
            invitation.id.as_str(),
            &[
                ("email", invitation.email.clone()),
                ("role", invitation.role.to_string()),
            ],
        )
        .await?;
        let url = format!("{}#token={token}", self.inner.config.people.invitation_url);
        Ok(CreatedInvitation {
            invitation,
            token: Secret::new(token),
            url,
        })
    }

    /// A tenant's invitations, with their status now
    /// ([`AdminScope::MembersRead`]).
    pub async fn list_invitations(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<InvitationInfo>> {
        self.members_tenant(caller, tenant, AdminScope::MembersRead)
            .await?;
        let now = self.now();
        Ok(self
            .inner
            .store
            .invitations
            .list_invitations(tenant)
            .await?
            .iter()
            .map(|i| i.info(now))
            .collect())
    }

    /// Revokes a tenant's invitation ([`AdminScope::MembersWrite`]); an
    /// accepted one is `Conflict`.
    pub async fn revoke_invitation(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: &InvitationId,
    ) -> Result<InvitationInfo> {
        self.members_tenant(caller, tenant, AdminScope::MembersWrite)
            .await?;
        let inv = self
            .inner
            .store
            .invitations
            .revoke_invitation(tenant, id, self.now())
            .await?;
        self.audit_members(caller, tenant, "invitation.revoked", id.as_str(), &[])
            .await?;
        Ok(inv.info(self.now()))
    }

    /// Accepts an invitation (once) and signs the person in, in the
    /// invitation's tenant. For an email without an account, the password
    /// becomes the new account's (it must pass the strength rule; when
    /// sign-up is closed only an operator's invitation creates accounts).
    /// For an email with an account, the password (and second factor) must
    /// be that account's, as at sign-in. An unknown token is `NotFound`;
    /// a used, revoked or expired one `Conflict`. Throttled per client IP
    /// as sign-in is.
    pub async fn accept_invitation(
        &self,
        input: &AcceptInvitation,
        request: &RequestMeta,
        replaces: Option<&str>,
    ) -> Result<SignedIn> {
        let people = &self.inner.config.people;
        self.throttle(&Self::ip_key("sign-in", request), &people.sign_in_per_ip, 1)
            .await?;
        if !well_formed(&input.token, INVITATION_PREFIX) {
            return Err(Error::not_found("invitation"));
        }
        let inv = self
            .inner
            .store
            .invitations
            .get_invitation_by_token(&self.inner.hasher.hash(&input.token))
            .await?;
        let now = self.now();
        match inv.status(now) {
            InvitationStatus::Pending => {}
            InvitationStatus::Accepted => {
                return Err(Error::conflict("this invitation was used already"));
            }
            InvitationStatus::Revoked => {
                return Err(Error::conflict("this invitation was revoked"));
            }
            InvitationStatus::Expired => {
                return Err(Error::conflict(
                    "this invitation has expired; ask for a new one",
                ));
            }
        }
        let tenant = self.inner.store.tenants.get_tenant(&inv.tenant_id).await?;
        let existing = match self.inner.store.users.get_user_by_email(&inv.email).await {
            Ok(u) => Some(u),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let (user, new_account) = match existing {
            Some(_) => {
                let (u, _) = self
                    .verify_credentials(&inv.email, &input.password, input.totp.as_deref(), request)
                    .await?;
                (u, false)
            }
            None => {
                if people.signup == SignupMode::Closed && !inv.by_operator {
                    return Err(Error::Forbidden {
                        message: "new accounts are closed on this deployment: ask the operator"
                            .into(),
                    });
                }
                let name = display_name(input.display_name.as_deref(), &inv.email)?;
                let local = inv.email.split('@').next().unwrap_or_default().to_owned();
                check_strength(&input.password, &[&inv.email, &local, &name, &tenant.name])?;
                let hash = self.inner.passwords.hash(&input.password).await?;
                let user = User {
                    id: UserId::generate(),
                    email: inv.email.clone(),
                    display_name: name,
                    password_hash: hash,
                    status: UserStatus::Active,
                    created_at: now,
                    last_sign_in_at: Some(now),
                    password_changed_at: now,
                    totp: None,
                    revision: 0,
                };
                (user, true)
            }
        };
        // Claim the invitation first: of concurrent acceptances one goes on.
        self.inner
            .store
            .invitations
            .accept_invitation(&inv.id, &user.id, now)
            .await?;
        let user = if new_account {
            match self.inner.store.users.create_user(&user).await {
                Ok(()) => user,
                Err(Error::AlreadyExists { .. }) => {
                    return Err(Error::conflict(
                        "an account with this email was created meanwhile: sign in and ask for a new invitation",
                    ));
                }
                Err(e) => return Err(e),
            }
        } else {
            self.change_user(&user.id, |u| {
                u.last_sign_in_at = Some(now);
                Ok(true)
            })
            .await?
        };
        match self
            .inner
            .store
            .memberships
            .add_membership(&Membership {
                tenant_id: inv.tenant_id.clone(),
                user_id: user.id.clone(),
                role: inv.role,
                created_at: now,
            })
            .await
        {
            // A member already keeps the role they have.
            Ok(()) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut ev = self.event(
            Some(&inv.tenant_id),
            &format!("user:{}", user.id),
            "invitation.accepted",
            Some(inv.id.as_str()),
            Outcome::Success,
            request,
        );
        ev.details.insert("user_id".into(), user.id.to_string());
        ev.details.insert("role".into(), inv.role.to_string());
        ev.details
            .insert("new_account".into(), new_account.to_string());
        self.audit(ev).await?;
        self.start_session(&user, Some(&inv.tenant_id), request, replaces)
            .await
    }

    /// Issues a password reset link for an account, shown only here and
    /// valid for [`password_reset_ttl`](crate::PeopleConfig::password_reset_ttl).
    /// With a tenant: for a member within the caller's own scopes
    /// ([`AdminScope::MembersWrite`]: an owner or admin for a member). With
    /// none: an operator only, for any account.
    pub async fn issue_password_reset(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        user: &UserId,
    ) -> Result<PasswordResetLink> {
        match tenant {
            Some(t) => {
                self.members_tenant(caller, t, AdminScope::MembersWrite)
                    .await?;
                let m = self.membership_of(t, user).await?;
                may_act_on(caller, m.role, "resetting the password of")?;
            }
            None => {
                caller.require_operator()?;
                caller.require(AdminScope::Admin)?;
            }
        }
        let account = self.inner.store.users.get_user(user).await?;
        let expires_at = self.now().plus(self.inner.config.people.password_reset_ttl);
        let claims = ResetClaims {
            user: account.id.clone(),
            expires_at,
            nonce: crate::secret::random_bytes(),
        };
        let mut raw = claims.body();
        raw.extend_from_slice(&self.reset_mac(&claims, &account));
        let token = format!("{RESET_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let mut ev = self.event(
            tenant,
            &caller.actor,
            "user.password_reset_issued",
            Some(user.as_str()),
            Outcome::Success,
            &caller.request,
        );
        ev.details
            .insert("expires_at".into(), expires_at.to_rfc3339());
        self.audit(ev).await?;
        let url = format!(
            "{}#token={token}",
            self.inner.config.people.password_reset_url
        );
        Ok(PasswordResetLink {
            user_id: account.id,
            token: Secret::new(token),
            url,
            expires_at,
        })
    }

    /// Sets a new password with a reset link's token (once; the new
    /// password must pass the strength rule). Every session of the account
    /// ends. A bad, used or expired token is `Invalid` (field `token`),
    /// whichever it is. Throttled per client IP as sign-in is.
    pub async fn complete_password_reset(
        &self,
        input: &CompletePasswordReset,
        request: &RequestMeta,
    ) -> Result<()> {
        let people = &self.inner.config.people;
        self.throttle(&Self::ip_key("sign-in", request), &people.sign_in_per_ip, 1)
            .await?;
        let bad = || {
            Error::invalid(
                "token",
                "the password reset link is not valid, used or expired",
            )
        };
        let raw = input
            .token
            .strip_prefix(RESET_PREFIX)
            .filter(|r| r.len() <= 512)
            .and_then(|r| URL_SAFE_NO_PAD.decode(r).ok())
            .ok_or_else(bad)?;
        let (claims, mac) = ResetClaims::parse(&raw).ok_or_else(bad)?;
        let now = self.now();
        if now >= claims.expires_at {
            return Err(bad());
        }
        let user = match self.inner.store.users.get_user(&claims.user).await {
            Ok(u) => u,
            Err(Error::NotFound { .. }) => return Err(bad()),
            Err(e) => return Err(e),
        };
        if !bool::from(self.reset_mac(&claims, &user).ct_eq(mac)) {
            return Err(bad());
        }
        let local = user.email.split('@').next().unwrap_or_default().to_owned();
        check_strength(&input.password, &[&user.email, &local, &user.display_name])?;
        let nonce = crate::hex::encode(&claims.nonce);
        if !self
            .inner
            .store
            .markers
            .put_marker(RESET_MARKERS, &nonce, claims.expires_at, now)
            .await?
        {
            return Err(bad());
        }
        let hash = self.inner.passwords.hash(&input.password).await?;
        let before = user.password_hash.clone();
        self.change_user(&user.id, |u| {
            // The link was for the password it was issued under.
            if u.password_hash != before {
                return Err(bad());
            }
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
        let ev = self.event(
            None,
            &format!("user:{}", user.id),
            "user.password_reset",
            Some(user.id.as_str()),
            Outcome::Success,
            request,
        );
        self.audit(ev).await?;
        Ok(())
    }

    /// The account with this email (operator only), e.g. to issue it a
    /// password reset link.
    pub async fn find_account(&self, caller: &Caller, email: &str) -> Result<Account> {
        caller.require_operator()?;
        let email = normalize_email(email)?;
        Ok(self
            .inner
            .store
            .users
            .get_user_by_email(&email)
            .await?
            .account())
    }

    /// Changes a tenant's rules for its members ([`AdminScope::Admin`]: an
    /// owner, a tenant key with every scope, or an operator). Audited as
    /// `tenant.settings_changed`.
    pub async fn update_tenant_settings(
        &self,
        caller: &Caller,
        id: &TenantId,
        patch: TenantSettingsPatch,
    ) -> Result<Tenant> {
        caller.reach(id, "tenant")?;
        caller.require(AdminScope::Admin)?;
        self.change_tenant(
            id,
            &caller.actor,
            "tenant.settings_changed",
            &caller.request,
            |t| {
                let before = t.settings;
                if let Some(v) = patch.require_totp_for_admins {
                    t.settings.require_totp_for_admins = v;
                }
                Ok(t.settings != before)
            },
        )
        .await
    }
}

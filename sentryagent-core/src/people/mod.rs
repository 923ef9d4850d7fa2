//! People: accounts, their memberships in tenants with a role, signed-in
//! sessions and invitations.
//!
//! # Roles
//!
//! A member's role gives it the [`AdminScope`]s below, the same scopes an
//! admin API key holds, so a signed-in person and a key follow one set of
//! rules. This table is [`Role::scopes`]; nothing else decides it.
//!
//! | role | scopes | in words |
//! |---|---|---|
//! | `viewer` | `agents_read`, `audit_read`, `billing_read`, `members_read` | reads agents, the audit trail, usage and the member list |
//! | `developer` | `agents_write`, `audit_read`, `billing_read`, `members_read` | manages agents and their credentials, reads usage |
//! | `admin` | `agents_write`, `audit_read`, `billing_write`, `members_write`, `api_keys_write` | adds admin keys, invites and manages members (up to admin), starts checkouts |
//! | `owner` | `admin` (every scope) | adds tenant settings (publisher profile, the second-factor rule), makes and removes owners |
//!
//! A caller gives a role, or acts on a member, only when its scopes cover
//! every scope of that role: an admin cannot make an owner, nor remove,
//! demote or reset the password of one. A tenant always keeps at least one
//! owner (the membership store refuses the change that would leave none).

mod password;
mod totp;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credentials::AdminScope;
use crate::secret::SecretHash;
use crate::{Error, InvitationId, Result, SessionId, TenantId, Timestamp, UserId};

pub(crate) use password::{PasswordHasher, check_strength};
pub(crate) use totp::{RECOVERY_CODES, Seed, recovery_code, totp_code_step};
pub use totp::{SealedSecret, TotpState};

/// A member's role in a tenant. See the [module docs](self) for what each
/// may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the tenant, settings and ownership included.
    Owner,
    /// Keys, members (up to admin), billing and agents.
    Admin,
    /// Agents and their credentials; reads usage.
    Developer,
    /// Reads.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Developer, Role::Viewer];

    /// The admin scopes of the role: the one table of what a role may do.
    pub fn scopes(self) -> &'static [AdminScope] {
        use AdminScope as S;
        match self {
            Role::Owner => &[S::Admin],
            Role::Admin => &[
                S::AgentsWrite,
                S::AuditRead,
                S::BillingWrite,
                S::MembersWrite,
                S::ApiKeysWrite,
            ],
            Role::Developer => &[S::AgentsWrite, S::AuditRead, S::BillingRead, S::MembersRead],
            Role::Viewer => &[S::AgentsRead, S::AuditRead, S::BillingRead, S::MembersRead],
        }
    }

    /// The lowercase name (`owner`, `admin`, `developer`, `viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    /// Whether holders of `scopes` may give this role (or act on a member
    /// holding it): every scope of the role is covered by one of `scopes`.
    pub fn within(self, scopes: &[AdminScope]) -> bool {
        self.scopes()
            .iter()
            .all(|needed| scopes.iter().any(|s| s.covers(*needed)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("role", "one of owner, admin, developer, viewer"))
    }
}

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum UserStatus {
    /// Normal.
    Active,
    /// May not sign in; its sessions are not accepted.
    Disabled,
}

/// An argon2id hash of a person's password, in the PHC string format
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). Debug shows nothing of
/// it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A person's account (stored form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email address, normalized ([`normalize_email`]): unique.
    pub email: String,
    /// Name shown to other members.
    pub display_name: String,
    /// Hash of the password.
    pub password_hash: PasswordHash,
    /// Status.
    pub status: UserStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<Timestamp>,
    /// Last change of the password.
    pub password_changed_at: Timestamp,
    /// The second factor, when one is being set up or is on.
    pub totp: Option<TotpState>,
    /// Incremented by every stored change (optimistic concurrency).
    pub revision: u64,
}

impl User {
    /// Whether a confirmed second factor protects the account.
    pub fn totp_enabled(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed)
    }

    /// The account as shown to its owner and to the API.
    pub fn account(&self) -> Account {
        Account {
            id: self.id.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            status: self.status,
            created_at: self.created_at,
            last_sign_in_at: self.last_sign_in_at,
            totp_enabled: self.totp_enabled(),
        }
    }
}

/// An account, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    /// Id.
    pub id: UserId,
    /// Email address (normalized).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Status.
    pub status: UserStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<Timestamp>,
    /// Whether a second factor (TOTP) is on.
    pub totp_enabled: bool,
}

/// A person's role in a tenant (stored form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The person.
    pub user_id: UserId,
    /// The role.
    pub role: Role,
    /// When the person joined.
    pub created_at: Timestamp,
}

/// A tenant in a person's list of memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantMembership {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its name.
    pub tenant_name: String,
    /// The person's role in it.
    pub role: Role,
    /// Whether the tenant is active or suspended.
    pub tenant_status: crate::TenantStatus,
    /// When the tenant was suspended (while it is).
    pub suspended_at: Option<Timestamp>,
    /// Why, as the operator said (while it is).
    pub suspension_reason: Option<String>,
}

/// A member of a tenant, as listed to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// The person.
    pub user_id: UserId,
    /// Email address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// When the person joined.
    pub joined_at: Timestamp,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<Timestamp>,
    /// Whether a second factor is on.
    pub totp_enabled: bool,
}

/// A signed-in session (stored form). The session secret itself is never
/// stored: only its keyed hash, by which every node finds the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Public id (for listing and ending sessions).
    pub id: SessionId,
    /// Keyed hash of the session secret (the cookie's value).
    pub token_hash: SecretHash,
    /// The person.
    pub user_id: UserId,
    /// The tenant the session acts in; `None` for an account without a
    /// membership.
    pub tenant_id: Option<TenantId>,
    /// The role in that tenant when the session was issued: a session whose
    /// member's role changed since is rotated at its next use.
    pub role: Option<Role>,
    /// When this session (this id and secret) was issued.
    pub created_at: Timestamp,
    /// The sign-in this session continues (rotation keeps it): the
    /// absolute lifetime counts from here.
    pub signed_in_at: Timestamp,
    /// Last use (updated at most once a minute).
    pub last_seen_at: Timestamp,
    /// End of validity without further use (idle timeout).
    pub idle_expires_at: Timestamp,
    /// End of validity (absolute lifetime).
    pub expires_at: Timestamp,
    /// Peer address at sign-in.
    pub ip: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
}

impl Session {
    /// Whether the session is valid at `now` (neither idle nor past its
    /// lifetime).
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at && now < self.idle_expires_at
    }

    /// The session as listed to its owner; `current` marks the one asking.
    pub fn info(&self, current: bool) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            created_at: self.created_at,
            signed_in_at: self.signed_in_at,
            last_seen_at: self.last_seen_at,
            idle_expires_at: self.idle_expires_at,
            expires_at: self.expires_at,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            current,
        }
    }
}

/// A session, as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// Id.
    pub id: SessionId,
    /// The tenant it acts in.
    pub tenant_id: Option<TenantId>,
    /// When this session was issued (sign-in or rotation).
    pub created_at: Timestamp,
    /// The sign-in it continues.
    pub signed_in_at: Timestamp,
    /// Last use (to the minute).
    pub last_seen_at: Timestamp,
    /// End of validity without further use.
    pub idle_expires_at: Timestamp,
    /// End of validity.
    pub expires_at: Timestamp,
    /// Peer address at sign-in.
    pub ip: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request.
    pub current: bool,
}

/// An invitation to join a tenant with a role (stored form). The token is
/// never stored: only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Id.
    pub id: InvitationId,
    /// The tenant to join.
    pub tenant_id: TenantId,
    /// Who is invited (normalized email).
    pub email: String,
    /// The role given on acceptance.
    pub role: Role,
    /// Keyed hash of the single-use token.
    pub token_hash: SecretHash,
    /// Who invited (audit actor: `user:<id>`, `admin_key:<id>`).
    pub invited_by: String,
    /// Whether an operator invited (may create an account even when
    /// sign-up is closed).
    pub by_operator: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// End of validity.
    pub expires_at: Timestamp,
    /// Acceptance time (at most once).
    pub accepted_at: Option<Timestamp>,
    /// The account that accepted.
    pub accepted_by: Option<UserId>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    /// Waiting to be accepted.
    Pending,
    /// Accepted (it cannot be used again).
    Accepted,
    /// Revoked by the tenant.
    Revoked,
    /// Past its validity.
    Expired,
}

impl Invitation {
    /// Its status at `now`.
    pub fn status(&self, now: Timestamp) -> InvitationStatus {
        if self.accepted_at.is_some() {
            InvitationStatus::Accepted
        } else if self.revoked_at.is_some() {
            InvitationStatus::Revoked
        } else if now >= self.expires_at {
            InvitationStatus::Expired
        } else {
            InvitationStatus::Pending
        }
    }

    /// The invitation as listed to its tenant (without the token hash).
    pub fn info(&self, now: Timestamp) -> InvitationInfo {
        InvitationInfo {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            email: self.email.clone(),
            role: self.role,
            status: self.status(now),
            invited_by: self.invited_by.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            accepted_by: self.accepted_by.clone(),
            revoked_at: self.revoked_at,
        }
    }
}

/// An invitation, as listed to its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationInfo {
    /// Id.
    pub id: InvitationId,
    /// The tenant to join.
    pub tenant_id: TenantId,
    /// Who is invited.
    pub email: String,
    /// The role given on acceptance.
    pub role: Role,
    /// Status now.
    pub status: InvitationStatus,
    /// Who invited.
    pub invited_by: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// End of validity.
    pub expires_at: Timestamp,
    /// Acceptance time.
    pub accepted_at: Option<Timestamp>,
    /// The account that accepted.
    pub accepted_by: Option<UserId>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
}

/// Who may create an account by themselves (`SENTRYAGENT_SIGNUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SignupMode {
    /// Anyone: `POST /v1/signup` creates an account and a free-tier tenant
    /// it owns; invitations create accounts too.
    Open,
    /// No self-service sign-up; accepting an invitation creates the
    /// account.
    Invite,
    /// No self-service sign-up, and invitations of tenant members only add
    /// existing accounts; an operator's invitation still creates one.
    Closed,
}

impl SignupMode {
    /// The default for an issuer: open on a loopback URL (`localhost`,
    /// `127.0.0.0/8`, `[::1]`), so a quick start works at once; closed
    /// otherwise.
    pub fn default_for(issuer: &str) -> SignupMode {
        if is_loopback_url(issuer) {
            SignupMode::Open
        } else {
            SignupMode::Closed
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignupMode::Open => "open",
            SignupMode::Invite => "invite",
            SignupMode::Closed => "closed",
        }
    }
}

impl std::str::FromStr for SignupMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(SignupMode::Open),
            "invite" => Ok(SignupMode::Invite),
            "closed" => Ok(SignupMode::Closed),
            _ => Err(Error::invalid("signup", "one of open, invite, closed")),
        }
    }
}

/// The host of an http(s) URL, lowercase, without port or brackets.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_loopback_url(url: &str) -> bool {
    match url_host(url) {
        Some(h) => {
            h == "localhost"
                || h.ends_with(".localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Settings of people, sessions, sign-up and invitations
/// ([`IdpConfig::people`](crate::IdpConfig::people)). Every value has a
/// documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeopleConfig {
    /// Who may sign up. Default [`SignupMode::default_for`] the issuer.
    pub signup: SignupMode,
    /// A session unused this long ends. Default 12 hours.
    pub session_idle_timeout: Duration,
    /// A session ends this long after its sign-in, used or not. Default 7
    /// days.
    pub session_lifetime: Duration,
    /// How long an invitation can be accepted. Default 7 days.
    pub invitation_ttl: Duration,
    /// How long a password reset link works. Default 24 hours.
    pub password_reset_ttl: Duration,
    /// Sign-in attempts (and invitation or reset acceptances) per client
    /// IP. Default 20 a minute, burst 20.
    pub sign_in_per_ip: crate::Quota,
    /// Failed sign-ins per account. Default 10 per 15 minutes, burst 10.
    pub sign_in_failures_per_account: crate::Quota,
    /// Sign-ups per client IP. Default 5 an hour, burst 5.
    pub signup_per_ip: crate::Quota,
    /// The page that accepts an invitation; the token follows in the URL
    /// fragment (`#token=...`, never sent to a server by a browser).
    /// Default `{issuer}/console/invitations/accept`.
    pub invitation_url: String,
    /// The page that completes a password reset; the token follows in the
    /// fragment. Default `{issuer}/console/password-reset`.
    pub password_reset_url: String,
}

impl PeopleConfig {
    /// Defaults for `issuer` (no trailing slash).
    pub fn new(issuer: &str) -> Self {
        PeopleConfig {
            signup: SignupMode::default_for(issuer),
            session_idle_timeout: Duration::from_secs(12 * 3600),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            password_reset_ttl: Duration::from_secs(24 * 3600),
            sign_in_per_ip: crate::Quota::per_minute(20),
            sign_in_failures_per_account: crate::Quota::new(10, Duration::from_secs(15 * 60)),
            signup_per_ip: crate::Quota::new(5, Duration::from_secs(3600)),
            invitation_url: format!("{issuer}/console/invitations/accept"),
            password_reset_url: format!("{issuer}/console/password-reset"),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.session_idle_timeout.is_zero() || self.session_lifetime.is_zero() {
            return Err(Error::invalid(
                "people.session_idle_timeout",
                "session timeouts must be more than zero",
            ));
        }
        if self.invitation_ttl.is_zero() || self.password_reset_ttl.is_zero() {
            return Err(Error::invalid(
                "people.invitation_ttl",
                "link lifetimes must be more than zero",
            ));
        }
        for q in [
            &self.sign_in_per_ip,
            &self.sign_in_failures_per_account,
            &self.signup_per_ip,
        ] {
            q.validate()?;
        }
        crate::tenant::validate_url("people.invitation_url", &self.invitation_url)?;
        crate::tenant::validate_url("people.password_reset_url", &self.password_reset_url)
    }
}

/// Normalizes an email address for storage and comparison: trimmed and
/// lowercased (Unicode lowercase). `Invalid` unless it looks like an
/// address: at most 254 characters, one `@` with 1 to 64 characters before
/// it and a domain with a dot after it, no whitespace or control
/// characters.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let bad = || Error::invalid("email", "not an email address");
    if e.chars().count() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    let ok = !local.is_empty()
        && local.chars().count() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if ok { Ok(e) } else { Err(bad()) }
}

/// Secrets that Debug must not show, in inputs.
fn redacted(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    fields: &[(&str, &dyn fmt::Debug)],
) -> fmt::Result {
    let mut d = f.debug_struct(name);
    for (k, v) in fields {
        d.field(k, v);
    }
    d.finish_non_exhaustive()
}

/// A self-service sign-up (`POST /v1/signup`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple", "tenant_name": "Acme"})))]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Email address.
    pub email: String,
    /// Password: 10 to 128 characters, not easy to guess.
    pub password: String,
    /// Name of the new tenant (1 to 100 characters).
    pub tenant_name: String,
    /// Display name (default: the part of the email before `@`).
    #[serde(default)]
    pub display_name: Option<String>,
}

impl fmt::Debug for SignUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(
            f,
            "SignUp",
            &[("email", &self.email), ("tenant_name", &self.tenant_name)],
        )
    }
}

/// A sign-in (`POST /v1/sessions`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"})))]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
    /// The current one-time code of the second factor, or a recovery code
    /// (required when the account has a second factor).
    #[serde(default)]
    pub totp: Option<String>,
    /// The tenant to act in (default: the account's first membership).
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(
            f,
            "SignIn",
            &[("email", &self.email), ("tenant_id", &self.tenant_id)],
        )
    }
}

/// An invitation to create (`POST /v1/tenants/{id}/invitations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"email": "grace@example.com", "role": "developer"})))]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// Who to invite.
    pub email: String,
    /// The role to give.
    pub role: Role,
}

/// The acceptance of an invitation (`POST /v1/invitations/accept`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"token": "sa_iv_...", "password": "correct horse battery staple"})))]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The invitation's token.
    pub token: String,
    /// The password of the new account; for an email that already has an
    /// account, that account's password.
    pub password: String,
    /// Display name of a new account (default: the part of the email
    /// before `@`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The one-time code of an existing account with a second factor.
    #[serde(default)]
    pub totp: Option<String>,
}

impl fmt::Debug for AcceptInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(
            f,
            "AcceptInvitation",
            &[("display_name", &self.display_name)],
        )
    }
}

/// The completion of a password reset (`POST /v1/password-resets/accept`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"token": "sa_pr_...", "password": "a new long passphrase"})))]
#[serde(deny_unknown_fields)]
pub struct CompletePasswordReset {
    /// The reset link's token.
    pub token: String,
    /// The new password.
    pub password: String,
}

impl fmt::Debug for CompletePasswordReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, "CompletePasswordReset", &[])
    }
}

/// A secret value shown once (a session secret, a link token). Debug shows
/// nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Secret(s)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A new session: what sign-up, sign-in, invitation acceptance, a password
/// change and a tenant switch return. The host sets `secret` as the session
/// cookie and answers `me` (which carries the CSRF token).
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session secret (the cookie's value), shown only here.
    pub secret: Secret,
    /// The session.
    pub session: Session,
    /// The person's view, with the session's CSRF token.
    pub me: Me,
}

/// What a request presents of a session.
#[derive(Clone, Copy)]
pub struct SessionCredentials<'a> {
    /// The session secret (the cookie's value).
    pub secret: &'a str,
    /// The CSRF token sent with the request (`X-CSRF-Token`, or a form's
    /// hidden field), if any.
    pub csrf_token: Option<&'a str>,
    /// The request method (`GET`, `POST`...): all but `GET`, `HEAD` and
    /// `OPTIONS` need the CSRF token.
    pub method: &'a str,
}

impl std::fmt::Debug for SessionCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// A signed-in person's view of themselves: what sign-in, sign-up and
/// `GET /v1/me` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// The account.
    pub user: Account,
    /// Its tenants and roles.
    pub memberships: Vec<TenantMembership>,
    /// The CSRF token of the session: send it as `X-CSRF-Token` with every
    /// state-changing request made with the session.
    pub csrf_token: String,
    /// The session.
    pub session: SessionInfo,
}

/// What the session of a request is: see
/// [`Idp::authenticate_session`](crate::Idp::authenticate_session).
#[derive(Debug, Clone)]
pub struct SessionAuth {
    /// The account.
    pub user: User,
    /// The session now (after a rotation, the new one).
    pub session: Session,
    /// The session secret now.
    pub secret: Secret,
    /// The CSRF token of the session now.
    pub csrf_token: String,
    /// True when the session was rotated by this request (the member's
    /// role changed since it was issued): the host sets the new secret as
    /// the cookie and hands out the new CSRF token.
    pub rotated: bool,
    /// The caller of management operations: the member's role's scopes in
    /// the session's tenant. `None` when the session has no tenant, or the
    /// member may not act (see `denied`).
    pub caller: Option<crate::Caller>,
    /// Why there is no caller.
    pub denied: Option<String>,
}

/// The secret of a second factor being set up: shown once, to put into an
/// authenticator app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrollment {
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: String,
    /// The same as an `otpauth://totp/...` URI (for a QR code): SHA-1, 6
    /// digits, 30-second steps.
    pub otpauth_uri: String,
}

/// A created invitation: its token and link are shown only here.
#[derive(Debug, Clone)]
pub struct CreatedInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// The single-use token.
    pub token: Secret,
    /// The link to pass on (the token in its fragment).
    pub url: String,
}

/// A password reset link: shown only here.
#[derive(Debug, Clone)]
pub struct PasswordResetLink {
    /// The account.
    pub user_id: UserId,
    /// The single-use token.
    pub token: Secret,
    /// The link to pass on (the token in its fragment).
    pub url: String,
    /// End of validity.
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_is_the_documented_one() {
        let names = |r: Role| -> Vec<&str> { r.scopes().iter().map(|s| s.as_str()).collect() };
        assert_eq!(names(Role::Owner), ["admin"]);
        assert_eq!(
            names(Role::Admin),
            [
                "agents_write",
                "audit_read",
                "billing_write",
                "members_write",
                "api_keys_write"
            ]
        );
        assert_eq!(
            names(Role::Developer),
            ["agents_write", "audit_read", "billing_read", "members_read"]
        );
        assert_eq!(
            names(Role::Viewer),
            ["agents_read", "audit_read", "billing_read", "members_read"]
        );
        // The module docs show the same table.
        let doc = include_str!("mod.rs");
        for r in Role::ALL {
            let row = format!(
                "//! | `{r}` | {} ",
                names(r)
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(doc.contains(&row), "documented: {row}");
        }
    }

    #[test]
    fn roles_map_to_scopes_and_nest() {
        use AdminScope as S;
        assert!(Role::Owner.within(&[S::Admin]));
        assert!(!Role::Owner.within(Role::Admin.scopes()));
        for r in Role::ALL {
            assert!(r.within(r.scopes()), "{r}");
            assert!(r.within(Role::Owner.scopes()), "{r}");
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(Role::Developer.within(Role::Admin.scopes()));
        assert!(Role::Viewer.within(Role::Developer.scopes()));
        assert!(!Role::Admin.within(Role::Developer.scopes()));
        assert!(!Role::Developer.within(Role::Viewer.scopes()));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Ada.Lovelace@Example.COM ").unwrap(),
            "ada.lovelace@example.com"
        );
        assert_eq!(
            normalize_email("ÉLODIE@exemple.fr").unwrap(),
            "élodie@exemple.fr"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "a da@example.com",
            "ada@@example.com",
            "ada@example..com",
            "ada@.example.com",
            "ada@example.com.",
            "ada\u{0}@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn signup_defaults_to_open_only_on_loopback() {
        for open in [
            "http://127.0.0.1:8080",
            "http://localhost:3000/idp",
            "https://localhost",
            "http://[::1]:8080",
            "http://127.1.2.3",
            "http://app.localhost",
        ] {
            assert_eq!(SignupMode::default_for(open), SignupMode::Open, "{open}");
        }
        for closed in [
            "https://idp.example",
            "http://10.0.0.1:8080",
            "https://localhost.example.com",
            "http://user@127.0.0.1.example.com",
        ] {
            assert_eq!(
                SignupMode::default_for(closed),
                SignupMode::Closed,
                "{closed}"
            );
        }
        assert_eq!("invite".parse::<SignupMode>().unwrap(), SignupMode::Invite);
        assert!("maybe".parse::<SignupMode>().is_err());
    }

    #[test]
    fn inputs_never_show_passwords() {
        let s = SignIn {
            email: "a@b.co".into(),
            password: "hunter2hunter2".into(),
            totp: Some("123456".into()),
            tenant_id: None,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && !d.contains("123456"), "{d}");
        let u = SignUp {
            password: "hunter2hunter2".into(),
            ..Default::default()
        };
        assert!(!format!("{u:?}").contains("hunter2"));
        let a = AcceptInvitation {
            token: "sa_iv_x".into(),
            password: "hunter2hunter2".into(),
            ..Default::default()
        };
        assert!(!format!("{a:?}").contains("hunter2") && !format!("{a:?}").contains("sa_iv_x"));
        let r = CompletePasswordReset {
            token: "sa_pr_x".into(),
            password: "hunter2hunter2".into(),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        assert_eq!(format!("{:?}", Secret::new("s".into())), "Secret(..)");
        assert_eq!(
            format!("{:?}", PasswordHash("$argon2id$x".into())),
            "PasswordHash(..)"
        );
    }
}

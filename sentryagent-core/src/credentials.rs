//! Client secrets and admin API keys, as stored: hashes and metadata only.

use serde::{Deserialize, Serialize};

use crate::secret::SecretHash;
use crate::{AdminKeyId, AgentId, SecretId, TenantId, Timestamp};

/// Prefix of generated client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "sa_cs_";
/// Prefix of generated admin API keys.
pub const ADMIN_KEY_PREFIX: &str = "sa_ak_";
/// Characters of an admin key kept visible (and stored) to find it again:
/// the prefix and the first 8 random characters.
pub const ADMIN_KEY_VISIBLE_LEN: usize = ADMIN_KEY_PREFIX.len() + 8;

/// A client secret of an agent (stored form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecret {
    /// Id.
    pub id: SecretId,
    /// The agent it authenticates.
    pub agent_id: AgentId,
    /// Keyed hash of the secret.
    pub hash: SecretHash,
    /// Creation time.
    pub created_at: Timestamp,
    /// End of validity (set when rotated out: the grace period).
    pub expires_at: Option<Timestamp>,
    /// Revocation time; a revoked secret never authenticates again.
    pub revoked_at: Option<Timestamp>,
}

impl ClientSecret {
    /// Whether it may authenticate at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// What an admin API key (or a management token) may do.
///
/// Written in snake case (`agents_write`); the dotted spelling
/// (`agents.write`) is read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminScope {
    /// Everything within the key's reach.
    Admin,
    /// Read agents.
    #[serde(alias = "agents.read")]
    AgentsRead,
    /// Create and change agents and their credentials.
    #[serde(alias = "agents.write")]
    AgentsWrite,
    /// Read the audit trail.
    #[serde(alias = "audit.read")]
    AuditRead,
    /// Read usage, analytics and the subscription.
    #[serde(alias = "billing.read")]
    BillingRead,
    /// Start checkouts and open the billing portal.
    #[serde(alias = "billing.write")]
    BillingWrite,
    /// Read the tenant's members and invitations.
    MembersRead,
    /// Invite members, change their roles, remove them and issue their
    /// password reset links (only for roles within the caller's own scopes).
    MembersWrite,
    /// Create, list and revoke the tenant's admin API keys (granting only
    /// scopes the caller holds).
    ApiKeysWrite,
}

impl AdminScope {
    /// Every scope.
    pub const ALL: [AdminScope; 9] = [
        AdminScope::Admin,
        AdminScope::AgentsRead,
        AdminScope::AgentsWrite,
        AdminScope::AuditRead,
        AdminScope::BillingRead,
        AdminScope::BillingWrite,
        AdminScope::MembersRead,
        AdminScope::MembersWrite,
        AdminScope::ApiKeysWrite,
    ];

    /// The snake-case name (`agents_write`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminScope::Admin => "admin",
            AdminScope::AgentsRead => "agents_read",
            AdminScope::AgentsWrite => "agents_write",
            AdminScope::AuditRead => "audit_read",
            AdminScope::BillingRead => "billing_read",
            AdminScope::BillingWrite => "billing_write",
            AdminScope::MembersRead => "members_read",
            AdminScope::MembersWrite => "members_write",
            AdminScope::ApiKeysWrite => "api_keys_write",
        }
    }

    /// The scope named `name`, snake case or dotted (`agents.write`).
    pub fn from_name(name: &str) -> Option<AdminScope> {
        AdminScope::ALL
            .into_iter()
            .find(|s| s.as_str() == name || s.as_str().replacen('_', ".", 1) == name)
    }
}

impl AdminScope {
    /// Whether a key holding `self` may act for `needed`.
    pub fn covers(self, needed: AdminScope) -> bool {
        self == AdminScope::Admin
            || self == needed
            || (self == AdminScope::AgentsWrite && needed == AdminScope::AgentsRead)
            || (self == AdminScope::BillingWrite && needed == AdminScope::BillingRead)
            || (self == AdminScope::MembersWrite && needed == AdminScope::MembersRead)
    }
}

/// An admin API key (stored form). `tenant_id: None` makes it an operator
/// key, which reaches every tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKey {
    /// Id.
    pub id: AdminKeyId,
    /// The visible start of the key (`sa_ak_` + 8 characters), unique.
    pub prefix: String,
    /// Tenant reached; `None` for an operator key.
    pub tenant_id: Option<TenantId>,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<AdminScope>,
    /// Keyed hash of the whole key.
    pub hash: SecretHash,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last successful use (written at most once a minute).
    pub last_used_at: Option<Timestamp>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
    /// End of validity, if the key was made to expire.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Why it was revoked, as its revoker said.
    #[serde(default)]
    pub revocation_reason: Option<String>,
    /// Requests it authenticated (counted by each node and written with
    /// `last_used_at`, so the last minute of a node that stopped abruptly
    /// may be missing).
    #[serde(default)]
    pub request_count: u64,
}

impl AdminKey {
    /// Whether this key is an operator key.
    pub fn is_operator(&self) -> bool {
        self.tenant_id.is_none()
    }

    /// Whether it may authenticate at `now`: not revoked, not expired.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether it holds a scope covering `needed`.
    pub fn allows(&self, needed: AdminScope) -> bool {
        self.scopes.iter().any(|s| s.covers(needed))
    }
}

//! [`MembershipStore`]: who belongs to which tenant, with which role.

use async_trait::async_trait;

use super::Backend;
use crate::people::{Membership, Role};
use crate::{Result, TenantId, UserId};

/// Memberships of people in tenants. A tenant that has an owner keeps at
/// least one: [`set_role`](Self::set_role) and
/// [`remove_membership`](Self::remove_membership) refuse, atomically, the
/// change that would leave it none.
#[async_trait]
pub trait MembershipStore: Backend {
    /// Inserts a membership; `AlreadyExists` if the person is already a
    /// member of the tenant.
    async fn add_membership(&self, membership: &Membership) -> Result<()>;
    /// A person's membership of a tenant.
    async fn get_membership(&self, tenant: &TenantId, user: &UserId) -> Result<Membership>;
    /// The members of a tenant, by user id.
    async fn list_members(&self, tenant: &TenantId) -> Result<Vec<Membership>>;
    /// A person's memberships, by tenant id.
    async fn list_memberships(&self, user: &UserId) -> Result<Vec<Membership>>;
    /// Changes a member's role and returns the membership; `NotFound` if
    /// not a member, `Conflict` if it would leave the tenant without an
    /// owner.
    async fn set_role(&self, tenant: &TenantId, user: &UserId, role: Role) -> Result<Membership>;
    /// Removes a member; `NotFound` if not a member, `Conflict` if it would
    /// leave the tenant without an owner.
    async fn remove_membership(&self, tenant: &TenantId, user: &UserId) -> Result<()>;
}

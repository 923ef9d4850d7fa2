//! [`InvitationStore`]: invitations to join a tenant.

use async_trait::async_trait;

use super::Backend;
use crate::people::Invitation;
use crate::secret::SecretHash;
use crate::{InvitationId, Result, TenantId, Timestamp, UserId};

/// Invitations, found by the keyed hash of their token. Each is accepted
/// at most once.
#[async_trait]
pub trait InvitationStore: Backend {
    /// Inserts an invitation; `AlreadyExists` if its id or token hash is
    /// taken.
    async fn create_invitation(&self, invitation: &Invitation) -> Result<()>;
    /// An invitation by the keyed hash of its token.
    async fn get_invitation_by_token(&self, token_hash: &SecretHash) -> Result<Invitation>;
    /// A tenant's invitations, by id (oldest first).
    async fn list_invitations(&self, tenant: &TenantId) -> Result<Vec<Invitation>>;
    /// Sets `revoked_at` of a tenant's invitation (idempotent; the first
    /// time stays) and returns it; `NotFound` if the tenant has no such
    /// invitation, `Conflict` if it was accepted.
    async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        id: &InvitationId,
        at: Timestamp,
    ) -> Result<Invitation>;
    /// Marks an invitation accepted by `user` at `at` and returns it, only
    /// if it is neither accepted nor revoked (`Conflict` otherwise,
    /// `NotFound` if absent). Atomic: of concurrent acceptances exactly one
    /// succeeds. Expiry is the caller's rule.
    async fn accept_invitation(
        &self,
        id: &InvitationId,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Invitation>;
}

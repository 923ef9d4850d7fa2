//! [`SessionStore`]: signed-in sessions.

use async_trait::async_trait;

use super::Backend;
use crate::people::Session;
use crate::secret::SecretHash;
use crate::{Result, SessionId, TenantId, Timestamp, UserId};

/// Sessions, found by the keyed hash of their secret, so that every node
/// sees a session at once and ending one takes effect everywhere. The store
/// keeps what it is given: whether a session is still valid is
/// [`Session::is_live`](crate::Session::is_live), decided by the caller's
/// clock.
#[async_trait]
pub trait SessionStore: Backend {
    /// Inserts a session; `AlreadyExists` if its id or secret hash is taken.
    async fn create_session(&self, session: &Session) -> Result<()>;
    /// A session by the keyed hash of its secret.
    async fn get_session(&self, token_hash: &SecretHash) -> Result<Session>;
    /// Sets `last_seen_at` and `idle_expires_at`; `NotFound` if the session
    /// is gone.
    async fn touch_session(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<()>;
    /// A person's sessions, by id (oldest first).
    async fn list_sessions(&self, user: &UserId) -> Result<Vec<Session>>;
    /// Ends a session; returns whether it existed.
    async fn delete_session(&self, id: &SessionId) -> Result<bool>;
    /// Ends a person's sessions (only those acting in `tenant` when given),
    /// except `keep`; returns how many ended.
    async fn delete_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
        keep: Option<&SessionId>,
    ) -> Result<u64>;
    /// Removes sessions no longer valid at `now` (`expires_at <= now` or
    /// `idle_expires_at <= now`); returns how many.
    async fn purge_sessions(&self, now: Timestamp) -> Result<u64>;
}

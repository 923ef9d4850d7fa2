//! [`UserStore`]: people's accounts.

use async_trait::async_trait;

use super::Backend;
use crate::people::User;
use crate::{Result, UserId};

/// Accounts, by id and by normalized email.
#[async_trait]
pub trait UserStore: Backend {
    /// Inserts an account; `AlreadyExists` if its id or its email is taken
    /// (atomically: of concurrent creates with one email, exactly one
    /// succeeds). Emails are stored as given: the caller normalizes them.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// An account by id.
    async fn get_user(&self, id: &UserId) -> Result<User>;
    /// An account by its (normalized) email.
    async fn get_user_by_email(&self, email: &str) -> Result<User>;
    /// Replaces an account if `user.revision` is the stored revision
    /// (`Conflict` otherwise); returns the stored account (revision + 1).
    /// The email cannot change (`Invalid`).
    async fn update_user(&self, user: &User) -> Result<User>;
}

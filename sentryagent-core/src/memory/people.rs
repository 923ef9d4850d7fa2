//! The people parts of [`MemoryStore`]: accounts, memberships, sessions and
//! invitations, under a lock of their own.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::MemoryStore;
use crate::people::{Invitation, Membership, Role, Session, User};
use crate::secret::SecretHash;
use crate::store::{InvitationStore, MembershipStore, SessionStore, UserStore};
use crate::{Error, InvitationId, Result, SessionId, TenantId, Timestamp, UserId};

#[derive(Debug, Default)]
pub(super) struct People {
    users: BTreeMap<UserId, User>,
    emails: HashMap<String, UserId>,
    /// By (tenant, user).
    members: BTreeMap<(TenantId, UserId), Membership>,
    sessions: BTreeMap<SessionId, Session>,
    session_hashes: HashMap<[u8; 32], SessionId>,
    invitations: BTreeMap<InvitationId, Invitation>,
    invitation_hashes: HashMap<[u8; 32], InvitationId>,
}

impl MemoryStore {
    fn people(&self) -> std::sync::RwLockReadGuard<'_, People> {
        self.people.read().unwrap_or_else(|p| p.into_inner())
    }

    fn people_mut(&self) -> std::sync::RwLockWriteGuard<'_, People> {
        self.people.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl People {
    /// Whether `tenant` would keep an owner if `user`'s membership became
    /// `role` (`None`: removed).
    fn keeps_owner(&self, tenant: &TenantId, user: &UserId, role: Option<Role>) -> bool {
        let others = self
            .members
            .values()
            .any(|m| &m.tenant_id == tenant && &m.user_id != user && m.role == Role::Owner);
        others || role == Some(Role::Owner)
    }
}

fn no_owner_left() -> Error {
    Error::conflict("a tenant keeps at least one owner")
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let mut p = self.people_mut();
        if p.users.contains_key(&user.id) || p.emails.contains_key(&user.email) {
            return Err(Error::already_exists("account"));
        }
        p.emails.insert(user.email.clone(), user.id.clone());
        p.users.insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn get_user(&self, id: &UserId) -> Result<User> {
        self.people()
            .users
            .get(id)
            .cloned()
            .ok_or(Error::not_found("account"))
    }

    async fn get_user_by_email(&self, email: &str) -> Result<User> {
        let p = self.people();
        p.emails
            .get(email)
            .and_then(|id| p.users.get(id))
            .cloned()
            .ok_or(Error::not_found("account"))
    }

    async fn update_user(&self, user: &User) -> Result<User> {
        let mut p = self.people_mut();
        let stored = p
            .users
            .get_mut(&user.id)
            .ok_or(Error::not_found("account"))?;
        if stored.revision != user.revision {
            return Err(Error::conflict("account was changed concurrently"));
        }
        if stored.email != user.email {
            return Err(Error::invalid("email", "cannot change"));
        }
        let mut next = user.clone();
        next.revision += 1;
        *stored = next.clone();
        Ok(next)
    }
}

#[async_trait]
impl MembershipStore for MemoryStore {
    async fn add_membership(&self, m: &Membership) -> Result<()> {
        let mut p = self.people_mut();
        let k = (m.tenant_id.clone(), m.user_id.clone());
        if p.members.contains_key(&k) {
            return Err(Error::already_exists("membership"));
        }
        p.members.insert(k, m.clone());
        Ok(())
    }

    async fn get_membership(&self, tenant: &TenantId, user: &UserId) -> Result<Membership> {
        self.people()
            .members
            .get(&(tenant.clone(), user.clone()))
            .cloned()
            .ok_or(Error::not_found("member"))
    }

    async fn list_members(&self, tenant: &TenantId) -> Result<Vec<Membership>> {
        Ok(self
            .people()
            .members
            .values()
            .filter(|m| &m.tenant_id == tenant)
            .cloned()
            .collect())
    }

    async fn list_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        Ok(self
            .people()
            .members
            .values()
            .filter(|m| &m.user_id == user)
            .cloned()
            .collect())
    }

    async fn set_role(&self, tenant: &TenantId, user: &UserId, role: Role) -> Result<Membership> {
        let mut p = self.people_mut();
        let k = (tenant.clone(), user.clone());
        let current = p.members.get(&k).ok_or(Error::not_found("member"))?;
        if current.role == Role::Owner && !p.keeps_owner(tenant, user, Some(role)) {
            return Err(no_owner_left());
        }
        let m = p.members.get_mut(&k).ok_or(Error::not_found("member"))?;
        m.role = role;
        Ok(m.clone())
    }

    async fn remove_membership(&self, tenant: &TenantId, user: &UserId) -> Result<()> {
        let mut p = self.people_mut();
        let k = (tenant.clone(), user.clone());
        let current = p.members.get(&k).ok_or(Error::not_found("member"))?;
        if current.role == Role::Owner && !p.keeps_owner(tenant, user, None) {
            return Err(no_owner_left());
        }
        p.members.remove(&k);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, s: &Session) -> Result<()> {
        let mut p = self.people_mut();
        if p.sessions.contains_key(&s.id) || p.session_hashes.contains_key(&s.token_hash.0) {
            return Err(Error::already_exists("session"));
        }
        p.session_hashes.insert(s.token_hash.0, s.id.clone());
        p.sessions.insert(s.id.clone(), s.clone());
        Ok(())
    }

    async fn get_session(&self, token_hash: &SecretHash) -> Result<Session> {
        let p = self.people();
        p.session_hashes
            .get(&token_hash.0)
            .and_then(|id| p.sessions.get(id))
            .cloned()
            .ok_or(Error::not_found("session"))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<()> {
        let mut p = self.people_mut();
        let s = p.sessions.get_mut(id).ok_or(Error::not_found("session"))?;
        s.last_seen_at = last_seen_at;
        s.idle_expires_at = idle_expires_at;
        Ok(())
    }

    async fn list_sessions(&self, user: &UserId) -> Result<Vec<Session>> {
        Ok(self
            .people()
            .sessions
            .values()
            .filter(|s| &s.user_id == user)
            .cloned()
            .collect())
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        let mut p = self.people_mut();
        match p.sessions.remove(id) {
            Some(s) => {
                p.session_hashes.remove(&s.token_hash.0);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
        keep: Option<&SessionId>,
    ) -> Result<u64> {
        let mut p = self.people_mut();
        let doomed: Vec<Session> = p
            .sessions
            .values()
            .filter(|s| {
                &s.user_id == user
                    && tenant.is_none_or(|t| s.tenant_id.as_ref() == Some(t))
                    && keep != Some(&s.id)
            })
            .cloned()
            .collect();
        for s in &doomed {
            p.sessions.remove(&s.id);
            p.session_hashes.remove(&s.token_hash.0);
        }
        Ok(doomed.len() as u64)
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64> {
        let mut p = self.people_mut();
        let doomed: Vec<Session> = p
            .sessions
            .values()
            .filter(|s| !s.is_live(now))
            .cloned()
            .collect();
        for s in &doomed {
            p.sessions.remove(&s.id);
            p.session_hashes.remove(&s.token_hash.0);
        }
        Ok(doomed.len() as u64)
    }
}

#[async_trait]
impl InvitationStore for MemoryStore {
    async fn create_invitation(&self, inv: &Invitation) -> Result<()> {
        let mut p = self.people_mut();
        if p.invitations.contains_key(&inv.id)
            || p.invitation_hashes.contains_key(&inv.token_hash.0)
        {
            return Err(Error::already_exists("invitation"));
        }
        p.invitation_hashes.insert(inv.token_hash.0, inv.id.clone());
        p.invitations.insert(inv.id.clone(), inv.clone());
        Ok(())
    }

    async fn get_invitation_by_token(&self, token_hash: &SecretHash) -> Result<Invitation> {
        let p = self.people();
        p.invitation_hashes
            .get(&token_hash.0)
            .and_then(|id| p.invitations.get(id))
            .cloned()
            .ok_or(Error::not_found("invitation"))
    }

    async fn list_invitations(&self, tenant: &TenantId) -> Result<Vec<Invitation>> {
        Ok(self
            .people()
            .invitations
            .values()
            .filter(|i| &i.tenant_id == tenant)
            .cloned()
            .collect())
    }

    async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        id: &InvitationId,
        at: Timestamp,
    ) -> Result<Invitation> {
        let mut p = self.people_mut();
        let inv = p
            .invitations
            .get_mut(id)
            .filter(|i| &i.tenant_id == tenant)
            .ok_or(Error::not_found("invitation"))?;
        if inv.accepted_at.is_some() {
            return Err(Error::conflict("the invitation was accepted"));
        }
        inv.revoked_at.get_or_insert(at);
        Ok(inv.clone())
    }

    async fn accept_invitation(
        &self,
        id: &InvitationId,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Invitation> {
        let mut p = self.people_mut();
        let inv = p
            .invitations
            .get_mut(id)
            .ok_or(Error::not_found("invitation"))?;
        if inv.accepted_at.is_some() || inv.revoked_at.is_some() {
            return Err(Error::conflict(
                "the invitation was already used or revoked",
            ));
        }
        inv.accepted_at = Some(at);
        inv.accepted_by = Some(user.clone());
        Ok(inv.clone())
    }
}

//! The people parts of [`SledStore`]: accounts, memberships, sessions and
//! invitations (trees and rules in the [module docs](super)).

use std::sync::Arc;

use ::sled::transaction::Transactional;
use async_trait::async_trait;

use sentryagent_core::{
    Error, Invitation, InvitationId, InvitationStore, Membership, MembershipStore, Result, Role,
    SecretHash, Session, SessionId, SessionStore, TenantId, Timestamp, User, UserId, UserStore,
};

use super::Open;
use super::codec::{
    OrAbort, TxResult, abort, after_sep, counter, decode, encode, i64_key, key, prefix, tx_error,
};
use super::store::{EMPTY, SledStore, dangling, iter_error, read, record};

/// Sessions removed per transaction by `purge_sessions`.
const PURGE_CHUNK: usize = 256;

/// The trees of people.
pub(super) struct PeopleTrees {
    users: ::sled::Tree,
    users_by_email: ::sled::Tree,
    memberships: ::sled::Tree,
    memberships_by_user: ::sled::Tree,
    owner_counts: ::sled::Tree,
    sessions: ::sled::Tree,
    sessions_by_hash: ::sled::Tree,
    sessions_by_user: ::sled::Tree,
    sessions_by_expiry: ::sled::Tree,
    invitations: ::sled::Tree,
    invitations_by_hash: ::sled::Tree,
    invitations_by_tenant: ::sled::Tree,
}

impl PeopleTrees {
    pub(super) fn open(db: &::sled::Db) -> std::result::Result<Self, ::sled::Error> {
        Ok(PeopleTrees {
            users: db.open_tree("users")?,
            users_by_email: db.open_tree("users_by_email")?,
            memberships: db.open_tree("memberships")?,
            memberships_by_user: db.open_tree("memberships_by_user")?,
            owner_counts: db.open_tree("owner_counts")?,
            sessions: db.open_tree("sessions")?,
            sessions_by_hash: db.open_tree("sessions_by_hash")?,
            sessions_by_user: db.open_tree("sessions_by_user")?,
            sessions_by_expiry: db.open_tree("sessions_by_expiry")?,
            invitations: db.open_tree("invitations")?,
            invitations_by_hash: db.open_tree("invitations_by_hash")?,
            invitations_by_tenant: db.open_tree("invitations_by_tenant")?,
        })
    }
}

/// The key of a session in the expiry index: its first end, then its id.
fn expiry_key(s: &Session) -> Vec<u8> {
    let end = s.idle_expires_at.min(s.expires_at);
    let mut k = i64_key(end.unix_micros()).to_vec();
    k.extend_from_slice(s.id.as_str().as_bytes());
    k
}

fn no_owner_left<T>() -> TxResult<T> {
    abort(Error::conflict("a tenant keeps at least one owner"))
}

/// The people trees of one open handle (holding the handle).
struct People(Arc<Open>);

impl std::ops::Deref for People {
    type Target = PeopleTrees;
    fn deref(&self) -> &PeopleTrees {
        &self.0.t.people
    }
}

impl SledStore {
    /// The people trees of the open handle.
    fn people(&self) -> Result<People> {
        self.shared.open().map(People)
    }

    /// Changes a membership (`None`: removes it), keeping the tenant's
    /// owner count and refusing to take it to zero.
    async fn change_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Option<Role>,
    ) -> Result<Option<Membership>> {
        let p = self.people()?;
        let mk = key(&[tenant.as_str().as_bytes(), user.as_str().as_bytes()]);
        let uk = key(&[user.as_str().as_bytes(), tenant.as_str().as_bytes()]);
        let tk = tenant.as_str().as_bytes();
        let out = (&p.memberships, &p.memberships_by_user, &p.owner_counts)
            .transaction(
                |(members, by_user, owners)| -> TxResult<Option<Membership>> {
                    let Some(raw) = members.get(mk.as_slice())? else {
                        return abort(Error::not_found("member"));
                    };
                    let mut m: Membership = decode("membership", &raw).or_abort()?;
                    let count = counter("owner", owners.get(tk)?.as_deref()).or_abort()?;
                    let was_owner = m.role == Role::Owner;
                    let is_owner = role == Some(Role::Owner);
                    if was_owner && !is_owner {
                        if count <= 1 {
                            return no_owner_left();
                        }
                        owners.insert(tk, &(count - 1).to_be_bytes())?;
                    } else if !was_owner && is_owner {
                        owners.insert(tk, &(count + 1).to_be_bytes())?;
                    }
                    match role {
                        Some(r) => {
                            m.role = r;
                            members.insert(mk.as_slice(), encode("membership", &m).or_abort()?)?;
                            Ok(Some(m))
                        }
                        None => {
                            members.remove(mk.as_slice())?;
                            by_user.remove(uk.as_slice())?;
                            Ok(None)
                        }
                    }
                },
            )
            .map_err(|e| tx_error("membership change", e))?;
        self.durable().await?;
        Ok(out)
    }

    /// Removes sessions (each in its own transaction, skipping those gone
    /// meanwhile); returns how many were removed.
    fn remove_sessions(&self, ids: &[Vec<u8>]) -> Result<u64> {
        let p = self.people()?;
        let mut n = 0;
        for id in ids {
            let removed = (
                &p.sessions,
                &p.sessions_by_hash,
                &p.sessions_by_user,
                &p.sessions_by_expiry,
            )
                .transaction(|(sessions, hashes, by_user, by_expiry)| -> TxResult<bool> {
                    let Some(raw) = sessions.remove(id.as_slice())? else {
                        return Ok(false);
                    };
                    let s: Session = decode("session", &raw).or_abort()?;
                    hashes.remove(&s.token_hash.0[..])?;
                    by_user.remove(key(&[s.user_id.as_str().as_bytes(), id]))?;
                    by_expiry.remove(expiry_key(&s))?;
                    Ok(true)
                })
                .map_err(|e| tx_error("session removal", e))?;
            n += u64::from(removed);
        }
        Ok(n)
    }

    fn user_sessions(&self, user: &UserId) -> Result<Vec<Session>> {
        let p = self.people()?;
        let mut out = Vec::new();
        for k in p
            .sessions_by_user
            .scan_prefix(prefix(user.as_str().as_bytes()))
            .keys()
        {
            let k = k.map_err(iter_error("sessions of a person"))?;
            // A session removed between the index read and this one is gone.
            if let Some(s) = record::<Session>(&p.sessions, after_sep(&k), "session")? {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl UserStore for SledStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let p = self.people()?;
        let id = user.id.as_str().as_bytes();
        let email = user.email.as_bytes();
        let value = encode("account", user)?;
        (&p.users, &p.users_by_email)
            .transaction(|(users, emails)| -> TxResult<()> {
                if users.get(id)?.is_some() || emails.get(email)?.is_some() {
                    return abort(Error::already_exists("account"));
                }
                users.insert(id, value.clone())?;
                emails.insert(email, id)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_user", e))?;
        self.durable().await
    }

    async fn get_user(&self, id: &UserId) -> Result<User> {
        record(&self.people()?.users, id.as_str().as_bytes(), "account")?
            .ok_or(Error::not_found("account"))
    }

    async fn get_user_by_email(&self, email: &str) -> Result<User> {
        let p = self.people()?;
        let id = read(&p.users_by_email, email.as_bytes(), "account email")?
            .ok_or(Error::not_found("account"))?;
        record(&p.users, &id, "account")?.ok_or_else(|| dangling("account"))
    }

    async fn update_user(&self, user: &User) -> Result<User> {
        let id = user.id.as_str().as_bytes();
        let mut next = user.clone();
        next.revision += 1;
        let value = encode("account", &next)?;
        self.people()?
            .users
            .transaction(|users| -> TxResult<()> {
                let Some(raw) = users.get(id)? else {
                    return abort(Error::not_found("account"));
                };
                let stored: User = decode("account", &raw).or_abort()?;
                if stored.revision != user.revision {
                    return abort(Error::conflict("account was changed concurrently"));
                }
                if stored.email != user.email {
                    return abort(Error::invalid("email", "cannot change"));
                }
                users.insert(id, value.clone())?;
                Ok(())
            })
            .map_err(|e| tx_error("update_user", e))?;
        self.durable().await?;
        Ok(next)
    }
}

#[async_trait]
impl MembershipStore for SledStore {
    async fn add_membership(&self, m: &Membership) -> Result<()> {
        let p = self.people()?;
        let (t, u) = (
            m.tenant_id.as_str().as_bytes(),
            m.user_id.as_str().as_bytes(),
        );
        let mk = key(&[t, u]);
        let uk = key(&[u, t]);
        let value = encode("membership", m)?;
        let owner = m.role == Role::Owner;
        (&p.memberships, &p.memberships_by_user, &p.owner_counts)
            .transaction(|(members, by_user, owners)| -> TxResult<()> {
                if members.get(mk.as_slice())?.is_some() {
                    return abort(Error::already_exists("membership"));
                }
                members.insert(mk.as_slice(), value.clone())?;
                by_user.insert(uk.as_slice(), EMPTY)?;
                if owner {
                    let n = counter("owner", owners.get(t)?.as_deref()).or_abort()?;
                    owners.insert(t, &(n + 1).to_be_bytes())?;
                }
                Ok(())
            })
            .map_err(|e| tx_error("add_membership", e))?;
        self.durable().await
    }

    async fn get_membership(&self, tenant: &TenantId, user: &UserId) -> Result<Membership> {
        let k = key(&[tenant.as_str().as_bytes(), user.as_str().as_bytes()]);
        record(&self.people()?.memberships, &k, "membership")?.ok_or(Error::not_found("member"))
    }

    async fn list_members(&self, tenant: &TenantId) -> Result<Vec<Membership>> {
        self.people()?
            .memberships
            .scan_prefix(prefix(tenant.as_str().as_bytes()))
            .values()
            .map(|v| decode("membership", &v.map_err(iter_error("memberships"))?))
            .collect()
    }

    async fn list_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        let p = self.people()?;
        let mut out = Vec::new();
        for k in p
            .memberships_by_user
            .scan_prefix(prefix(user.as_str().as_bytes()))
            .keys()
        {
            let k = k.map_err(iter_error("memberships of a person"))?;
            let mk = key(&[after_sep(&k), user.as_str().as_bytes()]);
            if let Some(m) = record::<Membership>(&p.memberships, &mk, "membership")? {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn set_role(&self, tenant: &TenantId, user: &UserId, role: Role) -> Result<Membership> {
        self.change_membership(tenant, user, Some(role))
            .await?
            .ok_or_else(|| dangling("membership"))
    }

    async fn remove_membership(&self, tenant: &TenantId, user: &UserId) -> Result<()> {
        self.change_membership(tenant, user, None).await.map(drop)
    }
}

#[async_trait]
impl SessionStore for SledStore {
    async fn create_session(&self, s: &Session) -> Result<()> {
        let p = self.people()?;
        let id = s.id.as_str().as_bytes();
        let uk = key(&[s.user_id.as_str().as_bytes(), id]);
        let ek = expiry_key(s);
        let value = encode("session", s)?;
        (
            &p.sessions,
            &p.sessions_by_hash,
            &p.sessions_by_user,
            &p.sessions_by_expiry,
        )
            .transaction(|(sessions, hashes, by_user, by_expiry)| -> TxResult<()> {
                if sessions.get(id)?.is_some() || hashes.get(&s.token_hash.0[..])?.is_some() {
                    return abort(Error::already_exists("session"));
                }
                sessions.insert(id, value.clone())?;
                hashes.insert(&s.token_hash.0[..], id)?;
                by_user.insert(uk.as_slice(), EMPTY)?;
                by_expiry.insert(ek.as_slice(), EMPTY)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_session", e))?;
        self.durable().await
    }

    async fn get_session(&self, token_hash: &SecretHash) -> Result<Session> {
        let p = self.people()?;
        let id = read(&p.sessions_by_hash, &token_hash.0, "session hash")?
            .ok_or(Error::not_found("session"))?;
        record(&p.sessions, &id, "session")?.ok_or(Error::not_found("session"))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<()> {
        let p = self.people()?;
        let id = id.as_str().as_bytes();
        (&p.sessions, &p.sessions_by_expiry)
            .transaction(|(sessions, by_expiry)| -> TxResult<()> {
                let Some(raw) = sessions.get(id)? else {
                    return abort(Error::not_found("session"));
                };
                let mut s: Session = decode("session", &raw).or_abort()?;
                by_expiry.remove(expiry_key(&s))?;
                s.last_seen_at = last_seen_at;
                s.idle_expires_at = idle_expires_at;
                by_expiry.insert(expiry_key(&s), EMPTY)?;
                sessions.insert(id, encode("session", &s).or_abort()?)?;
                Ok(())
            })
            .map_err(|e| tx_error("touch_session", e))?;
        self.durable().await
    }

    async fn list_sessions(&self, user: &UserId) -> Result<Vec<Session>> {
        self.user_sessions(user)
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        let n = self.remove_sessions(&[id.as_str().as_bytes().to_vec()])?;
        if n > 0 {
            self.durable().await?;
        }
        Ok(n > 0)
    }

    async fn delete_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
        keep: Option<&SessionId>,
    ) -> Result<u64> {
        let ids: Vec<Vec<u8>> = self
            .user_sessions(user)?
            .into_iter()
            .filter(|s| {
                tenant.is_none_or(|t| s.tenant_id.as_ref() == Some(t)) && keep != Some(&s.id)
            })
            .map(|s| s.id.as_str().as_bytes().to_vec())
            .collect();
        let n = self.remove_sessions(&ids)?;
        if n > 0 {
            self.durable().await?;
        }
        Ok(n)
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64> {
        let p = self.people()?;
        let limit = i64_key(now.unix_micros());
        let mut purged = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(PURGE_CHUNK);
            for k in p.sessions_by_expiry.iter().keys() {
                let k = k.map_err(iter_error("session expiry index"))?;
                if k.len() < 8 || k[..8] > limit[..] || chunk.len() == PURGE_CHUNK {
                    break;
                }
                chunk.push(k);
            }
            if chunk.is_empty() {
                break;
            }
            for k in &chunk {
                let id = &k[8..];
                // Every index entry read is removed (or moved past `now`),
                // so the scan always progresses.
                let removed = (
                    &p.sessions,
                    &p.sessions_by_hash,
                    &p.sessions_by_user,
                    &p.sessions_by_expiry,
                )
                    .transaction(|(sessions, hashes, by_user, by_expiry)| -> TxResult<bool> {
                        by_expiry.remove(k)?;
                        let Some(raw) = sessions.get(id)? else {
                            return Ok(false);
                        };
                        let s: Session = decode("session", &raw).or_abort()?;
                        if s.is_live(now) {
                            by_expiry.insert(expiry_key(&s), EMPTY)?;
                            return Ok(false);
                        }
                        sessions.remove(id)?;
                        hashes.remove(&s.token_hash.0[..])?;
                        by_user.remove(key(&[s.user_id.as_str().as_bytes(), id]))?;
                        Ok(true)
                    })
                    .map_err(|e| tx_error("purge_sessions", e))?;
                purged += u64::from(removed);
            }
            if chunk.len() < PURGE_CHUNK {
                break;
            }
        }
        if purged > 0 {
            self.durable().await?;
        }
        Ok(purged)
    }
}

#[async_trait]
impl InvitationStore for SledStore {
    async fn create_invitation(&self, inv: &Invitation) -> Result<()> {
        let p = self.people()?;
        let id = inv.id.as_str().as_bytes();
        let tk = key(&[inv.tenant_id.as_str().as_bytes(), id]);
        let value = encode("invitation", inv)?;
        (
            &p.invitations,
            &p.invitations_by_hash,
            &p.invitations_by_tenant,
        )
            .transaction(|(invs, hashes, by_tenant)| -> TxResult<()> {
                if invs.get(id)?.is_some() || hashes.get(&inv.token_hash.0[..])?.is_some() {
                    return abort(Error::already_exists("invitation"));
                }
                invs.insert(id, value.clone())?;
                hashes.insert(&inv.token_hash.0[..], id)?;
                by_tenant.insert(tk.as_slice(), EMPTY)?;
                Ok(())
            })
            .map_err(|e| tx_error("create_invitation", e))?;
        self.durable().await
    }

    async fn get_invitation_by_token(&self, token_hash: &SecretHash) -> Result<Invitation> {
        let p = self.people()?;
        let id = read(&p.invitations_by_hash, &token_hash.0, "invitation hash")?
            .ok_or(Error::not_found("invitation"))?;
        record(&p.invitations, &id, "invitation")?.ok_or_else(|| dangling("invitation"))
    }

    async fn list_invitations(&self, tenant: &TenantId) -> Result<Vec<Invitation>> {
        let p = self.people()?;
        let mut out = Vec::new();
        for k in p
            .invitations_by_tenant
            .scan_prefix(prefix(tenant.as_str().as_bytes()))
            .keys()
        {
            let k = k.map_err(iter_error("invitations"))?;
            let inv: Invitation = record(&p.invitations, after_sep(&k), "invitation")?
                .ok_or_else(|| dangling("invitation"))?;
            out.push(inv);
        }
        Ok(out)
    }

    async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        id: &InvitationId,
        at: Timestamp,
    ) -> Result<Invitation> {
        let k = id.as_str().as_bytes();
        let inv = self
            .people()?
            .invitations
            .transaction(|invs| -> TxResult<Invitation> {
                let Some(raw) = invs.get(k)? else {
                    return abort(Error::not_found("invitation"));
                };
                let mut inv: Invitation = decode("invitation", &raw).or_abort()?;
                if &inv.tenant_id != tenant {
                    return abort(Error::not_found("invitation"));
                }
                if inv.accepted_at.is_some() {
                    return abort(Error::conflict("the invitation was accepted"));
                }
                if inv.revoked_at.is_none() {
                    inv.revoked_at = Some(at);
                    invs.insert(k, encode("invitation", &inv).or_abort()?)?;
                }
                Ok(inv)
            })
            .map_err(|e| tx_error("revoke_invitation", e))?;
        self.durable().await?;
        Ok(inv)
    }

    async fn accept_invitation(
        &self,
        id: &InvitationId,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Invitation> {
        let k = id.as_str().as_bytes();
        let inv = self
            .people()?
            .invitations
            .transaction(|invs| -> TxResult<Invitation> {
                let Some(raw) = invs.get(k)? else {
                    return abort(Error::not_found("invitation"));
                };
                let mut inv: Invitation = decode("invitation", &raw).or_abort()?;
                if inv.accepted_at.is_some() || inv.revoked_at.is_some() {
                    return abort(Error::conflict(
                        "the invitation was already used or revoked",
                    ));
                }
                inv.accepted_at = Some(at);
                inv.accepted_by = Some(user.clone());
                invs.insert(k, encode("invitation", &inv).or_abort()?)?;
                Ok(inv)
            })
            .map_err(|e| tx_error("accept_invitation", e))?;
        self.durable().await?;
        Ok(inv)
    }
}

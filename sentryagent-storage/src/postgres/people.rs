//! The people parts of [`PostgresStore`]: accounts, memberships, sessions
//! and invitations (tables in `migrations/0003_people.sql`).
//!
//! How each rule holds:
//! - **unique emails, session and invitation hashes**: unique constraints;
//! - **an owner always kept**: a membership's role change or removal runs in
//!   a transaction holding an advisory lock on the tenant, which counts the
//!   other owners first;
//! - **an invitation accepted once**: one `UPDATE ... WHERE` it is neither
//!   accepted nor revoked;
//! - **session purges**: by the indexed `ends_at` (the first of the idle end
//!   and the lifetime's end).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::types::Json;

use sentryagent_core::{
    Error, Invitation, InvitationId, InvitationStore, Membership, MembershipStore, Result, Role,
    SecretHash, Session, SessionId, SessionStore, TenantId, Timestamp, User, UserId, UserStore,
};

use super::db::{Step, lock_key, to_i64, unique};
use super::store::{PostgresStore, doc};

/// Advisory-lock namespace of a tenant's memberships (its owners).
const LOCK_MEMBERS: i32 = 0x5341_0003;

fn ends_at(s: &Session) -> i64 {
    s.idle_expires_at.min(s.expires_at).unix_micros()
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let revision = to_i64(user.revision, "revision")?;
        self.db
            .run(|| async {
                sqlx::query("INSERT INTO users (id, email, revision, doc) VALUES ($1, $2, $3, $4)")
                    .bind(user.id.as_str())
                    .bind(&user.email)
                    .bind(revision)
                    .bind(Json(user))
                    .execute(&self.db.pool)
                    .await
                    .map_err(unique("account"))?;
                Ok(())
            })
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<User> {
        self.get_doc(
            "SELECT doc FROM users WHERE id = $1",
            id.as_str(),
            "account",
        )
        .await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<User> {
        self.get_doc("SELECT doc FROM users WHERE email = $1", email, "account")
            .await
    }

    async fn update_user(&self, user: &User) -> Result<User> {
        let expected = to_i64(user.revision, "revision")?;
        let mut next = user.clone();
        next.revision = user
            .revision
            .checked_add(1)
            .ok_or_else(|| Error::invalid("revision", "too large"))?;
        let revision = to_i64(next.revision, "revision")?;
        let next = &next;
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "UPDATE users SET doc = $4, revision = $3 \
                     WHERE id = $1 AND revision = $2 AND email = $5",
                )
                .bind(user.id.as_str())
                .bind(expected)
                .bind(revision)
                .bind(Json(next))
                .bind(&user.email)
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(next.clone());
                }
                let row = sqlx::query("SELECT revision, email FROM users WHERE id = $1")
                    .bind(user.id.as_str())
                    .fetch_optional(&self.db.pool)
                    .await?;
                let Some(row) = row else {
                    return Err(Error::not_found("account").into());
                };
                let stored: i64 = row.try_get("revision")?;
                let email: String = row.try_get("email")?;
                if stored == expected && email != user.email {
                    return Err(Error::invalid("email", "cannot change").into());
                }
                Err(Error::conflict("account was changed concurrently").into())
            })
            .await
    }
}

impl PostgresStore {
    /// Changes a membership (`None`: removes it) under the tenant's lock,
    /// refusing to leave a tenant that has an owner without one.
    async fn change_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Option<Role>,
    ) -> Result<Option<Membership>> {
        let lock = lock_key(self.db.schema(), tenant.as_str());
        self.db
            .run(|| async {
                let mut tx = self.db.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind(LOCK_MEMBERS)
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(
                    "SELECT doc FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(Error::not_found("member").into());
                };
                let mut m: Membership = doc(&row, "doc")?;
                if m.role == Role::Owner && role != Some(Role::Owner) {
                    let owners: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
                    )
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if owners <= 1 {
                        return Err(Error::conflict("a tenant keeps at least one owner").into());
                    }
                }
                let out = match role {
                    Some(r) => {
                        m.role = r;
                        sqlx::query(
                            "UPDATE memberships SET role = $3, doc = $4 \
                             WHERE tenant_id = $1 AND user_id = $2",
                        )
                        .bind(tenant.as_str())
                        .bind(user.as_str())
                        .bind(r.as_str())
                        .bind(Json(&m))
                        .execute(&mut *tx)
                        .await?;
                        Some(m)
                    }
                    None => {
                        sqlx::query(
                            "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                        )
                        .bind(tenant.as_str())
                        .bind(user.as_str())
                        .execute(&mut *tx)
                        .await?;
                        None
                    }
                };
                tx.commit().await?;
                Ok(out)
            })
            .await
    }

    async fn memberships_where(&self, sql: &'static str, key: &str) -> Result<Vec<Membership>> {
        self.db
            .run(|| async {
                let rows = sqlx::query(sql).bind(key).fetch_all(&self.db.pool).await?;
                rows.iter().map(|r| doc(r, "doc")).collect::<Step<Vec<_>>>()
            })
            .await
    }
}

#[async_trait]
impl MembershipStore for PostgresStore {
    async fn add_membership(&self, m: &Membership) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, doc) VALUES ($1, $2, $3, $4)",
                )
                .bind(m.tenant_id.as_str())
                .bind(m.user_id.as_str())
                .bind(m.role.as_str())
                .bind(Json(m))
                .execute(&self.db.pool)
                .await
                .map_err(unique("membership"))?;
                Ok(())
            })
            .await
    }

    async fn get_membership(&self, tenant: &TenantId, user: &UserId) -> Result<Membership> {
        self.db
            .run(|| async {
                let row = sqlx::query(
                    "SELECT doc FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.db.pool)
                .await?;
                match row {
                    Some(r) => doc(&r, "doc"),
                    None => Err(Error::not_found("member").into()),
                }
            })
            .await
    }

    async fn list_members(&self, tenant: &TenantId) -> Result<Vec<Membership>> {
        self.memberships_where(
            "SELECT doc FROM memberships WHERE tenant_id = $1 ORDER BY user_id",
            tenant.as_str(),
        )
        .await
    }

    async fn list_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        self.memberships_where(
            "SELECT doc FROM memberships WHERE user_id = $1 ORDER BY tenant_id",
            user.as_str(),
        )
        .await
    }

    async fn set_role(&self, tenant: &TenantId, user: &UserId, role: Role) -> Result<Membership> {
        self.change_membership(tenant, user, Some(role))
            .await?
            .ok_or_else(|| Error::Internal {
                message: "postgres: a changed membership vanished".into(),
                source: None,
            })
    }

    async fn remove_membership(&self, tenant: &TenantId, user: &UserId) -> Result<()> {
        self.change_membership(tenant, user, None).await.map(drop)
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, s: &Session) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO sessions (id, token_hash, user_id, tenant_id, expires_at, ends_at, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(s.id.as_str())
                .bind(&s.token_hash.0[..])
                .bind(s.user_id.as_str())
                .bind(s.tenant_id.as_ref().map(TenantId::as_str))
                .bind(s.expires_at.unix_micros())
                .bind(ends_at(s))
                .bind(Json(s))
                .execute(&self.db.pool)
                .await
                .map_err(unique("session"))?;
                Ok(())
            })
            .await
    }

    async fn get_session(&self, token_hash: &SecretHash) -> Result<Session> {
        self.db
            .run(|| async {
                let row = sqlx::query("SELECT doc FROM sessions WHERE token_hash = $1")
                    .bind(&token_hash.0[..])
                    .fetch_optional(&self.db.pool)
                    .await?;
                match row {
                    Some(r) => doc(&r, "doc"),
                    None => Err(Error::not_found("session").into()),
                }
            })
            .await
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<()> {
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "UPDATE sessions SET \
                       doc = jsonb_set(jsonb_set(doc, '{last_seen_at}', $2), '{idle_expires_at}', $3), \
                       ends_at = LEAST($4, expires_at) \
                     WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(Json(last_seen_at))
                .bind(Json(idle_expires_at))
                .bind(idle_expires_at.unix_micros())
                .execute(&self.db.pool)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(Error::not_found("session").into())
                }
            })
            .await
    }

    async fn list_sessions(&self, user: &UserId) -> Result<Vec<Session>> {
        self.db
            .run(|| async {
                let rows = sqlx::query("SELECT doc FROM sessions WHERE user_id = $1 ORDER BY id")
                    .bind(user.as_str())
                    .fetch_all(&self.db.pool)
                    .await?;
                rows.iter().map(|r| doc(r, "doc")).collect::<Step<Vec<_>>>()
            })
            .await
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        self.db
            .run(|| async {
                let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&self.db.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
            .await
    }

    async fn delete_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
        keep: Option<&SessionId>,
    ) -> Result<u64> {
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "DELETE FROM sessions WHERE user_id = $1 \
                     AND ($2::text IS NULL OR tenant_id = $2) \
                     AND ($3::text IS NULL OR id <> $3)",
                )
                .bind(user.as_str())
                .bind(tenant.map(TenantId::as_str))
                .bind(keep.map(SessionId::as_str))
                .execute(&self.db.pool)
                .await?;
                Ok(done.rows_affected())
            })
            .await
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64> {
        self.db
            .run(|| async {
                let done = sqlx::query("DELETE FROM sessions WHERE ends_at <= $1")
                    .bind(now.unix_micros())
                    .execute(&self.db.pool)
                    .await?;
                Ok(done.rows_affected())
            })
            .await
    }
}

#[async_trait]
impl InvitationStore for PostgresStore {
    async fn create_invitation(&self, inv: &Invitation) -> Result<()> {
        self.db
            .run(|| async {
                sqlx::query(
                    "INSERT INTO invitations (id, tenant_id, token_hash, doc) VALUES ($1, $2, $3, $4)",
                )
                .bind(inv.id.as_str())
                .bind(inv.tenant_id.as_str())
                .bind(&inv.token_hash.0[..])
                .bind(Json(inv))
                .execute(&self.db.pool)
                .await
                .map_err(unique("invitation"))?;
                Ok(())
            })
            .await
    }

    async fn get_invitation_by_token(&self, token_hash: &SecretHash) -> Result<Invitation> {
        self.db
            .run(|| async {
                let row = sqlx::query("SELECT doc FROM invitations WHERE token_hash = $1")
                    .bind(&token_hash.0[..])
                    .fetch_optional(&self.db.pool)
                    .await?;
                match row {
                    Some(r) => doc(&r, "doc"),
                    None => Err(Error::not_found("invitation").into()),
                }
            })
            .await
    }

    async fn list_invitations(&self, tenant: &TenantId) -> Result<Vec<Invitation>> {
        self.db
            .run(|| async {
                let rows =
                    sqlx::query("SELECT doc FROM invitations WHERE tenant_id = $1 ORDER BY id")
                        .bind(tenant.as_str())
                        .fetch_all(&self.db.pool)
                        .await?;
                rows.iter().map(|r| doc(r, "doc")).collect::<Step<Vec<_>>>()
            })
            .await
    }

    async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        id: &InvitationId,
        at: Timestamp,
    ) -> Result<Invitation> {
        self.db
            .run(|| async {
                let row = sqlx::query(
                    "UPDATE invitations SET doc = jsonb_set(doc, '{revoked_at}', $3) \
                     WHERE id = $1 AND tenant_id = $2 \
                       AND coalesce(doc->'accepted_at', 'null'::jsonb) = 'null'::jsonb \
                       AND coalesce(doc->'revoked_at', 'null'::jsonb) = 'null'::jsonb \
                     RETURNING doc",
                )
                .bind(id.as_str())
                .bind(tenant.as_str())
                .bind(Json(at))
                .fetch_optional(&self.db.pool)
                .await?;
                if let Some(r) = row {
                    return doc(&r, "doc");
                }
                let row =
                    sqlx::query("SELECT doc FROM invitations WHERE id = $1 AND tenant_id = $2")
                        .bind(id.as_str())
                        .bind(tenant.as_str())
                        .fetch_optional(&self.db.pool)
                        .await?;
                let Some(row) = row else {
                    return Err(Error::not_found("invitation").into());
                };
                let inv: Invitation = doc(&row, "doc")?;
                if inv.accepted_at.is_some() {
                    return Err(Error::conflict("the invitation was accepted").into());
                }
                Ok(inv)
            })
            .await
    }

    async fn accept_invitation(
        &self,
        id: &InvitationId,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Invitation> {
        self.db
            .run(|| async {
                let row = sqlx::query(
                    "UPDATE invitations \
                     SET doc = jsonb_set(jsonb_set(doc, '{accepted_at}', $2), '{accepted_by}', $3) \
                     WHERE id = $1 \
                       AND coalesce(doc->'accepted_at', 'null'::jsonb) = 'null'::jsonb \
                       AND coalesce(doc->'revoked_at', 'null'::jsonb) = 'null'::jsonb \
                     RETURNING doc",
                )
                .bind(id.as_str())
                .bind(Json(at))
                .bind(Json(user))
                .fetch_optional(&self.db.pool)
                .await?;
                if let Some(r) = row {
                    return doc(&r, "doc");
                }
                let found = sqlx::query("SELECT 1 FROM invitations WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.db.pool)
                    .await?;
                match found {
                    Some(_) => {
                        Err(Error::conflict("the invitation was already used or revoked").into())
                    }
                    None => Err(Error::not_found("invitation").into()),
                }
            })
            .await
    }
}

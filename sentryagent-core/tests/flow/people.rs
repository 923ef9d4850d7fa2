//! People: sign-up, sign-in and its throttling, sessions (CSRF, idle and
//! absolute ends, rotation), roles and their scopes, members, invitations,
//! password changes and resets, the second factor, and the audit trail
//! without secrets.

use super::*;
use sentryagent_core::{
    AcceptInvitation, CompletePasswordReset, NewInvitation, RequestMeta, Role, SessionAuth,
    SessionCredentials, SignIn, SignUp, SignedIn, SignupMode, TenantSettingsPatch,
};

const PW: &str = "correct horse battery staple";

fn meta(ip: &str) -> RequestMeta {
    RequestMeta {
        ip: Some(ip.into()),
        ..Default::default()
    }
}

fn open(c: &mut sentryagent_core::IdpConfig) {
    c.people.signup = SignupMode::Open;
}

fn unique_email(name: &str) -> String {
    format!(
        "{name}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn sign_up(idp: &Idp, email: &str, tenant: &str) -> SignedIn {
    idp.sign_up(
        &SignUp {
            email: email.into(),
            password: PW.into(),
            tenant_name: tenant.into(),
            display_name: None,
        },
        &meta("192.0.2.10"),
        None,
    )
    .await
    .unwrap()
}

fn sign_in_input(email: &str, password: &str) -> SignIn {
    SignIn {
        email: email.into(),
        password: password.into(),
        totp: None,
        tenant_id: None,
    }
}

fn creds<'a>(s: &'a SignedIn, method: &'a str) -> SessionCredentials<'a> {
    SessionCredentials {
        secret: s.secret.expose(),
        csrf_token: Some(&s.me.csrf_token),
        method,
    }
}

async fn auth(idp: &Idp, s: &SignedIn) -> sentryagent_core::Result<SessionAuth> {
    idp.authenticate_session(&creds(s, "GET"), &Default::default())
        .await
}

async fn caller(idp: &Idp, s: &SignedIn) -> Caller {
    auth(idp, s).await.unwrap().caller.expect("a caller")
}

/// An owner (by sign-up) and a member of `role` who joined by invitation.
async fn team(idp: &Idp, role: Role) -> (SignedIn, SignedIn) {
    let owner = sign_up(idp, &unique_email("owner"), "Team").await;
    let member = join(idp, &owner, &unique_email(role.as_str()), role).await;
    (owner, member)
}

async fn join(idp: &Idp, inviter: &SignedIn, email: &str, role: Role) -> SignedIn {
    let c = caller(idp, inviter).await;
    let tenant = c.tenant.clone().unwrap();
    let inv = idp
        .create_invitation(
            &c,
            &tenant,
            &NewInvitation {
                email: email.into(),
                role,
            },
        )
        .await
        .unwrap();
    idp.accept_invitation(
        &AcceptInvitation {
            token: inv.token.expose().to_owned(),
            password: PW.into(),
            display_name: None,
            totp: None,
        },
        &meta("192.0.2.11"),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sign_up_makes_the_owner_of_a_free_tenant_and_signs_in() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let email = unique_email("ada");
    let s = sign_up(&idp, &email.to_uppercase(), "Acme Labs").await;
    assert_eq!(s.me.user.email, email, "stored normalized");
    assert_eq!(s.me.memberships.len(), 1);
    let m = &s.me.memberships[0];
    assert_eq!((m.tenant_name.as_str(), m.role), ("Acme Labs", Role::Owner));
    assert!(s.secret.expose().starts_with("sa_ss_"));
    assert_eq!(s.session.tenant_id.as_ref(), Some(&m.tenant_id));
    let tenant = idp
        .get_tenant(&Caller::system(), &m.tenant_id)
        .await
        .unwrap();
    assert_eq!(tenant.tier, Tier::Free);

    // The session is a caller with the owner's scopes in that tenant only.
    let owner = caller(&idp, &s).await;
    assert_eq!(owner.tenant.as_ref(), Some(&m.tenant_id));
    assert_eq!(owner.scopes, Role::Owner.scopes());
    assert!(!owner.is_operator());
    idp.register_agent(
        &owner,
        &m.tenant_id,
        NewAgent {
            name: "bot".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let other = tenant_named(&idp, "Other").await;
    assert!(matches!(
        idp.list_agents(&owner, &other.id, &Default::default())
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.create_tenant(
            &owner,
            NewTenant {
                name: "x".into(),
                ..Default::default()
            }
        )
        .await,
        Err(Error::Forbidden { .. })
    ));

    // The email is taken now; bad input says what is wrong.
    let again = idp
        .sign_up(
            &SignUp {
                email: email.clone(),
                password: PW.into(),
                tenant_name: "Again".into(),
                display_name: None,
            },
            &meta("192.0.2.10"),
            None,
        )
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    for (email, password, tenant, field) in [
        ("not an email", PW, "T", "email"),
        ("weak@example.com", "password123", "T", "password"),
        ("short@example.com", "Xy7!", "T", "password"),
        ("nameless@example.com", PW, " ", "tenant_name"),
    ] {
        let r = idp
            .sign_up(
                &SignUp {
                    email: email.into(),
                    password: password.into(),
                    tenant_name: tenant.into(),
                    display_name: None,
                },
                &meta("192.0.2.12"),
                None,
            )
            .await;
        assert!(
            matches!(&r, Err(Error::Invalid { field: f, .. }) if *f == field),
            "{email}: {r:?}"
        );
    }
}

async fn tenant_named(idp: &Idp, name: &str) -> Tenant {
    idp.create_tenant(
        &Caller::system(),
        NewTenant {
            name: name.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sign_up_follows_the_signup_mode() {
    let c = clock();
    for (mode, ok) in [
        (SignupMode::Open, true),
        (SignupMode::Invite, false),
        (SignupMode::Closed, false),
    ] {
        let Some(idp) = idp_with(&c, |cfg| cfg.people.signup = mode).await else {
            return;
        };
        let r = idp
            .sign_up(
                &SignUp {
                    email: unique_email("mode"),
                    password: PW.into(),
                    tenant_name: "T".into(),
                    display_name: None,
                },
                &meta("192.0.2.13"),
                None,
            )
            .await;
        assert_eq!(r.is_ok(), ok, "{mode:?}: {r:?}");
        if !ok {
            assert!(matches!(r, Err(Error::Forbidden { .. })), "{mode:?}");
        }
    }
    // The default follows the issuer.
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    assert_eq!(idp.config().people.signup, SignupMode::Closed);
    let local = Idp::builder("http://127.0.0.1:8080").build().await.unwrap();
    assert_eq!(local.config().people.signup, SignupMode::Open);
}

#[tokio::test]
async fn sign_in_failures_are_one_error_audited_without_what_was_typed() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let email = unique_email("grace");
    let first = sign_up(&idp, &email, "Navy").await;
    for (e, p) in [
        (email.as_str(), "wrong password entirely"),
        ("nobody-here@example.com", PW),
        ("not an email", PW),
        (email.as_str(), ""),
    ] {
        let r = idp
            .sign_in(&sign_in_input(e, p), &meta("192.0.2.20"), None)
            .await;
        assert!(matches!(r, Err(Error::Unauthenticated)), "{e}: {r:?}");
    }
    let page = idp
        .query_audit(
            &Caller::system(),
            &AuditQuery {
                action: Some("user.sign_in_failed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    let text = serde_json::to_string(&page.items).unwrap();
    assert!(
        !text.contains("wrong password") && !text.contains("nobody-here"),
        "{text}"
    );
    assert!(!text.contains(&email), "no email in the trail");
    assert_eq!(
        page.items[0].event.target.as_deref(),
        Some(first.me.user.id.as_str())
    );
    assert_eq!(page.items[1].event.target, None);

    // Success: a new session; the one the request came with ends.
    let s = idp
        .sign_in(
            &sign_in_input(&email.to_uppercase(), PW),
            &meta("192.0.2.20"),
            Some(first.secret.expose()),
        )
        .await
        .unwrap();
    assert_ne!(s.secret.expose(), first.secret.expose());
    assert!(matches!(
        auth(&idp, &first).await,
        Err(Error::Unauthenticated)
    ));
    auth(&idp, &s).await.unwrap();
    assert!(s.me.user.last_sign_in_at.is_some());
    let tenant = s.session.tenant_id.clone().unwrap();
    let signed = idp
        .query_audit(
            &Caller::system(),
            &AuditQuery {
                tenant_id: Some(tenant),
                action: Some("user.signed_in".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(signed.items.len(), 1);
}

#[tokio::test]
async fn sign_in_is_throttled_per_account_and_per_ip() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let email = unique_email("target");
    sign_up(&idp, &email, "T").await;
    // Ten failures per account (from many addresses), then 429 with a wait,
    // even with the right password; an unknown email is throttled alike.
    for target in [email.clone(), unique_email("ghost")] {
        for i in 0..10 {
            let r = idp
                .sign_in(
                    &sign_in_input(&target, "not the password"),
                    &meta(&format!("198.51.100.{i}")),
                    None,
                )
                .await;
            assert!(matches!(r, Err(Error::Unauthenticated)), "{i}: {r:?}");
        }
        let r = idp
            .sign_in(&sign_in_input(&target, PW), &meta("198.51.100.200"), None)
            .await;
        match r {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(90));
            }
            other => panic!("{target}: expected a refusal, got {other:?}"),
        }
    }
    // After the wait one more attempt passes, and a success forgets the
    // failures.
    c.advance(Duration::from_secs(90));
    idp.sign_in(&sign_in_input(&email, PW), &meta("198.51.100.201"), None)
        .await
        .unwrap();
    for _ in 0..9 {
        let _ = idp
            .sign_in(
                &sign_in_input(&email, "nope nope nope"),
                &meta("198.51.100.202"),
                None,
            )
            .await;
    }
    idp.sign_in(&sign_in_input(&email, PW), &meta("198.51.100.203"), None)
        .await
        .unwrap();

    // Twenty attempts a minute per address, whatever the accounts.
    for i in 0..20 {
        let r = idp
            .sign_in(
                &sign_in_input(&unique_email(&format!("x{i}")), PW),
                &meta("203.0.113.9"),
                None,
            )
            .await;
        assert!(matches!(r, Err(Error::Unauthenticated)), "{i}: {r:?}");
    }
    let r = idp
        .sign_in(&sign_in_input(&email, PW), &meta("203.0.113.9"), None)
        .await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    idp.sign_in(&sign_in_input(&email, PW), &meta("203.0.113.10"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn sessions_need_the_csrf_token_to_change_state_and_end_on_time() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let s = sign_up(&idp, &unique_email("csrf"), "T").await;
    let secret = s.secret.expose();
    // Reads need no token; writes need the session's own.
    for method in ["GET", "HEAD", "OPTIONS"] {
        let a = idp
            .authenticate_session(
                &SessionCredentials {
                    secret,
                    csrf_token: None,
                    method,
                },
                &Default::default(),
            )
            .await;
        assert!(a.is_ok(), "{method}");
    }
    let other = sign_up(&idp, &unique_email("other"), "T2").await;
    for token in [
        None,
        Some(""),
        Some("x"),
        Some(other.me.csrf_token.as_str()),
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = idp
                .authenticate_session(
                    &SessionCredentials {
                        secret,
                        csrf_token: token,
                        method,
                    },
                    &Default::default(),
                )
                .await;
            assert!(
                matches!(r, Err(Error::Forbidden { .. })),
                "{method} {token:?}: {r:?}"
            );
        }
    }
    let a = idp
        .authenticate_session(&creds(&s, "POST"), &Default::default())
        .await
        .unwrap();
    assert_eq!(a.csrf_token, s.me.csrf_token);
    assert_eq!(idp.me(&a).await.unwrap().csrf_token, s.me.csrf_token);
    for bad in [
        "",
        "sa_ss_",
        "sa_ss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "garbage",
    ] {
        let r = idp
            .authenticate_session(
                &SessionCredentials {
                    secret: bad,
                    csrf_token: None,
                    method: "GET",
                },
                &Default::default(),
            )
            .await;
        assert!(matches!(r, Err(Error::Unauthenticated)), "{bad:?}");
    }

    // Idle timeout: each use moves the idle end (12 h by default)...
    for _ in 0..3 {
        c.advance(Duration::from_secs(11 * 3600));
        auth(&idp, &s).await.unwrap();
    }
    // ...but not unused for longer.
    c.advance(Duration::from_secs(12 * 3600));
    assert!(matches!(auth(&idp, &s).await, Err(Error::Unauthenticated)));

    // Absolute lifetime: 7 days after sign-in, however busy.
    let busy = idp
        .sign_in(
            &sign_in_input(&s.me.user.email, PW),
            &meta("192.0.2.30"),
            None,
        )
        .await
        .unwrap();
    for _ in 0..15 {
        c.advance(Duration::from_secs(11 * 3600));
        auth(&idp, &busy).await.unwrap();
    }
    c.advance(Duration::from_secs(7 * 24 * 3600 - 15 * 11 * 3600));
    assert!(matches!(
        auth(&idp, &busy).await,
        Err(Error::Unauthenticated)
    ));
}

#[tokio::test]
async fn session_timeouts_are_configurable_and_expired_sessions_are_purged() {
    let c = clock();
    let Some(store) = crate::store_parts().await else {
        return;
    };
    let idp = Idp::builder(ISSUER)
        .store_parts(store)
        .clock(Arc::new(c.clone()))
        .configure(open)
        .session_timeouts(Duration::from_secs(600), Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let s = sign_up(&idp, &unique_email("short"), "T").await;
    assert_eq!(
        s.session.idle_expires_at,
        c.now().plus(Duration::from_secs(600))
    );
    assert_eq!(
        s.session.expires_at,
        c.now().plus(Duration::from_secs(3600))
    );
    c.advance(Duration::from_secs(599));
    auth(&idp, &s).await.unwrap();
    c.advance(Duration::from_secs(599));
    auth(&idp, &s).await.unwrap();
    c.advance(Duration::from_secs(601));
    idp.maintenance().await.unwrap();
    assert!(matches!(auth(&idp, &s).await, Err(Error::Unauthenticated)));
    let live = idp
        .sign_in(
            &sign_in_input(&s.me.user.email, PW),
            &meta("192.0.2.31"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        idp.list_sessions(&auth(&idp, &live).await.unwrap())
            .await
            .unwrap()
            .len(),
        1,
        "the idle session was purged"
    );
}

#[tokio::test]
async fn sign_out_and_other_sessions() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let a = sign_up(&idp, &unique_email("multi"), "T").await;
    let email = a.me.user.email.clone();
    let b = idp
        .sign_in(&sign_in_input(&email, PW), &meta("192.0.2.40"), None)
        .await
        .unwrap();
    let d = idp
        .sign_in(&sign_in_input(&email, PW), &meta("192.0.2.41"), None)
        .await
        .unwrap();
    let a_auth = auth(&idp, &a).await.unwrap();
    let listed = idp.list_sessions(&a_auth).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().filter(|s| s.current).count(), 1);
    assert!(listed.iter().any(|s| s.current && s.id == a.session.id));

    idp.sign_out(b.secret.expose(), &Default::default())
        .await
        .unwrap();
    assert!(matches!(auth(&idp, &b).await, Err(Error::Unauthenticated)));
    idp.sign_out(b.secret.expose(), &Default::default())
        .await
        .unwrap();
    // Ending a session by id: one's own only.
    let stranger = sign_up(&idp, &unique_email("stranger"), "S").await;
    let r = idp
        .end_session(
            &auth(&idp, &stranger).await.unwrap(),
            &d.session.id,
            &Default::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })));
    assert_eq!(
        idp.end_other_sessions(&a_auth, &Default::default())
            .await
            .unwrap(),
        1
    );
    assert!(matches!(auth(&idp, &d).await, Err(Error::Unauthenticated)));
    auth(&idp, &a).await.unwrap();
    idp.end_session(&a_auth, &a.session.id, &Default::default())
        .await
        .unwrap();
    assert!(matches!(auth(&idp, &a).await, Err(Error::Unauthenticated)));
    auth(&idp, &stranger).await.unwrap();
}

#[tokio::test]
async fn each_role_acts_with_exactly_its_scopes() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    for role in Role::ALL {
        let (owner, member) = team(&idp, role).await;
        let me = caller(&idp, &member).await;
        let tenant = me.tenant.clone().unwrap();
        assert_eq!(me.scopes, role.scopes(), "{role}");
        assert_eq!(me.actor, format!("user:{}", member.me.user.id));
        let can = |s: AdminScope| role.scopes().iter().any(|h| h.covers(s));
        let r = idp
            .register_agent(
                &me,
                &tenant,
                NewAgent {
                    name: format!("a-{role}"),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(r.is_ok(), can(AdminScope::AgentsWrite), "{role}: {r:?}");
        let r = idp.list_agents(&me, &tenant, &Default::default()).await;
        assert_eq!(r.is_ok(), can(AdminScope::AgentsRead), "{role}");
        let r = idp.list_members(&me, &tenant).await;
        assert_eq!(r.is_ok(), can(AdminScope::MembersRead), "{role}");
        let r = idp.create_admin_key(&me, Some(&tenant), "k", None).await;
        assert_eq!(r.is_ok(), can(AdminScope::ApiKeysWrite), "{role}: {r:?}");
        if let Ok((key, _)) = &r {
            assert_eq!(
                key.scopes,
                role.scopes(),
                "a key defaults to its maker's scopes"
            );
            let r = idp
                .create_admin_key(&me, Some(&tenant), "more", Some(vec![AdminScope::Admin]))
                .await;
            assert_eq!(
                r.is_ok(),
                role == Role::Owner,
                "{role}: granting more than held"
            );
        }
        let r = idp.usage_summary(&me, &tenant).await;
        assert_eq!(r.is_ok(), can(AdminScope::BillingRead), "{role}");
        let r = idp
            .update_tenant_settings(&me, &tenant, TenantSettingsPatch::default())
            .await;
        assert_eq!(r.is_ok(), role == Role::Owner, "{role}: settings");
        // Who each role may invite.
        for invited in Role::ALL {
            let r = idp
                .create_invitation(
                    &me,
                    &tenant,
                    &NewInvitation {
                        email: unique_email("inv"),
                        role: invited,
                    },
                )
                .await;
            let allowed = can(AdminScope::MembersWrite) && invited.within(role.scopes());
            assert_eq!(r.is_ok(), allowed, "{role} inviting {invited}: {r:?}");
        }
        // Nobody acts on the owner but an owner.
        let r = idp
            .issue_password_reset(&me, Some(&tenant), &owner.me.user.id)
            .await;
        assert_eq!(r.is_ok(), role == Role::Owner, "{role} resetting the owner");
    }
}

#[tokio::test]
async fn members_change_role_and_leave_with_an_owner_always_kept() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let (owner, dev) = team(&idp, Role::Developer).await;
    let boss = caller(&idp, &owner).await;
    let tenant = boss.tenant.clone().unwrap();
    let admin = join(&idp, &owner, &unique_email("admin"), Role::Admin).await;
    let members = idp.list_members(&boss, &tenant).await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .any(|m| m.user_id == dev.me.user.id && m.role == Role::Developer)
    );

    // The last owner cannot go or step down.
    let owner_id = owner.me.user.id.clone();
    let r = idp
        .change_member_role(&boss, &tenant, &owner_id, Role::Admin)
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    let r = idp.remove_member(&boss, &tenant, &owner_id).await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    // An admin cannot touch the owner, nor make one.
    let adm = caller(&idp, &admin).await;
    let r = idp
        .change_member_role(&adm, &tenant, &owner_id, Role::Viewer)
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    let r = idp
        .change_member_role(&adm, &tenant, &dev.me.user.id, Role::Owner)
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");

    // A role change takes effect at the member's next request, which
    // rotates the session: the old secret stops working.
    let m = idp
        .change_member_role(&adm, &tenant, &dev.me.user.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(m.role, Role::Viewer);
    let a = auth(&idp, &dev).await.unwrap();
    assert!(a.rotated);
    assert_ne!(a.secret.expose(), dev.secret.expose());
    assert_ne!(a.csrf_token, dev.me.csrf_token);
    assert_eq!(a.caller.as_ref().unwrap().scopes, Role::Viewer.scopes());
    assert_eq!(a.session.signed_in_at, dev.session.signed_in_at);
    assert!(matches!(
        auth(&idp, &dev).await,
        Err(Error::Unauthenticated)
    ));
    let again = idp
        .authenticate_session(
            &SessionCredentials {
                secret: a.secret.expose(),
                csrf_token: None,
                method: "GET",
            },
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(!again.rotated);

    // Ownership moves by making another owner first.
    idp.change_member_role(&boss, &tenant, &admin.me.user.id, Role::Owner)
        .await
        .unwrap();
    idp.change_member_role(&boss, &tenant, &owner_id, Role::Developer)
        .await
        .unwrap();

    // Removal ends the member's sessions in the tenant.
    let new_boss = caller(&idp, &admin).await;
    let s = idp
        .sign_in(
            &sign_in_input(&dev.me.user.email, PW),
            &meta("192.0.2.50"),
            None,
        )
        .await
        .unwrap();
    idp.remove_member(&new_boss, &tenant, &dev.me.user.id)
        .await
        .unwrap();
    assert!(matches!(auth(&idp, &s).await, Err(Error::Unauthenticated)));
    let s = idp
        .sign_in(
            &sign_in_input(&dev.me.user.email, PW),
            &meta("192.0.2.50"),
            None,
        )
        .await
        .unwrap();
    assert!(s.me.memberships.is_empty());
    let a = auth(&idp, &s).await.unwrap();
    assert!(a.caller.is_none() && a.denied.is_some());
    let actions: Vec<String> = idp
        .query_audit(
            &Caller::system(),
            &AuditQuery {
                tenant_id: Some(tenant),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    for a in [
        "member.role_changed",
        "member.removed",
        "invitation.created",
        "invitation.accepted",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn invitations_are_accepted_once() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let owner = sign_up(&idp, &unique_email("host"), "Host").await;
    let boss = caller(&idp, &owner).await;
    let tenant = boss.tenant.clone().unwrap();
    let email = unique_email("newbie");
    let inv = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: email.clone(),
                role: Role::Developer,
            },
        )
        .await
        .unwrap();
    let token = inv.token.expose().to_owned();
    assert!(token.starts_with("sa_iv_"));
    assert!(inv.url.ends_with(&format!("#token={token}")), "{}", inv.url);
    assert!(inv.url.starts_with(&format!("{ISSUER}/console/")));
    let listed = idp.list_invitations(&boss, &tenant).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].status,
        sentryagent_core::InvitationStatus::Pending
    );

    let accept = |password: &str| AcceptInvitation {
        token: token.clone(),
        password: password.into(),
        display_name: Some("New Bie".into()),
        totp: None,
    };
    // A weak password does not use the invitation up.
    let r = idp
        .accept_invitation(&accept("password1"), &meta("192.0.2.60"), None)
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Invalid {
                field: "password",
                ..
            })
        ),
        "{r:?}"
    );
    let s = idp
        .accept_invitation(&accept(PW), &meta("192.0.2.60"), None)
        .await
        .unwrap();
    assert_eq!(s.me.user.email, email);
    assert_eq!(s.me.user.display_name, "New Bie");
    assert_eq!(s.me.memberships[0].role, Role::Developer);
    assert_eq!(caller(&idp, &s).await.scopes, Role::Developer.scopes());
    let r = idp
        .accept_invitation(&accept(PW), &meta("192.0.2.60"), None)
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "twice: {r:?}");
    let listed = idp.list_invitations(&boss, &tenant).await.unwrap();
    assert_eq!(
        listed[0].status,
        sentryagent_core::InvitationStatus::Accepted
    );
    assert_eq!(listed[0].accepted_by.as_ref(), Some(&s.me.user.id));
    // Inviting a member again is refused.
    let r = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: email.clone(),
                role: Role::Viewer,
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");

    // Revoked and expired invitations are refused; unknown tokens are not
    // found.
    let revoked = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: unique_email("r"),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    idp.revoke_invitation(&boss, &tenant, &revoked.invitation.id)
        .await
        .unwrap();
    let expired = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: unique_email("e"),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    c.advance(Duration::from_secs(7 * 24 * 3600));
    for (t, what) in [(&revoked.token, "revoked"), (&expired.token, "expired")] {
        let r = idp
            .accept_invitation(
                &AcceptInvitation {
                    token: t.expose().into(),
                    password: PW.into(),
                    ..Default::default()
                },
                &meta("192.0.2.61"),
                None,
            )
            .await;
        assert!(matches!(r, Err(Error::Conflict { .. })), "{what}: {r:?}");
    }
    let r = idp
        .accept_invitation(
            &AcceptInvitation {
                token: "sa_iv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
                password: PW.into(),
                ..Default::default()
            },
            &meta("192.0.2.61"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");

    // An existing account joins with its own password.
    let other = sign_up(&idp, &unique_email("elsewhere"), "Elsewhere").await;
    let inv = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: other.me.user.email.clone(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    let mut input = AcceptInvitation {
        token: inv.token.expose().into(),
        password: "not the password at all".into(),
        ..Default::default()
    };
    let r = idp
        .accept_invitation(&input, &meta("192.0.2.62"), None)
        .await;
    assert!(matches!(r, Err(Error::Unauthenticated)), "{r:?}");
    input.password = PW.into();
    let joined = idp
        .accept_invitation(&input, &meta("192.0.2.62"), None)
        .await
        .unwrap();
    assert_eq!(joined.me.memberships.len(), 2);
    assert_eq!(joined.session.tenant_id.as_ref(), Some(&tenant));
}

#[tokio::test]
async fn closed_sign_up_lets_only_operators_invitations_create_accounts() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| cfg.people.signup = SignupMode::Closed).await else {
        return;
    };
    let t = tenant_named(&idp, "Closed").await;
    let op = Caller::system();
    let first = idp
        .create_invitation(
            &op,
            &t.id,
            &NewInvitation {
                email: unique_email("first"),
                role: Role::Owner,
            },
        )
        .await
        .unwrap();
    let owner = idp
        .accept_invitation(
            &AcceptInvitation {
                token: first.token.expose().into(),
                password: PW.into(),
                ..Default::default()
            },
            &meta("192.0.2.70"),
            None,
        )
        .await
        .unwrap();
    let boss = caller(&idp, &owner).await;
    let inv = idp
        .create_invitation(
            &boss,
            &t.id,
            &NewInvitation {
                email: unique_email("second"),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    let r = idp
        .accept_invitation(
            &AcceptInvitation {
                token: inv.token.expose().into(),
                password: PW.into(),
                ..Default::default()
            },
            &meta("192.0.2.70"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

#[tokio::test]
async fn password_changes_and_resets_end_every_session() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let (owner, dev) = team(&idp, Role::Developer).await;
    let email = dev.me.user.email.clone();
    let second = idp
        .sign_in(&sign_in_input(&email, PW), &meta("192.0.2.80"), None)
        .await
        .unwrap();
    let a = auth(&idp, &dev).await.unwrap();
    let r = idp
        .change_password(
            &a,
            "not my password",
            "a brand new passphrase",
            &Default::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    let r = idp
        .change_password(&a, PW, "password1234", &Default::default())
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
    let new_pw = "orbit plum kettle seventeen";
    let fresh = idp
        .change_password(&a, PW, new_pw, &Default::default())
        .await
        .unwrap();
    assert!(matches!(
        auth(&idp, &dev).await,
        Err(Error::Unauthenticated)
    ));
    assert!(matches!(
        auth(&idp, &second).await,
        Err(Error::Unauthenticated)
    ));
    auth(&idp, &fresh).await.unwrap();
    assert_eq!(fresh.session.tenant_id, dev.session.tenant_id);
    assert!(matches!(
        idp.sign_in(&sign_in_input(&email, PW), &meta("192.0.2.81"), None)
            .await,
        Err(Error::Unauthenticated)
    ));
    idp.sign_in(&sign_in_input(&email, new_pw), &meta("192.0.2.81"), None)
        .await
        .unwrap();

    // The owner issues a reset link for the developer; it works once.
    let boss = caller(&idp, &owner).await;
    let tenant = boss.tenant.clone().unwrap();
    let link = idp
        .issue_password_reset(&boss, Some(&tenant), &dev.me.user.id)
        .await
        .unwrap();
    let token = link.token.expose().to_owned();
    assert!(token.starts_with("sa_pr_") && link.url.ends_with(&format!("#token={token}")));
    let reset = |password: &str| CompletePasswordReset {
        token: token.clone(),
        password: password.into(),
    };
    let r = idp
        .complete_password_reset(&reset("weakweak1"), &meta("192.0.2.82"))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Invalid {
                field: "password",
                ..
            })
        ),
        "{r:?}"
    );
    let reset_pw = "lantern glacier mosaic thirty";
    idp.complete_password_reset(&reset(reset_pw), &meta("192.0.2.82"))
        .await
        .unwrap();
    assert!(matches!(
        auth(&idp, &fresh).await,
        Err(Error::Unauthenticated)
    ));
    let r = idp
        .complete_password_reset(&reset("another fine passphrase"), &meta("192.0.2.82"))
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { field: "token", .. })),
        "used: {r:?}"
    );
    idp.sign_in(&sign_in_input(&email, reset_pw), &meta("192.0.2.83"), None)
        .await
        .unwrap();
    // Tampered, expired, or for another tenant's member: refused.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = idp
        .complete_password_reset(
            &CompletePasswordReset {
                token: tampered,
                password: "quiet harbor lemon rocket".into(),
            },
            &meta("192.0.2.84"),
        )
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { field: "token", .. })),
        "{r:?}"
    );
    let late = idp
        .issue_password_reset(&boss, Some(&tenant), &dev.me.user.id)
        .await
        .unwrap();
    c.advance(Duration::from_secs(24 * 3600));
    let r = idp
        .complete_password_reset(
            &CompletePasswordReset {
                token: late.token.expose().into(),
                password: "quiet harbor lemon rocket".into(),
            },
            &meta("192.0.2.84"),
        )
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { field: "token", .. })),
        "expired: {r:?}"
    );
    let stranger = sign_up(&idp, &unique_email("stranger"), "Else").await;
    let r = idp
        .issue_password_reset(&boss, Some(&tenant), &stranger.me.user.id)
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    let r = idp
        .issue_password_reset(&boss, None, &stranger.me.user.id)
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    // The operator reaches anyone.
    let found = idp
        .find_account(&Caller::system(), &stranger.me.user.email)
        .await
        .unwrap();
    idp.issue_password_reset(&Caller::system(), None, &found.id)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_second_factor_guards_sign_in_and_can_be_required() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let s = sign_up(&idp, &unique_email("totp"), "Factor").await;
    let email = s.me.user.email.clone();
    let a = auth(&idp, &s).await.unwrap();
    let r = idp.confirm_totp(&a, "123456", &Default::default()).await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "not begun: {r:?}");
    let enrol = idp.begin_totp(&a).await.unwrap();
    assert!(
        enrol
            .otpauth_uri
            .starts_with("otpauth://totp/SentryAgent%20%28idp.example%29:")
    );
    assert!(
        enrol
            .otpauth_uri
            .contains(&format!("secret={}", enrol.secret))
    );
    let r = idp.confirm_totp(&a, "000000", &Default::default()).await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
    let code = kit::totp_code(&enrol.secret, c.now());
    let (recovery, rotated) = idp
        .confirm_totp(&a, &code, &Default::default())
        .await
        .unwrap();
    assert_eq!(recovery.len(), 10);
    assert!(rotated.me.user.totp_enabled);
    assert!(
        matches!(auth(&idp, &s).await, Err(Error::Unauthenticated)),
        "rotated"
    );
    assert!(matches!(
        idp.begin_totp(&auth(&idp, &rotated).await.unwrap()).await,
        Err(Error::Conflict { .. })
    ));

    // Sign-in now asks for the code; a used or wrong code fails like a
    // wrong password.
    let mut input = sign_in_input(&email, PW);
    let r = idp.sign_in(&input, &meta("192.0.2.90"), None).await;
    assert!(
        matches!(r, Err(Error::Invalid { field: "totp", .. })),
        "{r:?}"
    );
    input.totp = Some(code.clone());
    let r = idp.sign_in(&input, &meta("192.0.2.90"), None).await;
    assert!(
        matches!(r, Err(Error::Unauthenticated)),
        "a code works once: {r:?}"
    );
    c.advance(Duration::from_secs(30));
    input.totp = Some(kit::totp_code(&enrol.secret, c.now()));
    idp.sign_in(&input, &meta("192.0.2.90"), None)
        .await
        .unwrap();
    input.totp = Some("999999".into());
    assert!(matches!(
        idp.sign_in(&input, &meta("192.0.2.90"), None).await,
        Err(Error::Unauthenticated)
    ));
    // A recovery code works once, in any case.
    input.totp = Some(recovery[0].to_uppercase());
    idp.sign_in(&input, &meta("192.0.2.90"), None)
        .await
        .unwrap();
    assert!(matches!(
        idp.sign_in(&input, &meta("192.0.2.90"), None).await,
        Err(Error::Unauthenticated)
    ));

    // An owner without a second factor in a tenant that requires one gets
    // no caller until they turn it on.
    let plain = sign_up(&idp, &unique_email("plain"), "Strict").await;
    let boss = caller(&idp, &plain).await;
    let tenant = boss.tenant.clone().unwrap();
    let viewer = join(&idp, &plain, &unique_email("viewer"), Role::Viewer).await;
    idp.update_tenant_settings(
        &boss,
        &tenant,
        TenantSettingsPatch {
            require_totp_for_admins: Some(true),
        },
    )
    .await
    .unwrap();
    let a = auth(&idp, &plain).await.unwrap();
    assert!(a.caller.is_none(), "owner without a factor");
    assert!(a.denied.as_deref().unwrap().contains("second factor"));
    assert!(
        auth(&idp, &viewer).await.unwrap().caller.is_some(),
        "viewers are not bound"
    );
    let enrol = idp.begin_totp(&a).await.unwrap();
    let (_, on) = idp
        .confirm_totp(
            &a,
            &kit::totp_code(&enrol.secret, c.now()),
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(auth(&idp, &on).await.unwrap().caller.is_some());
    // Turning it off needs the password.
    let a = auth(&idp, &on).await.unwrap();
    assert!(matches!(
        idp.disable_totp(&a, "wrong wrong wrong", &Default::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(
        !idp.disable_totp(&a, PW, &Default::default())
            .await
            .unwrap()
            .totp_enabled
    );
}

#[tokio::test]
async fn a_session_switches_tenants_by_rotation() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let one = sign_up(&idp, &unique_email("two-hats"), "First").await;
    let two = sign_up(&idp, &unique_email("host2"), "Second").await;
    let joined = join(&idp, &two, &one.me.user.email, Role::Viewer).await;
    let first_tenant = one.session.tenant_id.clone().unwrap();
    let second_tenant = two.session.tenant_id.clone().unwrap();
    assert_eq!(joined.session.tenant_id.as_ref(), Some(&second_tenant));
    let a = auth(&idp, &joined).await.unwrap();
    let switched = idp
        .switch_tenant(&a, &first_tenant, &Default::default())
        .await
        .unwrap();
    assert_eq!(switched.session.tenant_id.as_ref(), Some(&first_tenant));
    assert_eq!(caller(&idp, &switched).await.scopes, Role::Owner.scopes());
    assert!(matches!(
        auth(&idp, &joined).await,
        Err(Error::Unauthenticated)
    ));
    let stranger = tenant_named(&idp, "Stranger").await;
    let r = idp
        .switch_tenant(
            &auth(&idp, &switched).await.unwrap(),
            &stranger.id,
            &Default::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })));
    // Sign-in can pick the tenant too.
    let mut input = sign_in_input(&one.me.user.email, PW);
    input.tenant_id = Some(second_tenant.clone());
    let s = idp
        .sign_in(&input, &meta("192.0.2.95"), None)
        .await
        .unwrap();
    assert_eq!(caller(&idp, &s).await.scopes, Role::Viewer.scopes());
    input.tenant_id = Some(stranger.id.clone());
    let r = idp.sign_in(&input, &meta("192.0.2.95"), None).await;
    assert!(
        matches!(
            r,
            Err(Error::Invalid {
                field: "tenant_id",
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn no_secret_enters_the_audit_trail() {
    let c = clock();
    let Some(idp) = idp_with(&c, open).await else {
        return;
    };
    let (owner, member) = team(&idp, Role::Admin).await;
    let boss = caller(&idp, &owner).await;
    let tenant = boss.tenant.clone().unwrap();
    let inv = idp
        .create_invitation(
            &boss,
            &tenant,
            &NewInvitation {
                email: unique_email("x"),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    let link = idp
        .issue_password_reset(&boss, Some(&tenant), &member.me.user.id)
        .await
        .unwrap();
    let _ = idp
        .sign_in(
            &sign_in_input(&owner.me.user.email, "typed-by-mistake-secret"),
            &meta("192.0.2.99"),
            None,
        )
        .await;
    let mut text = String::new();
    for chain in [Some(tenant.clone()), None] {
        let page = idp
            .query_audit(
                &Caller::system(),
                &AuditQuery {
                    tenant_id: chain,
                    limit: Some(500),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        text.push_str(&serde_json::to_string(&page.items).unwrap());
    }
    assert!(text.contains("invitation.created") && text.contains("user.password_reset_issued"));
    for secret in [
        owner.secret.expose(),
        member.secret.expose(),
        owner.me.csrf_token.as_str(),
        inv.token.expose(),
        link.token.expose(),
        PW,
        "typed-by-mistake-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
}

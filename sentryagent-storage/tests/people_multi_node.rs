//! Two `Idp` nodes on one Postgres, each opened by URL as two processes
//! would: a session made on one is seen by the other, and signing out, a
//! password change, a role change or a removal on one node takes effect on
//! the other at its next request.
#![cfg(feature = "postgres")]

use sentryagent_storage::testing as services;

use std::sync::Arc;

use sentryagent_core::{
    Caller, Error, Idp, NewInvitation, Role, SessionAuth, SessionCredentials, SignIn, SignUp,
    SignedIn, SignupMode, SystemClock,
};
use sentryagent_storage::{BackendUrls, open};

const PW: &str = "correct horse battery staple";

async fn node(url: &str) -> Idp {
    let urls = BackendUrls {
        store: url.to_owned(),
        limiter: Some("memory://".into()),
        meter: Some("memory://".into()),
    };
    open(&urls, Arc::new(SystemClock))
        .await
        .unwrap()
        .apply(Idp::builder("https://idp.example"))
        .configure(|c| c.people.signup = SignupMode::Open)
        .build()
        .await
        .unwrap()
}

async fn auth(idp: &Idp, s: &SignedIn) -> sentryagent_core::Result<SessionAuth> {
    idp.authenticate_session(
        &SessionCredentials {
            secret: s.secret.expose(),
            csrf_token: Some(&s.me.csrf_token),
            method: "POST",
        },
        &Default::default(),
    )
    .await
}

fn sign_in(email: &str, password: &str) -> SignIn {
    SignIn {
        email: email.into(),
        password: password.into(),
        totp: None,
        tenant_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_end_on_every_node() {
    services::with_schema("sessions_end_on_every_node", |url, _| async move {
        let a = node(&url).await;
        let b = node(&url).await;
        let email = format!("two-nodes-{}@example.com", services::random());
        let owner = a
            .sign_up(
                &SignUp {
                    email: email.clone(),
                    password: PW.into(),
                    tenant_name: "Nodes".into(),
                    display_name: None,
                },
                &Default::default(),
                None,
            )
            .await
            .unwrap();
        // Made on A, accepted by B (with its CSRF token).
        let seen = auth(&b, &owner).await.unwrap();
        assert_eq!(seen.caller.unwrap().scopes, Role::Owner.scopes());

        // Signed out on A: refused by B at once.
        let second = b
            .sign_in(&sign_in(&email, PW), &Default::default(), None)
            .await
            .unwrap();
        auth(&a, &second).await.unwrap();
        a.sign_out(second.secret.expose(), &Default::default())
            .await
            .unwrap();
        assert!(matches!(
            auth(&b, &second).await,
            Err(Error::Unauthenticated)
        ));
        auth(&b, &owner).await.unwrap();

        // A password change on B ends the session made on A.
        let on_a = a
            .sign_in(&sign_in(&email, PW), &Default::default(), None)
            .await
            .unwrap();
        let new_pw = "orbit plum kettle seventeen";
        let fresh = b
            .change_password(
                &auth(&b, &owner).await.unwrap(),
                PW,
                new_pw,
                &Default::default(),
            )
            .await
            .unwrap();
        assert!(matches!(auth(&a, &on_a).await, Err(Error::Unauthenticated)));
        assert!(matches!(
            auth(&a, &owner).await,
            Err(Error::Unauthenticated)
        ));
        auth(&a, &fresh).await.unwrap();

        // A member invited on A; a role change on B is seen on A (the
        // session rotates there); a removal on B ends it on A.
        let boss = auth(&b, &fresh).await.unwrap().caller.unwrap();
        let tenant = boss.tenant.clone().unwrap();
        let inv = a
            .create_invitation(
                &boss,
                &tenant,
                &NewInvitation {
                    email: format!("member-{}@example.com", services::random()),
                    role: Role::Developer,
                },
            )
            .await
            .unwrap();
        let member = b
            .accept_invitation(
                &sentryagent_core::AcceptInvitation {
                    token: inv.token.expose().into(),
                    password: PW.into(),
                    ..Default::default()
                },
                &Default::default(),
                None,
            )
            .await
            .unwrap();
        b.change_member_role(&boss, &tenant, &member.me.user.id, Role::Viewer)
            .await
            .unwrap();
        let rotated = auth(&a, &member).await.unwrap();
        assert!(rotated.rotated);
        assert_eq!(
            rotated.caller.as_ref().unwrap().scopes,
            Role::Viewer.scopes()
        );
        let op = Caller::system();
        b.remove_member(&op, &tenant, &member.me.user.id)
            .await
            .unwrap();
        let r = a
            .authenticate_session(
                &SessionCredentials {
                    secret: rotated.secret.expose(),
                    csrf_token: None,
                    method: "GET",
                },
                &Default::default(),
            )
            .await;
        assert!(matches!(r, Err(Error::Unauthenticated)), "{r:?}");
    })
    .await;
}
